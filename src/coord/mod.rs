//! The coordinator: the one owner of [`State`]. Local commands are gated, stamped, applied and
//! handed to the outbox; remote events take the same `apply` path through [`CoordHandle::apply_remote`]
//! and are never handed back to the outbox.
//!
//! Every call runs in the caller's task, under one short lock: a chat line or a Redis message is
//! applied and its OSC datagram is on the wire before the call returns, with no task hand-off in
//! between. The lock is never held across an `.await`. Readers never touch State. Every stage after
//! the coordinator is an [`Observer`], told of each change in the caller's task (the OSC stage
//! first, then the outbox, then the others in the order they attached). Knows no wire format,
//! channel name, HTTP route or reply text: a command's [`Outcome`] is typed, each edge says what was
//! done in its own words, and a refusal reads as its error message.

mod admin;
mod ask;
mod counters;
mod democracy;
mod local;
mod outcome;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::clock::wall_ms_now;
use crate::command::Command;
use crate::gate::{Gate, Sender};
use crate::instances::Presence;
use crate::motion::DEFAULT_RAMP_MAX_MS;
use crate::osc::OscStage;
use crate::state::{Change, Event, EventKind, Hlc, State};
use crate::stats::{LogThrottle, Stats};

pub use crate::observe::Observer;
pub use counters::CoordCounters;
pub use democracy::BACKUP_STEP_MS;

pub use outcome::{Answer, Done, Outcome, Refusal, Unchanged};

/// A cheap, cloneable way to reach the coordinator. Every method returns at once: the work is a few
/// microseconds under the lock.
#[derive(Debug, Clone)]
pub struct CoordHandle {
    core: Arc<Mutex<Coordinator>>,
}

impl CoordHandle {
    fn lock(&self) -> MutexGuard<'_, Coordinator> {
        // A panic while holding the lock would be a bug; the show is better served by carrying on
        // with the state as it stands than by refusing every later command.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a parsed command and returns its outcome.
    pub fn submit(&self, sender: &Sender, command: Command, at: Instant) -> Outcome {
        let wall_ms = wall_ms_now();
        let mut core = self.lock();
        if core.closed {
            return Outcome::Refused(Refusal::ShuttingDown);
        }
        core.handle_command(sender, command, at, wall_ms)
    }

    /// Applies an event that another instance made; false once the coordinator has shut down.
    pub fn apply_remote(&self, event: &Event) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        core.apply_remote(event);
        true
    }

    /// Applies events that arrived together (one socket read). OSC output for a variable set several
    /// times in the batch is coalesced to its last value (counted as `osc_coalesced`); State and the
    /// observers still see every event.
    pub fn apply_remote_batch(&self, events: &[Event]) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        core.apply_remote_batch(events);
        true
    }

    /// True until the coordinator shuts down (readiness), without copying the state.
    pub fn is_open(&self) -> bool {
        !self.lock().closed
    }

    /// A copy of the current state (for read-only views such as `/api/state`).
    pub fn snapshot(&self) -> Option<State> {
        self.read(State::clone)
    }

    /// Runs `f` on the current state under the lock, so nothing changes between what it reads and
    /// what it does with it (an SSE client's snapshot and its registration); `None` once shut down.
    /// `f` must be quick.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Option<R> {
        let core = self.lock();
        (!core.closed).then(|| f(&core.state))
    }

    /// One step of the OSC stage's travelling outputs at this moment: the clocks are read once the
    /// lock is held, so a step never carries a position older than its send.
    pub fn tick_now(&self) -> Option<bool> {
        self.step(|| (Instant::now(), wall_ms_now()))
    }

    /// One step of the OSC stage's travelling outputs (see [`OscStage::tick`]) at a given time:
    /// whether anything still travels; `None` once shut down.
    pub fn tick(&self, now: Instant, wall_ms: u64) -> Option<bool> {
        self.step(|| (now, wall_ms))
    }

    /// One step at the time `at` gives once the lock is held.
    fn step(&self, at: impl FnOnce() -> (Instant, u64)) -> Option<bool> {
        let mut core = self.lock();
        if core.closed {
            return None;
        }
        let (now, wall_ms) = at();
        let Coordinator { osc, state, .. } = &mut *core;
        Some(osc.as_mut().is_some_and(|osc| osc.tick(state, now, wall_ms)))
    }

    /// Decides democracy's windows whose grace ran out and applies this instance's verdicts (see
    /// `coord::democracy`): whether democracy holds or verdicts wait; `None` once shut down.
    pub fn decide_now(&self) -> Option<bool> {
        self.decide_at(wall_ms_now())
    }

    /// [`CoordHandle::decide_now`] at a given wall-clock time.
    pub fn decide_at(&self, wall_ms: u64) -> Option<bool> {
        let mut core = self.lock();
        if core.closed {
            return None;
        }
        Some(core.decide(wall_ms))
    }

    /// Sends the OSC heartbeat; false once shut down (the beat stops with the process).
    pub fn heartbeat(&self) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        if let Some(osc) = &mut core.osc {
            osc.heartbeat();
        }
        true
    }

    /// Registers an observer made from the current state, so it misses and doubles nothing; false
    /// once the coordinator has shut down (the observer is not made). Observers are dropped at
    /// shutdown, which is how their tasks learn that nothing more will come.
    pub fn observe(&self, make: impl FnOnce(&State) -> Box<dyn Observer>) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        let observer = make(&core.state);
        core.observers.push(observer);
        true
    }
}

