//! The state as JSON consumers see it: `/api/state`, the overlay's snapshots and updates. The core
//! keeps registers; how they read on a page is decided here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{Output, Variable};
use crate::motion::Ramp;
use crate::state::{Ballot, Emergency, Mode, ParamEntry, Route, State};

/// One parameter as `/api/state` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamView {
    pub value: u8,
    /// `null` when the variable is not routed to any output; the safe voltage while stopped.
    pub voltage: Option<f32>,
    /// True while an emergency stop holds the routed output at its safe voltage.
    pub held: bool,
    /// The (first) output carrying this variable, `null` when unrouted.
    pub route: Option<String>,
    pub user: String,
    pub source_instance: String,
    /// Wall-clock milliseconds of the winning write.
    pub timestamp: u64,
    pub remote: bool,
    /// A ramp towards `value` that started at `timestamp`: `{"from": 12.5, "ms": 2000}`; absent
    /// when the value was set at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmergencyView {
    pub active: bool,
    pub message: Option<String>,
    /// While active: every routed output and the safe voltage it is held at (empty otherwise).
    pub held: BTreeMap<String, f32>,
}

impl EmergencyView {
    /// The latch as views show it, with what it holds each routed output at.
    pub fn of<'a>(latch: &Emergency, routes: impl Iterator<Item = (&'a Output, &'a Route)>) -> EmergencyView {
        let held = if latch.active { routes.map(|(o, r)| (o.to_string(), r.safe)).collect() } else { BTreeMap::new() };
        EmergencyView { active: latch.active, message: latch.message.clone(), held }
    }
}

/// The state as JSON consumers see it; `/api/state` adds `instance_id` and `redis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateView {
    pub parameters: BTreeMap<String, ParamView>,
    pub routes: BTreeMap<String, String>,
    /// Outputs with a slew limit, in volts per second (absent when none has one).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub slew: BTreeMap<String, f32>,
    pub overlay_enabled: bool,
    pub emergency: EmergencyView,
    pub mode: ModeView,
    /// Locked targets (`all`, `doorway#1`, `doorway#1.threshold`); absent when none is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// Parameters being voted on in democracy; absent when none is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub votes: BTreeMap<String, VoteView>,
    /// Saved scenes and how many values each holds; absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scenes: BTreeMap<String, usize>,
}

/// How viewers' commands are applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeView {
    /// `anarchy` or `democracy`.
    pub mode: &'static str,
    /// Democracy's window length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u32>,
    /// Wall-clock milliseconds when the mode began; democracy's windows are counted from it.
    pub started_ms: u64,
}

impl ModeView {
    pub fn of(mode: Mode, started_ms: u64) -> ModeView {
        let name = match mode {
            Mode::Anarchy => "anarchy",
            Mode::Democracy { .. } => "democracy",
        };
        ModeView { mode: name, window_ms: mode.window_ms(), started_ms }
    }
}

/// One parameter's vote in the open window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VoteView {
    pub votes: u32,
    pub median: u8,
    /// Wall-clock milliseconds when the window closes (the page counts down to it).
    pub closes_at_ms: u64,
}

/// The open windows' votes by parameter (the latest window's, when a parameter is in two).
fn votes_view(state: &State) -> BTreeMap<String, VoteView> {
    let (mode, start) = (state.mode(), state.mode_start_ms());
    state
        .ballot()
        .open()
        .filter_map(|(window, variable, tally)| {
            let closes_at_ms = Ballot::closes_at_ms(mode, start, window)?;
            Some((variable.to_string(), VoteView { votes: tally.votes, median: tally.median, closes_at_ms }))
        })
        .collect()
}

/// Who wrote a value, and when: a state entry's or an event's.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub value: u8,
    pub ramp: Option<Ramp>,
    pub user: &'a str,
    pub instance: &'a str,
    pub wall_ms: u64,
}

impl<'a> Written<'a> {
    pub fn entry(p: &'a ParamEntry) -> Written<'a> {
        Written { value: p.value, ramp: p.ramp, user: &p.user, instance: &p.stamp.instance, wall_ms: p.wall_ms }
    }
}

/// How `variable` at `written` reads with `state`'s routes and latch. `me` decides `remote`.
pub fn param_view(state: &State, variable: &Variable, written: Written<'_>, me: &str, value_max: u8) -> ParamView {
    let routed = state.routes().find(|(_, r)| r.variable == *variable);
    let stopped = state.emergency().active;
    ParamView {
        value: written.value,
        voltage: routed.map(|(_, r)| r.shown_voltage(written.value, value_max, stopped)),
        held: stopped && routed.is_some(),
        route: routed.map(|(o, _)| o.to_string()),
        user: written.user.to_owned(),
        source_instance: written.instance.to_owned(),
        timestamp: written.wall_ms,
        remote: written.instance != me,
        ramp: written.ramp,
    }
}

/// The whole view of `state`. `me` decides which entries are marked `remote`.
pub fn state_view(state: &State, me: &str, value_max: u8) -> StateView {
    StateView {
        parameters: state
            .params()
            .map(|(variable, p)| (variable.to_string(), param_view(state, variable, Written::entry(p), me, value_max)))
            .collect(),
        routes: state.routes().map(|(o, r)| (o.to_string(), r.variable.to_string())).collect(),
        slew: state.routes().filter(|(_, r)| r.slew > 0.0).map(|(o, r)| (o.to_string(), r.slew)).collect(),
        overlay_enabled: state.overlay_enabled(),
        emergency: EmergencyView::of(state.emergency(), state.routes()),
        mode: ModeView::of(state.mode(), state.mode_start_ms()),
        locks: state.locks().map(ToString::to_string).collect(),
        votes: votes_view(state),
        scenes: state.scenes().map(|(name, scene)| (name.to_string(), scene.values.len())).collect(),
    }
}
