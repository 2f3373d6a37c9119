//! Show control across instances: democracy's votes from Twitch chat become one write on every
//! instance, a scene saved on one is recalled on another, and a lock set on one holds on the other.
//! Real Redis, the stand-in Twitch server, real UDP receivers decoded with rosc.

use std::time::Duration;

use cvbot::coord::{Answer, Done, Outcome, Refusal};
use serde_json::Value;

use crate::cluster::connected;
use crate::fake_twitch::{FakeTwitch, User};
use crate::helpers::{ARRIVAL, SILENCE, TestApp, cv, eventually, routing};
use crate::redis_server::RedisServer;

/// An instance on `url`, with extra variables (a Twitch channel's, say).
async fn instance(id: &str, url: &str, extra: &[(String, String)]) -> TestApp {
    let mut vars: Vec<(&str, &str)> =
        vec![("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true"), ("RATE_LIMIT_MS", "0")];
    vars.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    TestApp::spawn_with(&vars).await
}

/// Waits until every app lists `n` live instances, so each knows who tallies.
async fn all_see(apps: &[&TestApp], n: usize) {
    for app in apps {
        eventually("every instance live", Duration::from_secs(10), || async {
            matches!(app.op("!admin instances"), Outcome::Done(Done::Answer(Answer::Instances(live))) if live.len() == n)
        })
        .await;
    }
}

async fn state_is(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) {
    eventually(what, ARRIVAL, || async { check(&app.state().await) }).await;
}

