//! Several real instances against real `redis-server` processes: convergence, the older bots' wire
//! format, outages, deaf subscriptions, joins, duplicates and poison events.

use std::time::{Duration, Instant};

use serde_json::Value;

use cvbot::config::RedisTiming;

use crate::helpers::{FAST_REDIS, TestApp, cv, eventually};
use crate::redis_server::{Proxy, RedisServer};

/// Starts an instance on `url`.
pub(crate) async fn instance(id: &str, url: &str) -> TestApp {
    instance_with(id, url, &[]).await
}

pub(crate) async fn instance_with(id: &str, url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars =
        vec![("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true"), ("RATE_LIMIT_MS", "0")];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

/// Starts an instance that must be refused as a twin, and returns why: at start-up already when its
/// link met the older claim that soon, or by itself a moment later.
pub(crate) async fn twin_refused(id: &str, url: &str) -> anyhow::Error {
    let vars = [("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true")];
    let dir = tempfile::tempdir().expect("tempdir");
    match TestApp::try_spawn_timed(dir, &vars, cvbot::Extras::default(), FAST_REDIS).await {
        Err(refused) => refused,
        Ok(mut twin) => {
            let running = twin.running.take().expect("running");
            let result = tokio::time::timeout(Duration::from_secs(10), running.wait()).await;
            result.expect("the twin stops by itself").expect_err("the twin is refused")
        }
    }
}

/// An instance on `url` whose Redis link runs on `timing`.
async fn timed(id: &str, url: &str, timing: RedisTiming) -> TestApp {
    let vars = [("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true"), ("RATE_LIMIT_MS", "0")];
    TestApp::spawn_timed(tempfile::tempdir().expect("tempdir"), &vars, cvbot::Extras::default(), timing).await
}

pub(crate) async fn redis_status(app: &TestApp) -> String {
    app.state().await["redis"].as_str().unwrap_or_default().to_owned()
}

/// Two instances, `bot-a` and `bot-b`, on `url`, both connected.
pub(crate) async fn connected_pair(url: &str) -> (TestApp, TestApp) {
    let (a, b) = (instance("bot-a", url).await, instance("bot-b", url).await);
    connected(&[&a, &b]).await;
    (a, b)
}

pub(crate) async fn connected(apps: &[&TestApp]) {
    for app in apps {
        eventually("redis connected", Duration::from_secs(15), || async { redis_status(app).await == "connected" })
            .await;
    }
}

/// The part of `/api/state` every instance must agree on (without who is asking and `remote`).
pub(crate) async fn shared_view(app: &TestApp) -> Value {
    let mut s = app.state().await;
    if let Some(params) = s["parameters"].as_object_mut() {
        for p in params.values_mut() {
            p.as_object_mut().expect("param").remove("remote");
        }
    }
    let obj = s.as_object_mut().expect("state");
    obj.remove("instance_id");
    obj.remove("redis");
    s
}

pub(crate) async fn converged(apps: &[&TestApp]) -> bool {
    let first = shared_view(apps[0]).await;
    for app in &apps[1..] {
        if shared_view(app).await != first {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_conflicting_writes_converge_on_the_greatest_stamp() {
    let redis = RedisServer::start().await;
    let (a, b, c) = (
        instance("bot-a", &redis.url()).await,
        instance("bot-b", &redis.url()).await,
        instance("bot-c", &redis.url()).await,
    );
    connected(&[&a, &b, &c]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    let mut writers = tokio::task::JoinSet::new();
    for (app, name) in [(a, "a"), (b, "b"), (c, "c")] {
        writers.spawn(async move {
            for i in 0..60u8 {
                app.viewer(&format!("{name}{i}"), &format!("doorway#1.threshold: {}", i * 2));
                app.viewer(&format!("{name}{i}"), &format!("doorway#1.gain: {i}"));
                if i % 20 == 0 {
                    app.op(&format!("!admin overlay {}", if i % 40 == 0 { "off" } else { "on" }));
                }
            }
            app
        });
    }
    let mut apps = Vec::new();
    while let Some(app) = writers.join_next().await {
        apps.push(app.expect("writer"));
    }
    let refs: Vec<&TestApp> = apps.iter().collect();
    eventually("byte-identical state on all three", Duration::from_secs(10), || converged(&refs)).await;
    let agreed = shared_view(refs[0]).await;
    assert_eq!(agreed["routes"]["es9out#1"], "doorway#1.threshold");

    // The winner is the register Redis holds: the greatest (hlc, instance) written only-if-newer.
    let mut conn = redis.conn().await;
    let stored: String =
        redis::cmd("HGET").arg("{cv}:state").arg("p:doorway#1.threshold").query_async(&mut conn).await.expect("hget");
    let envelope: Value = serde_json::from_str(stored.split_once('|').expect("order key").1).expect("json");
    let winner = &agreed["parameters"]["doorway#1.threshold"];
    assert_eq!(winner["value"], envelope["data"]["value"]);
    assert_eq!(winner["user"], envelope["data"]["user"]);
    assert_eq!(winner["source_instance"], envelope["data"]["source_instance"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_bots_raw_event_is_applied_routed_to_osc_and_marked_remote() {
    let redis = RedisServer::start().await;
    let app = instance("bot-001", &redis.url()).await;
    connected(&[&app]).await;
    app.op("!admin es9out#2 → doorway#1.threshold");
    app.osc.recv_addr("/routing").await;
    let raw = r#"{"timestamp": 1703097600000, "type": "parameter_update", "data": {"variable": "doorway#1.threshold", "value": 127, "user": "oldtimer", "source_instance": "js-bot"}}"#;
    // This event is older than anything stamped today, so it wins only where nothing newer exists.
    assert!(redis.publish("cv:parameter:update", raw).await >= 1);
    assert_eq!(app.osc.recv_addr("/cv").await, cv("es9out#2", 1.0, "doorway", 1, "threshold", 127));
    let p = app.state().await["parameters"]["doorway#1.threshold"].clone();
    assert_eq!(p["user"], "oldtimer");
    assert_eq!(p["source_instance"], "js-bot");
    assert_eq!(p["remote"], true);
    // Our own events coming back are ignored, not applied twice.
    app.viewer("me", "doorway#1.gain: 3");
    eventually("own event echoed and ignored", Duration::from_secs(5), || async {
        app.stat("redis_own_ignored").await >= 2 && app.stat("redis_received_parameter_update").await >= 2
    })
    .await;
    assert!(app.stat("redis_published_parameter_update").await >= 1);
    assert!(app.stat("redis_received_parameter_update").await >= 2, "the raw event and our echo");
    assert!(app.stat("redis_published_routing_change").await >= 1);
    assert!(app.stat("redis_published_admin_command").await >= 1, "the routing audit copy");
}

/// The longest time the link's backoff can take to climb from its floor to its cap (each delay is
/// 50–100 % of its ceiling), and the shortest.
fn backoff_climb(timing: &RedisTiming) -> (Duration, Duration) {
    let mut ceiling = timing.backoff_floor;
    let mut longest = Duration::ZERO;
    while ceiling < timing.backoff_cap {
        longest += ceiling;
        ceiling *= 2;
    }
    (longest / 2, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_backoffs_climb_loses_nothing_and_the_link_recovers_without_inbound_traffic() {
    // Today's backoff (100 ms doubling up to 5 s) is still climbing when Redis returns.
    let timing =
        RedisTiming { backoff_floor: Duration::from_millis(100), backoff_cap: Duration::from_secs(5), ..FAST_REDIS };
    let length = Duration::from_secs(1);
    assert!(length < backoff_climb(&timing).0);
    outage(length, timing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_the_backoff_long_at_its_cap_loses_nothing_and_the_link_recovers_without_inbound_traffic() {
    // Retrying at the cap for most of the outage, and longer than the claim key lives.
    let length = Duration::from_secs(2);
    assert!(length > backoff_climb(&FAST_REDIS).1 + FAST_REDIS.backoff_cap * 5 && length > FAST_REDIS.heartbeat * 3);
    outage(length, FAST_REDIS).await;
}

async fn outage(length: Duration, timing: RedisTiming) {
    let mut redis = RedisServer::start().await;
    let (a, b) = (timed("bot-a", &redis.url(), timing).await, timed("bot-b", &redis.url(), timing).await);
    connected(&[&a, &b]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    a.viewer("before", "doorway#1.gain: 1");
    eventually("b saw a's route", Duration::from_secs(5), || async { converged(&[&a, &b]).await }).await;

    redis.kill();
    eventually("a degraded", Duration::from_secs(10), || async { redis_status(&a).await == "degraded" }).await;
    // Both keep taking commands local-only: chat, OSC and state keep working.
    let started = Instant::now();
    let mut i = 0u8;
    while started.elapsed() < length {
        a.viewer(&format!("a{i}"), &format!("doorway#1.threshold: {}", i % 128));
        b.viewer(&format!("b{i}"), &format!("doorway#1.background: {}", i % 128));
        i = i.wrapping_add(1);
        // The outage's length is the point: chat keeps typing through it at a viewer's pace.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.op("!admin es9out#3 → doorway#1.background");
    b.op("!admin emergency stop during outage");
    assert_eq!(a.osc.recv_addr("/cv").await.addr, "/cv", "OSC kept flowing while Redis was down");
    let during_a = a.state().await;
    assert_eq!(during_a["redis"], "degraded");

    redis.restart().await;
    connected(&[&a, &b]).await;
    eventually("converged after the outage", Duration::from_secs(10), || async { converged(&[&a, &b]).await }).await;
    let s = shared_view(&a).await;
    assert_eq!(s["routes"]["es9out#3"], "doorway#1.background", "a's outage routing reached b");
    assert_eq!(s["emergency"]["active"], true, "b's outage emergency stop reached a");
    assert_eq!(s["parameters"]["doorway#1.threshold"]["source_instance"], "bot-a");
    assert_eq!(s["parameters"]["doorway#1.background"]["source_instance"], "bot-b");
    assert!(a.stat("redis_reconnects").await >= 1);

    // Resubscribed by itself: an event nobody on our side sent arrives (stamped a little ahead, so
    // it beats the outage's stop, and within MAX_CLOCK_SKEW_MS, so it is admitted).
    let raw = format!(
        r#"{{"timestamp": {}, "type": "system_broadcast", "data": {{"action": "resume", "admin": "js", "source_instance": "js-bot"}}}}"#,
        cvbot::clock::wall_ms_now() + 5_000
    );
    redis.publish("cv:system:broadcast", &raw).await;
    eventually("remote resume applied on both", Duration::from_secs(5), || async {
        a.state().await["emergency"]["active"] == false && b.state().await["emergency"]["active"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_rebuilt() {
    let redis = RedisServer::start().await;
    let a = instance("bot-a", &redis.url()).await;
    connected(&[&a]).await;
    let mut conn = redis.conn().await;
    let killed: u64 =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.expect("kill");
    assert!(killed >= 1);
    eventually("reconnected after CLIENT KILL", Duration::from_secs(10), || async {
        a.stat("redis_reconnects").await >= 1 && redis_status(&a).await == "connected"
    })
    .await;
    let raw = r#"{"timestamp": 1, "type": "parameter_update", "data": {"variable": "doorway#1.gain", "value": 77, "user": "x", "source_instance": "js-bot"}}"#;
    redis.publish("cv:parameter:update", raw).await;
    eventually("event after resubscribe applied", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 77
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_connection_is_detected_as_deaf_within_ten_seconds_and_recovers() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port).parse().expect("addr")).await;
    let a = instance("bot-a", &proxy.url()).await;
    connected(&[&a]).await;
    proxy.set_blackhole(true);
    let cut = Instant::now();
    eventually("deaf detected", Duration::from_secs(10), || async { redis_status(&a).await == "degraded" }).await;
    let detected = cut.elapsed();
    a.viewer("during", "doorway#1.gain: 9");
    proxy.set_blackhole(false);
    connected(&[&a]).await;
    // What was done while deaf reached Redis after healing.
    let conn = redis.conn().await;
    eventually("outage write published", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move {
            let v: Option<String> = redis::cmd("HGET")
                .arg("{cv}:state")
                .arg("p:doorway#1.gain")
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            v.is_some_and(|v| v.contains("\"value\":9"))
        }
    })
    .await;
    assert!(detected < Duration::from_secs(10), "deaf detection took {detected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_instance_joining_mid_stream_is_current_at_once() {
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis.url()).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    b.viewer("v", "doorway#1.threshold: 42");
    a.op("!admin overlay off");
    eventually("a and b agree", Duration::from_secs(5), || async { converged(&[&a, &b]).await }).await;
    let late = instance("bot-d", &redis.url()).await;
    connected(&[&late]).await;
    // Connected means the state hash was merged before the first probe came back: no waiting needed.
    assert_eq!(shared_view(&late).await, shared_view(&a).await);
    let replay = late.osc.drain().await;
    assert!(replay.contains(&cv("es9out#1", 42.0 / 127.0, "doorway", 1, "threshold", 42)), "{replay:?}");
    let reply = late.op("!admin instances");
    assert!(
        matches!(&reply, cvbot::coord::Outcome::Done(cvbot::coord::Done::Answer(cvbot::coord::Answer::Instances(live))) if ["bot-a", "bot-b", "bot-d"].iter().all(|n| live.iter().any(|l| l == n))),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_instance_with_the_same_id_is_refused() {
    let redis = RedisServer::start().await;
    let first = instance("bot-twin", &redis.url()).await;
    connected(&[&first]).await;
    let err = twin_refused("bot-twin", &redis.url()).await;
    let text = format!("{err:#}");
    assert!(text.contains("INSTANCE_ID bot-twin is already in use"), "{text}");
    assert!(text.contains("host"), "{text}");
    assert!(err.downcast_ref::<cvbot::redis_link::presence::DuplicateInstance>().is_some());
    assert_eq!(redis_status(&first).await, "connected", "the first instance is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_counted_kept_in_the_dead_letter_stream_and_harmless() {
    let redis = RedisServer::start().await;
    let a = instance("bot-a", &redis.url()).await;
    connected(&[&a]).await;
    let huge =
        format!(r#"{{"timestamp": 1, "type": "parameter_update", "data": {{"pad": "{}"}}}}"#, "x".repeat(17_000));
    let cases: Vec<(&str, String, &str)> = vec![
        ("cv:parameter:update", "{not json".into(), "redis_dropped_not_json"),
        ("cv:system:broadcast", r#"{"timestamp": 1, "type": "party", "data": {"source_instance": "evil"}}"#.into(), "redis_dropped_unknown_type"),
        ("cv:parameter:update", r#"{"timestamp": 1, "type": "parameter_update", "data": {"variable": "nope#1.x", "value": 1, "source_instance": "evil"}}"#.into(), "redis_dropped_unknown_variable"),
        ("cv:parameter:update", r#"{"timestamp": 1, "type": "parameter_update", "data": {"variable": "doorway#1.gain", "value": 999, "source_instance": "evil"}}"#.into(), "redis_dropped_out_of_range"),
        ("cv:parameter:update", huge, "redis_dropped_too_large"),
    ];
    for (channel, payload, _) in &cases {
        redis.publish(channel, payload).await;
    }
    let good = r#"{"timestamp": 5, "type": "parameter_update", "data": {"variable": "doorway#1.gain", "value": 12, "user": "ok", "source_instance": "js-bot"}}"#;
    redis.publish("cv:parameter:update", good).await;
    eventually("the good event after the poison is applied", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 12
    })
    .await;
    for (_, _, counter) in &cases {
        assert_eq!(a.stat(counter).await, 1, "{counter}");
    }
    let mut conn = redis.conn().await;
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg("{cv}:dlq").arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
    let reasons: Vec<&str> = entries
        .iter()
        .filter_map(|(_, fields)| fields.iter().find(|(k, _)| k == "reason").map(|(_, v)| v.as_str()))
        .collect();
    for reason in ["not_json", "unknown_type", "unknown_variable", "out_of_range", "too_large"] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    assert_eq!(a.get_json("/healthz").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_signing_key_signed_events_flow_and_unsigned_ones_are_dropped() {
    let redis = RedisServer::start().await;
    let key = [("EVENT_SIGNING_KEY", "correct horse battery staple")];
    let a = instance_with("bot-a", &redis.url(), &key).await;
    let b = instance_with("bot-b", &redis.url(), &key).await;
    connected(&[&a, &b]).await;
    a.viewer("v", "doorway#1.gain: 33");
    eventually("signed event applied on b", Duration::from_secs(5), || async {
        b.state().await["parameters"]["doorway#1.gain"]["value"] == 33
    })
    .await;
    let unsigned = r#"{"timestamp": 99999999999999, "type": "parameter_update", "data": {"variable": "doorway#1.gain", "value": 1, "user": "x", "source_instance": "js-bot"}}"#;
    redis.publish("cv:parameter:update", unsigned).await;
    eventually("unsigned dropped", Duration::from_secs(5), || async {
        b.stat("redis_dropped_missing_signature").await == 1
    })
    .await;
    assert_eq!(b.state().await["parameters"]["doorway#1.gain"]["value"], 33);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_keeps_deployments_apart_on_one_redis() {
    let redis = RedisServer::start().await;
    let a = instance_with("bot-a", &redis.url(), &[("REDIS_KEY_PREFIX", "studio1:")]).await;
    let b = instance_with("bot-b", &redis.url(), &[("REDIS_KEY_PREFIX", "studio2:")]).await;
    connected(&[&a, &b]).await;
    a.viewer("v", "doorway#1.gain: 50");
    let mut conn = redis.conn().await;
    eventually("a's register under its prefix", Duration::from_secs(5), || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("HEXISTS")
                .arg("studio1:{cv}:state")
                .arg("p:doorway#1.gain")
                .query_async(&mut conn)
                .await
                .unwrap_or(false)
        }
    })
    .await;
    for other in ["studio2:{cv}:state", "{cv}:state"] {
        let there: bool =
            redis::cmd("HEXISTS").arg(other).arg("p:doorway#1.gain").query_async(&mut conn).await.expect("hexists");
        assert!(!there, "a's register is not under {other}");
    }
    // A marker on b's own channel, published after a's event: once b has applied it, it would have
    // applied a's event first had it heard it.
    let marker = format!(
        r#"{{"timestamp": {}, "type": "parameter_update", "data": {{"variable": "doorway#1.threshold", "value": 9, "user": "marker", "source_instance": "js-bot"}}}}"#,
        cvbot::clock::wall_ms_now()
    );
    assert_eq!(redis.publish("studio2:cv:parameter:update", &marker).await, 1, "only b hears its prefix");
    eventually("b applied the marker", Duration::from_secs(5), || async {
        b.state().await["parameters"]["doorway#1.threshold"]["value"] == 9
    })
    .await;
    assert!(b.state().await["parameters"].get("doorway#1.gain").is_none(), "b never heard a's deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_command_channel_answers_status_and_resync() {
    let redis = RedisServer::start().await;
    let a = instance("bot-a", &redis.url()).await;
    connected(&[&a]).await;
    let mut listener = redis.client().get_async_pubsub().await.expect("pubsub");
    listener.subscribe("cv:instance:status").await.expect("subscribe");
    redis.publish("cv:instance:bot-a:command", r#"{"command": "status"}"#).await;
    let mut stream = listener.on_message();
    let report: Value = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = futures_util::StreamExt::next(&mut stream).await.expect("message");
            let v: Value = serde_json::from_slice(m.get_payload_bytes()).expect("json");
            if v["type"] == "instance_report" {
                return v;
            }
        }
    })
    .await
    .expect("a status report");
    assert_eq!(report["instance"], "bot-a");
    assert_eq!(report["status"], "connected");

    // A register written behind the link's back (as if its message was missed) arrives on resync.
    let event = r#"{"timestamp": 1700000000000, "type": "parameter_update", "data": {"variable": "doorway#1.gain", "value": 64, "user": "far", "source_instance": "bot-z"}}"#;
    let mut conn = redis.conn().await;
    let () = redis::cmd("HSET")
        .arg("{cv}:state")
        .arg("p:doorway#1.gain")
        .arg(format!("00000000000000000000|{event}"))
        .query_async(&mut conn)
        .await
        .expect("hset");
    redis.publish("cv:instance:bot-a:command", r#"{"command": "resync"}"#).await;
    eventually("resync merged the register", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_only_and_subscribe_only_roles() {
    let redis = RedisServer::start().await;
    let talker = instance_with("bot-talker", &redis.url(), &[("REDIS_ENABLE_SUBSCRIPTION", "false")]).await;
    let listener = instance_with("bot-listener", &redis.url(), &[("REDIS_ENABLE_PUBLISHING", "false")]).await;
    connected(&[&talker, &listener]).await;
    talker.viewer("v", "doorway#1.gain: 21");
    eventually("the listener hears the talker", Duration::from_secs(5), || async {
        listener.state().await["parameters"]["doorway#1.gain"]["value"] == 21
    })
    .await;
    // The listener publishes nothing: its write is counted as kept back, and a marker published after
    // that is the first thing a watcher of the event channel hears.
    let mut watcher = redis.client().get_async_pubsub().await.expect("pubsub");
    watcher.subscribe("cv:parameter:update").await.expect("subscribe");
    let unpublished = listener.stat("redis_unpublished").await;
    listener.viewer("w", "doorway#1.threshold: 5");
    eventually("the listener kept its write back", Duration::from_secs(5), || async {
        listener.stat("redis_unpublished").await > unpublished
    })
    .await;
    let marker = r#"{"timestamp": 1, "type": "parameter_update", "data": {"variable": "doorway#1.x", "value": 1, "source_instance": "js"}}"#;
    // The listener and the watcher hear it; the talker subscribes to no event channel.
    assert_eq!(redis.publish("cv:parameter:update", marker).await, 2, "subscribers of the event channel");
    let first = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut watcher.on_message()))
        .await
        .expect("the marker in time")
        .expect("message");
    assert_eq!(first.get_payload::<String>().expect("text"), marker, "the listener published nothing before it");
    assert!(talker.state().await["parameters"].get("doorway#1.threshold").is_none());

    // Nor does the talker read events: by the time it answers a status command sent after the marker,
    // it would have counted the marker.
    let mut reports = redis.client().get_async_pubsub().await.expect("pubsub");
    reports.subscribe("cv:instance:status").await.expect("subscribe");
    redis.publish("cv:instance:bot-talker:command", r#"{"command": "status"}"#).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = reports.on_message();
        loop {
            let m = futures_util::StreamExt::next(&mut stream).await.expect("message");
            let v: Value = serde_json::from_slice(m.get_payload_bytes()).expect("json");
            if v["type"] == "instance_report" && v["instance"] == "bot-talker" {
                return;
            }
        }
    })
    .await
    .expect("the talker's status report");
    assert_eq!(talker.stat("redis_received").await, 0, "the talker subscribes to no event channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_tls_connections_work() {
    let redis = RedisServer::start_tls().await;
    let (a, b) = connected_pair(&redis.url()).await;
    a.viewer("v", "doorway#1.gain: 44");
    eventually("event crossed a TLS Redis", Duration::from_secs(5), || async {
        b.state().await["parameters"]["doorway#1.gain"]["value"] == 44
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_authenticate_and_a_wrong_password_degrades_without_crashing() {
    let args: Vec<String> =
        ["--user", "default", "off", "--user", "bot", "on", ">s3cret", "~*", "&*", "+@all"].map(str::to_owned).to_vec();
    let redis = RedisServer::start_with(&args, |port| format!("redis://bot:s3cret@127.0.0.1:{port}")).await;
    let good = instance("bot-good", &redis.url()).await;
    connected(&[&good]).await;
    let bad_url = redis.url().replace("s3cret", "wrong");
    let bad = instance("bot-bad", &bad_url).await;
    eventually("a refused login is degraded", Duration::from_secs(10), || async {
        redis_status(&bad).await == "degraded"
    })
    .await;
    assert_eq!(
        bad.viewer("v", "doorway#1.gain: 2"),
        cvbot::coord::Outcome::Done(cvbot::coord::Done::Set),
        "still local"
    );
    assert!(bad.stat("redis_reconnects").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_a_peers_sequence_triggers_a_resync() {
    let redis = RedisServer::start().await;
    let a = instance("bot-a", &redis.url()).await;
    connected(&[&a]).await;
    let resyncs_before = a.stat("redis_resyncs").await;
    let at = cvbot::clock::wall_ms_now();
    for seq in [1u64, 2, 6] {
        let raw = format!(
            r#"{{"timestamp": {at}, "hlc": {}, "seq": {seq}, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": {seq}, "user": "z", "source_instance": "bot-z"}}}}"#,
            (at << 16) + seq
        );
        redis.publish("cv:parameter:update", &raw).await;
    }
    eventually("gap counted and resynced", Duration::from_secs(5), || async {
        a.stat("redis_gaps").await == 1 && a.stat("redis_resyncs").await > resyncs_before
    })
    .await;
    assert_eq!(a.state().await["parameters"]["doorway#1.gain"]["value"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_history_show_the_cluster() {
    let redis = RedisServer::start().await;
    let token = [("ADMIN_TOKEN", crate::helpers::TOKEN)];
    let a = instance_with("bot-a", &redis.url(), &token).await;
    let b = instance("bot-b", &redis.url()).await;
    connected(&[&a, &b]).await;
    b.viewer("far", "doorway#1.gain: 7");
    a.op("!admin overlay off");
    eventually("a saw b's write", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 7
    })
    .await;
    eventually("presence lists both", Duration::from_secs(10), || async {
        a.get_json("/api/events/health").await["instances"] == serde_json::json!(["bot-a", "bot-b"])
    })
    .await;
    let health = a.get_json("/api/events/health").await;
    assert_eq!(health["mode"], "hybrid");
    assert_eq!(health["redis"]["connected"], true);
    assert!(health["redis"]["probe_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{health}");
    assert!(health["events"]["published"].as_u64().is_some_and(|n| n >= 1), "{health}");
    assert!(health["events"]["received_redis"].as_u64().is_some_and(|n| n >= 1), "{health}");

    let history = a.get_json_as_admin("/api/events/history?source=redis").await;
    assert_eq!(history["source"], "redis");
    let events = history["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["type"] == "parameter_update" && e["source_instance"] == "bot-b"), "{history}");
    assert!(events.iter().any(|e| e["type"] == "admin_command" && e["source_instance"] == "bot-a"), "the audit trail");
    let only = a.get_json_as_admin("/api/events/history?source=redis&eventType=system_broadcast&limit=1").await;
    assert_eq!(only["count"], 1);
    assert_eq!(only["events"][0]["data"]["action"], "overlay_toggle");

    // The older API's one-sided options would break convergence while Redis is on: refused, not faked.
    let client = reqwest::Client::new();
    for options in [serde_json::json!({"localOnly": true}), serde_json::json!({"redisOnly": true})] {
        let body = serde_json::json!({"type": "parameter_update", "payload": {"variable": "doorway#1.gain", "value": 1}, "options": options});
        let response = client
            .post(a.url("/api/events/publish"))
            .bearer_auth(crate::helpers::TOKEN)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST, "{options}");
    }
    assert_eq!(a.state().await["parameters"]["doorway#1.gain"]["value"], 7, "nothing applied");
}
