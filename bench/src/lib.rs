//! # cvbot-bench: the whole system measured against the physical floor, in one run
//!
//! Starts its own `redis-server` (or uses `--redis-url`), runs real instances (in-process for
//! latency, a child process for per-process CPU and memory), real UDP receivers, and prints each
//! result beside its floor. Not a test: it reports, it does not assert timings.
//!
//! A crate of its own, so the library and binary that run a show carry neither this code nor its
//! plotting: it drives `cvbot` through its public API, and its Redis processes and topologies come
//! from `cvbot-testbed`. The binary is `cvbot-bench` (`cargo run --release -p cvbot-bench -- --help`).

pub mod child;
pub mod command_stats;
pub mod democracy;
pub mod floor;
pub mod measure;
pub mod motion;
pub mod pipeline;
pub mod plot;
mod report;
mod rows;
pub mod sse;
pub mod twitch;
pub mod variants;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cvbot::catalog::Catalog;
use serde::Serialize;
use tokio::net::UdpSocket;

use measure::Summary;
pub use report::{render, render_only};
use rows::{cross_instance, local_latency, overlay, throughput};

/// What `cvbot-bench` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// A smoke run that finishes in well under a minute (CI uses it).
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    /// Use this Redis instead of starting one.
    pub redis_url: Option<String>,
}

/// A row that can be measured on its own ([`run_only`]), for A/B comparisons that need only it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Only {
    /// "twitch: IRC PRIVMSG → OSC" ([`twitch`]); needs no Redis.
    Twitch,
    /// The slew load and the cross-instance ramp agreement ([`motion`]); on its own Redis unless
    /// `--redis-url` names one.
    Motion,
    /// Democracy's votes and verdict on two child instances ([`democracy`]); on its own Redis
    /// unless `--redis-url` names one.
    Democracy,
}

/// What [`run_only`] measured: the one row asked for.
#[derive(Debug, Clone, Serialize)]
pub struct OnlyReport {
    /// [`BUILD`]: `"debug"` means the figures below are not representative.
    pub build: &'static str,
    pub quick: bool,
    pub machine: String,
    pub only: Only,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twitch: Option<variants::Outcome<twitch::TwitchRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion: Option<motion::Motion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub democracy: Option<variants::Outcome<democracy::DemocracyRow>>,
}

/// How the measuring code was compiled: `"release"`, or `"debug"`, whose figures are not
/// representative (unoptimised code, debug assertions on; `scripts/test` runs a debug smoke).
pub const BUILD: &str = if cfg!(debug_assertions) { "debug" } else { "release" };

