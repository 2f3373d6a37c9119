//! Admin commands: what event each makes, or the answer it gets, or why it changes nothing.

use super::{Answer, Coordinator, Refusal, Unchanged};
use crate::catalog::Output;
use crate::command::AdminCommand;
use crate::state::{EventKind, Route};

impl Coordinator {
    /// Turns an admin command into an event; or answers a question, or says why it changes nothing.
    pub(super) fn admin_event(&self, admin: AdminCommand) -> Result<EventKind, AdminAnswer> {
        let unchanged = |u| Err(AdminAnswer::Refused(Refusal::Unchanged(u)));
        let emergency = self.state.emergency();
        Ok(match admin {
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
        })
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
