//! The link's writes beside the hot path: presence, dead letters and late register writes, each
//! counted and retried on the next heartbeat, never a reason to end a session. Part of `redis_link`,
//! split out for size; it shares the parent's imports and knows what the parent knows.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

/// Why Redis refused or missed a write beside the hot path (presence, dead letters, registers kept
/// for later). Shown as the degraded reason while the session keeps publishing and subscribing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SideFault {
    #[error("redis out of memory")]
    OutOfMemory,
    #[error("redis is read-only")]
    ReadOnly,
    #[error("redis did not answer a write in time")]
    Timeout,
    #[error("redis refused a write ({0})")]
    Refused(String),
    #[error("redis write failed: connection trouble")]
    Transport,
}

impl SideFault {
    /// The reply codes that mean "writes are refused, but `PUBLISH` still works".
    pub(super) fn refusing_writes(code: &str) -> Option<SideFault> {
        match code {
            "OOM" => Some(SideFault::OutOfMemory),
            "READONLY" => Some(SideFault::ReadOnly),
            _ => None,
        }
    }

    pub(super) fn of_reply(e: &ServerError) -> SideFault {
        Self::refusing_writes(e.code()).unwrap_or_else(|| SideFault::Refused(e.code().to_owned()))
    }

    pub(super) fn of(e: &redis::RedisError) -> SideFault {
        if e.is_timeout() {
            return SideFault::Timeout;
        }
        // A pipeline's error keeps each failed command's reply; the first one says why.
        let code = e.code().map(str::to_owned).or_else(|| {
            e.clone().into_server_errors().and_then(|items| items.first().map(|(_, server)| server.code().to_owned()))
        });
        match code {
            Some(code) => Self::refusing_writes(&code).unwrap_or(SideFault::Refused(code)),
            None => SideFault::Transport,
        }
    }
}

/// The side writes that can fail without ending the session, each retried on the next heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SideWrite {
    Presence,
    DeadLetters,
    Registers,
}

impl SideWrite {
    const ALL: [SideWrite; 3] = [SideWrite::Presence, SideWrite::DeadLetters, SideWrite::Registers];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Presence => "presence",
            Self::DeadLetters => "dead letters",
            Self::Registers => "state hash and history",
        }
    }
}

/// The side writes failing now, and why.
#[derive(Debug, Default)]
pub(super) struct SideFaults([Option<SideFault>; 3]);

impl SideFaults {
    pub(super) fn slot(&mut self, write: SideWrite) -> &mut Option<SideFault> {
        let i = SideWrite::ALL.iter().position(|w| *w == write).unwrap_or(0);
        &mut self.0[i]
    }

    pub(super) fn has(&self, write: SideWrite) -> bool {
        SideWrite::ALL.iter().zip(&self.0).any(|(w, f)| *w == write && f.is_some())
    }

    /// `redis out of memory (presence, state hash and history)`, or `None` when every side write works.
    pub(super) fn reason(&self) -> Option<String> {
        let failing: Vec<(&SideWrite, &SideFault)> =
            SideWrite::ALL.iter().zip(&self.0).filter_map(|(w, f)| f.as_ref().map(|f| (w, f))).collect();
        let (_, first) = failing.first()?;
        let what: Vec<&str> = failing.iter().map(|(w, _)| w.label()).collect();
        Some(format!("{first} ({} waiting for a retry)", what.join(", ")))
    }
}

/// A payload the dead-letter stream has not taken yet.
pub(super) struct DeadLetter {
    pub(super) reason: &'static str,
    pub(super) channel: String,
    pub(super) payload: String,
}

impl RedisLink {
    /// Every heartbeat: presence (which may find an older twin), then the side writes waiting for a
    /// retry. Nothing here ends the session but a twin.
    pub(super) async fn heartbeat(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        self.refresh_presence(session).await?;
        self.side_writes(session).await;
        Ok(())
    }

    pub(super) async fn side_writes(&mut self, session: &mut Session) {
        self.write_dead_letters(&mut session.cmd).await;
        self.persist(session).await;
        if self.reseed_pending {
            // After `persist`, which clears the registers' fault when it has nothing to write.
            let _ = self.reseed(session).await;
        }
        self.show_status();
    }

