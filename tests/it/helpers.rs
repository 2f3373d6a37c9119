//! Test helpers: start the real bot on free ports with its own temp directory, send chat lines,
//! receive and decode OSC datagrams on a real UDP socket, read HTTP, and wait for events (never for
//! the clock).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cvbot::config::RedisTiming;
use cvbot::coord::Outcome;
use cvbot::gate::Sender;
use cvbot::{Config, Extras, Listeners, Running};
use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a datagram that must arrive before it fails.
pub const ARRIVAL: Duration = Duration::from_secs(3);
/// How long a test listens to be sure nothing is sent, where only a real timer of the code under
/// test could send it (no event marks that it will not).
pub const SILENCE: Duration = Duration::from_millis(300);
/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(20);

/// The Redis link's timings for in-process tests: faults are noticed and healed in milliseconds
/// (the defaults take seconds). The probe deadline stays well above a loaded machine's round trip, so a
/// slow probe is not taken for a deaf subscription; the claim key lives three heartbeats (900 ms).
pub const FAST_REDIS: RedisTiming = RedisTiming {
    probe_interval: Duration::from_millis(100),
    probe_deadline: Duration::from_secs(1),
    heartbeat: Duration::from_millis(300),
    backoff_floor: Duration::from_millis(20),
    backoff_cap: Duration::from_millis(200),
    ha_backoff_cap: Duration::from_millis(200),
};

/// Polls `check` until it yields `Some`, returning that at once; `None` once `limit` has passed.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it yields `Some` and returns it; fails the test with `what` after `limit`.
pub async fn eventually_some<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(limit, check).await.unwrap_or_else(|| panic!("timed out after {limit:?} waiting for: {what}"))
}

/// Polls `check` until it is true, returning at once; fails the test with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, limit, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// [`poll`] for blocking code (the built binary's helpers, which run on plain threads).
pub fn poll_blocking<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`eventually_some`] for blocking code.
pub fn eventually_blocking<T>(what: &str, limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll_blocking(limit, check).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for: {what}"))
}

/// A UDP socket standing in for Max/MSP.
pub struct OscReceiver {
    pub socket: UdpSocket,
}

impl OscReceiver {
    pub async fn bind() -> OscReceiver {
        OscReceiver { socket: UdpSocket::bind("127.0.0.1:0").await.expect("bind udp") }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    /// The next OSC message, or a test failure after [`ARRIVAL`].
    pub async fn recv(&self) -> OscMessage {
        self.try_recv(ARRIVAL).await.expect("an OSC datagram should have arrived")
    }

    pub async fn try_recv(&self, wait: Duration) -> Option<OscMessage> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await.ok()?.expect("recv");
        let (_, packet) = rosc::decoder::decode_udp(&buf[..n]).expect("a valid OSC packet");
        match packet {
            OscPacket::Message(m) => Some(m),
            OscPacket::Bundle(b) => panic!("unexpected bundle {b:?}"),
        }
    }

    /// Every message the bot has sent here so far, without waiting for a quiet spell: this socket
    /// sends itself a marker and reads up to it. The bot sends OSC before a command returns (chat,
    /// HTTP writes, start-up replay), so after those everything is already here; for output caused
    /// by something that happens elsewhere (Redis, Twitch), first await that it happened.
    pub async fn drain(&self) -> Vec<OscMessage> {
        static MARKERS: AtomicU64 = AtomicU64::new(0);
        let marker = format!("/test/marker/{}", MARKERS.fetch_add(1, Ordering::Relaxed));
        let packet = rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: marker.clone(), args: vec![] }))
            .expect("encode the marker");
        // Sent at once, before any await: nothing the caller did before can come after it.
        if self.socket.try_send_to(&packet, self.addr()).is_err() {
            self.socket.send_to(&packet, self.addr()).await.expect("send the marker");
        }
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            if m.addr == marker {
                return out;
            }
            out.push(m);
        }
    }

    /// Skips messages until one with `addr` arrives (fails after [`ARRIVAL`] per message).
    pub async fn recv_addr(&self, addr: &str) -> OscMessage {
        loop {
            let m = self.recv().await;
            if m.addr == addr {
                return m;
            }
        }
    }
}

/// The `/cv` argument list as the Max patches read it.
pub fn cv(route: &str, voltage: f32, module: &str, instance: i32, parameter: &str, value: i32) -> OscMessage {
    OscMessage {
        addr: "/cv".into(),
        args: vec![
            OscType::String(route.into()),
            OscType::Float(voltage),
            OscType::String(module.into()),
            OscType::Int(instance),
            OscType::String(parameter.into()),
            OscType::Int(value),
        ],
    }
}

pub fn routing(args: &[&str]) -> OscMessage {
    OscMessage { addr: "/routing".into(), args: args.iter().map(|a| OscType::String((*a).into())).collect() }
}

