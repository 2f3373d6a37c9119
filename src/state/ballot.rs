//! The ballot: the votes of democracy's open windows, and the verdicts of the windows that closed.
//!
//! Pure, like the rest of `state`: time is the events' stamps and a `now` passed in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Hlc, Stamp};
use crate::catalog::Variable;
use crate::show::Mode;

/// How long after a window closes its votes are still taken, for votes on their way from another
/// instance; the tally waits this long.
pub const VOTE_GRACE_MS: u64 = 400;
/// At most this many votes are held across the open windows; a new voter beyond it is refused
/// (a viewer changing a vote already held still counts).
pub const MAX_BALLOT_VOTES: usize = 20_000;

/// One viewer's latest vote on one parameter in one window.
#[derive(Debug, Clone, PartialEq)]
struct Vote {
    value: u8,
    stamp: Stamp,
}

/// Where a parameter's vote stands: how many viewers voted and the median so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub votes: u32,
    /// The median of the votes; the lower middle one for an even count.
    pub median: u8,
}

impl Tally {
    /// The tally of `counts`, how many votes chose each value: a walk over the values to the lower
    /// middle vote, the same cost however many viewers voted.
    fn of(counts: &[u16; 256]) -> Option<Tally> {
        let votes: u32 = counts.iter().map(|c| u32::from(*c)).sum();
        let middle = votes.checked_sub(1)? / 2;
        let mut below = 0;
        for (value, count) in (0..=u8::MAX).zip(counts) {
            below += u32::from(*count);
            if below > middle {
                return Some(Tally { votes, median: value });
            }
        }
        None
    }
}

/// One parameter's voters in one window, and how many of them chose each value (kept as votes
/// come, so a tally on every vote never sorts them all). A count fits 16 bits: the ballot never
/// holds more votes than that in all.
#[derive(Debug, Clone, PartialEq)]
struct Voters {
    votes: BTreeMap<Arc<str>, Vote>,
    counts: Box<[u16; 256]>,
}

const _: () = assert!(MAX_BALLOT_VOTES <= u16::MAX as usize);

impl Default for Voters {
    fn default() -> Self {
        Voters { votes: BTreeMap::new(), counts: Box::new([0; 256]) }
    }
}

impl Voters {
    fn tally(&self) -> Option<Tally> {
        Tally::of(&self.counts)
    }
}

/// A closed window's result for one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub window: u64,
    /// Wall ms when the window closed: a write stamped at or after it means the window was decided.
    pub closed_at_ms: u64,
    pub variable: Variable,
    pub tally: Tally,
}

/// The votes of the open windows. A window is numbered from the democracy mode's start (the mode
/// register's stamp): window `k` holds votes stamped in `[start + k·len, start + (k+1)·len)`, so
/// every instance files a vote in the same window, whoever typed it and whichever path it took.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ballot {
    windows: BTreeMap<u64, BTreeMap<Variable, Voters>>,
    /// Windows up to this one (exclusive) are decided: later votes for them are refused.
    decided_before: u64,
    held: usize,
}

/// Why a vote was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteRefusal {
    /// No democracy, or a vote stamped before it started.
    NoDemocracy,
    /// The vote's window was already decided.
    Late,
    /// An older copy of a vote already held, or the same vote seen twice.
    Stale,
    /// [`MAX_BALLOT_VOTES`] held.
    Full,
}

impl Ballot {
    /// Files a vote by `viewer` stamped `stamp` under `mode` started at `start_ms`; the tally of its
    /// window and parameter when it counts.
    pub(super) fn cast(
        &mut self,
        mode: Mode,
        start_ms: u64,
        variable: &Variable,
        viewer: &Arc<str>,
        value: u8,
        stamp: &Stamp,
    ) -> Result<(u64, Tally), VoteRefusal> {
        let window = window_of(mode, start_ms, Hlc::wall_ms(stamp.hlc)).ok_or(VoteRefusal::NoDemocracy)?;
        if window < self.decided_before {
            return Err(VoteRefusal::Late);
        }
        let held = self.held;
        let voters = self.windows.entry(window).or_default().entry(variable.clone()).or_default();
        match voters.votes.get_mut(viewer) {
            Some(vote) if vote.stamp >= *stamp => return Err(VoteRefusal::Stale),
            Some(vote) => {
                voters.counts[usize::from(vote.value)] -= 1;
                *vote = Vote { value, stamp: stamp.clone() };
            }
            None if held >= MAX_BALLOT_VOTES => return Err(VoteRefusal::Full),
            None => {
                voters.votes.insert(viewer.clone(), Vote { value, stamp: stamp.clone() });
                self.held += 1;
            }
        }
        voters.counts[usize::from(value)] += 1;
        let tally = voters.tally().ok_or(VoteRefusal::Stale)?;
        Ok((window, tally))
    }

    /// The tally of one parameter in one window.
    pub fn tally(&self, window: u64, variable: &Variable) -> Option<Tally> {
        self.windows.get(&window)?.get(variable)?.tally()
    }

    /// Every parameter being voted on, with its window and tally.
    pub fn open(&self) -> impl Iterator<Item = (u64, &Variable, Tally)> {
        self.windows.iter().flat_map(move |(window, params)| {
            params.keys().filter_map(move |variable| Some((*window, variable, self.tally(*window, variable)?)))
        })
    }

