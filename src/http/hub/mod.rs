//! The overlay hub: an observer of the coordinator that numbers every change, keeps a replay ring
//! (for `Last-Event-ID`) and a history ring (for `/api/events/history`), and fans events out to SSE
//! clients through bounded per-client queues with latest-value coalescing ([`queue`]).
//!
//! It runs in the task that applied the change (chat, Redis reader, HTTP), under the coordinator's
//! lock, and wakes nothing but the SSE clients it has. It keeps no copy of the state: each change
//! comes with the state after it, and a new client's snapshot is read from the coordinator's state
//! under the same lock, so nothing can fall between the snapshot and the client's first update.
//! With no client connected, a parameter change costs a few ring updates: its JSON is rendered only
//! when someone reads it ([`render`]), and at high event rates nobody does.
//!
//! Knows the coordinator's observer protocol and the state view; knows nothing of warp, OSC, Redis
//! or chat beyond the confirmation texts.

pub mod queue;
mod render;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::clock::wall_ms_now;
use crate::coord::CoordHandle;
use crate::observe::Observer;
use crate::state::{Change, Event, State};
pub use queue::{CLIENT_QUEUE, Client, ClientGuard, ClientQueue};
pub use render::HistoryEntry;
use render::{Body, Recorded, Renderer};

/// Updates kept for `Last-Event-ID` resume. A client that missed more gets a fresh snapshot instead.
pub const REPLAY_RING: usize = 1024;
/// Recent events kept for `/api/events/history`; the oldest is dropped when full.
pub const HISTORY_RING: usize = 500;

/// The two SSE event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// The full state; the client replaces everything it shows.
    Snapshot,
    /// One change; the client merges it.
    Update,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Update => "update",
        }
    }
}

/// One numbered event as SSE clients receive it. `data` is JSON, shared by every client.
#[derive(Debug, Clone)]
pub struct HubEvent {
    pub id: u64,
    pub name: EventName,
    pub data: Arc<str>,
}

/// A cheap, cloneable way to reach the hub from HTTP handlers.
#[derive(Debug, Clone)]
pub struct HubHandle {
    fan: Arc<Mutex<Fanout>>,
    coord: CoordHandle,
    clients: Arc<AtomicUsize>,
    resyncs: Arc<AtomicU64>,
}

impl HubHandle {
    fn fan(&self) -> MutexGuard<'_, Fanout> {
        self.fan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a client. `None` once the coordinator has shut down (the hub hears nothing more).
    /// Under the coordinator's lock (then the hub's, the order every change takes them in), so the
    /// snapshot or replay and the registration see the same state.
    pub fn connect(&self, last_event_id: Option<u64>) -> Option<Client> {
        let queue = self.coord.read(|state| self.fan().connect(state, last_event_id))?;
        self.clients.fetch_add(1, Ordering::Relaxed);
        Some(Client { queue, guard: ClientGuard(self.clients.clone()) })
    }

    /// Recent events, newest first, filtered by `kind` when given. Copied under the lock, rendered
    /// outside it.
    pub fn history(&self, kind: Option<&str>, limit: usize) -> Vec<HistoryEntry> {
        let picked: Vec<Recorded> =
            self.fan().history.iter().rev().filter(|e| kind.is_none_or(|k| e.kind == k)).take(limit).cloned().collect();
        picked.into_iter().map(Recorded::render).collect()
    }

    /// SSE clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Times a slow SSE client's queue overflowed and was replaced by a snapshot.
    pub fn client_resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
}

/// The hub's parts; [`Hub::attach`] registers it with the coordinator.
#[derive(Debug)]
pub struct Hub {
    instance: Arc<str>,
    value_max: u8,
    coord: CoordHandle,
}

impl Hub {
    pub fn new(instance: Arc<str>, value_max: u8, coord: CoordHandle) -> Hub {
        Hub { instance, value_max, coord }
    }

