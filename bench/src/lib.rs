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
pub mod floor;
pub mod measure;
pub mod pipeline;
pub mod plot;
mod report;
pub mod sse;
pub mod twitch;
pub mod variants;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cvbot::catalog::Catalog;
use cvbot::state::Hlc;
use serde::Serialize;
use tokio::net::UdpSocket;

use measure::{Samples, Summary};
pub use report::{render, render_only};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// "twitch: IRC PRIVMSG → OSC" ([`twitch`]); needs no Redis.
    Twitch,
}

/// What [`run_only`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct OnlyReport {
    /// [`BUILD`]: `"debug"` means the figures below are not representative.
    pub build: &'static str,
    pub quick: bool,
    pub machine: String,
    pub twitch: variants::Outcome<twitch::TwitchRow>,
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
    let _own_redis;
    let url = match &options.redis_url {
        Some(url) => url.clone(),
        None => {
            let process = cvbot_testbed::redis_process::RedisProcess::start().await?;
            let url = process.url.clone();
            _own_redis = process;
            url
        }
    };
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
    let Only::Twitch = only;
    progress("twitch: IRC PRIVMSG → OSC through a local IRC server");
    let twitch = variants::outcome(twitch::row(&Catalog::builtin(), options.quick).await.context("twitch row"));
    let report = OnlyReport { build: BUILD, quick: options.quick, machine: machine(), twitch };
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

/// Remote events per second offered to the subscribing instance (the target rate).
pub const THROUGHPUT_RATE: u32 = 100_000;
const THROUGHPUT_CHUNK: usize = 500;
const THROUGHPUT_CHUNK_U32: u32 = 500;

/// Chat line → `/cv` on a standalone instance (the pure local path) at 1000/s.
async fn local_latency(catalog: &Catalog, q: bool) -> anyhow::Result<Samples> {
    let scale = |quick: usize, full: usize| if q { quick } else { full };
    progress("local: chat → OSC on a standalone instance at 1000/s");
    let rx = udp_receiver().await?;
    let solo = pipeline::BenchBot::start("bench-solo", rx.local_addr()?, &pipeline::BotOptions::default()).await?;
    let routes = pipeline::routes(catalog, scale(16, 64));
    pipeline::install_routes(&solo, &[], &routes).await?;
    pipeline::drain(&rx).await;
    let (_, rx) = pipeline::chat_to_osc(&solo, &routes, 200, 1000, rx).await?;
    let (samples, _) = pipeline::chat_to_osc(&solo, &routes, scale(2000, 20_000), 1000, rx).await?;
    solo.stop().await;
    Ok(samples)
}

