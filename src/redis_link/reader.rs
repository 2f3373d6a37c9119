//! The subscription reader: decodes, admits and applies every event of a socket read as one batch,
//! and hands control traffic to the link task. Part of `redis_link`, split out for size; it shares
//! the parent's imports and knows what the parent knows.

#[allow(clippy::wildcard_imports)] // A part of the parent module: it uses what the parent uses.
use super::*;

/// What the reader hands to the link task: traffic that is not an event, and poison to record.
pub(super) enum Control {
    Message(PubSubMessage),
    /// An older bot's event (no `seq`, no `hlc`), applied already, to be written into the state hash.
    Legacy(Event),
    Poison {
        reason: DropReason,
        channel: String,
        payload: String,
    },
}

/// Reads the subscription. redis-rs buffers pub/sub messages in an unbounded channel, so this task
/// must keep up: it decodes each event and applies it in place (the coordinator call returns in
/// microseconds, with the OSC datagram already sent), so there is no queue of its own to fill.
/// Non-event traffic goes to the link task over a bounded channel; when that is full the message is
/// dropped and counted (`redis_subscriber_overflow`).
pub(super) struct Reader {
    pub(super) coord: CoordHandle,
    pub(super) catalog: Arc<Catalog>,
    pub(super) signer: Option<Signer>,
    pub(super) instance: String,
    pub(super) prefix: String,
    pub(super) event_channels: Vec<String>,
    pub(super) counters: Arc<LinkCounters>,
    pub(super) gap: Arc<AtomicBool>,
    /// Last `seq` per source instance, for gap detection.
    pub(super) last_seq: HashMap<String, u64>,
    /// The clock rules every event must meet before it is applied.
    pub(super) admission: Admission,
    /// The furthest ahead of our clock each source has been seen, so `Stats` is told only of a new
    /// maximum (rare) instead of on every event.
    pub(super) peer_ahead: HashMap<String, i64>,
    /// What the link published, to tell our echoes from an impostor's events under our id.
    pub(super) echoes: Arc<OwnEchoes>,
    pub(super) log: Arc<LogThrottle>,
    pub(super) control: mpsc::Sender<Control>,
}

impl Reader {
    pub(super) async fn run(mut self, mut subscriber: Subscriber) {
        // Everything one read delivered is applied as one batch, so a burst costs one lock and sends
        // each variable's OSC value once; a lone message is a batch of one.
        let mut messages = Vec::with_capacity(READ_BATCH);
        let mut events = Vec::with_capacity(READ_BATCH);
        loop {
            if let Err(e) = subscriber.next_batch(&mut messages, READ_BATCH).await {
                debug!(error = %e, "subscription ended");
                return;
            }
            for message in messages.drain(..) {
                let channel = &message.channel[..];
                let delivered = if self.event_channels.iter().any(|c| c.as_bytes() == channel) {
                    self.on_event(&message, &mut events)
                } else {
                    self.hand_over(Control::Message(message))
                };
                if !delivered {
                    return;
                }
            }
            if !events.is_empty() {
                if !self.coord.apply_remote_batch(&events) {
                    return;
                }
                events.clear();
            }
        }
    }

