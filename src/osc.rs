//! The OSC output stage: turns state changes into UDP datagrams for Max/MSP (or any OSC receiver).
//!
//! The only module that knows OSC addresses and argument lists. It keeps a mirror of routes and values
//! built from the coordinator's change feed, so it never reads State; when it falls behind the feed it
//! resubscribes and reconciles from a fresh snapshot. A failed send is counted and logged, never fatal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::catalog::{Output, Parameter, Variable};
use crate::coord::CoordHandle;
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

/// Builds the OSC messages; pure, so the argument lists are tested without sockets.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub format: OscFormat,
    pub value_max: u8,
}

impl Encoder {
    /// `/cv ,sfsisi route voltage module instance parameter value`. The voltage is always a float.
    pub fn cv(&self, output: &Output, route: &Route, value: u8) -> OscMessage {
        let voltage = route.range.voltage(value, self.value_max);
        Self::cv_with_voltage(output, &route.variable, voltage, value)
    }

    /// `/cv` carrying the route's safe voltage (emergency stop, clear).
    pub fn cv_safe(&self, output: &Output, route: &Route) -> OscMessage {
        let span = route.range.high - route.range.low;
        let t = if span == 0.0 { 0.0 } else { (route.safe - route.range.low) / span };
        // Truncation is intended: the value shown beside a safe voltage is its nearest chat value.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = (t.clamp(0.0, 1.0) * f32::from(self.value_max)).round() as u8;
        Self::cv_with_voltage(output, &route.variable, route.safe, value)
    }

    fn cv_with_voltage(output: &Output, variable: &Variable, voltage: f32, value: u8) -> OscMessage {
        OscMessage {
            addr: "/cv".to_owned(),
            args: vec![
                OscType::String(output.to_string()),
                OscType::Float(voltage),
                OscType::String(variable.module().to_owned()),
                OscType::Int(i32::from(variable.instance())),
                OscType::String(variable.parameter().to_string()),
                OscType::Int(i32::from(value)),
            ],
        }
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

    /// `/lzx/{module}/{instance}/{parameter} ,f normalized`. OSC addresses may not contain `#`, so a
    /// numbered parameter such as `thru#2` becomes `thru/2`.
    pub fn address(&self, variable: &Variable, value: u8) -> OscMessage {
        let parameter = match variable.parameter() {
            Parameter::Named(n) => n.replace('#', "/"),
            Parameter::InputJack(k) => format!("inputJack/{k}"),
        };
        OscMessage {
            addr: format!("/lzx/{}/{}/{parameter}", variable.module(), variable.instance()),
            args: vec![OscType::Float(f32::from(value) / f32::from(self.value_max.max(1)))],
        }
    }
}

/// What the stage believes the receiver has: routes, values, the emergency latch.
#[derive(Debug, Default)]
struct Mirror {
    routes: BTreeMap<Output, Route>,
    values: HashMap<Variable, u8>,
    emergency: bool,
    /// Routes the receiver was told about, so a replay can also send the removals it missed.
    announced: BTreeSet<Output>,
}

impl Mirror {
    fn from_state(state: &State) -> Mirror {
        Mirror {
            routes: state.routes().map(|(o, r)| (o.clone(), r.clone())).collect(),
            values: state.params().map(|(v, p)| (v.clone(), p.value)).collect(),
            emergency: state.emergency().active,
            announced: BTreeSet::new(),
        }
    }

    fn outputs_for<'a>(&'a self, variable: &'a Variable) -> impl Iterator<Item = (&'a Output, &'a Route)> + 'a {
        self.routes.iter().filter(move |(_, r)| r.variable == *variable)
    }
}

/// The running stage: a socket, its targets, the encoder and the mirror.
#[derive(Debug)]
pub struct OscStage {
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    encoder: Encoder,
    mirror: Mirror,
    stats: Arc<Stats>,
    log: LogThrottle,
    /// Send every route's safe value when the process shuts down (`OUTPUT_REST_ON_SHUTDOWN`).
    rest_on_shutdown: bool,
}

impl OscStage {
    pub fn new(
        socket: UdpSocket,
        targets: Vec<SocketAddr>,
        encoder: Encoder,
        stats: Arc<Stats>,
        rest_on_shutdown: bool,
    ) -> OscStage {
        OscStage {
            socket,
            targets,
            encoder,
            mirror: Mirror::default(),
            stats,
            log: LogThrottle::per_minute(),
            rest_on_shutdown,
        }
    }

