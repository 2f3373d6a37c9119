//! What the hub sends and keeps: update payloads (a parameter's rendered only when someone reads
//! it), snapshots, and history entries. Each is made from the coordinator's event, change and state.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::queue::Key;
use super::{EventName, HubEvent};
use crate::catalog::{Output, Variable};
use crate::chat::reply::confirmation;
use crate::http::view::{ParamView, StateView, VoteView, Written, param_view, state_view};
use crate::state::{Change, Event, State};

/// One entry of `/api/events/history`, shaped like the wire envelope (`type`, `timestamp`, `data`),
/// with the stamp that won: the instance that made it, its hybrid-clock value, and whether it came
/// from another instance.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Wall-clock milliseconds when the event was made (by whichever instance made it).
    pub timestamp: u64,
    pub instance: Arc<str>,
    pub hlc: u64,
    pub user: Arc<str>,
    /// Whether another instance made it.
    pub remote: bool,
    pub data: serde_json::Value,
}

/// An update's payload: JSON already, or a parameter change not yet rendered.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Json(Arc<str>),
    Param(Box<ParamUpdate>),
}

impl Body {
    pub(super) fn render(&self) -> Arc<str> {
        match self {
            Body::Json(data) => data.clone(),
            Body::Param(update) => update.render(),
        }
    }
}

/// What a parameter update shows, as it stood when the change was applied.
#[derive(Debug, Clone)]
pub(super) struct ParamUpdate {
    variable: Variable,
    view: ParamView,
}

impl ParamUpdate {
    fn render(&self) -> Arc<str> {
        json!({"type": "parameter", "variable": self.variable.to_string(), "parameter": self.view}).to_string().into()
    }
}

/// A history entry's `data`: a parameter change is rendered only when the history is read.
#[derive(Debug, Clone)]
enum HistoryData {
    Param { variable: Variable, value: u8 },
    Json(serde_json::Value),
}

/// A history entry as kept, before it is rendered.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub(super) id: u64,
    pub(super) kind: &'static str,
    data: HistoryData,
    event: Event,
    remote: bool,
}

impl Recorded {
    pub(super) fn render(self) -> HistoryEntry {
        let Recorded { id, kind, data, event, remote } = self;
        let data = match data {
            HistoryData::Param { variable, value } => json!({
                "variable": variable.to_string(), "value": value, "user": event.user, "source_instance": event.stamp.instance,
            }),
            HistoryData::Json(data) => data,
        };
        HistoryEntry {
            id,
            kind,
            timestamp: event.wall_ms,
            instance: event.stamp.instance,
            hlc: event.stamp.hlc,
            user: event.user,
            remote,
            data,
        }
    }
}

/// Renders updates and snapshots for one instance's clients.
#[derive(Debug)]
pub(super) struct Renderer {
    pub(super) me: Arc<str>,
    pub(super) value_max: u8,
}

/// `/events` snapshot payload: the same shape as `/api/state` minus the Redis status. As sent it
/// also carries `server_time_ms` ([`stamped`]); a `state` update embeds it without.
#[derive(Debug, Serialize)]
struct Snapshot<'a> {
    instance_id: &'a str,
    #[serde(flatten)]
    state: StateView,
}

/// The snapshot event at `id` as one client gets it: `body` (from [`Renderer::snapshot`]) with
/// `server_time_ms` first, the server's wall clock at `now_ms`, from which a page works out how far
/// its own clock is off (ramps start at server times). Stamped at each hand-out, not when the body
/// was rendered: a body is kept for every client that connects at its id, for minutes if need be.
pub(super) fn stamped(id: u64, body: &str, now_ms: u64) -> HubEvent {
    let members = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).unwrap_or_default();
    let comma = if members.is_empty() { "" } else { "," };
    HubEvent { id, name: EventName::Snapshot, data: format!("{{\"server_time_ms\":{now_ms}{comma}{members}}}").into() }
}