    /// False when the other side has gone (shutdown or a torn-down session).
    pub(super) fn hand_over(&self, control: Control) -> bool {
        match self.control.try_send(control) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.subscriber_overflow.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Decodes one event message into `events`; false when the link is going away.
    pub(super) fn on_event(&mut self, message: &PubSubMessage, events: &mut Vec<Event>) -> bool {
        let channel = std::str::from_utf8(&message.channel).unwrap_or_default();
        let payload = &message.payload[..];
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let base = channel.strip_prefix(self.prefix.as_str()).unwrap_or(channel);
        LinkCounters::count_channel(&self.counters.received_on, base);
        let now = wall_ms_now();
        // A routing map naming several outputs (as older bots write one) brings one route per output,
        // all with the envelope's stamp and seq: admitted, checked and applied together.
        let mut more = Vec::new();
        let decoded = wire::decode_all(payload, &self.catalog, self.signer.as_ref()).and_then(|decoded| {
            more = decoded.more;
            let incoming = decoded.incoming;
            match &incoming {
                Incoming::Event { event, .. } => {
                    if event.stamp.instance.as_ref() != self.instance {
                        self.note_clock(&event.stamp.instance, wire::ahead_ms(event, now));
                    }
                    wire::admit(event, Origin::PubSub, now, self.admission).map(|()| incoming)
                }
                Incoming::Audit { .. } => Ok(incoming),
            }
        });
        match decoded {
            Ok(Incoming::Event { event, seq }) => {
                if event.stamp.instance.as_ref() == self.instance {
                    if self.echoes.is_ours(seq, event.stamp.hlc) {
                        self.counters.own_ignored.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    // Not one we sent: applied like any remote event, so we agree with the peers that did.
                    self.impostor(channel);
                    events.push(event);
                    events.append(&mut more);
                    return true;
                }
                match seq {
                    Some(seq) => {
                        if self.note_seq(&event.stamp.instance, seq) {
                            self.gap.store(true, Ordering::Relaxed);
                        }
                    }
                    // Older bots only PUBLISH: the state hash gets their values from us.
                    None => {
                        for e in std::iter::once(&event).chain(&more) {
                            if !self.hand_over(Control::Legacy(e.clone())) {
                                return false;
                            }
                        }
                    }
                }
                events.push(event);
                events.append(&mut more);
                true
            }
            Ok(Incoming::Audit { source, command }) => {
                if source != self.instance {
                    debug!(source = %source, command = %command, "admin action on another instance");
                }
                true
            }
            Err(reason) => self.hand_over(Control::Poison {
                reason,
                channel: channel.to_owned(),
                payload: String::from_utf8_lossy(payload).into_owned(),
            }),
        }
    }

    /// Records how far ahead of our clock `source` stamps its events; a new maximum goes to `Stats`
    /// (health and `/metrics`), and a peer more than a second ahead is warned about once a minute.
    pub(super) fn note_clock(&mut self, source: &str, ahead: i64) {
        let known = match self.peer_ahead.get_mut(source) {
            Some(max) if ahead <= *max => return,
            Some(max) => {
                *max = ahead;
                true
            }
            None => false,
        };
        if !known {
            if self.peer_ahead.len() >= super::counters::MAX_PEER_CLOCKS {
                return;
            }
            self.peer_ahead.insert(source.to_owned(), ahead);
        }
        self.counters.peer_clocks.note(source, ahead);
        if ahead > 1000
            && let Some(suppressed) = self.log.allow("peer_clock_ahead", Instant::now())
        {
            warn!(
                peer = source,
                ahead_ms = ahead,
                suppressed,
                "a peer's clock runs ahead of ours; check NTP on both hosts"
            );
        }
    }

    /// Another publisher uses our `INSTANCE_ID` (a JavaScript bot, a copied `.env`): counted, shown
    /// in the stats and health, and warned about at most once a minute.
    pub(super) fn impostor(&self, channel: &str) {
        self.counters.note_impostor(channel);
        if let Some(suppressed) = self.log.allow("impostor", Instant::now()) {
            warn!(
                instance = %self.instance,
                channel,
                suppressed,
                "another publisher uses our INSTANCE_ID; its events are applied like any remote event: give it \
                 its own INSTANCE_ID"
            );
        }
    }

    /// Tracks per-source sequence numbers; true when some were skipped (a gap worth a resync).
    pub(super) fn note_seq(&mut self, source: &str, seq: u64) -> bool {
        // A known source (every event but each peer's first) updates in place, without a new key.
        let last = match self.last_seq.get_mut(source) {
            Some(last) => Some(std::mem::replace(last, seq)),
            None => self.last_seq.insert(source.to_owned(), seq),
        };
        match last {
            Some(last) if seq > last + 1 => {
                self.counters.gaps.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }
}
