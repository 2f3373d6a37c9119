//! The coordinator: the one owner of [`State`]. Local commands are gated, stamped, applied and
//! handed to the outbox; remote events take the same `apply` path through [`CoordHandle::apply_remote`]
//! and are never handed back to the outbox.
//!
//! Every call runs in the caller's task, under one short lock: a chat line or a Redis message is
//! applied and its OSC datagram is on the wire before the call returns, with no task hand-off in
//! between (each hand-off costs tens of microseconds on a small VM; see BENCHMARKS.md). The lock is
//! never held across an `.await`. Readers never touch State. An [`Observer`] (the overlay hub) is told
//! of every change in the caller's task, so a parameter change wakes no other task; a reader that
//! only cares about routes, clears, overlay and emergency gets a snapshot and a feed of those,
//! atomically, from [`CoordHandle::subscribe`]. Knows no wire format, channel name or HTTP route.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::{Catalog, Output, RouteError};
use crate::clock::wall_ms_now;
use crate::command::{AdminCommand, Command, ParseError};
use crate::gate::{Denial, Gate, Sender};
use crate::osc::OscStage;
use crate::state::{Change, Event, EventKind, Hlc, Route, Stamp, State};
use crate::stats::Stats;

/// Structural changes buffered per reader. A reader that falls further behind gets `Lagged` and
/// resubscribes, receiving a fresh snapshot, so a slow reader costs itself a resync and never holds
/// anyone back.
pub const CHANGE_FEED: usize = 4096;

/// Hears of every change as it is applied, in the caller's task and under the coordinator's lock,
/// after the change's OSC output and outbox hand-off. It must be quick and must never block.
pub trait Observer: Send + std::fmt::Debug {
    fn on_change(&mut self, change: &Change);
}

/// Why a command did nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Parse(ParseError),
    #[error("{0}")]
    Gate(Denial),
    #[error("emergency stop is active")]
    Emergency,
    #[error("inputJack#{requested} needs inputJack#{} first", requested - 1)]
    InputJackOrder { requested: u8 },
    #[error("the bot is shutting down")]
    ShuttingDown,
    /// A route's range or safe voltage leaves the output's limit (or is no range at all).
    #[error("{output}: {error}")]
    OutOfLimit { output: Output, error: RouteError },
    /// The command asks for what already is; nothing was stamped, sent or published.
    #[error("{0}")]
    Unchanged(Unchanged),
    /// A newer change, from another instance, already won the register: nothing changed here.
    #[error("a newer change from another instance already won; nothing changed")]
    Superseded,
}

/// What an admin command found already in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unchanged {
    #[error("the overlay is already {}", if *.0 { "on" } else { "off" })]
    Overlay(bool),
    #[error("emergency stop is already active; safe values sent again")]
    AlreadyStopped,
    #[error("no emergency stop is active")]
    NotStopped,
    #[error("{0} is already routed that way")]
    SameRoute(Output),
}

/// The result of a command: done (with an optional reply for admins) or refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { reply: Option<String> },
    Refused(Refusal),
}

/// A reader's starting point: the state at the moment of subscribing and every later structural
/// change (route, clear, overlay, emergency). Parameter values are not in the feed: at chat or
/// Redis rates they would wake every reader for nothing; observers hear of them instead.
#[derive(Debug)]
pub struct Subscription {
    pub state: State,
    pub changes: broadcast::Receiver<Change>,
}

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
    /// overlay still see every event.
    pub fn apply_remote_batch(&self, events: &[Event]) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        core.apply_remote_batch(events);
        true
    }

    /// A copy of the current state (for read-only views such as `/api/state`).
    pub fn snapshot(&self) -> Option<State> {
        let core = self.lock();
        (!core.closed).then(|| core.state.clone())
    }

    /// Registers an observer made from the current state, so it misses and doubles nothing; false
    /// once the coordinator has shut down (the observer is not made). Observers are dropped at
    /// shutdown.
    pub fn observe(&self, make: impl FnOnce(&State) -> Box<dyn Observer>) -> bool {
        let mut core = self.lock();
        if core.closed {
            return false;
        }
        let observer = make(&core.state);
        core.observers.push(observer);
        true
    }

    /// The current state plus a feed of every later structural change, with nothing missed or
    /// doubled between.
    pub fn subscribe(&self) -> Option<Subscription> {
        let core = self.lock();
        let changes = core.changes.as_ref()?.subscribe();
        Some(Subscription { state: core.state.clone(), changes })
    }
}

