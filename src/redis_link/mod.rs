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

/// Why Redis refused or missed a write beside the hot path (presence, dead letters, registers kept
/// for later). Shown as the degraded reason while the session keeps publishing and subscribing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SideFault {
    #[error("redis out of memory")]
    OutOfMemory,
    #[error("redis is read-only")]
    ReadOnly,
    #[error("redis did not answer a write in time")]
    Timeout,
    #[error("redis refused a write ({0})")]
    Refused(String),
    #[error("redis write failed: connection trouble")]
    Transport,
}

impl SideFault {
    /// The reply codes that mean "writes are refused, but `PUBLISH` still works".
    fn refusing_writes(code: &str) -> Option<SideFault> {
        match code {
            "OOM" => Some(SideFault::OutOfMemory),
            "READONLY" => Some(SideFault::ReadOnly),
            _ => None,
        }
    }

    fn of_reply(e: &ServerError) -> SideFault {
        Self::refusing_writes(e.code()).unwrap_or_else(|| SideFault::Refused(e.code().to_owned()))
    }

    fn of(e: &redis::RedisError) -> SideFault {
        if e.is_timeout() {
            return SideFault::Timeout;
        }
        // A pipeline's error keeps each failed command's reply; the first one says why.
        let code = e.code().map(str::to_owned).or_else(|| {
            e.clone().into_server_errors().and_then(|items| items.first().map(|(_, server)| server.code().to_owned()))
        });
        match code {
            Some(code) => Self::refusing_writes(&code).unwrap_or(SideFault::Refused(code)),
            None => SideFault::Transport,
        }
    }
}

/// The side writes that can fail without ending the session, each retried on the next heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideWrite {
    Presence,
    DeadLetters,
    Registers,
}

impl SideWrite {
    const ALL: [SideWrite; 3] = [SideWrite::Presence, SideWrite::DeadLetters, SideWrite::Registers];

    fn label(self) -> &'static str {
        match self {
            Self::Presence => "presence",
            Self::DeadLetters => "dead letters",
            Self::Registers => "state hash and history",
        }
    }
}

/// The side writes failing now, and why.
#[derive(Debug, Default)]
struct SideFaults([Option<SideFault>; 3]);

impl SideFaults {
    fn slot(&mut self, write: SideWrite) -> &mut Option<SideFault> {
        let i = SideWrite::ALL.iter().position(|w| *w == write).unwrap_or(0);
        &mut self.0[i]
    }

    fn has(&self, write: SideWrite) -> bool {
        SideWrite::ALL.iter().zip(&self.0).any(|(w, f)| *w == write && f.is_some())
    }

    /// `redis out of memory (presence, state hash and history)`, or `None` when every side write works.
    fn reason(&self) -> Option<String> {
        let failing: Vec<(&SideWrite, &SideFault)> =
            SideWrite::ALL.iter().zip(&self.0).filter_map(|(w, f)| f.as_ref().map(|f| (w, f))).collect();
        let (_, first) = failing.first()?;
        let what: Vec<&str> = failing.iter().map(|(w, _)| w.label()).collect();
        Some(format!("{first} ({} waiting for a retry)", what.join(", ")))
    }
}

/// A payload the dead-letter stream has not taken yet.
struct DeadLetter {
    reason: &'static str,
    channel: String,
    payload: String,
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

    /// Every heartbeat: presence (which may find an older twin), then the side writes waiting for a
    /// retry. Nothing here ends the session but a twin.
    async fn heartbeat(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        self.refresh_presence(session).await?;
        self.side_writes(session).await;
        Ok(())
    }

    async fn side_writes(&mut self, session: &mut Session) {
        self.write_dead_letters(&mut session.cmd).await;
        self.persist(session).await;
        self.show_status();
    }

