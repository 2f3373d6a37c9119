//! The registry of every module's counters, which the HTTP layer reports; the Redis link's status;
//! and a log throttle for repeated failures. A leaf: it imports nothing above it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A module's own counters, registered with [`Stats`] when the module is built. Each counter is
/// monotonic unless its doc says it is a gauge; names are unique across the process.
pub trait CounterSet: Send + Sync + std::fmt::Debug {
    /// Every counter of the set, by name.
    fn report(&self, out: &mut dyn FnMut(&str, u64));
}

/// Every module's counters, for `/api/stats`, `/metrics` and the status report. Each module owns
/// and bumps its own set ([`CounterSet`]); `Stats` only knows how to list them, so it imports no
/// module above it.
#[derive(Debug, Default)]
pub struct Stats {
    sets: Mutex<Vec<Arc<dyn CounterSet>>>,
}

impl Stats {
    /// Adds a module's counters to every later snapshot.
    pub fn register(&self, set: Arc<dyn CounterSet>) {
        self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(set);
    }

    /// Every counter by name. A name two sets report (two sources of one kind in one process, as in
    /// the tests) is summed.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let sets: Vec<Arc<dyn CounterSet>> =
            self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut out = BTreeMap::new();
        for set in sets {
            set.report(&mut |name, value| *out.entry(name.to_owned()).or_insert(0) += value);
        }
        out
    }
}

/// Lets a repeated failure be logged once per interval per reason, with the count it swallowed.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Mutex<BTreeMap<&'static str, (Instant, u64)>>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::per_minute()
    }
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

    #[derive(Debug)]
    struct Two(u64);

    impl CounterSet for Two {
        fn report(&self, out: &mut dyn FnMut(&str, u64)) {
            out("shared", self.0);
            out(if self.0 == 1 { "one" } else { "other" }, 7);
        }
    }

    #[test]
    fn a_snapshot_lists_every_registered_set_and_sums_a_shared_name() {
        let s = Stats::default();
        assert!(s.snapshot().is_empty());
        s.register(Arc::new(Two(1)));
        s.register(Arc::new(Two(2)));
        let snap = s.snapshot();
        assert_eq!(snap["shared"], 3);
        assert_eq!((snap["one"], snap["other"]), (7, 7));
        assert_eq!(snap.len(), 3);
    }
}
