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
mod stage_tests {
    use super::*;
    use crate::catalog::{Catalog, VoltRange};
    use crate::command::parse;
    use crate::coord::{CoordHandle, Coordinator};
    use crate::gate::{Gate, GatePolicy, Sender};
    use crate::instances::Alone;
    use crate::osc::OscFormat;
    use crate::state::{Event, EventKind, Hlc, Stamp};
    use rosc::OscType;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    struct Rig {
        coord: CoordHandle,
        catalog: Arc<Catalog>,
        stats: Arc<Stats>,
        receiver: UdpSocket,
        shutdown: CancellationToken,
        /// The coordinator's task: it rests the outputs once `shutdown` is cancelled.
        task: tokio::task::JoinHandle<()>,
    }

    /// A coordinator with an OSC stage sending to a real UDP socket, `es9out#1` routed to `doorway#1.gain`.
    fn rig(rest_on_shutdown: bool) -> Rig {
        let catalog = Arc::new(Catalog::builtin());
        let stats = Arc::new(Stats::default());
        let policy = GatePolicy {
            user_cooldown: Duration::ZERO,
            global_per_second: 0,
            admin_users: std::collections::HashSet::default(),
        };
        let mut state = State::default();
        let out = catalog.output("es9out#1").expect("output");
        let variable = catalog.parse_variable("doorway#1.gain").expect("variable");
        state.seed_route(out, Route::new(variable, VoltRange::LZX));
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Only a bound for a missing datagram: `received` reads up to its own marker.
        receiver.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let encoder = Encoder::new(OscFormat::Max, catalog.clone());
        let target = vec![receiver.local_addr().expect("addr")];
        let stage = OscStage::new(socket, target, encoder, &stats, rest_on_shutdown).expect("stage");
        let me: Arc<str> = "bot-001".into();
        let coordinator = Coordinator::new(
            me.clone(),
            catalog.clone(),
            state,
            Gate::new(&policy, Instant::now()),
            None,
            Arc::new(Alone(me)),
            &stats,
        )
        .with_osc(stage);
        let shutdown = CancellationToken::new();
        let (coord, task) = coordinator.spawn(shutdown.clone());
        let task = tokio::spawn(task);
        Rig { coord, catalog, stats, receiver, shutdown, task }
    }

    /// Every datagram sent here so far, decoded, without waiting for a quiet spell: the socket sends
    /// itself a marker and reads up to it (the stage sends before the call that caused it returns).
    fn received(receiver: &UdpSocket) -> Vec<OscMessage> {
        let marker = OscPacket::Message(OscMessage { addr: "/test/marker".into(), args: vec![] });
        let marker = rosc::encoder::encode(&marker).expect("encode the marker");
        receiver.send_to(&marker, receiver.local_addr().expect("addr")).expect("send the marker");
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            let n = receiver.recv(&mut buf).expect("a datagram, the marker at least");
            let (_, packet) = rosc::decoder::decode_udp(&buf[..n]).expect("osc");
            if let OscPacket::Message(m) = packet {
                if m.addr == "/test/marker" {
                    return out;
                }
                out.push(m);
            }
        }
    }

    fn cv_values(messages: &[OscMessage]) -> Vec<(String, OscType)> {
        messages
            .iter()
            .filter(|m| m.addr == "/cv")
            .map(|m| (m.args[0].clone().string().unwrap_or_default(), m.args[5].clone()))
            .collect()
    }

    fn remote(catalog: &Catalog, hlc: u64, variable: &str, value: u8) -> Event {
        Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_800_000_000_000) + hlc, instance: "bot-002".into() },
            wall_ms: 1_800_000_000_000,
            user: "far".into(),
            kind: EventKind::Set { variable: catalog.parse_variable(variable).expect("variable"), value },
        }
    }

    #[tokio::test]
    async fn the_datagram_is_sent_before_the_command_returns_in_order_for_every_command() {
        let rig = rig(false);
        let replayed = received(&rig.receiver);
        assert_eq!(replayed.len(), 1, "the route is announced at start: {replayed:?}");
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let (coord, catalog) = (rig.coord.clone(), rig.catalog.clone());
                tokio::spawn(async move {
                    for i in 0..30u8 {
                        let command = parse(&format!("doorway#1.gain: {}", t * 30 + i), &catalog).expect("command");
                        coord.submit(&Sender::viewer(&format!("v{t}")), command, Instant::now());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let latest = rig
            .coord
            .snapshot()
            .expect("state")
            .param(&rig.catalog.parse_variable("doorway#1.gain").expect("v"))
            .map(|p| p.value)
            .expect("value");
        let values = cv_values(&received(&rig.receiver));
        assert_eq!(values.len(), 120, "one /cv per command, nothing coalesced outside a batch");
        assert_eq!(values.last().map(|(_, v)| v.clone()), Some(OscType::Int(i32::from(latest))), "ends at the state");
        rig.shutdown.cancel();
    }

    #[tokio::test]
    async fn a_batch_sends_each_variable_once_at_its_last_value_and_keeps_order_around_other_changes() {
        let rig = rig(true);
        received(&rig.receiver);
        let c = &rig.catalog;
        let mut batch: Vec<Event> = (0..50u8).map(|i| remote(c, u64::from(i), "doorway#1.gain", i)).collect();
        // A route in the middle: the value as it stood goes out first, then the new output takes it.
        let route = Route::new(c.parse_variable("doorway#1.gain").expect("v"), VoltRange::LZX);
        batch.push(Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_800_000_000_000) + 50, instance: "bot-002".into() },
            wall_ms: 1_800_000_000_000,
            user: "mod".into(),
            kind: EventKind::Route { output: c.output("es9out#2").expect("output"), route: Some(route) },
        });
        batch.extend((50..100u8).map(|i| remote(c, 100 + u64::from(i), "doorway#1.gain", i)));
        // An emergency stop later in the same batch: the last value goes out first, then the safe values.
        batch.push(Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_800_000_000_000) + 500, instance: "bot-002".into() },
            wall_ms: 1_800_000_000_000,
            user: "mod".into(),
            kind: EventKind::Emergency { active: true, message: None },
        });
        batch.push(remote(c, 600, "doorway#1.gain", 120));
        assert!(rig.coord.apply_remote_batch(&batch));
        let values = cv_values(&received(&rig.receiver));
        let at = |output: &str, value: i32| (output.to_owned(), OscType::Int(value));
        assert_eq!(
            values,
            vec![
                at("es9out#1", 49),
                at("es9out#2", 49),
                at("es9out#1", 99),
                at("es9out#2", 99),
                at("es9out#1", 0),
                at("es9out#2", 0)
            ],
            "each value as it stood before the route and the stop, then the safe values; nothing while stopped"
        );
        assert_eq!(rig.stats.snapshot()["osc_coalesced"], 49 + 49);
        assert_eq!(
            rig.coord
                .snapshot()
                .expect("state")
                .param(&c.parse_variable("doorway#1.gain").expect("v"))
                .map(|p| p.value),
            Some(120),
            "State still applied every event"
        );
        // Shutdown rests the outputs at their safe values, once, and later calls are refused.
        rig.shutdown.cancel();
        rig.task.await.expect("the coordinator's task");
        assert_eq!(cv_values(&received(&rig.receiver)), vec![at("es9out#1", 0), at("es9out#2", 0)]);
        assert!(!rig.coord.apply_remote(&remote(c, 700, "doorway#1.gain", 5)));
        assert!(rig.coord.snapshot().is_none());
    }
}
