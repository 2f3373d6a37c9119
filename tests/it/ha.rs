//! Redis that outlives its own failures: the state hash re-seeded by the instances that survive
//! (anti-entropy), data loss noticed under a live session, older bots' values kept, the least-privilege
//! ACL user, and failovers on Sentinel and Cluster.

use std::time::Duration;

use redis::AsyncCommands;

use crate::cluster::{connected, converged, instance, instance_with, shared_view};
use crate::helpers::{TestApp, eventually, poll};
use crate::redis_server::RedisServer;

/// A viewer on `a` keeps typing new values of `variable` (after `from`) until one reaches `b`; each
/// is watched for on `b` a moment before the next is typed, and the wait ends as soon as one arrives.
async fn crosses_again(a: &TestApp, b: &TestApp, variable: &str, from: u8, within: Duration) {
    let started = std::time::Instant::now();
    let mut value = from;
    loop {
        value += 1;
        a.viewer("viewer", &format!("{variable}: {value}"));
        let expected = value;
        let crossed = poll(Duration::from_millis(250), || async {
            (b.state().await["parameters"][variable]["value"] == expected).then_some(())
        })
        .await;
        if crossed.is_some() {
            return;
        }
        assert!(started.elapsed() < within, "no command crossed within {within:?}");
    }
}

async fn hget(redis: &RedisServer, field: &str) -> Option<String> {
    let mut conn = redis.conn().await;
    conn.hget("{cv}:state", field).await.ok().flatten()
}

/// The reproduction: a route and a value, Redis killed and restarted empty, one command during the
/// outage; a late joiner then must have all of it, byte-identical to the instances that survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_empty_restart_a_late_joiner_is_byte_identical_to_the_survivors() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (instance("bot-a", &redis.url()).await, instance("bot-b", &redis.url()).await);
    connected(&[&a, &b]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    a.viewer("viewer1", "doorway#1.threshold: 89");
    eventually("both hold the route and the value", Duration::from_secs(10), || async {
        converged(&[&a, &b]).await && b.state().await["parameters"]["doorway#1.threshold"]["value"] == 89
    })
    .await;

    redis.kill();
    eventually("A notices the outage", Duration::from_secs(15), || async {
        crate::cluster::redis_status(&a).await != "connected"
    })
    .await;
    a.viewer("viewer2", "doorway#1.gain: 40");
    let reseeded = a.stat("redis_reseeded").await + b.stat("redis_reseeded").await;
    redis.restart().await;
    connected(&[&a, &b]).await;
    eventually("the survivors agree again, the outage's command included", Duration::from_secs(15), || async {
        converged(&[&a, &b]).await && b.state().await["parameters"]["doorway#1.gain"]["value"] == 40
    })
    .await;
    eventually("the state hash is re-seeded", Duration::from_secs(10), || async {
        hget(&redis, "r:es9out#1").await.is_some() && hget(&redis, "p:doorway#1.threshold").await.is_some()
    })
    .await;
    assert!(a.stat("redis_reseeded").await + b.stat("redis_reseeded").await >= reseeded + 2, "written back, not kept");

    let c = instance("bot-c", &redis.url()).await;
    connected(&[&c]).await;
    eventually("the late joiner is byte-identical to the survivors", Duration::from_secs(10), || async {
        converged(&[&a, &b, &c]).await
    })
    .await;
    let view = shared_view(&c).await;
    assert_eq!(view["parameters"]["doorway#1.threshold"]["value"], 89, "{view}");
    assert_eq!(view["parameters"]["doorway#1.gain"]["value"], 40, "{view}");
    assert!(view["routes"].to_string().contains("es9out#1"), "{view}");
}

/// A flush (or a restart behind a proxy) keeps the connections up: the epoch key tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_lost_under_a_live_session_is_noticed_and_the_hash_re_seeded() {
    let redis = RedisServer::start().await;
    let a = instance("bot-a", &redis.url()).await;
    connected(&[&a]).await;
    a.op("!admin es9out#2 → doorway#1.gain");
    a.viewer("viewer", "doorway#1.gain: 12");
    eventually("written", Duration::from_secs(5), || async { hget(&redis, "p:doorway#1.gain").await.is_some() }).await;
    let mut conn = redis.conn().await;
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("flushall");
    eventually("noticed and re-seeded", Duration::from_secs(10), || async {
        hget(&redis, "p:doorway#1.gain").await.is_some() && hget(&redis, "r:es9out#2").await.is_some()
    })
    .await;
    assert_eq!(a.stat("redis_data_lost").await, 1);
    assert_eq!(crate::cluster::redis_status(&a).await, "connected", "no new session was needed");
}