/// Every number of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`BUILD`]: `"debug"` means the figures below are not representative.
    pub build: &'static str,
    pub quick: bool,
    pub machine: String,
    pub floor_udp: Summary,
    pub floor_redis: Summary,
    pub floor_redis_udp: Summary,
    pub floor_redis_throughput_per_s: f64,
    pub local: Summary,
    /// Twitch IRC PRIVMSG on the socket → `/cv`, and admin commands in and out of floods.
    pub twitch: variants::Outcome<twitch::TwitchRow>,
    /// An event published straight into Redis → `/cv` from the receiving instance, at 1000/s.
    pub remote_to_osc: Summary,
    pub cross: Vec<CrossResult>,
    pub throughput: Throughput,
    pub memory: Memory,
    pub overlay: Overlay,
    /// 64 outputs slewing on one instance; one ramp drawn by two instances.
    pub motion: motion::Motion,
    /// Thousands of viewers voting on two instances, then the window's verdict at both jacks.
    pub democracy: variants::Outcome<democracy::DemocracyRow>,
    /// This and the rows below are `{"Ok": …}`, or `{"Err": "…"}` naming the phase that failed.
    /// Cross-instance at 1k/s on a Sentinel-managed master, beside its floors.
    pub sentinel: variants::Outcome<variants::TopologyRow>,
    /// Kill the Sentinel-managed master → first command through again.
    pub sentinel_failover: variants::Outcome<variants::Failover>,
    /// Cross-instance at 1k/s on a six-node Cluster, beside its floor.
    pub cluster: variants::Outcome<variants::TopologyRow>,
    /// Kill the master of the `{cv}` slot → first command through again.
    pub cluster_failover: variants::Outcome<variants::Failover>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overlay {
    pub clients: usize,
    pub connected: usize,
    pub events_per_s: u32,
    pub latency: Summary,
    pub rss_mb: f64,
    pub hold_clients: usize,
    pub hold_connected: usize,
    /// Share of held clients that received the last update sent during the hold.
    pub hold_delivered_pct: f64,
    pub hold_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossResult {
    pub rate_per_s: u32,
    pub latency: Summary,
    pub floor: Summary,
    /// Redis's own time per publishing command on the bot's path (`EVALSHA` of the publish script:
    /// register, history, `PUBLISH`), from `INFO commandstats`; `None` when the server hides it.
    pub redis_us_per_publish: Option<f64>,
    /// The same for the floor's plain `PUBLISH`.
    pub floor_redis_us_per_publish: Option<f64>,
    /// The relay floor with the bot's publish script (register, history and publish in one atomic
    /// step) in place of `PUBLISH`, measured at 1k/s.
    pub script_floor: Option<Summary>,
    /// That floor with the publisher's side also subscribed, as every instance is (measured at
    /// 1k/s): the floor of the path the design prescribes.
    pub design_floor: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub published: u64,
    pub applied: u64,
    pub osc_sent: u64,
    pub osc_received: u64,
    pub events_per_s: f64,
    pub cpu_cores: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub idle_rss_mb: f64,
    pub load_rss_mb: f64,
}

#[derive(Debug)]
/// Sends at a steady rate; at rates above the timer's resolution it sends the due ones in bursts.
pub struct Pacer {
    start: Instant,
    interval: Duration,
    sent: u32,
}

impl Pacer {
    pub fn new(rate: u32) -> Pacer {
        Pacer { start: Instant::now(), interval: Duration::from_secs(1) / rate.max(1), sent: 0 }
    }

    pub async fn wait(&mut self) {
        let due = self.start + self.interval * self.sent;
        self.sent += 1;
        let now = Instant::now();
        if due > now + Duration::from_micros(500) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// A runtime on a thread of its own, standing in for another process: what is spawned on it wakes
/// and runs there, as it would in a bot instance.
#[derive(Debug)]
pub struct Side {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Side {
    pub fn start(name: &str) -> anyhow::Result<Side> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker_name = format!("{name}-w");
        let thread =
            std::thread::Builder::new().name(name.to_owned()).spawn(move || {
                match cvbot::app::runtime_named(&worker_name) {
                    Ok(runtime) => {
                        let _ = handle_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                    }
                }
            })?;
        let handle = handle_rx.recv()??;
        Ok(Side { handle, stop: Some(stop), thread: Some(thread) })
    }

    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Stops the runtime (its tasks are dropped) and joins the thread.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A UDP socket on loopback with a large receive buffer, so bursts are not dropped by the kernel.
pub async fn udp_receiver() -> anyhow::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>()?.into())?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket.into())?)
}

fn progress(step: &str) {
    tracing::info!("bench: {step}");
}