    /// Decides every window that closed at least [`VOTE_GRACE_MS`] before `now_ms`: their votes
    /// go, later votes for them are refused, and each voted parameter's result is returned.
    pub(super) fn decide(&mut self, mode: Mode, start_ms: u64, now_ms: u64) -> Vec<Verdict> {
        let Some(current) = window_of(mode, start_ms, now_ms.saturating_sub(VOTE_GRACE_MS)) else {
            return Vec::new();
        };
        let mut verdicts = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            let window = *entry.key();
            if window >= current {
                break;
            }
            let closed_at_ms = Self::closes_at_ms(mode, start_ms, window).unwrap_or(u64::MAX);
            for (variable, voters) in entry.remove() {
                self.held = self.held.saturating_sub(voters.votes.len());
                if let Some(tally) = voters.tally() {
                    verdicts.push(Verdict { window, closed_at_ms, variable, tally });
                }
            }
        }
        self.decided_before = self.decided_before.max(current);
        verdicts
    }

    /// When window `window` closes, under `mode` started at `start_ms`.
    pub fn closes_at_ms(mode: Mode, start_ms: u64, window: u64) -> Option<u64> {
        let len = u64::from(mode.window_ms()?);
        Some(start_ms.saturating_add(window.saturating_add(1).saturating_mul(len)))
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

/// The window a moment falls in, under `mode` started at `start_ms`; `None` outside democracy or
/// before it started.
pub fn window_of(mode: Mode, start_ms: u64, at_ms: u64) -> Option<u64> {
    let len = u64::from(mode.window_ms()?);
    Some(at_ms.checked_sub(start_ms)? / len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn stamp(ms: u64, instance: &str) -> Stamp {
        Stamp { hlc: Hlc::from_wall_ms(ms), instance: instance.into() }
    }

    #[test]
    fn the_median_is_the_lower_middle_vote() {
        let cases: [(&[u8], u8); 5] =
            [(&[10, 20, 30, 100, 120], 30), (&[5], 5), (&[1, 9], 1), (&[9, 1, 5, 7], 5), (&[3, 3, 3], 3)];
        let counts = |votes: &[u8]| {
            let mut counts = [0u16; 256];
            for v in votes {
                counts[usize::from(*v)] += 1;
            }
            counts
        };
        for (votes, median) in cases {
            assert_eq!(Tally::of(&counts(votes)).map(|t| t.median), Some(median), "{votes:?}");
        }
        assert_eq!(Tally::of(&counts(&[])), None);
    }

    #[test]
    fn a_viewer_counts_once_with_their_latest_vote_and_a_duplicate_changes_nothing() {
        let c = Catalog::builtin();
        let var = c.parse_variable("doorway#1.threshold").expect("variable");
        let mode = Mode::Democracy { window_ms: 10_000 };
        let mut b = Ballot::default();
        let ann: Arc<str> = "ann".into();
        assert_eq!(b.cast(mode, 1_000, &var, &ann, 10, &stamp(2_000, "a")), Ok((0, Tally { votes: 1, median: 10 })));
        assert_eq!(b.cast(mode, 1_000, &var, &ann, 90, &stamp(3_000, "b")), Ok((0, Tally { votes: 1, median: 90 })));
        assert_eq!(b.cast(mode, 1_000, &var, &ann, 90, &stamp(3_000, "b")), Err(VoteRefusal::Stale));
        assert_eq!(b.cast(mode, 1_000, &var, &ann, 10, &stamp(2_000, "a")), Err(VoteRefusal::Stale));
        assert_eq!(b.cast(mode, 1_000, &var, &ann, 10, &stamp(500, "a")), Err(VoteRefusal::NoDemocracy));
        assert_eq!(b.cast(Mode::Anarchy, 1_000, &var, &ann, 10, &stamp(2_000, "a")), Err(VoteRefusal::NoDemocracy));
    }

    #[test]
    fn a_window_is_decided_after_its_grace_and_later_votes_for_it_are_late() {
        let c = Catalog::builtin();
        let var = c.parse_variable("doorway#1.threshold").expect("variable");
        let mode = Mode::Democracy { window_ms: 10_000 };
        let mut b = Ballot::default();
        for (i, value) in [10u8, 20, 30, 100, 120].into_iter().enumerate() {
            let viewer: Arc<str> = format!("v{i}").into();
            b.cast(mode, 0, &var, &viewer, value, &stamp(1_000 + i as u64, "a")).expect("counted");
        }
        assert!(b.decide(mode, 0, 10_000 + VOTE_GRACE_MS - 1).is_empty(), "still in its grace");
        let verdicts = b.decide(mode, 0, 10_000 + VOTE_GRACE_MS);
        assert_eq!(
            verdicts,
            vec![Verdict {
                window: 0,
                closed_at_ms: 10_000,
                variable: var.clone(),
                tally: Tally { votes: 5, median: 30 }
            }]
        );
        assert!(b.is_empty());
        let late: Arc<str> = "late".into();
        assert_eq!(b.cast(mode, 0, &var, &late, 1, &stamp(9_999, "a")), Err(VoteRefusal::Late));
        assert!(b.cast(mode, 0, &var, &late, 1, &stamp(10_001, "a")).is_ok(), "the next window is open");
    }
}