/// Chat on A → `/cv` from B through Redis at 100, 1,000 and 10,000 commands/s, each beside the
/// Redis + UDP floor at the same rate; then the receiving half alone.
async fn cross_instance(
    url: &str,
    catalog: &Catalog,
    q: bool,
) -> anyhow::Result<(Vec<CrossResult>, Summary, Vec<(String, Vec<f64>)>)> {
    let scale = |quick: usize, full: usize| if q { quick } else { full };
    progress("cross-instance: two instances on Redis");
    // A's own jacks are on another machine in a real two-studio show. Its datagrams go to a socket
    // that no runtime polls, so they wake nothing here (the kernel queues, then drops, them).
    let a_rx = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let a = pipeline::BenchBot::start("bench-a", a_rx.local_addr()?, &pipeline::BotOptions::redis(url)).await?;
    let mut rx = udp_receiver().await?;
    let b = pipeline::BenchBot::start("bench-b", rx.local_addr()?, &pipeline::BotOptions::redis(url)).await?;
    a.connected().await?;
    b.connected().await?;
    let routes = pipeline::routes(catalog, scale(16, 64));
    pipeline::install_routes(&a, &[&b], &routes).await?;
    pipeline::drain(&rx).await;
    (_, rx) = pipeline::chat_to_osc(&a, &routes, 200, 1000, rx).await?;
    let mut cross = Vec::new();
    let mut series = Vec::new();
    // Each rate runs in blocks that alternate the bot's path with its floors, so a stretch of host
    // noise (seconds long on a shared VM) lands on all of them instead of on whichever phase it
    // coincided with; the ratios are what the targets are about.
    let blocks = scale(2, 10);
    for rate in [100u32, 1000, 10_000] {
        let n = match rate {
            100 => scale(200, 2_000),
            1000 => scale(2_000, 20_000),
            _ => scale(10_000, 50_000),
        };
        let floor_n = n.min(scale(2_000, 20_000));
        progress(&format!(
            "cross-instance at {rate}/s: chat on A → OSC from B ({n} commands), interleaved in {blocks} blocks with \
             the relay floor{}",
            if rate == 1000 { " and the publish-script floors" } else { "" }
        ));
        let (mut samples, mut floor_samples, mut script_samples, mut heard_samples) =
            (Samples::default(), Samples::default(), Samples::default(), Samples::default());
        let (mut bot_spent, mut floor_spent) = (command_stats::Spent::default(), command_stats::Spent::default());
        for _ in 0..blocks {
            pipeline::drain(&rx).await;
            let before = command_stats::command_stats(url).await;
            let block;
            (block, rx) = pipeline::chat_to_osc(&a, &routes, n / blocks, rate, rx).await?;
            samples.append(block);
            let after = command_stats::command_stats(url).await;
            bot_spent.add(&before, &after, "evalsha");
            floor_samples.append(floor::redis_relay(url, floor_n / blocks, rate, floor::Publish::Plain).await?);
            floor_spent.add(&after, &command_stats::command_stats(url).await, "publish");
            if rate == 1000 {
                script_samples.append(floor::redis_relay(url, n / blocks, rate, floor::Publish::Script).await?);
                heard_samples.append(floor::redis_relay(url, n / blocks, rate, floor::Publish::ScriptHeard).await?);
            }
        }
        let (redis_us_per_publish, floor_redis_us_per_publish) = (bot_spent.us_per_call(), floor_spent.us_per_call());
        let (mut script_floor, mut design_floor) = (None, None);
        if rate == 1000 {
            series.push(("cross-instance @1k/s".to_owned(), samples.sorted_us()));
            series.push(("floor: Redis → relay → UDP @1k/s".to_owned(), floor_samples.sorted_us()));
            series.push(("floor: publish script → relay → UDP @1k/s".to_owned(), script_samples.sorted_us()));
            series.push(("floor: script, publisher subscribed too @1k/s".to_owned(), heard_samples.sorted_us()));
            script_floor = Some(script_samples.summary());
            design_floor = Some(heard_samples.summary());
        }
        cross.push(CrossResult {
            rate_per_s: rate,
            latency: samples.summary(),
            floor: floor_samples.summary(),
            redis_us_per_publish,
            floor_redis_us_per_publish,
            script_floor,
            design_floor,
        });
    }
    // A stops first, so the receiving half is B's alone: with A still subscribed, every event would
    // also wake A's reader, which on a 2-core machine competes with B for a core.
    a.stop().await;
    progress("receiving half: raw event in Redis → OSC from B at 1000/s");
    pipeline::drain(&rx).await;
    let (remote, _) = pipeline::remote_to_osc(url, catalog, &routes, scale(2_000, 20_000), 1000, rx).await?;
    b.stop().await;
    // A row of zeros would read as "free"; no sample at all means the events never reached a jack.
    anyhow::ensure!(!remote.is_empty(), "receiving half: no /cv datagram arrived for the published events");
    drop(a_rx);
    Ok((cross, remote.summary(), series))
}

