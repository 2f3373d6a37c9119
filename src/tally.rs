//! Fixed-key counter arrays. A leaf, shared by `stats` and the counters of each stage.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter per entry of a fixed key list (parse errors, drop reasons, channels), so a reason
/// enum's `ALL` array is the only place its order is written down.
#[derive(Debug)]
pub struct Tally<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Tally(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Tally<N> {
    /// Counts one `key`; a key not in `keys` is ignored.
    pub fn add<K: PartialEq>(&self, keys: &[K; N], key: &K) {
        if let Some(i) = keys.iter().position(|k| k == key) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get<K: PartialEq>(&self, keys: &[K; N], key: &K) -> u64 {
        keys.iter().position(|k| k == key).map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }
}
