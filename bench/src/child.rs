//! A child instance for the measurements that must be per-process (RSS, CPU), with minimal helpers
//! to read its HTTP endpoints and `/proc`.
//!
//! The child is this same executable run with [`SERVE_INSTANCE`]: `cvbot-bench` then serves one bot
//! as the `cvbot` binary does ([`serve_instance`]: the configuration from the environment, the
//! show's runtime, [`cvbot::run`]), so the bench needs no `cvbot` binary built beside it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The hidden argument that makes `cvbot-bench` serve one bot instead of measuring.
pub const SERVE_INSTANCE: &str = "--serve-instance";

/// Connection and SSE caps of the bench's child instances (see `start_subscribed`).
const BENCH_MAX_CLIENTS: usize = 100_000;

/// A running child instance; killed on drop.
#[derive(Debug)]
pub struct ChildBot {
    child: Child,
    pub http: SocketAddr,
    /// The child's working directory (routing file), removed on drop.
    dir: std::path::PathBuf,
}

impl ChildBot {
    /// Starts a bot named `id` on Redis `url`, sending OSC to `osc` with `routes` in its routing file,
    /// and waits until its Redis link is connected.
    pub async fn start_subscribed(
        id: &str,
        url: &str,
        osc: SocketAddr,
        routes: &[(String, String)],
    ) -> anyhow::Result<ChildBot> {
        let table: serde_json::Map<String, serde_json::Value> =
            routes.iter().map(|(o, v)| (o.clone(), serde_json::Value::String(v.clone()))).collect();
        ChildBot::start_routed(id, url, osc, &serde_json::Value::Object(table), &[]).await
    }