fn threshold(value: i32) -> rosc::OscMessage {
    cv("es9out#1", value as f32 / 127.0, "doorway", 1, "threshold", value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_votes_make_one_write_of_their_median_on_both_instances_and_no_osc_before() {
    let redis = RedisServer::start().await;
    let mut chan = FakeTwitch::channel("");
    let a = instance("bot-a", &redis.url(), &chan.vars()).await;
    let b = instance("bot-b", &redis.url(), &[]).await;
    connected(&[&a, &b]).await;
    all_see(&[&a, &b], 2).await;
    chan.joined().await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    assert_eq!(a.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    assert_eq!(b.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    a.op("!admin mode democracy 4s");
    state_is(&b, "democracy on the far instance", |s| s["mode"]["mode"] == "democracy").await;

    // The first viewer changes their mind: their latest vote counts, once.
    chan.say(&User::new("v0", 3000, ""), "doorway#1.threshold: 127");
    for (i, value) in (0u32..).zip([10, 20, 30, 100, 120]) {
        chan.say(&User::new(&format!("v{i}"), 3000 + i, ""), &format!("doorway#1.threshold: {value}"));
    }
    for app in [&a, &b] {
        state_is(app, "five votes counted", |s| s["votes"]["doorway#1.threshold"]["votes"] == 5).await;
    }
    let tally = b.state().await["votes"]["doorway#1.threshold"].clone();
    assert_eq!(tally["median"], 30, "the far instance counts the votes typed on the near one: {tally}");
    assert!(b.state().await["parameters"].get("doorway#1.threshold").is_none(), "a vote writes no value");

    // The first datagram after the route on either jack is the result, and nothing follows it.
    for app in [&a, &b] {
        assert_eq!(app.osc.try_recv(Duration::from_secs(8)).await, Some(threshold(30)), "one write of the median");
    }
    for app in [&a, &b] {
        assert_eq!(app.osc.try_recv(SILENCE).await, None, "exactly one write");
        let p = app.state().await["parameters"]["doorway#1.threshold"].clone();
        assert_eq!((p["value"].as_u64(), p["user"].as_str()), (Some(30), Some("chat (5 votes)")), "{p}");
        assert_eq!(p["source_instance"], "bot-a", "the first instance by name tallies");
    }
    assert_eq!(a.stat("verdicts_applied").await + b.stat("verdicts_applied").await, 1);

    // Anarchy again: a viewer's command applies at once, on both.
    a.op("!admin mode anarchy");
    state_is(&b, "anarchy on the far instance", |s| s["mode"]["mode"] == "anarchy").await;
    chan.say(&User::new("v9", 3009, ""), "doorway#1.threshold: 77");
    assert_eq!(a.osc.recv().await, threshold(77));
    assert_eq!(b.osc.recv().await, threshold(77));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scene_saved_on_one_instance_is_recalled_on_the_other_and_outlives_both() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance("bot-a", &redis.url(), &[]).await, instance("bot-b", &redis.url(), &[]).await);
    connected(&[&a, &b]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    a.op("!admin es9out#2 → doorway#1.gain");
    a.op("doorway#1.threshold: 10");
    a.op("doorway#1.gain: 20");
    assert!(matches!(a.op("!admin scene save look"), Outcome::Done(Done::Admin(_))));
    state_is(&b, "the scene on the far instance", |s| s["scenes"]["look"] == 2).await;
    b.op("doorway#1.threshold: 100");
    b.op("doorway#1.gain: 110");
    state_is(&a, "the new values on the near instance", |s| s["parameters"]["doorway#1.gain"]["value"] == 110).await;
    a.osc.drain().await;
    b.osc.drain().await;

    assert!(matches!(b.op("!admin scene recall look"), Outcome::Done(Done::Recalled { values: 2, .. })));
    let gain = cv("es9out#2", 20.0 / 127.0, "doorway", 1, "gain", 20);
    let sent = b.osc.drain().await;
    assert!(sent.contains(&threshold(10)) && sent.contains(&gain), "every routed output of b moved: {sent:?}");
    eventually("every routed output of a moved", ARRIVAL, || async {
        let got = a.state().await;
        got["parameters"]["doorway#1.threshold"]["value"] == 10 && got["parameters"]["doorway#1.gain"]["value"] == 20
    })
    .await;
    let sent = a.osc.drain().await;
    assert!(sent.contains(&threshold(10)) && sent.contains(&gain), "a's jacks: {sent:?}");

    a.stop().await;
    b.stop().await;
    // A new instance on the same Redis finds the scene (and could recall it).
    let c = instance("bot-c", &redis.url(), &[]).await;
    connected(&[&c]).await;
    state_is(&c, "the scene after both stopped", |s| s["scenes"]["look"] == 2).await;
    assert!(matches!(c.op("!admin scene recall look"), Outcome::Done(Done::Recalled { values: 2, .. })));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_set_on_one_instance_refuses_viewers_on_the_other_and_admins_still_write() {
    let redis = RedisServer::start().await;
    let mut chan = FakeTwitch::channel("");
    let mut vars = chan.vars();
    vars.push(("CHAT_REPLY_ERRORS".into(), "true".into()));
    let a = instance("bot-a", &redis.url(), &[]).await;
    let b = instance("bot-b", &redis.url(), &vars).await;
    connected(&[&a, &b]).await;
    chan.joined().await;
    a.op("!admin lock doorway#1.threshold");
    state_is(&b, "the lock on the far instance", |s| s["locks"] == serde_json::json!(["doorway#1.threshold"])).await;
    chan.say(&User::new("ann", 4001, ""), "doorway#1.threshold: 5");
    assert_eq!(chan.reply().await, "@ann doorway#1.threshold is locked");
    assert!(matches!(b.viewer("bob", "doorway#1.threshold: 6"), Outcome::Refused(Refusal::Locked { .. })));
    assert_eq!(b.op("doorway#1.threshold: 7"), Outcome::Done(Done::Set), "an admin still sets it");
    assert_eq!(b.viewer("bob", "doorway#1.gain: 8"), Outcome::Done(Done::Set), "the rest plays on");
    a.op("!admin lock all");
    state_is(&b, "lock all on the far instance", |s| s["locks"][0] == "all").await;
    assert!(matches!(b.viewer("bob", "doorway#2.gain: 9"), Outcome::Refused(Refusal::Locked { .. })));
    b.op("!admin unlock all");
    state_is(&a, "every lock lifted", |s| s.get("locks").is_none()).await;
    assert_eq!(a.viewer("bob", "doorway#1.threshold: 10"), Outcome::Done(Done::Set));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_tallier_is_killed_mid_window_the_next_instance_applies_the_verdict() {
    use crate::binary::{Bot, http_get};
    use crate::helpers::{OscReceiver, TOKEN};
    let redis = RedisServer::start().await;
    let b = instance("bot-b", &redis.url(), &[]).await;
    connected(&[&b]).await;
    let a_osc = OscReceiver::bind().await;
    let vars: Vec<(String, String)> = [
        ("INSTANCE_ID", "bot-a"),
        ("REDIS_URL", redis.url().as_str()),
        ("ENABLE_REDIS_EVENTS", "true"),
        ("ADMIN_TOKEN", TOKEN),
        ("RATE_LIMIT_MS", "0"),
        ("CHAT_STDIN", "off"),
        ("OSC_HEARTBEAT_MS", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut a = tokio::task::spawn_blocking(move || Bot::start_with(&a_osc, std::process::Stdio::null(), &vars))
        .await
        .expect("bot-a started");
    all_see(&[&b], 2).await;
    b.op("!admin es9out#1 → doorway#1.threshold");
    assert_eq!(b.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    b.op("!admin mode democracy 4s");
    let a_http = a.http.clone();
    eventually("democracy on bot-a", ARRIVAL, || async {
        let body = http_get(&a_http, "/api/state").unwrap_or_default();
        body.contains("\"democracy\"")
    })
    .await;
    let client = reqwest::Client::new();
    for (viewer, value) in [("ann", 10), ("bob", 50), ("cat", 90)] {
        let sent = client
            .post(format!("http://{}/api/chat", a.http))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"user": viewer, "text": format!("doorway#1.threshold: {value}")}))
            .send()
            .await
            .expect("POST /api/chat");
        assert!(sent.status().is_success(), "{}", sent.status());
    }
    state_is(&b, "three votes from bot-a's chat", |s| s["votes"]["doorway#1.threshold"]["votes"] == 3).await;
    // bot-a tallies (first by name) and dies before its window closes, without a goodbye.
    let (code, _) = a.signal("-KILL");
    assert_eq!(code, None, "killed by the signal");
    assert_eq!(b.osc.try_recv(Duration::from_secs(10)).await, Some(threshold(50)), "the verdict, once");
    assert_eq!(b.osc.try_recv(SILENCE).await, None);
    let p = b.state().await["parameters"]["doorway#1.threshold"].clone();
    assert_eq!((p["user"].as_str(), p["source_instance"].as_str()), (Some("chat (3 votes)"), Some("bot-b")), "{p}");
    b.stop().await;
}
