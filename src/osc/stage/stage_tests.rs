use super::*;
use crate::catalog::{Catalog, VoltRange};
use crate::clock::wall_ms_now;
use crate::command::parse;
use crate::coord::{CoordHandle, Coordinator, Outcome};
use crate::gate::{Gate, GatePolicy, Sender};
use crate::instances::Alone;
use crate::osc::OscFormat;
use crate::state::{Event, EventKind, Hlc, Stamp};
use rosc::{OscPacket, OscType};
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
    rig_with(OscFormat::MAX, false, rest_on_shutdown)
}

fn rig_with(format: OscFormat, bundle: bool, rest_on_shutdown: bool) -> Rig {
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
    let encoder = Encoder::new(format, catalog.clone());
    let target = vec![receiver.local_addr().expect("addr")];
    let options = StageOptions { rest_on_shutdown, bundle, instance: "bot-001".into() };
    let stage = OscStage::new(socket, target, encoder, &stats, options).expect("stage");
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
    received_packets(receiver)
        .into_iter()
        .flat_map(|p| match p {
            OscPacket::Message(m) => vec![m],
            OscPacket::Bundle(b) => b
                .content
                .into_iter()
                .filter_map(|p| match p {
                    OscPacket::Message(m) => Some(m),
                    OscPacket::Bundle(_) => None,
                })
                .collect(),
        })
        .collect()
}

