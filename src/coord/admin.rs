//! Admin commands: what event each makes, or the answer it gets, or why it changes nothing.

use super::{Answer, Coordinator, Refusal, Unchanged};
use crate::catalog::Output;
use crate::command::{AdminCommand, SceneAction};
use crate::show::{LockTarget, MAX_LOCKS, MAX_SCENE_VALUES, MAX_SCENES, Scene, SceneName};
use crate::state::{EventKind, Route};

impl Coordinator {
    /// Turns an admin command into the events it makes (most make one; a scene's recall one per
    /// value, `unlock all` one per lock); or answers a question, or says why it changes nothing.
    pub(super) fn admin_events(&self, admin: AdminCommand) -> Result<Vec<EventKind>, AdminAnswer> {
        let unchanged = |u| Err(AdminAnswer::Refused(Refusal::Unchanged(u)));
        let emergency = self.state.emergency();
        Ok(vec![match admin {
            AdminCommand::Scene(action) => return self.scene_events(action),
            AdminCommand::Lock { target: LockTarget::All, locked: false } => return self.unlock_all(),
            AdminCommand::Clear => EventKind::ClearAll,
            AdminCommand::Overlay { enabled } if enabled == self.state.overlay_enabled() => {
                return unchanged(Unchanged::Overlay(enabled));
            }
            AdminCommand::Overlay { enabled } => EventKind::Overlay { enabled },
            AdminCommand::EmergencyStop { message } if emergency.active && emergency.message == message => {
                return unchanged(Unchanged::AlreadyStopped);
            }
            AdminCommand::EmergencyStop { message } => EventKind::Emergency { active: true, message },
            AdminCommand::Resume if !emergency.active => return unchanged(Unchanged::NotStopped),
            AdminCommand::Resume => EventKind::Emergency { active: false, message: None },
            AdminCommand::Route { output, variable, volts } => {
                let range = volts.range.unwrap_or_else(|| self.catalog.output_range(&output));
                let slew = Self::slew(&output, volts.slew.unwrap_or(0.0))?;
                let route = Route { variable, range, safe: volts.safe.unwrap_or(range.low), slew };
                if let Err(error) = self.catalog.check_route(&output, range, route.safe) {
                    return Err(AdminAnswer::Refused(Refusal::OutOfLimit { output, error }));
                }
                if self.state.route(&output) == Some(&route) {
                    return unchanged(Unchanged::SameRoute(output));
                }
                EventKind::Route { output, route: Some(route) }
            }
            AdminCommand::Unroute { output } => {
                if self.state.route(&output).is_none() {
                    return Err(AdminAnswer::Answer(Answer::NotRouted(output)));
                }
                EventKind::Route { output, route: None }
            }
            AdminCommand::Slew { output, volts_per_second } => {
                let volts_per_second = Self::slew(&output, volts_per_second)?;
                let Some(current) = self.state.route(&output) else {
                    return Err(AdminAnswer::Answer(Answer::NotRouted(output)));
                };
                if current.slew.to_bits() == volts_per_second.to_bits() {
                    return unchanged(Unchanged::SameRoute(output));
                }
                let route = Route { slew: volts_per_second, ..current.clone() };
                EventKind::Route { output, route: Some(route) }
            }
            AdminCommand::ListRoutes => {
                let routes = self.state.routes().map(|(o, r)| (o.clone(), r.variable.clone())).collect();
                return Err(AdminAnswer::Answer(Answer::Routes(routes)));
            }
            AdminCommand::Instances => {
                return Err(AdminAnswer::Answer(Answer::Instances(self.presence.live_instances())));
            }
            AdminCommand::Mode(None) => return Err(AdminAnswer::Answer(Answer::Mode(self.state.mode()))),
            AdminCommand::Mode(Some(mode)) if mode == self.state.mode() => return unchanged(Unchanged::SameMode(mode)),
            AdminCommand::Mode(Some(mode)) => EventKind::Mode { mode },
            AdminCommand::Lock { target, locked } => {
                if self.state.is_locked(&target) == locked {
                    return unchanged(if locked {
                        Unchanged::AlreadyLocked(target)
                    } else {
                        Unchanged::NotLocked(target)
                    });
                }
                if !self.state.has_lock_room(&target) {
                    return Err(AdminAnswer::Refused(Refusal::TooManyLocks(MAX_LOCKS)));
                }
                EventKind::Lock { target, locked }
            }
        }])
    }

    /// `unlock all`: every lock lifted, each its own tombstone.
    fn unlock_all(&self) -> Result<Vec<EventKind>, AdminAnswer> {
        let kinds: Vec<EventKind> =
            self.state.locks().map(|target| EventKind::Lock { target: target.clone(), locked: false }).collect();
        if kinds.is_empty() {
            return Err(AdminAnswer::Refused(Refusal::Unchanged(Unchanged::NotLocked(LockTarget::All))));
        }
        Ok(kinds)
    }

    /// `!admin scene …`: a save is one event holding every set parameter's target; a recall is one
    /// `Set` per saved value (applied as one batch by the caller); a delete is a tombstone.
    fn scene_events(&self, action: SceneAction) -> Result<Vec<EventKind>, AdminAnswer> {
        let no_scene = |name: SceneName| Err(AdminAnswer::Answer(Answer::NoScene(name)));
        match action {
            SceneAction::List => {
                let scenes = self.state.scenes().map(|(name, scene)| (name.clone(), scene.values.len())).collect();
                Err(AdminAnswer::Answer(Answer::Scenes(scenes)))
            }
            SceneAction::Save(name) => {
                let values: std::collections::BTreeMap<_, _> =
                    self.state.params().map(|(variable, p)| (variable.clone(), p.value)).collect();
                let refused = |r| Err(AdminAnswer::Refused(r));
                if values.is_empty() {
                    return refused(Refusal::EmptyScene);
                }
                if values.len() > MAX_SCENE_VALUES {
                    return refused(Refusal::SceneTooLarge { values: values.len(), max: MAX_SCENE_VALUES });
                }
                if self.state.scene(&name).is_none() && self.state.scenes().count() >= MAX_SCENES {
                    return refused(Refusal::TooManyScenes(MAX_SCENES));
                }
                Ok(vec![EventKind::Scene { name, scene: Some(Scene { values }) }])
            }
            SceneAction::Recall(name) => {
                let Some(scene) = self.state.scene(&name) else { return no_scene(name) };
                if self.state.emergency().active {
                    return Err(AdminAnswer::Refused(Refusal::Emergency));
                }
                let kinds = scene
                    .values
                    .iter()
                    .map(|(variable, value)| EventKind::Set { variable: variable.clone(), value: *value, ramp: None })
                    .collect();
                Ok(kinds)
            }
            SceneAction::Delete(name) => {
                if self.state.scene(&name).is_none() {
                    return no_scene(name);
                }
                Ok(vec![EventKind::Scene { name, scene: None }])
            }
        }
    }

    /// A slew rate from any local source, checked as the wire checks a peer's.
    fn slew(output: &Output, volts_per_second: f32) -> Result<f32, AdminAnswer> {
        crate::motion::checked_slew(f64::from(volts_per_second))
            .map_err(|error| AdminAnswer::Refused(Refusal::BadSlew { output: output.clone(), error }))
    }
}

/// An admin command that makes no event: the answer to a question, or why it would change nothing.
pub(super) enum AdminAnswer {
    Answer(Answer),
    Refused(Refusal),
}
