//! The output stage: the coordinator's first observer. A value that jumps is sent as it is applied;
//! an output that must travel (a slew limit on its route, a timed ramp on its value) is stepped at
//! each tick until it arrives. Stops and clears cut through both.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::OscMessage;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::counters::OscCounters;
use super::encode::{Cv, Encoder};
use super::send::Wire;
use crate::catalog::{Output, Variable};
use crate::clock::wall_ms_now;
use crate::observe::Observer;
use crate::state::{Change, Event, Route, State};
use crate::stats::{LogThrottle, Stats};

/// How the stage behaves beyond what it sends.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Send every route's safe value when the process shuts down (`OUTPUT_REST_ON_SHUTDOWN`).
    pub rest_on_shutdown: bool,
    /// Gather what one call sends (a tick, a stop, a batch) into OSC bundles (`OSC_BUNDLE`).
    pub bundle: bool,
    /// Named in every heartbeat.
    pub instance: Arc<str>,
}

/// The output stage: a socket, its targets, the encoder and the outputs in motion. It lives inside
/// the coordinator and is called under its lock with each change and the state after it, and at
/// each tick, so its output is always in the order State applied and it needs no mirror of its own.
#[derive(Debug)]
pub struct OscStage {
    wire: Wire,
    encoder: Encoder,
    counters: Arc<OscCounters>,
    log: LogThrottle,
    options: StageOptions,
    /// Routes the receiver was told about, so a replay can also send the removals it missed.
    announced: BTreeSet<Output>,
    /// While a batch is applied: variables whose values are sent once, at the end of the batch.
    deferred: Option<HashSet<Variable>>,
    /// The voltage each output was last sent: where its slew starts.
    at: HashMap<Output, f32>,
    /// Outputs on their way to their target, and when each last stepped.
    moving: BTreeMap<Output, Instant>,
    /// Variables whose `/lzx` form follows a ramp.
    ramping: BTreeSet<Variable>,
    /// Woken when something starts moving, so the ticker can sleep while nothing does.
    wake: Arc<Notify>,
    beats: u64,
}

impl OscStage {
    /// `socket` is switched to non-blocking: a send that would block is counted as failed, never waited for.
    pub fn new(
        socket: UdpSocket,
        targets: Vec<SocketAddr>,
        encoder: Encoder,
        stats: &Stats,
        options: StageOptions,
    ) -> std::io::Result<OscStage> {
        socket.set_nonblocking(true)?;
        let counters = Arc::new(OscCounters::default());
        stats.register(counters.clone());
        Ok(OscStage {
            wire: Wire::new(socket, targets, options.bundle, counters.clone()),
            encoder,
            counters,
            log: LogThrottle::per_minute(),
            options,
            announced: BTreeSet::new(),
            deferred: None,
            at: HashMap::new(),
            moving: BTreeMap::new(),
            ramping: BTreeSet::new(),
            wake: Arc::new(Notify::new()),
            beats: 0,
        })
    }

    /// Notified whenever an output starts moving: the ticker waits on it while nothing moves.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// True while an output (or a ramp's `/lzx` form) is still travelling.
    pub fn is_moving(&self) -> bool {
        !self.moving.is_empty() || !self.ramping.is_empty()
    }

