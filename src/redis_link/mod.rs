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
pub mod wire;

use std::collections::{BTreeMap, HashMap};
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
use crate::coord::{CoordHandle, wall_ms_now};
use crate::state::Event;
use crate::stats::{LinkStatus, LogThrottle, Stats, Tally};
use presence::{Claim, ClaimError, ClusterPresence};
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
    claimed: bool,
    log: LogThrottle,
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
            claimed: false,
            log: LogThrottle::per_minute(),
        }
    }

    /// Runs until `shutdown`: connects, serves, and reconnects forever with capped exponential
    /// backoff and jitter. Fails only on a duplicate `INSTANCE_ID`.
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
                    Err(ClaimError::Duplicate(d)) => return Err(d.into()),
                    Err(ClaimError::Redis(e)) => SessionEnd::Broken(format!("presence claim failed: {e}")),
                },
                Err(e) => SessionEnd::Broken(format!("cannot connect: {e}")),
            };
            match end {
                SessionEnd::Shutdown => break,
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
            log: LogThrottle::per_minute(),
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

    async fn claim_presence(&mut self, session: &mut Session) -> Result<(), ClaimError> {
        self.claim.heartbeat_ms = wall_ms_now();
        presence::claim(&mut session.cmd, &self.names.claim(), &self.claim, self.claim_ttl()).await?;
        if !self.claimed {
            self.claimed = true;
            self.announce("online").await;
            info!(instance = %self.instance, "joined the cluster");
        }
        self.refresh_presence(session).await?;
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
        let all: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.names.state()).query_async(&mut session.cmd).await?;
        let mut merged = 0usize;
        let now = wall_ms_now();
        for (field, value) in &all {
            let Some((_, payload)) = value.split_once('|') else { continue };
            let decoded = wire::decode(payload.as_bytes(), &self.catalog, self.signer.as_ref()).and_then(|incoming| {
                match &incoming {
                    Incoming::Event { event, .. } => wire::admit(event, Origin::StateHash, now, self.admission()),
                    Incoming::Audit { .. } => Ok(()),
                }
                .map(|()| incoming)
            });
            if let Err(reason @ (DropReason::ClockSkew | DropReason::OutOfLimit)) = decoded {
                // A register no instance may apply would also block every honest write to it (the
                // publish script writes only if newer): keep a copy in the dead-letter stream, then
                // remove it, unless a newer write replaced it meanwhile.
                self.count_drop(reason, "state", payload, &mut session.cmd).await;
                let removed: redis::RedisResult<u64> = redis::Script::new(DELETE_IF_SAME)
                    .key(self.names.state())
                    .arg(field)
                    .arg(value)
                    .invoke_async(&mut session.cmd)
                    .await;
                if let Ok(n) = removed {
                    self.stats.redis.state_purged.fetch_add(n, Ordering::Relaxed);
                }
                continue;
            }
            match decoded {
                Ok(Incoming::Event { event, .. }) => {
                    // Our own earlier writes count too: a restarted instance picks them up here.
                    if !self.coord.apply_remote(&event) {
                        anyhow::bail!("coordinator stopped");
                    }
                    merged += 1;
                }
                Ok(Incoming::Audit { .. }) => {}
                Err(reason) => self.count_drop(reason, "state", payload, &mut session.cmd).await,
            }
        }
        self.stats.redis.resyncs.fetch_add(1, Ordering::Relaxed);
        debug!(merged, "state hash merged");
        Ok(())
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
                        if let Err(reason) = self.on_control(m, session, &mut probe).await {
                            return SessionEnd::Broken(reason);
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
                    if let Err(e) = self.refresh_presence(session).await {
                        return SessionEnd::Broken(format!("presence heartbeat failed: {e}"));
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

    /// Publishes `first` and everything already waiting behind it as one pipeline, every event as
    /// it is (no coalescing while connected: peers and the history see each one). On failure the
    /// batch joins the pending outbox.
    async fn publish_now(&mut self, session: &mut Session, first: Event) -> Result<(), String> {
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match self.outbox.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if !self.settings.publish {
            self.stats.redis.unpublished.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        if let Err(e) = self.publish(session, &batch).await {
            self.stats.redis.publish_failed.fetch_add(1, Ordering::Relaxed);
            for event in batch {
                self.keep(event);
            }
            return Err(format!("publish failed after retries: {e}"));
        }
        Ok(())
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
    ) -> Result<(), String> {
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
                if *self.status.borrow() != LinkStatus::Connected {
                    self.stats.redis.set_reason(None);
                    self.status.send_replace(LinkStatus::Connected);
                    info!(rtt_us = rtt, "Redis link connected: subscription verified by probe");
                }
            }
            return Ok(());
        }
        if channel == self.names.command_channel() {
            return self.on_command(payload, session).await;
        }
        if channel == self.names.status_channel() {
            debug!(payload = %String::from_utf8_lossy(payload), "instance status");
            return self.refresh_presence(session).await.map_err(|e| format!("presence refresh failed: {e}"));
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
                published.map(|_| ()).map_err(|e| format!("status report failed: {e}"))
            }
            Err(reason) => {
                self.count_drop(reason, "command", &String::from_utf8_lossy(payload), &mut session.cmd).await;
                Ok(())
            }
        }
    }

    /// Counts, logs (once a minute per reason) and keeps a dropped payload in the dead-letter stream.
    async fn count_drop(&self, reason: DropReason, channel: &str, payload: &str, cmd: &mut MultiplexedConnection) {
        self.stats.redis.count_drop(reason);
        if let Some(suppressed) = self.log.allow(reason.label(), Instant::now()) {
            warn!(reason = reason.label(), channel, suppressed, "dropped a Redis payload");
        }
        let kept: String = payload.chars().take(wire::MAX_PAYLOAD).collect();
        let written: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(self.names.dlq())
            .arg("MAXLEN")
            .arg("~")
            .arg(DLQ_MAXLEN)
            .arg("*")
            .arg("reason")
            .arg(reason.label())
            .arg("channel")
            .arg(channel)
            .arg("instance")
            .arg(&self.instance)
            .arg("payload")
            .arg(kept)
            .query_async(cmd)
            .await;
        if written.is_ok() {
            self.stats.redis.dlq_written.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publishes every pending event, oldest first. On failure the rest stay pending.
    async fn flush(&mut self, session: &mut Session) -> Result<(), String> {
        if !self.settings.publish {
            self.pending.clear();
            return Ok(());
        }
        let mut queue: Vec<Event> = std::mem::take(&mut self.pending).into_values().collect();
        queue.sort_by(|a, b| a.stamp.cmp(&b.stamp));
        let mut sent = 0;
        for batch in queue.chunks(PUBLISH_BATCH) {
            if let Err(e) = self.publish(session, batch).await {
                self.stats.redis.publish_failed.fetch_add(1, Ordering::Relaxed);
                for unsent in queue.drain(sent..) {
                    self.keep(unsent);
                }
                return Err(format!("publish failed after retries: {e}"));
            }
            sent += batch.len();
        }
        self.stats.redis.outbox_depth.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Events in one pipeline, each atomically: register (only if newer), history entry, publish.
    /// Written by this task straight to the publishing connection. Retries 100 → 200 → 400 ms, with a
    /// fresh connection after a transport failure; re-publishing is harmless (registers are
    /// only-if-newer).
    async fn publish(&mut self, session: &mut Session, events: &[Event]) -> Result<(), String> {
        let ttl_ms = u64::try_from(self.settings.history_ttl.as_millis()).unwrap_or(0);
        let (state, history) = (self.names.state(), self.names.history());
        let admin = self.names.channel(wire::ADMIN_CHANNEL);
        let hash = self.script.get_hash().to_owned();
        let shared = [hash.as_str(), state.as_str(), history.as_str(), admin.as_str()];
        let commands: Vec<Prepared> = events
            .iter()
            .map(|event| {
                self.seq += 1;
                let encoded = wire::encode(event, self.seq, self.signer.as_ref());
                LinkCounters::count_channel(&self.stats.redis.published_on, encoded.channel);
                if encoded.audit.is_some() {
                    LinkCounters::count_channel(&self.stats.redis.published_on, wire::ADMIN_CHANNEL);
                }
                Prepared {
                    register: wire::register_key(&event.kind),
                    order: wire::order_key(&event.stamp),
                    channel: self.names.channel(encoded.channel),
                    min_id: event.wall_ms.saturating_sub(ttl_ms).to_string(),
                    kind: encoded.kind,
                    payload: encoded.payload,
                    audit: encoded.audit.unwrap_or_default(),
                }
            })
            .collect();
        let mut last_error = String::new();
        for (attempt, pause) in std::iter::once(Duration::ZERO).chain(PUBLISH_RETRIES).enumerate() {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            match Self::send_commands(&mut session.publisher, shared, &commands).await {
                Ok(()) => {
                    self.stats.redis.published.fetch_add(events.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(PublishFailure::Reply(e)) => {
                    debug!(attempt, error = %e, "publish attempt refused");
                    if e.is_noscript() {
                        // Redis restarted or flushed its scripts: load ours again, then retry.
                        let _ = self.script.prepare_invoke().load_async(&mut session.cmd).await;
                    }
                    last_error = e.to_string();
                }
                Err(PublishFailure::Transport(e)) => {
                    debug!(attempt, error = %e, "publish attempt failed; reconnecting the publisher");
                    last_error = e.to_string();
                    match self.open_raw().await {
                        Ok(fresh) => session.publisher = fresh,
                        Err(e) => last_error = format!("{e:#}"),
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Writes `commands` in one go and reads every reply; the first error reply fails the batch.
    /// `shared` is the script hash, the state and history keys and the audit channel.
    async fn send_commands(
        publisher: &mut RawConnection,
        shared: [&str; 4],
        commands: &[Prepared],
    ) -> Result<(), PublishFailure> {
        let [hash, state, history, admin] = shared.map(str::as_bytes);
        for p in commands {
            publisher.append(&[
                b"EVALSHA",
                hash,
                b"2",
                state,
                history,
                p.register.as_bytes(),
                p.order.as_bytes(),
                p.payload.as_bytes(),
                p.channel.as_bytes(),
                p.min_id.as_bytes(),
                p.kind.as_bytes(),
                admin,
                p.audit.as_bytes(),
            ]);
        }
        publisher.flush().await.map_err(PublishFailure::Transport)?;
        let replies = publisher.read_replies(commands.len()).await.map_err(PublishFailure::Transport)?;
        match replies.into_iter().find_map(Result::err) {
            Some(e) => Err(PublishFailure::Reply(e)),
            None => Ok(()),
        }
    }

    async fn refresh_presence(&mut self, session: &mut Session) -> redis::RedisResult<()> {
        let now = wall_ms_now();
        self.claim.heartbeat_ms = now;
        let value = serde_json::to_string(&self.claim).unwrap_or_default();
        let ttl_s = self.claim_ttl().as_secs().max(1);
        let ttl_ms = u64::try_from(self.claim_ttl().as_millis()).unwrap_or(u64::MAX);
        let (live,): (Vec<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.names.claim())
            .arg(value)
            .arg("EX")
            .arg(ttl_s)
            .ignore()
            .cmd("ZADD")
            .arg(self.names.instances())
            .arg(now)
            .arg(&self.instance)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.names.instances())
            .arg("-inf")
            .arg(now.saturating_sub(ttl_ms))
            .ignore()
            .cmd("ZRANGE")
            .arg(self.names.instances())
            .arg(0)
            .arg(-1)
            .query_async(&mut session.cmd)
            .await?;
        self.presence.set_live(live);
        Ok(())
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

    /// On shutdown: publish what is pending (bounded wait), then say goodbye.
    async fn goodbye(&mut self) {
        while let Ok(e) = self.outbox.try_recv() {
            self.keep(e);
        }
        let pending = self.pending.len();
        let flushed = tokio::time::timeout(Duration::from_millis(700), async {
            let Ok(mut session) = self.connect_for_flush().await else { return false };
            let ok = self.flush(&mut session).await.is_ok();
            if self.claimed {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(self.names.claim()).query_async(&mut session.cmd).await;
            }
            ok
        })
        .await
        .unwrap_or(false);
        if pending > 0 && !flushed {
            warn!(pending, "shutting down with unpublished events: other instances will not see them");
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

/// One event's own arguments to the publish script (see `publish.lua`).
struct Prepared {
    register: String,
    order: String,
    payload: String,
    channel: String,
    min_id: String,
    kind: &'static str,
    audit: String,
}

/// Why one publishing attempt failed: Redis refused a command, or the connection broke.
enum PublishFailure {
    Reply(ServerError),
    Transport(RawError),
}

/// What the reader hands to the link task: traffic that is not an event, and poison to record.
enum Control {
    Message(PubSubMessage),
    Poison { reason: DropReason, channel: String, payload: String },
}

/// Reads the subscription. redis-rs buffers pub/sub messages in an unbounded channel, so this task
/// must keep up: it decodes each event and applies it in place (the coordinator call returns in
/// microseconds, with the OSC datagram already sent), so there is no queue of its own to fill.
/// Non-event traffic goes to the link task over a bounded channel; when that is full the message is
/// dropped and counted (`redis_subscriber_overflow`).
struct Reader {
    coord: CoordHandle,
    catalog: Arc<Catalog>,
    signer: Option<Signer>,
    instance: String,
    prefix: String,
    event_channels: Vec<String>,
    stats: Arc<Stats>,
    gap: Arc<AtomicBool>,
    /// Last `seq` per source instance, for gap detection.
    last_seq: HashMap<String, u64>,
    /// The clock rules every event must meet before it is applied.
    admission: Admission,
    /// The furthest ahead of our clock each source has been seen, so `Stats` is told only of a new
    /// maximum (rare) instead of on every event.
    peer_ahead: HashMap<String, i64>,
    log: LogThrottle,
    control: mpsc::Sender<Control>,
}

impl Reader {
    async fn run(mut self, mut subscriber: RawSubscriber) {
        // Everything one read delivered is applied as one batch, so a burst costs one lock and sends
        // each variable's OSC value once; a lone message is a batch of one.
        let mut messages = Vec::with_capacity(READ_BATCH);
        let mut events = Vec::with_capacity(READ_BATCH);
        loop {
            if let Err(e) = subscriber.next_batch(&mut messages).await {
                debug!(error = %e, "subscription ended");
                return;
            }
            for message in messages.drain(..) {
                let channel = &message.channel[..];
                let delivered = if self.event_channels.iter().any(|c| c.as_bytes() == channel) {
                    self.on_event(&message, &mut events)
                } else {
                    self.hand_over(Control::Message(message))
                };
                if !delivered {
                    return;
                }
            }
            if !events.is_empty() {
                if !self.coord.apply_remote_batch(&events) {
                    return;
                }
                events.clear();
            }
        }
    }

    /// False when the other side has gone (shutdown or a torn-down session).
    fn hand_over(&self, control: Control) -> bool {
        match self.control.try_send(control) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.redis.subscriber_overflow.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Decodes one event message into `events`; false when the link is going away.
    fn on_event(&mut self, message: &PubSubMessage, events: &mut Vec<Event>) -> bool {
        let channel = std::str::from_utf8(&message.channel).unwrap_or_default();
        let payload = &message.payload[..];
        self.stats.redis.received.fetch_add(1, Ordering::Relaxed);
        let base = channel.strip_prefix(self.prefix.as_str()).unwrap_or(channel);
        LinkCounters::count_channel(&self.stats.redis.received_on, base);
        let now = wall_ms_now();
        let decoded = wire::decode(payload, &self.catalog, self.signer.as_ref()).and_then(|incoming| match &incoming {
            Incoming::Event { event, .. } => {
                self.note_clock(&event.stamp.instance, wire::ahead_ms(event, now));
                wire::admit(event, Origin::PubSub, now, self.admission).map(|()| incoming)
            }
            Incoming::Audit { .. } => Ok(incoming),
        });
        match decoded {
            Ok(Incoming::Event { event, seq }) => {
                if event.stamp.instance.as_ref() == self.instance {
                    self.stats.redis.own_ignored.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if let Some(seq) = seq
                    && self.note_seq(&event.stamp.instance, seq)
                {
                    self.gap.store(true, Ordering::Relaxed);
                }
                events.push(event);
                true
            }
            Ok(Incoming::Audit { source, command }) => {
                if source != self.instance {
                    debug!(source = %source, command = %command, "admin action on another instance");
                }
                true
            }
            Err(reason) => self.hand_over(Control::Poison {
                reason,
                channel: channel.to_owned(),
                payload: String::from_utf8_lossy(payload).into_owned(),
            }),
        }
    }

    /// Records how far ahead of our clock `source` stamps its events; a new maximum goes to `Stats`
    /// (health and `/metrics`), and a peer more than a second ahead is warned about once a minute.
    fn note_clock(&mut self, source: &str, ahead: i64) {
        let known = match self.peer_ahead.get_mut(source) {
            Some(max) if ahead <= *max => return,
            Some(max) => {
                *max = ahead;
                true
            }
            None => false,
        };
        if !known {
            if self.peer_ahead.len() >= crate::stats::MAX_PEER_CLOCKS {
                return;
            }
            self.peer_ahead.insert(source.to_owned(), ahead);
        }
        self.stats.peer_clocks.note(source, ahead);
        if ahead > 1000
            && let Some(suppressed) = self.log.allow("peer_clock_ahead", Instant::now())
        {
            warn!(
                peer = source,
                ahead_ms = ahead,
                suppressed,
                "a peer's clock runs ahead of ours; check NTP on both hosts"
            );
        }
    }

    /// Tracks per-source sequence numbers; true when some were skipped (a gap worth a resync).
    fn note_seq(&mut self, source: &str, seq: u64) -> bool {
        // A known source (every event but each peer's first) updates in place, without a new key.
        let last = match self.last_seq.get_mut(source) {
            Some(last) => Some(std::mem::replace(last, seq)),
            None => self.last_seq.insert(source.to_owned(), seq),
        };
        match last {
            Some(last) if seq > last + 1 => {
                self.stats.redis.gaps.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }
}

/// Capped exponential backoff with full jitter: 100 ms, 200 ms, … up to 5 s, each scaled by 50–100 %.
fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_FLOOR.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Link counters, part of [`Stats`].
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub published: AtomicU64,
    pub publish_failed: AtomicU64,
    pub unpublished: AtomicU64,
    pub received: AtomicU64,
    pub own_ignored: AtomicU64,
    dropped: Tally<{ DropReason::ALL.len() }>,
    pub dlq_written: AtomicU64,
    pub reconnects: AtomicU64,
    pub resyncs: AtomicU64,
    /// State-hash registers removed because no instance may apply them (far future, out of limit).
    pub state_purged: AtomicU64,
    pub gaps: AtomicU64,
    pub subscriber_overflow: AtomicU64,
    pub probes_lost: AtomicU64,
    pub probe_rtt_us: AtomicU64,
    pub outbox_depth: AtomicU64,
    pub outbox_coalesced: AtomicU64,
    /// Published and received events per event channel, in [`wire::EVENT_CHANNELS`] order.
    published_on: Tally<4>,
    received_on: Tally<4>,
    reason: std::sync::Mutex<Option<String>>,
}

impl LinkCounters {
    pub fn count_drop(&self, reason: DropReason) {
        self.dropped.add(&DropReason::ALL, &reason);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&DropReason::ALL, &reason)
    }

    fn count_channel(counters: &Tally<4>, channel: &str) {
        counters.add(&wire::EVENT_CHANNELS, &channel);
    }

    /// Why the link is degraded, if it is.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_reason(&self, reason: Option<&str>) {
        *self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = reason.map(str::to_owned);
    }

    /// `redis_*` counters for the stats snapshot.
    pub fn snapshot_into(&self, out: &mut BTreeMap<String, u64>) {
        for reason in DropReason::ALL {
            out.insert(format!("redis_dropped_{}", reason.label()), self.dropped(reason));
        }
        for channel in &wire::EVENT_CHANNELS {
            let name = channel.trim_start_matches("cv:").replace(':', "_");
            out.insert(format!("redis_published_{name}"), self.published_on.get(&wire::EVENT_CHANNELS, channel));
            out.insert(format!("redis_received_{name}"), self.received_on.get(&wire::EVENT_CHANNELS, channel));
        }
        for (name, c) in [
            ("redis_published", &self.published),
            ("redis_publish_failed", &self.publish_failed),
            ("redis_unpublished", &self.unpublished),
            ("redis_received", &self.received),
            ("redis_own_ignored", &self.own_ignored),
            ("redis_dlq_written", &self.dlq_written),
            ("redis_reconnects", &self.reconnects),
            ("redis_resyncs", &self.resyncs),
            ("redis_state_purged", &self.state_purged),
            ("redis_gaps", &self.gaps),
            ("redis_subscriber_overflow", &self.subscriber_overflow),
            ("redis_probes_lost", &self.probes_lost),
            ("redis_probe_rtt_us", &self.probe_rtt_us),
            ("redis_outbox_depth", &self.outbox_depth),
            ("redis_outbox_coalesced", &self.outbox_coalesced),
        ] {
            out.insert(name.to_owned(), c.load(Ordering::Relaxed));
        }
    }
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
