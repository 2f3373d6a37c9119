//! Cross-instance rows on other link set-ups than one server: a Sentinel-managed master and a Cluster ([`cvbot_testbed::topology`]), each beside its floor
//! in the same run; and, on each of those two, how long after its master is killed a command typed
//! on A reaches B's jack again.
//!
//! Each phase's failure is returned with the phase named, so `run` can report it beside the rows
//! that were measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use cvbot::catalog::Catalog;
use cvbot_testbed::topology::{ClusterSet, SentinelSet};
use serde::Serialize;

use super::measure::{Samples, Summary};
use super::pipeline::{self, BenchBot, BotOptions};
use super::{floor, progress, udp_receiver};

/// Commands per second of every row here.
pub const RATE: u32 = 1000;
/// `REDIS_URL` of the instances on a Sentinel set or a Cluster. There it gives the scheme and the
/// credentials only; its host is one nothing listens on, so an instance that reached Redis did so
/// through the sentinels or the cluster nodes, never through this address.
const UNUSED_HOST_URL: &str = "redis://127.0.0.1:1";
/// After a kill, A types a new command this often…
const FAILOVER_EVERY: Duration = Duration::from_millis(50);
/// …until one reaches B, for at most this long.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);
/// The hash tag of every key the bot writes: on a Cluster its slot's master is the one to kill.
const CV_KEY: &str = "{cv}";

/// A phase's result, or why it failed (the phase named first).
pub type Outcome<T> = Result<T, String>;

/// Turns a phase's result into an [`Outcome`], logging a failure as it happens.
pub fn outcome<T>(result: anyhow::Result<T>) -> Outcome<T> {
    result.map_err(|e| {
        let e = format!("{e:#}");
        tracing::error!("bench: {e}");
        e
    })
}

/// Cross-instance on a Sentinel set or a Cluster, beside the relay floor on the same servers.
#[derive(Debug, Clone, Serialize)]
pub struct TopologyRow {
    pub rate_per_s: u32,
    /// How long the launcher took to start the set (until it was ready).
    pub start_ms: f64,
    pub latency: Summary,
    /// The plain `PUBLISH` relay floor (Sentinel: on the master; Cluster: published on the master of
    /// the `{cv}` slot, heard on another node).
    pub floor: Summary,
    /// Sentinel only: the publish script with the publisher subscribed too, on the master.
    pub design_floor: Option<Summary>,
}

