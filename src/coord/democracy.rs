//! Democracy's tally: when a window's grace runs out every instance decides it from the same
//! ballot, and one of them (the tallier) applies each parameter's median as one ordinary write.
//!
//! The tallier is the first live instance by name. The others keep each verdict for a while longer
//! (one [`BACKUP_STEP_MS`] per place in the name order) and apply it only if no write reached the
//! parameter since the window closed: so a tallier that died mid-window is replaced by the next one,
//! and a live one's result is never doubled.

use std::sync::atomic::Ordering;

use super::Coordinator;
use crate::state::{EventKind, Verdict};

/// How much later each instance after the tallier applies a verdict nobody applied.
pub const BACKUP_STEP_MS: u64 = 1_000;
/// At most this many verdicts wait for their turn; the oldest go first when more arrive.
const MAX_PENDING: usize = 4_096;

/// A verdict waiting for this instance's turn.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    verdict: Verdict,
    due_ms: u64,
}

impl Coordinator {
    /// Decides the windows whose grace ran out by `wall_ms` and applies the verdicts that are this
    /// instance's to apply; true while democracy holds or verdicts still wait.
    pub(super) fn decide(&mut self, wall_ms: u64) -> bool {
        let verdicts = self.state.decide(wall_ms);
        if !verdicts.is_empty() {
            let delay = self.tally_rank().saturating_mul(BACKUP_STEP_MS);
            for verdict in verdicts {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.remove(0);
                }
                self.pending.push(Pending { verdict, due_ms: wall_ms.saturating_add(delay) });
            }
        }
        let (due, waiting): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.due_ms <= wall_ms);
        self.pending = waiting;
        for Pending { verdict, .. } in due {
            self.apply_verdict(verdict, wall_ms);
        }
        self.state.mode().window_ms().is_some() || !self.pending.is_empty()
    }

    /// This instance's place among the live instances that publish, by name: 0 is the tallier. One
    /// that does not publish comes after them all: it applies a verdict to itself only if none
    /// reached it.
    fn tally_rank(&self) -> u64 {
        let mut talliers = self.presence.talliers();
        talliers.sort();
        let rank = talliers.iter().position(|name| name.as_str() == self.instance.as_ref()).unwrap_or(talliers.len());
        u64::try_from(rank).unwrap_or(u64::MAX)
    }

    /// Applies one verdict as a write by `chat (N votes)`, unless the parameter was written since
    /// its window closed (the tallier's result, or an admin's later word), it is locked, or an
    /// emergency stop holds.
    fn apply_verdict(&mut self, verdict: Verdict, wall_ms: u64) {
        let Verdict { closed_at_ms, variable, tally, .. } = verdict;
        let decided =
            self.state.param(&variable).is_some_and(|p| crate::state::Hlc::wall_ms(p.stamp.hlc) >= closed_at_ms);
        if decided {
            self.counters.verdicts_seen.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.state.emergency().active || self.state.locked_by(&variable).is_some() {
            self.counters.verdicts_held.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let user = format!("chat ({} vote{})", tally.votes, if tally.votes == 1 { "" } else { "s" });
        let kind = EventKind::Set { variable, value: tally.median, ramp: None };
        if !self.originate(&user, vec![kind], wall_ms).is_empty() {
            self.counters.verdicts_applied.fetch_add(1, Ordering::Relaxed);
        }
    }
}