/// Every packet (message or bundle) sent here so far, up to the marker.
fn received_packets(receiver: &UdpSocket) -> Vec<OscPacket> {
    let marker = OscPacket::Message(OscMessage { addr: "/test/marker".into(), args: vec![] });
    let marker = rosc::encoder::encode(&marker).expect("encode the marker");
    receiver.send_to(&marker, receiver.local_addr().expect("addr")).expect("send the marker");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let n = receiver.recv(&mut buf).expect("a datagram, the marker at least");
        let (_, packet) = rosc::decoder::decode_udp(&buf[..n]).expect("osc");
        if matches!(&packet, OscPacket::Message(m) if m.addr == "/test/marker") {
            return out;
        }
        out.push(packet);
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
        kind: EventKind::Set { variable: catalog.parse_variable(variable).expect("variable"), value, ramp: None },
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

// ---- motion: slew limits, ramps, stops, bundles, heartbeats (time passed in) ----

fn say(rig: &Rig, line: &str) -> Outcome {
    let command = parse(line, &rig.catalog).expect("a command");
    rig.coord.submit(&Sender::operator("op"), command, Instant::now())
}

fn voltages(messages: &[OscMessage]) -> Vec<f32> {
    messages
        .iter()
        .filter(|m| m.addr == "/cv")
        .map(|m| match m.args[1] {
            OscType::Float(v) => v,
            ref other => panic!("a float voltage, not {other:?}"),
        })
        .collect()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-4
}

#[tokio::test]
async fn a_slewing_output_moves_at_its_rate_arrives_exactly_and_then_sends_nothing() {
    let rig = rig(false);
    assert!(matches!(say(&rig, "!admin slew es9out#1 2"), Outcome::Done(_)));
    say(&rig, "doorway#1.gain: 0");
    received(&rig.receiver);
    say(&rig, "doorway#1.gain: 127");
    // Taken after the command: its output started travelling a few microseconds before.
    let (t0, wall) = (Instant::now(), wall_ms_now());
    assert!(received(&rig.receiver).is_empty(), "a slewing output waits for the tick");
    let mut steps = Vec::new();
    for k in 1..=8u32 {
        let moving = rig.coord.tick(t0 + Duration::from_millis(100) * k, wall + u64::from(k) * 100);
        steps.extend(voltages(&received(&rig.receiver)));
        assert_eq!(moving, Some(k < 5), "still travelling after step {k}");
    }
    // 2 V/s for 100 ms is 0.2 V a step; 1 V takes 500 ms, then nothing more is sent.
    assert_eq!(steps.len(), 5, "{steps:?}");
    for (step, want) in steps.iter().zip([0.2, 0.4, 0.6, 0.8, 1.0]) {
        assert!(close(*step, want), "{steps:?}");
    }
    assert_eq!(steps.last(), Some(&1.0), "the last step lands exactly on the target");
    rig.shutdown.cancel();
}

#[tokio::test]
async fn a_ramp_follows_its_line_from_where_the_value_stood_and_a_new_ramp_starts_from_the_middle() {
    let rig = rig(false);
    say(&rig, "doorway#1.gain: 0");
    received(&rig.receiver);
    let t0 = Instant::now();
    say(&rig, "doorway#1.gain: 100 over 1s");
    let start = rig.coord.snapshot().expect("state");
    let entry = start.param(&rig.catalog.parse_variable("doorway#1.gain").expect("v")).expect("entry").clone();
    assert_eq!(
        (entry.value, entry.ramp),
        (100, Some(crate::motion::Ramp { from: 0.0, ms: 1000 })),
        "the register holds the target"
    );
    let wall = entry.wall_ms;
    rig.coord.tick(t0 + Duration::from_millis(500), wall + 500);
    let half = voltages(&received(&rig.receiver));
    assert_eq!(half.len(), 1);
    assert!(close(half[0], 50.0 / 127.0), "half way at half time: {half:?}");
    // A new ramp on the same parameter starts from where the first one is (on the real clock: at
    // least 100 ms into it, so at least 10), not from its target.
    std::thread::sleep(Duration::from_millis(100));
    say(&rig, "doorway#1.gain: 0 over 500ms");
    received(&rig.receiver);
    let second = rig.coord.snapshot().expect("state");
    let ramp =
        second.param(&rig.catalog.parse_variable("doorway#1.gain").expect("v")).and_then(|p| p.ramp).expect("a ramp");
    assert!(ramp.from >= 10.0 && ramp.from < 100.0, "started from the middle of the first ramp: {ramp:?}");
    assert_eq!(rig.coord.tick(t0 + Duration::from_secs(5), wall + 5000), Some(false), "both ramps are over");
    assert_eq!(voltages(&received(&rig.receiver)), vec![0.0], "it ends exactly at its target");
    assert_eq!(rig.coord.tick(t0 + Duration::from_secs(6), wall + 6000), Some(false));
    assert!(received(&rig.receiver).is_empty(), "an idle output sends nothing");
    rig.shutdown.cancel();
}

#[tokio::test]
async fn a_stop_cuts_through_a_slew_and_resume_slews_back_from_the_safe_value() {
    let rig = rig(false);
    say(&rig, "!admin slew es9out#1 0.5");
    say(&rig, "doorway#1.gain: 0");
    let (t0, wall) = (Instant::now(), wall_ms_now());
    say(&rig, "doorway#1.gain: 127");
    rig.coord.tick(t0 + Duration::from_millis(400), wall + 400);
    received(&rig.receiver);
    assert!(matches!(say(&rig, "!admin emergency stop"), Outcome::Done(_)));
    assert_eq!(voltages(&received(&rig.receiver)), vec![0.0], "the safe value at once, no slew");
    assert_eq!(rig.coord.tick(t0 + Duration::from_millis(800), wall + 800), Some(false));
    assert!(received(&rig.receiver).is_empty(), "no step follows a stop");
    assert!(matches!(say(&rig, "!admin resume"), Outcome::Done(_)));
    let resumed = voltages(&received(&rig.receiver));
    assert!(resumed.is_empty(), "a slewing output does not jump back: {resumed:?}");
    let t1 = Instant::now();
    rig.coord.tick(t1 + Duration::from_millis(200), wall_ms_now() + 200);
    let step = voltages(&received(&rig.receiver));
    assert_eq!(step.len(), 1);
    assert!(step[0] > 0.05 && step[0] < 0.15, "0.5 V/s from the safe value: {step:?}");
    // Clear is a stop for the values it clears: at once, and the slew is over.
    say(&rig, "!admin clear");
    assert_eq!(voltages(&received(&rig.receiver)), vec![0.0]);
    assert_eq!(rig.coord.tick(t1 + Duration::from_secs(3), wall_ms_now() + 3000), Some(false));
    assert!(received(&rig.receiver).is_empty());
    rig.shutdown.cancel();
}

#[tokio::test]
async fn per_output_addresses_and_one_bundle_per_tick() {
    let rig = rig_with(OscFormat { max: true, address: false, output: true }, true, false);
    say(&rig, "!admin es9out#2 → doorway#1.threshold slew 1");
    say(&rig, "!admin slew es9out#1 1");
    say(&rig, "doorway#1.gain: 0");
    say(&rig, "doorway#1.threshold: 0");
    let jumped = received(&rig.receiver);
    assert!(jumped.iter().any(|m| m.addr == "/es9out/1" && m.args == vec![OscType::Float(0.0)]), "{jumped:?}");
    let (t0, wall) = (Instant::now(), wall_ms_now());
    say(&rig, "doorway#1.gain: 127");
    say(&rig, "doorway#1.threshold: 127");
    received(&rig.receiver);
    rig.coord.tick(t0 + Duration::from_millis(100), wall + 100);
    let packets = received_packets(&rig.receiver);
    assert_eq!(packets.len(), 1, "one tick, one datagram: {packets:?}");
    let OscPacket::Bundle(bundle) = &packets[0] else { panic!("a bundle, not {packets:?}") };
    let addrs: Vec<&str> = bundle
        .content
        .iter()
        .filter_map(|p| match p {
            OscPacket::Message(m) => Some(m.addr.as_str()),
            OscPacket::Bundle(_) => None,
        })
        .collect();
    assert_eq!(addrs, vec!["/cv", "/es9out/1", "/cv", "/es9out/2"]);
    assert!(rig.stats.snapshot()["osc_bundles"] >= 1);
    rig.shutdown.cancel();
}

#[tokio::test]
async fn heartbeats_name_the_instance_and_count_up() {
    let rig = rig(false);
    received(&rig.receiver);
    for _ in 0..3 {
        assert!(rig.coord.heartbeat());
    }
    let beats: Vec<OscType> = received(&rig.receiver)
        .into_iter()
        .filter(|m| m.addr == crate::osc::HEARTBEAT_ADDR)
        .inspect(|m| assert_eq!(m.args[0], OscType::String("bot-001".into())))
        .map(|m| m.args[1].clone())
        .collect();
    assert_eq!(beats, vec![OscType::Int(1), OscType::Int(2), OscType::Int(3)]);
    rig.shutdown.cancel();
    rig.task.await.expect("the coordinator's task");
    assert!(!rig.coord.heartbeat(), "no beat after shutdown");
}
