//! Travelling outputs: the stage's table of outputs on their way to a target (a slew limit, a
//! timed ramp) and the tick that steps them. Every step is computed from the state and the time
//! passed in, so the same events give the same curve.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::OscStage;
use crate::catalog::{Output, Variable};
use crate::motion::approach;
use crate::state::{ParamEntry, Route, State};

impl OscStage {
    /// One step for every travelling output at `now` (`wall_ms` on the wall clock, which ramps are
    /// timed on): each moves towards where its value stands, by at most its slew rate times the
    /// time since its last step, and is sent only if it moved. An output that has arrived stops
    /// travelling. Returns whether anything still travels. Does nothing while stopped.
    pub fn tick(&mut self, state: &State, now: Instant, wall_ms: u64) -> bool {
        if state.emergency().active {
            self.stop_moving();
            return false;
        }
        let moving: Vec<(Output, Instant)> = self.moving.iter().map(|(o, t)| (o.clone(), *t)).collect();
        for (output, last) in moving {
            let Some((route, entry)) = state.route(&output).and_then(|r| Some((r, state.param(&r.variable)?))) else {
                self.moving.remove(&output);
                continue;
            };
            let target = self.encoder.voltage_at(route, entry.position(wall_ms));
            let at = self.at.get(&output).copied();
            let next = match at {
                Some(at) if route.slew > 0.0 => {
                    approach(at, target, route.slew * now.saturating_duration_since(last).as_secs_f32())
                }
                _ => target,
            };
            if at.is_none_or(|at| at.to_bits() != next.to_bits()) {
                self.counters.steps.fetch_add(1, Ordering::Relaxed);
                self.send_jack(&output, route, next, entry.value);
            }
            let home = self.encoder.voltage_at(route, f32::from(entry.value));
            if next.to_bits() == home.to_bits() && !entry.ramping(wall_ms) {
                self.moving.remove(&output);
            } else {
                self.moving.insert(output, now);
            }
        }
        let ramping: Vec<Variable> = self.ramping.iter().cloned().collect();
        for variable in ramping {
            let Some(entry) = state.param(&variable) else {
                self.ramping.remove(&variable);
                continue;
            };
            self.counters.steps.fetch_add(1, Ordering::Relaxed);
            self.wire.push(self.encoder.address_at(&variable, entry.position(wall_ms)));
            if !entry.ramping(wall_ms) {
                self.ramping.remove(&variable);
            }
        }
        self.wire.flush();
        self.is_moving()
    }

    /// Sends `output` its value now, or sets it travelling when it must: a ramp is running, or the
    /// route has a slew limit and the output has a voltage to slew from.
    pub(super) fn place(&mut self, output: &Output, route: &Route, entry: &ParamEntry, now: Instant, wall_ms: u64) {
        if !(self.encoder.format.max || self.encoder.format.output) {
            // Only the `/lzx` form is on: it names variables, not outputs, and has its own ramps.
            return;
        }
        let travels = entry.ramping(wall_ms) || (route.slew > 0.0 && self.at.contains_key(output));
        if travels {
            if !self.is_moving() {
                self.wake.notify_one();
            }
            self.moving.entry(output.clone()).or_insert(now);
        } else {
            self.moving.remove(output);
            let volts = self.encoder.voltage_at(route, f32::from(entry.value));
            self.send_jack(output, route, volts, entry.value);
        }
    }

    /// The `/lzx` form of a value: now, or at each tick while its ramp runs.
    pub(super) fn place_address(&mut self, variable: &Variable, entry: &ParamEntry, wall_ms: u64) {
        if entry.ramping(wall_ms) {
            if !self.is_moving() {
                self.wake.notify_one();
            }
            self.ramping.insert(variable.clone());
        } else {
            self.ramping.remove(variable);
            self.wire.push(self.encoder.address(variable, entry.value));
        }
    }

    pub(super) fn stop_moving(&mut self) {
        self.moving.clear();
        self.ramping.clear();
    }
}