    /// Registers the hub as an observer now, so the history and every id start at start-up. `None`
    /// when the coordinator has already stopped.
    pub fn attach(self) -> Option<HubHandle> {
        let Hub { instance, value_max, coord } = self;
        let resyncs = Arc::new(AtomicU64::new(0));
        // Ids keep growing across restarts (they start at the wall clock), so an id from an earlier
        // process is never mistaken for one of ours: it is older than our ring and gets a snapshot.
        let fan = Arc::new(Mutex::new(Fanout {
            renderer: Renderer { me: instance, value_max },
            last_id: wall_ms_now().saturating_mul(1000),
            ring: VecDeque::with_capacity(REPLAY_RING),
            history: VecDeque::with_capacity(HISTORY_RING),
            clients: Vec::new(),
            snapshot: None,
            resyncs: resyncs.clone(),
        }));
        let observer = fan.clone();
        coord.observe(move |_| Box::new(Attached(observer))).then(|| HubHandle {
            fan,
            coord,
            clients: Arc::default(),
            resyncs,
        })
    }
}

/// The hub as the coordinator holds it; dropped when the coordinator shuts down.
#[derive(Debug)]
struct Attached(Arc<Mutex<Fanout>>);

impl Observer for Attached {
    fn on_change(&mut self, event: &Event, change: &Change, state: &State) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).publish(event, change, state);
    }
}

/// One update in the replay ring.
#[derive(Debug)]
struct Entry {
    id: u64,
    body: Body,
}

impl Entry {
    /// The update as clients receive it; rendered once, then kept.
    fn event(&mut self) -> HubEvent {
        let data = self.body.render();
        self.body = Body::Json(data.clone());
        HubEvent { id: self.id, name: EventName::Update, data }
    }
}

#[derive(Debug)]
struct Fanout {
    renderer: Renderer,
    last_id: u64,
    ring: VecDeque<Entry>,
    history: VecDeque<Recorded>,
    clients: Vec<Weak<ClientQueue>>,
    /// The snapshot's body at an id (`last_id` when current), rendered at most once per id.
    snapshot: Option<(u64, Arc<str>)>,
    resyncs: Arc<AtomicU64>,
}

impl Fanout {
    fn snapshot(&mut self, state: &State) -> HubEvent {
        let id = self.last_id;
        let body = match self.snapshot.as_ref().filter(|(at, _)| *at == id) {
            Some((_, body)) => body.clone(),
            None => {
                let body = self.renderer.snapshot(state);
                self.snapshot = Some((id, body.clone()));
                body
            }
        };
        render::stamped(id, &body, wall_ms_now())
    }

    /// True when every update after `id` is still in the ring (or there are none) and they fit in a
    /// client's queue; otherwise a snapshot is both correct and shorter.
    fn can_resume(&self, id: u64) -> bool {
        id == self.last_id
            || (id < self.last_id
                && self.last_id - id <= CLIENT_QUEUE as u64
                && self.ring.front().is_some_and(|e| e.id <= id + 1))
    }

    fn connect(&mut self, state: &State, last_event_id: Option<u64>) -> Arc<ClientQueue> {
        let queue = Arc::new(ClientQueue::default());
        match last_event_id {
            Some(id) if self.can_resume(id) => {
                for entry in self.ring.iter_mut().filter(|e| e.id > id) {
                    queue.push(None, entry.event());
                }
            }
            _ => queue.replace_with(self.snapshot(state)),
        }
        self.clients.retain(|c| c.strong_count() > 0);
        self.clients.push(Arc::downgrade(&queue));
        queue
    }

    fn publish(&mut self, event: &Event, change: &Change, state: &State) {
        self.last_id += 1;
        let (key, body, recorded) = self.renderer.update(self.last_id, event, change, state);
        let mut entry = Entry { id: self.last_id, body };
        if self.history.len() == HISTORY_RING {
            self.history.pop_front();
        }
        self.history.push_back(recorded);
        self.clients.retain(|c| c.strong_count() > 0);
        if !self.clients.is_empty() {
            let update = entry.event();
            let mut overflowed = Vec::new();
            for queue in self.clients.iter().filter_map(Weak::upgrade) {
                if !queue.push(key.clone(), update.clone()) {
                    overflowed.push(queue);
                }
            }
            if !overflowed.is_empty() {
                let snapshot = self.snapshot(state);
                self.resyncs.fetch_add(overflowed.len() as u64, Ordering::Relaxed);
                for queue in overflowed {
                    queue.replace_with(snapshot.clone());
                }
            }
        }
        if self.ring.len() == REPLAY_RING {
            self.ring.pop_front();
        }
        self.ring.push_back(entry);
    }
}

#[cfg(test)]
mod tests;