/// Runs every measurement and returns the report; prints progress while it runs.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    if BUILD != "release" {
        tracing::warn!("bench: a {BUILD} build: its figures are not representative (use --release)");
    }
    // Checked before minutes of measuring, not after.
    if let Some(path) = &options.plot {
        let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        anyhow::ensure!(
            svg,
            "--plot {}: the plot is drawn as SVG, so name the file FILE.svg (a browser or rsvg-convert turns it into a PNG)",
            path.display()
        );
    }
    let (url, _own_redis) = redis(options).await?;
    let q = options.quick;
    let scale = |quick: usize, full: usize| if q { quick } else { full };
    let catalog = Catalog::builtin();

    progress("floor: UDP loopback one-way at 1000/s");
    let floor_udp = floor::udp_one_way(scale(1000, 10_000), 1000).await?.summary();
    progress("floor: Redis pub/sub one-way at 1000/s");
    let floor_redis = floor::redis_one_way(&url, scale(1000, 10_000), 1000).await?.summary();
    progress("floor: raw Redis pub/sub throughput");
    let floor_tput = floor::redis_throughput(&url, scale(20_000, 200_000)).await?;

    let local = local_latency(&catalog, q).await?;
    let mut plot_series = vec![("local chat → OSC".to_owned(), local.sorted_us())];
    let local = local.summary();
    progress("twitch: IRC PRIVMSG → OSC through a local IRC server");
    let twitch = variants::outcome(twitch::row(&catalog, q).await.context("twitch row"));
    let (cross, remote_to_osc, cross_series) = cross_instance(&url, &catalog, q).await?;
    plot_series.extend(cross_series);
    let floor_redis_udp = cross.iter().find(|c| c.rate_per_s == 1000).map_or(floor_redis, |c| c.floor);

    progress("throughput and memory: one subscribing child instance");
    let (throughput, memory) = throughput(&url, &catalog, scale(20_000, 200_000)).await?;

    progress(&format!(
        "overlay: {} SSE clients at 100 events/s, then a {}-client hold",
        scale(1000, 1000),
        scale(2000, 10_000)
    ));
    let overlay = overlay(&url, &catalog, scale(1000, 1000), scale(300, 1500), scale(2000, 10_000)).await?;

    // The phases below report a failure in their row, naming the phase, and the run goes on.
    let motion = motion::rows(&url, &catalog, q).await;
    let democracy = democracy::measured(&url, &catalog, q).await;
    let sentinel = variants::outcome(variants::sentinel_row(&catalog, q).await.context("sentinel row"));
    let sentinel_failover = match &sentinel {
        Ok(_) => variants::outcome(
            variants::failover(variants::Topology::Sentinel, &catalog, q).await.context("sentinel failover"),
        ),
        Err(_) => Err("sentinel failover: not run, as the sentinel row failed".to_owned()),
    };
    let cluster = variants::outcome(variants::cluster_row(&catalog, q).await.context("cluster row"));
    let cluster_failover = match &cluster {
        Ok(_) => variants::outcome(
            variants::failover(variants::Topology::Cluster, &catalog, q).await.context("cluster failover"),
        ),
        Err(_) => Err("cluster failover: not run, as the cluster row failed".to_owned()),
    };

    let report = Report {
        build: BUILD,
        quick: q,
        machine: machine(),
        floor_udp,
        floor_redis,
        floor_redis_udp,
        floor_redis_throughput_per_s: floor_tput,
        local,
        twitch,
        remote_to_osc,
        cross,
        throughput,
        memory,
        overlay,
        motion,
        democracy,
        sentinel,
        sentinel_failover,
        cluster,
        cluster_failover,
    };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &options.plot {
        plot::latency_cdf(path, &plot_series)?;
    }
    Ok(report)
}

/// Measures one row alone (`--only`), writing `--json` if asked.
pub async fn run_only(options: &BenchOptions, only: Only) -> anyhow::Result<OnlyReport> {
    if BUILD != "release" {
        tracing::warn!("bench: a {BUILD} build: its figures are not representative (use --release)");
    }
    let catalog = Catalog::builtin();
    let mut report = OnlyReport {
        build: BUILD,
        quick: options.quick,
        machine: machine(),
        only,
        twitch: None,
        motion: None,
        democracy: None,
    };
    match only {
        Only::Twitch => {
            progress("twitch: IRC PRIVMSG → OSC through a local IRC server");
            report.twitch = Some(variants::outcome(twitch::row(&catalog, options.quick).await.context("twitch row")));
        }
        Only::Motion => {
            let (url, _own_redis) = redis(options).await?;
            report.motion = Some(motion::rows(&url, &catalog, options.quick).await);
        }
        Only::Democracy => {
            let (url, _own_redis) = redis(options).await?;
            report.democracy = Some(democracy::measured(&url, &catalog, options.quick).await);
        }
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

/// `--redis-url`, or a private `redis-server` started for the run (stopped when dropped).
async fn redis(options: &BenchOptions) -> anyhow::Result<(String, Option<cvbot_testbed::redis_process::RedisProcess>)> {
    Ok(match &options.redis_url {
        Some(url) => (url.clone(), None),
        None => {
            let process = cvbot_testbed::redis_process::RedisProcess::start().await?;
            (process.url.clone(), Some(process))
        }
    })
}

/// Remote events per second offered to the subscribing instance (the target rate).
pub const THROUGHPUT_RATE: u32 = 100_000;
const THROUGHPUT_CHUNK: usize = 500;
const THROUGHPUT_CHUNK_U32: u32 = 500;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    format!("{cores} cores, {cpu}")
}
