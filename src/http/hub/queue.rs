//! One SSE client's bounded queue, with latest-value coalescing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::HubEvent;
use crate::catalog::Variable;

/// Events waiting per SSE client. Queued updates of the same parameter (or flag) are coalesced to
/// the latest value; when the queue is still full, it is emptied and replaced by one fresh snapshot,
/// so a slow client costs itself a resync and never holds back the hub or other clients.
pub const CLIENT_QUEUE: usize = 256;

/// What coalesces with what: a queued update is replaced by a newer one with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
    Param(Variable),
    /// A parameter's vote tally: the newest supersedes the older.
    Vote(Variable),
    /// Full-state updates (routing changes, clear, emergency stop and resume): a newer one
    /// supersedes an older one.
    State,
    Overlay,
}

/// One SSE client's bounded queue. The hub pushes without ever waiting; the client's stream pops.
#[derive(Debug, Default)]
pub struct ClientQueue {
    items: Mutex<VecDeque<(Option<Key>, HubEvent)>>,
    ready: Notify,
}

impl ClientQueue {
    /// The next event, if any.
    pub fn pop(&self) -> Option<HubEvent> {
        self.lock().pop_front().map(|(_, e)| e)
    }

    /// Waits until something may have been pushed (a permit is kept, so no push is missed).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(Option<Key>, HubEvent)>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event`; returns false when the queue overflowed and the caller must push a snapshot.
    pub(super) fn push(&self, key: Option<Key>, event: HubEvent) -> bool {
        let mut items = self.lock();
        if let Some(k) = &key
            && let Some(at) = items.iter().position(|(old, _)| old.as_ref() == Some(k))
        {
            items.remove(at);
        }
        let fits = items.len() < CLIENT_QUEUE;
        if fits {
            items.push_back((key, event));
        } else {
            items.clear();
        }
        drop(items);
        self.ready.notify_one();
        fits
    }

    pub(super) fn replace_with(&self, snapshot: HubEvent) {
        let mut items = self.lock();
        items.clear();
        items.push_back((None, snapshot));
        drop(items);
        self.ready.notify_one();
    }
}

/// Counts a connected SSE client for as long as it lives (the stream owns it).
#[derive(Debug)]
pub struct ClientGuard(pub(super) Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A new SSE client: its queue (already holding a snapshot or the replayed updates) and its guard.
#[derive(Debug)]
pub struct Client {
    pub queue: Arc<ClientQueue>,
    pub guard: ClientGuard,
}

#[cfg(test)]
mod tests {
    use super::super::EventName;
    use super::*;
    use crate::catalog::Catalog;

    fn event(id: u64) -> HubEvent {
        HubEvent { id, name: EventName::Update, data: Arc::from("{}") }
    }

    #[test]
    fn a_queue_keeps_only_the_latest_value_per_key_in_order() {
        let catalog = Catalog::builtin();
        let (a, b) = (
            catalog.parse_variable("doorway#1.gain").expect("a"),
            catalog.parse_variable("doorway#1.threshold").expect("b"),
        );
        let q = ClientQueue::default();
        assert!(q.push(Some(Key::Param(a.clone())), event(1)));
        assert!(q.push(Some(Key::Param(b)), event(2)));
        assert!(q.push(Some(Key::Param(a)), event(3)));
        assert!(q.push(None, event(4)));
        let ids: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|e| e.id).collect();
        assert_eq!(ids, vec![2, 3, 4], "ids still increase; the older `a` is gone");
    }

    #[test]
    fn a_full_queue_coalesces_first_and_overflows_only_when_it_cannot() {
        let q = ClientQueue::default();
        assert!(q.push(Some(Key::Overlay), event(0)));
        for id in 1..CLIENT_QUEUE as u64 {
            assert!(q.push(None, event(id)));
        }
        assert!(q.push(Some(Key::Overlay), event(5000)), "full, but the newer overlay flag replaces the older");
        assert!(!q.push(None, event(5001)), "full and nothing to coalesce: overflow");
        assert!(q.pop().is_none(), "emptied, for the caller's snapshot");
    }
}
