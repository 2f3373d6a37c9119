//! The whole pipeline in-process: chat line → parser → gate → coordinator → State → OSC over UDP,
//! and `/api/state` over HTTP.

use cvbot::command::ParseError;
use cvbot::coord::{Outcome, Refusal};
use rosc::OscType;

use crate::helpers::{ARRIVAL, OscReceiver, TestApp, cv, eventually, routing};

fn done() -> Outcome {
    Outcome::Done(cvbot::coord::Done::Set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_command_reaches_the_routed_output_as_a_peer_compatible_cv_message() {
    let app = TestApp::spawn().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));

    assert_eq!(app.viewer("ann", "doorway#1.threshold: 89"), done());
    let m = app.osc.recv().await;
    assert_eq!(m, cv("es9out#1", 89.0 / 127.0, "doorway", 1, "threshold", 89));
    assert!(matches!(m.args[1], OscType::Float(_)), "voltage is float32");

    // The extremes are still floats, never ints.
    app.viewer("bob", "doorway#1.threshold: 0");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 0.0, "doorway", 1, "threshold", 0));
    app.viewer("cat", "doorway#1.threshold: 127 lets go");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 1.0, "doorway", 1, "threshold", 127));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_state_shows_values_routes_and_who_set_them() {
    let app = TestApp::spawn().await;
    app.op("!admin esx8cv#2.out#3 to passage#1.thru#2");
    app.viewer("ann", "!cv passage#1.thru#2 127");
    app.viewer("bob", "doorway#1.gain: 10");
    let s = app.state().await;
    assert_eq!(s["instance_id"], "bot-001");
    assert_eq!(s["redis"], "disabled");
    assert_eq!(s["overlay_enabled"], true);
    assert_eq!(s["emergency"]["active"], false);
    assert_eq!(s["routes"]["esx8cv#2.out#3"], "passage#1.thru#2");
    let routed = &s["parameters"]["passage#1.thru#2"];
    assert_eq!(routed["value"], 127);
    assert_eq!(routed["voltage"], 1.0);
    assert_eq!(routed["route"], "esx8cv#2.out#3");
    assert_eq!(routed["user"], "ann");
    assert_eq!(routed["source_instance"], "bot-001");
    assert_eq!(routed["remote"], false);
    assert!(routed["timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    // Unrouted variables still update state, marked by a null route.
    let unrouted = &s["parameters"]["doorway#1.gain"];
    assert_eq!(unrouted["value"], 10);
    assert!(unrouted["route"].is_null());
    assert!(unrouted["voltage"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_variables_send_no_cv() {
    let app = TestApp::spawn().await;
    assert_eq!(app.viewer("ann", "doorway#1.gain: 10"), done());
    assert!(app.osc.drain().await.is_empty());
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_stop_holds_every_routed_output_at_its_safe_value_until_resume() {
    let app = TestApp::spawn().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.op("!admin es9out#2 → doorway#1.gain");
    app.viewer("ann", "doorway#1.threshold: 100");
    app.viewer("bob", "doorway#1.gain: 50");
    app.osc.drain().await;

    app.op("!admin emergency stop strobing too hard");
    let mut safe = app.osc.drain().await;
    safe.sort_by(|a, b| format!("{:?}", a.args).cmp(&format!("{:?}", b.args)));
    assert_eq!(
        safe,
        vec![cv("es9out#1", 0.0, "doorway", 1, "threshold", 0), cv("es9out#2", 0.0, "doorway", 1, "gain", 0)]
    );
    let s = app.state().await;
    assert_eq!(s["emergency"]["active"], true);
    assert_eq!(s["emergency"]["message"], "strobing too hard");

    assert_eq!(app.viewer("cat", "doorway#1.threshold: 5"), Outcome::Refused(Refusal::Emergency));
    // Even admins' routing changes are held: nothing reaches the hardware while stopped.
    app.op("!admin es9out#3 → doorway#1.background");
    assert!(app.osc.drain().await.is_empty(), "nothing but safe values while stopped");
    assert_eq!(app.state().await["parameters"]["doorway#1.threshold"]["value"], 100);
    assert_eq!(app.stat("refused_emergency").await, 1);

    app.op("!admin resume");
    let replay = app.osc.drain().await;
    assert!(replay.contains(&routing(&["add", "es9out#3", "doorway#1.background"])), "{replay:?}");
    assert!(replay.contains(&cv("es9out#1", 100.0 / 127.0, "doorway", 1, "threshold", 100)), "{replay:?}");
    assert!(replay.contains(&cv("es9out#2", 50.0 / 127.0, "doorway", 1, "gain", 50)), "{replay:?}");
    assert_eq!(app.viewer("cat", "doorway#1.threshold: 5"), done());
    assert_eq!(app.osc.recv().await, cv("es9out#1", 5.0 / 127.0, "doorway", 1, "threshold", 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_resets_parameters_and_rests_routed_outputs() {
    let app = TestApp::spawn().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.viewer("ann", "doorway#1.threshold: 100");
    app.osc.drain().await;
    app.op("!admin clear");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 0.0, "doorway", 1, "threshold", 0));
    assert_eq!(app.state().await["parameters"], serde_json::json!({}));
    assert_eq!(app.state().await["routes"]["es9out#1"], "doorway#1.threshold", "clear keeps routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_are_announced_and_a_new_route_takes_the_current_value() {
    let app = TestApp::spawn().await;
    app.viewer("ann", "doorway#1.threshold: 64");
    app.op("es9out#4 -> doorway#1.threshold");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#4", "doorway#1.threshold"]));
    assert_eq!(app.osc.recv().await, cv("es9out#4", 64.0 / 127.0, "doorway", 1, "threshold", 64));
    app.op("!admin remove es9out#4");
    assert_eq!(app.osc.recv().await, routing(&["remove", "es9out#4"]));
    assert_eq!(app.state().await["routes"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_survive_a_restart_and_are_replayed_at_start() {
    let app = TestApp::spawn().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.op("!admin esx8cv#1.out#8 → arch#1.inputJack#1");
    // The file is written by its own task; wait until both routes are in it.
    let path = app.routing_file();
    eventually("both routes in the routing file", ARRIVAL, || async {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("esx8cv#1.out#8"))
    })
    .await;
    let dir = app.stop().await;
    let text = std::fs::read_to_string(dir.path().join("routing_table.json")).expect("routing file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json, serde_json::json!({"es9out#1": "doorway#1.threshold", "esx8cv#1.out#8": "arch#1.inputJack#1"}));

    let again = TestApp::spawn_in(dir, &[]).await;
    let replay = again.osc.drain().await;
    assert_eq!(
        replay,
        vec![
            routing(&["add", "es9out#1", "doorway#1.threshold"]),
            routing(&["add", "esx8cv#1.out#8", "arch#1.inputJack#1"])
        ]
    );
    assert_eq!(again.state().await["routes"]["es9out#1"], "doorway#1.threshold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_bots_routing_file_loads_as_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("routing_table.json"), "{\n  \"es9out#2\": \"prismaticray#1.frequency\"\n}\n")
        .expect("write");
    let app = TestApp::spawn_in(dir, &[]).await;
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#2", "prismaticray#1.frequency"]));
    app.viewer("ann", "prismaticray#1.frequency: 127");
    assert_eq!(app.osc.recv().await, cv("es9out#2", 1.0, "prismaticray", 1, "frequency", 127));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_format_sends_lzx_paths_for_every_variable() {
    let app = TestApp::spawn_with(&[("OSC_FORMAT", "both")]).await;
    app.viewer("ann", "passage#1.thru#2: 127");
    let m = app.osc.recv().await;
    assert_eq!(m.addr, "/lzx/passage/1/thru/2");
    assert_eq!(m.args, vec![OscType::Float(1.0)]);

    let address_only = TestApp::spawn_with(&[("OSC_FORMAT", "address")]).await;
    address_only.op("!admin es9out#1 → doorway#1.gain");
    address_only.viewer("ann", "doorway#1.gain: 0");
    let only = address_only.osc.drain().await;
    assert_eq!(only.len(), 1, "no /cv or /routing in address mode: {only:?}");
    assert_eq!(only[0].addr, "/lzx/doorway/1/gain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_osc_target_receives_and_a_failing_target_is_counted_not_fatal() {
    let second = OscReceiver::bind().await;
    // Sending to the broadcast address without SO_BROADCAST fails at once: a real failing target.
    let targets = format!("{{osc}},255.255.255.255:9,{}", second.addr());
    let app = TestApp::spawn_with(&[("OSC_TARGETS", &targets)]).await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.viewer("ann", "doorway#1.gain: 127");
    let expected = cv("es9out#1", 1.0, "doorway", 1, "gain", 127);
    assert_eq!(app.osc.recv_addr("/cv").await, expected);
    assert_eq!(second.recv_addr("/cv").await, expected);
    assert!(app.stat("osc_failed").await >= 2, "the broadcast target failed for /routing and /cv");
    assert!(app.get_json("/healthz").await["status"] == "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_ignored_counted_and_the_bot_keeps_serving() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.osc.drain().await;
    let ten_kb = format!("doorway#1.threshold: {}", "9".repeat(10_000));
    let junk_10kb = "x".repeat(10_000);
    let cases: Vec<(&str, ParseError)> = vec![
        (&ten_kb, ParseError::BadValue),
        ("doorway#1.threshold: 128", ParseError::BadValue),
        ("doorway#1.threshold: -1", ParseError::BadValue),
        ("doorway#1.threshold: 1e9", ParseError::BadValue),
        ("doorway#1.threshold: abc", ParseError::BadValue),
        ("doorway#1.threshold: 89\u{0}", ParseError::ControlCharacters),
        ("door\u{1b}[31mway#1.threshold: 89", ParseError::ControlCharacters),
        ("nosuchmodule#1.threshold: 5", ParseError::UnknownVariable),
        ("doorway#1.nosuchparam: 5", ParseError::UnknownVariable),
        ("!admin es9out#99 → doorway#1.threshold", ParseError::UnknownOutput),
        ("!admin remove esx8cv#9.out#1", ParseError::UnknownOutput),
        ("\u{1F525}\u{1F525}#1.\u{1F525}: 5", ParseError::UnknownVariable),
    ];
    // Refused for the reason the counters are labelled by (a wrong name also says which part).
    let reason = |outcome: Outcome| match outcome {
        Outcome::Refused(Refusal::Parse(rejection)) => Some(rejection.reason()),
        _ => None,
    };
    for (line, want) in &cases {
        assert_eq!(reason(app.viewer("troll", line)), Some(*want), "{line:?}");
    }
    assert_eq!(reason(app.viewer("troll", &junk_10kb)), Some(ParseError::NotACommand));
    assert_eq!(reason(app.viewer("troll", "\u{1F600} hi chat")), Some(ParseError::NotACommand));
    assert!(app.osc.drain().await.is_empty(), "nothing reaches the hardware");
    assert_eq!(app.stat("invalid_bad_value").await, 5);
    assert_eq!(app.stat("invalid_control_characters").await, 2);
    assert_eq!(app.stat("invalid_unknown_variable").await, 3);
    assert_eq!(app.stat("invalid_unknown_output").await, 2);
    assert_eq!(app.state().await["parameters"], serde_json::json!({}));
    // And it still works.
    assert_eq!(app.viewer("fan", "doorway#1.threshold: 1"), done());
    assert_eq!(app.osc.recv().await, cv("es9out#1", 1.0 / 127.0, "doorway", 1, "threshold", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_cannot_run_admin_commands_and_cooldown_applies() {
    let app = TestApp::spawn().await;
    assert!(matches!(app.viewer("rando", "!admin emergency stop"), Outcome::Refused(Refusal::Gate(_))));
    assert!(matches!(app.viewer("rando", "es9out#1 → doorway#1.gain"), Outcome::Refused(Refusal::Gate(_))));
    assert_eq!(app.state().await["emergency"]["active"], false);
    assert_eq!(app.state().await["routes"], serde_json::json!({}));
    assert_eq!(app.viewer("ann", "doorway#1.gain: 1"), done());
    assert!(matches!(app.viewer("ann", "doorway#1.gain: 2"), Outcome::Refused(Refusal::Gate(_))));
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 1);
    assert_eq!(app.stat("denied_not_admin").await, 2);
    assert_eq!(app.stat("denied_cooldown").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_jacks_follow_the_older_bots_sequence_rule() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    assert!(matches!(app.viewer("a", "arch#1.inputJack#2: 5"), Outcome::Refused(Refusal::InputJackOrder { .. })));
    assert_eq!(app.viewer("a", "arch#1.inputJack#1: 5"), done());
    assert_eq!(app.viewer("a", "arch#1.inputJack#2: 5"), done());
    assert_eq!(app.stat("refused_input_jack").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_viewers_route_outputs_and_move_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extras = cvbot::Extras { demo: true, ..cvbot::Extras::default() };
    let app = TestApp::spawn_full(dir, &[], extras).await;
    let first = app.osc.recv_addr("/routing").await;
    assert_eq!(first.args[0], OscType::String("add".into()));
    let moved = app.osc.recv_addr("/cv").await;
    assert!(matches!(moved.args[1], OscType::Float(v) if (0.0..=1.0).contains(&v)), "{moved:?}");
    assert!(app.state().await["parameters"].as_object().is_some_and(|p| !p.is_empty()));
}