    /// Records a failed side write: counted, logged once a minute per kind, shown as the degraded
    /// reason until it works again.
    pub(super) fn side_failed(&mut self, write: SideWrite, fault: SideFault) {
        let counter = match write {
            SideWrite::Presence => &self.counters.presence_failed,
            SideWrite::DeadLetters => &self.counters.dlq_failed,
            SideWrite::Registers => &self.counters.persist_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow(write.label(), Instant::now()) {
            warn!(
                write = write.label(),
                reason = %fault,
                suppressed,
                "a Redis write beside the hot path failed; events still flow, retrying on the next heartbeat"
            );
        }
        *self.faults.slot(write) = Some(fault);
    }

    pub(super) fn side_ok(&mut self, write: SideWrite) {
        if self.faults.slot(write).take().is_some() {
            info!(write = write.label(), "a Redis write beside the hot path works again");
        }
    }

    /// Once the probe has proven the subscription: `connected` when every side write works,
    /// `degraded` with the reason while one fails (the session keeps serving either way).
    pub(super) fn show_status(&self) {
        if !self.verified {
            return;
        }
        self.counters.serving.store(true, Ordering::Relaxed);
        let reason = self.faults.reason();
        self.counters.set_reason(reason.as_deref());
        let wanted = if reason.is_some() { LinkStatus::Degraded } else { LinkStatus::Connected };
        let changed = self.status.send_if_modified(|status| std::mem::replace(status, wanted) != wanted);
        if changed && wanted == LinkStatus::Connected {
            info!(rtt_us = self.counters.probe_rtt_us.load(Ordering::Relaxed), "Redis link connected");
        }
    }

    /// Counts, logs (once a minute per reason) and keeps a dropped payload in the dead-letter stream.
    /// While the stream refuses writes, the payload waits (bounded, [`DLQ_BACKLOG`]) for the next
    /// heartbeat instead of costing every poison message another failing round trip.
    pub(super) async fn count_drop(&mut self, reason: DropReason, channel: &str, payload: &str, cmd: &mut Commands) {
        self.counters.count_drop(reason);
        if let Some(suppressed) = self.log.allow(reason.label(), Instant::now()) {
            warn!(reason = reason.label(), channel, suppressed, "dropped a Redis payload");
        }
        if self.dead_letters.len() >= DLQ_BACKLOG {
            self.dead_letters.pop_front();
            self.counters.dlq_lost.fetch_add(1, Ordering::Relaxed);
        }
        let payload: String = payload.chars().take(wire::MAX_PAYLOAD).collect();
        self.dead_letters.push_back(DeadLetter { reason: reason.label(), channel: channel.to_owned(), payload });
        if !self.faults.has(SideWrite::DeadLetters) {
            self.write_dead_letters(cmd).await;
            self.show_status();
        }
    }

    /// Appends every waiting dead letter to the capped `{cv}:dlq` stream in one pipeline.
    pub(super) async fn write_dead_letters(&mut self, cmd: &mut Commands) {
        if self.dead_letters.is_empty() {
            self.side_ok(SideWrite::DeadLetters);
            return;
        }
        let mut pipe = redis::pipe();
        for letter in &self.dead_letters {
            pipe.cmd("XADD")
                .arg(self.names.dlq())
                .arg("MAXLEN")
                .arg("~")
                .arg(DLQ_MAXLEN)
                .arg("*")
                .arg("reason")
                .arg(letter.reason)
                .arg("channel")
                .arg(&letter.channel)
                .arg("instance")
                .arg(&self.instance)
                .arg("payload")
                .arg(&letter.payload)
                .ignore();
        }
        let written: redis::RedisResult<()> = pipe.query_async(cmd).await;
        match written {
            Ok(()) => {
                self.counters.dlq_written.fetch_add(self.dead_letters.len() as u64, Ordering::Relaxed);
                self.dead_letters.clear();
                self.side_ok(SideWrite::DeadLetters);
            }
            Err(e) => self.side_failed(SideWrite::DeadLetters, SideFault::of(&e)),
        }
    }

    /// Claims or refreshes our id (atomically comparing the holder), then the live list. Only an
    /// older twin is an error; a refused or failed write is a side fault, retried next heartbeat.
    pub(super) async fn refresh_presence(&mut self, session: &mut Session) -> Result<(), DuplicateInstance> {
        let now = wall_ms_now();
        self.claim.heartbeat_ms = now;
        match self.claims.claim(&mut session.cmd, &self.names.claim(), &self.claim, self.claim_ttl()).await {
            Ok(ClaimOutcome::Claimed | ClaimOutcome::Refreshed) => {}
            Ok(ClaimOutcome::TookOver(twin)) => {
                self.counters.claims_reasserted.fetch_add(1, Ordering::Relaxed);
                warn!(
                    instance = %self.instance,
                    twin_host = %twin.host,
                    twin_pid = twin.pid,
                    "a younger process with our INSTANCE_ID held our claim: it is ours again, and the other one exits"
                );
                // Tell it now rather than at its next heartbeat.
                self.announce("online", &mut session.cmd).await;
            }
            Err(ClaimError::Duplicate(older)) => return Err(older),
            Err(ClaimError::Redis(e)) => {
                self.side_failed(SideWrite::Presence, SideFault::of(&e));
                return Ok(());
            }
        }
        let ttl_ms = u64::try_from(self.claim_ttl().as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        // The talliers are the live instances that publish: a display-only one is live, but a
        // verdict it applied would reach nobody else.
        let mut lists = vec![self.names.instances()];
        if self.settings.publish {
            lists.push(self.names.talliers());
        }
        for list in &lists {
            pipe.cmd("ZADD").arg(list).arg(now).arg(&self.instance).ignore();
        }
        for list in [self.names.instances(), self.names.talliers()] {
            pipe.cmd("ZREMRANGEBYSCORE").arg(&list).arg("-inf").arg(now.saturating_sub(ttl_ms)).ignore();
            pipe.cmd("ZRANGE").arg(&list).arg(0).arg(-1);
        }
        let listed: redis::RedisResult<(Vec<String>, Vec<String>)> = pipe.query_async(&mut session.cmd).await;
        match listed {
            Ok((live, talliers)) => {
                self.presence.set_live(live);
                self.presence.set_talliers(talliers);
                self.side_ok(SideWrite::Presence);
            }
            Err(e) => self.side_failed(SideWrite::Presence, SideFault::of(&e)),
        }
        Ok(())
    }
}
