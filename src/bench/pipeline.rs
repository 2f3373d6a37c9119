//! The real pipeline, in-process: chat line accepted on instance A → OSC datagram from A (local) or
//! from B through Redis (cross-instance), matched by output and value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscPacket, OscType};
use tokio_util::sync::CancellationToken;

use super::Pacer;
use super::measure::Samples;
use crate::catalog::Catalog;
use crate::gate::Sender;
use crate::{Config, Extras, Listeners, Running};

/// An in-process instance for the bench.
#[derive(Debug)]
pub struct BenchBot {
    pub running: Running,
    shutdown: CancellationToken,
    _dir: PathGuard,
}

#[derive(Debug)]
struct PathGuard(std::path::PathBuf);
impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl BenchBot {
    pub async fn start(
        id: &str,
        redis_url: Option<&str>,
        osc_target: std::net::SocketAddr,
    ) -> anyhow::Result<BenchBot> {
        let dir = std::env::temp_dir().join(format!("cvbot-bench-{id}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir)?;
        let vars = vec![
            ("INSTANCE_ID", id.to_owned()),
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("OSC_TARGETS", osc_target.to_string()),
            ("ROUTING_FILE", dir.join("routing_table.json").display().to_string()),
            ("CHAT_STDIN", "off".to_owned()),
            ("ENABLE_REDIS_EVENTS", redis_url.is_some().to_string()),
            ("REDIS_URL", redis_url.unwrap_or("redis://127.0.0.1:1").to_owned()),
            ("RATE_LIMIT_MS", "0".to_owned()),
            ("GLOBAL_RATE_LIMIT", "0".to_owned()),
        ];
        let config = Config::from_vars(vars)?;
        let listeners = Listeners::bind(&config)?;
        let shutdown = CancellationToken::new();
        let running = crate::start(config, listeners, Extras::default(), shutdown.clone()).await?;
        Ok(BenchBot { running, shutdown, _dir: PathGuard(dir) })
    }

    pub async fn say(&self, line: &str) {
        self.running.intake.submit(Sender::operator("bench"), line).await;
    }

    /// Waits until this instance's Redis link reports connected.
    pub async fn connected(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let json = super::child::http_get(self.running.http_addr, "/api/state")
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            if json.is_some_and(|v| v["redis"] == "connected") {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "instance did not connect to Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.running.wait().await;
    }
}

/// `k` distinct routable variables and the outputs they are routed to.
pub fn routes(catalog: &Catalog, k: usize) -> Vec<(String, String)> {
    let outputs = catalog.outputs();
    let mut variables = Vec::new();
    for (module, (_, _, parameters)) in catalog.modules() {
        for p in parameters {
            variables.push(format!("{module}#1.{p}"));
        }
    }
    outputs.iter().map(ToString::to_string).zip(variables).take(k).collect()
}

/// Sends `n` commands on `sender` at `rate`, cycling over the routes and values, and measures each
/// until its `/cv` arrives on `receiver`'s socket.
pub async fn chat_to_osc(
    sender: &BenchBot,
    routes: &[(String, String)],
    n: usize,
    rate: u32,
    receiver: tokio::net::UdpSocket,
) -> anyhow::Result<(Samples, tokio::net::UdpSocket)> {
    let index: HashMap<String, usize> = routes.iter().enumerate().map(|(i, (o, _))| (o.clone(), i)).collect();
    let sent: Arc<Mutex<HashMap<(usize, u8), Instant>>> = Arc::default();
    let pending = sent.clone();
    let reader = tokio::spawn(async move {
        let mut samples = Samples::with_capacity(n);
        let mut buf = vec![0u8; 2048];
        while samples.len() < n {
            let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(3), receiver.recv(&mut buf)).await else {
                break;
            };
            let got = Instant::now();
            let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) else { continue };
            if m.addr != "/cv" {
                continue;
            }
            let (Some(OscType::String(output)), Some(OscType::Int(value))) = (m.args.first(), m.args.get(5)) else {
                continue;
            };
            let (Some(&i), Ok(value)) = (index.get(output), u8::try_from(*value)) else { continue };
            let started = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(i, value));
            if let Some(started) = started {
                samples.push(got.duration_since(started));
            }
        }
        (samples, receiver)
    });
    let mut pacer = Pacer::new(rate);
    for seq in 0..n {
        pacer.wait().await;
        let i = seq % routes.len();
        #[allow(clippy::cast_possible_truncation)] // Modulo 128 fits a u8.
        let value = ((seq / routes.len()) % 128) as u8;
        let line = format!("{}: {value}", routes[i].1);
        sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((i, value), Instant::now());
        sender.say(&line).await;
    }
    Ok(reader.await?)
}

/// Routes every pair on `bot` and waits until `others` have them too (through Redis).
pub async fn install_routes(bot: &BenchBot, others: &[&BenchBot], routes: &[(String, String)]) -> anyhow::Result<()> {
    for (output, variable) in routes {
        bot.say(&format!("!admin {output} → {variable}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for other in others {
        loop {
            let count = super::child::http_get(other.running.http_addr, "/api/state")
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| v["routes"].as_object().map(serde_json::Map::len))
                .unwrap_or(0);
            if count >= routes.len() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "routes did not reach every instance");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Reads and discards whatever is still queued on `socket` (late datagrams of an earlier phase).
pub async fn drain(socket: &tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {}
}
