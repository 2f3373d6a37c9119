//! Presence: which instances are live, and keeping one process per `INSTANCE_ID`, the first.
//!
//! Each instance holds a claim key `{cv}:instance:{id}` with a TTL refreshed by its heartbeat and a
//! score in the `{cv}:instances` sorted set. Every claim and refresh compares the holder atomically
//! (a Lua script): the older claim stays and the younger one learns it must go. Knows Redis
//! commands, not the event wire format, the coordinator or the link's session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::instances::Presence;

/// Claims a key for one process atomically, and says who holds it otherwise.
///
/// A claim is older than another when it began earlier (`since_ms`), ties broken by the smaller
/// token, so two processes always agree on which one stays. Our own claim is rewritten; when Redis
/// is at `maxmemory` and refuses the `SET`, only its TTL is extended (`PEXPIRE` is allowed then),
/// which keeps the claim alive through the memory trouble.
const CLAIM_SCRIPT: &str = r"
-- KEYS[1] claim key; ARGV[1] our claim (JSON), ARGV[2] our token, ARGV[3] when our claim began (ms),
-- ARGV[4] TTL (ms), ARGV[5] a holder's token we may replace whatever its age ('' for none).
-- Returns {outcome, previous value}: claimed, refreshed, took_over (the holder was younger) or held.
local current = redis.call('GET', KEYS[1])
if current then
  local ok, holder = pcall(cjson.decode, current)
  if ok and type(holder) == 'table' then
    local token = tostring(holder.token or '')
    if token == ARGV[2] then
      local set = redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
      if type(set) == 'table' and set.err then
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
      end
      return {'refreshed', ''}
    end
    if token ~= ARGV[5] then
      local since = tonumber(holder.since_ms) or 0
      local mine = tonumber(ARGV[3]) or 0
      if since < mine or (since == mine and token < ARGV[2]) then
        return {'held', current}
      end
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
      return {'took_over', current}
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return {'claimed', current or ''}
";

/// Deletes the claim key only while it is ours, so a process that goes away never frees a claim
/// another process has taken since.
const RELEASE_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, holder = pcall(cjson.decode, current)
  if ok and type(holder) == 'table' and holder.token == ARGV[1] then
    return redis.call('DEL', KEYS[1])
  end
end
return 0
";

/// What an instance writes into its claim key. Every field has a default so a claim written by an
/// older version still reads (an absent `since_ms` counts as the oldest possible claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Claim {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// Random per process: tells our own claim (after a reconnect) from another process's.
    pub token: String,
    /// Wall-clock milliseconds when this process started: the older claim is the one that stays.
    pub since_ms: u64,
    pub heartbeat_ms: u64,
}

/// A second live instance already uses our `INSTANCE_ID`, and its claim is older than ours.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "INSTANCE_ID {instance} is already in use by a live instance on host {host} (pid {pid}, running since \
     before this one); give this instance another INSTANCE_ID (if that instance is gone, its claim expires \
     within {ttl_s} s)"
)]
pub struct DuplicateInstance {
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub ttl_s: u64,
}

/// How a claim or refresh went, when this process may keep running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key was free (or held by a process of this host that no longer exists).
    Claimed,
    /// The key was ours already.
    Refreshed,
    /// A younger twin held the key; it is ours again, and the twin will learn so on its next check.
    TookOver(Claim),
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Duplicate(DuplicateInstance),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// The claim scripts, loaded once per link.
#[derive(Debug)]
pub struct Claims {
    claim: redis::Script,
    release: redis::Script,
}

impl Default for Claims {
    fn default() -> Self {
        Claims { claim: redis::Script::new(CLAIM_SCRIPT), release: redis::Script::new(RELEASE_SCRIPT) }
    }
}

impl Claims {
    /// Claims or refreshes `key` for this process, or says which older live process holds it.
    ///
    /// A claim held by an older process is still taken over when that process is on this host and
    /// no longer exists, which covers the common crash-and-restart case at once; otherwise the TTL
    /// decides: a key that exists belongs to a live instance.
    pub async fn claim(
        &self,
        conn: &mut (impl ConnectionLike + Send),
        key: &str,
        mine: &Claim,
        ttl: Duration,
    ) -> Result<ClaimOutcome, ClaimError> {
        let (outcome, previous) = self.invoke(conn, key, mine, ttl, "").await?;
        let holder = || serde_json::from_str::<Claim>(&previous).unwrap_or_default();
        match outcome.as_str() {
            "refreshed" => Ok(ClaimOutcome::Refreshed),
            "took_over" => Ok(ClaimOutcome::TookOver(holder())),
            "held" => {
                let holder = holder();
                if holder.host == mine.host && !process_exists(holder.pid) {
                    // Its process is gone: a crash and restart on this host. Replace exactly that claim.
                    let (again, _) = self.invoke(conn, key, mine, ttl, &holder.token).await?;
                    if again != "held" {
                        return Ok(ClaimOutcome::Claimed);
                    }
                }
                Err(ClaimError::Duplicate(DuplicateInstance {
                    instance: if holder.instance.is_empty() { mine.instance.clone() } else { holder.instance },
                    host: holder.host,
                    pid: holder.pid,
                    ttl_s: ttl.as_secs().max(1),
                }))
            }
            _ => Ok(ClaimOutcome::Claimed),
        }
    }