    /// Follows the coordinator's change feed until `shutdown`. Replays every route at start.
    pub async fn run(mut self, coord: CoordHandle, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(mut sub) = coord.subscribe().await else { return Ok(()) };
        self.resync(&sub.state).await;
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => break,
                c = sub.changes.recv() => c,
            };
            match change {
                Ok(change) => self.on_change(change).await,
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "OSC stage fell behind; resynchronising outputs from a snapshot");
                    self.stats.feed_resyncs.fetch_add(1, Ordering::Relaxed);
                    let Some(fresh) = coord.subscribe().await else { break };
                    sub = fresh;
                    self.resync(&sub.state).await;
                }
                Err(RecvError::Closed) => break,
            }
        }
        if self.rest_on_shutdown {
            self.send_safe_values().await;
        }
        Ok(())
    }

    /// Rebuilds the mirror from `state` and tells the receiver everything again.
    async fn resync(&mut self, state: &State) {
        let announced = std::mem::take(&mut self.mirror.announced);
        self.mirror = Mirror::from_state(state);
        self.mirror.announced = announced;
        self.replay().await;
    }

    /// Sends the whole routing table and, unless stopped, every routed value.
    async fn replay(&mut self) {
        let gone: Vec<Output> =
            self.mirror.announced.iter().filter(|o| !self.mirror.routes.contains_key(*o)).cloned().collect();
        for output in gone {
            self.send(&Encoder::route_remove(&output)).await;
            self.mirror.announced.remove(&output);
        }
        let routes: Vec<(Output, Route)> = self.mirror.routes.iter().map(|(o, r)| (o.clone(), r.clone())).collect();
        for (output, route) in &routes {
            if self.encoder.format.max() {
                self.send(&Encoder::route_add(output, &route.variable)).await;
            }
            self.mirror.announced.insert(output.clone());
        }
        if self.mirror.emergency {
            self.send_safe_values().await;
            return;
        }
        for (output, route) in &routes {
            if let Some(&value) = self.mirror.values.get(&route.variable) {
                self.send_cv(output, route, value).await;
            }
        }
        if self.encoder.format.address() {
            let values: Vec<(Variable, u8)> = self.mirror.values.iter().map(|(v, x)| (v.clone(), *x)).collect();
            for (variable, value) in values {
                self.send(&self.encoder.address(&variable, value)).await;
            }
        }
    }

    async fn on_change(&mut self, change: Change) {
        match change {
            Change::Param { variable, value, .. } => {
                self.mirror.values.insert(variable.clone(), value);
                if self.mirror.emergency {
                    return;
                }
                let routed: Vec<(Output, Route)> =
                    self.mirror.outputs_for(&variable).map(|(o, r)| (o.clone(), r.clone())).collect();
                for (output, route) in &routed {
                    self.send_cv(output, route, value).await;
                }
                if routed.is_empty() {
                    debug!(%variable, value, "unrouted variable updated; no /cv sent");
                }
                if self.encoder.format.address() {
                    self.send(&self.encoder.address(&variable, value)).await;
                }
            }
            Change::Cleared { variables } => {
                for variable in variables.iter() {
                    self.mirror.values.remove(variable);
                }
                if self.mirror.emergency {
                    return;
                }
                for variable in variables.iter() {
                    let routed: Vec<(Output, Route)> =
                        self.mirror.outputs_for(variable).map(|(o, r)| (o.clone(), r.clone())).collect();
                    for (output, route) in &routed {
                        self.send(&self.encoder.cv_safe(output, route)).await;
                    }
                    if self.encoder.format.address() {
                        self.send(&self.encoder.address(variable, 0)).await;
                    }
                }
            }
            Change::Route { output, route } => self.on_route(output, route).await,
            Change::Emergency { active, .. } => {
                self.mirror.emergency = active;
                if active {
                    self.send_safe_values().await;
                } else {
                    // Resume: outputs go back to what State (and the overlay) shows.
                    self.replay().await;
                }
            }
            Change::Overlay { .. } => {}
        }
    }

    async fn on_route(&mut self, output: Output, route: Option<Route>) {
        match route {
            Some(route) => {
                self.mirror.routes.insert(output.clone(), route.clone());
                if self.mirror.emergency {
                    return;
                }
                if self.encoder.format.max() {
                    self.send(&Encoder::route_add(&output, &route.variable)).await;
                }
                self.mirror.announced.insert(output.clone());
                // A newly routed output takes the variable's current value at once.
                if let Some(&value) = self.mirror.values.get(&route.variable) {
                    self.send_cv(&output, &route, value).await;
                }
            }
            None => {
                self.mirror.routes.remove(&output);
                if self.mirror.emergency {
                    return;
                }
                if self.encoder.format.max() {
                    self.send(&Encoder::route_remove(&output)).await;
                }
                self.mirror.announced.remove(&output);
            }
        }
    }

    async fn send_cv(&self, output: &Output, route: &Route, value: u8) {
        if self.encoder.format.max() {
            self.send(&self.encoder.cv(output, route, value)).await;
        }
    }

    /// Every routed output to its safe value, at once.
    async fn send_safe_values(&self) {
        for (output, route) in &self.mirror.routes {
            self.send(&self.encoder.cv_safe(output, route)).await;
        }
    }

    async fn send(&self, message: &OscMessage) {
        let bytes = match rosc::encoder::encode(&OscPacket::Message(message.clone())) {
            Ok(b) => b,
            Err(e) => {
                self.fail("encode", &format!("{e:?}"));
                return;
            }
        };
        for target in &self.targets {
            match self.socket.send_to(&bytes, target).await {
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
        Encoder { format: OscFormat::Both, value_max: 127 }
    }

    #[test]
    fn cv_message_has_the_peer_compatible_argument_list() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.threshold").expect("var"), VoltRange::LZX);
        let msg = enc().cv(&out, &route, 127);
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
        assert_eq!(enc().cv(&out, &route, 0).args[1], OscType::Float(0.0), "zero is still a float");
    }

    #[test]
    fn safe_value_message_carries_the_bottom_of_the_range() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let route = Route::new(c.parse_variable("doorway#1.gain").expect("var"), VoltRange { low: -5.0, high: 5.0 });
        let msg = enc().cv_safe(&out, &route);
        assert_eq!(msg.args[1], OscType::Float(-5.0));
        assert_eq!(msg.args[5], OscType::Int(0));
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
    use crate::catalog::Catalog;
    use crate::command::parse;
    use crate::coord::{Alone, Coordinator};
    use crate::gate::{Gate, GatePolicy, Sender};
    use std::time::Duration;

    /// Regression guard for the slow-reader policy: a stage that falls behind the change feed must
    /// resubscribe and end up sending the latest values, not stop or keep stale ones.
    #[tokio::test]
    async fn a_stage_that_lags_behind_the_feed_resyncs_to_the_latest_values() {
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
        state.seed_route(out, Route::new(variable.clone(), crate::catalog::VoltRange::LZX));
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
        .with_feed_capacity(2);
        let shutdown = CancellationToken::new();
        let (coord, task) = coordinator.spawn(shutdown.clone());
        tokio::spawn(task);

        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let encoder = Encoder { format: OscFormat::Max, value_max: 127 };
        let stage = OscStage::new(socket, vec![receiver.local_addr().expect("addr")], encoder, stats.clone(), false);
        tokio::spawn(stage.run(coord.clone(), shutdown.clone()));

        // Queue a burst of commands at once; the coordinator applies them faster than a 2-slot feed holds.
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..100u8 {
            let coord = coord.clone();
            let command = parse(&format!("doorway#1.gain: {}", i % 128), &catalog).expect("command");
            burst.spawn(async move { coord.submit(Sender::viewer(&format!("v{i}")), command, Instant::now()).await });
        }
        while burst.join_next().await.is_some() {}
        let latest = coord.snapshot().await.expect("state").param(&variable).map(|p| p.value).expect("value");

        let mut last_value = None;
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(500), receiver.recv_from(&mut buf)).await
        {
            let (_, packet) = rosc::decoder::decode_udp(&buf[..n]).expect("osc");
            if let OscPacket::Message(m) = packet
                && m.addr == "/cv"
            {
                last_value = m.args.get(5).cloned();
            }
        }
        assert!(stats.feed_resyncs.load(Ordering::Relaxed) >= 1, "the stage lagged and resynchronised");
        assert_eq!(last_value, Some(OscType::Int(i32::from(latest))), "the output ends at the latest value");
        shutdown.cancel();
    }
}
