//! Private Redis topologies on 127.0.0.1 for the bench and the integration tests: a Sentinel-managed
//! master ([`SentinelSet`]) and a six-node Cluster ([`ClusterSet`]), with the faults they exist for
//! (SIGKILL a master) and waits for the failover that follows.
//!
//! Every process listens on a free port of 127.0.0.1, keeps nothing on disk (`--save ''`,
//! `--appendonly no`) beyond the files it must write (a sentinel's config, a node's `nodes.conf`) in
//! a temporary directory of the set, and logs there (`redis.log`); a start that fails quotes the end
//! of the log in its error. `start` returns once the set is usable, polling conditions with a deadline
//! (never a fixed sleep). Dropping a set kills every process it started and removes its directory.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use cvbot_testbed::topology::{ClusterSet, SentinelSet};
//!
//! let sentinel = SentinelSet::start().await?;
//! let vars = [("REDIS_SENTINELS", sentinel.sentinel_addrs().join(",")), ("REDIS_SENTINEL_MASTER", sentinel.master_name().to_owned())];
//! let old = sentinel.kill_master().await?;
//! let (new, after) = sentinel.wait_for_promotion(&old, Duration::from_secs(10)).await?;
//!
//! let cluster = ClusterSet::start().await?;
//! let slot = cluster.key_slot("{cv}").await?;
//! let old = cluster.master_of_slot(slot).await?;
//! cluster.kill(&old)?;
//! let (new, after) = cluster.wait_for_failover(&old, slot, Duration::from_secs(15)).await?;
//! # let _ = (vars, new, after); Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::redis_process::{free_port, tempfile_dir::Dir, wait_for_ping};

/// The master name every sentinel of a [`SentinelSet`] monitors.
pub const MASTER_NAME: &str = "mymaster";
/// The slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// How long `start` waits for the whole set to be ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long one process gets to answer `PING` after it was spawned.
const PING_WITHIN: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(20);
/// Attempts at starting one process, each on a new port (another process may take a free port
/// between our check and the server's bind).
const PORT_ATTEMPTS: usize = 5;

/// One `redis-server` (data node or sentinel) of a set.
#[derive(Debug)]
struct Node {
    addr: String,
    child: Child,
}

/// The processes of a set, killed on drop; a kill is remembered with its time, for failover timings.
#[derive(Debug, Default)]
struct Processes {
    nodes: Vec<Node>,
    killed: HashMap<String, Instant>,
}

impl Processes {
    /// SIGKILLs the process at `addr`; an error if it is not one of ours or was killed already.
    fn kill(&mut self, addr: &str) -> anyhow::Result<Instant> {
        let index = self.nodes.iter().position(|n| n.addr == addr).with_context(|| {
            let known: Vec<_> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
            format!("{addr} is not a live process of this set (live: {})", known.join(", "))
        })?;
        let mut node = self.nodes.remove(index);
        node.child.kill().with_context(|| format!("killing the process at {addr}"))?;
        let at = Instant::now();
        let _ = node.child.wait();
        self.killed.insert(node.addr, at);
        Ok(at)
    }

    fn is_live(&self, addr: &str) -> bool {
        self.nodes.iter().any(|n| n.addr == addr)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
        }
        for node in &mut self.nodes {
            let _ = node.child.wait();
        }
    }
}

fn lock(p: &Mutex<Processes>) -> std::sync::MutexGuard<'_, Processes> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The arguments every data node gets: loopback only, nothing persisted, a log in `dir`, and a
/// replica's first sync through a file in `dir`. (Redis 7.0's diskless sync waits 5 s for more
/// replicas by default, and without that wait it can leave a synced, "online" replica unfed for up
/// to a second when the replica's first acknowledgement overtakes the end of the transfer: a master
/// killed then takes the writes of that second with it.)
fn data_node_args(port: u16, dir: &Path) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string();
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &path(dir.to_owned()),
        "--logfile",
        &path(dir.join("redis.log")),
        "--repl-diskless-sync",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The last lines of a process's log, for an error message.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
    if tail.is_empty() { "(empty log)".to_owned() } else { format!("log:\n    {tail}") }
}