    /// Sends the whole routing table (and the removals of routes the receiver may still hold) and,
    /// unless stopped, every routed value: at start, and when an emergency stop is lifted (outputs
    /// with a slew limit travel there from their safe value).
    pub fn replay(&mut self, state: &State) {
        let gone: Vec<Output> = self.announced.iter().filter(|o| state.route(o).is_none()).cloned().collect();
        for output in gone {
            self.wire.push(Encoder::route_remove(&output));
            self.announced.remove(&output);
        }
        for (output, route) in state.routes() {
            if self.encoder.format.max {
                self.wire.push(Encoder::route_add(output, &route.variable));
            }
            self.announced.insert(output.clone());
        }
        if state.emergency().active {
            self.send_safe_values(state);
            return;
        }
        let (now, wall_ms) = (Instant::now(), wall_ms_now());
        for (output, route) in state.routes() {
            if let Some(entry) = state.param(&route.variable) {
                self.place(output, route, entry, now, wall_ms);
            }
        }
        if self.encoder.format.address {
            for (variable, entry) in state.params() {
                self.place_address(variable, entry, wall_ms);
            }
        }
        self.wire.flush();
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
            self.send_value(variable, state);
        }
        self.wire.flush();
    }

    /// The process is stopping: rest every routed output if configured to. Nothing moves after.
    pub fn shut_down(&mut self, state: &State) {
        if self.options.rest_on_shutdown {
            self.send_safe_values(state);
        }
        self.stop_moving();
    }

    /// `/cvbot/heartbeat ,si instance seq` to every target, `seq` counting from 1.
    pub fn heartbeat(&mut self) {
        self.beats += 1;
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.wire.push(Encoder::heartbeat(&self.options.instance, self.beats));
        self.wire.flush();
    }

    fn routed<'a>(state: &'a State, variable: &'a Variable) -> impl Iterator<Item = (&'a Output, &'a Route)> + 'a {
        state.routes().filter(move |(_, r)| r.variable == *variable)
    }

    /// Sends the value `state` holds for `variable` to every output routed to it, and its `/lzx`
    /// form: at once, or by setting it travelling.
    fn send_value(&mut self, variable: &Variable, state: &State) {
        if state.emergency().active {
            return;
        }
        let Some(entry) = state.param(variable) else { return };
        let (now, wall_ms) = (Instant::now(), wall_ms_now());
        let mut routed = false;
        for (output, route) in Self::routed(state, variable) {
            routed = true;
            self.place(output, route, entry, now, wall_ms);
        }
        if !routed {
            debug!(%variable, value = entry.value, "unrouted variable updated; no /cv sent");
        }
        if self.encoder.format.address {
            self.place_address(variable, entry, wall_ms);
        }
    }

    fn on_route(&mut self, output: &Output, route: Option<&Route>, state: &State) {
        if state.emergency().active {
            return;
        }
        match route {
            Some(route) => {
                if self.encoder.format.max {
                    self.wire.push(Encoder::route_add(output, &route.variable));
                }
                self.announced.insert(output.clone());
                // A newly routed output takes the variable's current value (through its slew).
                if let Some(entry) = state.param(&route.variable) {
                    self.place(output, route, entry, Instant::now(), wall_ms_now());
                }
            }
            None => {
                if self.encoder.format.max {
                    self.wire.push(Encoder::route_remove(output));
                }
                self.announced.remove(output);
                self.moving.remove(output);
            }
        }
    }

    /// `output` at `volts` in every per-output form the format enables (`/cv`, `/es9out/1`).
    fn send_jack(&mut self, output: &Output, route: &Route, volts: f32, value: u8) {
        if self.encoder.format.max {
            let cv = self.encoder.cv_at(output, route, volts, value);
            self.send_limited(cv);
        }
        if self.encoder.format.output {
            let cv = self.encoder.output_at(output, volts);
            self.send_limited(cv);
        }
        self.at.insert(output.clone(), volts);
    }

    /// `output` to its route's safe voltage at once, in every per-output form; it stops travelling.
    fn send_safe(&mut self, output: &Output, route: &Route) {
        self.moving.remove(output);
        if self.encoder.format.max {
            let cv = self.encoder.cv_safe(output, route);
            self.send_limited(cv);
        }
        if self.encoder.format.output {
            let cv = self.encoder.output_at(output, route.safe);
            self.send_limited(cv);
        }
        self.at.insert(output.clone(), route.safe);
    }

    /// Every routed output to its safe value, at once (no slew), in every form the format enables:
    /// `/cv` and `/es9out/1` for the output, `/lzx/…` (the safe voltage's place in the route's
    /// range) for generic receivers, one per variable, from its first route. Nothing travels after.
    /// The coordinator calls it again when an emergency stop is pressed while one is active.
    pub fn send_safe_values(&mut self, state: &State) {
        self.stop_moving();
        let mut told = HashSet::new();
        for (output, route) in state.routes() {
            self.send_safe(output, route);
            if self.encoder.format.address && told.insert(&route.variable) {
                self.wire.push(Encoder::address_safe(route));
            }
        }
        self.wire.flush();
    }

    /// Sends a message, counting (and logging once a minute) a voltage the encoder had to bring
    /// inside its output's limit: that means a check upstream let a bad route through.
    fn send_limited(&mut self, cv: Cv) {
        if cv.clamped {
            self.counters.clamped.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.log.allow("clamped", Instant::now()) {
                warn!(message = ?cv.message, suppressed, "a voltage outside its output's limit was clamped");
            }
        }
        self.send(cv.message);
    }

    fn send(&mut self, message: OscMessage) {
        self.wire.push(message);
    }
}

impl Observer for OscStage {
    /// Sends what `change` (already applied to `state`) means for the receiver.
    fn on_change(&mut self, _event: &Event, change: &Change, state: &State) {
        match change {
            Change::Param { variable, .. } => {
                if let Some(deferred) = self.deferred.as_mut() {
                    if !deferred.insert(variable.clone()) {
                        self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                self.send_value(variable, state);
            }
            // Show control moves no output by itself: a vote's result and a scene's recall arrive as
            // parameter changes.
            Change::Overlay { .. }
            | Change::Mode { .. }
            | Change::Lock { .. }
            | Change::Scene { .. }
            | Change::Vote { .. } => {}
            Change::Cleared { variables } => {
                if state.emergency().active {
                    return;
                }
                for variable in variables.iter() {
                    self.ramping.remove(variable);
                    let mut first = None;
                    for (output, route) in Self::routed(state, variable) {
                        self.send_safe(output, route);
                        first.get_or_insert(route);
                    }
                    if self.encoder.format.address {
                        let message = first.map_or_else(|| self.encoder.address(variable, 0), Encoder::address_safe);
                        self.wire.push(message);
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
        self.wire.flush();
    }
}

mod travel;

#[cfg(test)]
mod stage_tests;
