//! A six-node Redis Cluster: three masters, three replicas.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{
    Processes, READY_WITHIN, SLOTS, data_node_args, free_port, info, lock, master_streams_to_replicas, parse_info,
    poll, query, replica_in_sync, spawn_node,
};
use crate::redis_process::tempfile_dir::Dir;

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
}
