//! Publishing: the atomic publish script per event, pipelined on the session's connection, the plain
//! `PUBLISH` fallback when Redis refuses writes, and the late writing of what it did not store. Part
//! of `redis_link`, split out for size; it shares the parent's imports and knows what the parent knows.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

/// One event's own arguments to the publish script (see `publish.lua`).
#[derive(Clone)]
pub(super) struct Prepared {
    pub(super) register: String,
    pub(super) order: String,
    pub(super) payload: String,
    pub(super) channel: String,
    pub(super) min_id: String,
    pub(super) kind: &'static str,
    pub(super) audit: String,
}

impl RedisLink {
    /// Publishes `first` and everything already waiting behind it as one pipeline, every event as
    /// it is (no coalescing while connected: peers and the history see each one). On failure the
    /// batch joins the pending outbox.
    pub(super) async fn publish_now(&mut self, session: &mut Session, first: Event) -> Result<(), SessionError> {
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match self.outbox.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if !self.settings.publish {
            self.counters.unpublished.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        if let Err(e) = self.publish(session, &batch).await {
            self.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
            for event in batch {
                self.keep(event);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Publishes every pending event, oldest first. On failure the rest stay pending.
    pub(super) async fn flush(&mut self, session: &mut Session) -> Result<(), SessionError> {
        if !self.settings.publish {
            self.pending.clear();
            return Ok(());
        }
        let mut queue: Vec<Event> = std::mem::take(&mut self.pending).into_values().collect();
        queue.sort_by(|a, b| a.stamp.cmp(&b.stamp));
        let mut sent = 0;
        for batch in queue.chunks(PUBLISH_BATCH) {
            if let Err(e) = self.publish(session, batch).await {
                self.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
                for unsent in queue.drain(sent..) {
                    self.keep(unsent);
                }
                return Err(e);
            }
            sent += batch.len();
        }
        self.counters.outbox_depth.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The script hash, the state and history keys and the audit channel, as `send_commands` takes them.
    pub(super) fn shared_args(&self) -> [String; 4] {
        [
            self.script.get_hash().to_owned(),
            self.names.state(),
            self.names.history(),
            self.names.channel(wire::ADMIN_CHANNEL),
        ]
    }

    /// Events in one pipeline, each atomically: register (only if newer), history entry, publish.
    /// One pipeline on the session's command connection. Retries 100 → 200 → 400 ms, with a
    /// fresh connection after a transport failure; re-publishing is harmless (registers are
    /// only-if-newer).
    ///
    /// An event whose script Redis refuses because it writes (`OOM` at `maxmemory`, `READONLY` on a
    /// replica) is sent at once by a plain `PUBLISH`, which Redis still allows, so every instance
    /// hears it (an emergency stop most of all); its register and history entry wait in
    /// `unpersisted` for [`RedisLink::persist`].
    pub(super) async fn publish(&mut self, session: &mut Session, events: &[Event]) -> Result<(), SessionError> {
        let ttl_ms = u64::try_from(self.settings.history_ttl.as_millis()).unwrap_or(0);
        let shared = self.shared_args();
        let shared = [shared[0].as_str(), shared[1].as_str(), shared[2].as_str(), shared[3].as_str()];
        let mut todo: Vec<Prepared> = events
            .iter()
            .map(|event| {
                self.seq += 1;
                // Recorded before it is sent, so its echo always finds it.
                self.echoes.record(self.seq, event.stamp.hlc);
                let encoded = wire::encode(event, self.seq, self.signer.as_ref());
                LinkCounters::count_channel(&self.counters.published_on, encoded.channel);
                if encoded.audit.is_some() {
                    LinkCounters::count_channel(&self.counters.published_on, wire::ADMIN_CHANNEL);
                }
                Prepared {
                    register: if wire::is_register(&event.kind) {
                        wire::register_key(&event.kind)
                    } else {
                        String::new()
                    },
                    order: wire::order_key(&event.stamp),
                    channel: self.names.channel(encoded.channel),
                    min_id: event.wall_ms.saturating_sub(ttl_ms).to_string(),
                    kind: encoded.kind,
                    payload: encoded.payload,
                    audit: encoded.audit.unwrap_or_default(),
                }
            })
            .collect();
        let mut last_error = String::new();
        for (attempt, pause) in std::iter::once(Duration::ZERO).chain(PUBLISH_RETRIES).enumerate() {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let replies = match Self::send_commands(session, shared, &todo, true).await {
                Ok(replies) => replies,
                Err(e) => {
                    debug!(attempt, error = %e, "publish attempt failed; reconnecting");
                    last_error = e.to_string();
                    if let Err(e) = self.backend.reconnect(&mut session.cmd, &session.node).await {
                        last_error = e.to_string();
                    }
                    continue;
                }
            };
            let (mut retry, mut refused, mut refusal, mut reload) = (Vec::new(), Vec::new(), None, false);
            for (prepared, reply) in todo.drain(..).zip(replies) {
                let Err(e) = reply else {
                    self.counters.published.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if let Some(fault) = SideFault::refusing_writes(e.code()) {
                    refused.push(prepared);
                    refusal = Some(fault);
                } else {
                    debug!(attempt, error = %e, "publish attempt refused");
                    // Redis restarted or flushed its scripts: load ours again, then retry.
                    reload |= e.is_noscript();
                    last_error = e.to_string();
                    retry.push(prepared);
                }
            }
            if let Some(fault) = refusal {
                if fault == SideFault::ReadOnly && matches!(self.backend.topology(), RedisTopology::Sentinel { .. }) {
                    // A Sentinel master that answers READONLY has been demoted: the batch goes back
                    // to the outbox and the next session asks the sentinels for the new master.
                    return self.demoted(&session.node);
                }
                self.publish_unpersisted(session, refused, fault).await?;
            }
            if retry.is_empty() {
                return Ok(());
            }
            if reload {
                let _ = self.script.prepare_invoke().load_async(&mut session.cmd).await;
            }
            todo = retry;
        }
        Err(SessionError::Publish(last_error))
    }

    /// The fallback for events whose script Redis refused: a plain `PUBLISH` of each envelope (and
    /// its audit copy), which reaches every instance; the register waits in `unpersisted`.
    pub(super) async fn publish_unpersisted(
        &mut self,
        session: &mut Session,
        refused: Vec<Prepared>,
        fault: SideFault,
    ) -> Result<(), SessionError> {
        let admin = self.names.channel(wire::ADMIN_CHANNEL);
        let mut commands: Vec<Vec<&[u8]>> = Vec::with_capacity(refused.len() * 2);
        for p in &refused {
            commands.push(vec![b"PUBLISH", p.channel.as_bytes(), p.payload.as_bytes()]);
            if !p.audit.is_empty() {
                commands.push(vec![b"PUBLISH", admin.as_bytes(), p.audit.as_bytes()]);
            }
        }
        let replies = session
            .cmd
            .send(&commands)
            .await
            .map_err(|e| SessionError::Publish(format!("plain publish failed: {e}")))?;
        if let Some(e) = replies.into_iter().find_map(Result::err) {
            return Err(SessionError::Publish(format!("plain publish refused: {e}")));
        }
        let sent = refused.len() as u64;
        self.counters.published.fetch_add(sent, Ordering::Relaxed);
        self.counters.publish_unpersisted.fetch_add(sent, Ordering::Relaxed);
        for p in refused {
            self.keep_unpersisted(p);
        }
        self.side_failed(SideWrite::Registers, fault);
        self.show_status();
        Ok(())
    }

    /// Keeps a published-but-unwritten event, newest per register; bounded like the outbox (the
    /// oldest goes first, counted as `redis_unpersisted_dropped`: its register then keeps whatever
    /// older value the state hash has until that register is written again).
    pub(super) fn keep_unpersisted(&mut self, prepared: Prepared) {
        match self.unpersisted.get(&prepared.register) {
            Some(old) if old.order >= prepared.order => {}
            Some(_) => {
                self.unpersisted.insert(prepared.register.clone(), prepared);
            }
            None => {
                if self.unpersisted.len() >= self.settings.outbox_capacity.max(1)
                    && let Some(oldest) =
                        self.unpersisted.values().min_by(|a, b| a.order.cmp(&b.order)).map(|p| p.register.clone())
                {
                    self.unpersisted.remove(&oldest);
                    self.counters.unpersisted_dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.unpersisted.insert(prepared.register.clone(), prepared);
            }
        }
        self.counters.unpersisted_depth.store(self.unpersisted.len() as u64, Ordering::Relaxed);
    }

    /// Writes the registers of events that went out by plain `PUBLISH` into the state hash and history,
    /// with the same script minus its `PUBLISH` (only-if-newer, so a later write is never undone).
    pub(super) async fn persist(&mut self, session: &mut Session) {
        if self.unpersisted.is_empty() {
            self.side_ok(SideWrite::Registers);
            return;
        }
        let shared = self.shared_args();
        let shared = [shared[0].as_str(), shared[1].as_str(), shared[2].as_str(), shared[3].as_str()];
        let waiting: Vec<Prepared> = self.unpersisted.values().cloned().collect();
        let mut fault = None;
        let mut written = 0u64;
        for batch in waiting.chunks(PUBLISH_BATCH) {
            match Self::send_commands(session, shared, batch, false).await {
                Ok(replies) => {
                    for (p, reply) in batch.iter().zip(replies) {
                        match reply {
                            Ok(()) => {
                                self.unpersisted.remove(&p.register);
                                written += 1;
                            }
                            Err(e) => {
                                if e.is_noscript() {
                                    let _ = self.script.prepare_invoke().load_async(&mut session.cmd).await;
                                }
                                fault = Some(SideFault::of_reply(&e));
                            }
                        }
                    }
                }
                Err(e) => {
                    // The next publish would find this too; a fresh connection keeps the session serving.
                    debug!(error = %e, "writing kept registers failed; reconnecting");
                    let _ = self.backend.reconnect(&mut session.cmd, &session.node).await;
                    fault =
                        Some(if matches!(e, SendError::Timeout) { SideFault::Timeout } else { SideFault::Transport });
                    break;
                }
            }
        }
        self.counters.unpersisted_depth.store(self.unpersisted.len() as u64, Ordering::Relaxed);
        self.counters.persisted_late.fetch_add(written, Ordering::Relaxed);
        match fault {
            Some(fault) => self.side_failed(SideWrite::Registers, fault),
            None => {
                info!(registers = written, "registers published during the write refusal are in the state hash now");
                self.side_ok(SideWrite::Registers);
            }
        }
    }

    /// Writes `commands` in one go and reads every reply, one per command. `shared` is the script
    /// hash, the state and history keys and the audit channel; without `publish` the script only
    /// writes (empty channels).
    pub(super) async fn send_commands(
        session: &mut Session,
        shared: [&str; 4],
        commands: &[Prepared],
        publish: bool,
    ) -> Result<Vec<Reply>, SendError> {
        let [hash, state, history, admin] = shared.map(str::as_bytes);
        let admin: &[u8] = if publish { admin } else { b"" };
        let mut all: Vec<Vec<&[u8]>> = Vec::with_capacity(commands.len());
        for p in commands {
            let channel: &[u8] = if publish { p.channel.as_bytes() } else { b"" };
            all.push(vec![
                b"EVALSHA",
                hash,
                b"2",
                state,
                history,
                p.register.as_bytes(),
                p.order.as_bytes(),
                p.payload.as_bytes(),
                channel,
                p.min_id.as_bytes(),
                p.kind.as_bytes(),
                admin,
                p.audit.as_bytes(),
            ]);
        }
        session.cmd.send(&all).await
    }
}
