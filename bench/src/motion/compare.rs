//! Two instances' series of one ramp compared at the same instants; pure.

use super::{RampRun, SAME_V};

/// Two series of (arrival in ms, volts), each ending at `to_v`, compared within the span where
/// both are ramping: from the later first step up to (not including) the earlier arrival at the
/// target, where the line ends and interpolating the other series across its end would not be
/// linear. `None` when a series is empty or never reaches the target.
pub(super) fn compare(a: &[(f64, f64)], b: &[(f64, f64)], to_v: f64) -> Option<RampRun> {
    let end = |s: &[(f64, f64)]| s.iter().find(|(_, v)| (v - to_v).abs() < f64::from(SAME_V)).map(|(t, _)| *t);
    let (end_a, end_b) = (end(a)?, end(b)?);
    let (start, stop) = (a.first()?.0.max(b.first()?.0), end_a.min(end_b));
    let (mut interpolated, mut held) = (0.0f64, 0.0f64);
    for (this, other) in [(a, b), (b, a)] {
        for &(t, v) in this.iter().filter(|(t, _)| (start..stop).contains(t)) {
            interpolated = interpolated.max((v - interpolate(other, t)).abs());
            held = held.max((hold(this, t) - hold(other, t)).abs());
        }
    }
    Some(RampRun {
        interpolated_v: interpolated,
        held_v: held,
        start_ms: b.first()?.0 - a.first()?.0,
        end_ms: end_b - end_a,
        steps_a: a.len(),
        steps_b: b.len(),
    })
}

/// `s` at `t`, linear between its samples (and its first or last value outside them).
fn interpolate(s: &[(f64, f64)], t: f64) -> f64 {
    let after = s.partition_point(|(at, _)| *at <= t);
    match (after.checked_sub(1).map(|i| s[i]), s.get(after)) {
        (Some((t0, v0)), Some(&(t1, v1))) if t1 > t0 => v0 + (v1 - v0) * (t - t0) / (t1 - t0),
        (Some((_, v)), _) | (None, Some(&(_, v))) => v,
        (None, None) => 0.0,
    }
}

/// What an output fed `s` holds at `t`: its last step by then (its first, before any).
fn hold(s: &[(f64, f64)], t: f64) -> f64 {
    let after = s.partition_point(|(at, _)| *at <= t);
    s.get(after.saturating_sub(1)).map_or(0.0, |(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_samplings_of_one_line_agree_on_the_line_and_differ_by_the_phase_when_held() {
        // 1 V over 100 ms, A stepping every 5 ms from 0, B from 2 ms on; both land on 1 V at 100 and 102 ms.
        let line = |t: f64| (t / 100.0).min(1.0);
        let a: Vec<(f64, f64)> = (0..=20).map(|i| f64::from(i) * 5.0).map(|t| (t, line(t))).collect();
        let b: Vec<(f64, f64)> = (0..=20).map(|i| f64::from(i) * 5.0 + 2.0).map(|t| (t, line(t))).collect();
        let run = compare(&a, &b, 1.0).expect("both reach the target");
        assert!(run.interpolated_v < 1e-9, "{run:?}");
        // From each of A's steps to B's next, A holds 3 ms worth of line more than B.
        assert!((run.held_v - 0.03).abs() < 1e-9, "{run:?}");
        assert!((run.start_ms - 2.0).abs() < 1e-9 && (run.end_ms - 2.0).abs() < 1e-9, "{run:?}");
        assert_eq!((run.steps_a, run.steps_b), (21, 21));
    }

    #[test]
    fn a_lagging_curve_shows_as_interpolated_difference() {
        let a: Vec<(f64, f64)> = (0..=10).map(|i| (f64::from(i) * 10.0, f64::from(i) / 10.0)).collect();
        // B draws the same line 0.1 V lower until it lands.
        let mut b: Vec<(f64, f64)> = a.iter().map(|&(t, v)| (t, (v - 0.1).max(0.0))).collect();
        b.push((100.0, 1.0));
        let run = compare(&a, &b, 1.0).expect("both reach the target");
        assert!((run.interpolated_v - 0.1).abs() < 1e-9, "{run:?}");
        assert!(compare(&a, &[], 1.0).is_none(), "no series, nothing to compare");
        assert!(compare(&a, &b[..5], 1.0).is_none(), "B never arrived");
    }

    #[test]
    fn interpolation_and_holding_between_and_outside_samples() {
        let s = [(0.0, 0.0), (10.0, 1.0)];
        assert!((interpolate(&s, 5.0) - 0.5).abs() < 1e-12);
        assert!((interpolate(&s, -1.0)).abs() < 1e-12 && (interpolate(&s, 11.0) - 1.0).abs() < 1e-12);
        assert!(hold(&s, 9.9).abs() < 1e-12 && (hold(&s, 10.0) - 1.0).abs() < 1e-12);
    }
}
