//! The offline outbox: local events kept, newest per register, while no session can publish them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{RedisLink, wire};
use crate::state::Event;

impl RedisLink {
    /// Waits out a backoff while still taking local events into the outbox; true on shutdown.
    pub(super) async fn wait_offline(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return true,
                () = &mut sleep => return false,
                event = self.outbox.recv() => match event {
                    Some(e) => self.keep(e),
                    None => return true,
                },
            }
        }
    }

    /// Queues an unpublished local event, newest per register.
    pub(super) fn keep(&mut self, event: Event) {
        if !self.settings.publish {
            self.counters.unpublished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !wire::is_register(&event.kind) {
            // A vote kept offline would reach the others after its window was decided: it would
            // only be refused as late, so it is not kept (the local ballot still counted it).
            self.counters.unpublished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = wire::register_key(&event.kind);
        match self.pending.get(&key) {
            Some(old) if old.stamp >= event.stamp => {}
            Some(_) => {
                self.counters.outbox_coalesced.fetch_add(1, Ordering::Relaxed);
                self.pending.insert(key, event);
            }
            None => {
                if self.pending.len() >= self.settings.outbox_capacity {
                    // Full: the oldest write goes, so the newest actions survive.
                    if let Some(oldest) =
                        self.pending.iter().min_by_key(|(_, e)| e.stamp.clone()).map(|(k, _)| k.clone())
                    {
                        self.pending.remove(&oldest);
                        self.counters.outbox_dropped.fetch_add(1, Ordering::Relaxed);
                        if let Some(swallowed) = self.log.allow("link outbox full", Instant::now()) {
                            warn!(
                                swallowed,
                                "outbox full: the oldest unpublished event was dropped (counted as redis_outbox_dropped)"
                            );
                        }
                    }
                }
                self.pending.insert(key, event);
            }
        }
        self.counters.outbox_depth.store(self.pending.len() as u64, Ordering::Relaxed);
    }
}
