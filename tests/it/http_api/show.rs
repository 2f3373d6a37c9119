//! Show control over real HTTP: `POST /api/admin/mode`, the scene endpoints (`/api/scenes`, a
//! scene's `recall`, `DELETE`) and the lock endpoints (`/api/locks`, `DELETE /api/locks/{target}`),
//! each read back through `/api/state` and, for locks, through a viewer's chat line.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{send, write};
use crate::helpers::{TestApp, cv};

/// Every show write with a body that would do something on the state [`show_state`] sets up.
fn show_writes() -> Vec<(Method, &'static str, Value)> {
    vec![
        (Method::POST, "/api/admin/mode", json!({"mode": "democracy", "window_ms": 10_000})),
        (Method::POST, "/api/scenes", json!({"name": "other"})),
        (Method::POST, "/api/scenes/intro/recall", json!({})),
        (Method::DELETE, "/api/scenes/intro", json!({})),
        (Method::POST, "/api/locks", json!({"target": "doorway#1"})),
        (Method::DELETE, "/api/locks/doorway%231.threshold", json!({})),
    ]
}

/// A saved scene, a value changed since, and a lock: something for each write to change.
fn show_state(app: &TestApp) {
    app.op("doorway#1.threshold: 30");
    app.op("!admin scene save intro");
    app.op("doorway#1.threshold: 99");
    app.op("!admin lock doorway#1.threshold");
}

