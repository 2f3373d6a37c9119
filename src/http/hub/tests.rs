use super::*;
use crate::catalog::Catalog;
use crate::coord::Coordinator;
use crate::gate::{Gate, GatePolicy};
use crate::instances::Alone;
use crate::state::{Event, EventKind, Stamp};
use crate::stats::Stats;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A coordinator with the hub attached.
fn start() -> (CoordHandle, HubHandle, Arc<Catalog>) {
    let (coord, hub, catalog, _closer) = start_until(CancellationToken::new());
    (coord, hub, catalog)
}

/// A coordinator with the hub attached, and the future that closes it once `shutdown` fires.
fn start_until(shutdown: CancellationToken) -> (CoordHandle, HubHandle, Arc<Catalog>, impl Future<Output = ()> + Send) {
    let catalog = Arc::new(Catalog::builtin());
    let stats = Arc::new(Stats::default());
    let me: Arc<str> = "bot-001".into();
    let policy = GatePolicy {
        user_cooldown: Duration::ZERO,
        global_per_second: 0,
        admin_users: std::collections::HashSet::default(),
    };
    let coordinator = Coordinator::new(
        me.clone(),
        catalog.clone(),
        State::default(),
        Gate::new(&policy, Instant::now()),
        None,
        Arc::new(Alone(me.clone())),
        &stats,
    );
    let (coord, closer) = coordinator.spawn(shutdown);
    let hub = Hub::new(me, 127, coord.clone()).attach().expect("hub");
    (coord, hub, catalog, closer)
}

fn remote_set(catalog: &Catalog, hlc: u64, name: &str, value: u8) -> Event {
    let variable = catalog.parse_variable(name).expect("test variable");
    Event {
        stamp: Stamp { hlc, instance: "bot-002".into() },
        wall_ms: 1_700_000_000_000,
        user: "remote_viewer".into(),
        kind: EventKind::Set { variable, value, ramp: None },
    }
}

/// Every variable of the built-in catalogue, for tests that need many distinct keys.
fn many_variables(catalog: &Catalog) -> Vec<String> {
    let mut names = Vec::new();
    for (module, (_, instances, parameters)) in catalog.modules() {
        for i in 1..=instances {
            names.extend(parameters.iter().map(|p| format!("{module}#{i}.{p}")));
        }
    }
    names
}

#[test]
fn a_slow_client_gets_a_snapshot_and_never_holds_back_a_fast_one() {
    let (coord, hub, catalog) = start();
    let slow = hub.connect(None).expect("slow client");
    let fast = hub.connect(None).expect("fast client");
    assert_eq!(slow.queue.pop().map(|e| e.name), Some(EventName::Snapshot));
    let first = fast.queue.pop().expect("snapshot").id;
    let names = many_variables(&catalog);
    let total = CLIENT_QUEUE + 44;
    assert!(names.len() >= total, "enough distinct variables");
    let mut fast_ids = Vec::new();
    for (n, name) in names.iter().take(total).enumerate() {
        assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 1)));
        if n % 50 == 49 || n + 1 == total {
            fast_ids.extend(std::iter::from_fn(|| fast.queue.pop()).map(|e| e.id));
        }
    }
    assert_eq!(fast_ids, (first + 1..=first + total as u64).collect::<Vec<_>>(), "the fast client got everything");
    let slow_events: Vec<HubEvent> = std::iter::from_fn(|| slow.queue.pop()).collect();
    assert_eq!(slow_events[0].name, EventName::Snapshot, "the slow client was resynchronised");
    assert!(slow_events[0].data.contains("remote_viewer"));
    assert!(slow_events.len() < CLIENT_QUEUE, "its queue stayed bounded: {}", slow_events.len());
    assert_eq!(slow_events.last().map(|e| e.id), Some(first + total as u64), "and it is current");
    assert_eq!(hub.client_resyncs(), 1);
}

#[test]
fn history_entries_carry_the_events_stamp_instance_and_origin() {
    let (coord, hub, catalog) = start();
    let op = crate::gate::Sender::operator("op");
    let command = crate::command::parse("!admin es9out#1 → doorway#2.gain", &catalog).expect("valid line");
    assert!(matches!(coord.submit(&op, command, Instant::now()), crate::coord::Outcome::Done(_)));
    let far = remote_set(&catalog, u64::MAX >> 1, "doorway#2.gain", 64);
    assert!(coord.apply_remote(&far));
    let history = hub.history(None, 10);
    assert_eq!(history.len(), 2);
    let (param, route) = (&history[0], &history[1]);
    assert_eq!(param.kind, "parameter_update");
    assert_eq!((param.instance.as_ref(), param.hlc, param.remote), ("bot-002", u64::MAX >> 1, true));
    assert_eq!((param.timestamp, param.user.as_ref()), (1_700_000_000_000, "remote_viewer"), "the maker's wall time");
    assert_eq!(route.kind, "routing_change");
    assert_eq!((route.instance.as_ref(), route.user.as_ref(), route.remote), ("bot-001", "op", false));
    assert!(route.hlc > 0 && route.hlc < param.hlc);
    // And the snapshot a new client gets is the coordinator's state, read under its lock.
    let before = wall_ms_now();
    let client = hub.connect(None).expect("client");
    let snapshot: serde_json::Value = serde_json::from_str(&client.queue.pop().expect("snapshot").data).expect("json");
    let server_time = snapshot["server_time_ms"].as_u64().expect("the server's clock");
    assert!((before..=wall_ms_now()).contains(&server_time), "{server_time} is when it was handed out");
    assert_eq!(snapshot["instance_id"], "bot-001");
    assert_eq!(snapshot["parameters"]["doorway#2.gain"]["remote"], true);
    assert_eq!(snapshot["parameters"]["doorway#2.gain"]["route"], "es9out#1");
    assert_eq!(snapshot["routes"]["es9out#1"], "doorway#2.gain");
}

