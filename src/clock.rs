//! The wall clock, in the one unit the envelopes, stamps and history use. A leaf: it imports nothing
//! of the crate, so every layer may read the time without reaching into another.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn wall_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