/// Kill → first command through again, per run, and their median.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub median_ms: f64,
    pub runs: Vec<FailoverRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverRun {
    /// From the kill to the arrival at B's receiver of the first command typed on A after it.
    pub recovered_ms: f64,
    /// When, after the kill, that command was typed (commands go every 50 ms, each a new value).
    pub typed_ms: f64,
    /// Commands typed until then.
    pub typed_count: usize,
    /// From the kill to when the launcher saw the new master in place (every sentinel naming it;
    /// every live cluster node serving the slot from it); `None` if it did not within the limit.
    pub redis_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Instance A (whose own datagrams go to a socket nothing polls, as in `cross_instance`) and B
/// (whose `/cv` datagrams the bench receives), connected, with routes installed on both and the path
/// warmed up.
struct Pair {
    a: BenchBot,
    b: BenchBot,
    rx: Option<tokio::net::UdpSocket>,
    routes: Vec<(String, String)>,
    _a_sink: std::net::UdpSocket,
}

impl Pair {
    async fn start(name: &str, a: &BotOptions, b: &BotOptions, routes: &[(String, String)]) -> anyhow::Result<Pair> {
        let a_sink = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let a = BenchBot::start(&format!("{name}-a"), a_sink.local_addr()?, a).await?;
        let rx = udp_receiver().await?;
        let b = BenchBot::start(&format!("{name}-b"), rx.local_addr()?, b).await?;
        for bot in [&a, &b] {
            bot.connected().await?;
        }
        pipeline::install_routes(&a, &[&b], routes).await?;
        pipeline::drain(&rx).await;
        let (warm, rx) = pipeline::chat_to_osc(&a, routes, 200, RATE, rx).await?;
        anyhow::ensure!(!warm.is_empty(), "no /cv datagram from {} for the warm-up commands typed on {}", b.id, a.id);
        Ok(Pair { a, b, rx: Some(rx), routes: routes.to_vec(), _a_sink: a_sink })
    }

    /// `n` commands typed on A at [`RATE`], each measured until its `/cv` leaves B.
    async fn block(&mut self, n: usize) -> anyhow::Result<Samples> {
        let rx = self.rx.take().context("the receiver was lost in an earlier block")?;
        pipeline::drain(&rx).await;
        let (samples, rx) = pipeline::chat_to_osc(&self.a, &self.routes, n, RATE, rx).await?;
        self.rx = Some(rx);
        anyhow::ensure!(
            !samples.is_empty(),
            "no /cv datagram from {} for {n} commands typed on {}",
            self.b.id,
            self.a.id
        );
        Ok(samples)
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

/// An instance that finds the master through `set`'s sentinels.
fn sentinel_options(set: &SentinelSet) -> BotOptions {
    BotOptions {
        redis_url: Some(UNUSED_HOST_URL.to_owned()),
        vars: vec![
            ("REDIS_SENTINELS".to_owned(), set.sentinel_addrs().join(",")),
            ("REDIS_SENTINEL_MASTER".to_owned(), set.master_name().to_owned()),
        ],
    }
}

/// An instance that starts from the one cluster node `seed`.
fn cluster_options(seed: &str) -> BotOptions {
    BotOptions {
        redis_url: Some(UNUSED_HOST_URL.to_owned()),
        vars: vec![("REDIS_CLUSTER_NODES".to_owned(), seed.to_owned())],
    }
}

/// The two instances on a Cluster are seeded with one node each, different ones: A with the first
/// node, B with the second. `redis-cli --cluster create` makes the first three nodes the masters of
/// slots 0–5460, 5461–10922 and 10923–16383 in that order, so A's seed is the master of the `{cv}`
/// slot (40): the one the failover phase kills. A must then find the cluster through what it learnt
/// from its seed, as an instance whose configured node died must.
fn cluster_pair_options(set: &ClusterSet) -> (BotOptions, BotOptions) {
    let nodes = set.node_addrs();
    (cluster_options(&nodes[0]), cluster_options(&nodes[1]))
}

/// Cross-instance at [`RATE`] with two instances on a [`SentinelSet`], interleaved in blocks with the
/// plain relay floor and the design's floor (publish script, publisher subscribed) on its master.
pub async fn sentinel_row(catalog: &Catalog, q: bool) -> anyhow::Result<TopologyRow> {
    let scale = |quick: usize, full: usize| if q { quick } else { full };
    let (n, blocks) = (scale(2_000, 20_000), scale(2, 10));
    progress(&format!(
        "sentinel: cross-instance at {RATE}/s through a Sentinel-managed master ({n} commands), interleaved in \
         {blocks} blocks with the relay floor and the design's floor on that master"
    ));
    let started = Instant::now();
    let set = SentinelSet::start().await.context("starting the Sentinel set")?;
    let start_ms = ms(started.elapsed());
    let options = sentinel_options(&set);
    let routes = pipeline::routes(catalog, scale(16, 64));
    let mut pair = Pair::start("sentinel", &options, &options, &routes).await?;
    let master = format!("redis://{}", set.master_addr().await?);
    let (mut samples, mut floor_samples, mut design_samples) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..blocks {
        samples.append(pair.block(n / blocks).await?);
        floor_samples
            .append(floor::redis_relay(&master, n / blocks, RATE, floor::Publish::Plain).await.context("relay floor")?);
        design_samples.append(
            floor::redis_relay(&master, n / blocks, RATE, floor::Publish::ScriptHeard)
                .await
                .context("design's floor")?,
        );
    }
    pair.stop().await;
    Ok(TopologyRow {
        rate_per_s: RATE,
        start_ms,
        latency: samples.summary(),
        floor: floor_samples.summary(),
        design_floor: Some(design_samples.summary()),
    })
}

/// Cross-instance at [`RATE`] with two instances on a [`ClusterSet`] (seeded with different nodes),
/// interleaved in blocks with the relay floor: a plain `PUBLISH` on the master of the `{cv}` slot,
/// heard on another node (classic pub/sub is broadcast to every node).
pub async fn cluster_row(catalog: &Catalog, q: bool) -> anyhow::Result<TopologyRow> {
    let scale = |quick: usize, full: usize| if q { quick } else { full };
    let (n, blocks) = (scale(2_000, 20_000), scale(2, 10));
    progress(&format!(
        "cluster: cross-instance at {RATE}/s on a six-node Cluster ({n} commands), interleaved in {blocks} blocks \
         with a relay floor from one node to another"
    ));
    let started = Instant::now();
    let set = ClusterSet::start().await.context("starting the Cluster set")?;
    let start_ms = ms(started.elapsed());
    let (a, b) = cluster_pair_options(&set);
    let routes = pipeline::routes(catalog, scale(16, 64));
    let mut pair = Pair::start("cluster", &a, &b, &routes).await?;
    let publisher = set.master_for_key(CV_KEY).await?;
    let subscriber = set.node_addrs().into_iter().find(|n| *n != publisher).context("a second node")?;
    let (publisher, subscriber) = (format!("redis://{publisher}"), format!("redis://{subscriber}"));
    let (mut samples, mut floor_samples) = (Samples::default(), Samples::default());
    for _ in 0..blocks {
        samples.append(pair.block(n / blocks).await?);
        floor_samples.append(
            floor::redis_relay_between(&publisher, &subscriber, n / blocks, RATE, floor::Publish::Plain)
                .await
                .context("relay floor")?,
        );
    }
    pair.stop().await;
    Ok(TopologyRow {
        rate_per_s: RATE,
        start_ms,
        latency: samples.summary(),
        floor: floor_samples.summary(),
        design_floor: None,
    })
}

/// Which set a failover phase kills the master of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Sentinel,
    Cluster,
}

/// Kill → first command through again, on a fresh set and a fresh pair of instances per run: 3 runs
/// (1 with `--quick`), each listed, and their median.
pub async fn failover(topology: Topology, catalog: &Catalog, q: bool) -> anyhow::Result<Failover> {
    let count = if q { 1 } else { 3 };
    progress(&format!(
        "{}: kill the master while two instances run, then a new command on A every {} ms until one reaches B \
         ({count} run{})",
        match topology {
            Topology::Sentinel => "sentinel failover",
            Topology::Cluster => "cluster failover (the master of the {cv} slot)",
        },
        FAILOVER_EVERY.as_millis(),
        if count == 1 { "" } else { "s" }
    ));
    let mut runs = Vec::new();
    for run in 1..=count {
        runs.push(failover_run(topology, catalog).await.with_context(|| format!("run {run} of {count}"))?);
    }
    let mut sorted: Vec<f64> = runs.iter().map(|r| r.recovered_ms).collect();
    sorted.sort_by(f64::total_cmp);
    Ok(Failover { median_ms: sorted[sorted.len() / 2], runs })
}

async fn failover_run(topology: Topology, catalog: &Catalog) -> anyhow::Result<FailoverRun> {
    let routes = pipeline::routes(catalog, 16);
    // Beyond every (route, value) pair the pair's warm-up used, and no wrap-around within the limit.
    let first_seq = routes.len() * 64;
    match topology {
        Topology::Sentinel => {
            let set = SentinelSet::start().await.context("starting the Sentinel set")?;
            let options = sentinel_options(&set);
            let mut pair = Pair::start("sentinel-fo", &options, &options, &routes).await?;
            let rx = pair.rx.take().context("receiver")?;
            pipeline::drain(&rx).await;
            let old = set.kill_master().await?;
            let since = Instant::now();
            let (through, redis) = tokio::join!(
                pipeline::first_through(&pair.a, &routes, first_seq, FAILOVER_EVERY, FAILOVER_WITHIN, since, rx),
                set.wait_for_promotion(&old, FAILOVER_WITHIN),
            );
            pair.stop().await;
            run_result(through, redis)
        }
        Topology::Cluster => {
            let set = ClusterSet::start().await.context("starting the Cluster set")?;
            let (a, b) = cluster_pair_options(&set);
            let mut pair = Pair::start("cluster-fo", &a, &b, &routes).await?;
            let rx = pair.rx.take().context("receiver")?;
            pipeline::drain(&rx).await;
            let slot = set.key_slot(CV_KEY).await?;
            let old = set.master_of_slot(slot).await?;
            set.kill(&old)?;
            let since = Instant::now();
            let (through, redis) = tokio::join!(
                pipeline::first_through(&pair.a, &routes, first_seq, FAILOVER_EVERY, FAILOVER_WITHIN, since, rx),
                set.wait_for_failover(&old, slot, FAILOVER_WITHIN),
            );
            pair.stop().await;
            run_result(through, redis)
        }
    }
}

fn run_result(
    through: anyhow::Result<(pipeline::FirstThrough, tokio::net::UdpSocket)>,
    redis: anyhow::Result<(String, Duration)>,
) -> anyhow::Result<FailoverRun> {
    let redis_ms = match redis {
        Ok((_, after)) => Some(ms(after)),
        Err(e) => {
            tracing::warn!("bench: the launcher did not see the failover: {e:#}");
            None
        }
    };
    let (through, _) = through?;
    Ok(FailoverRun {
        recovered_ms: ms(through.arrived),
        typed_ms: ms(through.typed),
        typed_count: through.typed_count,
        redis_ms,
    })
}
