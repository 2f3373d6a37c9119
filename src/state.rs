//! State: the convergent register set that is the single source of truth in the process.
//!
//! Pure: no I/O, no clock, no tokio. Every register is last-writer-wins on `(hlc, source_instance)`,
//! so applying the same set of events in any order, any number of times, gives the same state. It
//! knows variables and outputs, not chat, Redis, OSC or HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{Output, Variable, VoltRange};
use crate::motion::Ramp;

mod ballot;
mod show;
pub use crate::show::{LockTarget, MAX_LOCKS, MAX_SCENE_VALUES, MAX_SCENES, Mode, Scene, SceneName};
pub use ballot::{Ballot, MAX_BALLOT_VOTES, Tally, VOTE_GRACE_MS, Verdict, VoteRefusal, window_of};

/// A hybrid logical clock: the upper 48 bits are wall-clock milliseconds, the lower 16 a counter, so
/// stamps follow real time where clocks agree and still order causally where they do not.
#[derive(Debug, Clone, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// The stamp an event without one (an older bot's) gets: its `timestamp` in the same units.
    pub fn from_wall_ms(wall_ms: u64) -> u64 {
        wall_ms.saturating_mul(1 << 16)
    }

    /// The wall-clock milliseconds part of a stamp.
    pub fn wall_ms(hlc: u64) -> u64 {
        hlc >> 16
    }

    /// A fresh stamp for a local event, greater than every stamp seen so far.
    pub fn stamp(&mut self, wall_ms: u64) -> u64 {
        self.last = (self.last + 1).max(Self::from_wall_ms(wall_ms));
        self.last
    }

    /// Advances past a remote stamp, so our next local write wins over what we have seen.
    pub fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote);
    }

    pub fn last(&self) -> u64 {
        self.last
    }
}

/// The order key of every register write. Derived `Ord` compares `hlc` first, then the instance name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Stamp {
    pub hlc: u64,
    pub instance: Arc<str>,
}

impl Stamp {
    /// Older than every real stamp: the stamp of defaults and of routes loaded from the routing file.
    pub fn zero() -> Stamp {
        Stamp { hlc: 0, instance: Arc::from("") }
    }
}

/// Where an output's voltage goes for a variable, and where it rests on an emergency stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub variable: Variable,
    pub range: VoltRange,
    /// The voltage sent on emergency stop and clear; by default the bottom of the range.
    pub safe: f32,
    /// The fastest the output may move, in volts per second; 0 = no limit (a value jumps). Stops
    /// and clears are never slewed.
    pub slew: f32,
}

impl Route {
    pub fn new(variable: Variable, range: VoltRange) -> Route {
        Route { variable, range, safe: range.low, slew: 0.0 }
    }

    /// The voltage the output carries for `value`: the safe one while an emergency stop holds it.
    pub fn shown_voltage(&self, value: u8, value_max: u8, stopped: bool) -> f32 {
        if stopped { self.safe } else { self.range.voltage(value, value_max) }
    }
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `ramp: Some` moves the value there over time, from the event's wall time.
    Set {
        variable: Variable,
        value: u8,
        ramp: Option<Ramp>,
    },
    /// `route: None` removes the route (a tombstone, so the removal itself converges).
    Route {
        output: Output,
        route: Option<Route>,
    },
    Overlay {
        enabled: bool,
    },
    Emergency {
        active: bool,
        message: Option<String>,
    },
    ClearAll,
    /// How viewers' commands are applied; a new mode starts a new ballot.
    Mode {
        mode: Mode,
    },
    /// `locked: false` lifts the lock (a tombstone, so the unlock itself converges).
    Lock {
        target: LockTarget,
        locked: bool,
    },
    /// `scene: None` deletes the scene (a tombstone).
    Scene {
        name: SceneName,
        scene: Option<Scene>,
    },
    /// A viewer's vote in democracy (the event's user is the viewer): filed in the ballot, never
    /// sent to an output; the window's median is applied as an ordinary `Set`.
    Vote {
        variable: Variable,
        value: u8,
    },
}

/// One stamped state change, local or remote.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub stamp: Stamp,
    /// Wall-clock milliseconds when it was made (the envelope's `timestamp`).
    pub wall_ms: u64,
    pub user: Arc<str>,
    pub kind: EventKind,
}

