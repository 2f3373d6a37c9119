//! The overlay hub: an observer of the coordinator that numbers every change, keeps a replay ring
//! (for `Last-Event-ID`) and a history ring (for `/api/events/history`), and fans events out to SSE
//! clients through bounded per-client queues with latest-value coalescing.
//!
//! It runs in the task that applied the change (chat, Redis reader, HTTP), under the coordinator's
//! lock, and wakes nothing but the SSE clients it has. With no client connected, a parameter change
//! costs a few map and ring updates: its JSON is rendered only when someone reads it (a client, a
//! `Last-Event-ID` replay, the history endpoint), and at high event rates nobody does.
//!
//! Knows the coordinator's observer interface and the state view; knows nothing of warp, HTTP, OSC,
//! Redis or chat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::catalog::{Output, Variable};
use crate::clock::wall_ms_now;
use crate::coord::{CoordHandle, Observer};
use crate::state::{Change, Emergency, EmergencyView, ParamView, Route, State, StateView};

/// Updates kept for `Last-Event-ID` resume. A client that missed more gets a fresh snapshot instead.
pub const REPLAY_RING: usize = 1024;
/// Recent events kept for `/api/events/history`; the oldest is dropped when full.
pub const HISTORY_RING: usize = 500;
/// Events waiting per SSE client. Queued updates of the same parameter (or flag) are coalesced to
/// the latest value; when the queue is still full, it is emptied and replaced by one fresh snapshot,
/// so a slow client costs itself a resync and never holds back the hub or other clients.
pub const CLIENT_QUEUE: usize = 256;

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
    /// carries no trace of.
    pub remote: Option<bool>,
    pub data: serde_json::Value,
}

/// What coalesces with what: a queued update is replaced by a newer one with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Param(Variable),
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

/// A cheap, cloneable way to reach the hub from HTTP handlers.
#[derive(Debug, Clone)]
pub struct HubHandle {
    fan: Arc<Mutex<Fanout>>,
    clients: Arc<AtomicUsize>,
    resyncs: Arc<AtomicU64>,
}

impl HubHandle {
    fn fan(&self) -> MutexGuard<'_, Fanout> {
        self.fan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a client. `None` once the coordinator has shut down (the hub hears nothing more).
    pub fn connect(&self, last_event_id: Option<u64>) -> Option<Client> {
        let queue = self.fan().connect(last_event_id)?;
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
        let mut attached = None;
        let observing = coord.observe(|state| {
            // Ids keep growing across restarts (they start at the wall clock), so an id from an
            // earlier process is never mistaken for one of ours: it is older than our ring and gets
            // a snapshot.
            let fan = Arc::new(Mutex::new(Fanout {
                mirror: Mirror::new(state, instance, value_max),
                last_id: wall_ms_now().saturating_mul(1000),
                ring: VecDeque::with_capacity(REPLAY_RING),
                history: VecDeque::with_capacity(HISTORY_RING),
                clients: Vec::new(),
                snapshot: None,
                resyncs: resyncs.clone(),
                attached: true,
            }));
            attached = Some(fan.clone());
            Box::new(Attached(fan))
        });
        let fan = attached.filter(|_| observing)?;
        Some(HubHandle { fan, clients: Arc::default(), resyncs })
    }
}

/// The hub as the coordinator holds it; dropped when the coordinator shuts down.
#[derive(Debug)]
struct Attached(Arc<Mutex<Fanout>>);

impl Observer for Attached {
    fn on_change(&mut self, change: &Change) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).publish(change);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).attached = false;
    }
}

/// An update's payload: JSON already, or a parameter change not yet rendered.
#[derive(Debug, Clone)]
enum Body {
    Json(Arc<str>),
    Param(Box<ParamUpdate>),
}

/// What a parameter update shows, as it stood when the change was applied.
#[derive(Debug, Clone)]
struct ParamUpdate {
    variable: Variable,
    param: Param,
    route: Option<Output>,
    voltage: Option<f32>,
    held: bool,
    remote: bool,
}

impl ParamUpdate {
    fn view(&self) -> ParamView {
        ParamView {
            value: self.param.value,
            voltage: self.voltage,
            held: self.held,
            route: self.route.as_ref().map(ToString::to_string),
            user: self.param.user.to_string(),
            source_instance: self.param.source.to_string(),
            timestamp: self.param.wall_ms,
            remote: self.remote,
        }
    }

