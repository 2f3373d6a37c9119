//! The overlay hub: one task follows the coordinator's change feed, numbers every change, keeps a
//! replay ring (for `Last-Event-ID`) and a history ring (for `/api/events/history`), and fans events
//! out to SSE clients through bounded per-client queues with latest-value coalescing.
//!
//! Knows the change feed and the state view; knows nothing of warp, HTTP, OSC, Redis or chat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::{Output, Variable};
use crate::coord::{CoordHandle, Subscription, wall_ms_now};
use crate::state::{Change, Emergency, EmergencyView, ParamView, Route, State, StateView};
use crate::stats::Stats;

/// Updates kept for `Last-Event-ID` resume. A client that missed more gets a fresh snapshot instead.
pub const REPLAY_RING: usize = 1024;
/// Recent events kept for `/api/events/history`; the oldest is dropped when full.
pub const HISTORY_RING: usize = 500;
/// Events waiting per SSE client. Queued updates of the same parameter (or flag) are coalesced to
/// the latest value; when the queue is still full, it is emptied and replaced by one fresh snapshot,
/// so a slow client costs itself a resync and never holds back the hub or other clients.
pub const CLIENT_QUEUE: usize = 256;
/// Pending SSE connection requests. When full, a new connection waits for room (connections are
/// rare; the hub answers each in microseconds).
pub const CONNECT_QUEUE: usize = 64;

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

/// One entry of `/api/events/history`, shaped like the wire envelope (`type`, `timestamp`, `data`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: u64,
    /// Whether another instance made it; `null` for admin and routing events, whose origin the change
    /// feed does not carry.
    pub remote: Option<bool>,
    pub data: serde_json::Value,
}

/// What coalesces with what: a queued update is replaced by a newer one with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Param(Arc<str>),
    /// Full-state updates (routing changes, clear): a newer one supersedes an older one.
    State,
    Overlay,
    Emergency,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Option<Key>, HubEvent)>> {
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `event`; returns false when the queue overflowed and the caller must push a snapshot.
    fn push(&self, key: Option<Key>, event: HubEvent) -> bool {
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

    fn replace_with(&self, snapshot: HubEvent) {
        let mut items = self.lock();
        items.clear();
        items.push_back((None, snapshot));
        drop(items);
        self.ready.notify_one();
    }
}

/// Counts a connected SSE client for as long as it lives (the stream owns it).
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicUsize>);

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

struct Connect {
    last_event_id: Option<u64>,
    reply: oneshot::Sender<Client>,
}

/// A cheap, cloneable way to reach the hub from HTTP handlers.
#[derive(Debug, Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Connect>,
    history: Arc<Mutex<VecDeque<HistoryEntry>>>,
    clients: Arc<AtomicUsize>,
    resyncs: Arc<AtomicU64>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect").field("last_event_id", &self.last_event_id).finish_non_exhaustive()
    }
}

