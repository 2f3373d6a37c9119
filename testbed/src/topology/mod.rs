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

use crate::redis_process::{free_port, wait_for_ping};

mod cluster;
mod sentinel;

pub use cluster::ClusterSet;
pub use sentinel::SentinelSet;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_split_at_the_first_colon() {
        let info = parse_info("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:up\r\n");
        assert_eq!(info.get("role").map(String::as_str), Some("slave"));
        assert_eq!(info.get("master_link_status").map(String::as_str), Some("up"));
    }
}
