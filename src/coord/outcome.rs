//! What a command came to: done (and what was done, or the answer to a question) or refused (and
//! why). Typed, so each edge says it in its own words: chat replies, the admin API's JSON, the
//! terminal's tick marks. The words for what was done and answered live at the chat edge
//! (`chat::reply`); a refusal is an error whose `Display` is its reason.

use crate::catalog::{Output, RouteError, Variable};
use crate::command::{Lesson, Rejection};
use crate::gate::Denial;
use crate::motion::MotionError;
use crate::state::EventKind;

/// The result of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Done),
    Refused(Refusal),
}

/// A command that did what it asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// A parameter was set.
    Set,
    /// An admin change was applied: the event's kind, for the edge to confirm.
    Admin(EventKind),
    /// A question was answered; no event was made.
    Answer(Answer),
}

/// The answer to an admin question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `!admin routes`: every route, by output.
    Routes(Vec<(Output, Variable)>),
    /// `!admin instances`: the live instances, sorted.
    Instances(Vec<String>),
    /// `!admin remove` of an output that carries nothing.
    NotRouted(Output),
    /// `!cv help`, `!cv list [MODULE]`, `!admin help`: what to type, from the catalogue and the routes.
    Lesson(Lesson),
}

/// Why a command did nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Parse(Rejection),
    #[error("{0}")]
    Gate(Denial),
    #[error("emergency stop is active")]
    Emergency,
    #[error("inputJack#{requested} needs inputJack#{} first", requested - 1)]
    InputJackOrder { requested: u8 },
    /// A slew rate that is no rate (negative, not a number, beyond `SLEW_LIMIT`).
    #[error("{output}: {error}")]
    BadSlew { output: Output, error: MotionError },
    /// A ramp longer than `RAMP_MAX_MS`.
    #[error("a ramp lasts at most {}", crate::coord::outcome::seconds(*max_ms))]
    RampTooLong { max_ms: u32 },
    #[error("the bot is shutting down")]
    ShuttingDown,
    /// A route's range or safe voltage leaves the output's limit (or is no range at all).
    #[error("{output}: {error}")]
    OutOfLimit { output: Output, error: RouteError },
    /// The command asks for what already is; nothing was stamped, sent or published.
    #[error("{0}")]
    Unchanged(Unchanged),
    /// A newer change, from another instance, already won the register: nothing changed here.
    #[error("a newer change from another instance already won; nothing changed")]
    Superseded,
}

/// What an admin command found already in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unchanged {
    #[error("the overlay is already {}", if *.0 { "on" } else { "off" })]
    Overlay(bool),
    #[error("emergency stop is already active; safe values sent again")]
    AlreadyStopped,
    #[error("no emergency stop is active")]
    NotStopped,
    #[error("{0} is already routed that way")]
    SameRoute(Output),
}

/// A duration in milliseconds as a reply says it: `10s`, `2.5s`, `500ms`.
pub(crate) fn seconds(ms: u32) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{}s", f64::from(ms) / 1000.0),
    }
}
