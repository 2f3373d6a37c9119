//! The link's counters and gauges, registered with `Stats` by the link's owner; health reads the
//! gauges (serving, reason, endpoint, impostor, peer clocks) from here directly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::wire::{self, DropReason};
use crate::clock::wall_ms_now;
use crate::stats::CounterSet;
use crate::tally::Tally;

/// Link counters, registered with [`crate::stats::Stats`] as a [`CounterSet`].
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub published: AtomicU64,
    /// Unpublished events dropped, oldest first, because the link's outbox was full.
    pub outbox_dropped: AtomicU64,
    /// How far ahead of our clock each peer has stamped events.
    pub peer_clocks: PeerClocks,
    pub publish_failed: AtomicU64,
    pub unpublished: AtomicU64,
    pub received: AtomicU64,
    pub own_ignored: AtomicU64,
    pub(super) dropped: Tally<{ DropReason::ALL.len() }>,
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
    /// Registers written back into the state hash because it lacked them or held them older
    /// (anti-entropy at the start of each session, and after Redis lost its data).
    pub reseeded: AtomicU64,
    /// Times Redis was found to have lost its data under a live session (the epoch key gone or changed).
    pub data_lost: AtomicU64,
    /// Values from older bots (events without an `hlc`) written into the state hash by us.
    pub legacy_persisted: AtomicU64,
    /// Sessions ended by a failover: the sentinels' `+switch-master`, or a master that turned replica.
    pub failovers: AtomicU64,
    /// True while a session is proven by a probe and serving, even when side writes fail (so the
    /// link may be `degraded` and still carry every event).
    pub serving: AtomicBool,
    pub(super) impostor: std::sync::Mutex<Option<ImpostorSeen>>,
    /// Published and received events per event channel, in [`wire::EVENT_CHANNELS`] order.
    pub(super) published_on: Tally<{ wire::EVENT_CHANNELS.len() }>,
    pub(super) received_on: Tally<{ wire::EVENT_CHANNELS.len() }>,
    pub(super) reason: std::sync::Mutex<Option<String>>,
    pub(super) endpoint: std::sync::Mutex<Option<String>>,
}

/// The last event seen under our `INSTANCE_ID` that this process did not publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImpostorSeen {
    pub channel: String,
    /// Wall-clock milliseconds.
    pub at_ms: u64,
}

impl LinkCounters {
    pub(super) fn note_impostor(&self, channel: &str) {
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

    pub(super) fn count_channel(counters: &Tally<{ wire::EVENT_CHANNELS.len() }>, channel: &str) {
        counters.add(&wire::EVENT_CHANNELS, &channel);
    }

    /// Why the link is degraded, if it is.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Where the current (or last) session is connected.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(super) fn set_endpoint(&self, endpoint: &str) {
        *self.endpoint.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(endpoint.to_owned());
    }

    pub(super) fn set_reason(&self, reason: Option<&str>) {
        *self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = reason.map(str::to_owned);
    }
}

impl CounterSet for LinkCounters {
    /// The `redis_*` counters.
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for reason in DropReason::ALL {
            out(&format!("redis_dropped_{}", reason.label()), self.dropped(reason));
        }
        for channel in &wire::EVENT_CHANNELS {
            let name = channel.trim_start_matches("cv:").replace(':', "_");
            out(&format!("redis_published_{name}"), self.published_on.get(&wire::EVENT_CHANNELS, channel));
            out(&format!("redis_received_{name}"), self.received_on.get(&wire::EVENT_CHANNELS, channel));
        }
        for (name, c) in [
            ("redis_published", &self.published),
            ("redis_outbox_dropped", &self.outbox_dropped),
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
            ("redis_reseeded", &self.reseeded),
            ("redis_data_lost", &self.data_lost),
            ("redis_legacy_persisted", &self.legacy_persisted),
            ("redis_failovers", &self.failovers),
        ] {
            out(name, c.load(Ordering::Relaxed));
        }
    }
}

/// Most peers whose clock offsets are tracked; a bound, so a publisher inventing instance names
/// cannot grow the map.
pub const MAX_PEER_CLOCKS: usize = 256;

/// The furthest ahead of this host's clock each peer instance has stamped an event (milliseconds;
/// negative when it has only ever been behind), for health and `/metrics`.
#[derive(Debug, Default)]
pub struct PeerClocks(Mutex<BTreeMap<String, i64>>);

impl PeerClocks {
    /// Keeps the larger of the known and the new offset for `peer`.
    pub fn note(&self, peer: &str, ahead_ms: i64) {
        let mut peers = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = peers.len() >= MAX_PEER_CLOCKS;
        match peers.get_mut(peer) {
            Some(max) => *max = (*max).max(ahead_ms),
            None if !full => {
                peers.insert(peer.to_owned(), ahead_ms);
            }
            None => {}
        }
    }

    /// Every peer's largest offset, by name.
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