/// The coordinator's parts: State and everything that must see its changes in order.
#[derive(Debug)]
pub struct Coordinator {
    instance: Arc<str>,
    catalog: Arc<Catalog>,
    state: State,
    hlc: Hlc,
    gate: Gate,
    outbox: Option<mpsc::Sender<Event>>,
    osc: Option<OscStage>,
    observers: Vec<Box<dyn Observer>>,
    presence: Arc<dyn Presence>,
    counters: Arc<CoordCounters>,
    throttle: LogThrottle,
    /// The longest ramp chat may ask for (`RAMP_MAX_MS`).
    ramp_max_ms: u32,
    /// Democracy's verdicts waiting for this instance's turn to apply them.
    pending: Vec<democracy::Pending>,
    closed: bool,
}

impl Coordinator {
    /// A coordinator over `state`; its counters are registered with `stats`.
    pub fn new(
        instance: Arc<str>,
        catalog: Arc<Catalog>,
        state: State,
        gate: Gate,
        outbox: Option<mpsc::Sender<Event>>,
        presence: Arc<dyn Presence>,
        stats: &Stats,
    ) -> Coordinator {
        let counters = Arc::new(CoordCounters::default());
        stats.register(counters.clone());
        Coordinator {
            instance,
            catalog,
            state,
            hlc: Hlc::default(),
            gate,
            outbox,
            osc: None,
            observers: Vec::new(),
            presence,
            counters,
            throttle: LogThrottle::default(),
            ramp_max_ms: DEFAULT_RAMP_MAX_MS,
            pending: Vec::new(),
            closed: false,
        }
    }

    /// Refuses ramps longer than `ms` (`RAMP_MAX_MS`, at most the protocol's `RAMP_LIMIT_MS`).
    #[must_use]
    pub fn with_ramp_max_ms(mut self, ms: u32) -> Coordinator {
        self.ramp_max_ms = ms.min(crate::motion::RAMP_LIMIT_MS);
        self
    }

    /// Sends every change to `osc` as it is applied, in the caller's task, before any other
    /// observer hears of it. The stage is told the whole state when the coordinator starts.
    #[must_use]
    pub fn with_osc(mut self, osc: OscStage) -> Coordinator {
        self.osc = Some(osc);
        self
    }

    /// What the OSC stage notifies when an output starts travelling, for the ticker to wake on.
    pub fn motion_waker(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.osc.as_ref().map(OscStage::waker)
    }

    /// Starts serving. Returns the handle and a future that, once `shutdown` fires, closes the
    /// coordinator: later calls are refused, observers are dropped, and the OSC stage rests its
    /// outputs when configured to.
    pub fn spawn(mut self, shutdown: CancellationToken) -> (CoordHandle, impl Future<Output = ()> + Send) {
        if let Some(osc) = &mut self.osc {
            osc.replay(&self.state);
        }
        let handle = CoordHandle { core: Arc::new(Mutex::new(self)) };
        let closer = handle.clone();
        let task = async move {
            shutdown.cancelled().await;
            let mut core = closer.lock();
            core.closed = true;
            core.observers.clear();
            let Coordinator { osc, state, .. } = &mut *core;
            if let Some(osc) = osc {
                osc.shut_down(state);
            }
        };
        (handle, task)
    }

    /// Applies an event from another instance: the same `apply`, plus clock catch-up, no outbox.
    fn apply_remote(&mut self, event: &Event) {
        if let Some(change) = self.apply_remote_quietly(event) {
            self.announce(event, &change);
        }
    }

    fn apply_remote_quietly(&mut self, event: &Event) -> Option<Change> {
        self.hlc.observe(event.stamp.hlc);
        let change = self.apply(event)?;
        self.counters.remote_applied.fetch_add(1, Ordering::Relaxed);
        Some(change)
    }

    /// Applies a batch of remote events with the OSC output for each variable coalesced to its last
    /// value within the batch. The other observers hear of the batch after its datagrams are sent.
    fn apply_remote_batch(&mut self, events: &[Event]) {
        if let Some(osc) = &mut self.osc {
            osc.begin_batch();
        }
        let changes: Vec<(&Event, Change)> =
            events.iter().filter_map(|event| Some((event, self.apply_remote_quietly(event)?))).collect();
        if let Some(osc) = &mut self.osc {
            osc.end_batch(&self.state);
        }
        for (event, change) in changes {
            self.announce(event, &change);
        }
    }

    /// Tells the observers after the OSC stage (the overlay hub, the routing file).
    fn announce(&mut self, event: &Event, change: &Change) {
        for observer in &mut self.observers {
            observer.on_change(event, change, &self.state);
        }
    }

    /// Applies to State and tells the OSC stage; the change when something visibly changed. OSC
    /// goes first: it is the output a performer hears. The caller announces the change.
    fn apply(&mut self, event: &Event) -> Option<Change> {
        if !matches!(event.kind, EventKind::Set { .. })
            && let Some(osc) = &mut self.osc
        {
            // Values held back in a batch go out as they stood before a route, clear or stop changes them.
            osc.flush_deferred(&self.state);
        }
        match self.state.apply(event) {
            Some(change) => {
                if let Some(osc) = &mut self.osc {
                    osc.on_change(event, &change, &self.state);
                }
                Some(change)
            }
            None => {
                self.counters.stale_events.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod show_tests;
#[cfg(test)]
mod tests;