impl Renderer {
    /// The snapshot's JSON object, before it is [`stamped`].
    pub(super) fn snapshot(&self, state: &State) -> Arc<str> {
        serde_json::to_string(&self.snapshot_value(state)).unwrap_or_else(|_| "{}".to_owned()).into()
    }

    fn snapshot_value(&self, state: &State) -> Snapshot<'_> {
        Snapshot { instance_id: &self.me, state: state_view(state, &self.me, self.value_max) }
    }

    /// A change as clients get it (its coalescing key and payload, a parameter's left unrendered)
    /// and as the history keeps it.
    pub(super) fn update(
        &self,
        id: u64,
        event: &Event,
        change: &Change,
        state: &State,
    ) -> (Option<Key>, Body, Recorded) {
        let remote = event.stamp.instance != self.me;
        let record = |kind, data| Recorded { id, kind, data, event: event.clone(), remote };
        let whole = |action: &str| {
            let value = json!({"type": "state", "action": action, "state": self.snapshot_value(state)});
            Body::Json(value.to_string().into())
        };
        let action = confirmation(&event.kind).unwrap_or_default();
        match change {
            Change::Param { variable, value, ramp, .. } => {
                let written = Written {
                    value: *value,
                    ramp: *ramp,
                    user: &event.user,
                    instance: &event.stamp.instance,
                    wall_ms: event.wall_ms,
                };
                let view = param_view(state, variable, written, &self.me, self.value_max);
                let body = Body::Param(Box::new(ParamUpdate { variable: variable.clone(), view }));
                let history = HistoryData::Param { variable: variable.clone(), value: *value };
                (Some(Key::Param(variable.clone())), body, record("parameter_update", history))
            }
            Change::Cleared { variables } => {
                let data = json!({"action": "clear_all", "cleared": variables.len()});
                (Some(Key::State), whole(&action), record("admin_command", HistoryData::Json(data)))
            }
            Change::Route { output, route } => {
                let variable = route.as_ref().map(|r| r.variable.to_string());
                let data = json!({"action": if route.is_some() { "add" } else { "remove" }, "output": Output::to_string(output), "variable": variable});
                (Some(Key::State), whole(&action), record("routing_change", HistoryData::Json(data)))
            }
            Change::Overlay { enabled } => {
                let data = json!({"action": "overlay_toggle", "enabled": enabled});
                let body = Body::Json(json!({"type": "overlay", "enabled": enabled}).to_string().into());
                (Some(Key::Overlay), body, record("admin_command", HistoryData::Json(data)))
            }
            Change::Emergency { active, message } => {
                let data = json!({"action": if *active { "emergency_stop" } else { "resume" }, "message": message});
                // The whole state, not just the latch: every routed parameter's voltage changes with
                // it (held at the safe value, or back to the chat value), and clients must show that.
                (Some(Key::State), whole(&action), record("admin_command", HistoryData::Json(data)))
            }
            Change::Mode { mode, .. } => {
                let data = json!({"action": "mode", "mode": mode.to_string()});
                (Some(Key::State), whole(&action), record("admin_command", HistoryData::Json(data)))
            }
            Change::Lock { target, locked } => {
                let data = json!({"action": if *locked { "lock" } else { "unlock" }, "target": target.to_string()});
                (Some(Key::State), whole(&action), record("admin_command", HistoryData::Json(data)))
            }
            Change::Scene { name, saved } => {
                let data =
                    json!({"action": if *saved { "scene_save" } else { "scene_delete" }, "name": name.to_string()});
                (Some(Key::State), whole(&action), record("admin_command", HistoryData::Json(data)))
            }
            Change::Vote { variable, tally, closes_at_ms } => {
                let view = VoteView { votes: tally.votes, median: tally.median, closes_at_ms: *closes_at_ms };
                let name = variable.to_string();
                let body = json!({"type": "vote", "variable": name, "vote": view});
                let data = json!({"variable": name, "votes": tally.votes, "median": tally.median});
                (
                    Some(Key::Vote(variable.clone())),
                    Body::Json(body.to_string().into()),
                    record("vote", HistoryData::Json(data)),
                )
            }
        }
    }
}
