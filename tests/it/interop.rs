//! Older bots' files and messages, as they really are: `routing_change` envelopes published with a
//! plain `PUBLISH` (what a JavaScript client does) on a real redis-server, and routing files that
//! write `inputjack#k` in lower case.

use std::time::Duration;

use cvbot::clock::wall_ms_now;
use cvbot::coord::Outcome;
use serde_json::{Value, json};

use crate::cluster::{connected, instance};
use crate::helpers::{TestApp, eventually, routing, start_with_routing_file};
use crate::redis_server::RedisServer;

const ROUTING_CHANNEL: &str = "cv:routing:change";
const WAIT: Duration = Duration::from_secs(5);

/// A `routing_change` envelope exactly as an older bot builds it: no `v`, `hlc`, `seq` or `sig`.
fn older_bots_routing_change(routing_data: &Value) -> String {
    json!({"timestamp": wall_ms_now(), "type": "routing_change",
        "data": {"routingData": routing_data, "admin": "oldmod", "source_instance": "js-bot"}})
    .to_string()
}

async fn publish_routing(redis: &RedisServer, routing_data: &Value) {
    let receivers = redis.publish(ROUTING_CHANNEL, &older_bots_routing_change(routing_data)).await;
    assert!(receivers >= 1, "the instance is subscribed");
}

async fn routes(app: &TestApp) -> Value {
    app.state().await["routes"].clone()
}