/// What applying an event changed, for the output stages. Stale events change nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Param {
        variable: Variable,
        value: u8,
        ramp: Option<Ramp>,
        user: Arc<str>,
        source: Arc<str>,
        wall_ms: u64,
    },
    Cleared {
        variables: Arc<[Variable]>,
    },
    Route {
        output: Output,
        route: Option<Route>,
    },
    Overlay {
        enabled: bool,
    },
    Emergency {
        active: bool,
        message: Option<String>,
    },
    /// The mode changed; `start_ms` numbers democracy's windows.
    Mode {
        mode: Mode,
        start_ms: u64,
    },
    Lock {
        target: LockTarget,
        locked: bool,
    },
    /// A scene was saved (`saved`) or deleted.
    Scene {
        name: SceneName,
        saved: bool,
    },
    /// A vote counted: its parameter's tally in the window that closes at `closes_at_ms`.
    Vote {
        variable: Variable,
        tally: Tally,
        closes_at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    /// The target: where the value is, or where its ramp is taking it.
    pub value: u8,
    /// The ramp towards `value`, started at `wall_ms`; `None` when the value was set at once.
    pub ramp: Option<Ramp>,
    pub user: Arc<str>,
    pub stamp: Stamp,
    pub wall_ms: u64,
}

impl ParamEntry {
    /// Where the value stands at `now_ms` (wall-clock): on its ramp, or at its target.
    pub fn position(&self, now_ms: u64) -> f32 {
        self.ramp.map_or(f32::from(self.value), |r| r.position(self.wall_ms, self.value, now_ms))
    }

    /// True while a ramp is still moving the value at `now_ms`.
    pub fn ramping(&self, now_ms: u64) -> bool {
        self.ramp.is_some_and(|r| !r.done(self.wall_ms, now_ms))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Register<T> {
    value: T,
    stamp: Stamp,
}

impl<T: PartialEq> Register<T> {
    fn new(value: T) -> Self {
        Register { value, stamp: Stamp::zero() }
    }

    /// Writes when `stamp` is newer; returns true when the visible value changed.
    fn write(&mut self, value: T, stamp: &Stamp) -> bool {
        if *stamp <= self.stamp {
            return false;
        }
        self.stamp = stamp.clone();
        let changed = self.value != value;
        self.value = value;
        changed
    }
}

/// The emergency latch: while active, outputs sit at their safe values and viewer commands are refused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Emergency {
    pub active: bool,
    pub message: Option<String>,
}

/// The convergent state. Compare two with `==`: equal means byte-identical views.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    params: BTreeMap<Variable, ParamEntry>,
    routes: BTreeMap<Output, Register<Option<Route>>>,
    overlay: Register<bool>,
    emergency: Register<Emergency>,
    /// The newest clear-all: every parameter stamped before it is gone.
    cleared: Stamp,
    mode: Register<Mode>,
    locks: BTreeMap<LockTarget, Register<bool>>,
    scenes: BTreeMap<SceneName, Register<Option<Scene>>>,
    /// Votes of the open democracy windows: not a register (never written to the state hash), but
    /// convergent the same way: each viewer's newest vote per parameter and window.
    ballot: Ballot,
}

impl Default for State {
    fn default() -> Self {
        State {
            params: BTreeMap::new(),
            routes: BTreeMap::new(),
            overlay: Register::new(true),
            emergency: Register::new(Emergency::default()),
            cleared: Stamp::zero(),
            mode: Register::new(Mode::Anarchy),
            locks: BTreeMap::new(),
            scenes: BTreeMap::new(),
            ballot: Ballot::default(),
        }
    }
}

impl State {
    /// Applies one event. Idempotent and order-independent; returns what visibly changed.
    pub fn apply(&mut self, event: &Event) -> Option<Change> {
        let stamp = &event.stamp;
        match &event.kind {
            EventKind::Set { variable, value, ramp } => {
                if *stamp <= self.cleared || self.params.get(variable).is_some_and(|p| p.stamp >= *stamp) {
                    return None;
                }
                let entry = ParamEntry {
                    value: *value,
                    ramp: *ramp,
                    user: event.user.clone(),
                    stamp: stamp.clone(),
                    wall_ms: event.wall_ms,
                };
                self.params.insert(variable.clone(), entry);
                Some(Change::Param {
                    variable: variable.clone(),
                    value: *value,
                    ramp: *ramp,
                    user: event.user.clone(),
                    source: stamp.instance.clone(),
                    wall_ms: event.wall_ms,
                })
            }
            EventKind::Route { output, route } => {
                let register = self.routes.entry(output.clone()).or_insert_with(|| Register::new(None));
                register
                    .write(route.clone(), stamp)
                    .then(|| Change::Route { output: output.clone(), route: route.clone() })
            }
            EventKind::Overlay { enabled } => {
                self.overlay.write(*enabled, stamp).then_some(Change::Overlay { enabled: *enabled })
            }
            EventKind::Emergency { active, message } => {
                let value = Emergency { active: *active, message: message.clone().filter(|_| *active) };
                let message = value.message.clone();
                self.emergency.write(value, stamp).then_some(Change::Emergency { active: *active, message })
            }
            EventKind::ClearAll => {
                if *stamp <= self.cleared {
                    return None;
                }
                self.cleared = stamp.clone();
                let mut removed = Vec::new();
                self.params.retain(|variable, p| {
                    let keep = p.stamp > *stamp;
                    if !keep {
                        removed.push(variable.clone());
                    }
                    keep
                });
                Some(Change::Cleared { variables: removed.into() })
            }
            EventKind::Mode { .. } | EventKind::Lock { .. } | EventKind::Scene { .. } | EventKind::Vote { .. } => {
                self.apply_show(event)
            }
        }
    }