/// The real bot, started in-process on free ports.
pub struct TestApp {
    pub http_addr: SocketAddr,
    pub osc: OscReceiver,
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Starts with extra environment pairs; `{dir}` in a value becomes the app's temp directory.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(dir, vars).await
    }

    pub async fn spawn_in(dir: tempfile::TempDir, vars: &[(&str, &str)]) -> TestApp {
        Self::spawn_full(dir, vars, Extras::default()).await
    }

    pub async fn spawn_full(dir: tempfile::TempDir, vars: &[(&str, &str)], extras: Extras) -> TestApp {
        Self::spawn_timed(dir, vars, extras, FAST_REDIS).await
    }

    /// Like [`TestApp::spawn_full`] with the Redis link's `timing` (the others get [`FAST_REDIS`]).
    pub async fn spawn_timed(
        dir: tempfile::TempDir,
        vars: &[(&str, &str)],
        extras: Extras,
        timing: RedisTiming,
    ) -> TestApp {
        Self::try_spawn_timed(dir, vars, extras, timing).await.expect("start")
    }

    /// Like [`TestApp::spawn_timed`], with start-up's error instead of a test failure.
    pub async fn try_spawn_timed(
        dir: tempfile::TempDir,
        vars: &[(&str, &str)],
        extras: Extras,
        timing: RedisTiming,
    ) -> anyhow::Result<TestApp> {
        let osc = OscReceiver::bind().await;
        let base = dir.path().display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("OSC_TARGETS".into(), osc.addr().to_string()),
            ("ROUTING_FILE".into(), format!("{base}/routing_table.json")),
            ("CHAT_STDIN".into(), "off".into()),
            // Never the shared Redis on 6379: tests that want Redis start their own and pass REDIS_URL.
            ("ENABLE_REDIS_EVENTS".into(), "false".into()),
            // No `/cvbot/heartbeat` unless a test asks for one: it would land among the messages
            // a test awaits, at whatever moment its timer fires.
            ("OSC_HEARTBEAT_MS".into(), "0".into()),
        ];
        for (k, v) in vars {
            env.retain(|(name, _)| name != k);
            env.push(((*k).into(), v.replace("{dir}", &base).replace("{osc}", &osc.addr().to_string())));
        }
        let mut config = Config::from_vars(env).expect("test config is valid");
        config.redis_timing = timing;
        let listeners = Listeners::bind(&config).expect("bind");
        let shutdown = CancellationToken::new();
        let running = cvbot::start(config, listeners, extras, shutdown.clone()).await?;
        Ok(TestApp {
            http_addr: running.http_addr,
            osc,
            running: Some(running),
            dir,
            shutdown,
            http: reqwest::Client::new(),
        })
    }

    pub fn routing_file(&self) -> PathBuf {
        self.dir.path().join("routing_table.json")
    }

    /// A chat line from a viewer.
    pub fn viewer(&self, user: &str, line: &str) -> Outcome {
        self.say(&Sender::viewer(user), line)
    }

    /// A chat line from the terminal operator (admin).
    pub fn op(&self, line: &str) -> Outcome {
        self.say(&Sender::operator("operator"), line)
    }

    pub fn say(&self, sender: &Sender, line: &str) -> Outcome {
        let running = self.running.as_ref().expect("running");
        running.intake.submit(sender, line)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}{path}", self.http_addr);
        let response = self.http.get(&url).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("json")
    }

    pub async fn state(&self) -> serde_json::Value {
        self.get_json("/api/state").await
    }

    pub async fn stat(&self, name: &str) -> u64 {
        self.get_json("/api/stats").await[name].as_u64().unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Stops the app and waits for it, returning its temp directory (to restart over the same files).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await.expect("clean shutdown");
        }
        self.dir
    }
}

/// The admin token the HTTP tests configure.
pub const TOKEN: &str = "test-admin-token-0123456789";

impl TestApp {
    /// Started with `ADMIN_TOKEN` set to [`TOKEN`] (and no cooldown, so tests can write quickly).
    pub async fn spawn_admin() -> TestApp {
        Self::spawn_with(&[("ADMIN_TOKEN", TOKEN), ("RATE_LIMIT_MS", "0")]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// Like [`TestApp::get_json`], with the admin token (for `/api/events/history`).
    pub async fn get_json_as_admin(&self, path: &str) -> serde_json::Value {
        let response = self.http.get(self.url(path)).bearer_auth(TOKEN).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("json")
    }
}

/// Starts the bot local-only with `routing_file` (what start-up makes of a routing file).
pub async fn start_with_routing_file(
    routing_file: &std::path::Path,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let config = Config::from_vars([
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("ENABLE_REDIS_EVENTS", "false"),
        ("CHAT_STDIN", "off"),
        ("ROUTING_FILE", routing_file.to_str().expect("utf8")),
    ])
    .expect("config");
    let listeners = Listeners::bind(&config).expect("bind");
    cvbot::start(config, listeners, Extras::default(), shutdown).await
}
