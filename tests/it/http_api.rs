//! The JSON API over real HTTP: every write route's happy path and its refusals (401, 400, 413), with
//! /api/state read back to prove a refused write changed nothing; and the read-only endpoints.

mod routes;
mod show;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TOKEN, TestApp, routing};

/// Every write route with a body that would succeed with the right token.
fn writes() -> Vec<(Method, &'static str, Value)> {
    vec![
        (
            Method::POST,
            "/api/events/publish",
            json!({"type": "parameter_update", "payload": {"variable": "doorway#1.threshold", "value": 89}}),
        ),
        (Method::POST, "/api/chat", json!({"user": "mod", "text": "!admin clear", "badges": ["moderator"]})),
        (Method::POST, "/api/routes", json!({"output": "es9out#1", "variable": "doorway#1.threshold", "slew": 2})),
        (Method::PUT, "/api/routes/es9out%231", json!({"variable": "doorway#1.threshold"})),
        (Method::DELETE, "/api/routes/es9out%231", json!({})),
        (Method::POST, "/api/admin/clear", json!({})),
        (Method::POST, "/api/admin/overlay", json!({"enabled": false})),
        (Method::POST, "/api/admin/emergency-stop", json!({"message": "nope"})),
        (Method::POST, "/api/admin/resume", json!({})),
    ]
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, app.url(path));
    if let Some(token) = auth {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn write(app: &TestApp, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
    send(app, method, path, Some(TOKEN), Some(body)).await
}

/// A raw body (for bad JSON and oversized bodies).
async fn write_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(app.url(path))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The state a fresh app starts in, to compare against after refused writes.
async fn assert_untouched(app: &TestApp) {
    let s = app.state().await;
    assert_eq!(s["parameters"], json!({}), "{s}");
    assert_eq!(s["routes"], json!({}), "{s}");
    assert_eq!(s["overlay_enabled"], true, "{s}");
    assert_eq!(s["emergency"]["active"], false, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_or_with_a_wrong_token_get_401_and_change_nothing() {
    let app = TestApp::spawn_admin().await;
    for (method, path, body) in writes() {
        let (status, answer) = send(&app, method.clone(), path, None, Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("Authorization")), "{answer}");
        let (status, answer) = send(&app, method.clone(), path, Some("test-admin-token-012345678X"), Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token: {answer}");
        assert_eq!(answer["error"], "wrong admin token");
    }
    let (status, _) = send(&app, Method::GET, "/api/admin/session", Some("wrong-token-wrong-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_untouched(&app).await;
    assert!(app.osc.drain().await.is_empty(), "nothing reached the hardware");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_token_every_write_is_disabled_with_a_clear_message() {
    let app = TestApp::spawn().await;
    for (method, path, body) in writes() {
        let (status, answer) = send(&app, method.clone(), path, Some(TOKEN), Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("set ADMIN_TOKEN")), "{answer}");
    }
    assert_untouched(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_unknown_variables_and_oversized_bodies_are_refused_and_change_nothing() {
    let app = TestApp::spawn_admin().await;
    for path in ["/api/events/publish", "/api/chat", "/api/admin/overlay", "/api/admin/emergency-stop"] {
        let (status, answer) = write_raw(&app, path, b"{not json".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("bad JSON")), "{answer}");
    }
    let big = format!(r#"{{"user": "a", "text": "{}"}}"#, "x".repeat(20_000)).into_bytes();
    for path in ["/api/chat", "/api/events/publish", "/api/admin/emergency-stop"] {
        let (status, answer) = write_raw(&app, path, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {answer}");
    }
    let refused = [
        json!({"type": "parameter_update", "payload": {"variable": "nosuch#1.gain", "value": 5}}),
        json!({"type": "parameter_update", "payload": {"variable": "doorway#1.threshold", "value": 128}}),
        json!({"type": "parameter_update", "payload": {"variable": "doorway#1.threshold", "value": "89"}}),
        json!({"type": "routing_change", "payload": {"output": "es9out#99", "variable": "doorway#1.gain"}}),
        json!({"type": "routing_change", "payload": {"output": "es9out#1", "variable": "doorway#1.nope"}}),
        json!({"type": "admin_command", "payload": {"action": "self_destruct"}}),
        json!({"type": "admin_command", "payload": {"action": "overlay_toggle"}}),
        json!({"type": "system_broadcast", "payload": {"message": "hi"}}),
        json!({"type": "mystery", "payload": {}}),
        json!({"payload": {}}),
    ];
    for body in &refused {
        let (status, answer) = write(&app, Method::POST, "/api/events/publish", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = write(&app, Method::PUT, "/api/routes/es9out%231", &json!({"variable": "nosuch#1.x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = write(&app, Method::PUT, "/api/routes/es9out%2399", &json!({"variable": "doorway#1.gain"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        write(&app, Method::POST, "/api/chat", &json!({"user": "x", "text": "hi", "badges": ["king"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = write(&app, Method::POST, "/api/chat", &json!({"user": "", "text": "doorway#1.gain: 1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let redis_only =
        json!({"type": "admin_command", "payload": {"action": "clear_all"}, "options": {"redisOnly": true}});
    let (status, answer) = write(&app, Method::POST, "/api/events/publish", &redis_only).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_untouched(&app).await;
    assert!(app.osc.drain().await.is_empty(), "nothing reached the hardware");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_maps_every_event_type_onto_the_same_commands_as_chat() {
    let app = TestApp::spawn_admin().await;
    let publish = |body: Value| {
        let app = &app;
        async move { write(app, Method::POST, "/api/events/publish", &body).await }
    };
    let (status, answer) = publish(json!({"type": "routing_change",
        "payload": {"output": "es9out#1", "variable": "doorway#1.threshold"}, "options": {"localOnly": true}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reply"], "routed es9out#1 → doorway#1.threshold");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]), "same OSC as chat");

    let (status, _) = publish(json!({"type": "parameter_update",
        "payload": {"variable": "doorway#1.threshold", "value": 89, "user": "bridge"}}))
    .await;
    assert_eq!(status, StatusCode::OK);
    let p = &app.state().await["parameters"]["doorway#1.threshold"];
    assert_eq!((p["value"].as_u64(), p["user"].as_str()), (Some(89), Some("bridge")));

    let (status, _) =
        publish(json!({"type": "admin_command", "payload": {"action": "overlay_toggle", "enabled": false}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.state().await["overlay_enabled"], false);
    publish(json!({"type": "admin_command", "payload": {"action": "emergency_stop", "message": "smoke"}})).await;
    assert_eq!(
        app.state().await["emergency"],
        json!({"active": true, "message": "smoke", "held": {"es9out#1": 0.0}}),
        "every routed output is shown at the safe voltage it is held at"
    );
    // The emergency latch refuses parameter writes from HTTP exactly as from chat.
    let (status, answer) =
        publish(json!({"type": "parameter_update", "payload": {"variable": "doorway#1.threshold", "value": 1}})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    publish(json!({"type": "admin_command", "payload": {"action": "resume"}})).await;
    assert_eq!(app.state().await["emergency"]["active"], false);
    publish(json!({"type": "admin_command", "payload": {"action": "clear_all"}})).await;
    assert_eq!(app.state().await["parameters"], json!({}));
    let (status, _) =
        publish(json!({"type": "routing_change", "payload": {"output": "es9out#1", "action": "remove"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.state().await["routes"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_endpoint_takes_the_same_parser_and_gate_as_twitch() {
    let app = TestApp::spawn_with(&[("ADMIN_TOKEN", TOKEN)]).await;
    let chat = |body: Value| {
        let app = &app;
        async move { write(app, Method::POST, "/api/chat", &body).await }
    };
    let (status, answer) = chat(json!({"user": "Ann", "text": "doorway#1.threshold: 89"})).await;
    assert_eq!((status, answer["applied"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");
    assert_eq!(app.state().await["parameters"]["doorway#1.threshold"]["user"], "ann");
    let (_, answer) = chat(json!({"user": "ann", "text": "doorway#1.threshold: 90"})).await;
    assert_eq!(answer["applied"], false);
    assert_eq!(answer["refused"], "per-user cooldown");
    let (_, answer) =
        chat(json!({"user": "rando", "text": "!admin emergency stop", "badges": ["vip", "subscriber"]})).await;
    assert_eq!(answer["refused"], "admin commands need broadcaster, moderator or ADMIN_USERS");
    assert_eq!(app.state().await["emergency"]["active"], false);
    let (_, answer) = chat(json!({"user": "troll", "text": "doorway#1.threshold: 300"})).await;
    assert_eq!(answer["refused"], "value must be a whole number from 0 to 127");
    let (_, answer) = chat(json!({"user": "the_mod", "text": "!admin emergency stop", "badges": ["moderator"]})).await;
    assert_eq!(answer["applied"], true, "{answer}");
    assert_eq!(app.state().await["emergency"]["active"], true);
    assert_eq!(app.stat("chat_lines").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_stop_resume_clear_and_toggle_the_overlay() {
    let app = TestApp::spawn_admin().await;
    let (status, answer) = send(&app, Method::GET, "/api/admin/session", Some(TOKEN), None).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"ok": true})));
    app.op("doorway#1.gain: 7");

    let (status, answer) =
        write(&app, Method::POST, "/api/admin/emergency-stop", &json!({"message": "too\nbright"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(app.state().await["emergency"], json!({"active": true, "message": "toobright", "held": {}}));
    let (status, _) = write(&app, Method::POST, "/api/admin/resume", &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.state().await["emergency"]["active"], false);

    // Clear and resume accept an empty body too.
    let response = reqwest::Client::new()
        .post(app.url("/api/admin/clear"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("clear");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.state().await["parameters"], json!({}));

    write(&app, Method::POST, "/api/admin/overlay", &json!({"enabled": false})).await;
    assert_eq!(app.state().await["overlay_enabled"], false);
    write(&app, Method::POST, "/api/admin/overlay", &json!({"enabled": true})).await;
    assert_eq!(app.state().await["overlay_enabled"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_report_health_history_catalog_metrics_and_pages() {
    let app = TestApp::spawn_admin().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.viewer("ann", "doorway#1.threshold: 89");
    app.viewer("bob", "doorway#1.gain: 3");
    app.op("!admin overlay off");

    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    let ready = app.get_json("/readyz").await;
    assert_eq!((ready["status"].as_str(), ready["redis"].as_str()), (Some("ready"), Some("disabled")));

    let health = app.get_json("/api/events/health").await;
    assert_eq!(health["mode"], "local-only");
    assert_eq!(health["redis"]["connected"], false);
    assert_eq!(health["instances"], json!(["bot-001"]));
    assert_eq!(health["events"]["published"], 0);
    assert_eq!(health["events"]["applied_local"], 4);

    // The hub is an observer called in the command's own task: the history holds every event at once.
    let history = app.get_json_as_admin("/api/events/history").await;
    assert_eq!(history["count"], 4, "{history}");
    assert_eq!(history["events"][0]["type"], "admin_command", "newest first");
    assert_eq!(history["events"][0]["data"], json!({"action": "overlay_toggle", "enabled": false}));
    let params = app.get_json_as_admin("/api/events/history?eventType=parameter_update&limit=1").await;
    assert_eq!(params["count"], 1);
    assert_eq!(params["events"][0]["remote"], false);
    assert_eq!(history["events"][0]["remote"], false, "admin events carry their origin too");
    assert_eq!(history["events"][0]["instance"], params["events"][0]["instance"], "both made here");
    assert!(history["events"][0]["hlc"].as_u64().is_some_and(|h| h > 0), "{history}");
    assert_eq!(
        params["events"][0]["data"],
        json!({"variable": "doorway#1.gain", "value": 3, "user": "bob", "source_instance": "bot-001"})
    );
    let routing = app.get_json_as_admin("/api/events/history?eventType=routing_change").await;
    assert_eq!(routing["events"][0]["data"]["output"], "es9out#1");
    for (query, status) in [
        ("source=redis", StatusCode::SERVICE_UNAVAILABLE),
        ("source=moon", StatusCode::BAD_REQUEST),
        ("limit=0", StatusCode::BAD_REQUEST),
        ("limit=many", StatusCode::BAD_REQUEST),
        ("eventType=gossip", StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = send(&app, Method::GET, &format!("/api/events/history?{query}"), Some(TOKEN), None).await;
        assert_eq!(got, status, "{query}: {answer}");
    }

    let catalog = app.get_json("/api/catalog").await;
    assert!(catalog["outputs"].as_array().is_some_and(|o| o.iter().any(|o| o["name"] == "es9out#1")));
    assert!(catalog["modules"].as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "doorway")));

    let metrics = reqwest::get(app.url("/metrics")).await.expect("metrics");
    assert!(metrics.headers()["content-type"].to_str().is_ok_and(|t| t.contains("openmetrics-text")));
    let text = metrics.text().await.expect("text");
    assert!(text.contains("cvbot_chat_lines_total 4"), "{text}");
    assert!(text.contains("cvbot_local_applied_total 4"), "{text}");
    assert!(text.contains("cvbot_sse_clients 0"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    for (page, script) in [("/overlay", "/overlay/overlay.js"), ("/admin", "/overlay/admin.js")] {
        let response = reqwest::get(app.url(page)).await.expect("page");
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let html = response.text().await.expect("html");
        assert!(html.contains(&format!("<script src=\"{script}\"></script>")), "{page} loads its script: {html}");
        let response = reqwest::get(app.url(script)).await.expect("script");
        assert_eq!(response.status(), StatusCode::OK, "{script}");
        assert!(response.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/javascript")));
        assert!(response.text().await.expect("js").contains("EventSource"), "{page} is the live page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_the_readme_lists_answers_as_documented() {
    // Each README row, called in the README's order with the admin token and a body of `{}`: reads
    // succeed, writes that need fields refuse `{}` as a bad request, and the rest do their job.
    let expected: &[(&str, StatusCode)] = &[
        ("GET /", StatusCode::OK),
        ("GET /overlay", StatusCode::OK),
        ("GET /admin", StatusCode::OK),
        ("GET /commands", StatusCode::OK),
        ("GET /events", StatusCode::OK),
        ("GET /api/state", StatusCode::OK),
        ("GET /api/stats", StatusCode::OK),
        ("GET /api/catalog", StatusCode::OK),
        ("GET /api/events/health", StatusCode::OK),
        ("GET /api/events/history", StatusCode::OK),
        ("GET /api/routes/es9out%231", StatusCode::OK),
        ("GET /api/scenes", StatusCode::OK),
        ("GET /api/locks", StatusCode::OK),
        ("GET /metrics", StatusCode::OK),
        ("GET /healthz", StatusCode::OK),
        ("GET /readyz", StatusCode::OK),
        ("POST /api/chat", StatusCode::BAD_REQUEST),
        ("POST /api/events/publish", StatusCode::BAD_REQUEST),
        ("POST /api/routes", StatusCode::BAD_REQUEST),
        ("PUT /api/routes/es9out%231", StatusCode::BAD_REQUEST),
        ("DELETE /api/routes/es9out%231", StatusCode::OK),
        ("POST /api/admin/emergency-stop", StatusCode::OK),
        ("POST /api/admin/resume", StatusCode::OK),
        ("POST /api/admin/clear", StatusCode::OK),
        ("POST /api/admin/overlay", StatusCode::BAD_REQUEST),
        ("POST /api/admin/mode", StatusCode::BAD_REQUEST),
        ("POST /api/scenes", StatusCode::BAD_REQUEST),
        // No scene is saved and nothing is locked on a fresh app.
        ("POST /api/scenes/intro/recall", StatusCode::NOT_FOUND),
        ("DELETE /api/scenes/intro", StatusCode::NOT_FOUND),
        ("POST /api/locks", StatusCode::BAD_REQUEST),
        ("DELETE /api/locks/doorway%231.threshold", StatusCode::CONFLICT),
        ("GET /api/admin/session", StatusCode::OK),
    ];
    let app = TestApp::spawn_admin().await;
    let readme = include_str!("../../README.md");
    let mut listed = Vec::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let Some((method, path)) = line[3..].split('`').next().and_then(|e| e.split_once(' ')) else { continue };
        let Ok(method) = method.parse::<Method>() else { continue };
        let path = path.split('?').next().unwrap_or(path).replace("{output}", "es9out%231");
        let path = path.replace("{name}", "intro").replace("{target}", "doorway%231.threshold");
        let row = format!("{method} {path}");
        let Some(&(_, want)) = expected.iter().find(|(r, _)| *r == row) else {
            panic!("README lists {row}, which this test does not know: add it above");
        };
        let (status, answer) = if path == "/events" {
            // A stream that never ends: the status is all there is to check.
            (reqwest::get(app.url(&path)).await.expect("GET /events").status(), Value::Null)
        } else {
            send(&app, method.clone(), &path, Some(TOKEN), Some(&json!({}))).await
        };
        assert_eq!(status, want, "README lists {row}: {answer}");
        listed.push(row);
    }
    let documented: Vec<String> = expected.iter().map(|(row, _)| (*row).to_owned()).collect();
    assert_eq!(listed, documented, "the README's endpoint tables, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_without_length_is_cut_off_at_the_limit_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_admin().await;
    let mut stream = tokio::net::TcpStream::connect(app.http_addr).await.expect("connect");
    let head = format!(
        "POST /api/admin/emergency-stop HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.http_addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = format!("{:x}\r\n{}\r\n", 4096, " ".repeat(4096));
    // 20 KiB in five chunks and no final chunk: the server must answer once it has read past 16 KiB,
    // without waiting for the end of the body (nothing is left unread, so the close is clean).
    for _ in 0..5 {
        stream.write_all(chunk.as_bytes()).await.expect("chunk");
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(crate::helpers::ARRIVAL, stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_untouched(&app).await;
}