/// Answers `!admin instances`. Local-only mode knows just itself; the Redis link supplies presence.
pub trait Presence: Send + Sync + std::fmt::Debug {
    fn live_instances(&self) -> Vec<String>;
}

/// Presence when there is no cluster: this instance alone.
#[derive(Debug)]
pub struct Alone(pub Arc<str>);

impl Presence for Alone {
    fn live_instances(&self) -> Vec<String> {
        vec![self.0.to_string()]
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
    /// `None` once shut down, which ends every reader's feed.
    changes: Option<broadcast::Sender<Change>>,
    outbox: Option<mpsc::Sender<Event>>,
    osc: Option<OscStage>,
    observers: Vec<Box<dyn Observer>>,
    presence: Arc<dyn Presence>,
    stats: Arc<Stats>,
    closed: bool,
}

impl Coordinator {
    pub fn new(
        instance: Arc<str>,
        catalog: Arc<Catalog>,
        state: State,
        gate: Gate,
        outbox: Option<mpsc::Sender<Event>>,
        presence: Arc<dyn Presence>,
        stats: Arc<Stats>,
    ) -> Coordinator {
        let (changes, _) = broadcast::channel(CHANGE_FEED);
        Coordinator {
            instance,
            catalog,
            state,
            hlc: Hlc::default(),
            gate,
            changes: Some(changes),
            outbox,
            osc: None,
            observers: Vec::new(),
            presence,
            stats,
            closed: false,
        }
    }

    /// Sends every change to `osc` as it is applied, in the caller's task. The stage is told the
    /// whole state when the coordinator starts.
    #[must_use]
    pub fn with_osc(mut self, osc: OscStage) -> Coordinator {
        self.osc = Some(osc);
        self
    }