    /// As [`ChildBot::start_subscribed`], with `routing` as its routing file in any form the bot
    /// reads (`{"variable", "slew", …}` per output), and `more` variables after the bench's own.
    pub async fn start_routed(
        id: &str,
        url: &str,
        osc: SocketAddr,
        routing: &serde_json::Value,
        more: &[(&str, String)],
    ) -> anyhow::Result<ChildBot> {
        let dir = std::env::temp_dir().join(format!("cvbot-bench-{id}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("routing_table.json"), routing.to_string())?;
        let mut vars = vec![
            ("INSTANCE_ID", id.to_owned()),
            ("REDIS_URL", url.to_owned()),
            ("OSC_TARGETS", osc.to_string()),
            // The overlay bench holds up to 10,000 SSE clients on one instance: far above the show
            // defaults (1024 connections, 256 streams), which would measure refusals instead.
            ("HTTP_MAX_CONNECTIONS", BENCH_MAX_CLIENTS.to_string()),
            ("SSE_MAX_CLIENTS", BENCH_MAX_CLIENTS.to_string()),
        ];
        vars.extend(more.iter().cloned());
        let child = ChildBot::start(&vars, dir)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.json("/api/state").is_none_or(|v| v["redis"] != "connected") {
            anyhow::ensure!(Instant::now() < deadline, "the child instance {id} did not connect to Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }

    /// Starts the current executable (which must be `cvbot-bench`) as a bot ([`SERVE_INSTANCE`])
    /// with `vars` in `dir` and waits until it serves.
    pub fn start(vars: &[(&str, String)], dir: std::path::PathBuf) -> anyhow::Result<ChildBot> {
        let exe = std::env::current_exe().context("locating the cvbot-bench executable")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(exe);
        cmd.arg(SERVE_INSTANCE)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HTTP_ADDR", http.to_string())
            .env("CHAT_STDIN", "off")
            .env("LOG_LEVEL", "warn")
            // No heartbeat, as in `BenchBot`: the receivers end a phase after seconds of quiet.
            .env("OSC_HEARTBEAT_MS", "0")
            .env("ROUTING_FILE", dir.join("routing_table.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting a cvbot child process")?;
        let bot = ChildBot { child, http, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(bot.http, "/healthz").is_none() {
            anyhow::ensure!(Instant::now() < deadline, "the child bot did not start serving");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bot)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A JSON endpoint of the child.
    pub fn json(&self, path: &str) -> Option<serde_json::Value> {
        http_get(self.http, path).and_then(|body| serde_json::from_str(&body).ok())
    }

    /// One counter from `/api/stats`.
    pub fn stat(&self, name: &str) -> u64 {
        self.json("/api/stats").and_then(|v| v[name].as_u64()).unwrap_or(0)
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// User + system CPU time used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }

    /// The CPU time used so far, read both ways ([`CpuMark`]).
    pub fn cpu_mark(&self) -> CpuMark {
        CpuMark { threads: ThreadCpu::read(self.pid()), total: self.cpu_time() }
    }
}

impl Drop for ChildBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves one bot until the process is killed, configured from the environment as the `cvbot`
/// binary is (no `.env`, no terminal chat, no signal handling: [`ChildBot`] owns this process and
/// SIGKILLs it). Returns only on a configuration or start-up error, or if the bot stops by itself.
pub fn serve_instance() -> anyhow::Result<()> {
    let vars = std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
    let config = cvbot::Config::from_vars(vars)?;
    init_tracing(&config.log_level);
    let runtime = cvbot::app::runtime().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = cvbot::Listeners::bind(&config)?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        cvbot::run(config, listeners, cvbot::Extras::default(), shutdown).await
    })
}

/// The `cvbot` binary's logging at `level` (the child's stderr is discarded, but it costs what it
/// costs in a show).
fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_new(format!("cvbot={level},warp=warn,{level}")).unwrap_or_else(|_| EnvFilter::new("warn"));
    let filter = match cvbot::twitch::LOG_DIRECTIVE.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// A minimal HTTP/1.0 GET, so the bench needs no HTTP client stack.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines().next().is_some_and(|status| status.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}

/// `VmRSS` of a process in bytes (0 where /proc is unavailable).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// utime + stime of a process from /proc (clock ticks at the usual 100 Hz).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat: indices 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// On-CPU time of each thread of a process from `/proc/<pid>/task/*/schedstat`: the scheduler's
/// own count in nanoseconds, where [`cpu_time`] is in clock ticks (10 ms), too coarse for an idle
/// instance over a few seconds.
#[derive(Debug, Clone, Default)]
pub struct ThreadCpu(std::collections::HashMap<u32, u64>);

impl ThreadCpu {
    pub fn read(pid: u32) -> ThreadCpu {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return ThreadCpu::default() };
        let threads = tasks
            .filter_map(|task| {
                let task = task.ok()?;
                let tid = task.file_name().to_str()?.parse().ok()?;
                let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                Some((tid, schedstat.split_whitespace().next()?.parse().ok()?))
            })
            .collect();
        ThreadCpu(threads)
    }

    /// The CPU time the process used since `earlier`; `None` when a thread ended in between (its
    /// time left the count with it) or nothing was readable.
    pub fn since(&self, earlier: &ThreadCpu) -> Option<Duration> {
        if self.0.is_empty() || earlier.0.keys().any(|tid| !self.0.contains_key(tid)) {
            return None;
        }
        let ns = self.0.iter().map(|(tid, ns)| ns.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0))).sum();
        Some(Duration::from_nanos(ns))
    }
}

/// A process's CPU time at one moment, read both ways: its threads' scheduler counts
/// ([`ThreadCpu`]) and the coarser utime + stime ([`cpu_time`]), for when a thread ends in between.
#[derive(Debug, Clone)]
pub struct CpuMark {
    threads: ThreadCpu,
    total: Duration,
}

impl CpuMark {
    /// The CPU time used from `earlier` to this mark: the threads' counts, or the coarser total
    /// when a thread ended in between.
    pub fn since(&self, earlier: &CpuMark) -> Duration {
        self.threads.since(&earlier.threads).unwrap_or_else(|| self.total.saturating_sub(earlier.total))
    }
}