    /// Installs a route with the oldest possible stamp (routes loaded from the routing file), so any
    /// routing event seen later, from anywhere, wins over it.
    pub fn seed_route(&mut self, output: Output, route: Route) {
        self.routes.entry(output).or_insert(Register { value: Some(route), stamp: Stamp::zero() });
    }

    pub fn param(&self, variable: &Variable) -> Option<&ParamEntry> {
        self.params.get(variable)
    }

    pub fn params(&self) -> impl Iterator<Item = (&Variable, &ParamEntry)> {
        self.params.iter()
    }

    /// Live routes, sorted by output.
    pub fn routes(&self) -> impl Iterator<Item = (&Output, &Route)> {
        self.routes.iter().filter_map(|(o, r)| r.value.as_ref().map(|route| (o, route)))
    }

    pub fn route(&self, output: &Output) -> Option<&Route> {
        self.routes.get(output).and_then(|r| r.value.as_ref())
    }

    pub fn overlay_enabled(&self) -> bool {
        self.overlay.value
    }

    pub fn emergency(&self) -> &Emergency {
        &self.emergency.value
    }

    /// The highest `inputJack#k` set on the module instance of `variable` (0 when none).
    pub fn highest_input_jack(&self, variable: &Variable) -> u8 {
        self.params
            .keys()
            .filter(|v| v.same_module_instance(variable))
            .filter_map(Variable::input_jack)
            .max()
            .unwrap_or(0)
    }

    /// Every register that was ever written, as the event that wrote it (the newest), so it can be
    /// written back into a state hash that lacks it. Defaults and routes from the routing file (the
    /// zero stamp) are not registers anyone wrote, and are left out. Routes, the overlay, the latch
    /// and the clear keep no user or wall time: the stamp's instance and hybrid clock stand in.
    pub fn registers(&self) -> Vec<Event> {
        let written = |stamp: &Stamp, kind: EventKind| {
            (stamp.hlc != 0).then(|| Event {
                stamp: stamp.clone(),
                wall_ms: Hlc::wall_ms(stamp.hlc),
                user: stamp.instance.clone(),
                kind,
            })
        };
        let mut events: Vec<Event> = self
            .params
            .iter()
            .map(|(variable, p)| Event {
                stamp: p.stamp.clone(),
                wall_ms: p.wall_ms,
                user: p.user.clone(),
                kind: EventKind::Set { variable: variable.clone(), value: p.value, ramp: p.ramp },
            })
            .collect();
        events.extend(self.routes.iter().filter_map(|(output, r)| {
            written(&r.stamp, EventKind::Route { output: output.clone(), route: r.value.clone() })
        }));
        events.extend(written(&self.overlay.stamp, EventKind::Overlay { enabled: self.overlay.value }));
        let latch = &self.emergency.value;
        events.extend(written(
            &self.emergency.stamp,
            EventKind::Emergency { active: latch.active, message: latch.message.clone() },
        ));
        events.extend(written(&self.cleared, EventKind::ClearAll));
        events.extend(written(&self.mode.stamp, EventKind::Mode { mode: self.mode.value }));
        events.extend(
            self.locks.iter().filter_map(|(target, r)| {
                written(&r.stamp, EventKind::Lock { target: target.clone(), locked: r.value })
            }),
        );
        events.extend(self.scenes.iter().filter_map(|(name, r)| {
            written(&r.stamp, EventKind::Scene { name: name.clone(), scene: r.value.clone() })
        }));
        events
    }
}

#[cfg(test)]
mod tests;
