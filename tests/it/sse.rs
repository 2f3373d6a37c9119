//! `GET /events` read back over real HTTP: snapshot first, numbered updates after chat commands,
//! `Last-Event-ID` resume from the replay ring, a fresh snapshot when the id is gone, and open
//! streams that never hold up shutdown.

use std::time::{Duration, Instant};

use cvbot::app::SHUTDOWN_GRACE;
use cvbot::http::hub::REPLAY_RING;
use serde_json::{Value, json};

use crate::helpers::{ARRIVAL, TestApp};

/// One parsed `text/event-stream` event.
#[derive(Debug)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<u64>,
    pub data: Value,
}

/// A streaming reader of `text/event-stream` over reqwest; keep-alive comments are skipped.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub async fn connect(app: &TestApp, last_event_id: Option<&str>) -> SseClient {
        let mut request = reqwest::Client::new().get(app.url("/events"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("GET /events");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseClient { response, buffer: String::new() }
    }

    /// The next event, or a test failure after [`ARRIVAL`].
    pub async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(ARRIVAL, self.read()).await.expect("an SSE event in time").expect("stream still open")
    }

    /// The next event, or `None` when the server ended the stream.
    pub async fn read(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => value.clone_into(&mut name),
            "id" => id = Some(value.parse().expect("numeric id")),
            "data" => data.push_str(value),
            _ => {} // a comment (keep-alive, empty field name) or `retry`
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent { name, id, data: serde_json::from_str(&data).expect("JSON data") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_starts_with_a_snapshot_then_gets_numbered_updates() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    app.viewer("ann", "doorway#1.gain: 5");
    let mut sse = SseClient::connect(&app, None).await;
    let snapshot = sse.next().await;
    assert_eq!(snapshot.name, "snapshot");
    assert_eq!(snapshot.data["instance_id"], "bot-001");
    assert_eq!(snapshot.data["parameters"]["doorway#1.gain"]["value"], 5);
    assert_eq!(snapshot.data["overlay_enabled"], true);
    let first = snapshot.id.expect("snapshots carry the id they are current at");

    app.viewer("bob", "doorway#1.threshold: 89");
    let update = sse.next().await;
    assert_eq!((update.name.as_str(), update.id), ("update", Some(first + 1)));
    assert_eq!(update.data["type"], "parameter");
    assert_eq!(update.data["variable"], "doorway#1.threshold");
    assert_eq!(update.data["parameter"]["value"], 89);
    assert_eq!(update.data["parameter"]["user"], "bob");
    assert_eq!(update.data["parameter"]["remote"], false);

    app.op("!admin es9out#1 → doorway#1.threshold");
    let routed = sse.next().await;
    assert_eq!(routed.id, Some(first + 2));
    assert_eq!(routed.data["type"], "state");
    assert_eq!(routed.data["action"], "routed es9out#1 → doorway#1.threshold");
    let volts = routed.data["state"]["parameters"]["doorway#1.threshold"]["voltage"].as_f64().expect("routed: volts");
    assert!((volts - 89.0 / 127.0).abs() < 1e-5, "{volts}");

    app.op("!admin emergency stop too bright");
    let stop = sse.next().await;
    assert_eq!(stop.id, Some(first + 3));
    // A stop changes what every routed output shows, so it comes as the whole state.
    assert_eq!(stop.data["type"], "state");
    assert_eq!(stop.data["action"], "EMERGENCY STOP: too bright");
    assert_eq!(
        stop.data["state"]["emergency"],
        json!({"active": true, "message": "too bright", "held": {"es9out#1": 0.0}})
    );
    assert_eq!(stop.data["state"]["parameters"]["doorway#1.threshold"]["voltage"], 0.0, "held at the safe voltage");
    assert_eq!(stop.data["state"]["parameters"]["doorway#1.threshold"]["held"], true);
    app.op("!admin overlay off");
    assert_eq!(sse.next().await.data, json!({"type": "overlay", "enabled": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_updates() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    let mut sse = SseClient::connect(&app, None).await;
    let seen = sse.next().await.id.expect("id");
    drop(sse);
    app.viewer("ann", "doorway#1.gain: 1");
    app.viewer("bob", "doorway#1.gain: 2");
    app.op("!admin overlay off");

    let mut sse = SseClient::connect(&app, Some(&seen.to_string())).await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(sse.next().await);
    }
    assert!(missed.iter().all(|e| e.name == "update"), "no snapshot on a good resume: {missed:?}");
    assert_eq!(missed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![Some(seen + 1), Some(seen + 2), Some(seen + 3)]);
    assert_eq!(missed[1].data["parameter"]["user"], "bob");
    assert_eq!(missed[2].data["type"], "overlay");

    // Up to date: nothing is replayed, and the next change arrives as usual.
    let mut current = SseClient::connect(&app, Some(&(seen + 3).to_string())).await;
    app.viewer("cat", "doorway#1.gain: 3");
    let next = current.next().await;
    assert_eq!((next.name.as_str(), next.id), ("update", Some(seen + 4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_an_id_that_is_gone_gets_a_fresh_snapshot() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0"), ("GLOBAL_RATE_LIMIT", "0")]).await;
    let mut sse = SseClient::connect(&app, None).await;
    let seen = sse.next().await.id.expect("id");
    drop(sse);
    // More changes than the ring keeps.
    for i in 0..=REPLAY_RING {
        app.op(&format!("doorway#1.gain: {}", i % 128));
    }
    app.op("doorway#1.threshold: 42");
    for id in [seen.to_string(), "1".to_owned(), "not-a-number".to_owned(), u64::MAX.to_string()] {
        let mut sse = SseClient::connect(&app, Some(&id)).await;
        let first = sse.next().await;
        assert_eq!(first.name, "snapshot", "Last-Event-ID {id}");
        assert_eq!(first.data["parameters"]["doorway#1.threshold"]["value"], 42);
        assert!(first.id.is_some_and(|now| now > seen + REPLAY_RING as u64), "{:?}", first.id);
    }
    // The page passes its id in the query string when it re-creates its EventSource.
    let response = reqwest::get(app.url(&format!("/events?last_event_id={seen}"))).await.expect("GET");
    let mut sse = SseClient { response, buffer: String::new() };
    assert_eq!(sse.next().await.name, "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_event_streams_end_on_shutdown_and_never_hold_it_up() {
    let mut app = TestApp::spawn().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = SseClient::connect(&app, None).await;
        assert_eq!(sse.next().await.name, "snapshot");
        streams.push(sse);
    }
    assert_eq!(app.get_json("/api/events/health").await["subscriptions"]["sse_clients"], 3);
    let started = Instant::now();
    app.shutdown.cancel();
    app.running.take().expect("running").wait().await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(took < SHUTDOWN_GRACE, "shutdown waited {took:?} for open streams (grace {SHUTDOWN_GRACE:?})");
    for mut sse in streams {
        let end = tokio::time::timeout(Duration::from_secs(2), sse.read()).await.expect("the stream ended");
        assert!(end.is_none(), "no more events after shutdown: {end:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_keep_alive_comments() {
    let app = TestApp::spawn_with(&[("SSE_KEEPALIVE_SECS", "1")]).await;
    let mut sse = SseClient::connect(&app, None).await;
    assert_eq!(sse.next().await.name, "snapshot");
    let comment = tokio::time::timeout(ARRIVAL, async {
        loop {
            if let Some(at) = sse.buffer.find(":keep-alive") {
                return at;
            }
            let chunk = sse.response.chunk().await.expect("read").expect("stream open");
            sse.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(comment.is_ok(), "a keep-alive comment within {ARRIVAL:?}: {:?}", sse.buffer);
}
