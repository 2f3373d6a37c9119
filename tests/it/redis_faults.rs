//! Redis trouble beside the hot path, and who may use an `INSTANCE_ID`: real `redis-server`s at
//! `maxmemory`, twins meeting after an outage or a partition, and a foreign publisher using our id.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cvbot::redis_link::presence::{DuplicateInstance, host_name};
use serde_json::Value;

use crate::cluster::{connected, connected_pair, converged, instance, redis_status};
use crate::helpers::{OscReceiver, TestApp, cv, eventually};
use crate::redis_server::{Proxy, RedisServer};

/// A presence heartbeat is 300 ms here (`FAST_REDIS`); a few of them, with room for a loaded machine.
const FEW_HEARTBEATS: Duration = Duration::from_secs(10);

async fn health(app: &TestApp) -> Value {
    app.get_json("/api/events/health").await
}

async fn state_hash(redis: &RedisServer) -> HashMap<String, String> {
    let mut conn = redis.conn().await;
    redis::cmd("HGETALL").arg("{cv}:state").query_async(&mut conn).await.expect("hgetall")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_maxmemory_the_session_keeps_serving_and_an_emergency_stop_reaches_the_peer_at_once() {
    let redis = RedisServer::start_noeviction().await;
    let (a, b) = connected_pair(&redis.url()).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    a.viewer("ann", "doorway#1.threshold: 100");
    eventually("b has a's route and value", Duration::from_secs(5), || async {
        b.state().await["parameters"]["doorway#1.threshold"]["value"] == 100
    })
    .await;
    b.osc.drain().await;
    let reconnects = (a.stat("redis_reconnects").await, b.stat("redis_reconnects").await);

    let filler = redis.fill_to_maxmemory().await;
    let sent = Instant::now();
    a.op("!admin emergency stop oom drill");
    let safe = b.osc.recv_addr("/cv").await;
    let took = sent.elapsed();
    assert_eq!(safe, cv("es9out#1", 0.0, "doorway", 1, "threshold", 0), "b sent its safe value");
    assert!(took < Duration::from_secs(1), "the emergency stop reached b after {took:?}");
    assert_eq!(b.state().await["emergency"]["message"], "oom drill");
    assert!(a.stat("redis_publish_unpersisted").await >= 1);
    // b publishes too: its events reach a the same way.
    b.op("!admin overlay off");
    eventually("a has b's overlay switch", Duration::from_secs(5), || async {
        a.state().await["overlay_enabled"] == false
    })
    .await;

    // Poison while the dead-letter stream refuses writes: counted, kept for the next heartbeat.
    redis.publish("cv:parameter:update", "{not json during oom").await;
    for app in [&a, &b] {
        eventually("the dead letter is waiting", Duration::from_secs(5), || async {
            app.stat("redis_dropped_not_json").await == 1 && app.stat("redis_dlq_failed").await >= 1
        })
        .await;
    }

    for app in [&a, &b] {
        eventually("degraded because redis is out of memory", Duration::from_secs(5), || async {
            let h = health(app).await;
            h["status"] == "degraded"
                && h["redis"]["reason"].as_str().is_some_and(|r| r.starts_with("redis out of memory"))
        })
        .await;
        // A heartbeat ran into the refusal: before, that tore the session down.
        eventually("a presence heartbeat failed", FEW_HEARTBEATS, || async {
            app.stat("redis_presence_failed").await >= 1
        })
        .await;
    }
    assert!(!state_hash(&redis).await.contains_key("emergency"), "nothing could be written yet");
    // The probes kept coming back on the same session: no reconnect loop.
    assert_eq!((a.stat("redis_reconnects").await, b.stat("redis_reconnects").await), reconnects);
    assert!(a.stat("redis_probes_lost").await == 0 && b.stat("redis_probes_lost").await == 0);

    redis.free(&filler).await;
    eventually("the kept registers reach the state hash", FEW_HEARTBEATS, || async {
        let hash = state_hash(&redis).await;
        hash.get("emergency").is_some_and(|v| v.contains("oom drill"))
            && hash.get("overlay").is_some_and(|v| v.contains("bot-b"))
    })
    .await;
    for app in [&a, &b] {
        eventually("connected again", FEW_HEARTBEATS, || async { redis_status(app).await == "connected" }).await;
        assert_eq!(health(app).await["redis"]["reason"], Value::Null);
        assert_eq!(app.stat("redis_unpersisted_depth").await, 0);
    }
    assert_eq!((a.stat("redis_reconnects").await, b.stat("redis_reconnects").await), reconnects);
    // The history got the late entries too.
    let mut conn = redis.conn().await;
    let history: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg("{cv}:history").arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
    assert!(history.iter().any(|(_, fields)| fields.iter().any(|(_, v)| v.contains("oom drill"))));
    let dead: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg("{cv}:dlq").arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
    let kept = dead.iter().filter(|(_, fields)| fields.iter().any(|(_, v)| v == "{not json during oom")).count();
    assert_eq!(kept, 2, "each instance kept its dead letter: {dead:?}");
    // A restarted instance gets the stop back from the hash.
    let late = instance("bot-late", &redis.url()).await;
    connected(&[&late]).await;
    assert_eq!(late.state().await["emergency"]["message"], "oom drill");
}

/// Waits for a twin to stop by itself and returns why.
async fn twin_exit(twin: &mut TestApp) -> anyhow::Error {
    let running = twin.running.take().expect("running");
    let result = tokio::time::timeout(FEW_HEARTBEATS, running.wait()).await.expect("the twin stops by itself");
    result.expect_err("the twin is refused")
}

fn assert_names_the_original(err: &anyhow::Error) {
    let duplicate = err.downcast_ref::<DuplicateInstance>().expect("a DuplicateInstance");
    assert_eq!(duplicate.instance, "bot-twin");
    assert_eq!(duplicate.host, host_name());
    assert!(format!("{err:#}").contains(&format!("on host {}", host_name())), "{err:#}");
}

/// The original serves: an event written on it reaches another instance.
async fn still_serving(original: &TestApp, witness: &TestApp, value: u8) {
    connected(&[original]).await;
    original.viewer("still-here", &format!("doorway#1.gain: {value}"));
    eventually("the original's write reaches the witness", Duration::from_secs(5), || async {
        witness.state().await["parameters"]["doorway#1.gain"]["value"] == value
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_started_during_an_outage_exits_when_redis_returns_empty_and_the_original_stays() {
    let mut redis = RedisServer::start().await;
    let original = instance("bot-twin", &redis.url()).await;
    let witness = instance("bot-witness", &redis.url()).await;
    connected(&[&original, &witness]).await;
    redis.kill();
    eventually("the original noticed the outage", Duration::from_secs(10), || async {
        redis_status(&original).await == "degraded"
    })
    .await;
    let mut twin = instance("bot-twin", &redis.url()).await;
    redis.restart().await;
    // Whichever of the two claims the empty key first, the younger one goes.
    let err = twin_exit(&mut twin).await;
    assert_names_the_original(&err);
    still_serving(&original, &witness, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_twin_that_claimed_while_the_original_was_cut_off_exits_when_they_meet() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port).parse().expect("addr")).await;
    let original = instance("bot-twin", &proxy.url()).await;
    let witness = instance("bot-witness", &redis.url()).await;
    connected(&[&original, &witness]).await;
    proxy.set_blackhole(true);
    eventually("the original is cut off", Duration::from_secs(15), || async {
        redis_status(&original).await == "degraded"
    })
    .await;
    // Its claim lapses, as it would three heartbeats into the cut.
    let mut conn = redis.conn().await;
    let _: u64 = redis::cmd("DEL").arg("{cv}:instance:bot-twin").query_async(&mut conn).await.expect("del");
    let mut twin = instance("bot-twin", &redis.url()).await;
    connected(&[&twin]).await;
    assert_eq!(original.stat("redis_claims_reasserted").await, 0);

    proxy.set_blackhole(false);
    let err = twin_exit(&mut twin).await;
    assert_names_the_original(&err);
    assert_eq!(original.stat("redis_claims_reasserted").await, 1);
    still_serving(&original, &witness, 32).await;
    let claim: String =
        redis::cmd("GET").arg("{cv}:instance:bot-twin").query_async(&mut conn).await.expect("the claim is held");
    let claim: Value = serde_json::from_str(&claim).expect("json");
    assert!(claim["since_ms"].as_u64().is_some_and(|since| since > 0), "{claim}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_binary_refused_as_a_twin_exits_2_with_one_line_naming_the_other_host() {
    let redis = RedisServer::start().await;
    let original = instance("bot-twin", &redis.url()).await;
    connected(&[&original]).await;
    let osc = OscReceiver::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.url();
    let osc_addr = osc.addr().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_cvbot"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([
            ("LOG_LEVEL", "info"),
            ("INSTANCE_ID", "bot-twin"),
            ("ENABLE_REDIS_EVENTS", "true"),
            ("REDIS_URL", url.as_str()),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("OSC_TARGETS", osc_addr.as_str()),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cvbot");
    // Its exit is awaited; only if it never comes is the process killed (and the test failed).
    let pid = child.id().to_string();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().expect("output"));
    let Ok(output) = tokio::time::timeout(Duration::from_secs(20), exit).await else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the twin did not exit within 20 s");
    };
    let output = output.expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let naming: Vec<&str> = stderr.lines().filter(|l| l.contains("already in use")).collect();
    assert_eq!(naming.len(), 1, "{stderr}");
    assert!(naming[0].contains(&format!("on host {}", host_name())), "{stderr}");
    assert_eq!(redis_status(&original).await, "connected", "the original is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_publisher_using_our_id_is_counted_and_applied_so_instances_agree() {
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis.url()).await;
    // Our own echoes are not impostors.
    a.viewer("me", "doorway#1.threshold: 3");
    eventually("a's echo recognised", Duration::from_secs(5), || async { a.stat("redis_own_ignored").await >= 1 })
        .await;
    assert_eq!(a.stat("redis_impostor_events").await, 0);

    let now = cvbot::clock::wall_ms_now() + 1_000;
    // An older JavaScript bot with a copied .env: no seq, no hlc.
    let js = format!(
        r#"{{"timestamp": {now}, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": 99, "user": "js", "source_instance": "bot-a"}}}}"#
    );
    assert_eq!(redis.publish("cv:parameter:update", &js).await, 2, "both instances hear it");
    eventually("a and b applied it alike", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 99 && converged(&[&a, &b]).await
    })
    .await;
    assert_eq!(a.stat("redis_impostor_events").await, 1);
    // A second copy of this bot counts from seq 1 too, with stamps of its own.
    let twin = format!(
        r#"{{"timestamp": {now}, "hlc": {}, "seq": 1, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": 98, "user": "copy", "source_instance": "bot-a"}}}}"#,
        (now << 16) + 7
    );
    redis.publish("cv:parameter:update", &twin).await;
    eventually("the copy's event applied on both", Duration::from_secs(5), || async {
        a.state().await["parameters"]["doorway#1.gain"]["value"] == 98 && converged(&[&a, &b]).await
    })
    .await;
    assert_eq!(a.stat("redis_impostor_events").await, 2);
    assert_eq!(b.stat("redis_impostor_events").await, 0, "for b it is just another instance");
    a.viewer("me", "doorway#1.threshold: 4");
    eventually("a's later echo recognised", Duration::from_secs(5), || async {
        a.stat("redis_own_ignored").await >= 2
    })
    .await;
    assert_eq!(a.stat("redis_impostor_events").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_read_only_replica_events_still_flow_and_registers_are_written_once_it_is_promoted() {
    let master = RedisServer::start().await;
    let replica = RedisServer::start().await;
    let a = instance("bot-a", &replica.url()).await;
    let b = instance("bot-b", &replica.url()).await;
    connected(&[&a, &b]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    eventually("b has a's route", Duration::from_secs(5), || async {
        b.state().await["routes"]["es9out#1"] == "doorway#1.threshold"
    })
    .await;
    b.osc.drain().await;
    // A failover gone wrong: the Redis the bots use becomes a read-only replica.
    let mut conn = replica.conn().await;
    let () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master.port).query_async(&mut conn).await.expect("replicaof");
    eventually("the replica is in sync", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await.unwrap_or_default();
            info.contains("master_link_status:up")
        }
    })
    .await;
    // Serving again if the switch cost a session: connected, or degraded only by refused side writes.
    for app in [&a, &b] {
        eventually("serving on the replica", Duration::from_secs(15), || async {
            let h = health(app).await;
            h["redis"]["status"] == "connected"
                || h["redis"]["reason"].as_str().is_some_and(|r| r.starts_with("redis is read-only"))
        })
        .await;
    }
    let reconnects = (a.stat("redis_reconnects").await, b.stat("redis_reconnects").await);

    a.op("!admin emergency stop replica drill");
    assert_eq!(b.osc.recv_addr("/cv").await, cv("es9out#1", 0.0, "doorway", 1, "threshold", 0));
    eventually("degraded because redis is read-only", Duration::from_secs(5), || async {
        health(&a).await["redis"]["reason"].as_str().is_some_and(|r| r.starts_with("redis is read-only"))
    })
    .await;

    let () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut conn).await.expect("promote");
    eventually("the kept register reaches the promoted server", FEW_HEARTBEATS, || async {
        state_hash(&replica).await.get("emergency").is_some_and(|v| v.contains("replica drill"))
    })
    .await;
    eventually("a connected again", FEW_HEARTBEATS, || async { redis_status(&a).await == "connected" }).await;
    assert_eq!((a.stat("redis_reconnects").await, b.stat("redis_reconnects").await), reconnects);
}