impl HubHandle {
    /// Registers a client. `None` when the hub has stopped (shutting down).
    pub async fn connect(&self, last_event_id: Option<u64>) -> Option<Client> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Connect { last_event_id, reply }).await.ok()?;
        rx.await.ok()
    }

    /// Recent events, newest first, filtered by `kind` when given.
    pub fn history(&self, kind: Option<&str>, limit: usize) -> Vec<HistoryEntry> {
        let history = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        history.iter().rev().filter(|e| kind.is_none_or(|k| e.kind == k)).take(limit).cloned().collect()
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

/// The hub's parts; [`Hub::spawn`] starts the task.
#[derive(Debug)]
pub struct Hub {
    instance: Arc<str>,
    value_max: u8,
    coord: CoordHandle,
    stats: Arc<Stats>,
}

impl Hub {
    pub fn new(instance: Arc<str>, value_max: u8, coord: CoordHandle, stats: Arc<Stats>) -> Hub {
        Hub { instance, value_max, coord, stats }
    }

    /// Subscribes to the change feed now, so the history and every id start at start-up, and returns
    /// the handle and the task; the task ends on `shutdown` (or fails if the feed vanishes). `None`
    /// when the coordinator has already stopped.
    pub fn spawn(
        self,
        shutdown: CancellationToken,
    ) -> Option<(HubHandle, impl Future<Output = anyhow::Result<()>> + Send)> {
        let subscription = self.coord.subscribe()?;
        let (tx, rx) = mpsc::channel(CONNECT_QUEUE);
        let handle = HubHandle { tx, history: Arc::default(), clients: Arc::default(), resyncs: Arc::default() };
        let task = run(self, subscription, handle.clone(), rx, shutdown);
        Some((handle, task))
    }
}

async fn run(
    hub: Hub,
    subscription: Subscription,
    handle: HubHandle,
    mut connects: mpsc::Receiver<Connect>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut feed = subscription.changes;
    // Ids keep growing across restarts (they start at the wall clock), so an id from an earlier
    // process is never mistaken for one of ours: it is older than our ring and gets a snapshot.
    let first = wall_ms_now().saturating_mul(1000);
    let mut fan = Fanout {
        mirror: Mirror::new(&subscription.state, hub.instance.clone(), hub.value_max),
        last_id: first,
        ring: VecDeque::with_capacity(REPLAY_RING),
        clients: Vec::new(),
        snapshot: None,
        handle,
    };
    loop {
        let lagged = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            connect = connects.recv() => match connect {
                // Catch up with the feed first, so a new client's snapshot includes every change
                // applied before it connected.
                Some(c) => match drain(&mut feed, &mut fan) {
                    Ok(()) => {
                        fan.connect(c);
                        None
                    }
                    Err(missed) => Some((missed, Some(c))),
                },
                None => return Ok(()),
            },
            change = feed.recv() => match change {
                Ok(change) => {
                    fan.publish(&change);
                    None
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => Some((missed, None)),
                Err(broadcast::error::RecvError::Closed) => return gone(&shutdown),
            },
        };
        if let Some((missed, pending)) = lagged {
            hub.stats.feed_resyncs.fetch_add(1, Ordering::Relaxed);
            warn!(missed, "overlay hub fell behind the change feed; resynchronising from a snapshot");
            let Some(fresh) = hub.coord.subscribe() else { return gone(&shutdown) };
            feed = fresh.changes;
            fan.resync(&fresh.state);
            if let Some(c) = pending {
                fan.connect(c);
            }
        }
    }
}

/// Publishes every change already waiting in the feed; `Err(missed)` when the feed lagged.
fn drain(feed: &mut broadcast::Receiver<Change>, fan: &mut Fanout) -> Result<(), u64> {
    loop {
        match feed.try_recv() {
            Ok(change) => fan.publish(&change),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => return Err(missed),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => return Ok(()),
        }
    }
}

fn gone(shutdown: &CancellationToken) -> anyhow::Result<()> {
    if shutdown.is_cancelled() { Ok(()) } else { Err(anyhow::anyhow!("the coordinator's change feed closed")) }
}

struct Fanout {
    mirror: Mirror,
    last_id: u64,
    ring: VecDeque<HubEvent>,
    clients: Vec<Weak<ClientQueue>>,
    /// The snapshot at `last_id`, built at most once per id.
    snapshot: Option<HubEvent>,
    handle: HubHandle,
}

impl Fanout {
    fn snapshot(&mut self) -> HubEvent {
        if let Some(s) = self.snapshot.as_ref().filter(|s| s.id == self.last_id) {
            return s.clone();
        }
        let data = serde_json::to_string(&self.mirror.snapshot()).unwrap_or_else(|_| "{}".to_owned());
        let event = HubEvent { id: self.last_id, name: EventName::Snapshot, data: data.into() };
        self.snapshot = Some(event.clone());
        event
    }

    /// True when every update after `id` is still in the ring (or there are none) and they fit in a
    /// client's queue; otherwise a snapshot is both correct and shorter.
    fn can_resume(&self, id: u64) -> bool {
        id == self.last_id
            || (id < self.last_id
                && self.last_id - id <= CLIENT_QUEUE as u64
                && self.ring.front().is_some_and(|e| e.id <= id + 1))
    }

    fn connect(&mut self, connect: Connect) {
        let queue = Arc::new(ClientQueue::default());
        match connect.last_event_id {
            Some(id) if self.can_resume(id) => {
                for event in self.ring.iter().filter(|e| e.id > id) {
                    queue.push(None, event.clone());
                }
            }
            _ => queue.replace_with(self.snapshot()),
        }
        self.handle.clients.fetch_add(1, Ordering::Relaxed);
        let client = Client { queue: queue.clone(), guard: ClientGuard(self.handle.clients.clone()) };
        if connect.reply.send(client).is_ok() {
            self.clients.retain(|c| c.strong_count() > 0);
            self.clients.push(Arc::downgrade(&queue));
        }
    }

    fn publish(&mut self, change: &Change) {
        let (key, data, history) = self.mirror.apply(change);
        self.last_id += 1;
        let event = HubEvent { id: self.last_id, name: EventName::Update, data: data.to_string().into() };
        if self.ring.len() == REPLAY_RING {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
        self.record(history);
        let mut overflowed = Vec::new();
        self.clients.retain(|weak| match weak.upgrade() {
            Some(queue) => {
                if !queue.push(key.clone(), event.clone()) {
                    overflowed.push(queue);
                }
                true
            }
            None => false,
        });
        if !overflowed.is_empty() {
            let snapshot = self.snapshot();
            self.handle.resyncs.fetch_add(overflowed.len() as u64, Ordering::Relaxed);
            for queue in overflowed {
                queue.replace_with(snapshot.clone());
            }
        }
    }

    /// After missing changes: a new mirror, an empty ring (nothing in it can be trusted), and a
    /// fresh snapshot for every client.
    fn resync(&mut self, state: &State) {
        self.mirror = Mirror::new(state, self.mirror.me.clone(), self.mirror.value_max);
        self.last_id += 1;
        self.ring.clear();
        let snapshot = self.snapshot();
        self.clients.retain(|weak| weak.upgrade().map(|q| q.replace_with(snapshot.clone())).is_some());
        info!("overlay hub resynchronised");
    }

    fn record(&self, entry: Recorded) {
        let (kind, data, timestamp, remote) = entry;
        let mut history = self.handle.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if history.len() == HISTORY_RING {
            history.pop_front();
        }
        history.push_back(HistoryEntry { id: self.last_id, kind, timestamp, remote, data });
    }
}

/// A history entry before it gets its id: `type`, `data`, `timestamp`, `remote`.
type Recorded = (&'static str, serde_json::Value, u64, Option<bool>);

#[derive(Debug, Clone)]
struct Param {
    value: u8,
    user: Arc<str>,
    source: Arc<str>,
    wall_ms: u64,
}

/// The hub's copy of the state, kept from the change feed, for snapshots and update payloads.
#[derive(Debug)]
struct Mirror {
    me: Arc<str>,
    value_max: u8,
    params: BTreeMap<Variable, Param>,
    routes: BTreeMap<Output, Route>,
    overlay: bool,
    emergency: Emergency,
}

/// `/events` snapshot payload: the same shape as `/api/state` minus the Redis status.
#[derive(Debug, Serialize)]
struct Snapshot<'a> {
    instance_id: &'a str,
    #[serde(flatten)]
    state: StateView,
}

impl Mirror {
    fn new(state: &State, me: Arc<str>, value_max: u8) -> Mirror {
        let params = state
            .params()
            .map(|(v, p)| {
                let param = Param {
                    value: p.value,
                    user: p.user.clone(),
                    source: p.stamp.instance.clone(),
                    wall_ms: p.wall_ms,
                };
                (v.clone(), param)
            })
            .collect();
        Mirror {
            me,
            value_max,
            params,
            routes: state.routes().map(|(o, r)| (o.clone(), r.clone())).collect(),
            overlay: state.overlay_enabled(),
            emergency: state.emergency().clone(),
        }
    }

    fn param_view(&self, variable: &Variable, p: &Param) -> ParamView {
        let routed = self.routes.iter().find(|(_, r)| r.variable == *variable);
        ParamView {
            value: p.value,
            voltage: routed.map(|(_, r)| r.range.voltage(p.value, self.value_max)),
            route: routed.map(|(o, _)| o.to_string()),
            user: p.user.to_string(),
            source_instance: p.source.to_string(),
            timestamp: p.wall_ms,
            remote: p.source != self.me,
        }
    }

    fn view(&self) -> StateView {
        StateView {
            parameters: self.params.iter().map(|(v, p)| (v.to_string(), self.param_view(v, p))).collect(),
            routes: self.routes.iter().map(|(o, r)| (o.to_string(), r.variable.to_string())).collect(),
            overlay_enabled: self.overlay,
            emergency: EmergencyView { active: self.emergency.active, message: self.emergency.message.clone() },
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { instance_id: &self.me, state: self.view() }
    }

    /// Applies a change; returns its coalescing key, the update payload and the history entry
    /// (`type`, `data`, `timestamp`, `remote`).
    fn apply(&mut self, change: &Change) -> (Option<Key>, serde_json::Value, Recorded) {
        let now = wall_ms_now();
        match change {
            Change::Param { variable, value, user, source, wall_ms } => {
                let param = Param { value: *value, user: user.clone(), source: source.clone(), wall_ms: *wall_ms };
                let name = variable.to_string();
                let view = self.param_view(variable, &param);
                self.params.insert(variable.clone(), param);
                let remote = *source != self.me;
                let history = json!({"variable": name, "value": value, "user": user, "source_instance": source});
                let update = json!({"type": "parameter", "variable": name, "parameter": view});
                (Some(Key::Param(name.into())), update, ("parameter_update", history, *wall_ms, Some(remote)))
            }
            Change::Cleared { variables } => {
                for v in variables.iter() {
                    self.params.remove(v);
                }
                let data = json!({"action": "clear_all", "cleared": variables.len()});
                (Some(Key::State), self.state_update("cleared all parameters"), ("admin_command", data, now, None))
            }
            Change::Route { output, route } => {
                let (action, text) = match route {
                    Some(r) => {
                        self.routes.insert(output.clone(), r.clone());
                        ("add", format!("routed {output} → {}", r.variable))
                    }
                    None => {
                        self.routes.remove(output);
                        ("remove", format!("removed route {output}"))
                    }
                };
                let variable = route.as_ref().map(|r| r.variable.to_string());
                let data = json!({"action": action, "output": output.to_string(), "variable": variable});
                (Some(Key::State), self.state_update(&text), ("routing_change", data, now, None))
            }
            Change::Overlay { enabled } => {
                self.overlay = *enabled;
                let data = json!({"action": "overlay_toggle", "enabled": enabled});
                (Some(Key::Overlay), json!({"type": "overlay", "enabled": enabled}), ("admin_command", data, now, None))
            }
            Change::Emergency { active, message } => {
                self.emergency = Emergency { active: *active, message: message.clone() };
                let action = if *active { "emergency_stop" } else { "resume" };
                let data = json!({"action": action, "message": message});
                let update = json!({"type": "emergency", "active": active, "message": message});
                (Some(Key::Emergency), update, ("admin_command", data, now, None))
            }
        }
    }

    fn state_update(&self, action: &str) -> serde_json::Value {
        json!({"type": "state", "action": action, "state": self.snapshot()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::coord::{Alone, Coordinator};
    use crate::gate::{Gate, GatePolicy};
    use crate::state::{Event, EventKind, Stamp};
    use std::time::{Duration, Instant};

    /// A coordinator and a hub on the current thread, with a change feed of `feed` slots.
    fn start(feed: usize) -> (CoordHandle, HubHandle, Arc<Stats>, Arc<Catalog>) {
        let catalog = Arc::new(Catalog::builtin());
        let stats = Arc::new(Stats::default());
        let me: Arc<str> = "bot-001".into();
        let policy = GatePolicy {
            user_cooldown: Duration::ZERO,
            global_per_second: 0,
            admin_users: std::collections::HashSet::default(),
        };
        let coordinator = Coordinator::new(
            me.clone(),
            catalog.clone(),
            State::default(),
            Gate::new(&policy, Instant::now()),
            None,
            Arc::new(Alone(me.clone())),
            stats.clone(),
        )
        .with_feed_capacity(feed);
        let token = CancellationToken::new();
        let (coord, task) = coordinator.spawn(token.clone());
        tokio::spawn(task);
        let (hub, hub_task) = Hub::new(me, 127, coord.clone(), stats.clone()).spawn(token).expect("hub");
        tokio::spawn(hub_task);
        (coord, hub, stats, catalog)
    }

    fn remote_set(catalog: &Catalog, hlc: u64, name: &str, value: u8) -> Event {
        let variable = catalog.parse_variable(name).expect("test variable");
        Event {
            stamp: Stamp { hlc, instance: "bot-002".into() },
            wall_ms: 1_700_000_000_000,
            user: "remote_viewer".into(),
            kind: EventKind::Set { variable, value },
        }
    }

    /// Every variable of the built-in catalogue, for tests that need many distinct keys.
    fn many_variables(catalog: &Catalog) -> Vec<String> {
        let mut names = Vec::new();
        for (module, (_, instances, parameters)) in catalog.modules() {
            for i in 1..=instances {
                names.extend(parameters.iter().map(|p| format!("{module}#{i}.{p}")));
            }
        }
        names
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_client_gets_a_snapshot_and_never_holds_back_a_fast_one() {
        let (coord, hub, _, catalog) = start(4096);
        let slow = hub.connect(None).await.expect("slow client");
        let fast = hub.connect(None).await.expect("fast client");
        assert_eq!(slow.queue.pop().map(|e| e.name), Some(EventName::Snapshot));
        let first = fast.queue.pop().expect("snapshot").id;
        let names = many_variables(&catalog);
        let total = CLIENT_QUEUE + 44;
        assert!(names.len() >= total, "enough distinct variables");
        let mut fast_ids = Vec::new();
        for (n, name) in names.iter().take(total).enumerate() {
            assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 1)));
            if n % 50 == 49 || n + 1 == total {
                // A connect is answered only after the hub has published everything before it.
                drop(hub.connect(None).await.expect("barrier"));
                fast_ids.extend(std::iter::from_fn(|| fast.queue.pop()).map(|e| e.id));
            }
        }
        assert_eq!(fast_ids, (first + 1..=first + total as u64).collect::<Vec<_>>(), "the fast client got everything");
        let slow_events: Vec<HubEvent> = std::iter::from_fn(|| slow.queue.pop()).collect();
        assert_eq!(slow_events[0].name, EventName::Snapshot, "the slow client was resynchronised");
        assert!(slow_events[0].data.contains("remote_viewer"));
        assert!(slow_events.len() < CLIENT_QUEUE, "its queue stayed bounded: {}", slow_events.len());
        assert_eq!(slow_events.last().map(|e| e.id), Some(first + total as u64), "and it is current");
        assert_eq!(hub.client_resyncs(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_hubs_mirror_matches_the_coordinators_state_view() {
        let (coord, hub, _, catalog) = start(4096);
        let op = crate::gate::Sender::operator("op");
        let lines = [
            "!admin es9out#1 → doorway#1.threshold",
            "doorway#1.threshold: 89",
            "!admin esx8cv#1.out#2 → doorway#1.threshold",
            "doorway#1.gain: 3",
            "!admin clear",
            "navigator#1.x: 5",
            "!admin remove es9out#1",
            "!admin es9out#2 → navigator#1.x",
            "!admin overlay off",
            "!admin emergency stop smoke",
        ];
        for line in lines {
            let command = crate::command::parse(line, &catalog).expect("valid line");
            assert!(matches!(coord.submit(&op, command, Instant::now()), crate::coord::Outcome::Done { .. }));
        }
        assert!(coord.apply_remote(&remote_set(&catalog, u64::MAX >> 1, "doorway#2.gain", 64)));
        let client = hub.connect(None).await.expect("client");
        let snapshot = client.queue.pop().expect("snapshot");
        let mut mirrored: serde_json::Value = serde_json::from_str(&snapshot.data).expect("json");
        assert_eq!(mirrored["instance_id"], "bot-001");
        mirrored.as_object_mut().expect("object").remove("instance_id");
        let state = coord.snapshot().expect("state");
        // Through text, as clients see both: f32 voltages print the same way.
        let expected: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&state.view("bot-001", 127)).expect("json")).expect("json");
        assert_eq!(mirrored, expected);
        assert_eq!(expected["parameters"]["doorway#2.gain"]["remote"], true, "the sequence covers remote writes");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_resume_is_a_replay_only_while_it_fits_a_client_queue() {
        let (coord, hub, _, catalog) = start(4096);
        let first = hub.connect(None).await.expect("client").queue.pop().expect("snapshot").id;
        let names = many_variables(&catalog);
        for (n, name) in names.iter().take(CLIENT_QUEUE + 1).enumerate() {
            assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 7)));
        }
        drop(hub.connect(None).await.expect("barrier"));
        let behind = hub.connect(Some(first)).await.expect("client");
        assert_eq!(behind.queue.pop().map(|e| e.name), Some(EventName::Snapshot), "too many missed: a snapshot");
        assert!(behind.queue.pop().is_none());
        let close = hub.connect(Some(first + 1)).await.expect("client");
        let replayed: Vec<HubEvent> = std::iter::from_fn(|| close.queue.pop()).collect();
        assert_eq!(replayed.len(), CLIENT_QUEUE, "exactly the missed updates");
        assert!(replayed.iter().all(|e| e.name == EventName::Update));
        assert_eq!(replayed.first().map(|e| e.id), Some(first + 2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hub_that_lags_behind_the_feed_resubscribes_and_sends_a_fresh_snapshot() {
        let (coord, hub, stats, catalog) = start(2);
        let client = hub.connect(None).await.expect("client");
        assert_eq!(client.queue.pop().map(|e| e.name), Some(EventName::Snapshot));
        // Queued without yielding, so the coordinator applies all of them before the hub runs again
        // and the two-slot feed overflows.
        for n in 0..10u8 {
            assert!(coord.apply_remote(&remote_set(&catalog, 1 + u64::from(n), "doorway#1.gain", n)));
        }
        let snapshot = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(e) = client.queue.pop().filter(|e| e.name == EventName::Snapshot) {
                    return e;
                }
                client.queue.ready().await;
            }
        })
        .await
        .expect("a fresh snapshot after the lag");
        let state: serde_json::Value = serde_json::from_str(&snapshot.data).expect("json");
        assert_eq!(state["parameters"]["doorway#1.gain"]["value"], 9);
        assert_eq!(state["parameters"]["doorway#1.gain"]["remote"], true);
        assert_eq!(stats.feed_resyncs.load(Ordering::Relaxed), 1);
    }

    fn event(id: u64) -> HubEvent {
        HubEvent { id, name: EventName::Update, data: Arc::from("{}") }
    }

    #[test]
    fn a_queue_keeps_only_the_latest_value_per_key_in_order() {
        let q = ClientQueue::default();
        assert!(q.push(Some(Key::Param("a".into())), event(1)));
        assert!(q.push(Some(Key::Param("b".into())), event(2)));
        assert!(q.push(Some(Key::Param("a".into())), event(3)));
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