#[test]
fn stamping_puts_the_servers_time_first_in_a_snapshot() {
    let body = r#"{"instance_id":"bot-001","routes":{}}"#;
    let (early, late) = (render::stamped(7, body, 1_000), render::stamped(7, body, 61_000));
    assert_eq!(&*early.data, r#"{"server_time_ms":1000,"instance_id":"bot-001","routes":{}}"#);
    assert_eq!(&*late.data, r#"{"server_time_ms":61000,"instance_id":"bot-001","routes":{}}"#);
    assert_eq!((late.id, late.name), (7, EventName::Snapshot));
    assert_eq!(&*render::stamped(1, "{}", 5).data, r#"{"server_time_ms":5}"#);
}

#[test]
fn a_resume_is_a_replay_only_while_it_fits_a_client_queue() {
    let (coord, hub, catalog) = start();
    let first = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
    let names = many_variables(&catalog);
    for (n, name) in names.iter().take(CLIENT_QUEUE + 1).enumerate() {
        assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 7)));
    }
    let behind = hub.connect(Some(first)).expect("client");
    assert_eq!(behind.queue.pop().map(|e| e.name), Some(EventName::Snapshot), "too many missed: a snapshot");
    assert!(behind.queue.pop().is_none());
    let close = hub.connect(Some(first + 1)).expect("client");
    let replayed: Vec<HubEvent> = std::iter::from_fn(|| close.queue.pop()).collect();
    assert_eq!(replayed.len(), CLIENT_QUEUE, "exactly the missed updates");
    assert!(replayed.iter().all(|e| e.name == EventName::Update));
    assert_eq!(replayed.first().map(|e| e.id), Some(first + 2));
}

#[test]
fn a_late_render_shows_what_an_immediate_one_showed() {
    let (coord, hub, catalog) = start();
    let op = crate::gate::Sender::operator("op");
    let submit = |line: &str| {
        let command = crate::command::parse(line, &catalog).expect("valid line");
        assert!(matches!(coord.submit(&op, command, Instant::now()), crate::coord::Outcome::Done(_)));
    };
    submit("!admin es9out#1 → doorway#1.threshold");
    let start = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
    // No client connected: the ring keeps this update unrendered.
    submit("doorway#1.threshold: 89");
    // A client connected: this one is rendered at once.
    let now = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
    let live = hub.connect(Some(now)).expect("live client");
    submit("doorway#1.gain: 5");
    let live_update = live.queue.pop().expect("the update, live");
    drop(live);
    // The route goes after both: a late render must still show the route and voltage as they
    // were when the value was applied.
    submit("!admin remove es9out#1");
    let replay = hub.connect(Some(start)).expect("resuming client");
    let replayed: Vec<HubEvent> = std::iter::from_fn(|| replay.queue.pop()).collect();
    assert_eq!(replayed.len(), 3, "two parameter updates and the routing change");
    assert_eq!(replayed[1].data, live_update.data);
    let late: serde_json::Value = serde_json::from_str(&replayed[0].data).expect("json");
    let eager: serde_json::Value = serde_json::from_str(&live_update.data).expect("json");
    assert_eq!(late["type"], "parameter");
    assert_eq!(late["variable"], "doorway#1.threshold");
    assert_eq!(late["parameter"]["value"], 89);
    assert_eq!(late["parameter"]["route"], "es9out#1", "the route as it was");
    assert!(late["parameter"]["voltage"].as_f64().is_some_and(|v| v > 0.0));
    assert_eq!(late["parameter"]["user"], "op");
    assert_eq!(late["parameter"]["remote"], false);
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["parameter"].as_object().expect("object").keys().cloned().collect();
        k.extend(v.as_object().expect("object").keys().cloned());
        k.sort();
        k
    };
    assert_eq!(keys(&late), keys(&eager), "a late render has the shape of an immediate one");
    assert!(eager["parameter"]["route"].is_null(), "gain was never routed");
    let history = hub.history(Some("parameter_update"), 10);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].data["variable"], "doorway#1.gain", "newest first");
    assert_eq!(history[0].data["value"], 5);
    assert_eq!(history[1].data["value"], 89);
    assert_eq!(history[1].data["source_instance"], "bot-001");
    assert!(!history[1].remote);
}

#[test]
fn after_shutdown_the_hub_takes_no_new_client() {
    let token = CancellationToken::new();
    let (_coord, hub, _catalog, closer) = start_until(token.clone());
    assert!(hub.connect(None).is_some());
    token.cancel();
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(closer);
    assert!(hub.connect(None).is_none(), "a new SSE request gets 503 while shutting down");
}
