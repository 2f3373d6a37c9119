//! Counters every stage bumps and the HTTP layer reports; plus a log throttle for per-item failures.
//!
//! Lock-free atomics only; knows nothing of the stages beyond their counter names.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::command::ParseError;
use crate::gate::Denial;
use crate::redis_link::counters::LinkCounters;
pub use crate::tally::Tally;

/// The Redis link's state as health and `/api/state` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// `ENABLE_REDIS_EVENTS=false` or no Redis link in this build: local-only by choice.
    Disabled,
    Connecting,
    Connected,
    /// Running local-only while the link recovers.
    Degraded,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Degraded => "degraded",
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

/// Process-wide counters. Each is monotonic; readers take a [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub chat_lines: AtomicU64,
    /// Lines that were attempts at a command but invalid, by [`ParseError`] (index = position in `ALL`).
    invalid: Tally<{ ParseError::ALL.len() }>,
    pub denied_not_admin: AtomicU64,
    pub denied_cooldown: AtomicU64,
    pub denied_global_limit: AtomicU64,
    pub refused_emergency: AtomicU64,
    pub refused_input_jack: AtomicU64,
    /// Viewer commands dropped because a chat source's work queue was full.
    pub dropped_overload: AtomicU64,
    pub local_applied: AtomicU64,
    pub remote_applied: AtomicU64,
    /// Events (local or remote) that lost to a newer write and changed nothing.
    pub stale_events: AtomicU64,
    /// Local events not handed to the outbox because it was full.
    pub outbox_overflow: AtomicU64,
    pub osc_sent: AtomicU64,
    pub osc_failed: AtomicU64,
    /// Parameter values not sent because a later value for the same variable came in the same batch.
    pub osc_coalesced: AtomicU64,
    /// Times a change-feed reader (overlay hub, routing file) fell behind and resynchronised from a snapshot.
    pub feed_resyncs: AtomicU64,
    pub routing_saves: AtomicU64,
    pub routing_save_failures: AtomicU64,
    /// The Redis link's counters.
    pub redis: LinkCounters,
    /// Twitch messages seen twice (same message id, e.g. across a reconnect) and ignored the second time.
    pub chat_duplicates: AtomicU64,
    /// Chat replies sent (one per 500-character part).
    pub replies_sent: AtomicU64,
    /// Chat replies dropped: reply queue full, over Twitch's rate limit for too long, or a viewer
    /// error reply with no room left.
    pub replies_dropped: AtomicU64,
    /// Chat replies the IRC connection failed to send.
    pub replies_failed: AtomicU64,
    /// How far ahead of our clock each peer has stamped events.
    pub peer_clocks: PeerClocks,
    /// Voltages the OSC stage had to bring inside an output's limit: always 0 unless a bug let an
    /// out-of-limit value through every check before it.
    pub osc_clamped: AtomicU64,
    /// Local commands that changed nothing (already in that state) and were answered with why.
    pub unchanged: AtomicU64,
    /// Route commands (chat, HTTP) refused because their range or safe voltage left the output's limit.
    pub refused_out_of_limit: AtomicU64,
    /// Twitch chat lines shed at the socket during a flood (ordinary viewers' PRIVMSGs while too many
    /// were in flight), or server lines too long to be Twitch's.
    pub chat_shed: AtomicU64,
    /// Terminal chat lines longer than `chat::MAX_LINE_BYTES`, discarded as they were read.
    pub terminal_too_long: AtomicU64,
    /// Terminal chat lines that were not UTF-8, skipped.
    pub terminal_not_utf8: AtomicU64,
}

impl Stats {
    pub fn count_invalid(&self, reason: ParseError) {
        self.invalid.add(&ParseError::ALL, &reason);
    }

    pub fn invalid(&self, reason: ParseError) -> u64 {
        self.invalid.get(&ParseError::ALL, &reason)
    }

    pub fn count_denial(&self, denial: Denial) {
        let counter = match denial {
            Denial::NotAdmin => &self.denied_not_admin,
            Denial::Cooldown => &self.denied_cooldown,
            Denial::GlobalLimit => &self.denied_global_limit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter by name, for `/api/stats`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = BTreeMap::new();
        for reason in ParseError::ALL {
            if reason != ParseError::NotACommand {
                out.insert(format!("invalid_{}", reason.label()), self.invalid(reason));
            }
        }
        for (name, c) in [
            ("chat_lines", &self.chat_lines),
            ("denied_not_admin", &self.denied_not_admin),
            ("denied_cooldown", &self.denied_cooldown),
            ("denied_global_limit", &self.denied_global_limit),
            ("refused_emergency", &self.refused_emergency),
            ("refused_input_jack", &self.refused_input_jack),
            ("dropped_overload", &self.dropped_overload),
            ("local_applied", &self.local_applied),
            ("remote_applied", &self.remote_applied),
            ("stale_events", &self.stale_events),
            ("outbox_overflow", &self.outbox_overflow),
            ("osc_sent", &self.osc_sent),
            ("osc_failed", &self.osc_failed),
            ("osc_coalesced", &self.osc_coalesced),
            ("osc_clamped", &self.osc_clamped),
            ("unchanged", &self.unchanged),
            ("refused_out_of_limit", &self.refused_out_of_limit),
            ("feed_resyncs", &self.feed_resyncs),
            ("routing_saves", &self.routing_saves),
            ("routing_save_failures", &self.routing_save_failures),
            ("chat_duplicates", &self.chat_duplicates),
            ("replies_sent", &self.replies_sent),
            ("replies_dropped", &self.replies_dropped),
            ("replies_failed", &self.replies_failed),
            ("chat_shed", &self.chat_shed),
            ("terminal_too_long", &self.terminal_too_long),
            ("terminal_not_utf8", &self.terminal_not_utf8),
        ] {
            out.insert(name.to_owned(), get(c));
        }
        self.redis.snapshot_into(&mut out);
        out
    }
}

/// Lets a repeated failure be logged once per interval per reason, with the count it swallowed.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Mutex<BTreeMap<&'static str, (Instant, u64)>>,
}

impl LogThrottle {
    pub fn per_minute() -> LogThrottle {
        LogThrottle { interval: Duration::from_secs(60), last: Mutex::new(BTreeMap::new()) }
    }

    /// Returns `Some(suppressed)` when a line for `reason` should be logged now, with how many were
    /// suppressed since the last one; `None` to stay quiet.
    pub fn allow(&self, reason: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get_mut(reason) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_once_per_interval_and_reports_what_it_swallowed() {
        let t = LogThrottle::per_minute();
        let t0 = Instant::now();
        assert_eq!(t.allow("send", t0), Some(0));
        assert_eq!(t.allow("send", t0 + Duration::from_secs(1)), None);
        assert_eq!(t.allow("send", t0 + Duration::from_secs(2)), None);
        assert_eq!(t.allow("other", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(t.allow("send", t0 + Duration::from_secs(61)), Some(2));
    }

    #[test]
    fn invalid_counts_are_kept_per_reason() {
        let s = Stats::default();
        s.count_invalid(ParseError::BadValue);
        s.count_invalid(ParseError::BadValue);
        s.count_invalid(ParseError::UnknownVariable);
        let snap = s.snapshot();
        assert_eq!(snap["invalid_bad_value"], 2);
        assert_eq!(snap["invalid_unknown_variable"], 1);
        assert_eq!(snap["invalid_malformed"], 0);
    }
}