    /// Starts serving. Returns the handle and a future that, once `shutdown` fires, closes the
    /// coordinator: later calls are refused, readers' feeds end, and the OSC stage rests its outputs
    /// when configured to.
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
            core.changes = None;
            core.observers.clear();
            let Coordinator { osc, state, .. } = &mut *core;
            if let Some(osc) = osc {
                osc.shut_down(state);
            }
        };
        (handle, task)
    }

    /// Gates, stamps and applies one local command. Time comes in as parameters for tests.
    pub fn handle_command(&mut self, sender: &Sender, command: Command, at: Instant, wall_ms: u64) -> Outcome {
        // State checks come before the gate so a refused command does not use up the viewer's cooldown.
        if let Command::Set { variable, .. } = &command {
            if self.state.emergency().active {
                self.stats.refused_emergency.fetch_add(1, Ordering::Relaxed);
                return Outcome::Refused(Refusal::Emergency);
            }
            if let Some(k) = variable.input_jack()
                && k > self.state.highest_input_jack(variable).saturating_add(1)
            {
                self.stats.refused_input_jack.fetch_add(1, Ordering::Relaxed);
                return Outcome::Refused(Refusal::InputJackOrder { requested: k });
            }
        }
        if let Err(denial) = self.gate.check(sender, &command, at) {
            self.stats.count_denial(denial);
            return Outcome::Refused(Refusal::Gate(denial));
        }
        let kind = match command {
            Command::Set { variable, value } => EventKind::Set { variable, value },
            Command::Admin(admin) => match self.admin_event(admin) {
                Ok(kind) => kind,
                Err(AdminAnswer::Reply(reply)) => return Outcome::Done { reply: Some(reply) },
                Err(AdminAnswer::Refused(refusal)) => {
                    if let Refusal::Unchanged(Unchanged::AlreadyStopped) = &refusal
                        && let Some(osc) = &mut self.osc
                    {
                        // A stop pressed again is still a stop: the outputs get their safe values once more.
                        osc.send_safe_values(&self.state);
                    }
                    let counter = match refusal {
                        Refusal::OutOfLimit { .. } => &self.stats.refused_out_of_limit,
                        _ => &self.stats.unchanged,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Refused(refusal);
                }
            },
        };
        let reply = admin_confirmation(&kind);
        if !matches!(kind, EventKind::Set { .. }) {
            info!(user = %sender.login, action = %reply.as_deref().unwrap_or(""), "admin command");
        }
        let stamp = Stamp { hlc: self.hlc.stamp(wall_ms), instance: self.instance.clone() };
        let event = Event { stamp, wall_ms, user: sender.login.as_str().into(), kind };
        let Some(change) = self.apply(&event) else {
            // Our stamp is newer than every stamp admitted so far (remote clocks are bounded), so this
            // only happens if that promise is broken: say so instead of reporting success.
            warn!(user = %sender.login, "a local command changed nothing: a newer stamp already held the register");
            return Outcome::Refused(Refusal::Superseded);
        };
        self.stats.local_applied.fetch_add(1, Ordering::Relaxed);
        // The outbox before the observers: other instances' outputs wait on the first, only the
        // overlay on the second.
        if let Some(outbox) = &self.outbox
            && outbox.try_send(event).is_err()
        {
            self.stats.outbox_overflow.fetch_add(1, Ordering::Relaxed);
            warn!("outbox full: a local event will not reach other instances");
        }
        self.announce(change);
        Outcome::Done { reply }
    }

    /// Turns an admin command into an event; or answers a question, or says why it changes nothing.
    fn admin_event(&self, admin: AdminCommand) -> Result<EventKind, AdminAnswer> {
        let unchanged = |u| Err(AdminAnswer::Refused(Refusal::Unchanged(u)));
        let emergency = self.state.emergency();
        Ok(match admin {
            AdminCommand::Clear => EventKind::ClearAll,
            AdminCommand::Overlay { enabled } if enabled == self.state.overlay_enabled() => {
                return unchanged(Unchanged::Overlay(enabled));
            }
            AdminCommand::Overlay { enabled } => EventKind::Overlay { enabled },
            AdminCommand::EmergencyStop { message } if emergency.active && emergency.message == message => {
                return unchanged(Unchanged::AlreadyStopped);
            }
            AdminCommand::EmergencyStop { message } => EventKind::Emergency { active: true, message },
            AdminCommand::Resume if !emergency.active => return unchanged(Unchanged::NotStopped),
            AdminCommand::Resume => EventKind::Emergency { active: false, message: None },
            AdminCommand::Route { output, variable, volts } => {
                let range = volts.range.unwrap_or_else(|| self.catalog.output_range(&output));
                let route = Route { variable, range, safe: volts.safe.unwrap_or(range.low) };
                if let Err(error) = self.catalog.check_route(&output, range, route.safe) {
                    return Err(AdminAnswer::Refused(Refusal::OutOfLimit { output, error }));
                }
                if self.state.route(&output) == Some(&route) {
                    return unchanged(Unchanged::SameRoute(output));
                }
                EventKind::Route { output, route: Some(route) }
            }
            AdminCommand::Unroute { output } => {
                if self.state.route(&output).is_none() {
                    return Err(AdminAnswer::Reply(format!("{output} is not routed")));
                }
                EventKind::Route { output, route: None }
            }
            AdminCommand::ListRoutes => return Err(AdminAnswer::Reply(self.routes_text())),
            AdminCommand::Instances => {
                let live = self.presence.live_instances();
                return Err(AdminAnswer::Reply(format!("{} instance(s) online: {}", live.len(), live.join(", "))));
            }
        })
    }

    fn routes_text(&self) -> String {
        let routes: Vec<String> = self.state.routes().map(|(o, r)| format!("{o} → {}", r.variable)).collect();
        if routes.is_empty() { "no routes".to_owned() } else { format!("routes: {}", routes.join(", ")) }
    }

    /// Applies an event from another instance: the same `apply`, plus clock catch-up, no outbox.
    pub fn apply_remote(&mut self, event: &Event) {
        if let Some(change) = self.apply_remote_quietly(event) {
            self.announce(change);
        }
    }

    fn apply_remote_quietly(&mut self, event: &Event) -> Option<Change> {
        self.hlc.observe(event.stamp.hlc);
        let change = self.apply(event)?;
        self.stats.remote_applied.fetch_add(1, Ordering::Relaxed);
        Some(change)
    }

    /// Applies a batch of remote events with the OSC output for each variable coalesced to its last
    /// value within the batch. The readers hear of the batch after its datagrams are sent.
    pub fn apply_remote_batch(&mut self, events: &[Event]) {
        if let Some(osc) = &mut self.osc {
            osc.begin_batch();
        }
        let changes: Vec<Change> = events.iter().filter_map(|event| self.apply_remote_quietly(event)).collect();
        if let Some(osc) = &mut self.osc {
            osc.end_batch(&self.state);
        }
        for change in changes {
            self.announce(change);
        }
    }

    /// Tells the observers (the overlay hub), then, for structural changes, the feed's readers
    /// (the routing file). No receivers is fine: in tests and while stages restart nobody may be
    /// listening.
    fn announce(&mut self, change: Change) {
        for observer in &mut self.observers {
            observer.on_change(&change);
        }
        if !matches!(change, Change::Param { .. })
            && let Some(changes) = &self.changes
        {
            let _ = changes.send(change);
        }
    }

    /// Applies to State and sends the OSC output; the change when something visibly changed. OSC goes
    /// first: it is the output a performer hears. The caller announces the change.
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
                    osc.on_change(&change, &self.state);
                }
                Some(change)
            }
            None => {
                self.stats.stale_events.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}

