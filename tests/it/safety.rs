//! The safety promises at each boundary, tried as a hostile publisher on the show's Redis and as an
//! operator: output limits, bounded clocks, stops in every OSC form, and signed means fresh. Real
//! redis-server, real UDP receivers decoded with rosc, real HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use rosc::OscType;
use serde_json::{Value, json};

use crate::cluster::{connected, instance, instance_with};
use crate::helpers::{TOKEN, TestApp, eventually, start_with_routing_file};
use crate::redis_server::RedisServer;
use cvbot::clock::wall_ms_now;
use cvbot::coord::{Outcome, Refusal, Unchanged};
use cvbot::redis_link::wire::{self, InstanceCommand, Signer};
use cvbot::state::{Event, EventKind, Hlc, Stamp};

/// The `/cv` voltages in `messages`, by output.
fn voltages(messages: &[rosc::OscMessage]) -> Vec<(String, f32)> {
    messages
        .iter()
        .filter(|m| m.addr == "/cv")
        .filter_map(|m| match (&m.args[0], &m.args[1]) {
            (OscType::String(o), OscType::Float(v)) => Some((o.clone(), *v)),
            _ => None,
        })
        .collect()
}

fn routing_event(extra: &str) -> String {
    format!(
        r#"{{"timestamp": {}, "type": "routing_change", "data": {{"routingData": {{"action": "add",
        "output": "es9out#1", "variable": "doorway#1.gain"{extra}}}, "admin": "mallory", "source_instance": "js-bot"}}}}"#,
        wall_ms_now()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_route_beyond_the_output_limit_never_reaches_a_jack_the_file_or_the_state() {
    let redis = RedisServer::start().await;
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    app.viewer("v", "doorway#1.gain: 127");
    for extra in [r#", "range": [-1000, 1000], "safe": 1000"#, r#", "range": [0, 3e38]"#, r#", "safe": 1000"#] {
        redis.publish("cv:routing:change", &routing_event(extra)).await;
    }
    eventually("three events dead-lettered as out_of_limit", Duration::from_secs(5), || async {
        redis.dead_letters().await == ["out_of_limit", "out_of_limit", "out_of_limit"]
    })
    .await;
    assert_eq!(app.stat("redis_dropped_out_of_limit").await, 3);
    app.op("!admin emergency stop");
    let sent = app.osc.drain().await;
    assert!(voltages(&sent).is_empty(), "no route was made, so nothing has a safe value to send: {sent:?}");
    assert!(app.state().await["routes"].as_object().expect("routes").is_empty());
    assert!(!app.routing_file().exists(), "nothing was saved");
    assert_eq!(app.stat("osc_clamped").await, 0);
}

#[tokio::test]
async fn chat_and_http_refuse_a_route_beyond_the_limit_with_a_clear_message() {
    let app = TestApp::spawn_admin().await;
    let refused = app.op("!admin es9out#1 → doorway#1.gain range -1000 1000 safe 1000");
    let Outcome::Refused(reason @ Refusal::OutOfLimit { .. }) = &refused else { panic!("refused: {refused:?}") };
    assert_eq!(
        reason.to_string(),
        "es9out#1: the range -1000 V to 1000 V leaves the output's limit of 0 V to 1 V",
        "the operator reads which output and which limit"
    );
    let client = reqwest::Client::new();
    let put = |body: Value| {
        client
            .put(app.url("/api/routes/es9out%231"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .json(&body)
            .send()
    };
    let answer = put(json!({"variable": "doorway#1.gain", "range": [0, 1], "safe": 1000})).await.expect("PUT");
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let text = answer.json::<Value>().await.expect("json")["error"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("safe voltage 1000 V"), "{text}");
    assert!(app.state().await["routes"].as_object().expect("routes").is_empty());
    assert_eq!(app.stat("refused_out_of_limit").await, 2, "both refusals are counted");
    // Inside the limit both work, and the route keeps its range and safe value.
    assert!(matches!(app.op("!admin es9out#2 → doorway#1.gain range 0.25 0.75 safe 0.5"), Outcome::Done(_)));
    let ok = put(json!({"variable": "doorway#1.gain", "range": [1, 0], "safe": 1})).await.expect("PUT");
    assert_eq!(ok.status(), StatusCode::OK);
    let route = app.get_json("/api/routes/es9out%232").await;
    assert_eq!(
        route,
        json!({"output": "es9out#2", "variable": "doorway#1.gain", "range": [0.25, 0.75], "safe": 0.5, "slew": 0.0})
    );
    assert!(!app.osc.drain().await.is_empty());
    assert_eq!(app.stat("osc_clamped").await, 0);
}

#[tokio::test]
async fn a_routing_file_entry_beyond_the_limit_stops_start_up_naming_the_file_and_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routing_table.json");
    std::fs::write(
        &path,
        "{\n  \"es9out#1\": {\"variable\": \"doorway#1.gain\", \"range\": [0, 1], \"safe\": 1000}\n}\n",
    )
    .expect("write");
    let token = tokio_util::sync::CancellationToken::new();
    let err = start_with_routing_file(&path, token).await.expect_err("refused");
    assert!(err.downcast_ref::<cvbot::app::StartupError>().is_some(), "a configuration error (exit 2): {err:#}");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("routing file {} line 2: es9out#1:", path.display())), "{text}");
}

