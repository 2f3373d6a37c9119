//! The OSC stage's counters: what it sent, failed, coalesced, clamped, stepped, bundled and beat.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::CounterSet;

/// The stage's counters, registered with [`crate::stats::Stats`].
#[derive(Debug, Default)]
pub struct OscCounters {
    /// Datagrams sent (a bundle is one), per target.
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    /// Parameter values not sent because a later value for the same variable came in the same batch.
    pub coalesced: AtomicU64,
    /// Voltages the stage had to bring inside an output's limit: always 0 unless a bug let an
    /// out-of-limit value through every check before it.
    pub clamped: AtomicU64,
    /// Steps of travelling outputs (slew, ramp) sent at a tick: one per output (or `/lzx` variable) per tick.
    pub steps: AtomicU64,
    pub bundles: AtomicU64,
    pub heartbeats: AtomicU64,
}

impl CounterSet for OscCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for (name, c) in [
            ("osc_sent", &self.sent),
            ("osc_failed", &self.failed),
            ("osc_coalesced", &self.coalesced),
            ("osc_clamped", &self.clamped),
            ("osc_steps", &self.steps),
            ("osc_bundles", &self.bundles),
            ("osc_heartbeats", &self.heartbeats),
        ] {
            out(name, c.load(Ordering::Relaxed));
        }
    }
}