/// An admin command that makes no event: the answer to a question, or why it would change nothing.
enum AdminAnswer {
    Reply(String),
    Refused(Refusal),
}

fn admin_confirmation(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Set { .. } => return None,
        EventKind::ClearAll => "cleared all parameters".to_owned(),
        EventKind::Overlay { enabled } => format!("overlay {}", if *enabled { "on" } else { "off" }),
        EventKind::Emergency { active: true, message } => match message {
            Some(m) => format!("EMERGENCY STOP: {m}"),
            None => "EMERGENCY STOP: outputs at safe values".to_owned(),
        },
        EventKind::Emergency { active: false, .. } => "resumed".to_owned(),
        EventKind::Route { output, route: Some(r) } => format!("routed {output} → {}", r.variable),
        EventKind::Route { output, route: None } => format!("removed route {output}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::gate::GatePolicy;
    use std::time::Duration;

    fn coordinator(outbox: Option<mpsc::Sender<Event>>) -> Coordinator {
        let catalog = Arc::new(Catalog::builtin());
        let policy = GatePolicy {
            user_cooldown: Duration::from_secs(1),
            global_per_second: 50,
            admin_users: std::collections::HashSet::default(),
        };
        let me: Arc<str> = "bot-001".into();
        Coordinator::new(
            me.clone(),
            catalog,
            State::default(),
            Gate::new(&policy, Instant::now()),
            outbox,
            Arc::new(Alone(me)),
            Arc::new(Stats::default()),
        )
    }

    fn run(c: &mut Coordinator, sender: &Sender, line: &str, at: Instant) -> Outcome {
        let command = parse(line, &c.catalog).expect("valid test command");
        c.handle_command(sender, command, at, 1_700_000_000_000)
    }

    #[test]
    fn local_events_are_stamped_applied_and_handed_to_the_outbox() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut c = coordinator(Some(tx));
        let t = Instant::now();
        assert_eq!(run(&mut c, &Sender::viewer("ann"), "doorway#1.threshold: 89", t), Outcome::Done { reply: None });
        let event = rx.try_recv().expect("an event in the outbox");
        assert_eq!(event.stamp.instance.as_ref(), "bot-001");
        assert!(event.stamp.hlc >= Hlc::from_wall_ms(1_700_000_000_000));
        assert_eq!(
            c.state().params().next().map(|(v, p)| (v.to_string(), p.value)),
            Some(("doorway#1.threshold".into(), 89))
        );
    }

    #[test]
    fn remote_events_are_applied_but_never_reach_the_outbox() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut c = coordinator(Some(tx));
        let variable = c.catalog.parse_variable("doorway#1.gain").expect("variable");
        let remote = Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_800_000_000_000), instance: "bot-002".into() },
            wall_ms: 1_800_000_000_000,
            user: "far".into(),
            kind: EventKind::Set { variable, value: 3 },
        };
        c.apply_remote(&remote);
        assert!(rx.try_recv().is_err());
        assert_eq!(c.state().params().count(), 1);
        // The clock caught up: the next local write beats the remote one even though our wall clock is behind.
        run(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 9", Instant::now());
        assert_eq!(c.state().params().next().map(|(_, p)| p.value), Some(9));
    }

    #[test]
    fn emergency_refuses_viewer_commands_until_resume() {
        let mut c = coordinator(None);
        let t = Instant::now();
        let op = Sender::operator("op");
        run(&mut c, &op, "!admin emergency stop strobe", t);
        assert_eq!(run(&mut c, &Sender::viewer("v"), "doorway#1.gain: 5", t), Outcome::Refused(Refusal::Emergency));
        run(&mut c, &op, "!admin resume", t);
        assert_eq!(run(&mut c, &Sender::viewer("v2"), "doorway#1.gain: 5", t), Outcome::Done { reply: None });
    }

    #[test]
    fn input_jacks_must_be_used_in_order_per_module_instance() {
        let mut c = coordinator(None);
        let t = Instant::now();
        let op = Sender::operator("op");
        let refused = Outcome::Refused(Refusal::InputJackOrder { requested: 2 });
        assert_eq!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), refused);
        assert!(matches!(run(&mut c, &op, "arch#1.inputJack#1: 5", t), Outcome::Done { .. }));
        assert!(matches!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), Outcome::Done { .. }));
        assert!(matches!(run(&mut c, &op, "arch#1.inputJack#1: 7", t), Outcome::Done { .. }), "reusing a jack is fine");
        assert!(
            matches!(run(&mut c, &op, "arch#2.inputJack#2: 5", t), Outcome::Refused(_)),
            "other instance starts over"
        );
        run(&mut c, &op, "!admin clear", t);
        assert!(
            matches!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), Outcome::Refused(_)),
            "clear resets the sequence"
        );
    }

    #[test]
    fn admin_questions_are_answered_without_events() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut c = coordinator(Some(tx));
        let op = Sender::operator("op");
        let t = Instant::now();
        assert_eq!(run(&mut c, &op, "!admin routes", t), Outcome::Done { reply: Some("no routes".into()) });
        assert_eq!(
            run(&mut c, &op, "!admin instances", t),
            Outcome::Done { reply: Some("1 instance(s) online: bot-001".into()) }
        );
        assert_eq!(
            run(&mut c, &op, "!admin remove es9out#1", t),
            Outcome::Done { reply: Some("es9out#1 is not routed".into()) }
        );
        assert!(rx.try_recv().is_err());
        run(&mut c, &op, "es9out#1 → doorway#1.threshold", t);
        assert_eq!(
            run(&mut c, &op, "routes", t),
            Outcome::Done { reply: Some("routes: es9out#1 → doorway#1.threshold".into()) }
        );
    }

    #[test]
    fn a_command_that_changes_nothing_says_why_and_makes_no_event() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut c = coordinator(Some(tx));
        let (op, t) = (Sender::operator("op"), Instant::now());
        let unchanged = |u| Outcome::Refused(Refusal::Unchanged(u));
        assert_eq!(run(&mut c, &op, "!admin overlay on", t), unchanged(Unchanged::Overlay(true)));
        assert_eq!(run(&mut c, &op, "!admin resume", t), unchanged(Unchanged::NotStopped));
        assert!(rx.try_recv().is_err(), "nothing was stamped or published");
        run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0.25 0.75", t);
        let out = c.catalog.output("es9out#1").expect("output");
        assert_eq!(
            run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0.25 0.75 safe 0.25", t),
            unchanged(Unchanged::SameRoute(out.clone())),
            "the same range and safe voltage, spelled out"
        );
        let Outcome::Refused(Refusal::OutOfLimit { output, .. }) =
            run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0 2", t)
        else {
            panic!("beyond the limit is refused");
        };
        assert_eq!(output, out);
        assert_eq!(c.stats.unchanged.load(Ordering::Relaxed), 3);
        assert_eq!(c.stats.refused_out_of_limit.load(Ordering::Relaxed), 1);
        assert_eq!(c.state().route(&out).map(|r| r.range.high), Some(0.75), "the route stands as it was");
    }

    #[test]
    fn a_full_outbox_is_counted_not_fatal() {
        let (tx, _rx) = mpsc::channel(1);
        let mut c = coordinator(Some(tx));
        let op = Sender::operator("op");
        for v in 0..5 {
            run(&mut c, &op, &format!("doorway#1.gain: {v}"), Instant::now());
        }
        assert_eq!(c.stats.outbox_overflow.load(Ordering::Relaxed), 4);
        assert_eq!(c.state().params().next().map(|(_, p)| p.value), Some(4));
    }

    /// Records what it hears, for the test below.
    #[derive(Debug)]
    struct Heard(Arc<Mutex<Vec<Change>>>);

    impl Observer for Heard {
        fn on_change(&mut self, change: &Change) {
            self.0.lock().expect("heard").push(change.clone());
        }
    }

    #[test]
    fn observers_hear_every_change_and_the_feed_only_the_structural_ones() {
        let token = CancellationToken::new();
        let (handle, closer) = coordinator(None).spawn(token.clone());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let mut started_with = None;
        assert!(handle.observe(|state| {
            started_with = Some(state.params().count());
            Box::new(Heard(heard.clone()))
        }));
        assert_eq!(started_with, Some(0));
        let mut sub = handle.subscribe().expect("feed");
        let op = Sender::operator("op");
        for line in ["doorway#1.gain: 3", "!admin es9out#1 → doorway#1.gain", "doorway#1.gain: 4", "!admin overlay off"]
        {
            let command = parse(line, &Catalog::builtin()).expect("valid");
            assert!(matches!(handle.submit(&op, command, Instant::now()), Outcome::Done { .. }));
        }
        let kinds = |changes: &[Change]| -> Vec<&'static str> {
            changes
                .iter()
                .map(|c| match c {
                    Change::Param { .. } => "param",
                    Change::Route { .. } => "route",
                    Change::Overlay { .. } => "overlay",
                    Change::Cleared { .. } => "cleared",
                    Change::Emergency { .. } => "emergency",
                })
                .collect()
        };
        assert_eq!(kinds(&heard.lock().expect("heard")), ["param", "route", "param", "overlay"]);
        let fed: Vec<Change> = std::iter::from_fn(|| sub.changes.try_recv().ok()).collect();
        assert_eq!(kinds(&fed), ["route", "overlay"], "parameter values wake no feed reader");
        // At shutdown the observers are dropped and no new one is taken.
        token.cancel();
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(closer);
        assert_eq!(Arc::strong_count(&heard), 1, "the observer is dropped at shutdown");
        assert!(!handle.observe(|_| Box::new(Heard(heard.clone()))));
    }
}