/// Starts one `redis-server` in `dir` on a port from `pick_port`, with the arguments `args` gives
/// for that port, and waits until it answers `PING`; on another port when the first was taken.
async fn spawn_node(
    what: &str,
    dir: &Path,
    mut pick_port: impl FnMut() -> anyhow::Result<u16>,
    mut args: impl FnMut(u16) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Node> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the directory of {what}"))?;
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = pick_port()?;
        let _ = std::fs::remove_file(dir.join("redis.log"));
        let mut child = Command::new("redis-server")
            .args(args(port)?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        let addr = format!("127.0.0.1:{port}");
        match wait_for_ping(&format!("redis://{addr}"), &mut child, what, PING_WITHIN).await {
            Ok(()) => return Ok(Node { addr, child }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log_tail(dir);
                let taken = tail.contains("Address already in use");
                let e = e.context(format!("{what} on port {port}; {tail}"));
                if !taken {
                    return Err(e);
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{what}: no port")))
        .with_context(|| format!("{what}: every port tried was taken"))
}

/// A connection for one query: short timeouts, as every caller here polls or is on loopback.
async fn connection(addr: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    Ok(redis::Client::open(format!("redis://{addr}"))?.get_multiplexed_async_connection_with_config(&config).await?)
}

/// Runs one command on the server at `addr`.
async fn query<T: redis::FromRedisValue>(addr: &str, cmd: &redis::Cmd) -> anyhow::Result<T> {
    let mut conn = connection(addr).await?;
    Ok(cmd.query_async(&mut conn).await?)
}

/// `INFO section` of the server at `addr` as `field → value`.
async fn info(addr: &str, section: &str) -> anyhow::Result<HashMap<String, String>> {
    let text: String = query(addr, redis::cmd("INFO").arg(section)).await?;
    Ok(parse_info(&text))
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.trim().split_once(':')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Polls `check` until it returns `Some`, or fails after `within` with the last reason `check` gave.
async fn poll<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() >= deadline => anyhow::bail!("{what}: not after {within:?} ({why})"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Does the master at `addr` stream its writes to `replicas` replicas, each `online`? (A replica can
/// say its link is up before the master has put it online.)
async fn master_streams_to_replicas(addr: &str, replicas: usize) -> Result<(), String> {
    let info = info(addr, "replication").await.map_err(|e| format!("{addr}: {e:#}"))?;
    let online = (0..replicas)
        .filter(|i| info.get(&format!("slave{i}")).is_some_and(|s| s.split(',').any(|f| f == "state=online")))
        .count();
    if info.get("role").is_some_and(|r| r == "master") && online == replicas {
        Ok(())
    } else {
        Err(format!("{addr}: {online} of {replicas} replicas online"))
    }
}

/// Is the replica at `addr` attached to its master and synchronised?
async fn replica_in_sync(addr: &str) -> Result<(), String> {
    let info = info(addr, "replication").await.map_err(|e| format!("{addr}: {e:#}"))?;
    match (info.get("role").map(String::as_str), info.get("master_link_status").map(String::as_str)) {
        (Some("slave"), Some("up")) if info.get("master_sync_in_progress").is_none_or(|v| v == "0") => Ok(()),
        (role, link) => Err(format!("{addr}: role {role:?}, master link {link:?}")),
    }
}

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

/// Six Cluster nodes on 127.0.0.1, three masters with a replica each, every slot covered. A node is
/// marked failing after 1 s without an answer (`cluster-node-timeout 1000`), and its replica then
/// takes its slots over.
#[derive(Debug)]
pub struct ClusterSet {
    nodes: Vec<String>,
    processes: Mutex<Processes>,
    dir: Dir,
}

/// A free port whose cluster bus port (the port + 10000) is free too.
fn cluster_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        if port < u16::MAX - 10_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("found no free port whose port + 10000 is free too")
}

impl ClusterSet {
    /// Starts six nodes, joins them with `redis-cli --cluster create … --cluster-replicas 1`, and
    /// returns once every node says `cluster_state:ok` with all slots covered and knows all six, and
    /// every replica is in sync with its master (so it can take over at once).
    pub async fn start() -> anyhow::Result<ClusterSet> {
        let dir = Dir::new("cvbot-cluster-set").context("creating the Cluster set's directory")?;
        let mut set = ClusterSet { nodes: Vec::new(), processes: Mutex::new(Processes::default()), dir };
        let root = set.dir.0.clone();
        for i in 0..6 {
            let dir = root.join(format!("node-{i}"));
            let node = spawn_node(&format!("cluster node {i}"), &dir, cluster_port, |p| {
                let mut args = data_node_args(p, &dir);
                let nodes_conf = dir.join("nodes.conf").display().to_string();
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &nodes_conf,
                        "--cluster-node-timeout",
                        "1000",
                    ]
                    .map(str::to_owned),
                );
                Ok(args)
            })
            .await?;
            set.nodes.push(node.addr.clone());
            lock(&set.processes).nodes.push(node);
        }
        let nodes = set.nodes.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&nodes)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await?
        .context("running redis-cli --cluster create")?;
        anyhow::ensure!(
            output.status.success(),
            "redis-cli --cluster create failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for node in &set.nodes {
            poll(&format!("cluster node {node} is ready"), READY_WITHIN, || async {
                cluster_ok(node, 6).await?;
                let role = info(node, "replication").await.map_err(|e| format!("{node}: {e:#}"))?;
                if role.get("role").is_some_and(|r| r == "slave") {
                    replica_in_sync(node).await
                } else {
                    master_streams_to_replicas(node, 1).await
                }
            })
            .await?;
        }
        Ok(set)
    }

    /// Every node started, `127.0.0.1:port` each, killed ones included (as seeds for
    /// `REDIS_CLUSTER_NODES` or a cluster client).
    pub fn node_addrs(&self) -> Vec<String> {
        self.nodes.clone()
    }

    /// The nodes still running.
    fn live(&self) -> Vec<String> {
        let processes = lock(&self.processes);
        self.nodes.iter().filter(|n| processes.is_live(n)).cloned().collect()
    }

    /// Runs `cmd` on the first live node that answers.
    async fn ask<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        let mut errors = Vec::new();
        for node in self.live() {
            match query(&node, cmd).await {
                Ok(value) => return Ok(value),
                Err(e) => errors.push(format!("{node}: {e:#}")),
            }
        }
        anyhow::bail!("no live node answered ({})", errors.join("; "))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`: the hash tag's, if it has one).
    pub async fn key_slot(&self, key: &str) -> anyhow::Result<u16> {
        self.ask(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await
    }

    /// The master serving `slot` (`127.0.0.1:port`), as the first live node that answers sees it.
    pub async fn master_of_slot(&self, slot: u16) -> anyhow::Result<String> {
        let nodes: String = self.ask(redis::cmd("CLUSTER").arg("NODES")).await?;
        slot_owner(&nodes, slot).with_context(|| format!("no master serves slot {slot}:\n{nodes}"))
    }

    /// The master serving `key`'s slot.
    pub async fn master_for_key(&self, key: &str) -> anyhow::Result<String> {
        self.master_of_slot(self.key_slot(key).await?).await
    }

    /// SIGKILLs the node at `addr`; its time is kept for [`ClusterSet::wait_for_failover`].
    pub fn kill(&self, addr: &str) -> anyhow::Result<()> {
        lock(&self.processes).kill(addr).map(drop)
    }

    /// Polls every live node until each says `cluster_state:ok` and names the same master other than
    /// `old_master` for `slot`; returns that master and the time since `old_master` was killed by
    /// [`ClusterSet::kill`] (since this call, if it was not). Fails after `within`.
    pub async fn wait_for_failover(
        &self,
        old_master: &str,
        slot: u16,
        within: Duration,
    ) -> anyhow::Result<(String, Duration)> {
        let since = lock(&self.processes).killed.get(old_master).copied().unwrap_or_else(Instant::now);
        let live = self.live();
        anyhow::ensure!(!live.is_empty(), "no node of the cluster is running");
        let new = poll(&format!("another master than {old_master} serves slot {slot}"), within, || async {
            let mut owners = Vec::new();
            for node in &live {
                cluster_ok(node, 0).await?;
                let nodes: String =
                    query(node, redis::cmd("CLUSTER").arg("NODES")).await.map_err(|e| format!("{node}: {e:#}"))?;
                owners.push(slot_owner(&nodes, slot).unwrap_or_default());
            }
            let first = owners[0].clone();
            if first.is_empty() || first == old_master || owners.iter().any(|o| *o != first) {
                return Err(format!("slot {slot} served by {}", owners.join(", ")));
            }
            Ok(first)
        })
        .await?;
        Ok((new, since.elapsed()))
    }
}

/// Does `node` say `cluster_state:ok` with every slot served (and, unless `known` is 0, know that
/// many nodes)?
async fn cluster_ok(node: &str, known: usize) -> Result<(), String> {
    let text: String = query(node, redis::cmd("CLUSTER").arg("INFO")).await.map_err(|e| format!("{node}: {e:#}"))?;
    let info = parse_info(&text);
    let field = |k: &str| info.get(k).map_or("?", String::as_str);
    let slots = SLOTS.to_string();
    let ok = field("cluster_state") == "ok"
        && field("cluster_slots_assigned") == slots
        && field("cluster_slots_ok") == slots
        && (known == 0 || field("cluster_known_nodes") == known.to_string());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{node}: state {}, {} slots ok, {} nodes known",
            field("cluster_state"),
            field("cluster_slots_ok"),
            field("cluster_known_nodes")
        ))
    }
}

/// The address of the master that serves `slot` in a `CLUSTER NODES` reply, if any does; a master
/// flagged `fail` serves nothing.
fn slot_owner(cluster_nodes: &str, slot: u16) -> Option<String> {
    cluster_nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags) = (fields.get(1)?, fields.get(2)?);
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.contains(&"fail") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
        });
        // `ip:port@bus-port[,hostname]`
        serves.then(|| addr.split(['@', ',']).next().unwrap_or(addr).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_owner_is_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:30002@40002,host-b master - 0 1 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:30003@40003 master,fail - 0 1 3 disconnected 10923-16383
d4 127.0.0.1:30004@40004 slave a1 0 1 1 connected
e5 127.0.0.1:30005@40005 master - 0 1 7 connected 12000 12182-12200
";
        assert_eq!(slot_owner(nodes, 0).as_deref(), Some("127.0.0.1:30001"));
        assert_eq!(slot_owner(nodes, 5460).as_deref(), Some("127.0.0.1:30001"));
        assert_eq!(slot_owner(nodes, 5461).as_deref(), Some("127.0.0.1:30002"), "hostname dropped");
        assert_eq!(slot_owner(nodes, 10923), None, "a failed master serves nothing, a migrating mark is no range");
        assert_eq!(slot_owner(nodes, 12000).as_deref(), Some("127.0.0.1:30005"), "a single slot");
        assert_eq!(slot_owner(nodes, 12182).as_deref(), Some("127.0.0.1:30005"));
        assert_eq!(slot_owner("", 1), None);
    }

    #[test]
    fn info_fields_are_split_at_the_first_colon() {
        let info = parse_info("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:up\r\n");
        assert_eq!(info.get("role").map(String::as_str), Some("slave"));
        assert_eq!(info.get("master_link_status").map(String::as_str), Some("up"));
    }
}
