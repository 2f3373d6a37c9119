//! The output stage: the coordinator's first observer, sending each change as it is applied.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rosc::{OscMessage, OscPacket};
use tracing::{debug, warn};

use super::encode::{Cv, Encoder};
use crate::catalog::{Output, Variable};
use crate::observe::Observer;
use crate::state::{Change, Event, Route, State};
use crate::stats::{CounterSet, LogThrottle, Stats};

/// The stage's counters, registered with [`Stats`].
#[derive(Debug, Default)]
pub struct OscCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    /// Parameter values not sent because a later value for the same variable came in the same batch.
    pub coalesced: AtomicU64,
    /// Voltages the stage had to bring inside an output's limit: always 0 unless a bug let an
    /// out-of-limit value through every check before it.
    pub clamped: AtomicU64,
}

impl CounterSet for OscCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for (name, c) in [
            ("osc_sent", &self.sent),
            ("osc_failed", &self.failed),
            ("osc_coalesced", &self.coalesced),
            ("osc_clamped", &self.clamped),
        ] {
            out(name, c.load(Ordering::Relaxed));
        }
    }
}

/// The output stage: a socket, its targets and the encoder. It lives inside the coordinator and is
/// called under its lock with each change and the state after it, so its output is always in the
/// order State applied and it never needs a mirror of its own.
#[derive(Debug)]
pub struct OscStage {
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    encoder: Encoder,
    counters: Arc<OscCounters>,
    log: LogThrottle,
    /// Send every route's safe value when the process shuts down (`OUTPUT_REST_ON_SHUTDOWN`).
    rest_on_shutdown: bool,
    /// Routes the receiver was told about, so a replay can also send the removals it missed.
    announced: BTreeSet<Output>,
    /// While a batch is applied: variables whose values are sent once, at the end of the batch.
    deferred: Option<HashSet<Variable>>,
}

impl OscStage {
    /// `socket` is switched to non-blocking: a send that would block is counted as failed, never waited for.
    pub fn new(
        socket: UdpSocket,
        targets: Vec<SocketAddr>,
        encoder: Encoder,
        stats: &Stats,
        rest_on_shutdown: bool,
    ) -> std::io::Result<OscStage> {
        socket.set_nonblocking(true)?;
        let counters = Arc::new(OscCounters::default());
        stats.register(counters.clone());
        Ok(OscStage {
            socket,
            targets,
            encoder,
            counters,
            log: LogThrottle::per_minute(),
            rest_on_shutdown,
            announced: BTreeSet::new(),
            deferred: None,
        })
    }

    /// Sends the whole routing table (and the removals of routes the receiver may still hold) and,
    /// unless stopped, every routed value: at start, and when an emergency stop is lifted.
    pub fn replay(&mut self, state: &State) {
        let gone: Vec<Output> = self.announced.iter().filter(|o| state.route(o).is_none()).cloned().collect();
        for output in gone {
            self.send(Encoder::route_remove(&output));
            self.announced.remove(&output);
        }
        for (output, route) in state.routes() {
            if self.encoder.format.max() {
                self.send(Encoder::route_add(output, &route.variable));
            }
            self.announced.insert(output.clone());
        }
        if state.emergency().active {
            self.send_safe_values(state);
            return;
        }
        for (output, route) in state.routes() {
            if let Some(entry) = state.param(&route.variable) {
                self.send_cv(output, route, entry.value);
            }
        }
        if self.encoder.format.address() {
            for (variable, entry) in state.params() {
                self.send(self.encoder.address(variable, entry.value));
            }
        }
    }

    /// From now until [`OscStage::end_batch`], parameter values are sent once per variable.
    pub fn begin_batch(&mut self) {
        self.deferred = Some(HashSet::new());
    }

    /// Sends the latest value of every variable set during the batch.
    pub fn end_batch(&mut self, state: &State) {
        self.flush_deferred(state);
        self.deferred = None;
    }

    /// Sends the values held back so far in the batch, as `state` has them.
    pub fn flush_deferred(&mut self, state: &State) {
        let Some(deferred) = self.deferred.as_mut() else { return };
        if deferred.is_empty() {
            return;
        }
        let variables: Vec<Variable> = deferred.drain().collect();
        for variable in &variables {
            if let Some(entry) = state.param(variable) {
                self.send_value(variable, entry.value, state);
            }
        }
    }

    /// The process is stopping: rest every routed output if configured to.
    pub fn shut_down(&mut self, state: &State) {
        if self.rest_on_shutdown {
            self.send_safe_values(state);
        }
    }