/// Older bots only PUBLISH; the value they set must survive every cvbot restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_bots_value_is_written_into_the_hash_and_survives_every_cvbot_restarting() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance("bot-a", &redis.url()).await, instance("bot-b", &redis.url()).await);
    connected(&[&a, &b]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let raw = format!(
        r#"{{"timestamp": {now}, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": 77, "user": "oldtimer", "source_instance": "js-bot"}}}}"#
    );
    assert!(redis.publish("cv:parameter:update", &raw).await >= 2);
    eventually("the older bot's value is in the state hash", Duration::from_secs(5), || async {
        hget(&redis, "p:doorway#1.gain").await.is_some_and(|v| v.contains("oldtimer"))
    })
    .await;
    assert!(a.stat("redis_legacy_persisted").await + b.stat("redis_legacy_persisted").await >= 1);
    a.stop().await;
    b.stop().await;

    let c = instance("bot-c", &redis.url()).await;
    connected(&[&c]).await;
    let p = c.state().await["parameters"]["doorway#1.gain"].clone();
    assert_eq!(p["value"], 77, "{p}");
    assert_eq!(p["user"], "oldtimer");
    assert_eq!(p["source_instance"], "js-bot");
}

/// The least-privilege user README's "High availability" section gives (keys under `{cv}`, channels
/// under `cv:`, only the commands cvbot sends) is enough for everything a show does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_least_privilege_acl_user_is_enough_for_a_show() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("user cvbot "))
        .expect("README gives a `user cvbot …` ACL line")
        .trim()
        .replace(">CHANGE-ME", ">s3cret");
    let mut args = vec!["--user".to_owned(), "default".to_owned(), "off".to_owned(), "--user".to_owned()];
    args.extend(line.split_whitespace().skip(1).map(str::to_owned));
    let redis = RedisServer::start_with(&args, |port| format!("redis://cvbot:s3cret@127.0.0.1:{port}")).await;
    let token = [("ADMIN_TOKEN", crate::helpers::TOKEN)];
    let (a, b) = (instance_with("bot-a", &redis.url(), &token).await, instance("bot-b", &redis.url()).await);
    connected(&[&a, &b]).await;
    a.op("!admin es9out#1 → doorway#1.threshold");
    b.osc.recv_addr("/routing").await;
    a.viewer("viewer", "doorway#1.threshold: 100");
    assert_eq!(b.osc.recv_addr("/cv").await.addr, "/cv");
    let history = a.get_json_as_admin("/api/events/history?source=redis").await;
    assert!(history.to_string().contains("doorway#1.threshold"), "{history}");
    let poison = r#"{"type": "parameter_update", "data": 7}"#;
    assert!(redis.publish("cv:parameter:update", poison).await >= 2);
    eventually("poison in the dead-letter stream", Duration::from_secs(5), || async {
        a.stat("redis_dlq_written").await >= 1
    })
    .await;
    assert_eq!(a.stat("redis_presence_failed").await + a.stat("redis_dlq_failed").await, 0);
    assert_eq!(crate::cluster::redis_status(&a).await, "connected");
    assert!(converged(&[&a, &b]).await);
}

