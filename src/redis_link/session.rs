//! Opening a session and keeping the state hash whole: subscribe, load and merge the hash, write
//! back what it lacks (anti-entropy), and notice when Redis loses its data under a live session.
//! Part of `redis_link`, split out by role; it shares the parent's imports.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

/// Writes registers into the state hash only if newer (see `seed.lua`).
pub(super) const SEED_SCRIPT: &str = include_str!("seed.lua");
/// Registers per seed-script call: one call stays well under a millisecond of server time.
const SEED_BATCH: usize = 128;

/// One live session: the command connection (publishing included) and the subscription's bounded
/// control queue.
pub(super) struct Session {
    pub(super) cmd: Commands,
    /// The server subscribed on (and, off a Cluster, the one commands go to).
    pub(super) node: String,
    pub(super) messages: mpsc::Receiver<Control>,
    pub(super) reader: JoinHandle<()>,
    pub(super) gap: Arc<AtomicBool>,
    /// Sentinel: the failover announcement that ends the session.
    pub(super) failover: Option<FailoverWatch>,
    /// The epoch key's value when the session began (`None` when Redis would not store it).
    pub(super) epoch: Option<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// A session with no subscription (the final flush at shutdown).
    pub(super) fn unsubscribed(cmd: Commands, node: String) -> Session {
        let (_tx, messages) = mpsc::channel(1);
        Session {
            cmd,
            node,
            messages,
            reader: tokio::spawn(async {}),
            gap: Arc::new(AtomicBool::new(false)),
            failover: None,
            epoch: None,
        }
    }
}

/// Why a state-hash register was not merged.
enum Refused {
    /// Dropped (counted, dead-lettered); `purge`: also removed from the hash.
    Drop { reason: DropReason, purge: bool },
    /// The coordinator has shut down.
    Stopped,
}

