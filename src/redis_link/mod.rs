//! The Redis link: keeps instances in lock-step through Redis pub/sub, persists registers in the
//! state hash, and survives every Redis fault without stalling the show.
//!
//! The only module that knows Redis, channel and key names and the wire format ([`wire`]). It never
//! touches State: local events arrive from the coordinator's outbox, remote events go to
//! [`CoordHandle::apply_remote`]. Recovery protocol (see ARCHITECTURE.md): find the server(s) for the
//! deployment shape ([`backend`]), subscribe, load the state hash and merge, write back what it lacks,
//! flush the outbox, then probe our own channel to prove the subscription hears.

mod backend;
pub mod history;
pub mod presence;
pub mod tls;
pub mod wire;

pub mod counters;
mod lifecycle;
mod names;
mod nodes;
mod outbox;
mod publishing;
mod reader;
mod serve;
mod session;
mod side;

pub use backend::SessionError;
use backend::{Backend, Commands, Endpoints, FailoverWatch, PubSubMessage, Reply, SendError, ServerError, Subscriber};
pub use counters::{ImpostorSeen, LinkCounters};
pub use names::Names;
use publishing::Prepared;
use reader::{Control, Reader};
use session::Session;
use side::{DeadLetter, SideFault, SideFaults, SideWrite};
use tls::TlsMaterial;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::clock::wall_ms_now;
use crate::config::{RedisTiming, RedisTopology};
use crate::coord::CoordHandle;
use crate::state::Event;
use crate::stats::{LinkStatus, LogThrottle, Stats};
use presence::{Claim, ClaimError, ClaimOutcome, Claims, ClusterPresence, DuplicateInstance, OwnEchoes};
use wire::{Admission, DropReason, Incoming, Origin, Signer};

/// The atomic publish step: writes the register only if newer, appends to the history stream,
/// publishes (plus the audit copy). The bench also runs it bare, as a floor.
pub const PUBLISH_SCRIPT: &str = include_str!("publish.lua");

/// Control messages (probes, commands, presence, poison) buffered between the reader and the link.
/// When full they are dropped and counted (`redis_subscriber_overflow`); a lost probe only means an
/// early reconnect.
pub const CONTROL_QUEUE: usize = 1024;

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
    /// Probe interval and deadline, heartbeat, reconnect backoff.
    pub timing: RedisTiming,
    /// Remote stamps further ahead of our clock are refused (`MAX_CLOCK_SKEW_MS`).
    pub max_clock_skew: Duration,
    /// With a signing key, signed pub/sub events older than this are refused (`EVENT_MAX_AGE_MS`).
    pub event_max_age: Duration,
    /// One server at `url`, a Sentinel-managed master, or a Cluster (credentials and scheme from `url`).
    pub topology: RedisTopology,
    /// CA and client certificate for `rediss://`.
    pub tls: Arc<TlsMaterial>,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("url", &crate::secret::mask_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

/// Why a session with Redis ended.
enum SessionEnd {
    Shutdown,
    Broken(SessionError),
    /// An older live process holds our `INSTANCE_ID`: this one must go.
    Duplicate(DuplicateInstance),
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
    counters: Arc<LinkCounters>,
    presence: Arc<ClusterPresence>,
    signer: Option<Signer>,
    /// Where each session's connections go (one server, Sentinel, Cluster).
    backend: Backend,
    script: redis::Script,
    seed: redis::Script,
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
    /// Values from older bots (no `hlc`) to write into the state hash, newest per register.
    legacy: BTreeMap<String, Event>,
    /// The last write-back (anti-entropy) failed; it is retried on the heartbeat.
    reseed_pending: bool,
    faults: SideFaults,
    /// This session's subscription has been proven by a probe.
    verified: bool,
    /// The current session's command connection, for readers beside the link (the history).
    session_slot: history::SessionSlot,
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
        counters: Arc<LinkCounters>,
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
            backend: Backend::new(&settings.url, settings.topology.clone(), settings.tls.clone()),
            settings,
            instance: instance.to_owned(),
            catalog,
            coord,
            outbox,
            pending: BTreeMap::new(),
            status,
            stats,
            counters,
            presence,
            script: redis::Script::new(PUBLISH_SCRIPT),
            seed: redis::Script::new(session::SEED_SCRIPT),
            seq: 0,
            claim,
            claims: Claims::default(),
            claimed: false,
            echoes: Arc::default(),
            unpersisted: BTreeMap::new(),
            dead_letters: VecDeque::new(),
            legacy: BTreeMap::new(),
            reseed_pending: false,
            faults: SideFaults::default(),
            verified: false,
            session_slot: history::SessionSlot::default(),
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
                    Ok(()) => {
                        self.set_session(Some(&session.cmd));
                        let end = self.serve(&mut session, &shutdown).await;
                        self.set_session(None);
                        end
                    }
                    Err(d) => SessionEnd::Duplicate(d),
                },
                Err(e) => SessionEnd::Broken(e),
            };
            self.verified = false;
            self.counters.serving.store(false, Ordering::Relaxed);
            match end {
                SessionEnd::Shutdown | SessionEnd::Broken(SessionError::Stopped) => break,
                SessionEnd::Duplicate(d) => return Err(d.into()),
                SessionEnd::Broken(reason) => {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.degrade(&reason.to_string());
                }
            }
            // A session that lasted a while resets the backoff: this is a new outage.
            let timing = self.settings.timing;
            if started.elapsed() > timing.backoff_cap * 2 {
                attempt = 0;
            }
            let cap = match self.settings.topology {
                RedisTopology::Standalone => timing.backoff_cap,
                RedisTopology::Sentinel { .. } | RedisTopology::Cluster { .. } => timing.ha_backoff_cap,
            };
            let delay = backoff(attempt, timing.backoff_floor, cap);
            attempt = attempt.saturating_add(1);
            if self.wait_offline(delay, &shutdown).await {
                break;
            }
        }
        self.goodbye().await;
        Ok(())
    }

    /// A reader of the history stream that goes wherever this link's sessions go.
    pub fn history(&self) -> history::RedisHistory {
        history::RedisHistory::new(self.names.history(), self.session_slot.clone())
    }

    fn set_session(&self, cmd: Option<&Commands>) {
        *self.session_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = cmd.cloned();
    }

    fn degrade(&self, reason: &str) {
        self.counters.set_reason(Some(reason));
        self.status.send_replace(LinkStatus::Degraded);
        if let Some(suppressed) = self.log.allow("degraded", Instant::now()) {
            warn!(reason, suppressed, "Redis link degraded: running local-only, retrying in the background");
        }
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
        self.settings.timing.heartbeat * 3
    }
}

/// Capped exponential backoff with full jitter: `floor`, twice that, … up to `cap`, each scaled by 50–100 %.
/// With Sentinel or a Cluster the cap is lower (a failover takes seconds and asking again is cheap),
/// so the new master is found soon after it is in place.
fn backoff(attempt: u32, floor: Duration, cap: Duration) -> Duration {
    let exp = floor.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(cap);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let timing = RedisTiming::default();
        for cap in [timing.backoff_cap, timing.ha_backoff_cap] {
            for attempt in 0..40 {
                let d = backoff(attempt, timing.backoff_floor, cap);
                let ceiling = timing.backoff_floor.saturating_mul(1u32 << attempt.min(16)).min(cap);
                assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
            }
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
}