/// What the show writes would change, as `/api/state` shows it.
async fn show_view(app: &TestApp) -> Value {
    let s = app.state().await;
    json!({"mode": s["mode"]["mode"], "scenes": s["scenes"], "locks": s["locks"], "parameters": s["parameters"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_writes_without_or_with_a_wrong_token_get_401_and_change_nothing() {
    let app = TestApp::spawn_admin().await;
    show_state(&app);
    let before = show_view(&app).await;
    assert_eq!(before["locks"], json!(["doorway#1.threshold"]), "{before}");
    for (method, path, body) in show_writes() {
        let (status, answer) = send(&app, method.clone(), path, None, Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {answer}");
        let (status, answer) = send(&app, method.clone(), path, Some("test-admin-token-012345678X"), Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token: {answer}");
        assert_eq!(answer["error"], "wrong admin token");
    }
    // Bad names too: the token is checked before anything in the request is looked at.
    let (status, _) = send(&app, Method::DELETE, "/api/locks/nosuch", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(show_view(&app).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_switches_to_democracy_and_back_and_shows_in_the_state() {
    let app = TestApp::spawn_admin().await;
    assert_eq!(app.state().await["mode"]["mode"], "anarchy");
    let democracy = json!({"mode": "democracy", "window_ms": 10_000});
    let (status, answer) = write(&app, Method::POST, "/api/admin/mode", &democracy).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"applied": true, "reply": "democracy 10s: each command is a vote, the median wins"}));
    let mode = &app.state().await["mode"];
    assert_eq!((&mode["mode"], &mode["window_ms"]), (&json!("democracy"), &json!(10_000)), "{mode}");
    assert!(mode["started_ms"].as_u64().is_some_and(|t| t > 0), "{mode}");
    let (status, answer) = write(&app, Method::POST, "/api/admin/mode", &democracy).await;
    assert_eq!(status, StatusCode::CONFLICT, "the same mode again changes nothing: {answer}");
    assert_eq!(answer["error"], "the mode is already democracy 10s");

    for bad in [
        json!({"mode": "democracy", "window_ms": 1_999}),
        json!({"mode": "democracy", "window_ms": 120_001}),
        json!({"mode": "democracy"}),
        json!({"mode": "anarchy", "window_ms": 5_000}),
        json!({"mode": "monarchy"}),
        json!({"mode": "anarchy", "why": "because"}),
        json!({}),
    ] {
        let (status, answer) = write(&app, Method::POST, "/api/admin/mode", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    let (_, answer) =
        write(&app, Method::POST, "/api/admin/mode", &json!({"mode": "democracy", "window_ms": 500})).await;
    assert_eq!(answer["error"], "window_ms must be from 2000 to 120000", "says why");
    assert_eq!(app.state().await["mode"]["window_ms"], 10_000, "a refused mode changed nothing");
    // A viewer's line is a vote now: chat answers it with nothing, the API with where it stands.
    for (user, value, votes, median) in [("ann", 40, 1, 40), ("bob", 90, 2, 40), ("cat", 60, 3, 60)] {
        let line = json!({"user": user, "text": format!("doorway#1.gain: {value}")});
        let (status, answer) = write(&app, Method::POST, "/api/chat", &line).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let vote = json!({"variable": "doorway#1.gain", "votes": votes, "median": median});
        assert_eq!(answer, json!({"applied": true, "reply": null, "vote": vote}));
    }

    let (status, answer) = write(&app, Method::POST, "/api/admin/mode", &json!({"mode": "anarchy"})).await;
    assert_eq!((status, answer["reply"].as_str()), (StatusCode::OK, Some("anarchy: every command applies at once")));
    let mode = &app.state().await["mode"];
    assert_eq!((&mode["mode"], mode.get("window_ms")), (&json!("anarchy"), None), "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scene_saved_over_http_brings_its_values_back_on_recall_until_it_is_deleted() {
    let app = TestApp::spawn_admin().await;
    let (status, answer) = write(&app, Method::POST, "/api/scenes", &json!({"name": "intro"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing set, nothing to save: {answer}");
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.op("doorway#1.threshold: 30");
    app.op("doorway#1.gain: 7");

    let (status, answer) = write(&app, Method::POST, "/api/scenes", &json!({"name": "Intro"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"applied": true, "reply": "saved scene intro (2 values)"}));
    let saved = json!({"intro": {"values": {"doorway#1.gain": 7, "doorway#1.threshold": 30}}});
    assert_eq!(app.get_json("/api/scenes").await, saved, "open, like /api/state");
    assert_eq!(app.state().await["scenes"], json!({"intro": 2}));

    app.op("doorway#1.threshold: 99");
    app.osc.drain().await;
    let (status, answer) = write(&app, Method::POST, "/api/scenes/intro/recall", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reply"], "recalled scene intro (2 values)");
    assert_eq!(app.state().await["parameters"]["doorway#1.threshold"]["value"], 30, "the value is back");
    let sent = app.osc.drain().await;
    let back = cv("es9out#1", 30.0 / 127.0, "doorway", 1, "threshold", 30);
    assert!(sent.contains(&back), "the recall reached the jack: {sent:?}");

    for (method, path) in [(Method::DELETE, "/api/scenes/a%20b"), (Method::POST, "/api/scenes/x.y/recall")] {
        let (status, answer) = write(&app, method.clone(), path, &json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
    }
    let (status, _) = write(&app, Method::POST, "/api/scenes", &json!({"name": "no spaces"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, answer) = write(&app, Method::DELETE, "/api/scenes/INTRO", &json!({})).await;
    assert_eq!((status, answer["reply"].as_str()), (StatusCode::OK, Some("deleted scene intro")), "{answer}");
    let (status, answer) = write(&app, Method::POST, "/api/scenes/intro/recall", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"], "no scene named intro (see scene list)");
    let (status, _) = write(&app, Method::DELETE, "/api/scenes/intro", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get_json("/api/scenes").await, json!({}));
    assert_eq!(app.state().await.get("scenes"), None, "absent when there are none");
}

/// A viewer's chat line through `POST /api/chat`.
async fn viewer(app: &TestApp, user: &str, text: &str) -> Value {
    let (status, answer) = write(app, Method::POST, "/api/chat", &json!({"user": user, "text": text})).await;
    assert_eq!(status, StatusCode::OK, "{text}: {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_refuses_viewers_saying_why_lets_admin_writes_through_and_unlocks() {
    let app = TestApp::spawn_admin().await;
    let lock = |target: &str| {
        let body = json!({"target": target});
        let app = &app;
        async move { write(app, Method::POST, "/api/locks", &body).await }
    };
    let (status, answer) = lock("Doorway#1.THRESHOLD").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"applied": true, "reply": "locked doorway#1.threshold"}));
    assert_eq!(app.get_json("/api/locks").await, json!(["doorway#1.threshold"]));
    assert_eq!(app.state().await["locks"], json!(["doorway#1.threshold"]));
    let (status, _) = lock("doorway#1.threshold").await;
    assert_eq!(status, StatusCode::CONFLICT, "already locked");
    for bad in ["doorway#9", "nosuch#1.x", "doorway", ""] {
        let (status, answer) = lock(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {answer}");
    }

    let refused = viewer(&app, "ann", "doorway#1.threshold: 50").await;
    assert_eq!(refused, json!({"applied": false, "refused": "doorway#1.threshold is locked"}));
    assert_eq!(viewer(&app, "ann", "doorway#1.gain: 5").await["applied"], true, "only the locked one");
    let publish = json!({"type": "parameter_update", "payload": {"variable": "doorway#1.threshold", "value": 60}});
    let (status, answer) = write(&app, Method::POST, "/api/events/publish", &publish).await;
    assert_eq!(status, StatusCode::OK, "an admin write still applies: {answer}");
    let moderator = json!({"user": "the_mod", "text": "doorway#1.threshold: 61", "badges": ["moderator"]});
    assert_eq!(write(&app, Method::POST, "/api/chat", &moderator).await.1["applied"], true);
    assert_eq!(app.state().await["parameters"]["doorway#1.threshold"]["value"], 61);

    lock("doorway#1").await;
    let refused = viewer(&app, "bob", "doorway#1.gain: 9").await;
    assert_eq!(refused["refused"], "doorway#1.gain is locked (all of doorway#1 is)");

    let (status, answer) = write(&app, Method::DELETE, "/api/locks/doorway%231.threshold", &json!({})).await;
    assert_eq!((status, answer["reply"].as_str()), (StatusCode::OK, Some("unlocked doorway#1.threshold")));
    let (status, answer) = write(&app, Method::DELETE, "/api/locks/doorway%231.threshold", &json!({})).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::CONFLICT, Some("doorway#1.threshold is not locked")));
    let (status, _) = write(&app, Method::DELETE, "/api/locks/nosuch", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get_json("/api/locks").await, json!(["doorway#1"]));
    let (status, answer) = write(&app, Method::DELETE, "/api/locks/all", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "unlock all lifts every lock: {answer}");
    assert_eq!(app.get_json("/api/locks").await, json!([]));
    assert_eq!(app.state().await.get("locks"), None);
    assert_eq!(viewer(&app, "bob", "doorway#1.threshold: 50").await["applied"], true, "free again");
}