    fn render(&self) -> Arc<str> {
        json!({"type": "parameter", "variable": self.variable.to_string(), "parameter": self.view()}).to_string().into()
    }
}

impl Body {
    fn render(&self) -> Arc<str> {
        match self {
            Body::Json(data) => data.clone(),
            Body::Param(update) => update.render(),
        }
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

/// A history entry's `data`: a parameter change is rendered only when the history is read.
#[derive(Debug, Clone)]
enum HistoryData {
    Param { variable: Variable, value: u8, user: Arc<str>, source: Arc<str> },
    Json(serde_json::Value),
}

/// A history entry as kept: `type`, `data`, `timestamp`, `remote`, and its id.
#[derive(Debug, Clone)]
struct Recorded {
    id: u64,
    kind: &'static str,
    data: HistoryData,
    timestamp: u64,
    remote: Option<bool>,
}

impl Recorded {
    fn render(self) -> HistoryEntry {
        let data = match self.data {
            HistoryData::Param { variable, value, user, source } => {
                json!({"variable": variable.to_string(), "value": value, "user": user, "source_instance": source})
            }
            HistoryData::Json(data) => data,
        };
        HistoryEntry { id: self.id, kind: self.kind, timestamp: self.timestamp, remote: self.remote, data }
    }
}

#[derive(Debug)]
struct Fanout {
    mirror: Mirror,
    last_id: u64,
    ring: VecDeque<Entry>,
    history: VecDeque<Recorded>,
    clients: Vec<Weak<ClientQueue>>,
    /// The snapshot at `last_id`, built at most once per id.
    snapshot: Option<HubEvent>,
    resyncs: Arc<AtomicU64>,
    /// False once the coordinator has dropped the hub: nothing more will be published.
    attached: bool,
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

    fn connect(&mut self, last_event_id: Option<u64>) -> Option<Arc<ClientQueue>> {
        if !self.attached {
            return None;
        }
        let queue = Arc::new(ClientQueue::default());
        match last_event_id {
            Some(id) if self.can_resume(id) => {
                for entry in self.ring.iter_mut().filter(|e| e.id > id) {
                    queue.push(None, entry.event());
                }
            }
            _ => queue.replace_with(self.snapshot()),
        }
        self.clients.retain(|c| c.strong_count() > 0);
        self.clients.push(Arc::downgrade(&queue));
        Some(queue)
    }

    fn publish(&mut self, change: &Change) {
        let (key, body, history) = self.mirror.apply(change);
        self.last_id += 1;
        let mut entry = Entry { id: self.last_id, body };
        self.record(history);
        self.clients.retain(|c| c.strong_count() > 0);
        if !self.clients.is_empty() {
            let event = entry.event();
            let mut overflowed = Vec::new();
            for queue in self.clients.iter().filter_map(Weak::upgrade) {
                if !queue.push(key.clone(), event.clone()) {
                    overflowed.push(queue);
                }
            }
            if !overflowed.is_empty() {
                let snapshot = self.snapshot();
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

    fn record(&mut self, (kind, data, timestamp, remote): Recording) {
        if self.history.len() == HISTORY_RING {
            self.history.pop_front();
        }
        self.history.push_back(Recorded { id: self.last_id, kind, data, timestamp, remote });
    }
}

/// A history entry before it gets its id: `type`, `data`, `timestamp`, `remote`.
type Recording = (&'static str, HistoryData, u64, Option<bool>);

#[derive(Debug, Clone)]
struct Param {
    value: u8,
    user: Arc<str>,
    source: Arc<str>,
    wall_ms: u64,
}

/// The hub's copy of the state, kept from the changes it hears, for snapshots and update payloads.
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

    /// What `variable` at `p` shows with the routes as they stand now.
    fn param_update(&self, variable: &Variable, p: &Param) -> ParamUpdate {
        let routed = self.routes.iter().find(|(_, r)| r.variable == *variable);
        let stopped = self.emergency.active;
        ParamUpdate {
            variable: variable.clone(),
            route: routed.map(|(o, _)| o.clone()),
            voltage: routed.map(|(_, r)| r.shown_voltage(p.value, self.value_max, stopped)),
            held: stopped && routed.is_some(),
            remote: p.source != self.me,
            param: p.clone(),
        }
    }

    fn view(&self) -> StateView {
        StateView {
            parameters: self.params.iter().map(|(v, p)| (v.to_string(), self.param_update(v, p).view())).collect(),
            routes: self.routes.iter().map(|(o, r)| (o.to_string(), r.variable.to_string())).collect(),
            overlay_enabled: self.overlay,
            emergency: EmergencyView::of(&self.emergency, self.routes.iter()),
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { instance_id: &self.me, state: self.view() }
    }

    /// Applies a change; returns its coalescing key, the update payload (a parameter's left
    /// unrendered) and the history entry (`type`, `data`, `timestamp`, `remote`).
    fn apply(&mut self, change: &Change) -> (Option<Key>, Body, Recording) {
        let json = |value: serde_json::Value| Body::Json(value.to_string().into());
        match change {
            Change::Param { variable, value, user, source, wall_ms } => {
                let param = Param { value: *value, user: user.clone(), source: source.clone(), wall_ms: *wall_ms };
                let update = self.param_update(variable, &param);
                let remote = update.remote;
                self.params.insert(variable.clone(), param);
                let history = HistoryData::Param {
                    variable: variable.clone(),
                    value: *value,
                    user: user.clone(),
                    source: source.clone(),
                };
                let body = Body::Param(Box::new(update));
                (Some(Key::Param(variable.clone())), body, ("parameter_update", history, *wall_ms, Some(remote)))
            }
            Change::Cleared { variables } => {
                for v in variables.iter() {
                    self.params.remove(v);
                }
                let data = json!({"action": "clear_all", "cleared": variables.len()});
                let body = json(self.state_update("cleared all parameters"));
                (Some(Key::State), body, ("admin_command", HistoryData::Json(data), wall_ms_now(), None))
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
                let body = json(self.state_update(&text));
                (Some(Key::State), body, ("routing_change", HistoryData::Json(data), wall_ms_now(), None))
            }
            Change::Overlay { enabled } => {
                self.overlay = *enabled;
                let data = json!({"action": "overlay_toggle", "enabled": enabled});
                let body = json(json!({"type": "overlay", "enabled": enabled}));
                (Some(Key::Overlay), body, ("admin_command", HistoryData::Json(data), wall_ms_now(), None))
            }
            Change::Emergency { active, message } => {
                self.emergency = Emergency { active: *active, message: message.clone() };
                let action = if *active { "emergency_stop" } else { "resume" };
                let data = json!({"action": action, "message": message});
                // The whole state, not just the latch: every routed parameter's voltage changes with
                // it (held at the safe value, or back to the chat value), and clients must show that.
                let text = match (active, message) {
                    (true, Some(m)) => format!("EMERGENCY STOP: {m}"),
                    (true, None) => "EMERGENCY STOP".to_owned(),
                    (false, _) => "resumed".to_owned(),
                };
                let body = json(self.state_update(&text));
                (Some(Key::State), body, ("admin_command", HistoryData::Json(data), wall_ms_now(), None))
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
    use crate::stats::Stats;
    use std::time::{Duration, Instant};
    use tokio_util::sync::CancellationToken;

    /// A coordinator with the hub attached.
    fn start() -> (CoordHandle, HubHandle, Arc<Catalog>) {
        let (coord, hub, catalog, _closer) = start_until(CancellationToken::new());
        (coord, hub, catalog)
    }

    /// A coordinator with the hub attached, and the future that closes it once `shutdown` fires.
    fn start_until(
        shutdown: CancellationToken,
    ) -> (CoordHandle, HubHandle, Arc<Catalog>, impl Future<Output = ()> + Send) {
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
        );
        let (coord, closer) = coordinator.spawn(shutdown);
        let hub = Hub::new(me, 127, coord.clone()).attach().expect("hub");
        (coord, hub, catalog, closer)
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

    #[test]
    fn a_slow_client_gets_a_snapshot_and_never_holds_back_a_fast_one() {
        let (coord, hub, catalog) = start();
        let slow = hub.connect(None).expect("slow client");
        let fast = hub.connect(None).expect("fast client");
        assert_eq!(slow.queue.pop().map(|e| e.name), Some(EventName::Snapshot));
        let first = fast.queue.pop().expect("snapshot").id;
        let names = many_variables(&catalog);
        let total = CLIENT_QUEUE + 44;
        assert!(names.len() >= total, "enough distinct variables");
        let mut fast_ids = Vec::new();
        for (n, name) in names.iter().take(total).enumerate() {
            assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 1)));
            if n % 50 == 49 || n + 1 == total {
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

    #[test]
    fn the_hubs_mirror_matches_the_coordinators_state_view() {
        let (coord, hub, catalog) = start();
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
        let client = hub.connect(None).expect("client");
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

    #[test]
    fn a_resume_is_a_replay_only_while_it_fits_a_client_queue() {
        let (coord, hub, catalog) = start();
        let first = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
        let names = many_variables(&catalog);
        for (n, name) in names.iter().take(CLIENT_QUEUE + 1).enumerate() {
            assert!(coord.apply_remote(&remote_set(&catalog, 1 + n as u64, name, 7)));
        }
        let behind = hub.connect(Some(first)).expect("client");
        assert_eq!(behind.queue.pop().map(|e| e.name), Some(EventName::Snapshot), "too many missed: a snapshot");
        assert!(behind.queue.pop().is_none());
        let close = hub.connect(Some(first + 1)).expect("client");
        let replayed: Vec<HubEvent> = std::iter::from_fn(|| close.queue.pop()).collect();
        assert_eq!(replayed.len(), CLIENT_QUEUE, "exactly the missed updates");
        assert!(replayed.iter().all(|e| e.name == EventName::Update));
        assert_eq!(replayed.first().map(|e| e.id), Some(first + 2));
    }

    #[test]
    fn a_late_render_shows_what_an_immediate_one_showed() {
        let (coord, hub, catalog) = start();
        let op = crate::gate::Sender::operator("op");
        let submit = |line: &str| {
            let command = crate::command::parse(line, &catalog).expect("valid line");
            assert!(matches!(coord.submit(&op, command, Instant::now()), crate::coord::Outcome::Done { .. }));
        };
        submit("!admin es9out#1 → doorway#1.threshold");
        let start = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
        // No client connected: the ring keeps this update unrendered.
        submit("doorway#1.threshold: 89");
        // A client connected: this one is rendered at once.
        let now = hub.connect(None).expect("client").queue.pop().expect("snapshot").id;
        let live = hub.connect(Some(now)).expect("live client");
        submit("doorway#1.gain: 5");
        let live_update = live.queue.pop().expect("the update, live");
        drop(live);
        // The route goes after both: a late render must still show the route and voltage as they
        // were when the value was applied.
        submit("!admin remove es9out#1");
        let replay = hub.connect(Some(start)).expect("resuming client");
        let replayed: Vec<HubEvent> = std::iter::from_fn(|| replay.queue.pop()).collect();
        assert_eq!(replayed.len(), 3, "two parameter updates and the routing change");
        assert_eq!(replayed[1].data, live_update.data);
        let late: serde_json::Value = serde_json::from_str(&replayed[0].data).expect("json");
        let eager: serde_json::Value = serde_json::from_str(&live_update.data).expect("json");
        assert_eq!(late["type"], "parameter");
        assert_eq!(late["variable"], "doorway#1.threshold");
        assert_eq!(late["parameter"]["value"], 89);
        assert_eq!(late["parameter"]["route"], "es9out#1", "the route as it was");
        assert!(late["parameter"]["voltage"].as_f64().is_some_and(|v| v > 0.0));
        assert_eq!(late["parameter"]["user"], "op");
        assert_eq!(late["parameter"]["remote"], false);
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v["parameter"].as_object().expect("object").keys().cloned().collect();
            k.extend(v.as_object().expect("object").keys().cloned());
            k.sort();
            k
        };
        assert_eq!(keys(&late), keys(&eager), "a late render has the shape of an immediate one");
        assert!(eager["parameter"]["route"].is_null(), "gain was never routed");
        let history = hub.history(Some("parameter_update"), 10);
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].data["variable"], "doorway#1.gain", "newest first");
        assert_eq!(history[0].data["value"], 5);
        assert_eq!(history[1].data["value"], 89);
        assert_eq!(history[1].data["source_instance"], "bot-001");
        assert_eq!(history[1].remote, Some(false));
    }

    #[test]
    fn after_shutdown_the_hub_takes_no_new_client() {
        let token = CancellationToken::new();
        let (_coord, hub, _catalog, closer) = start_until(token.clone());
        assert!(hub.connect(None).is_some());
        token.cancel();
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(closer);
        assert!(hub.connect(None).is_none(), "a new SSE request gets 503 while shutting down");
    }

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