    /// Records a failed side write: counted, logged once a minute per kind, shown as the degraded
    /// reason until it works again.
    fn side_failed(&mut self, write: SideWrite, fault: SideFault) {
        let counter = match write {
            SideWrite::Presence => &self.stats.redis.presence_failed,
            SideWrite::DeadLetters => &self.stats.redis.dlq_failed,
            SideWrite::Registers => &self.stats.redis.persist_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow(write.label(), Instant::now()) {
            warn!(
                write = write.label(),
                reason = %fault,
                suppressed,
                "a Redis write beside the hot path failed; events still flow, retrying on the next heartbeat"
            );
        }
        *self.faults.slot(write) = Some(fault);
    }

    fn side_ok(&mut self, write: SideWrite) {
        if self.faults.slot(write).take().is_some() {
            info!(write = write.label(), "a Redis write beside the hot path works again");
        }
    }

    /// Once the probe has proven the subscription: `connected` when every side write works,
    /// `degraded` with the reason while one fails (the session keeps serving either way).
    fn show_status(&self) {
        if !self.verified {
            return;
        }
        self.stats.redis.serving.store(true, Ordering::Relaxed);
        let reason = self.faults.reason();
        self.stats.redis.set_reason(reason.as_deref());
        let wanted = if reason.is_some() { LinkStatus::Degraded } else { LinkStatus::Connected };
        let changed = self.status.send_if_modified(|status| std::mem::replace(status, wanted) != wanted);
        if changed && wanted == LinkStatus::Connected {
            info!(rtt_us = self.stats.redis.probe_rtt_us.load(Ordering::Relaxed), "Redis link connected");
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

    /// Counts, logs (once a minute per reason) and keeps a dropped payload in the dead-letter stream.
    /// While the stream refuses writes, the payload waits (bounded, [`DLQ_BACKLOG`]) for the next
    /// heartbeat instead of costing every poison message another failing round trip.
    async fn count_drop(&mut self, reason: DropReason, channel: &str, payload: &str, cmd: &mut MultiplexedConnection) {
        self.stats.redis.count_drop(reason);
        if let Some(suppressed) = self.log.allow(reason.label(), Instant::now()) {
            warn!(reason = reason.label(), channel, suppressed, "dropped a Redis payload");
        }
        if self.dead_letters.len() >= DLQ_BACKLOG {
            self.dead_letters.pop_front();
            self.stats.redis.dlq_lost.fetch_add(1, Ordering::Relaxed);
        }
        let payload: String = payload.chars().take(wire::MAX_PAYLOAD).collect();
        self.dead_letters.push_back(DeadLetter { reason: reason.label(), channel: channel.to_owned(), payload });
        if !self.faults.has(SideWrite::DeadLetters) {
            self.write_dead_letters(cmd).await;
            self.show_status();
        }
    }

    /// Appends every waiting dead letter to the capped `{cv}:dlq` stream in one pipeline.
    async fn write_dead_letters(&mut self, cmd: &mut MultiplexedConnection) {
        if self.dead_letters.is_empty() {
            self.side_ok(SideWrite::DeadLetters);
            return;
        }
        let mut pipe = redis::pipe();
        for letter in &self.dead_letters {
            pipe.cmd("XADD")
                .arg(self.names.dlq())
                .arg("MAXLEN")
                .arg("~")
                .arg(DLQ_MAXLEN)
                .arg("*")
                .arg("reason")
                .arg(letter.reason)
                .arg("channel")
                .arg(&letter.channel)
                .arg("instance")
                .arg(&self.instance)
                .arg("payload")
                .arg(&letter.payload)
                .ignore();
        }
        let written: redis::RedisResult<()> = pipe.query_async(cmd).await;
        match written {
            Ok(()) => {
                self.stats.redis.dlq_written.fetch_add(self.dead_letters.len() as u64, Ordering::Relaxed);
                self.dead_letters.clear();
                self.side_ok(SideWrite::DeadLetters);
            }
            Err(e) => self.side_failed(SideWrite::DeadLetters, SideFault::of(&e)),
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

    /// The script hash, the state and history keys and the audit channel, as `send_commands` takes them.
    fn shared_args(&self) -> [String; 4] {
        [
            self.script.get_hash().to_owned(),
            self.names.state(),
            self.names.history(),
            self.names.channel(wire::ADMIN_CHANNEL),
        ]
    }

    /// Events in one pipeline, each atomically: register (only if newer), history entry, publish.
    /// Written by this task straight to the publishing connection. Retries 100 → 200 → 400 ms, with a
    /// fresh connection after a transport failure; re-publishing is harmless (registers are
    /// only-if-newer).
    ///
    /// An event whose script Redis refuses because it writes (`OOM` at `maxmemory`, `READONLY` on a
    /// replica) is sent at once by a plain `PUBLISH`, which Redis still allows, so every instance
    /// hears it (an emergency stop most of all); its register and history entry wait in
    /// `unpersisted` for [`RedisLink::persist`].
    async fn publish(&mut self, session: &mut Session, events: &[Event]) -> Result<(), String> {
        let ttl_ms = u64::try_from(self.settings.history_ttl.as_millis()).unwrap_or(0);
        let shared = self.shared_args();
        let shared = [shared[0].as_str(), shared[1].as_str(), shared[2].as_str(), shared[3].as_str()];
        let mut todo: Vec<Prepared> = events
            .iter()
            .map(|event| {
                self.seq += 1;
                // Recorded before it is sent, so its echo always finds it.
                self.echoes.record(self.seq, event.stamp.hlc);
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
            let replies = match Self::send_commands(&mut session.publisher, shared, &todo, true).await {
                Ok(replies) => replies,
                Err(e) => {
                    debug!(attempt, error = %e, "publish attempt failed; reconnecting the publisher");
                    last_error = e.to_string();
                    match self.open_raw().await {
                        Ok(fresh) => session.publisher = fresh,
                        Err(e) => last_error = format!("{e:#}"),
                    }
                    continue;
                }
            };
            let (mut retry, mut refused, mut refusal, mut reload) = (Vec::new(), Vec::new(), None, false);
            for (prepared, reply) in todo.drain(..).zip(replies) {
                let Err(e) = reply else {
                    self.stats.redis.published.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if let Some(fault) = SideFault::refusing_writes(e.code()) {
                    refused.push(prepared);
                    refusal = Some(fault);
                } else {
                    debug!(attempt, error = %e, "publish attempt refused");
                    // Redis restarted or flushed its scripts: load ours again, then retry.
                    reload |= e.is_noscript();
                    last_error = e.to_string();
                    retry.push(prepared);
                }
            }
            if let Some(fault) = refusal {
                self.publish_unpersisted(session, refused, fault).await?;
            }
            if retry.is_empty() {
                return Ok(());
            }
            if reload {
                let _ = self.script.prepare_invoke().load_async(&mut session.cmd).await;
            }
            todo = retry;
        }
        Err(last_error)
    }

    /// The fallback for events whose script Redis refused: a plain `PUBLISH` of each envelope (and
    /// its audit copy), which reaches every instance; the register waits in `unpersisted`.
    async fn publish_unpersisted(
        &mut self,
        session: &mut Session,
        refused: Vec<Prepared>,
        fault: SideFault,
    ) -> Result<(), String> {
        let admin = self.names.channel(wire::ADMIN_CHANNEL);
        let mut commands = 0;
        for p in &refused {
            session.publisher.append(&[b"PUBLISH", p.channel.as_bytes(), p.payload.as_bytes()]);
            commands += 1;
            if !p.audit.is_empty() {
                session.publisher.append(&[b"PUBLISH", admin.as_bytes(), p.audit.as_bytes()]);
                commands += 1;
            }
        }
        session.publisher.flush().await.map_err(|e| format!("plain publish failed: {e}"))?;
        let replies =
            session.publisher.read_replies(commands).await.map_err(|e| format!("plain publish failed: {e}"))?;
        if let Some(e) = replies.into_iter().find_map(Result::err) {
            return Err(format!("plain publish refused: {e}"));
        }
        let sent = refused.len() as u64;
        self.stats.redis.published.fetch_add(sent, Ordering::Relaxed);
        self.stats.redis.publish_unpersisted.fetch_add(sent, Ordering::Relaxed);
        for p in refused {
            self.keep_unpersisted(p);
        }
        self.side_failed(SideWrite::Registers, fault);
        self.show_status();
        Ok(())
    }

    /// Keeps a published-but-unwritten event, newest per register; bounded like the outbox (the
    /// oldest goes first, counted as `redis_unpersisted_dropped`: its register then keeps whatever
    /// older value the state hash has until that register is written again).
    fn keep_unpersisted(&mut self, prepared: Prepared) {
        match self.unpersisted.get(&prepared.register) {
            Some(old) if old.order >= prepared.order => {}
            Some(_) => {
                self.unpersisted.insert(prepared.register.clone(), prepared);
            }
            None => {
                if self.unpersisted.len() >= self.settings.outbox_capacity.max(1)
                    && let Some(oldest) =
                        self.unpersisted.values().min_by(|a, b| a.order.cmp(&b.order)).map(|p| p.register.clone())
                {
                    self.unpersisted.remove(&oldest);
                    self.stats.redis.unpersisted_dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.unpersisted.insert(prepared.register.clone(), prepared);
            }
        }
        self.stats.redis.unpersisted_depth.store(self.unpersisted.len() as u64, Ordering::Relaxed);
    }

    /// Writes the registers of events that went out by plain `PUBLISH` into the state hash and history,
    /// with the same script minus its `PUBLISH` (only-if-newer, so a later write is never undone).
    async fn persist(&mut self, session: &mut Session) {
        if self.unpersisted.is_empty() {
            self.side_ok(SideWrite::Registers);
            return;
        }
        let shared = self.shared_args();
        let shared = [shared[0].as_str(), shared[1].as_str(), shared[2].as_str(), shared[3].as_str()];
        let waiting: Vec<Prepared> = self.unpersisted.values().cloned().collect();
        let mut fault = None;
        let mut written = 0u64;
        for batch in waiting.chunks(PUBLISH_BATCH) {
            match Self::send_commands(&mut session.publisher, shared, batch, false).await {
                Ok(replies) => {
                    for (p, reply) in batch.iter().zip(replies) {
                        match reply {
                            Ok(_) => {
                                self.unpersisted.remove(&p.register);
                                written += 1;
                            }
                            Err(e) => {
                                if e.is_noscript() {
                                    let _ = self.script.prepare_invoke().load_async(&mut session.cmd).await;
                                }
                                fault = Some(SideFault::of_reply(&e));
                            }
                        }
                    }
                }
                Err(e) => {
                    // The next publish would find this too; a fresh publisher keeps the session serving.
                    debug!(error = %e, "writing kept registers failed; reconnecting the publisher");
                    if let Ok(fresh) = self.open_raw().await {
                        session.publisher = fresh;
                    }
                    fault =
                        Some(if matches!(e, RawError::Timeout(_)) { SideFault::Timeout } else { SideFault::Transport });
                    break;
                }
            }
        }
        self.stats.redis.unpersisted_depth.store(self.unpersisted.len() as u64, Ordering::Relaxed);
        self.stats.redis.persisted_late.fetch_add(written, Ordering::Relaxed);
        match fault {
            Some(fault) => self.side_failed(SideWrite::Registers, fault),
            None => {
                info!(registers = written, "registers published during the write refusal are in the state hash now");
                self.side_ok(SideWrite::Registers);
            }
        }
    }

    /// Writes `commands` in one go and reads every reply, one per command. `shared` is the script
    /// hash, the state and history keys and the audit channel; without `publish` the script only
    /// writes (empty channels).
    async fn send_commands(
        publisher: &mut RawConnection,
        shared: [&str; 4],
        commands: &[Prepared],
        publish: bool,
    ) -> Result<Vec<raw::Reply>, RawError> {
        let [hash, state, history, admin] = shared.map(str::as_bytes);
        let admin: &[u8] = if publish { admin } else { b"" };
        for p in commands {
            let channel: &[u8] = if publish { p.channel.as_bytes() } else { b"" };
            publisher.append(&[
                b"EVALSHA",
                hash,
                b"2",
                state,
                history,
                p.register.as_bytes(),
                p.order.as_bytes(),
                p.payload.as_bytes(),
                channel,
                p.min_id.as_bytes(),
                p.kind.as_bytes(),
                admin,
                p.audit.as_bytes(),
            ]);
        }
        publisher.flush().await?;
        publisher.read_replies(commands.len()).await
    }

    /// Claims or refreshes our id (atomically comparing the holder), then the live list. Only an
    /// older twin is an error; a refused or failed write is a side fault, retried next heartbeat.
    async fn refresh_presence(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        let now = wall_ms_now();
        self.claim.heartbeat_ms = now;
        match self.claims.claim(&mut session.cmd, &self.names.claim(), &self.claim, self.claim_ttl()).await {
            Ok(ClaimOutcome::Claimed | ClaimOutcome::Refreshed) => {}
            Ok(ClaimOutcome::TookOver(twin)) => {
                self.stats.redis.claims_reasserted.fetch_add(1, Ordering::Relaxed);
                warn!(
                    instance = %self.instance,
                    twin_host = %twin.host,
                    twin_pid = twin.pid,
                    "a younger process with our INSTANCE_ID held our claim: it is ours again, and the other one exits"
                );
                // Tell it now rather than at its next heartbeat.
                self.announce("online").await;
            }
            Err(ClaimError::Duplicate(older)) => return Err(older),
            Err(ClaimError::Redis(e)) => {
                self.side_failed(SideWrite::Presence, SideFault::of(&e));
                return Ok(());
            }
        }
        let ttl_ms = u64::try_from(self.claim_ttl().as_millis()).unwrap_or(u64::MAX);
        let listed: redis::RedisResult<(Vec<String>,)> = redis::pipe()
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
            .await;
        match listed {
            Ok((live,)) => {
                self.presence.set_live(live);
                self.side_ok(SideWrite::Presence);
            }
            Err(e) => self.side_failed(SideWrite::Presence, SideFault::of(&e)),
        }
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

/// One event's own arguments to the publish script (see `publish.lua`).
#[derive(Clone)]
struct Prepared {
    register: String,
    order: String,
    payload: String,
    channel: String,
    min_id: String,
    kind: &'static str,
    audit: String,
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
    /// What the link published, to tell our echoes from an impostor's events under our id.
    echoes: Arc<OwnEchoes>,
    log: Arc<LogThrottle>,
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
                if event.stamp.instance.as_ref() != self.instance {
                    self.note_clock(&event.stamp.instance, wire::ahead_ms(event, now));
                }
                wire::admit(event, Origin::PubSub, now, self.admission).map(|()| incoming)
            }
            Incoming::Audit { .. } => Ok(incoming),
        });
        match decoded {
            Ok(Incoming::Event { event, seq }) => {
                if event.stamp.instance.as_ref() == self.instance {
                    if self.echoes.is_ours(seq, event.stamp.hlc) {
                        self.stats.redis.own_ignored.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    // Not one we sent: applied like any remote event, so we agree with the peers that did.
                    self.impostor(channel);
                    events.push(event);
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

    /// Another publisher uses our `INSTANCE_ID` (a JavaScript bot, a copied `.env`): counted, shown
    /// in the stats and health, and warned about at most once a minute.
    fn impostor(&self, channel: &str) {
        self.stats.redis.note_impostor(channel);
        if let Some(suppressed) = self.log.allow("impostor", Instant::now()) {
            warn!(
                instance = %self.instance,
                channel,
                suppressed,
                "another publisher uses our INSTANCE_ID; its events are applied like any remote event: give it \
                 its own INSTANCE_ID"
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
    /// Events sent by a plain `PUBLISH` because Redis refused the publish script's writes.
    pub publish_unpersisted: AtomicU64,
    /// Registers published but not yet in the state hash (a gauge).
    pub unpersisted_depth: AtomicU64,
    /// Kept registers written into the state hash once Redis took writes again.
    pub persisted_late: AtomicU64,
    /// Kept registers forgotten because too many waited.
    pub unpersisted_dropped: AtomicU64,
    /// Failed side writes, by kind; each is retried on the next heartbeat.
    pub presence_failed: AtomicU64,
    pub dlq_failed: AtomicU64,
    pub persist_failed: AtomicU64,
    /// Dead letters forgotten because the backlog waiting for a retry was full.
    pub dlq_lost: AtomicU64,
    /// Events under our `INSTANCE_ID` that we did not publish.
    pub impostor_events: AtomicU64,
    /// Times a younger twin held our claim and we took it back.
    pub claims_reasserted: AtomicU64,
    /// True while a session is proven by a probe and serving, even when side writes fail (so the
    /// link may be `degraded` and still carry every event).
    pub serving: AtomicBool,
    impostor: std::sync::Mutex<Option<ImpostorSeen>>,
    /// Published and received events per event channel, in [`wire::EVENT_CHANNELS`] order.
    published_on: Tally<4>,
    received_on: Tally<4>,
    reason: std::sync::Mutex<Option<String>>,
}

/// The last event seen under our `INSTANCE_ID` that this process did not publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImpostorSeen {
    pub channel: String,
    /// Wall-clock milliseconds.
    pub at_ms: u64,
}

impl LinkCounters {
    fn note_impostor(&self, channel: &str) {
        self.impostor_events.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.impostor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.as_mut() {
            Some(s) if s.channel == channel => s.at_ms = wall_ms_now(),
            _ => *seen = Some(ImpostorSeen { channel: channel.to_owned(), at_ms: wall_ms_now() }),
        }
    }

    /// The last impostor event seen, for health; `None` if there never was one.
    pub fn impostor_seen(&self) -> Option<ImpostorSeen> {
        self.impostor.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

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
            ("redis_publish_unpersisted", &self.publish_unpersisted),
            ("redis_unpersisted_depth", &self.unpersisted_depth),
            ("redis_persisted_late", &self.persisted_late),
            ("redis_unpersisted_dropped", &self.unpersisted_dropped),
            ("redis_presence_failed", &self.presence_failed),
            ("redis_dlq_failed", &self.dlq_failed),
            ("redis_persist_failed", &self.persist_failed),
            ("redis_dlq_lost", &self.dlq_lost),
            ("redis_impostor_events", &self.impostor_events),
            ("redis_claims_reasserted", &self.claims_reasserted),
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