impl RedisLink {
    /// Opens a session: finds the server(s), subscribes, loads and merges the state hash, then
    /// writes back every register the hash lacks or holds older.
    pub(super) async fn connect(&mut self) -> Result<Session, SessionError> {
        if !matches!(*self.status.borrow(), LinkStatus::Degraded) {
            self.status.send_replace(LinkStatus::Connecting);
        }
        let Endpoints { cmd, node, describe, failover } = self.backend.open(&self.names.state()).await?;
        let mut channels = vec![self.names.probe_channel(), self.names.command_channel()];
        if self.settings.subscribe {
            channels.extend(self.names.event_channels());
            channels.push(self.names.status_channel());
        }
        let subscriber = self.backend.subscribe(&node, &channels).await?;
        let (control, messages) = mpsc::channel(CONTROL_QUEUE);
        let gap = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            coord: self.coord.clone(),
            catalog: self.catalog.clone(),
            signer: self.signer.clone(),
            instance: self.instance.clone(),
            prefix: self.settings.key_prefix.clone(),
            event_channels: self.names.event_channels(),
            counters: self.counters.clone(),
            gap: gap.clone(),
            last_seq: HashMap::new(),
            admission: self.admission(),
            peer_ahead: HashMap::new(),
            echoes: self.echoes.clone(),
            log: self.log.clone(),
            control,
        };
        let reader = tokio::spawn(reader.run(subscriber));
        let mut session = Session { cmd, node, messages, reader, gap, failover, epoch: None };
        self.script.prepare_invoke().load_async(&mut session.cmd).await?;
        session.epoch = self.mark_epoch(&mut session).await;
        // Subscribed first, then the snapshot: anything published in between arrives twice at worst,
        // and applying twice is harmless.
        if self.settings.subscribe {
            self.resync(&mut session).await?;
        }
        self.reseed(&mut session).await?;
        self.counters.set_endpoint(&describe);
        debug!(at = %describe, channels = channels.len(), "Redis subscribed, state merged and re-seeded");
        Ok(session)
    }

    /// Loads every register from the state hash and merges it (LWW makes order irrelevant).
    pub(super) async fn resync(&mut self, session: &mut Session) -> Result<(), SessionError> {
        // Bytes, not strings: one value that is not UTF-8 must cost that register, not the whole load.
        let all: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.names.state())
            .query_async(&mut session.cmd)
            .await
            .map_err(|e| SessionError::Resync(e.to_string()))?;
        let mut merged = 0usize;
        let now = wall_ms_now();
        for (field, value) in &all {
            let text = String::from_utf8_lossy(value);
            let (reason, purge) = match self.merge_register(value, now) {
                Ok(true) => {
                    merged += 1;
                    continue;
                }
                Ok(false) => continue,
                Err(Refused::Stopped) => return Err(SessionError::Stopped),
                Err(Refused::Drop { reason, purge }) => (reason, purge),
            };
            let payload = text.split_once('|').map_or(text.as_ref(), |(_, p)| p);
            self.count_drop(reason, "state", payload, &mut session.cmd).await;
            if purge {
                // A register no instance can use would also block every honest write to it (the
                // publish script writes only if newer): the dead-letter stream keeps a copy, and it
                // is removed unless a newer write replaced it meanwhile.
                let removed: redis::RedisResult<u64> = redis::Script::new(DELETE_IF_SAME)
                    .key(self.names.state())
                    .arg(field.as_slice())
                    .arg(value.as_slice())
                    .invoke_async(&mut session.cmd)
                    .await;
                if let Ok(n) = removed {
                    self.counters.state_purged.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        debug!(merged, "state hash merged");
        Ok(())
    }

    /// Decodes, admits and applies one state-hash value (`order_key|envelope`); true when applied.
    /// Garbage no instance could read (not UTF-8, no order key) and far-future stamps are to be
    /// purged; anything else refused (an unknown variable, say) may be another catalogue's, and is
    /// only dropped here.
    fn merge_register(&self, value: &[u8], now: u64) -> Result<bool, Refused> {
        let drop = |reason, purge| Refused::Drop { reason, purge };
        let text = std::str::from_utf8(value).map_err(|_| drop(DropReason::NotJson, true))?;
        let (order, payload) = text.split_once('|').ok_or(drop(DropReason::Malformed, true))?;
        let admission = self.admission();
        // The order key leads with the stamp's hybrid clock: a far-future one is refused before the
        // envelope is even read, whatever else is wrong with it.
        if let Some(hlc) = order.get(..20).and_then(|digits| digits.parse::<u64>().ok())
            && crate::state::Hlc::wall_ms(hlc) > now.saturating_add(admission.max_skew_ms)
        {
            return Err(drop(DropReason::ClockSkew, true));
        }
        match wire::decode(payload.as_bytes(), &self.catalog, self.signer.as_ref()) {
            Ok(Incoming::Event { event, .. }) => {
                wire::admit(&event, Origin::StateHash, now, admission)
                    .map_err(|reason| drop(reason, reason == DropReason::ClockSkew))?;
                // Our own earlier writes count too: a restarted instance picks them up here.
                if self.coord.apply_remote(&event) { Ok(true) } else { Err(Refused::Stopped) }
            }
            Ok(Incoming::Audit { .. }) => Ok(false),
            Err(reason) => Err(drop(reason, false)),
        }
    }

    /// Anti-entropy: writes every register this instance holds into the state hash, each only if the
    /// hash lacks it or holds it older, so a Redis that restarted empty, rolled back or failed over
    /// to a replica that missed writes is whole again as soon as any one instance reconnects. A
    /// publish-disabled instance writes nothing.
    pub(super) async fn reseed(&mut self, session: &mut Session) -> Result<(), SessionError> {
        if !self.settings.publish {
            return Ok(());
        }
        let state = self.coord.snapshot().ok_or(SessionError::Stopped)?;
        let events = state.registers();
        match self.write_registers(&mut session.cmd, &events).await {
            Ok(written) => {
                self.reseed_pending = false;
                if written > 0 {
                    info!(
                        registers = written,
                        held = events.len(),
                        "re-seeded the state hash with registers it lacked"
                    );
                }
            }
            // Redis refusing writes (a replica, OOM) is no reason to stop serving: like any write
            // beside the hot path it is counted, shown, and retried on the next heartbeat.
            Err(e) => {
                self.reseed_pending = true;
                self.side_failed(SideWrite::Registers, SideFault::of(&e));
            }
        }
        Ok(())
    }

    /// Writes `events`' registers into the state hash, only-if-newer; how many were written.
    pub(super) async fn write_registers(&self, cmd: &mut Commands, events: &[Event]) -> redis::RedisResult<u64> {
        let mut written = 0;
        for batch in events.chunks(SEED_BATCH) {
            let mut invocation = self.seed.key(self.names.state());
            for event in batch {
                let encoded = wire::encode(event, 0, self.signer.as_ref());
                invocation.arg(wire::register_key(&event.kind)).arg(format!(
                    "{}|{}",
                    wire::order_key(&event.stamp),
                    encoded.payload
                ));
            }
            let n: u64 = invocation.invoke_async(cmd).await?;
            written += n;
        }
        self.counters.reseeded.fetch_add(written, Ordering::Relaxed);
        Ok(written)
    }

    /// Sets the epoch key if it is missing and returns its value: a key that later disappears or
    /// changes means Redis lost its data (restarted empty, flushed, or failed over to a node that
    /// never had it) under this session.
    pub(super) async fn mark_epoch(&self, session: &mut Session) -> Option<String> {
        let token = format!("{:016x}", fastrand::u64(..));
        let marked: redis::RedisResult<((), Option<String>)> = redis::pipe()
            .cmd("SET")
            .arg(self.names.epoch())
            .arg(&token)
            .arg("NX")
            .cmd("GET")
            .arg(self.names.epoch())
            .query_async(&mut session.cmd)
            .await;
        match marked {
            Ok(((), epoch)) => epoch,
            Err(e) => {
                debug!(error = %e, "epoch key not set; data loss under this session is noticed at the next one");
                None
            }
        }
    }

    /// Reads the epoch key; `Err` with what happened when Redis lost its data since the session began.
    pub(super) async fn check_epoch(&self, session: &mut Session) -> Result<(), SessionError> {
        let Some(ours) = session.epoch.as_deref() else { return Ok(()) };
        let now: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(self.names.epoch()).query_async(&mut session.cmd).await;
        match now {
            Ok(Some(epoch)) if epoch == ours => Ok(()),
            Ok(Some(_)) => Err(SessionError::DataLost("the epoch key changed: another data set took its place".into())),
            Ok(None) => Err(SessionError::DataLost("the epoch key is gone: restarted empty or flushed".into())),
            // Not an answer about the data: the probe decides whether the connection is alive.
            Err(_) => Ok(()),
        }
    }

    /// Redis lost its data under a live session: a gap like any other, then the hash is re-seeded
    /// from what we hold and a new epoch is marked.
    pub(super) async fn recover_lost_data(
        &mut self,
        session: &mut Session,
        why: &SessionError,
    ) -> Result<(), SessionError> {
        self.counters.data_lost.fetch_add(1, Ordering::Relaxed);
        warn!(reason = %why, "Redis lost its data under a live session; re-seeding the state hash");
        session.epoch = self.mark_epoch(session).await;
        self.script.prepare_invoke().load_async(&mut session.cmd).await?;
        if self.settings.subscribe {
            self.resync(session).await?;
        }
        self.reseed(session).await
    }
}
