//! The Redis link: keeps instances in lock-step through Redis pub/sub, persists registers in the
//! state hash, and survives every Redis fault without stalling the show.
//!
//! The only module that knows Redis, channel and key names and the wire format ([`wire`]). It never
//! touches State: local events arrive from the coordinator's outbox, remote events go to
//! [`CoordHandle::apply_remote`]. Recovery protocol (see ARCHITECTURE.md): subscribe, load the state
//! hash and merge, flush the outbox, then probe our own channel to prove the subscription hears.

pub mod history;
pub mod presence;
pub mod raw;
pub mod tls;
pub mod wire;

mod counters;
mod publishing;
mod reader;
mod side;

pub use counters::{ImpostorSeen, LinkCounters};
use publishing::Prepared;
use reader::{Control, Reader};
use side::{DeadLetter, SideFault, SideFaults, SideWrite};
use tls::TlsMaterial;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::config::RedisTopology;
use crate::coord::{CoordHandle, wall_ms_now};
use crate::state::Event;
use crate::stats::{LinkStatus, LogThrottle, Stats, Tally};
use presence::{Claim, ClaimError, ClaimOutcome, Claims, ClusterPresence, DuplicateInstance, OwnEchoes};
use raw::{PubSubMessage, RawConnection, RawError, RawSubscriber, ServerError};
use wire::{Admission, DropReason, Incoming, Origin, Signer};

/// The atomic publish step: writes the register only if newer, appends to the history stream,
/// publishes (plus the audit copy). The bench also runs it bare, as a floor.
pub(crate) const PUBLISH_SCRIPT: &str = include_str!("publish.lua");

/// Control messages (probes, commands, presence, poison) buffered between the reader and the link.
/// When full they are dropped and counted (`redis_subscriber_overflow`); a lost probe only means an
/// early reconnect.
pub const CONTROL_QUEUE: usize = 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_FLOOR: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Publish retries before the event goes back to the outbox and the connection is rebuilt.
const PUBLISH_RETRIES: [Duration; 3] =
    [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400)];
const DLQ_MAXLEN: u64 = 10_000;
/// Dead letters waiting for a failed `XADD` to be retried on the next heartbeat. When full, the oldest
/// is forgotten and counted (`redis_dlq_lost`); it was counted and logged by reason already.
const DLQ_BACKLOG: usize = 64;
/// Events per publish pipeline: large enough to keep up with 10,000 commands/s, small enough that a
/// failed batch is retried quickly.
const PUBLISH_BATCH: usize = 256;
/// Most messages the reader takes from the subscription in one go.
const READ_BATCH: usize = 512;
/// Deletes a state-hash field only if it still holds the value we refused, so a newer honest write
/// that landed meanwhile is never lost.
const DELETE_IF_SAME: &str =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/// Settings from the validated configuration.
#[derive(Clone)]
pub struct LinkSettings {
    pub url: String,
    pub key_prefix: String,
    pub publish: bool,
    pub subscribe: bool,
    pub history_ttl: Duration,
    pub signing_key: Option<Vec<u8>>,
    pub outbox_capacity: usize,
    /// How often we publish a probe to our own channel.
    pub probe_interval: Duration,
    /// A probe not heard back within this is a deaf subscription.
    pub probe_deadline: Duration,
    /// Presence refresh; the claim key lives three heartbeats.
    pub heartbeat: Duration,
    /// Remote stamps further ahead of our clock are refused (`MAX_CLOCK_SKEW_MS`).
    pub max_clock_skew: Duration,
    /// With a signing key, signed pub/sub events older than this are refused (`EVENT_MAX_AGE_MS`).
    pub event_max_age: Duration,
    /// One server at `url`, a Sentinel-managed master, or a Cluster (credentials and scheme from `url`).
    pub topology: RedisTopology,
    /// CA and client certificate for `rediss://`.
    pub tls: Arc<TlsMaterial>,
    /// Which client carries the hot path (publish and subscribe) on one server; the bench compares them.
    pub client: ClientKind,
}