/// Publishes `n` parameter events straight into Redis and measures how fast one child instance
/// applies them (zero loss expected), its CPU use, and its memory idle and under load.
async fn throughput(url: &str, catalog: &Catalog, n: usize) -> anyhow::Result<(Throughput, Memory)> {
    let routes = pipeline::routes(catalog, 8);
    let receiver = udp_receiver().await?;
    let child = child::ChildBot::start_subscribed("bench-sub", url, receiver.local_addr()?, &routes).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = child.rss_bytes();
    let variables: Vec<_> = routes.iter().filter_map(|(_, v)| catalog.parse_variable(v)).collect();
    let base = Hlc::from_wall_ms(cvbot::clock::wall_ms_now());
    let payloads: Vec<String> = (0..n)
        .map(|i| {
            #[allow(clippy::cast_possible_truncation)] // Modulo 128 fits a u8.
            let value = (i % 128) as u8;
            pipeline::raw_set_event(&variables[i % variables.len()], value, base + i as u64, "bench-pub", i as u64 + 1)
        })
        .collect();
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut count = 0u64;
        let mut last = Instant::now();
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), receiver.recv(&mut buf)).await {
            count += 1;
            last = Instant::now();
        }
        (count, last)
    });
    let mut conn = cvbot_testbed::redis_process::connect(url).await?;
    let cpu_before = child.cpu_time();
    let started = Instant::now();
    let mut peak_rss = idle_rss;
    // Paced at THROUGHPUT_RATE in pipelines of THROUGHPUT_CHUNK: a sustained rate, not one burst.
    let mut pacer = Pacer::new(THROUGHPUT_RATE / THROUGHPUT_CHUNK_U32);
    for chunk in payloads.chunks(THROUGHPUT_CHUNK) {
        pacer.wait().await;
        let mut pipe = redis::pipe();
        for p in chunk {
            pipe.cmd("PUBLISH").arg("cv:parameter:update").arg(p).ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        peak_rss = peak_rss.max(child.rss_bytes());
    }
    let (osc_received, last) = counter.await?;
    let cpu = child.cpu_time().saturating_sub(cpu_before);
    peak_rss = peak_rss.max(child.rss_bytes());
    let wall = last.duration_since(started).as_secs_f64().max(1e-9);
    let applied = child.stat("remote_applied");
    let throughput = Throughput {
        published: n as u64,
        applied,
        osc_sent: child.stat("osc_sent"),
        osc_received,
        events_per_s: applied as f64 / wall,
        cpu_cores: cpu.as_secs_f64() / wall,
    };
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok((throughput, Memory { idle_rss_mb: mb(idle_rss), load_rss_mb: mb(peak_rss) }))
}

/// SSE fan-out on a child instance: `clients` streams measuring event → client latency at 100
/// events/s, then `hold` streams held open and checked to still receive updates.
async fn overlay(url: &str, catalog: &Catalog, clients: usize, events: usize, hold: usize) -> anyhow::Result<Overlay> {
    let sink = udp_receiver().await?;
    let child = child::ChildBot::start_subscribed("bench-overlay", url, sink.local_addr()?, &[]).await?;
    let variables: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(pipeline::routes(catalog, 8).into_iter().map(|(_, v)| v).collect());
    let sent = sse::SentTimes::default();
    let fleet = sse::Clients::connect(child.http, clients, variables.clone(), sent.clone()).await;
    let connected = fleet.wait_connected(clients, Duration::from_secs(30)).await;
    let rate = 100;
    sse::publish_events(url, &variables, catalog, events, rate, &sent).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latency = fleet.take_samples().summary();
    let rss_mb = child.rss_bytes() as f64 / (1024.0 * 1024.0);

    let extra = hold.saturating_sub(clients);
    let held = sse::Clients::connect(child.http, extra, variables.clone(), sent.clone()).await;
    let hold_connected = connected + held.wait_connected(extra, Duration::from_secs(60)).await;
    let before = fleet.updates.load(std::sync::atomic::Ordering::Relaxed)
        + held.updates.load(std::sync::atomic::Ordering::Relaxed);
    sse::publish_events(url, &variables, catalog, 1, rate, &sent).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let now = fleet.updates.load(std::sync::atomic::Ordering::Relaxed)
            + held.updates.load(std::sync::atomic::Ordering::Relaxed);
        if now - before >= hold_connected || Instant::now() > deadline {
            break now - before;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hold_rss_mb = child.rss_bytes() as f64 / (1024.0 * 1024.0);
    drop(held);
    drop(fleet);
    Ok(Overlay {
        clients,
        connected,
        events_per_s: rate,
        latency,
        rss_mb,
        hold_clients: hold,
        hold_connected,
        hold_delivered_pct: delivered as f64 * 100.0 / hold_connected.max(1) as f64,
        hold_rss_mb,
    })
}

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