    fn routed<'a>(state: &'a State, variable: &'a Variable) -> impl Iterator<Item = (&'a Output, &'a Route)> + 'a {
        state.routes().filter(move |(_, r)| r.variable == *variable)
    }

    fn send_value(&mut self, variable: &Variable, value: u8, state: &State) {
        if state.emergency().active {
            return;
        }
        let mut routed = false;
        for (output, route) in Self::routed(state, variable) {
            routed = true;
            self.send_cv(output, route, value);
        }
        if !routed {
            debug!(%variable, value, "unrouted variable updated; no /cv sent");
        }
        if self.encoder.format.address() {
            self.send(self.encoder.address(variable, value));
        }
    }

    fn on_route(&mut self, output: &Output, route: Option<&Route>, state: &State) {
        if state.emergency().active {
            return;
        }
        match route {
            Some(route) => {
                if self.encoder.format.max() {
                    self.send(Encoder::route_add(output, &route.variable));
                }
                self.announced.insert(output.clone());
                // A newly routed output takes the variable's current value at once.
                if let Some(entry) = state.param(&route.variable) {
                    self.send_cv(output, route, entry.value);
                }
            }
            None => {
                if self.encoder.format.max() {
                    self.send(Encoder::route_remove(output));
                }
                self.announced.remove(output);
            }
        }
    }

    fn send_cv(&self, output: &Output, route: &Route, value: u8) {
        if self.encoder.format.max() {
            self.send_limited(self.encoder.cv(output, route, value));
        }
    }

    /// Every routed output to its safe value, at once, in every form the format enables: `/cv` for
    /// the Max patches and `/lzx/…` (the safe voltage's place in the route's range) for generic
    /// receivers, one per variable, from its first route. The coordinator calls it again when an
    /// emergency stop is pressed while one is active.
    pub fn send_safe_values(&self, state: &State) {
        let mut told = HashSet::new();
        for (output, route) in state.routes() {
            if self.encoder.format.max() {
                self.send_limited(self.encoder.cv_safe(output, route));
            }
            if self.encoder.format.address() && told.insert(&route.variable) {
                self.send(Encoder::address_safe(route));
            }
        }
    }

    /// Sends a `/cv` message, counting (and logging once a minute) a voltage the encoder had to bring
    /// inside its output's limit: that means a check upstream let a bad route through.
    fn send_limited(&self, cv: Cv) {
        if cv.clamped {
            self.counters.clamped.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.log.allow("clamped", Instant::now()) {
                warn!(message = ?cv.message, suppressed, "a voltage outside its output's limit was clamped");
            }
        }
        self.send(cv.message);
    }

    fn send(&self, message: OscMessage) {
        let bytes = match rosc::encoder::encode(&OscPacket::Message(message)) {
            Ok(b) => b,
            Err(e) => {
                self.fail("encode", &format!("{e:?}"));
                return;
            }
        };
        for target in &self.targets {
            match self.socket.send_to(&bytes, target) {
                Ok(_) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail("send", &format!("{target}: {e}")),
            }
        }
    }

    fn fail(&self, reason: &'static str, detail: &str) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow(reason, Instant::now()) {
            warn!(reason, detail, suppressed, "OSC output failed; the show goes on");
        }
    }
}

impl Observer for OscStage {
    /// Sends what `change` (already applied to `state`) means for the receiver.
    fn on_change(&mut self, _event: &Event, change: &Change, state: &State) {
        if let Change::Param { variable, value, .. } = change {
            if let Some(deferred) = self.deferred.as_mut() {
                if !deferred.insert(variable.clone()) {
                    self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                self.send_value(variable, *value, state);
            }
            return;
        }
        match change {
            Change::Param { .. } | Change::Overlay { .. } => {}
            Change::Cleared { variables } => {
                if state.emergency().active {
                    return;
                }
                for variable in variables.iter() {
                    let mut first = None;
                    for (output, route) in Self::routed(state, variable) {
                        first.get_or_insert(route);
                        if self.encoder.format.max() {
                            self.send_limited(self.encoder.cv_safe(output, route));
                        }
                    }
                    if self.encoder.format.address() {
                        let message = first.map_or_else(|| self.encoder.address(variable, 0), Encoder::address_safe);
                        self.send(message);
                    }
                }
            }
            Change::Route { output, route } => self.on_route(output, route.as_ref(), state),
            Change::Emergency { active, .. } => {
                if *active {
                    self.send_safe_values(state);
                } else {
                    // Resume: outputs go back to what State (and the overlay) shows.
                    self.replay(state);
                }
            }
        }
    }
}

#[cfg(test)]
mod stage_tests;
