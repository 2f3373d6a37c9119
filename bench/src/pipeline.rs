//! The real pipeline, in-process: chat line accepted on instance A → OSC datagram from A (local) or
//! from B through Redis (cross-instance), matched by output and value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cvbot::catalog::Catalog;
use cvbot::gate::Sender;
use cvbot::{Config, Extras, Listeners};
use rosc::{OscPacket, OscType};
use tokio_util::sync::CancellationToken;

use super::measure::Samples;
use super::{Pacer, Side};

/// An in-process instance for the bench, on its own OS thread and runtime (as a separate process
/// would be), so its tasks never share worker threads with the measuring side.
#[derive(Debug)]
pub struct BenchBot {
    intake: cvbot::chat::Intake,
    /// The instance's own runtime: chat is generated there, as a chat source inside the bot would be.
    side: Side,
    /// The running instance, until shutdown.
    task: tokio::task::JoinHandle<()>,
    pub http_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    /// The instance's `INSTANCE_ID`.
    pub id: String,
    _dir: PathGuard,
}

#[derive(Debug)]
struct PathGuard(std::path::PathBuf);
impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a [`BenchBot`] is set up beyond its name and OSC target.
#[derive(Debug, Clone, Default)]
pub struct BotOptions {
    /// The Redis to join (`REDIS_URL`); `None`: an instance without Redis.
    pub redis_url: Option<String>,
    /// More configuration variables, applied after the bench's own (so they override them).
    pub vars: Vec<(String, String)>,
}

impl BotOptions {
    /// An instance on the Redis at `url`, otherwise as configured by default.
    pub fn redis(url: &str) -> BotOptions {
        BotOptions { redis_url: Some(url.to_owned()), ..BotOptions::default() }
    }
}

