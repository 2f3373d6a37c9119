//! The OSC output stage: turns state changes into UDP datagrams for Max/MSP (or any OSC receiver).
//!
//! The only module that knows OSC addresses and argument lists. The stage is owned by the
//! coordinator and called under its lock with each change and the state after it, so a datagram
//! leaves in the same call that applied the command: no queue, no mirror, nothing to fall behind.
//! A failed send is counted and logged, never fatal.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::{OscMessage, OscPacket, OscType};
use tracing::{debug, warn};

use crate::catalog::{Catalog, Output, Parameter, Variable};
use crate::state::{Change, Route, State};
use crate::stats::{LogThrottle, Stats};

/// Which messages to send (`OSC_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OscFormat {
    /// `/cv` and `/routing`, as the existing Max/MSP patches expect.
    Max,
    /// `/lzx/{module}/{instance}/{parameter} f` for every variable, routed or not.
    Address,
    Both,
}

impl OscFormat {
    fn max(self) -> bool {
        matches!(self, Self::Max | Self::Both)
    }
    fn address(self) -> bool {
        matches!(self, Self::Address | Self::Both)
    }
}

/// Builds the OSC messages; pure, so the argument lists are tested without sockets. Every `/cv`
/// voltage it builds is inside its output's hard limit from the catalogue, whatever the route says:
/// the last line of defence behind the checks at every source.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub format: OscFormat,
    catalog: Arc<Catalog>,
}

/// A `/cv` message and whether its voltage had to be brought inside the output's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Cv {
    pub message: OscMessage,
    pub clamped: bool,
}

impl Encoder {
    pub fn new(format: OscFormat, catalog: Arc<Catalog>) -> Encoder {
        Encoder { format, catalog }
    }

    fn value_max(&self) -> u8 {
        self.catalog.value_max()
    }

    /// `/cv ,sfsisi route voltage module instance parameter value`. The voltage is always a float.
    pub fn cv(&self, output: &Output, route: &Route, value: u8) -> Cv {
        let voltage = route.range.voltage(value, self.value_max());
        self.cv_with_voltage(output, &route.variable, voltage, value)
    }

    /// `/cv` carrying the route's safe voltage (emergency stop, clear).
    pub fn cv_safe(&self, output: &Output, route: &Route) -> Cv {
        let value = self.safe_value(route);
        self.cv_with_voltage(output, &route.variable, route.safe, value)
    }

