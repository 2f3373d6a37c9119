//! Reads the `{cv}:history` stream for `/api/events/history?source=redis`: the audit trail of every
//! instance's events, newest first.
//!
//! Knows the stream's key and field names (written by `publish.lua`); the HTTP layer only sees JSON.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Commands;

/// The command connection of the link's current session, shared with readers such as the history:
/// wherever the link is (one server, the master Sentinel names, a Cluster), they are too.
pub(super) type SessionSlot = Arc<Mutex<Option<Commands>>>;

/// A reader of the history stream through the link's session, shared by HTTP handlers.
#[derive(Clone)]
pub struct RedisHistory {
    key: String,
    session: SessionSlot,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Redis history is unavailable: {0}")]
pub struct HistoryError(String);

impl RedisHistory {
    pub(super) fn new(key: String, session: SessionSlot) -> RedisHistory {
        RedisHistory { key, session }
    }

    /// Up to `limit` entries, newest first, optionally only of one event type. Scans at most a few
    /// pages so a rare type in a long stream cannot make a request slow.
    pub async fn recent(&self, kind: Option<&str>, limit: usize) -> Result<Vec<Value>, HistoryError> {
        let session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(mut conn) = session else { return Err(HistoryError("not connected to Redis".into())) };
        let conn = &mut conn;
        let mut out = Vec::with_capacity(limit);
        let mut end = "+".to_owned();
        for _page in 0..10 {
            let page: Vec<(String, Vec<(String, String)>)> = match redis::cmd("XREVRANGE")
                .arg(&self.key)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(500)
                .query_async(conn)
                .await
            {
                Ok(p) => p,
                Err(e) => return Err(HistoryError(e.to_string())),
            };
            let Some(last) = page.last().map(|(id, _)| id.clone()) else { break };
            for (id, fields) in &page {
                let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                let event_type = field("type").unwrap_or_default();
                if kind.is_some_and(|k| k != event_type) {
                    continue;
                }
                let envelope: Value = field("event").and_then(|e| serde_json::from_str(e).ok()).unwrap_or(Value::Null);
                out.push(json!({
                    "id": id,
                    "type": event_type,
                    "timestamp": envelope["timestamp"],
                    "source_instance": envelope["data"]["source_instance"],
                    "data": envelope["data"],
                }));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            if page.len() < 500 {
                break;
            }
            // XREVRANGE's end is inclusive: continue just below the last id seen.
            end = format!("({last}");
        }
        Ok(out)
    }
}
