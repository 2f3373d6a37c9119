//! What every write endpoint shares: the decision a handler makes, who an action is attributed to,
//! and the names and voltages a body may carry, checked as the chat parser checks them.

use serde_json::Value;

use super::{ApiError, HttpContext};
use crate::catalog::{Output, Variable, VoltRange};
use crate::command::{Command, MAX_MESSAGE_CHARS, RouteVolts};
use crate::gate::Sender;

/// Who HTTP admin actions are attributed to on the overlay and in the logs.
pub const HTTP_ADMIN: &str = "http-admin";

/// What a write handler decided: a command to submit, or an answer already made.
#[derive(Debug)]
pub enum Action {
    Submit(Sender, Command),
    Answer(Value),
}

pub(super) fn operator(name: Option<&str>) -> Sender {
    Sender::operator(name.filter(|n| !n.trim().is_empty()).unwrap_or(HTTP_ADMIN))
}

pub(super) fn variable(ctx: &HttpContext, name: &str) -> Result<Variable, ApiError> {
    ctx.catalog.parse_variable(name.trim()).ok_or_else(|| ApiError::BadRequest(format!("unknown variable {name:?}")))
}

pub(super) fn output(ctx: &HttpContext, name: &str) -> Result<Output, ApiError> {
    ctx.catalog.output(name.trim()).ok_or_else(|| ApiError::NotFound(format!("unknown output {name:?}")))
}

/// An emergency message as the chat parser would keep it: one line, control characters removed, cut.
pub(super) fn message(text: Option<String>) -> Option<String> {
    let text: String = text?.chars().filter(|c| !c.is_control()).take(MAX_MESSAGE_CHARS).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The voltages a route body asks for; the coordinator checks them against the output's limit.
pub(super) fn route_volts(range: Option<[f32; 2]>, safe: Option<f32>, slew: Option<f32>) -> RouteVolts {
    RouteVolts { range: range.map(|[low, high]| VoltRange { low, high }), safe, slew }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_clean_line_of_bounded_length() {
        assert_eq!(message(Some("  too\nbright \u{1b}[31m ".into())), Some("toobright [31m".into()));
        assert_eq!(message(Some("   ".into())), None);
        assert_eq!(message(Some("x".repeat(500))).map(|m| m.len()), Some(MAX_MESSAGE_CHARS));
    }
}
