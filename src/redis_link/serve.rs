//! Serving a session: publishing the outbox, proving the subscription with probes, control traffic
//! (our command channel, presence, poison), failovers, lost data, and older bots' values written
//! into the state hash. Part of `redis_link`, split out by role; it shares the parent's imports.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

/// Most older-bot values waiting to be written into the state hash (newest per register); beyond,
/// the oldest waits for the next session's anti-entropy, which writes it back anyway.
const LEGACY_BACKLOG: usize = 4096;

impl RedisLink {
    /// Serves one session until it breaks or shutdown.
    pub(super) async fn serve(&mut self, session: &mut Session, shutdown: &CancellationToken) -> SessionEnd {
        // Take whatever arrived while offline, then publish it all.
        while let Ok(e) = self.outbox.try_recv() {
            self.keep(e);
        }
        if let Err(e) = self.flush(session).await {
            return SessionEnd::Broken(e);
        }
        let mut probe_timer = tokio::time::interval(self.settings.timing.probe_interval);
        probe_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(self.settings.timing.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        let mut probe: Option<(String, Instant)> = None;
        loop {
            let failover = async {
                match session.failover.as_mut() {
                    Some(watch) => watch.moved.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                to = failover => {
                    self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                    let master = self.backend.topology().master_name().to_owned();
                    return SessionEnd::Broken(SessionError::Failover { master, to: to.unwrap_or_default() });
                }
                message = session.messages.recv() => match message {
                    Some(m) => {
                        if let Err(end) = self.on_control(m, session, &mut probe).await {
                            return end;
                        }
                    }
                    None => return SessionEnd::Broken(SessionError::SubscriptionClosed),
                },
                event = self.outbox.recv() => match event {
                    Some(e) => {
                        if let Err(e) = self.publish_now(session, e).await {
                            return SessionEnd::Broken(e);
                        }
                    }
                    None => return SessionEnd::Shutdown,
                },
                _ = probe_timer.tick() => {
                    if let Err(e) = self.send_probe(session, &mut probe).await {
                        return SessionEnd::Broken(e);
                    }
                    if let Err(lost) = self.check_epoch(session).await
                        && let Err(e) = self.recover_lost_data(session, &lost).await
                    {
                        return SessionEnd::Broken(e);
                    }
                }
                _ = heartbeat.tick() => {
                    if let Err(twin) = self.heartbeat(session).await {
                        return SessionEnd::Duplicate(twin);
                    }
                }
            }
            if !self.legacy.is_empty()
                && session.messages.is_empty()
                && let Err(e) = self.write_legacy(session).await
            {
                debug!(error = %e, "older bots' values not written into the state hash yet");
            }
            if session.gap.swap(false, Ordering::Relaxed) {
                if let Some(swallowed) = self.log.allow("gap resync", Instant::now()) {
                    warn!(
                        swallowed,
                        "missed Redis messages; resynchronising from the state hash (counted as redis_gaps)"
                    );
                }
                if let Err(e) = self.resync(session).await {
                    return SessionEnd::Broken(e);
                }
            }
        }
    }

    /// Checks the outstanding probe and sends the next one. A probe unheard past the deadline, or a
    /// publish nobody receives, means our subscription is deaf.
    async fn send_probe(
        &mut self,
        session: &mut Session,
        probe: &mut Option<(String, Instant)>,
    ) -> Result<(), SessionError> {
        if let Some((_, sent)) = probe {
            if sent.elapsed() > self.settings.timing.probe_deadline {
                self.counters.probes_lost.fetch_add(1, Ordering::Relaxed);
                return Err(SessionError::Deaf(format!(
                    "probe not heard back within {:?}",
                    self.settings.timing.probe_deadline
                )));
            }
            return Ok(());
        }
        let nonce = format!("{:016x}", fastrand::u64(..));
        // On a Cluster the count is of the node that took the PUBLISH (any node, then the cluster bus
        // carries it to ours): zero proves nothing there, and the unheard-probe deadline decides.
        let receivers: redis::RedisResult<u64> =
            redis::cmd("PUBLISH").arg(self.names.probe_channel()).arg(&nonce).query_async(&mut session.cmd).await;
        match receivers {
            Ok(0) if !matches!(self.backend.topology(), RedisTopology::Cluster { .. }) => {
                Err(SessionError::Deaf("our subscription is gone (probe reached no subscriber)".into()))
            }
            Ok(_) => {
                *probe = Some((nonce, Instant::now()));
                Ok(())
            }
            Err(e) => Err(SessionError::Deaf(format!("probe publish failed: {e}"))),
        }
    }

    /// The server we talk to refuses writes because it is a replica now: with Sentinel that is a
    /// failover we have not heard announced; the next session asks the sentinels again.
    pub(super) fn demoted<T>(&self, node: &str) -> Result<T, SessionError> {
        self.counters.failovers.fetch_add(1, Ordering::Relaxed);
        Err(SessionError::NotMaster { addr: crate::secret::mask_url(node), role: "replica".into() })
    }

    /// Control traffic from the reader: probes, our command channel, presence, older bots' values
    /// and poison to record.
    async fn on_control(
        &mut self,
        control: Control,
        session: &mut Session,
        probe: &mut Option<(String, Instant)>,
    ) -> Result<(), SessionEnd> {
        let message = match control {
            Control::Poison { reason, channel, payload } => {
                self.count_drop(reason, &channel, &payload, &mut session.cmd).await;
                return Ok(());
            }
            Control::Legacy(event) => {
                self.keep_legacy(event);
                return Ok(());
            }
            Control::Message(m) => m,
        };
        let channel = String::from_utf8_lossy(&message.channel);
        let payload = &message.payload[..];
        if channel == self.names.probe_channel() {
            if let Some((nonce, sent)) = probe.as_ref()
                && nonce.as_bytes() == payload
            {
                let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.counters.probe_rtt_us.store(rtt, Ordering::Relaxed);
                *probe = None;
                if !self.verified {
                    debug!(rtt_us = rtt, "subscription verified by probe");
                    self.verified = true;
                }
                self.show_status();
            }
            return Ok(());
        }
        if channel == self.names.command_channel() {
            return self.on_command(payload, session).await.map_err(SessionEnd::Broken);
        }
        if channel == self.names.status_channel() {
            // Someone joined, left or took a claim back: check ours now rather than at the next beat,
            // so a younger twin leaves as soon as the older one is back.
            debug!(payload = %String::from_utf8_lossy(payload), "instance status");
            self.refresh_presence(session).await.map_err(SessionEnd::Duplicate)?;
            self.show_status();
            return Ok(());
        }
        debug!(%channel, "message on an unexpected channel ignored");
        Ok(())
    }

    /// Commands addressed to this instance: `{"command": "resync"}` or `{"command": "status"}`,
    /// signed and fresh when `EVENT_SIGNING_KEY` is set.
    async fn on_command(&mut self, payload: &[u8], session: &mut Session) -> Result<(), SessionError> {
        let max_age = u64::try_from(self.settings.event_max_age.as_millis()).unwrap_or(u64::MAX);
        match wire::decode_command(payload, self.signer.as_ref(), wall_ms_now(), max_age) {
            Ok(wire::InstanceCommand::Resync) => {
                info!("resync requested on our command channel");
                self.resync(session).await?;
                self.reseed(session).await
            }
            Ok(wire::InstanceCommand::Status) => {
                let report = serde_json::json!({
                    "type": "instance_report", "instance": self.instance, "host": self.claim.host,
                    "status": self.status.borrow().as_str(), "timestamp": wall_ms_now(),
                    "stats": self.stats.snapshot(),
                });
                let published: redis::RedisResult<u64> = redis::cmd("PUBLISH")
                    .arg(self.names.status_channel())
                    .arg(report.to_string())
                    .query_async(&mut session.cmd)
                    .await;
                // A lost report is not worth a new session: if the connection is gone, the probe says so.
                if let Err(e) = published {
                    debug!(error = %e, "status report not published");
                }
                Ok(())
            }
            Err(reason) => {
                self.count_drop(reason, "command", &String::from_utf8_lossy(payload), &mut session.cmd).await;
                Ok(())
            }
        }
    }

    /// Keeps an older bot's value for the state hash, newest per register.
    fn keep_legacy(&mut self, event: Event) {
        if !self.settings.publish {
            return;
        }
        let key = wire::register_key(&event.kind);
        if self.legacy.get(&key).is_some_and(|held| held.stamp >= event.stamp) {
            return;
        }
        if self.legacy.len() >= LEGACY_BACKLOG
            && !self.legacy.contains_key(&key)
            && let Some(oldest) = self.legacy.iter().min_by_key(|(_, e)| e.stamp.clone()).map(|(k, _)| k.clone())
        {
            self.legacy.remove(&oldest);
        }
        self.legacy.insert(key, event);
    }

    /// Writes the older bots' values into the state hash (only-if-newer), so they survive any one
    /// cvbot restarting. Every instance does this; the first write wins and the rest change nothing,
    /// since every instance stamps an older bot's event the same way.
    async fn write_legacy(&mut self, session: &mut Session) -> redis::RedisResult<()> {
        let events: Vec<Event> = std::mem::take(&mut self.legacy).into_values().collect();
        match self.write_registers(&mut session.cmd, &events).await {
            Ok(_) => {
                self.counters.legacy_persisted.fetch_add(events.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Kept for the next try; the next session's anti-entropy writes them back regardless.
                for event in events {
                    self.keep_legacy(event);
                }
                Err(e)
            }
        }
    }
}
