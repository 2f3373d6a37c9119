//! `MAX_CLOCK_SKEW_MS`, `EVENT_MAX_AGE_MS` and the HTTP limits, read together.

use std::time::Duration;

use super::parse::{allowed_hosts, at_least};
use super::{ConfigError, Vars};

/// The bounds on what reaches the bot from outside: clocks, signatures, HTTP.
pub(super) struct Safety {
    pub(super) max_clock_skew: Duration,
    pub(super) event_max_age: Duration,
    pub(super) http_header_timeout: Duration,
    pub(super) http_max_connections: usize,
    pub(super) sse_max_clients: usize,
    pub(super) http_allowed_hosts: Vec<String>,
}

impl Safety {
    pub(super) fn from_vars(v: &Vars) -> Result<Safety, ConfigError> {
        let ms = |name: &'static str, bounds| at_least(name, v.get(name), bounds).map(Duration::from_millis);
        let count = |name: &'static str, default: u64| {
            at_least(name, v.get(name), (default, 1, 1_000_000)).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        Ok(Safety {
            max_clock_skew: ms("MAX_CLOCK_SKEW_MS", (10_000, 100, 24 * 3_600_000))?,
            event_max_age: ms("EVENT_MAX_AGE_MS", (60_000, 1_000, 24 * 3_600_000))?,
            http_header_timeout: ms("HTTP_HEADER_TIMEOUT_MS", (10_000, 100, 600_000))?,
            http_max_connections: count("HTTP_MAX_CONNECTIONS", 1024)?,
            sse_max_clients: count("SSE_MAX_CLIENTS", 256)?,
            http_allowed_hosts: allowed_hosts(v.get("HTTP_ALLOWED_HOSTS"))?,
        })
    }
}
