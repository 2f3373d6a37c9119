//! The scenes file of a lone instance without Redis: a saved scene outlives the process and a
//! recall after a restart sets its values again (seen on a real UDP receiver and in `/api/state`), a
//! deleted one stays deleted, `--demo` never writes the file, and a broken file stops start-up with
//! one line naming the file and line.

use std::process::Stdio;

use cvbot::Extras;
use cvbot::coord::{Answer, Done, Outcome};
use rosc::{OscMessage, OscType};
use serde_json::json;

use crate::binary::cvbot;
use crate::helpers::{ARRIVAL, FAST_REDIS, TestApp, eventually, routing};

/// The scenes file of an app started by the helpers: `scenes.json` beside its routing file.
fn scenes_file(app: &TestApp) -> std::path::PathBuf {
    app.dir.path().join("scenes.json")
}

/// Waits until the scenes file's writer has saved a table holding exactly `scenes`.
async fn saved(app: &TestApp, scenes: &[&str]) {
    let path = scenes_file(app);
    eventually(&format!("scenes {scenes:?} in the scenes file"), ARRIVAL, || async {
        let Ok(text) = std::fs::read_to_string(&path) else { return false };
        let table: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        table.as_object().is_some_and(|t| t.len() == scenes.len() && scenes.iter().all(|s| t.contains_key(*s)))
    })
    .await;
}

fn is_admin_done(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Done(Done::Admin(_)))
}

/// The value a `/cv` message carries (its last argument), or `None` for any other message.
fn cv_value(message: &OscMessage, route: &str) -> Option<i32> {
    match message.args.as_slice() {
        [OscType::String(r), .., OscType::Int(value)] if message.addr == "/cv" && r == route => Some(*value),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_scene_survives_a_restart_without_redis_and_its_recall_sets_the_values_again() {
    let app = TestApp::spawn().await;
    assert!(is_admin_done(&app.op("!admin es9out#1 → doorway#1.threshold")));
    app.viewer("ann", "doorway#1.threshold: 89");
    app.viewer("bob", "doorway#1.gain: 12");
    assert!(is_admin_done(&app.op("!admin scene save Intro")));
    saved(&app, &["intro"]).await;
    let dir = app.stop().await;
    let text = std::fs::read_to_string(dir.path().join("scenes.json")).expect("scenes file");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("json"),
        json!({"intro": {"doorway#1.gain": 12, "doorway#1.threshold": 89}})
    );

    let again = TestApp::spawn_in(dir, &[]).await;
    assert_eq!(again.osc.drain().await, vec![routing(&["add", "es9out#1", "doorway#1.threshold"])]);
    let state = again.state().await;
    assert_eq!(state["scenes"], json!({"intro": 2}));
    assert_eq!(state["parameters"], json!({}), "values are not kept without Redis; the scene is");
    let recall = again.op("!admin scene recall intro");
    assert!(matches!(&recall, Outcome::Done(Done::Recalled { values: 2, .. })), "{recall:?}");
    let sent = again.osc.drain().await;
    assert_eq!(sent.iter().filter_map(|m| cv_value(m, "es9out#1")).collect::<Vec<_>>(), vec![89], "{sent:?}");
    let state = again.state().await;
    assert_eq!(state["parameters"]["doorway#1.threshold"]["value"], 89);
    assert_eq!(state["parameters"]["doorway#1.gain"]["value"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_scene_is_gone_after_a_restart_and_the_others_stay() {
    let app = TestApp::spawn().await;
    app.viewer("ann", "doorway#1.threshold: 89");
    assert!(is_admin_done(&app.op("!admin scene save intro")));
    app.viewer("bob", "doorway#1.gain: 12");
    assert!(is_admin_done(&app.op("!admin scene save outro")));
    saved(&app, &["intro", "outro"]).await;
    assert!(is_admin_done(&app.op("!admin scene delete intro")));
    saved(&app, &["outro"]).await;
    let dir = app.stop().await;

    let again = TestApp::spawn_in(dir, &[]).await;
    assert_eq!(again.state().await["scenes"], json!({"outro": 2}));
    let recall = again.op("!admin scene recall intro");
    assert!(matches!(&recall, Outcome::Done(Done::Answer(Answer::NoScene(n))) if n.as_str() == "intro"), "{recall:?}");
    assert_eq!(again.state().await["parameters"], json!({}), "a recall of no scene sets nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reads_the_scenes_file_and_never_writes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scenes.json");
    let show = "{\n  \"intro\": {\n    \"doorway#1.threshold\": 89\n  }\n}\n";
    std::fs::write(&path, show).expect("write scenes file");
    let app = TestApp::spawn_full(dir, &[], Extras { demo: true, ..Extras::default() }).await;
    assert_eq!(app.state().await["scenes"], json!({"intro": 1}));
    assert!(is_admin_done(&app.op("!admin scene delete intro")));
    app.viewer("ann", "doorway#1.gain: 12");
    assert!(is_admin_done(&app.op("!admin scene save demo")));
    let dir = app.stop().await;
    assert_eq!(std::fs::read_to_string(dir.path().join("scenes.json")).expect("still there"), show);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_scenes_file_stops_an_in_process_start_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scenes.json");
    std::fs::write(&path, "{\n  \"intro\": {\n    \"doorway#1.threshold\": 200\n  }\n}\n").expect("write");
    let err = TestApp::try_spawn_timed(dir, &[], Extras::default(), FAST_REDIS).await.err().expect("refused");
    assert!(err.downcast_ref::<cvbot::app::StartupError>().is_some(), "{err:#}");
    assert_eq!(
        err.to_string(),
        format!(
            "scenes file {} line 3: intro: doorway#1.threshold: 200 is above the highest value, 127",
            path.display()
        )
    );
}

#[test]
fn a_broken_scenes_file_exits_2_with_one_line_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let routing_file = dir.path().join("routing_table.json");
    let path = dir.path().join("scenes.json");
    for (text, wanted) in [
        (
            "{\n  \"intro\": {\n    \"doorway#1.nope\": 1\n  }\n}\n",
            "line 3: intro: unknown variable \"doorway#1.nope\"",
        ),
        ("{\n  \"intro\": {},\n  \"not a name\": {}\n}\n", "line 3: \"not a name\" is not a scene name"),
        ("{\n  \"intro\": {\n    \"doorway#1.gain\": 1,\n  }\n}\n", "line 4, column 3: trailing comma"),
    ] {
        std::fs::write(&path, text).expect("write");
        let out = cvbot()
            .current_dir(dir.path())
            .env("ROUTING_FILE", &routing_file)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .output()
            .expect("run cvbot");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].contains(&format!("scenes file {} {wanted}", path.display())), "{stderr}");
    }
}
