//! A Sentinel-managed master with one replica and three sentinels.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{
    MASTER_NAME, Processes, READY_WITHIN, data_node_args, free_port, info, lock, master_streams_to_replicas, poll,
    query, replica_in_sync, spawn_node,
};
use crate::redis_process::tempfile_dir::Dir;

/// One master, one replica and three sentinels (quorum 2) on 127.0.0.1: a Sentinel-managed master
/// named [`MASTER_NAME`]. Sentinels mark the master down after 1 s (`down-after-milliseconds 1000`)
/// and give a failover 3 s (`failover-timeout 3000`).
#[derive(Debug)]
pub struct SentinelSet {
    sentinels: Vec<String>,
    processes: Mutex<Processes>,
    dir: Dir,
}

impl SentinelSet {
    /// Starts the set and returns once the replica is in sync and every sentinel knows the master,
    /// the replica and the two other sentinels (so a failover can be agreed on at once).
    pub async fn start() -> anyhow::Result<SentinelSet> {
        let dir = Dir::new("cvbot-sentinel-set").context("creating the Sentinel set's directory")?;
        let mut set = SentinelSet { sentinels: Vec::new(), processes: Mutex::new(Processes::default()), dir };
        let root = set.dir.0.clone();
        let port = || -> anyhow::Result<u16> { Ok(free_port()?) };

        let master =
            spawn_node("the master", &root.join("master"), port, |p| Ok(data_node_args(p, &root.join("master"))))
                .await?;
        let (master_addr, master_port) = (master.addr.clone(), master.addr.rsplit(':').next().unwrap_or("").to_owned());
        lock(&set.processes).nodes.push(master);
        let replica_dir = root.join("replica");
        let replica = spawn_node("the replica", &replica_dir, port, |p| {
            let mut args = data_node_args(p, &replica_dir);
            args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), master_port.clone()]);
            Ok(args)
        })
        .await?;
        let replica_addr = replica.addr.clone();
        lock(&set.processes).nodes.push(replica);
        poll("the replica is in sync with the master", READY_WITHIN, || async {
            replica_in_sync(&replica_addr).await?;
            master_streams_to_replicas(&master_addr, 1).await
        })
        .await?;

        for i in 0..3 {
            let dir = root.join(format!("sentinel-{i}"));
            let sentinel = spawn_node(&format!("sentinel {i}"), &dir, port, |p| {
                // A sentinel rewrites its config file (it records what it learns), so each has its own.
                let conf = dir.join("sentinel.conf");
                let text = format!(
                    "port {p}\nbind 127.0.0.1\ndaemonize no\ndir \"{dir}\"\nlogfile \"{log}\"\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.display(),
                    log = dir.join("redis.log").display(),
                );
                std::fs::write(&conf, text).context("writing sentinel.conf")?;
                Ok(vec![conf.display().to_string(), "--sentinel".to_owned()])
            })
            .await?;
            set.sentinels.push(sentinel.addr.clone());
            lock(&set.processes).nodes.push(sentinel);
        }
        for sentinel in &set.sentinels {
            poll(
                &format!("sentinel {sentinel} knows the master, the replica and the other sentinels"),
                READY_WITHIN,
                || sentinel_ready(sentinel, &master_addr, &replica_addr),
            )
            .await?;
        }
        Ok(set)
    }

    /// The sentinels, `127.0.0.1:port` each: the value of `REDIS_SENTINELS` (joined with commas).
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.clone()
    }

    /// The monitored master's name, the value of `REDIS_SENTINEL_MASTER`.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The current master, `127.0.0.1:port`, as the first sentinel that answers names it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub async fn master_addr(&self) -> anyhow::Result<String> {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            match sentinel_master_addr(sentinel).await {
                Ok(addr) => return Ok(addr),
                Err(e) => errors.push(format!("{sentinel}: {e:#}")),
            }
        }
        anyhow::bail!("no sentinel named the master ({})", errors.join("; "))
    }

    /// The master's replicas (`127.0.0.1:port` each), as the first sentinel that answers lists them
    /// (`SENTINEL REPLICAS`); a replica the sentinels think down is left out.
    pub async fn replica_addrs(&self) -> anyhow::Result<Vec<String>> {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            let replicas: anyhow::Result<Vec<HashMap<String, String>>> =
                query(sentinel, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME)).await;
            match replicas {
                Ok(replicas) => {
                    return Ok(replicas
                        .iter()
                        .filter(|r| r.get("flags").is_some_and(|f| f == "slave"))
                        .filter_map(|r| Some(format!("{}:{}", r.get("ip")?, r.get("port")?)))
                        .collect());
                }
                Err(e) => errors.push(format!("{sentinel}: {e:#}")),
            }
        }
        anyhow::bail!("no sentinel listed the replicas ({})", errors.join("; "))
    }

    /// SIGKILLs the current master's process and returns its address. The time of the kill is kept
    /// for [`SentinelSet::wait_for_promotion`].
    pub async fn kill_master(&self) -> anyhow::Result<String> {
        let addr = self.master_addr().await?;
        lock(&self.processes).kill(&addr).context("killing the master")?;
        Ok(addr)
    }

    /// Polls the sentinels until every one of them names a master other than `old`, and that server
    /// says it is a master; returns it and the time since `old` was killed by
    /// [`SentinelSet::kill_master`] (since this call, if it was not). Fails after `within`.
    pub async fn wait_for_promotion(&self, old: &str, within: Duration) -> anyhow::Result<(String, Duration)> {
        let since = lock(&self.processes).killed.get(old).copied().unwrap_or_else(Instant::now);
        let new = poll(&format!("the sentinels promote a master other than {old}"), within, || async {
            let mut named = Vec::new();
            for sentinel in &self.sentinels {
                named.push(sentinel_master_addr(sentinel).await.map_err(|e| format!("{sentinel}: {e:#}"))?);
            }
            let first = named[0].clone();
            if first == old || named.iter().any(|n| *n != first) {
                return Err(format!("sentinels name {}", named.join(", ")));
            }
            let role = info(&first, "replication").await.map_err(|e| format!("{first}: {e:#}"))?;
            match role.get("role").map(String::as_str) {
                Some("master") => Ok(first),
                other => Err(format!("{first} is named but says role {other:?}")),
            }
        })
        .await?;
        Ok((new, since.elapsed()))
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel, as `ip:port`.
async fn sentinel_master_addr(sentinel: &str) -> anyhow::Result<String> {
    let reply: Option<(String, String)> =
        query(sentinel, redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER_NAME)).await?;
    let (ip, port) = reply.with_context(|| format!("the sentinel does not know {MASTER_NAME}"))?;
    Ok(format!("{ip}:{port}"))
}

/// Does `sentinel` see `master` up as the master, `replica` as its healthy replica, and two other
/// sentinels?
async fn sentinel_ready(sentinel: &str, master: &str, replica: &str) -> Result<(), String> {
    let fail = |e: anyhow::Error| format!("{sentinel}: {e:#}");
    let m: HashMap<String, String> =
        query(sentinel, redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME)).await.map_err(fail)?;
    let field = |k: &str| m.get(k).map_or("?", String::as_str);
    let at = format!("{}:{}", field("ip"), field("port"));
    if at != master || field("flags") != "master" || field("num-other-sentinels") != "2" {
        return Err(format!("master {at} flags {}, {} other sentinels", field("flags"), field("num-other-sentinels")));
    }
    let replicas: Vec<HashMap<String, String>> =
        query(sentinel, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME)).await.map_err(fail)?;
    let healthy = replicas.iter().any(|r| {
        let f = |k: &str| r.get(k).map_or("", String::as_str);
        format!("{}:{}", f("ip"), f("port")) == replica && f("flags") == "slave" && f("master-link-status") == "ok"
    });
    if healthy { Ok(()) } else { Err(format!("replica {replica} not yet seen healthy: {replicas:?}")) }
}
