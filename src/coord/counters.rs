//! The coordinator's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::gate::Denial;
use crate::stats::CounterSet;

/// The coordinator's counters, registered with [`crate::stats::Stats`] under these names.
#[derive(Debug, Default)]
pub struct CoordCounters {
    pub local_applied: AtomicU64,
    pub remote_applied: AtomicU64,
    /// Events (local or remote) that lost to a newer write and changed nothing.
    pub stale_events: AtomicU64,
    /// Local events not handed to the outbox because it was full.
    pub outbox_overflow: AtomicU64,
    pub denied_not_admin: AtomicU64,
    pub denied_cooldown: AtomicU64,
    pub denied_global_limit: AtomicU64,
    pub refused_emergency: AtomicU64,
    pub refused_input_jack: AtomicU64,
    /// Route commands (chat, HTTP) refused because their range or safe voltage left the output's limit.
    pub refused_out_of_limit: AtomicU64,
    /// Ramps longer than `RAMP_MAX_MS`.
    pub refused_ramp: AtomicU64,
    /// Viewer commands on a locked parameter.
    pub refused_locked: AtomicU64,
    /// Democracy's verdicts this instance applied, found already applied (by the tallier, or
    /// overtaken by a later write), or held back (locked, emergency stop).
    pub verdicts_applied: AtomicU64,
    pub verdicts_seen: AtomicU64,
    pub verdicts_held: AtomicU64,
    /// Local commands that changed nothing (already in that state) and were answered with why.
    pub unchanged: AtomicU64,
}

impl CoordCounters {
    pub(super) fn count_denial(&self, denial: Denial) {
        let counter = match denial {
            Denial::NotAdmin => &self.denied_not_admin,
            Denial::Cooldown => &self.denied_cooldown,
            Denial::GlobalLimit => &self.denied_global_limit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl CounterSet for CoordCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for (name, c) in [
            ("local_applied", &self.local_applied),
            ("remote_applied", &self.remote_applied),
            ("stale_events", &self.stale_events),
            ("outbox_overflow", &self.outbox_overflow),
            ("denied_not_admin", &self.denied_not_admin),
            ("denied_cooldown", &self.denied_cooldown),
            ("denied_global_limit", &self.denied_global_limit),
            ("refused_emergency", &self.refused_emergency),
            ("refused_input_jack", &self.refused_input_jack),
            ("refused_out_of_limit", &self.refused_out_of_limit),
            ("refused_ramp", &self.refused_ramp),
            ("refused_locked", &self.refused_locked),
            ("verdicts_applied", &self.verdicts_applied),
            ("verdicts_seen", &self.verdicts_seen),
            ("verdicts_held", &self.verdicts_held),
            ("unchanged", &self.unchanged),
        ] {
            out(name, c.load(Ordering::Relaxed));
        }
    }
}
