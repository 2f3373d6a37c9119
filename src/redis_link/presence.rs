//! Presence: which instances are live, and refusing a second live instance with our `INSTANCE_ID`.
//!
//! Each instance holds a claim key `{cv}:instance:{id}` with a TTL refreshed by its heartbeat and a
//! score in the `{cv}:instances` sorted set. Knows Redis commands, not the event wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::coord::Presence;

/// What an instance writes into its claim key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// Random per process: tells our own claim (after a reconnect) from another process's.
    pub token: String,
    pub heartbeat_ms: u64,
}

/// A second live instance already uses our `INSTANCE_ID`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "INSTANCE_ID {instance} is already in use by a live instance on host {host} (pid {pid}); give this \
     instance another INSTANCE_ID (if that instance is gone, its claim expires within {ttl_s} s)"
)]
pub struct DuplicateInstance {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub ttl_s: u64,
}

/// The live instance list `!admin instances` reads; the link refreshes it on every heartbeat.
#[derive(Debug)]
pub struct ClusterPresence {
    me: String,
    live: Mutex<Vec<String>>,
}

impl ClusterPresence {
    pub fn new(me: &str) -> Arc<ClusterPresence> {
        Arc::new(ClusterPresence { me: me.to_owned(), live: Mutex::new(vec![me.to_owned()]) })
    }

    pub fn set_live(&self, mut live: Vec<String>) {
        if !live.contains(&self.me) {
            live.push(self.me.clone());
        }
        live.sort();
        *self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }
}

impl Presence for ClusterPresence {
    fn live_instances(&self) -> Vec<String> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Claims `key` for this process, or says who holds it.
///
/// A claim held by another process is treated as stale (and taken over) when it is on this host and
/// its process no longer exists, which covers the common crash-and-restart case at once; otherwise
/// the TTL decides: a key that exists belongs to a live instance.
pub async fn claim(conn: &mut MultiplexedConnection, key: &str, mine: &Claim, ttl: Duration) -> Result<(), ClaimError> {
    let value = serde_json::to_string(mine).unwrap_or_default();
    let ttl_s = ttl.as_secs().max(1);
    let set: Option<String> =
        redis::cmd("SET").arg(key).arg(&value).arg("NX").arg("EX").arg(ttl_s).query_async(conn).await?;
    if set.is_some() {
        return Ok(());
    }
    let existing: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
    let holder = existing.as_deref().and_then(|t| serde_json::from_str::<Claim>(t).ok());
    let stale = match &holder {
        None => true,
        Some(h) if h.token == mine.token => true,
        Some(h) => h.host == mine.host && !process_exists(h.pid),
    };
    if stale {
        let () = redis::cmd("SET").arg(key).arg(&value).arg("EX").arg(ttl_s).query_async(conn).await?;
        return Ok(());
    }
    let h = holder.expect("a non-stale claim has a holder");
    Err(ClaimError::Duplicate(DuplicateInstance { instance: h.instance, host: h.host, pid: h.pid, ttl_s }))
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Duplicate(DuplicateInstance),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_exists(_pid: u32) -> bool {
    // Without a cheap check, assume it lives; the TTL still frees the claim.
    true
}

/// This machine's name for claims and error messages.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
