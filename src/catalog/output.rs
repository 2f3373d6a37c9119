//! Hardware outputs and their voltage ranges.

use std::fmt;
use std::sync::Arc;

/// A hardware output such as `es9out#1` or `esx8cv#2.out#5`, in its catalogue spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Output(pub(super) Arc<str>);

impl Output {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The voltage span of an output: value 0 maps to `low`, value 127 to `high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoltRange {
    pub low: f32,
    pub high: f32,
}

impl VoltRange {
    /// LZX modules expect 0–1 V control voltages.
    pub const LZX: VoltRange = VoltRange { low: 0.0, high: 1.0 };

    /// The lower and upper end, whichever way round the range runs (a range may fall: 1 V → 0 V).
    pub fn bounds(self) -> (f32, f32) {
        (self.low.min(self.high), self.low.max(self.high))
    }

    /// True when `volts` lies within the range (ends included).
    pub fn contains(self, volts: f32) -> bool {
        let (lo, hi) = self.bounds();
        volts >= lo && volts <= hi
    }

    /// `volts` brought inside the range; a non-finite voltage (NaN) becomes the lower end.
    pub fn clamp(self, volts: f32) -> f32 {
        let (lo, hi) = self.bounds();
        if volts.is_nan() { lo } else { volts.clamp(lo, hi) }
    }

    /// The voltage for a chat value; values above the maximum are clamped rather than overshooting.
    pub fn voltage(self, value: u8, value_max: u8) -> f32 {
        let t = f32::from(value.min(value_max)) / f32::from(value_max.max(1));
        self.low + t * (self.high - self.low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping_keeps_every_voltage_inside_and_turns_nan_into_the_low_end() {
        let limit = VoltRange { low: 1.0, high: 0.0 };
        assert_eq!(limit.clamp(5.0), 1.0);
        assert_eq!(limit.clamp(-5.0), 0.0);
        assert_eq!(limit.clamp(f32::NAN), 0.0);
        assert_eq!(limit.clamp(f32::INFINITY), 1.0);
        assert_eq!(limit.clamp(0.25), 0.25);
    }

    #[test]
    fn voltage_scales_across_the_route_range() {
        assert!((VoltRange::LZX.voltage(127, 127) - 1.0).abs() < f32::EPSILON);
        assert!(VoltRange::LZX.voltage(0, 127).abs() < f32::EPSILON);
        let bipolar = VoltRange { low: -5.0, high: 5.0 };
        assert!((bipolar.voltage(0, 127) + 5.0).abs() < 1e-6);
        assert!((VoltRange::LZX.voltage(89, 127) - 89.0 / 127.0).abs() < 1e-6);
    }
}
