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
        rig.coord.snapshot().expect("state").param(&c.parse_variable("doorway#1.gain").expect("v")).map(|p| p.value),
        Some(120),
        "State still applied every event"
    );
    // Shutdown rests the outputs at their safe values, once, and later calls are refused.
    rig.shutdown.cancel();
    rig.task.await.expect("the coordinator's task");
    assert_eq!(cv_values(&received(&rig.receiver)), vec![at("es9out#1", 0), at("es9out#2", 0)]);
    assert!(!rig.coord.apply_remote(&remote(c, 700, "doorway#1.gain", 5)));
    assert!(!rig.coord.is_open());
    assert!(rig.coord.snapshot().is_none());
}