impl BenchBot {
    pub async fn start(id: &str, osc_target: std::net::SocketAddr, options: &BotOptions) -> anyhow::Result<BenchBot> {
        let dir = std::env::temp_dir().join(format!("cvbot-bench-{id}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir)?;
        let redis_url = options.redis_url.as_deref();
        let mut vars = vec![
            ("INSTANCE_ID".to_owned(), id.to_owned()),
            ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("OSC_TARGETS".to_owned(), osc_target.to_string()),
            ("ROUTING_FILE".to_owned(), dir.join("routing_table.json").display().to_string()),
            ("CHAT_STDIN".to_owned(), "off".to_owned()),
            ("ENABLE_REDIS_EVENTS".to_owned(), redis_url.is_some().to_string()),
            ("REDIS_URL".to_owned(), redis_url.unwrap_or("redis://127.0.0.1:1").to_owned()),
            ("RATE_LIMIT_MS".to_owned(), "0".to_owned()),
            ("GLOBAL_RATE_LIMIT".to_owned(), "0".to_owned()),
            // No `/cvbot/heartbeat`: the receivers end a phase after seconds of quiet, which a
            // beat every second would never give them once a datagram they wait for is coalesced.
            ("OSC_HEARTBEAT_MS".to_owned(), "0".to_owned()),
        ];
        // Later pairs win (the configuration reads them into a map in order).
        vars.extend(options.vars.iter().cloned());
        let config = Config::from_vars(vars)?;
        let listeners = Listeners::bind(&config)?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let side = Side::start(&format!("bench-{id}"))?;
        let extras = Extras::default();
        let task = side.spawn(async move {
            match cvbot::start(config, listeners, extras, token).await {
                Ok(running) => {
                    let _ = ready_tx.send(Ok((running.intake.clone(), running.http_addr)));
                    let _ = running.wait().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        let (intake, http_addr) = ready_rx.await??;
        Ok(BenchBot { intake, side, task, http_addr, shutdown, id: id.to_owned(), _dir: PathGuard(dir) })
    }

    pub fn say(&self, line: &str) {
        self.intake.submit(&Sender::operator("bench"), line);
    }

    /// Waits until this instance's Redis link reports connected.
    pub async fn connected(&self) -> anyhow::Result<()> {
        let within = Duration::from_secs(15);
        let deadline = Instant::now() + within;
        loop {
            let json = super::child::http_get(self.http_addr, "/api/state")
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            let status = json.map(|v| v["redis"].clone());
            if status.as_ref().is_some_and(|s| s == "connected") {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "instance {} did not connect to Redis within {within:?} (its /api/state says redis: {})",
                self.id,
                status.map_or_else(|| "(no answer)".to_owned(), |s| s.to_string())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.side.stop().await;
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

/// When each (route index, value) was sent.
pub type SentTimes = Arc<Mutex<HashMap<(usize, u8), Instant>>>;

/// The route index and value of the `seq`-th measured command over `routes` routes: every route in
/// turn, then the next value, so no (route, value) pair repeats within 128 rounds.
fn nth_command(seq: usize, routes: usize) -> (usize, u8) {
    #[allow(clippy::cast_possible_truncation)] // Modulo 128 fits a u8.
    let value = ((seq / routes) % 128) as u8;
    (seq % routes, value)
}

/// Records when the command for (route `i`, `value`) was sent.
fn mark_sent(sent: &SentTimes, i: usize, value: u8) {
    sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((i, value), Instant::now());
}

/// Receives `/cv` datagrams until `n` are matched to a send time (or no routed `/cv` has come for
/// 3 s: other datagrams, a heartbeat, never keep it waiting); returns the latencies and the socket
/// for the next phase.
async fn match_cv(
    receiver: tokio::net::UdpSocket,
    index: HashMap<String, usize>,
    n: usize,
    sent: SentTimes,
) -> (Samples, tokio::net::UdpSocket) {
    let mut samples = Samples::with_capacity(n);
    let mut buf = vec![0u8; 2048];
    let mut quiet_until = Instant::now() + Duration::from_secs(3);
    while samples.len() < n {
        let wait = quiet_until.saturating_duration_since(Instant::now());
        let Ok(Ok(len)) = tokio::time::timeout(wait, receiver.recv(&mut buf)).await else { break };
        let got = Instant::now();
        let Some((i, value)) = routed_cv(&buf[..len], &index) else { continue };
        quiet_until = got + Duration::from_secs(3);
        let started = sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(i, value));
        if let Some(started) = started {
            samples.push(got.duration_since(started));
        }
    }
    (samples, receiver)
}

/// A `/cv` datagram's route (its position in the index) and value; `None` for anything else.
fn routed_cv(datagram: &[u8], index: &HashMap<String, usize>) -> Option<(usize, u8)> {
    let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(datagram) else { return None };
    if m.addr != "/cv" {
        return None;
    }
    let (Some(OscType::String(output)), Some(OscType::Int(value))) = (m.args.first(), m.args.get(5)) else {
        return None;
    };
    Some((*index.get(output)?, u8::try_from(*value).ok()?))
}

/// Output name → its position in `routes`.
fn route_index(routes: &[(String, String)]) -> HashMap<String, usize> {
    routes.iter().enumerate().map(|(i, (o, _))| (o.clone(), i)).collect()
}

/// The wire payload of a parameter event from a made-up peer, as another instance would publish it.
pub fn raw_set_event(variable: &cvbot::catalog::Variable, value: u8, hlc: u64, instance: &str, seq: u64) -> String {
    let event = cvbot::state::Event {
        stamp: cvbot::state::Stamp { hlc, instance: instance.into() },
        wall_ms: cvbot::clock::wall_ms_now(),
        user: "bench".into(),
        kind: cvbot::state::EventKind::Set { variable: variable.clone(), value, ramp: None },
    };
    cvbot::redis_link::wire::encode(&event, seq, None).payload
}

/// Sends `n` commands on `sender` at `rate`, cycling over the routes and values, and measures each
/// until its `/cv` arrives on `receiver`'s socket. The lines are generated by a task on the sending
/// instance's own runtime, as Twitch, the terminal or HTTP deliver them: a line handed in from a
/// foreign thread would add a cross-thread wake-up no real chat source pays.
pub async fn chat_to_osc(
    sender: &BenchBot,
    routes: &[(String, String)],
    n: usize,
    rate: u32,
    receiver: tokio::net::UdpSocket,
) -> anyhow::Result<(Samples, tokio::net::UdpSocket)> {
    let sent = SentTimes::default();
    let reader = tokio::spawn(match_cv(receiver, route_index(routes), n, sent.clone()));
    let (intake, variables) = (sender.intake.clone(), routes.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let chat = sender.side.spawn(async move {
        let bench = Sender::operator("bench");
        let mut pacer = Pacer::new(rate);
        for seq in 0..n {
            pacer.wait().await;
            let (i, value) = nth_command(seq, variables.len());
            let line = format!("{}: {value}", variables[i]);
            mark_sent(&sent, i, value);
            intake.submit(&bench, &line);
        }
    });
    chat.await?;
    Ok(reader.await?)
}

/// Routes every pair on `bot` and waits until `others` have them too (through Redis).
pub async fn install_routes(bot: &BenchBot, others: &[&BenchBot], routes: &[(String, String)]) -> anyhow::Result<()> {
    for (output, variable) in routes {
        bot.say(&format!("!admin {output} → {variable}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for other in others {
        loop {
            let count = super::child::http_get(other.http_addr, "/api/state")
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

/// The receiving half alone: an event published straight into Redis (as another instance would) →
/// `/cv` from `receiver`'s instance. With the cross-instance figure it splits the overhead between
/// the sending and the receiving instance.
pub async fn remote_to_osc(
    url: &str,
    catalog: &Catalog,
    routes: &[(String, String)],
    n: usize,
    rate: u32,
    receiver: tokio::net::UdpSocket,
) -> anyhow::Result<(Samples, tokio::net::UdpSocket)> {
    let variables: Vec<_> = routes.iter().filter_map(|(_, v)| catalog.parse_variable(v)).collect();
    let sent = SentTimes::default();
    let reader = tokio::spawn(match_cv(receiver, route_index(routes), n, sent.clone()));
    let mut conn = cvbot_testbed::redis_process::connect(url).await?;
    // Ahead of every earlier phase's stamps, so each event wins its register, yet within the
    // instance's clock-skew bound (MAX_CLOCK_SKEW_MS, 10 s by default), which refuses far-future stamps.
    let base = cvbot::state::Hlc::from_wall_ms(cvbot::clock::wall_ms_now() + 5_000);
    let mut pacer = Pacer::new(rate);
    for seq in 0..n {
        pacer.wait().await;
        let (i, value) = nth_command(seq, variables.len());
        let payload = raw_set_event(&variables[i], value, base + seq as u64, "bench-raw", seq as u64 + 1);
        mark_sent(&sent, i, value);
        let _: u64 = redis::cmd("PUBLISH").arg("cv:parameter:update").arg(payload).query_async(&mut conn).await?;
    }
    Ok(reader.await?)
}

/// The first command to get through after a fault, as [`first_through`] measured it.
#[derive(Debug, Clone, Copy)]
pub struct FirstThrough {
    /// From the fault to the arrival of that command's `/cv`.
    pub arrived: Duration,
    /// From the fault to when that command was typed.
    pub typed: Duration,
    /// Commands typed until then.
    pub typed_count: usize,
}

/// After a fault at `since`: types a new command on `sender` every `every` (command `first_seq`
/// onwards, so no (route, value) pair of an earlier phase comes back) until the first `/cv` of one
/// of them reaches `receiver`, and says when; fails after `within`.
pub async fn first_through(
    sender: &BenchBot,
    routes: &[(String, String)],
    first_seq: usize,
    every: Duration,
    within: Duration,
    since: Instant,
    receiver: tokio::net::UdpSocket,
) -> anyhow::Result<(FirstThrough, tokio::net::UdpSocket)> {
    let sent = SentTimes::default();
    let typed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (intake, variables) = (sender.intake.clone(), routes.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let chat = sender.side.spawn({
        let (sent, typed, stop) = (sent.clone(), typed.clone(), stop.clone());
        async move {
            let bench = Sender::operator("bench");
            let mut ticks = tokio::time::interval(every);
            for seq in first_seq.. {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let (i, value) = nth_command(seq, variables.len());
                mark_sent(&sent, i, value);
                intake.submit(&bench, &format!("{}: {value}", variables[i]));
                typed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let index = route_index(routes);
    let deadline = since + within;
    let mut buf = vec![0u8; 2048];
    let found = loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(len)) = tokio::time::timeout(wait, receiver.recv(&mut buf)).await else { break None };
        let got = Instant::now();
        let Some((i, value)) = routed_cv(&buf[..len], &index) else { continue };
        let typed_at = sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(i, value)).copied();
        if let Some(typed_at) = typed_at {
            break Some(FirstThrough {
                arrived: got.duration_since(since),
                typed: typed_at.saturating_duration_since(since),
                typed_count: typed.load(std::sync::atomic::Ordering::Relaxed),
            });
        }
    };
    stop.cancel();
    let _ = chat.await;
    let found = found.with_context(|| {
        format!(
            "none of the {} commands typed on {} after the fault reached the receiver within {within:?}",
            typed.load(std::sync::atomic::Ordering::Relaxed),
            sender.id
        )
    })?;
    Ok((found, receiver))
}
