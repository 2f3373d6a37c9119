//! Latency samples and their summaries; pure.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Collected samples.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples { values: Vec::with_capacity(n) }
    }

    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
    }

    /// Moves `other`'s samples into these (one distribution measured in several blocks).
    pub fn append(&mut self, mut other: Samples) {
        self.values.append(&mut other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sorted microsecond values, for plots.
    pub fn sorted_us(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.values.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn summary(&self) -> Summary {
        let v = self.sorted_us();
        Summary {
            n: v.len(),
            p50_us: percentile(&v, 0.50),
            p90_us: percentile(&v, 0.90),
            p99_us: percentile(&v, 0.99),
            p999_us: percentile(&v, 0.999),
            max_us: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // q in 0..=1 and len is small.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 1.0) - 100.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).abs() < f64::EPSILON);
        let mut s = Samples::default();
        for us in [30, 10, 20] {
            s.push(Duration::from_micros(us));
        }
        let sum = s.summary();
        assert_eq!(sum.n, 3);
        assert!((sum.p50_us - 20.0).abs() < 1e-9 && (sum.max_us - 30.0).abs() < 1e-9);
    }
}