    /// Where the safe voltage sits in the route's range, from 0 to 1.
    fn safe_fraction(route: &Route) -> f32 {
        let span = route.range.high - route.range.low;
        let t = if span == 0.0 { 0.0 } else { (route.safe - route.range.low) / span };
        if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) }
    }

    /// The chat value nearest the safe voltage, shown beside it.
    fn safe_value(&self, route: &Route) -> u8 {
        // Truncation is intended: the fraction is within 0..=1, so the product fits a u8.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = (Self::safe_fraction(route) * f32::from(self.value_max())).round() as u8;
        value
    }

    fn cv_with_voltage(&self, output: &Output, variable: &Variable, voltage: f32, value: u8) -> Cv {
        let limit = self.catalog.output_limit(output);
        let clamped_voltage = limit.clamp(voltage);
        // Compared bit for bit: a NaN is never inside the limit, so it counts as clamped.
        let clamped = clamped_voltage.to_bits() != voltage.to_bits();
        let message = OscMessage {
            addr: "/cv".to_owned(),
            args: vec![
                OscType::String(output.to_string()),
                OscType::Float(clamped_voltage),
                OscType::String(variable.module().to_owned()),
                OscType::Int(i32::from(variable.instance())),
                OscType::String(variable.parameter().to_string()),
                OscType::Int(i32::from(value)),
            ],
        };
        Cv { message, clamped }
    }

    /// `/routing ,sss add output variable`.
    pub fn route_add(output: &Output, variable: &Variable) -> OscMessage {
        OscMessage {
            addr: "/routing".to_owned(),
            args: vec![
                OscType::String("add".into()),
                OscType::String(output.to_string()),
                OscType::String(variable.to_string()),
            ],
        }
    }

    /// `/routing ,ss remove output`.
    pub fn route_remove(output: &Output) -> OscMessage {
        OscMessage {
            addr: "/routing".to_owned(),
            args: vec![OscType::String("remove".into()), OscType::String(output.to_string())],
        }
    }

    /// `/lzx/{module}/{instance}/{parameter} ,f normalized` for a chat value.
    pub fn address(&self, variable: &Variable, value: u8) -> OscMessage {
        Self::address_fraction(variable, f32::from(value.min(self.value_max())) / f32::from(self.value_max().max(1)))
    }

    /// The `/lzx` form of a route's safe voltage: where it sits in the route's range.
    pub fn address_safe(route: &Route) -> OscMessage {
        Self::address_fraction(&route.variable, Self::safe_fraction(route))
    }

    /// `/lzx/{module}/{instance}/{parameter} ,f t` with `t` from 0 to 1. OSC addresses may not
    /// contain `#`, so a numbered parameter such as `thru#2` becomes `thru/2`.
    fn address_fraction(variable: &Variable, t: f32) -> OscMessage {
        let parameter = match variable.parameter() {
            Parameter::Named(n) => n.replace('#', "/"),
            Parameter::InputJack(k) => format!("inputJack/{k}"),
        };
        OscMessage {
            addr: format!("/lzx/{}/{}/{parameter}", variable.module(), variable.instance()),
            args: vec![OscType::Float(t)],
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
    stats: Arc<Stats>,
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
        stats: Arc<Stats>,
        rest_on_shutdown: bool,
    ) -> std::io::Result<OscStage> {
        socket.set_nonblocking(true)?;
        Ok(OscStage {
            socket,
            targets,
            encoder,
            stats,
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

    /// Sends what `change` (already applied to `state`) means for the receiver.
    pub fn on_change(&mut self, change: &Change, state: &State) {
        if let Change::Param { variable, value, .. } = change {
            if let Some(deferred) = self.deferred.as_mut() {
                if !deferred.insert(variable.clone()) {
                    self.stats.osc_coalesced.fetch_add(1, Ordering::Relaxed);
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
            self.stats.osc_clamped.fetch_add(1, Ordering::Relaxed);
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
                    self.stats.osc_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail("send", &format!("{target}: {e}")),
            }
        }
    }

    fn fail(&self, reason: &'static str, detail: &str) {
        self.stats.osc_failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow(reason, Instant::now()) {
            warn!(reason, detail, suppressed, "OSC output failed; the show goes on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, VoltRange};

    fn enc() -> Encoder {
        Encoder::new(OscFormat::Both, Arc::new(Catalog::builtin()))
    }

    #[test]
    fn cv_message_has_the_peer_compatible_argument_list() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.threshold").expect("var"), VoltRange::LZX);
        let Cv { message: msg, clamped } = enc().cv(&out, &route, 127);
        assert!(!clamped);
        assert_eq!(msg.addr, "/cv");
        assert_eq!(
            msg.args,
            vec![
                OscType::String("es9out#1".into()),
                OscType::Float(1.0),
                OscType::String("doorway".into()),
                OscType::Int(1),
                OscType::String("threshold".into()),
                OscType::Int(127),
            ]
        );
        assert_eq!(enc().cv(&out, &route, 0).message.args[1], OscType::Float(0.0), "zero is still a float");
    }

    #[test]
    fn safe_value_message_carries_the_bottom_of_the_range() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.gain").expect("var"), VoltRange { low: 0.8, high: 0.2 });
        let Cv { message, clamped } = enc().cv_safe(&out, &route);
        assert!(!clamped);
        assert_eq!(message.args[1], OscType::Float(0.8));
        assert_eq!(message.args[5], OscType::Int(0));
        assert_eq!(Encoder::address_safe(&Route { safe: 0.5, ..route }).args, vec![OscType::Float(0.5)]);
    }

    #[test]
    fn no_voltage_leaves_the_output_limit_even_when_a_route_would_send_it() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let variable = c.parse_variable("doorway#1.gain").expect("var");
        // Routes no check lets in, built by hand as a future bug might.
        for (range, safe) in [((-1000.0, 1000.0), 1000.0), ((0.0, 3e38), 3e38), ((f32::NAN, 1.0), f32::NAN)] {
            let route = Route { variable: variable.clone(), range: VoltRange { low: range.0, high: range.1 }, safe };
            let wanted = [route.range.voltage(0, 127), route.range.voltage(127, 127), safe];
            let sent = [enc().cv(&out, &route, 0), enc().cv(&out, &route, 127), enc().cv_safe(&out, &route)];
            for (want, cv) in wanted.into_iter().zip(sent) {
                let OscType::Float(v) = cv.message.args[1] else { panic!("a float") };
                assert!((0.0..=1.0).contains(&v), "{v} for {range:?}");
                assert_eq!(cv.clamped, !(0.0..=1.0).contains(&want), "{want} for {range:?} is counted when clamped");
            }
        }
    }

    #[test]
    fn address_form_has_no_hash_signs() {
        let c = Catalog::builtin();
        let msg = enc().address(&c.parse_variable("passage#2.thru#3").expect("var"), 127);
        assert_eq!(msg.addr, "/lzx/passage/2/thru/3");
        assert_eq!(msg.args, vec![OscType::Float(1.0)]);
        let jack = enc().address(&c.parse_variable("arch#1.inputJack#4").expect("var"), 0);
        assert_eq!(jack.addr, "/lzx/arch/1/inputJack/4");
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;
    use crate::catalog::{Catalog, VoltRange};
    use crate::command::parse;
    use crate::coord::{Alone, CoordHandle, Coordinator};
    use crate::gate::{Gate, GatePolicy, Sender};
    use crate::state::{Event, EventKind, Hlc, Stamp};
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
        let stage = OscStage::new(socket, target, encoder, stats.clone(), rest_on_shutdown).expect("stage");
        let me: Arc<str> = "bot-001".into();
        let coordinator = Coordinator::new(
            me.clone(),
            catalog.clone(),
            state,
            Gate::new(&policy, Instant::now()),
            None,
            Arc::new(Alone(me)),
            stats.clone(),
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
        assert_eq!(rig.stats.osc_coalesced.load(Ordering::Relaxed), 49 + 49);
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
        assert!(rig.coord.subscribe().is_none());
    }
}
