//! The overlay fan-out: many real SSE clients on a child instance, event → client latency, and the
//! child's memory with them connected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cvbot::state::Hlc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Pacer;
use super::measure::Samples;

/// When each (variable index, value) was published.
pub type SentTimes = Arc<Mutex<HashMap<(usize, u8), Instant>>>;

/// Connected clients and what they measured.
pub struct Clients {
    pub connected: Arc<AtomicUsize>,
    pub updates: Arc<AtomicUsize>,
    samples: Arc<Mutex<Samples>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("connected", &self.connected).finish_non_exhaustive()
    }
}

impl Clients {
    /// Opens `n` `GET /events` streams to `addr`; each records, for every update of a measured
    /// variable, how long after its publication it arrived.
    pub async fn connect(addr: SocketAddr, n: usize, variables: Arc<Vec<String>>, sent: SentTimes) -> Clients {
        let clients = Clients {
            connected: Arc::default(),
            updates: Arc::default(),
            samples: Arc::new(Mutex::new(Samples::default())),
            stop: CancellationToken::new(),
        };
        for _ in 0..n {
            let (connected, updates, samples, stop) =
                (clients.connected.clone(), clients.updates.clone(), clients.samples.clone(), clients.stop.clone());
            let (variables, sent) = (variables.clone(), sent.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = follow(addr, connected, updates, samples, variables, sent) => {}
                }
            });
            // Pace connection set-up a little so the accept queue never overflows.
            tokio::task::yield_now().await;
        }
        clients
    }

    pub async fn wait_connected(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while self.connected.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.connected.load(Ordering::Relaxed)
    }

    pub fn take_samples(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn follow(
    addr: SocketAddr,
    connected: Arc<AtomicUsize>,
    updates: Arc<AtomicUsize>,
    samples: Arc<Mutex<Samples>>,
    variables: Arc<Vec<String>>,
    sent: SentTimes,
) {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return };
    let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = BufReader::new(stream).lines();
    let mut counted = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let got = Instant::now();
        if !counted && line.starts_with("event:") && line.contains("snapshot") {
            connected.fetch_add(1, Ordering::Relaxed);
            counted = true;
            continue;
        }
        let Some(data) = line.strip_prefix("data:") else { continue };
        if !data.contains("\"type\":\"parameter\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
        updates.fetch_add(1, Ordering::Relaxed);
        let (Some(name), Some(value)) = (v["variable"].as_str(), v["parameter"]["value"].as_u64()) else { continue };
        let (Some(i), Ok(value)) = (variables.iter().position(|x| x == name), u8::try_from(value)) else { continue };
        let started = sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(i, value)).copied();
        if let Some(started) = started {
            samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(got.duration_since(started));
        }
    }
}

/// Publishes `n` parameter events at `rate` straight into Redis for the child to apply; records
/// when each was sent.
pub async fn publish_events(
    url: &str,
    variables: &[String],
    catalog: &cvbot::catalog::Catalog,
    n: usize,
    rate: u32,
    sent: &SentTimes,
) -> anyhow::Result<()> {
    let mut conn = cvbot_testbed::redis_process::connect(url).await?;
    let parsed: Vec<_> = variables.iter().filter_map(|v| catalog.parse_variable(v)).collect();
    let base = Hlc::from_wall_ms(cvbot::clock::wall_ms_now() + 1000);
    let mut pacer = Pacer::new(rate);
    for i in 0..n {
        pacer.wait().await;
        let k = i % parsed.len();
        #[allow(clippy::cast_possible_truncation)] // Modulo 128 fits a u8.
        let value = ((i / parsed.len()) % 128) as u8;
        let payload = super::pipeline::raw_set_event(&parsed[k], value, base + i as u64, "bench-sse", i as u64 + 1);
        sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((k, value), Instant::now());
        let _: u64 = redis::cmd("PUBLISH").arg("cv:parameter:update").arg(payload).query_async(&mut conn).await?;
    }
    Ok(())
}