async fn connected_instance(redis: &RedisServer) -> TestApp {
    let app = instance("bot-a", &redis.url()).await;
    connected(&[&app]).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_bots_overlay_shaped_route_and_removal_change_state_and_osc() {
    let redis = RedisServer::start().await;
    let app = connected_instance(&redis).await;
    // The older bot's overlay message as it is, `type` and `timestamp` included.
    let add = json!({"type": "routing_update", "output": "es9out#3", "lzxVariable": "doorway#1.gain",
        "action": "add", "timestamp": wall_ms_now()});
    publish_routing(&redis, &add).await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#3", "doorway#1.gain"]));
    assert_eq!(routes(&app).await, json!({"es9out#3": "doorway#1.gain"}));

    // Lower-case input jacks, the only spelling the older bot took for modules without CV.
    publish_routing(&redis, &json!({"output": "ES9OUT#8", "lzxVariable": "angles#1.inputjack#1", "action": "add"}))
        .await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#8", "angles#1.inputJack#1"]));
    assert_eq!(routes(&app).await, json!({"es9out#3": "doorway#1.gain", "es9out#8": "angles#1.inputJack#1"}));

    publish_routing(&redis, &json!({"type": "routing_update", "output": "es9out#3", "action": "remove"})).await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["remove", "es9out#3"]));
    assert_eq!(routes(&app).await, json!({"es9out#8": "angles#1.inputJack#1"}));
    assert!(redis.dead_letters().await.is_empty());
    assert_eq!(app.stat("redis_dropped_malformed").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_bots_routing_map_routes_its_output_everywhere_the_route_goes() {
    let redis = RedisServer::start().await;
    let app = connected_instance(&redis).await;
    app.viewer("ann", "doorway#1.gain: 127");
    publish_routing(&redis, &json!({"es9out#3": "doorway#1.gain"})).await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#3", "doorway#1.gain"]));
    // The new route takes the parameter's current value at once, in the output's default range.
    let cv = app.osc.recv_addr("/cv").await;
    assert_eq!(cv, crate::helpers::cv("es9out#3", 1.0, "doorway", 1, "gain", 127));
    assert_eq!(routes(&app).await, json!({"es9out#3": "doorway#1.gain"}));
    // Saved like any route change, in the older bot's own file format.
    let path = app.routing_file();
    eventually("the route is in the routing file", WAIT, || async {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v == json!({"es9out#3": "doorway#1.gain"}))
    })
    .await;

    publish_routing(&redis, &json!({"es9out#3": "angles#1.INPUTJACK#2"})).await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#3", "angles#1.inputJack#2"]));
    assert_eq!(routes(&app).await, json!({"es9out#3": "angles#1.inputJack#2"}));
    assert!(redis.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_map_naming_several_outputs_routes_each_and_reaches_the_state_hash() {
    let redis = RedisServer::start().await;
    let app = connected_instance(&redis).await;
    publish_routing(&redis, &json!({"es9out#1": "doorway#1.threshold", "es9out#2": "doorway#1.gain"})).await;
    eventually("both outputs routed", WAIT, || async {
        let r = routes(&app).await;
        r["es9out#1"] == "doorway#1.threshold" && r["es9out#2"] == "doorway#1.gain"
    })
    .await;
    let routed: Vec<String> =
        app.osc.drain().await.into_iter().filter(|m| m.addr == "/routing").map(|m| format!("{:?}", m.args)).collect();
    assert_eq!(routed.len(), 2, "{routed:?}");
    assert_eq!(app.stat("redis_dropped_several_outputs").await, 0);
    let conn = redis.conn().await;
    eventually("both routes are in the state hash (written for the older bot)", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let fields: Vec<String> =
                redis::cmd("HKEYS").arg("{cv}:state").query_async(&mut conn).await.unwrap_or_default();
            fields.contains(&"r:es9out#1".to_owned()) && fields.contains(&"r:es9out#2".to_owned())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_actions_and_hostile_routing_data_are_dead_lettered_by_reason_and_the_link_goes_on() {
    let redis = RedisServer::start().await;
    let app = connected_instance(&redis).await;
    let huge: serde_json::Map<String, Value> =
        (1..=200).map(|i| (format!("esx8cv#{i}.out#1"), Value::String("doorway#1.gain".into()))).collect();
    let cases = [
        (json!({"output": "es9out#3", "lzxVariable": "doorway#1.gain", "action": "set"}), "unknown_action"),
        (json!({"output": "es9out#3", "action": "clear"}), "unknown_action"),
        (json!([{"es9out#3": "doorway#1.gain"}]), "malformed"),
        (json!(3), "malformed"),
        (json!("es9out#3 → doorway#1.gain"), "malformed"),
        (Value::Object(huge), "malformed"),
        (json!({}), "malformed"),
        (json!({"es9out#3": 7}), "malformed"),
        (json!({"es9out#3": "doorway#1.gain", "ES9OUT#3": "doorway#1.threshold"}), "malformed"),
        (
            json!({"output": "es9out#3", "lzxVariable": "doorway#1.gain", "action": "add", "es9out#4": "doorway#1.gain"}),
            "malformed",
        ),
        (json!({"es9out#99": "doorway#1.gain"}), "unknown_output"),
        (json!({"es9out#3": "doorway#1.nope"}), "unknown_variable"),
        (json!({"output": "es9out#3", "lzxVariable": "angles#1.inputjack#17", "action": "add"}), "unknown_variable"),
        (
            json!({"output": "es9out#3", "lzxVariable": "doorway#1.gain", "action": "add", "range": [-5, 5]}),
            "out_of_limit",
        ),
    ];
    for (data, _) in &cases {
        publish_routing(&redis, data).await;
    }
    let expected: Vec<&str> = cases.iter().map(|(_, reason)| *reason).collect();
    eventually("every hostile event dead-lettered with its reason", WAIT, || async {
        redis.dead_letters().await == expected
    })
    .await;
    assert_eq!(app.stat("redis_dropped_unknown_action").await, 2);
    assert_eq!(app.stat("redis_dropped_malformed").await, 8);
    assert_eq!(routes(&app).await, json!({}));
    // The link is still listening.
    publish_routing(&redis, &json!({"es9out#3": "doorway#1.gain"})).await;
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#3", "doorway#1.gain"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_file_with_a_lowercase_inputjack_loads_and_is_replayed_in_the_catalogue_spelling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routing_table.json");
    std::fs::write(&path, "{\n  \"es9out#8\": \"angles#1.inputjack#1\",\n  \"es9out#1\": \"doorway#1.threshold\"\n}\n")
        .expect("write");
    let token = tokio_util::sync::CancellationToken::new();
    let running = start_with_routing_file(&path, token.clone()).await.expect("start-up takes the file");
    token.cancel();
    running.wait().await.expect("clean shutdown");

    let app = TestApp::spawn_in(dir, &[]).await;
    assert_eq!(
        app.osc.drain().await,
        vec![
            routing(&["add", "es9out#1", "doorway#1.threshold"]),
            routing(&["add", "es9out#8", "angles#1.inputJack#1"])
        ]
    );
    assert_eq!(routes(&app).await, json!({"es9out#1": "doorway#1.threshold", "es9out#8": "angles#1.inputJack#1"}));
    // A viewer reaches the routed jack in any case too.
    assert!(matches!(app.viewer("ann", "angles#1.INPUTJACK#1: 64"), Outcome::Done(_)));
    assert_eq!(
        app.osc.recv_addr("/cv").await,
        crate::helpers::cv("es9out#8", 64.0 / 127.0, "angles", 1, "inputJack#1", 64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_routes_to_an_input_jack_written_in_any_case() {
    let app = TestApp::spawn().await;
    assert!(matches!(app.op("!admin es9out#8 → angles#1.INPUTJACK#1"), Outcome::Done(_)));
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#8", "angles#1.inputJack#1"]));
    assert!(matches!(app.op("es9out#7 -> Angles#1.inputjack#2"), Outcome::Done(_)));
    assert_eq!(app.osc.recv_addr("/routing").await, routing(&["add", "es9out#7", "angles#1.inputJack#2"]));
    assert_eq!(routes(&app).await, json!({"es9out#7": "angles#1.inputJack#2", "es9out#8": "angles#1.inputJack#1"}));
}