/// A far-future envelope from `source`, in the older bots' shape (ordered by its timestamp).
fn from_the_future(kind: &str, data: &str) -> String {
    let far = 9_007_199_254_740_992u64;
    format!(r#"{{"timestamp": {far}, "type": "{kind}", "data": {data}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_stamp_is_refused_and_a_local_stop_still_wins_and_is_reported_truthfully() {
    let redis = RedisServer::start().await;
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.osc.drain().await;
    for (channel, kind, data) in [
        ("cv:system:broadcast", "system_broadcast", r#"{"action": "resume", "admin": "m", "source_instance": "evil"}"#),
        (
            "cv:system:broadcast",
            "system_broadcast",
            r#"{"action": "clear_all", "admin": "m", "source_instance": "evil"}"#,
        ),
        (
            "cv:parameter:update",
            "parameter_update",
            r#"{"variable": "doorway#1.gain", "value": 3, "user": "m", "source_instance": "evil"}"#,
        ),
    ] {
        redis.publish(channel, &from_the_future(kind, data)).await;
    }
    eventually("three clock_skew drops", Duration::from_secs(5), || async {
        app.stat("redis_dropped_clock_skew").await == 3
    })
    .await;
    assert!(app.state().await["parameters"].as_object().expect("params").is_empty());
    assert_eq!(app.viewer("v", "doorway#1.gain: 64"), Outcome::Done(cvbot::coord::Done::Set), "later writes still win");
    assert!(matches!(app.op("!admin emergency stop"), Outcome::Done(_)));
    let state = app.state().await;
    assert_eq!(state["emergency"]["active"], true, "the latch is really on");
    let safe: Vec<(String, f32)> = voltages(&app.osc.drain().await);
    assert_eq!(safe.last(), Some(&("es9out#1".to_owned(), 0.0)), "the safe value went out");
    // Pressed again, it says so (and sends the safe values once more) instead of a bare ✓.
    assert_eq!(app.op("!admin emergency stop"), Outcome::Refused(Refusal::Unchanged(Unchanged::AlreadyStopped)));
    assert_eq!(voltages(&app.osc.drain().await), [("es9out#1".to_owned(), 0.0)]);
    let health = app.get_json("/api/stats").await;
    assert!(health["redis_dropped_clock_skew"].as_u64() == Some(3), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_register_in_the_state_hash_is_dead_lettered_and_removed_at_join() {
    let redis = RedisServer::start().await;
    let far = Hlc::from_wall_ms(wall_ms_now() + 3_600_000);
    let clear = Event {
        stamp: Stamp { hlc: far, instance: "evil".into() },
        wall_ms: 1,
        user: "m".into(),
        kind: EventKind::ClearAll,
    };
    let payload = wire::encode(&clear, 1, None).payload;
    let mut conn = redis.conn().await;
    let value = format!("{}|{payload}", wire::order_key(&clear.stamp));
    let () = redis::cmd("HSET").arg("{cv}:state").arg("clear").arg(&value).query_async(&mut conn).await.expect("hset");
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    assert_eq!(app.stat("redis_dropped_clock_skew").await, 1);
    assert_eq!(app.stat("redis_state_purged").await, 1);
    let left: Option<String> =
        redis::cmd("HGET").arg("{cv}:state").arg("clear").query_async(&mut conn).await.expect("hget");
    assert_eq!(left, None, "the register no one may apply is gone, so honest clears persist again");
    assert_eq!(redis.dead_letters().await, ["clock_skew"]);
    app.viewer("v", "doorway#1.gain: 9");
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 9);
    assert!(matches!(app.op("!admin clear"), Outcome::Done(_)));
    assert!(app.state().await["parameters"].as_object().expect("params").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_how_far_ahead_each_peer_runs() {
    let redis = RedisServer::start().await;
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    let ahead = wall_ms_now() + 4_000;
    let raw = format!(
        r#"{{"timestamp": {ahead}, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": 5, "user": "u", "source_instance": "fast-clock"}}}}"#
    );
    redis.publish("cv:parameter:update", &raw).await;
    eventually("the peer's offset is in health", Duration::from_secs(5), || async {
        app.get_json("/api/events/health").await["peer_clock_ahead_ms"]["fast-clock"]
            .as_i64()
            .is_some_and(|ms| ms > 2_000)
    })
    .await;
    let metrics = reqwest::get(app.url("/metrics")).await.expect("GET").text().await.expect("text");
    assert!(metrics.contains("cvbot_peer_clock_ahead_ms{peer=\"fast-clock\"}"), "{metrics}");
}

#[tokio::test]
async fn every_osc_format_hears_the_stop_and_the_overlay_shows_what_is_held() {
    for (format, cv, lzx) in [("max", true, false), ("address", false, true), ("both", true, true)] {
        let app = TestApp::spawn_with(&[("OSC_FORMAT", format), ("RATE_LIMIT_MS", "0")]).await;
        app.op("!admin es9out#1 → doorway#1.gain range 0.2 0.8 safe 0.5");
        app.viewer("v", "doorway#1.gain: 127");
        app.osc.drain().await;
        app.op("!admin emergency stop");
        let sent = app.osc.drain().await;
        assert_eq!(voltages(&sent) == [("es9out#1".to_owned(), 0.5)], cv, "{format}: {sent:?}");
        let lzx_sent: Vec<&rosc::OscMessage> = sent.iter().filter(|m| m.addr == "/lzx/doorway/1/gain").collect();
        assert_eq!(!lzx_sent.is_empty(), lzx, "{format}: {sent:?}");
        if lzx {
            assert_eq!(lzx_sent[0].args, vec![OscType::Float(0.5)], "the safe voltage's place in the range");
        }
        let state = app.state().await;
        assert_eq!(state["parameters"]["doorway#1.gain"]["voltage"], 0.5, "{format}: held, not the chat value");
        assert_eq!(state["parameters"]["doorway#1.gain"]["held"], true);
        assert_eq!(state["emergency"]["held"], json!({"es9out#1": 0.5}));
        app.op("!admin resume");
        let state = app.state().await;
        assert!((state["parameters"]["doorway#1.gain"]["voltage"].as_f64().expect("v") - 0.8).abs() < 1e-6);
        assert_eq!(state["emergency"]["held"], json!({}));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_clear_sends_safe_values_in_the_address_form_too() {
    let app = TestApp::spawn_with(&[("OSC_FORMAT", "address"), ("RATE_LIMIT_MS", "0")]).await;
    app.op("!admin es9out#1 → doorway#1.gain range 0 1 safe 0.25");
    app.viewer("v", "doorway#1.gain: 127");
    app.viewer("w", "doorway#1.threshold: 127");
    app.osc.drain().await;
    app.op("!admin clear");
    let mut sent: Vec<(String, Vec<OscType>)> = app.osc.drain().await.into_iter().map(|m| (m.addr, m.args)).collect();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sent,
        [
            ("/lzx/doorway/1/gain".to_owned(), vec![OscType::Float(0.25)]),
            ("/lzx/doorway/1/threshold".to_owned(), vec![OscType::Float(0.0)])
        ]
    );
}

/// A signed `system_broadcast` stamped at `wall_ms` from another instance.
fn signed_stop(signer: &Signer, wall_ms: u64) -> String {
    let event = Event {
        stamp: Stamp { hlc: Hlc::from_wall_ms(wall_ms), instance: "bot-b".into() },
        wall_ms,
        user: "mod".into(),
        kind: EventKind::Emergency { active: true, message: None },
    };
    wire::encode(&event, 1, Some(signer)).payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_means_fresh_and_the_command_channel_is_signed_too() {
    let redis = RedisServer::start().await;
    let key = "a-shared-signing-key";
    let app = instance_with("bot-a", &redis.url(), &[("EVENT_SIGNING_KEY", key), ("EVENT_MAX_AGE_MS", "60000")]).await;
    connected(&[&app]).await;
    let signer = Signer::new(key.as_bytes());
    redis.publish("cv:system:broadcast", &signed_stop(&signer, wall_ms_now() - 61_000)).await;
    eventually("a replayed stop is refused", Duration::from_secs(5), || async {
        app.stat("redis_dropped_stale_signature").await == 1
    })
    .await;
    assert_eq!(app.state().await["emergency"]["active"], false);
    // Unsigned and stale commands on our own channel do nothing; a signed, fresh one works.
    let resyncs = app.stat("redis_resyncs").await;
    let channel = "cv:instance:bot-a:command";
    redis.publish(channel, r#"{"command": "resync"}"#).await;
    let stale = wire::encode_command(InstanceCommand::Resync, wall_ms_now() - 120_000, Some(&signer));
    redis.publish(channel, &stale).await;
    eventually("both refused", Duration::from_secs(5), || async {
        app.stat("redis_dropped_missing_signature").await == 1 && app.stat("redis_dropped_stale_signature").await == 2
    })
    .await;
    assert_eq!(app.stat("redis_resyncs").await, resyncs);
    redis.publish(channel, &wire::encode_command(InstanceCommand::Resync, wall_ms_now(), Some(&signer))).await;
    eventually("a signed resync runs", Duration::from_secs(5), || async {
        app.stat("redis_resyncs").await == resyncs + 1
    })
    .await;
    redis.publish("cv:system:broadcast", &signed_stop(&signer, wall_ms_now())).await;
    eventually("a fresh signed stop applies", Duration::from_secs(5), || async {
        app.state().await["emergency"]["active"] == true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_state_hash_costs_only_its_own_register() {
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    let good = Event {
        stamp: Stamp { hlc: Hlc::from_wall_ms(wall_ms_now()), instance: "bot-b".into() },
        wall_ms: wall_ms_now(),
        user: "u".into(),
        kind: EventKind::Set {
            variable: cvbot::catalog::Catalog::builtin().parse_variable("doorway#1.gain").expect("var"),
            value: 77,
            ramp: None,
        },
    };
    let good_value = format!("{}|{}", wire::order_key(&good.stamp), wire::encode(&good, 1, None).payload);
    let () = redis::cmd("HSET")
        .arg("{cv}:state")
        .arg("p:doorway#1.gain")
        .arg(good_value)
        .arg("p:doorway#1.threshold")
        .arg(&b"\xff\xfe not utf-8"[..])
        .arg("overlay")
        .arg("no order key at all")
        .query_async(&mut conn)
        .await
        .expect("hset");
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 77, "the good register merged");
    assert_eq!(app.stat("redis_state_purged").await, 2);
    let mut reasons = redis.dead_letters().await;
    reasons.sort();
    assert_eq!(reasons, ["malformed", "not_json"]);
    let left: u64 = redis::cmd("HLEN").arg("{cv}:state").query_async(&mut conn).await.expect("hlen");
    assert!(left >= 1, "the good register stays");
    assert_eq!(redis_status_of(&app).await, "connected", "the session was not torn down");
}

async fn redis_status_of(app: &TestApp) -> String {
    app.state().await["redis"].as_str().unwrap_or_default().to_owned()
}