/// The client on the hot path to one server (standalone, or the master Sentinel names). A Cluster
/// always goes through redis-rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientKind {
    /// The hand-written RESP2 connection (`raw`): socket I/O in the link's own task.
    #[default]
    Raw,
    /// redis-rs's multiplexed connection and async pub/sub.
    RedisRs,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("url", &crate::config::mask_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

/// Channel and key names. Keys share the `{cv}` hash tag so the publish script stays in one slot
/// on Redis Cluster.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    instance: String,
}

impl Names {
    pub fn new(prefix: &str, instance: &str) -> Names {
        Names { prefix: prefix.to_owned(), instance: instance.to_owned() }
    }
    pub fn channel(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }
    pub fn state(&self) -> String {
        format!("{}{{cv}}:state", self.prefix)
    }
    pub fn history(&self) -> String {
        format!("{}{{cv}}:history", self.prefix)
    }
    pub fn dlq(&self) -> String {
        format!("{}{{cv}}:dlq", self.prefix)
    }
    pub fn claim(&self) -> String {
        format!("{}{{cv}}:instance:{}", self.prefix, self.instance)
    }
    pub fn instances(&self) -> String {
        format!("{}{{cv}}:instances", self.prefix)
    }
    pub fn status_channel(&self) -> String {
        self.channel("cv:instance:status")
    }
    pub fn command_channel(&self) -> String {
        self.channel(&format!("cv:instance:{}:command", self.instance))
    }
    pub fn probe_channel(&self) -> String {
        self.channel(&format!("cv:instance:{}:probe", self.instance))
    }
    fn event_channels(&self) -> Vec<String> {
        [wire::PARAMETER_CHANNEL, wire::ROUTING_CHANNEL, wire::SYSTEM_CHANNEL, wire::ADMIN_CHANNEL]
            .iter()
            .map(|c| self.channel(c))
            .collect()
    }
}

/// Why a session with Redis ended.
enum SessionEnd {
    Shutdown,
    Broken(String),
    /// An older live process holds our `INSTANCE_ID`: this one must go.
    Duplicate(DuplicateInstance),
}

/// One live session: a command connection, a publishing connection owned by the link task (no
/// hand-off to a driver task on the way to Redis), and the subscription's bounded control queue.
struct Session {
    cmd: MultiplexedConnection,
    publisher: RawConnection,
    messages: mpsc::Receiver<Control>,
    reader: JoinHandle<()>,
    gap: Arc<AtomicBool>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The link task's state.
pub struct RedisLink {
    settings: LinkSettings,
    names: Names,
    instance: String,
    catalog: Arc<Catalog>,
    coord: CoordHandle,
    outbox: mpsc::Receiver<Event>,
    /// Local events not yet published, newest per register (so an outage never loses a user's
    /// latest action, and memory is bounded by the number of registers).
    pending: BTreeMap<String, Event>,
    status: watch::Sender<LinkStatus>,
    stats: Arc<Stats>,
    presence: Arc<ClusterPresence>,
    signer: Option<Signer>,
    script: redis::Script,
    seq: u64,
    claim: Claim,
    claims: Claims,
    claimed: bool,
    /// What we published, so the reader tells our echoes from an impostor's events.
    echoes: Arc<OwnEchoes>,
    /// Events sent by a plain `PUBLISH` while Redis refused writes, newest per register, waiting to
    /// be written into the state hash and history (only-if-newer) on a heartbeat.
    unpersisted: BTreeMap<String, Prepared>,
    dead_letters: VecDeque<DeadLetter>,
    faults: SideFaults,
    /// This session's subscription has been proven by a probe.
    verified: bool,
    log: Arc<LogThrottle>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("instance", &self.instance)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    #[allow(clippy::too_many_arguments)] // Each is a distinct edge of the link; a bundle struct would only rename them.
    pub fn new(
        settings: LinkSettings,
        instance: &str,
        catalog: Arc<Catalog>,
        coord: CoordHandle,
        outbox: mpsc::Receiver<Event>,
        status: watch::Sender<LinkStatus>,
        stats: Arc<Stats>,
        presence: Arc<ClusterPresence>,
    ) -> RedisLink {
        let claim = Claim {
            instance: instance.to_owned(),
            host: presence::host_name(),
            pid: std::process::id(),
            token: format!("{:016x}", fastrand::u64(..)),
            since_ms: wall_ms_now(),
            heartbeat_ms: 0,
        };
        RedisLink {
            names: Names::new(&settings.key_prefix, instance),
            signer: settings.signing_key.as_deref().map(Signer::new),
            settings,
            instance: instance.to_owned(),
            catalog,
            coord,
            outbox,
            pending: BTreeMap::new(),
            status,
            stats,
            presence,
            script: redis::Script::new(PUBLISH_SCRIPT),
            seq: 0,
            claim,
            claims: Claims::default(),
            claimed: false,
            echoes: Arc::default(),
            unpersisted: BTreeMap::new(),
            dead_letters: VecDeque::new(),
            faults: SideFaults::default(),
            verified: false,
            log: Arc::new(LogThrottle::per_minute()),
        }
    }

