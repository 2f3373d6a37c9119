//! The democracy row's votes, planned before any is sent, and the tally they must come to; pure.

/// One vote the bench sends: `viewer` sets parameter `parameter` to `value` on instance `instance`
/// (0 is A, 1 is B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Vote {
    pub(super) viewer: usize,
    pub(super) parameter: usize,
    pub(super) value: u8,
    pub(super) instance: usize,
}

/// What a parameter's votes must come to: how many viewers count and their median.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Expected {
    pub(super) votes: u32,
    pub(super) median: u8,
}

/// The two rounds of votes: every viewer once (viewer `i` on parameter `i mod parameters`, on A and
/// B alternately), then every `revote_every`-th viewer again on the same parameter with a new value,
/// on the other instance, so a viewer's later vote must replace the earlier one wherever each was
/// typed. Values are drawn from `seed`, so a run's medians are the same every time.
pub(super) fn plan(
    viewers: usize,
    parameters: usize,
    revote_every: usize,
    value_max: u8,
    seed: u64,
) -> (Vec<Vote>, Vec<Vote>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let first: Vec<Vote> = (0..viewers)
        .map(|viewer| Vote {
            viewer,
            parameter: viewer % parameters,
            value: rng.u8(..=value_max),
            instance: viewer % 2,
        })
        .collect();
    let again = first
        .iter()
        .filter(|v| v.viewer % revote_every.max(1) == 0)
        .map(|v| Vote { value: other_value(v.value, value_max, &mut rng), instance: 1 - v.instance, ..*v })
        .collect();
    (first, again)
}

/// A value from `0..=value_max` other than `value`, so a changed vote is seen to change.
fn other_value(value: u8, value_max: u8, rng: &mut fastrand::Rng) -> u8 {
    if value_max == 0 {
        return value;
    }
    let span = u16::from(value_max) + 1;
    u8::try_from((u16::from(value) + 1 + u16::from(rng.u8(..value_max))) % span).unwrap_or(value)
}

/// Each parameter's tally when every viewer's latest vote on it counts once (`sent` in the order it
/// was sent), as the ballot keeps them: the median is the lower middle one of an even count.
/// `None` for a parameter nobody voted on.
pub(super) fn expected(sent: &[Vote], parameters: usize) -> Vec<Option<Expected>> {
    let mut latest = std::collections::HashMap::new();
    for v in sent {
        latest.insert((v.viewer, v.parameter), v.value);
    }
    let mut values = vec![Vec::new(); parameters];
    for ((_, parameter), value) in latest {
        if let Some(list) = values.get_mut(parameter) {
            list.push(value);
        }
    }
    values
        .into_iter()
        .map(|mut list| {
            list.sort_unstable();
            let median = *list.get(list.len().checked_sub(1)? / 2)?;
            Some(Expected { votes: u32::try_from(list.len()).unwrap_or(u32::MAX), median })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(viewer: usize, parameter: usize, value: u8) -> Vote {
        Vote { viewer, parameter, value, instance: 0 }
    }

    #[test]
    fn a_later_vote_replaces_the_earlier_and_the_median_is_the_lower_middle() {
        // Parameter 0: 10, 20, 30, 100 (viewer 3 changed 5 to 100): the lower middle of four is 20.
        let sent = [vote(0, 0, 10), vote(1, 0, 30), vote(2, 0, 20), vote(3, 0, 5), vote(3, 0, 100), vote(4, 1, 7)];
        let tallies = expected(&sent, 3);
        assert_eq!(tallies[0], Some(Expected { votes: 4, median: 20 }));
        assert_eq!(tallies[1], Some(Expected { votes: 1, median: 7 }));
        assert_eq!(tallies[2], None, "nobody voted on it");
        // Viewer 3 on another parameter counts there as well.
        let tallies = expected(&[vote(3, 0, 5), vote(3, 1, 9)], 2);
        assert_eq!(tallies, vec![Some(Expected { votes: 1, median: 5 }), Some(Expected { votes: 1, median: 9 })]);
    }

    #[test]
    fn the_plan_splits_the_viewers_over_both_instances_and_the_second_votes_cross_over() {
        let (first, again) = plan(100, 16, 10, 127, 7);
        assert_eq!(first.len(), 100);
        assert_eq!(first.iter().filter(|v| v.instance == 0).count(), 50);
        assert!(first.iter().all(|v| v.value <= 127 && v.parameter == v.viewer % 16));
        assert_eq!(again.len(), 10);
        for v in &again {
            let earlier = first[v.viewer];
            assert_eq!((v.parameter, v.instance), (earlier.parameter, 1 - earlier.instance), "{v:?}");
            assert_ne!(v.value, earlier.value, "a changed vote: {v:?}");
        }
        assert_eq!(plan(100, 16, 10, 127, 7), (first, again), "one seed, one plan");
        // Every viewer counts once, however many times they voted.
        let sent: Vec<Vote> = plan(100, 16, 10, 127, 7).0.into_iter().chain(plan(100, 16, 10, 127, 7).1).collect();
        let counted: u32 = expected(&sent, 16).iter().flatten().map(|e| e.votes).sum();
        assert_eq!(counted, 100);
    }
}