    async fn invoke(
        &self,
        conn: &mut (impl ConnectionLike + Send),
        key: &str,
        mine: &Claim,
        ttl: Duration,
        replace: &str,
    ) -> redis::RedisResult<(String, String)> {
        let value = serde_json::to_string(mine).unwrap_or_default();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.claim
            .key(key)
            .arg(value)
            .arg(&mine.token)
            .arg(mine.since_ms)
            .arg(ttl_ms)
            .arg(replace)
            .invoke_async(conn)
            .await
    }

    /// Deletes `key` if `token` still holds it; true when it did.
    pub async fn release(
        &self,
        conn: &mut (impl ConnectionLike + Send),
        key: &str,
        token: &str,
    ) -> redis::RedisResult<bool> {
        let deleted: u64 = self.release.key(key).arg(token).invoke_async(conn).await?;
        Ok(deleted > 0)
    }
}

/// The live instance list `!admin instances` reads; the link refreshes it on every heartbeat.
#[derive(Debug)]
pub struct ClusterPresence {
    me: String,
    live: Mutex<Vec<String>>,
    talliers: Mutex<Vec<String>>,
}

impl ClusterPresence {
    pub fn new(me: &str) -> Arc<ClusterPresence> {
        Arc::new(ClusterPresence {
            me: me.to_owned(),
            live: Mutex::new(vec![me.to_owned()]),
            talliers: Mutex::new(vec![me.to_owned()]),
        })
    }

    pub fn set_live(&self, mut live: Vec<String>) {
        if !live.contains(&self.me) {
            live.push(self.me.clone());
        }
        live.sort();
        *self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }

    /// The live instances that publish, as the heartbeat read them (this one only if it publishes).
    pub fn set_talliers(&self, mut talliers: Vec<String>) {
        talliers.sort();
        *self.talliers.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = talliers;
    }
}

impl Presence for ClusterPresence {
    fn live_instances(&self) -> Vec<String> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn talliers(&self) -> Vec<String> {
        self.talliers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// How many of our latest publications [`OwnEchoes`] remembers. An echo that comes back more than
/// this many publications late is taken for an impostor's event and applied, which is harmless
/// (applying our own event again changes nothing) but counted and warned about.
pub const ECHO_WINDOW: u64 = 8192;

/// Fingerprints of the last [`ECHO_WINDOW`] events this process published, so the subscription can
/// tell our own echoes from events another publisher sends under our `INSTANCE_ID`.
///
/// One slot per `seq` modulo the window, holding a 64-bit fingerprint of `(seq, hlc)`: a single
/// atomic store per publication and a single load per echo, no lock, and a fixed 64 KiB. The link
/// records before it sends, so an echo can never arrive before its record.
#[derive(Debug)]
pub struct OwnEchoes {
    slots: Box<[AtomicU64]>,
}

impl Default for OwnEchoes {
    fn default() -> Self {
        OwnEchoes { slots: (0..ECHO_WINDOW).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl OwnEchoes {
    /// Remembers that we published `seq` with stamp `hlc`.
    pub fn record(&self, seq: u64, hlc: u64) {
        self.slots[Self::slot(seq)].store(fingerprint(seq, hlc), Ordering::Release);
    }

    /// True when an event under our id is one we published; an event without `seq` (an older bot,
    /// a hand-written `PUBLISH`) never is.
    pub fn is_ours(&self, seq: Option<u64>, hlc: u64) -> bool {
        seq.is_some_and(|seq| self.slots[Self::slot(seq)].load(Ordering::Acquire) == fingerprint(seq, hlc))
    }

    fn slot(seq: u64) -> usize {
        // The remainder is below the window, so it always fits.
        usize::try_from(seq % ECHO_WINDOW).unwrap_or(0)
    }
}

/// Mixes `seq` and `hlc` (splitmix-style) so two publications sharing a slot never share a
/// fingerprint in practice; never 0, which marks an empty slot.
fn fingerprint(seq: u64, hlc: u64) -> u64 {
    let mut x = hlc ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) | 1
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_echoes_are_recognised_and_anything_else_is_not() {
        let echoes = OwnEchoes::default();
        echoes.record(1, 1000);
        echoes.record(2, 1001);
        assert!(echoes.is_ours(Some(1), 1000));
        assert!(echoes.is_ours(Some(2), 1001));
        assert!(!echoes.is_ours(None, 1000), "no seq: an older bot or a hand-written publish");
        assert!(!echoes.is_ours(Some(1), 999), "our seq with another stamp: a twin counting from 1 too");
        assert!(!echoes.is_ours(Some(3), 1002), "a seq we never published");
        // A slot is reused a window later; the old publication is then forgotten, the new one known.
        echoes.record(1 + ECHO_WINDOW, 5000);
        assert!(echoes.is_ours(Some(1 + ECHO_WINDOW), 5000));
        assert!(!echoes.is_ours(Some(1), 1000));
    }

    #[test]
    fn an_older_versions_claim_reads_as_the_oldest() {
        let old: Claim = serde_json::from_str(r#"{"instance":"bot","host":"h","pid":7,"token":"t","heartbeat_ms":5}"#)
            .expect("reads");
        assert_eq!(old.since_ms, 0);
        assert_eq!(old.host, "h");
        let garbage: Claim = serde_json::from_str("{}").expect("every field has a default");
        assert_eq!(garbage, Claim::default());
    }
}