/// One master, one replica, three sentinels (`down-after-milliseconds 1000`): the master is killed
/// with SIGKILL while a viewer keeps typing; within 10 s of the promotion commands cross again, every
/// instance is byte-identical and nothing typed meanwhile is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_a_killed_master_loses_nothing_and_commands_cross_within_ten_seconds() {
    let set = cvbot_testbed::topology::SentinelSet::start().await.expect("sentinel set");
    let sentinels = set.sentinel_addrs().join(",");
    let vars = [("REDIS_SENTINELS", sentinels.as_str()), ("REDIS_SENTINEL_MASTER", set.master_name())];
    let a = instance_with("bot-a", "redis://127.0.0.1:1", &vars).await;
    let b = instance_with("bot-b", "redis://127.0.0.1:1", &vars).await;
    connected(&[&a, &b]).await;
    let health = a.get_json("/api/events/health").await;
    assert!(
        health["redis"]["endpoint"].as_str().unwrap_or_default().starts_with("sentinel master mymaster at"),
        "{health}"
    );
    a.op("!admin es9out#1 → doorway#1.threshold");
    a.viewer("viewer", "doorway#1.threshold: 10");
    eventually("converged before the failover", Duration::from_secs(10), || async {
        converged(&[&a, &b]).await && b.state().await["parameters"]["doorway#1.threshold"]["value"] == 10
    })
    .await;

    let old = set.kill_master().await.expect("kill");
    a.viewer("viewer", "doorway#1.gain: 55");
    let (new, after_kill) = set.wait_for_promotion(&old, Duration::from_secs(15)).await.expect("promotion");
    let promoted = std::time::Instant::now();
    eprintln!("sentinel promotion {after_kill:?} after the kill: {old} → {new}");
    crosses_again(&a, &b, "doorway#1.threshold", 20, Duration::from_secs(10)).await;
    eprintln!("sentinel: a command crossed {:?} after the promotion", promoted.elapsed());
    eventually("byte-identical, the outage's command included", Duration::from_secs(10), || async {
        converged(&[&a, &b]).await && b.state().await["parameters"]["doorway#1.gain"]["value"] == 55
    })
    .await;
    assert!(promoted.elapsed() < Duration::from_secs(20));
    let mut conn = redis::Client::open(format!("redis://{new}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("new master");
    let fields: Vec<String> = conn.hkeys("{cv}:state").await.expect("hkeys");
    for field in ["r:es9out#1", "p:doorway#1.threshold", "p:doorway#1.gain"] {
        assert!(fields.iter().any(|f| f == field), "{field} on the new master: {fields:?}");
    }
    assert!(a.get_json("/api/events/health").await["redis"]["endpoint"].as_str().unwrap_or_default().ends_with(&new));
}

/// Three masters with a replica each: instances seeded with different nodes converge, an older bot's
/// PUBLISH to a third node reaches every instance's OSC, and after the `{cv}` master is killed
/// commands cross again within 15 s with every state byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_instances_on_different_nodes_converge_hear_older_bots_anywhere_and_survive_a_failover() {
    let set = cvbot_testbed::topology::ClusterSet::start().await.expect("cluster set");
    let nodes = set.node_addrs();
    let a = instance_with("bot-a", "redis://127.0.0.1:1", &[("REDIS_CLUSTER_NODES", nodes[0].as_str())]).await;
    let b = instance_with("bot-b", "redis://127.0.0.1:1", &[("REDIS_CLUSTER_NODES", nodes[4].as_str())]).await;
    connected(&[&a, &b]).await;
    a.op("!admin es9out#2 → doorway#1.gain");
    b.osc.recv_addr("/routing").await;
    a.viewer("viewer", "doorway#1.gain: 64");
    assert_eq!(b.osc.recv_addr("/cv").await.addr, "/cv");
    eventually("converged", Duration::from_secs(10), || async { converged(&[&a, &b]).await }).await;
    a.osc.drain().await;
    b.osc.drain().await;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let raw = format!(
        r#"{{"timestamp": {now}, "type": "parameter_update", "data": {{"variable": "doorway#1.gain", "value": 99, "user": "oldtimer", "source_instance": "js-bot"}}}}"#
    );
    let third = &nodes[2];
    let mut js = redis::Client::open(format!("redis://{third}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("node");
    let _: u64 =
        redis::cmd("PUBLISH").arg("cv:parameter:update").arg(&raw).query_async(&mut js).await.expect("publish");
    for app in [&a, &b] {
        let sent = app.osc.recv_addr("/cv").await;
        assert_eq!(sent.args[0], rosc::OscType::String("es9out#2".into()), "{sent:?}");
        assert_eq!(sent.args[5], rosc::OscType::Int(99), "{sent:?}");
    }

    let state_key = "{cv}:state";
    let old = set.master_for_key(state_key).await.expect("master of {cv}");
    let slot = set.key_slot(state_key).await.expect("slot");
    set.kill(&old).expect("kill");
    a.viewer("viewer", "doorway#1.threshold: 33");
    let (new, after_kill) = set.wait_for_failover(&old, slot, Duration::from_secs(20)).await.expect("failover");
    let failed_over = std::time::Instant::now();
    eprintln!("cluster failover {after_kill:?} after the kill: {old} → {new}");
    crosses_again(&a, &b, "doorway#1.gain", 0, Duration::from_secs(15)).await;
    eprintln!("cluster: a command crossed {:?} after the failover", failed_over.elapsed());
    eventually("byte-identical, the outage's command included", Duration::from_secs(10), || async {
        converged(&[&a, &b]).await && b.state().await["parameters"]["doorway#1.threshold"]["value"] == 33
    })
    .await;
}
