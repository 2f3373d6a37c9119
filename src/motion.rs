//! Motion: how a value travels to its target. Timed ramps (in chat values) and slew limits (in volts
//! per second on an output), as pure functions of time, so every instance that holds the same event
//! computes the same curve.
//!
//! A leaf: the state keeps a [`Ramp`] beside a parameter's target, the routes keep a slew rate, and
//! the OSC stage evaluates both at each tick. Nothing here knows a clock; callers pass the time.

use serde::Serialize;

/// The longest ramp any source may carry, in milliseconds: a protocol bound, the same on every
/// instance, so no instance refuses a ramp another applied. `RAMP_MAX_MS` bounds chat below it.
pub const RAMP_LIMIT_MS: u32 = 600_000;

/// The longest ramp chat may ask for unless `RAMP_MAX_MS` says otherwise: ten seconds.
pub const DEFAULT_RAMP_MAX_MS: u32 = 10_000;

/// The fastest slew a route may ask for, in volts per second. Faster than any output can usefully
/// follow at the tick (a 20 V swing in 20 ms), and finite, so the arithmetic stays finite too.
pub const SLEW_LIMIT: f32 = 1000.0;

/// A timed move of a parameter from `from` (a chat value, possibly fractional: where an earlier
/// ramp had got to) to the register's value, over `ms` milliseconds from the event's wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ramp {
    pub from: f32,
    pub ms: u32,
}

/// Why a ramp or a slew rate from outside is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MotionError {
    #[error("a ramp starts from a chat value between 0 and the maximum")]
    BadStart,
    #[error("a ramp lasts at most {RAMP_LIMIT_MS} ms")]
    TooLong,
    #[error("a slew rate is a number of volts per second from 0 (off) to {SLEW_LIMIT}")]
    BadSlew,
}

impl Ramp {
    /// A ramp from outside (a peer, the state hash), checked: `from` within `0..=value_max`, `ms`
    /// within the protocol bound. A zero-length ramp is no ramp (`Ok(None)`).
    pub fn checked(from: f64, ms: u64, value_max: u8) -> Result<Option<Ramp>, MotionError> {
        if !(0.0..=f64::from(value_max)).contains(&from) {
            return Err(MotionError::BadStart);
        }
        let ms = u32::try_from(ms).ok().filter(|ms| *ms <= RAMP_LIMIT_MS).ok_or(MotionError::TooLong)?;
        // In range, so the narrowing keeps the value to f32 precision.
        #[allow(clippy::cast_possible_truncation)]
        let from = from as f32;
        Ok((ms > 0).then_some(Ramp { from, ms }))
    }

    /// How far through the ramp `now_ms` is, from 0 (not started: the start is in the future) to 1.
    pub fn progress(&self, start_ms: u64, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(start_ms);
        if elapsed >= u64::from(self.ms) {
            return 1.0;
        }
        // Both below 2^32: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let t = elapsed as f64 / f64::from(self.ms);
        t
    }

    /// The value at `now_ms` of a ramp that started at `start_ms` towards `to`: linear, exactly `to`
    /// from the end on.
    pub fn position(&self, start_ms: u64, to: u8, now_ms: u64) -> f32 {
        let t = self.progress(start_ms, now_ms);
        if t >= 1.0 {
            return f32::from(to);
        }
        let from = f64::from(self.from);
        // Between two chat values, so within f32 range.
        #[allow(clippy::cast_possible_truncation)]
        let at = (from + (f64::from(to) - from) * t) as f32;
        at
    }

    pub fn done(&self, start_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(start_ms) >= u64::from(self.ms)
    }
}

/// A slew rate from outside, checked: finite, from 0 (off) to [`SLEW_LIMIT`] volts per second.
pub fn checked_slew(volts_per_second: f64) -> Result<f32, MotionError> {
    if !(0.0..=f64::from(SLEW_LIMIT)).contains(&volts_per_second) {
        return Err(MotionError::BadSlew);
    }
    // In range, so the narrowing keeps the value to f32 precision.
    #[allow(clippy::cast_possible_truncation)]
    Ok(volts_per_second as f32)
}

/// One step of a slew limiter: `at` moved towards `target` by at most `max_step`, landing exactly
/// on `target` when it is within reach.
pub fn approach(at: f32, target: f32, max_step: f32) -> f32 {
    let distance = target - at;
    if distance.abs() <= max_step || !at.is_finite() { target } else { at + max_step.copysign(distance) }
}

/// A duration in milliseconds as a reply says it: `10s`, `2.5s`, `500ms`.
pub fn duration_text(ms: u32) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{}s", f64::from(ms) / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_is_linear_from_its_start_and_exact_at_its_end() {
        let ramp = Ramp { from: 0.0, ms: 1000 };
        assert_eq!(ramp.position(10_000, 100, 9_000), 0.0, "before its start a ramp sits at its start");
        assert_eq!(ramp.position(10_000, 100, 10_000), 0.0);
        assert!((ramp.position(10_000, 100, 10_500) - 50.0).abs() < 1e-4);
        assert!((ramp.position(10_000, 100, 10_250) - 25.0).abs() < 1e-4);
        assert_eq!(ramp.position(10_000, 100, 11_000), 100.0);
        assert_eq!(ramp.position(10_000, 100, u64::MAX), 100.0);
        let down = Ramp { from: 127.0, ms: 2000 };
        assert!((down.position(0, 27, 1000) - 77.0).abs() < 1e-4, "ramps run downwards too");
        assert!(!down.done(0, 1999) && down.done(0, 2000));
    }

    #[test]
    fn ramps_and_slews_from_outside_are_bounded() {
        assert_eq!(Ramp::checked(12.5, 2000, 127), Ok(Some(Ramp { from: 12.5, ms: 2000 })));
        assert_eq!(Ramp::checked(0.0, 0, 127), Ok(None), "a zero-length ramp is a jump");
        for from in [-0.1, 127.5, f64::NAN, f64::INFINITY] {
            assert_eq!(Ramp::checked(from, 10, 127), Err(MotionError::BadStart), "{from}");
        }
        assert_eq!(Ramp::checked(1.0, u64::from(RAMP_LIMIT_MS) + 1, 127), Err(MotionError::TooLong));
        assert_eq!(Ramp::checked(1.0, u64::MAX, 127), Err(MotionError::TooLong));
        assert_eq!(checked_slew(2.0), Ok(2.0));
        assert_eq!(checked_slew(0.0), Ok(0.0));
        for slew in [-1.0, 1000.5, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(checked_slew(slew), Err(MotionError::BadSlew), "{slew}");
        }
    }

    #[test]
    fn a_slew_step_never_overshoots() {
        assert_eq!(approach(0.0, 1.0, 0.25), 0.25);
        assert_eq!(approach(1.0, 0.0, 0.25), 0.75);
        assert_eq!(approach(0.9, 1.0, 0.25), 1.0, "lands exactly on the target");
        assert_eq!(approach(0.5, 0.5, 0.0), 0.5);
        assert_eq!(approach(f32::NAN, 0.3, 0.01), 0.3, "a position that is not a number is abandoned");
    }
}
