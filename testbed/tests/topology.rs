//! The Redis topology launchers (`cvbot_testbed::topology`), which the bench and cvbot's Sentinel
//! and Cluster tests (tests/it/ha.rs) build on: each set starts usable, replicates, and fails over
//! when its master is killed.

use std::time::{Duration, Instant};

use cvbot_testbed::topology::{ClusterSet, SentinelSet};

async fn conn(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_set_replicates_and_promotes_the_replica_when_the_master_is_killed() {
    let started = Instant::now();
    let set = SentinelSet::start().await.expect("the Sentinel set starts");
    eprintln!("SentinelSet::start took {:?}", started.elapsed());
    assert_eq!(set.sentinel_addrs().len(), 3);
    assert_eq!(set.master_name(), "mymaster");

    let master = set.master_addr().await.expect("the sentinels name the master");
    let replicas = set.replica_addrs().await.expect("the sentinels list the replica");
    assert_eq!(replicas.len(), 1, "one replica: {replicas:?}");
    let mut m = conn(&master).await;
    let () = redis::cmd("SET").arg("{cv}:x").arg("written on the master").query_async(&mut m).await.expect("SET");
    let acked: u32 = redis::cmd("WAIT").arg(1).arg(5000).query_async(&mut m).await.expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the write");
    let read: String = redis::cmd("GET").arg("{cv}:x").query_async(&mut conn(&replicas[0]).await).await.expect("GET");
    assert_eq!(read, "written on the master");

    let old = set.kill_master().await.expect("the master is killed");
    assert_eq!(old, master);
    let (new, after) = set.wait_for_promotion(&old, Duration::from_secs(10)).await.expect("a promotion within 10 s");
    eprintln!("Sentinel promotion {after:?} after the kill: {old} → {new}");
    assert_eq!(new, replicas[0], "the replica is the new master");
    assert_eq!(set.master_addr().await.expect("master"), new);
    let read: String = redis::cmd("GET").arg("{cv}:x").query_async(&mut conn(&new).await).await.expect("GET");
    assert_eq!(read, "written on the master", "the promoted replica kept the write");
    let () = redis::cmd("SET").arg("{cv}:x").arg("after").query_async(&mut conn(&new).await).await.expect("writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_set_serves_a_cluster_client_and_fails_the_cv_slot_over_when_its_master_is_killed() {
    let started = Instant::now();
    let set = ClusterSet::start().await.expect("the Cluster set starts");
    eprintln!("ClusterSet::start took {:?}", started.elapsed());
    let nodes = set.node_addrs();
    assert_eq!(nodes.len(), 6);
    let seeds: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();

    let client = redis::cluster::ClusterClient::new(seeds.clone()).expect("cluster client");
    let mut c = client.get_async_connection().await.expect("cluster connection");
    let () = redis::cmd("SET").arg("{cv}:x").arg("1").query_async(&mut c).await.expect("SET through the cluster");
    let read: String = redis::cmd("GET").arg("{cv}:x").query_async(&mut c).await.expect("GET");
    assert_eq!(read, "1");

    let slot = set.key_slot("{cv}").await.expect("slot");
    assert_eq!(slot, set.key_slot("prefix:{cv}:state").await.expect("slot"), "the hash tag decides");
    let old = set.master_of_slot(slot).await.expect("the slot's master");
    assert_eq!(set.master_for_key("{cv}:x").await.expect("master for key"), old);
    let read: String =
        redis::cmd("GET").arg("{cv}:x").query_async(&mut conn(&old).await).await.expect("GET on the slot's master");
    assert_eq!(read, "1", "the key lives on the master that serves its slot");

    set.kill(&old).expect("the master is killed");
    assert!(set.kill(&old).is_err(), "a killed node cannot be killed twice");
    let (new, after) =
        set.wait_for_failover(&old, slot, Duration::from_secs(15)).await.expect("a failover within 15 s");
    eprintln!("Cluster failover of slot {slot} {after:?} after the kill: {old} → {new}");
    assert_ne!(new, old);
    assert!(nodes.contains(&new), "{new} is one of the set");
    assert_eq!(set.master_of_slot(slot).await.expect("master"), new);

    let client = redis::cluster::ClusterClient::new(seeds).expect("cluster client");
    let mut c = client.get_async_connection().await.expect("a cluster connection with one seed dead");
    let read: String = redis::cmd("GET").arg("{cv}:x").query_async(&mut c).await.expect("GET after the failover");
    assert_eq!(read, "1", "the replica had the write");
    let () = redis::cmd("SET").arg("{cv}:x").arg("2").query_async(&mut c).await.expect("SET after the failover");
}
