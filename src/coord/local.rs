//! Local commands: the checks a value meets, the gate, what each command makes, and how the
//! events this instance makes are stamped, applied, handed to the outbox and announced.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};

use super::admin::AdminAnswer;
use super::{Coordinator, Done, Outcome, Refusal, Unchanged};
use crate::catalog::Variable;
use crate::command::{AdminCommand, Command, SceneAction};
use crate::gate::Sender;
use crate::motion::Ramp;
use crate::show::LockTarget;
use crate::state::{Change, Event, EventKind, Stamp};

impl Coordinator {
    /// Gates, stamps and applies one local command. Time comes in as parameters for tests.
    pub(super) fn handle_command(&mut self, sender: &Sender, command: Command, at: Instant, wall_ms: u64) -> Outcome {
        let admin = self.gate.is_admin(sender);
        // State checks come before the gate so a refused command does not use up the viewer's cooldown.
        if let Command::Set { variable, ramp_ms, .. } = &command
            && let Err(refusal) = self.check_set(variable, *ramp_ms, admin)
        {
            return Outcome::Refused(refusal);
        }
        if let Err(denial) = self.gate.check(sender, &command, at) {
            self.counters.count_denial(denial);
            return Outcome::Refused(Refusal::Gate(denial));
        }
        let (kinds, done) = match command {
            // In democracy a viewer's command is a vote; an admin's still applies at once.
            Command::Set { variable, value, .. } if !admin && self.state.mode().window_ms().is_some() => {
                (vec![EventKind::Vote { variable, value }], None)
            }
            Command::Set { variable, value, ramp_ms } => {
                // A ramp starts where the value stands now, on an earlier ramp or at its target, so
                // every instance draws the same curve from this one event.
                let from = self.state.param(&variable).map_or(0.0, |p| p.position(wall_ms));
                let ramp = ramp_ms.filter(|ms| *ms > 0).map(|ms| Ramp { from, ms });
                (vec![EventKind::Set { variable, value, ramp }], Some(Done::Set))
            }
            Command::Ask(question) => return Outcome::Done(Done::Answer(self.lesson(&question))),
            Command::Admin(command) => {
                // What a command of several events did, said as one: the recall, or `unlock all`.
                let recalled = match &command {
                    AdminCommand::Scene(SceneAction::Recall(name)) => Some(name.clone()),
                    _ => None,
                };
                let unlock_all = matches!(command, AdminCommand::Lock { target: LockTarget::All, locked: false });
                match self.admin_events(command) {
                    Ok(kinds) => {
                        let done = match recalled {
                            Some(name) => Done::Recalled { name, values: kinds.len() },
                            None if unlock_all => {
                                Done::Admin(EventKind::Lock { target: LockTarget::All, locked: false })
                            }
                            None => Done::Admin(kinds[0].clone()),
                        };
                        info!(user = %sender.login, action = ?done, "admin command");
                        (kinds, Some(done))
                    }
                    Err(answer) => return self.admin_answer(answer),
                }
            }
        };
        if kinds.is_empty()
            && let Some(done) = &done
        {
            // A scene saved with nothing in it (a scenes file may hold one): recalled, nothing to set.
            return Outcome::Done(done.clone());
        }
        let applied = self.originate(&sender.login, kinds, wall_ms);
        match (done, applied.first()) {
            (_, None) => {
                // Our stamp is newer than every stamp admitted so far (remote clocks are bounded), so
                // this only happens if that promise is broken: say so instead of reporting success.
                if let Some(swallowed) = self.throttle.allow("superseded local command", Instant::now()) {
                    warn!(user = %sender.login, swallowed, "a local command changed nothing: a newer stamp already held the register");
                }
                Outcome::Refused(Refusal::Superseded)
            }
            (None, Some(Change::Vote { variable, tally, .. })) => {
                Outcome::Done(Done::Voted { variable: variable.clone(), tally: *tally })
            }
            (done, Some(_)) => Outcome::Done(done.unwrap_or(Done::Set)),
        }
    }

    /// Why a `Set` may not be applied now, if it may not: the emergency latch, the input-jack order,
    /// a ramp longer than `RAMP_MAX_MS`, or (for viewers) a lock. Counted by reason.
    fn check_set(&self, variable: &Variable, ramp_ms: Option<u32>, admin: bool) -> Result<(), Refusal> {
        let (counter, refusal) = if self.state.emergency().active {
            (&self.counters.refused_emergency, Refusal::Emergency)
        } else if let Some(k) = variable.input_jack()
            && k > self.state.highest_input_jack(variable).saturating_add(1)
        {
            (&self.counters.refused_input_jack, Refusal::InputJackOrder { requested: k })
        } else if ramp_ms.is_some_and(|ms| ms > self.ramp_max_ms) {
            (&self.counters.refused_ramp, Refusal::RampTooLong { max_ms: self.ramp_max_ms })
        } else if let Some(target) = self.state.locked_by(variable).filter(|_| !admin) {
            (&self.counters.refused_locked, Refusal::Locked { variable: variable.clone(), target: target.clone() })
        } else {
            return Ok(());
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Err(refusal)
    }

    /// The outcome of an admin command that made no event.
    fn admin_answer(&mut self, answer: AdminAnswer) -> Outcome {
        match answer {
            AdminAnswer::Answer(answer) => Outcome::Done(Done::Answer(answer)),
            AdminAnswer::Refused(refusal) => {
                if let Refusal::Unchanged(Unchanged::AlreadyStopped) = &refusal
                    && let Some(osc) = &mut self.osc
                {
                    // A stop pressed again is still a stop: the outputs get their safe values once more.
                    osc.send_safe_values(&self.state);
                }
                let counter = match refusal {
                    Refusal::OutOfLimit { .. } | Refusal::BadSlew { .. } => &self.counters.refused_out_of_limit,
                    _ => &self.counters.unchanged,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Outcome::Refused(refusal)
            }
        }
    }

    /// Stamps, applies and hands to the outbox events this instance makes, then tells the
    /// observers; what each changed, in order (stale ones left out). Several events (a scene's
    /// recall, `unlock all`) go to the OSC stage as one batch: each output sent once, at the end.
    pub(super) fn originate(&mut self, user: &str, kinds: Vec<EventKind>, wall_ms: u64) -> Vec<Change> {
        let batch = kinds.len() > 1;
        if batch && let Some(osc) = &mut self.osc {
            osc.begin_batch();
        }
        let mut applied = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let stamp = Stamp { hlc: self.hlc.stamp(wall_ms), instance: self.instance.clone() };
            let event = Event { stamp, wall_ms, user: user.into(), kind };
            let Some(change) = self.apply(&event) else { continue };
            self.counters.local_applied.fetch_add(1, Ordering::Relaxed);
            // The outbox before the other observers: other instances' outputs wait on the first,
            // only the overlay and the routing file on the others.
            self.hand_to_outbox(&event);
            applied.push((event, change));
        }
        if batch && let Some(osc) = &mut self.osc {
            osc.end_batch(&self.state);
        }
        for (event, change) in &applied {
            self.announce(event, change);
        }
        applied.into_iter().map(|(_, change)| change).collect()
    }

    fn hand_to_outbox(&mut self, event: &Event) {
        if let Some(outbox) = &self.outbox
            && outbox.try_send(event.clone()).is_err()
        {
            self.counters.outbox_overflow.fetch_add(1, Ordering::Relaxed);
            if let Some(swallowed) = self.throttle.allow("outbox full", Instant::now()) {
                warn!(
                    swallowed,
                    "outbox full: local events are not reaching other instances (counted as outbox_overflow)"
                );
            }
        }
    }
}
