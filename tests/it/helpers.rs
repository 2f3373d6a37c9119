//! Test helpers: start the real bot on free ports with its own temp directory, send chat lines,
//! receive and decode OSC datagrams on a real UDP socket, read HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cvbot::coord::Outcome;
use cvbot::gate::Sender;
use cvbot::{Config, Extras, Listeners, Running};
use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a datagram that must arrive before it fails.
pub const ARRIVAL: Duration = Duration::from_secs(3);
/// How long a test listens to be sure nothing is sent (only used where silence is the point).
pub const SILENCE: Duration = Duration::from_millis(300);

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

    /// Messages until the socket is quiet for [`SILENCE`].
    pub async fn drain(&self) -> Vec<OscMessage> {
        let mut out = Vec::new();
        while let Some(m) = self.try_recv(SILENCE).await {
            out.push(m);
        }
        out
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
        let osc = OscReceiver::bind().await;
        let base = dir.path().display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("OSC_TARGETS".into(), osc.addr().to_string()),
            ("ROUTING_FILE".into(), format!("{base}/routing_table.json")),
            ("CHAT_STDIN".into(), "off".into()),
            // Never the shared Redis on 6379: tests that want Redis start their own and pass REDIS_URL.
            ("ENABLE_REDIS_EVENTS".into(), "false".into()),
        ];
        for (k, v) in vars {
            env.retain(|(name, _)| name != k);
            env.push(((*k).into(), v.replace("{dir}", &base).replace("{osc}", &osc.addr().to_string())));
        }
        let config = Config::from_vars(env).expect("test config is valid");
        let listeners = Listeners::bind(&config).expect("bind");
        let shutdown = CancellationToken::new();
        let running = cvbot::start(config, listeners, extras, shutdown.clone()).await.expect("start");
        TestApp {
            http_addr: running.http_addr,
            osc,
            running: Some(running),
            dir,
            shutdown,
            http: reqwest::Client::new(),
        }
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