    /// Runs until `shutdown`: connects, serves, and reconnects forever with capped exponential
    /// backoff and jitter. Fails only when an older live process holds our `INSTANCE_ID`; then it
    /// neither releases the claim nor announces `offline`, both of which belong to that process.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut attempt: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let started = Instant::now();
            let end = match self.connect().await {
                Ok(mut session) => match self.claim_presence(&mut session).await {
                    Ok(()) => self.serve(&mut session, &shutdown).await,
                    Err(d) => SessionEnd::Duplicate(d),
                },
                Err(e) => SessionEnd::Broken(format!("cannot connect: {e}")),
            };
            self.verified = false;
            self.stats.redis.serving.store(false, Ordering::Relaxed);
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Duplicate(d) => return Err(d.into()),
                SessionEnd::Broken(reason) => {
                    self.stats.redis.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.degrade(&reason);
                }
            }
            // A session that lasted a while resets the backoff: this is a new outage.
            if started.elapsed() > BACKOFF_CAP * 2 {
                attempt = 0;
            }
            let delay = backoff(attempt);
            attempt = attempt.saturating_add(1);
            if self.wait_offline(delay, &shutdown).await {
                break;
            }
        }
        self.goodbye().await;
        Ok(())
    }

    fn degrade(&self, reason: &str) {
        self.stats.redis.set_reason(Some(reason));
        self.status.send_replace(LinkStatus::Degraded);
        if let Some(suppressed) = self.log.allow("degraded", Instant::now()) {
            warn!(reason, suppressed, "Redis link degraded: running local-only, retrying in the background");
        }
    }

    /// Waits out a backoff while still taking local events into the outbox; true on shutdown.
    async fn wait_offline(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return true,
                () = &mut sleep => return false,
                event = self.outbox.recv() => match event {
                    Some(e) => self.keep(e),
                    None => return true,
                },
            }
        }
    }

    /// Queues an unpublished local event, newest per register.
    fn keep(&mut self, event: Event) {
        if !self.settings.publish {
            self.stats.redis.unpublished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = wire::register_key(&event.kind);
        match self.pending.get(&key) {
            Some(old) if old.stamp >= event.stamp => {}
            Some(_) => {
                self.stats.redis.outbox_coalesced.fetch_add(1, Ordering::Relaxed);
                self.pending.insert(key, event);
            }
            None => {
                if self.pending.len() >= self.settings.outbox_capacity {
                    // Full: the oldest write goes, so the newest actions survive.
                    if let Some(oldest) =
                        self.pending.iter().min_by_key(|(_, e)| e.stamp.clone()).map(|(k, _)| k.clone())
                    {
                        self.pending.remove(&oldest);
                        self.stats.outbox_overflow.fetch_add(1, Ordering::Relaxed);
                        warn!("outbox full: the oldest unpublished event was dropped");
                    }
                }
                self.pending.insert(key, event);
            }
        }
        self.stats.redis.outbox_depth.store(self.pending.len() as u64, Ordering::Relaxed);
    }

    async fn connect(&mut self) -> anyhow::Result<Session> {
        if !matches!(*self.status.borrow(), LinkStatus::Degraded) {
            self.status.send_replace(LinkStatus::Connecting);
        }
        let client = redis::Client::open(self.settings.url.as_str())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let cmd = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config))
            .await??;
        let publisher = self.open_raw().await?;
        let mut channels = vec![self.names.probe_channel(), self.names.command_channel()];
        if self.settings.subscribe {
            channels.extend(self.names.event_channels());
            channels.push(self.names.status_channel());
        }
        let names: Vec<&[u8]> = channels.iter().map(String::as_bytes).collect();
        let subscriber = self.open_raw().await?.subscribe(&names).await?;
        let (control, messages) = mpsc::channel(CONTROL_QUEUE);
        let gap = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            coord: self.coord.clone(),
            catalog: self.catalog.clone(),
            signer: self.signer.clone(),
            instance: self.instance.clone(),
            prefix: self.settings.key_prefix.clone(),
            event_channels: self.names.event_channels(),
            stats: self.stats.clone(),
            gap: gap.clone(),
            last_seq: HashMap::new(),
            admission: self.admission(),
            peer_ahead: HashMap::new(),
            echoes: self.echoes.clone(),
            log: self.log.clone(),
            control,
        };
        let reader = tokio::spawn(reader.run(subscriber));
        let mut session = Session { cmd, publisher, messages, reader, gap };
        self.script.prepare_invoke().load_async(&mut session.cmd).await?;
        // Subscribed first, then the snapshot: anything published in between arrives twice at worst,
        // and applying twice is harmless.
        if self.settings.subscribe {
            self.resync(&mut session).await?;
        }
        debug!(channels = channels.len(), "Redis subscribed and state merged");
        Ok(session)
    }

    /// At the start of a session: claim our id (or learn that an older process holds it), then retry
    /// whatever side writes earlier sessions left failing. A claim Redis refuses (OOM) is no reason
    /// to stop serving: it is retried on the next heartbeat like any side write.
    async fn claim_presence(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        self.refresh_presence(session).await?;
        if !self.claimed {
            self.claimed = true;
            self.announce("online").await;
            info!(instance = %self.instance, "joined the cluster");
        }
        self.side_writes(session).await;
        Ok(())
    }

    fn admission(&self) -> Admission {
        Admission {
            max_skew_ms: u64::try_from(self.settings.max_clock_skew.as_millis()).unwrap_or(u64::MAX),
            max_age_ms: self
                .signer
                .is_some()
                .then(|| u64::try_from(self.settings.event_max_age.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    fn claim_ttl(&self) -> Duration {
        self.settings.heartbeat * 3
    }

    /// Loads every register from the state hash and merges it (LWW makes order irrelevant).
    async fn resync(&mut self, session: &mut Session) -> anyhow::Result<()> {
        // Bytes, not strings: one value that is not UTF-8 must cost that register, not the whole load.
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            redis::cmd("HGETALL").arg(self.names.state()).query_async(&mut session.cmd).await?;
        let mut merged = 0usize;
        let now = wall_ms_now();
        for (field, value) in &all {
            let text = String::from_utf8_lossy(value);
            let (reason, purge) = match self.merge_register(value, now) {
                Ok(true) => {
                    merged += 1;
                    continue;
                }
                Ok(false) => continue,
                Err(Refused::Stopped) => anyhow::bail!("coordinator stopped"),
                Err(Refused::Drop { reason, purge }) => (reason, purge),
            };
            let payload = text.split_once('|').map_or(text.as_ref(), |(_, p)| p);
            self.count_drop(reason, "state", payload, &mut session.cmd).await;
            if purge {
                // A register no instance can use would also block every honest write to it (the
                // publish script writes only if newer): the dead-letter stream keeps a copy, and it
                // is removed unless a newer write replaced it meanwhile.
                let removed: redis::RedisResult<u64> = redis::Script::new(DELETE_IF_SAME)
                    .key(self.names.state())
                    .arg(field.as_slice())
                    .arg(value.as_slice())
                    .invoke_async(&mut session.cmd)
                    .await;
                if let Ok(n) = removed {
                    self.stats.redis.state_purged.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        self.stats.redis.resyncs.fetch_add(1, Ordering::Relaxed);
        debug!(merged, "state hash merged");
        Ok(())
    }

    /// Decodes, admits and applies one state-hash value (`order_key|envelope`); true when applied.
    /// Garbage no instance could read (not UTF-8, no order key) and far-future stamps are to be
    /// purged; anything else refused (an unknown variable, say) may be another catalogue's, and is
    /// only dropped here.
    fn merge_register(&self, value: &[u8], now: u64) -> Result<bool, Refused> {
        let drop = |reason, purge| Refused::Drop { reason, purge };
        let text = std::str::from_utf8(value).map_err(|_| drop(DropReason::NotJson, true))?;
        let (order, payload) = text.split_once('|').ok_or(drop(DropReason::Malformed, true))?;
        let admission = self.admission();
        // The order key leads with the stamp's hybrid clock: a far-future one is refused before the
        // envelope is even read, whatever else is wrong with it.
        if let Some(hlc) = order.get(..20).and_then(|digits| digits.parse::<u64>().ok())
            && crate::state::Hlc::wall_ms(hlc) > now.saturating_add(admission.max_skew_ms)
        {
            return Err(drop(DropReason::ClockSkew, true));
        }
        match wire::decode(payload.as_bytes(), &self.catalog, self.signer.as_ref()) {
            Ok(Incoming::Event { event, .. }) => {
                wire::admit(&event, Origin::StateHash, now, admission)
                    .map_err(|reason| drop(reason, reason == DropReason::ClockSkew))?;
                // Our own earlier writes count too: a restarted instance picks them up here.
                if self.coord.apply_remote(&event) { Ok(true) } else { Err(Refused::Stopped) }
            }
            Ok(Incoming::Audit { .. }) => Ok(false),
            Err(reason) => Err(drop(reason, false)),
        }
    }

    /// Serves one session until it breaks or shutdown.
    async fn serve(&mut self, session: &mut Session, shutdown: &CancellationToken) -> SessionEnd {
        // Take whatever arrived while offline, then publish it all.
        while let Ok(e) = self.outbox.try_recv() {
            self.keep(e);
        }
        if let Err(reason) = self.flush(session).await {
            return SessionEnd::Broken(reason);
        }
        let mut probe_timer = tokio::time::interval(self.settings.probe_interval);
        probe_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        let mut probe: Option<(String, Instant)> = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                message = session.messages.recv() => match message {
                    Some(m) => {
                        if let Err(end) = self.on_control(m, session, &mut probe).await {
                            return end;
                        }
                    }
                    None => return SessionEnd::Broken("subscription closed by the server".into()),
                },
                event = self.outbox.recv() => match event {
                    Some(e) => {
                        if let Err(reason) = self.publish_now(session, e).await {
                            return SessionEnd::Broken(reason);
                        }
                    }
                    None => return SessionEnd::Shutdown,
                },
                _ = probe_timer.tick() => {
                    if let Err(reason) = self.send_probe(session, &mut probe).await {
                        return SessionEnd::Broken(reason);
                    }
                }
                _ = heartbeat.tick() => {
                    if let Err(twin) = self.heartbeat(session).await {
                        return SessionEnd::Duplicate(twin);
                    }
                }
            }
            if session.gap.swap(false, Ordering::Relaxed) {
                warn!("missed Redis messages; resynchronising from the state hash");
                if let Err(e) = self.resync(session).await {
                    return SessionEnd::Broken(format!("resync failed: {e}"));
                }
            }
        }
    }

    /// Checks the outstanding probe and sends the next one. A probe unheard past the deadline, or a
    /// publish nobody receives, means our subscription is deaf.
    async fn send_probe(&mut self, session: &mut Session, probe: &mut Option<(String, Instant)>) -> Result<(), String> {
        if let Some((_, sent)) = probe {
            if sent.elapsed() > self.settings.probe_deadline {
                self.stats.redis.probes_lost.fetch_add(1, Ordering::Relaxed);
                return Err(format!("deaf: probe not heard back within {:?}", self.settings.probe_deadline));
            }
            return Ok(());
        }
        let nonce = format!("{:016x}", fastrand::u64(..));
        let receivers: redis::RedisResult<u64> =
            redis::cmd("PUBLISH").arg(self.names.probe_channel()).arg(&nonce).query_async(&mut session.cmd).await;
        match receivers {
            Ok(0) => Err("deaf: our subscription is gone (probe reached no subscriber)".into()),
            Ok(_) => {
                *probe = Some((nonce, Instant::now()));
                Ok(())
            }
            Err(e) => Err(format!("probe publish failed: {e}")),
        }
    }

    /// Control traffic from the reader: probes, our command channel, presence, and poison to record.
    async fn on_control(
        &mut self,
        control: Control,
        session: &mut Session,
        probe: &mut Option<(String, Instant)>,
    ) -> Result<(), SessionEnd> {
        let message = match control {
            Control::Poison { reason, channel, payload } => {
                self.count_drop(reason, &channel, &payload, &mut session.cmd).await;
                return Ok(());
            }
            Control::Message(m) => m,
        };
        let channel = String::from_utf8_lossy(&message.channel);
        let payload = &message.payload[..];
        if channel == self.names.probe_channel() {
            if let Some((nonce, sent)) = probe.as_ref()
                && nonce.as_bytes() == payload
            {
                let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.redis.probe_rtt_us.store(rtt, Ordering::Relaxed);
                *probe = None;
                if !self.verified {
                    debug!(rtt_us = rtt, "subscription verified by probe");
                    self.verified = true;
                }
                self.show_status();
            }
            return Ok(());
        }
        if channel == self.names.command_channel() {
            return self.on_command(payload, session).await.map_err(SessionEnd::Broken);
        }
        if channel == self.names.status_channel() {
            // Someone joined, left or took a claim back: check ours now rather than at the next beat,
            // so a younger twin leaves as soon as the older one is back.
            debug!(payload = %String::from_utf8_lossy(payload), "instance status");
            self.refresh_presence(session).await.map_err(SessionEnd::Duplicate)?;
            self.show_status();
            return Ok(());
        }
        debug!(%channel, "message on an unexpected channel ignored");
        Ok(())
    }

    /// Commands addressed to this instance: `{"command": "resync"}` or `{"command": "status"}`,
    /// signed and fresh when `EVENT_SIGNING_KEY` is set.
    async fn on_command(&mut self, payload: &[u8], session: &mut Session) -> Result<(), String> {
        let max_age = u64::try_from(self.settings.event_max_age.as_millis()).unwrap_or(u64::MAX);
        match wire::decode_command(payload, self.signer.as_ref(), wall_ms_now(), max_age) {
            Ok(wire::InstanceCommand::Resync) => {
                info!("resync requested on our command channel");
                self.resync(session).await.map_err(|e| format!("resync failed: {e}"))
            }
            Ok(wire::InstanceCommand::Status) => {
                let report = serde_json::json!({
                    "type": "instance_report", "instance": self.instance, "host": self.claim.host,
                    "status": self.status.borrow().as_str(), "timestamp": wall_ms_now(),
                    "stats": self.stats.snapshot(),
                });
                let published: redis::RedisResult<u64> = redis::cmd("PUBLISH")
                    .arg(self.names.status_channel())
                    .arg(report.to_string())
                    .query_async(&mut session.cmd)
                    .await;
                // A lost report is not worth a new session: if the connection is gone, the probe says so.
                if let Err(e) = published {
                    debug!(error = %e, "status report not published");
                }
                Ok(())
            }
            Err(reason) => {
                self.count_drop(reason, "command", &String::from_utf8_lossy(payload), &mut session.cmd).await;
                Ok(())
            }
        }
    }

    async fn announce(&self, status: &str) {
        // Best effort: presence events are informational; the TTL keeps the list right regardless.
        let Ok(client) = redis::Client::open(self.settings.url.as_str()) else { return };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let Ok(Ok(mut cmd)) =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config)).await
        else {
            return;
        };
        let payload = serde_json::json!({
            "type": "instance_status", "status": status, "instance": self.instance,
            "host": self.claim.host, "timestamp": wall_ms_now(),
        });
        let _: redis::RedisResult<u64> =
            redis::cmd("PUBLISH").arg(self.names.status_channel()).arg(payload.to_string()).query_async(&mut cmd).await;
        if status == "offline" {
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("ZREM")
                .arg(self.names.instances())
                .arg(&self.instance)
                .ignore()
                .query_async(&mut cmd)
                .await;
        }
    }

    /// On shutdown: publish what is pending and write kept registers (bounded wait), release our
    /// claim (only if it is still ours), then say goodbye.
    async fn goodbye(&mut self) {
        while let Ok(e) = self.outbox.try_recv() {
            self.keep(e);
        }
        let pending = self.pending.len();
        let flushed = tokio::time::timeout(Duration::from_millis(700), async {
            let Ok(mut session) = self.connect_for_flush().await else { return false };
            let ok = self.flush(&mut session).await.is_ok();
            if !self.unpersisted.is_empty() {
                self.persist(&mut session).await;
            }
            if self.claimed {
                let released = self.claims.release(&mut session.cmd, &self.names.claim(), &self.claim.token).await;
                if let Err(e) = released {
                    debug!(error = %e, "claim not released; it expires by itself");
                }
            }
            ok
        })
        .await
        .unwrap_or(false);
        if pending > 0 && !flushed {
            warn!(pending, "shutting down with unpublished events: other instances will not see them");
        }
        if !self.unpersisted.is_empty() {
            warn!(
                registers = self.unpersisted.len(),
                "shutting down with registers Redis refused to store: peers applied them, a restarted instance will not"
            );
        }
        if self.claimed {
            let _ = tokio::time::timeout(Duration::from_millis(300), self.announce("offline")).await;
        }
    }

    /// A raw connection (publishing or subscribing) with the link's connect and response timeouts.
    async fn open_raw(&self) -> anyhow::Result<RawConnection> {
        let mut connection = RawConnection::connect(&self.settings.url, CONNECT_TIMEOUT).await?;
        connection.set_timeout(RESPONSE_TIMEOUT);
        Ok(connection)
    }

    /// A command connection only (no subscription), for the final flush.
    async fn connect_for_flush(&self) -> anyhow::Result<Session> {
        let client = redis::Client::open(self.settings.url.as_str())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let cmd = client.get_multiplexed_async_connection_with_config(&config).await?;
        let publisher = self.open_raw().await?;
        let (_tx, messages) = mpsc::channel(1);
        Ok(Session { cmd, publisher, messages, reader: tokio::spawn(async {}), gap: Arc::new(AtomicBool::new(false)) })
    }
}

/// Why a state-hash register was not merged.
enum Refused {
    /// Dropped (counted, dead-lettered); `purge`: also removed from the hash.
    Drop { reason: DropReason, purge: bool },
    /// The coordinator has shut down.
    Stopped,
}

/// Capped exponential backoff with full jitter: 100 ms, 200 ms, … up to 5 s, each scaled by 50–100 %.
fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_FLOOR.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            let ceiling = BACKOFF_FLOOR.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_CAP);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn the_degraded_reason_names_the_fault_and_every_write_waiting() {
        let mut faults = SideFaults::default();
        assert_eq!(faults.reason(), None);
        *faults.slot(SideWrite::Registers) = Some(SideFault::OutOfMemory);
        *faults.slot(SideWrite::Presence) = Some(SideFault::OutOfMemory);
        assert!(faults.has(SideWrite::Presence) && !faults.has(SideWrite::DeadLetters));
        assert_eq!(
            faults.reason().as_deref(),
            Some("redis out of memory (presence, state hash and history waiting for a retry)")
        );
        *faults.slot(SideWrite::Presence) = None;
        *faults.slot(SideWrite::Registers) = Some(SideFault::ReadOnly);
        assert_eq!(faults.reason().as_deref(), Some("redis is read-only (state hash and history waiting for a retry)"));
    }

    #[test]
    fn only_oom_and_readonly_replies_mean_publish_still_works() {
        assert_eq!(SideFault::refusing_writes("OOM"), Some(SideFault::OutOfMemory));
        assert_eq!(SideFault::refusing_writes("READONLY"), Some(SideFault::ReadOnly));
        assert_eq!(SideFault::refusing_writes("NOSCRIPT"), None);
        assert_eq!(SideFault::refusing_writes("ERR"), None);
    }

    #[test]
    fn keys_share_one_hash_tag_and_channels_keep_the_seed_names() {
        let n = Names::new("studio-a:", "bot-7");
        for key in [n.state(), n.history(), n.dlq(), n.claim(), n.instances()] {
            assert!(key.starts_with("studio-a:{cv}:"), "{key}");
        }
        assert_eq!(n.channel(wire::PARAMETER_CHANNEL), "studio-a:cv:parameter:update");
        assert_eq!(n.command_channel(), "studio-a:cv:instance:bot-7:command");
        assert_eq!(Names::new("", "x").channel(wire::SYSTEM_CHANNEL), "cv:system:broadcast");
    }
}
