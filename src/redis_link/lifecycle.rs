//! The link's presence in the cluster of instances: claiming our id at the start of each session,
//! announcing online and offline, and the bounded goodbye at shutdown. Part of `redis_link`, split
//! out by role; it shares the parent's imports.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

impl RedisLink {
    /// At the start of a session: claim our id (or learn that an older process holds it), then retry
    /// whatever side writes earlier sessions left failing. A claim Redis refuses (OOM) is no reason
    /// to stop serving: it is retried on the next heartbeat like any side write.
    pub(super) async fn claim_presence(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        self.refresh_presence(session).await?;
        if !self.claimed {
            self.claimed = true;
            self.announce("online", &mut session.cmd).await;
            info!(instance = %self.instance, "joined the cluster");
        }
        self.side_writes(session).await;
        Ok(())
    }

    /// Best effort: presence events are informational; the claim's TTL keeps the list right regardless.
    pub(super) async fn announce(&self, status: &str, cmd: &mut Commands) {
        let payload = serde_json::json!({
            "type": "instance_status", "status": status, "instance": self.instance,
            "host": self.claim.host, "timestamp": wall_ms_now(),
        });
        let _: redis::RedisResult<u64> =
            redis::cmd("PUBLISH").arg(self.names.status_channel()).arg(payload.to_string()).query_async(cmd).await;
        if status == "offline" {
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("ZREM")
                .arg(self.names.instances())
                .arg(&self.instance)
                .ignore()
                .cmd("ZREM")
                .arg(self.names.talliers())
                .arg(&self.instance)
                .ignore()
                .query_async(cmd)
                .await;
        }
    }

    /// On shutdown: publish what is pending and write kept registers (bounded wait), release our
    /// claim (only if it is still ours), then say goodbye.
    pub(super) async fn goodbye(&mut self) {
        while let Ok(e) = self.outbox.try_recv() {
            self.keep(e);
        }
        let pending = self.pending.len();
        let mut session = None;
        let flushed = tokio::time::timeout(Duration::from_millis(700), async {
            let Ok(mut opened) = self.connect_for_flush().await else { return false };
            let ok = self.flush(&mut opened).await.is_ok();
            if !self.unpersisted.is_empty() {
                self.persist(&mut opened).await;
            }
            if self.claimed {
                let released = self.claims.release(&mut opened.cmd, &self.names.claim(), &self.claim.token).await;
                if let Err(e) = released {
                    debug!(error = %e, "claim not released; it expires by itself");
                }
            }
            session = Some(opened);
            ok
        })
        .await
        .unwrap_or(false);
        if pending > 0 && !flushed {
            warn!(pending, "shutting down with unpublished events: other instances will not see them");
        }
        if !self.unpersisted.is_empty() {
            warn!(
                registers = self.unpersisted.len(),
                "shutting down with registers Redis refused to store: peers applied them, a restarted instance will not"
            );
        }
        if self.claimed
            && let Some(session) = session.as_mut()
        {
            let _ = tokio::time::timeout(Duration::from_millis(300), self.announce("offline", &mut session.cmd)).await;
        }
    }

    /// A command connection only (no subscription), for the final flush.
    async fn connect_for_flush(&mut self) -> Result<Session, SessionError> {
        let Endpoints { cmd, node, .. } = self.backend.open(&self.names.state()).await?;
        Ok(Session::unsubscribed(cmd, node))
    }
}
