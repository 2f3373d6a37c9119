//! What a command came to: done (and what was done, or the answer to a question) or refused (and
//! why). Typed, so each edge says it in its own words: chat replies, the admin API's JSON, the
//! terminal's tick marks. The words for what was done and answered live at the chat edge
//! (`chat::reply`); a refusal is an error whose `Display` is its reason.

use crate::catalog::{Output, RouteError, Variable};
use crate::command::{Lesson, Rejection};
use crate::gate::Denial;
use crate::motion::MotionError;
use crate::show::{LockTarget, Mode, SceneName};
use crate::state::{EventKind, Tally};

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
    /// In democracy, a viewer's command was filed as a vote: its parameter's tally now.
    Voted { variable: Variable, tally: Tally },
    /// A scene was recalled: this many values were set, as one batch.
    Recalled { name: SceneName, values: usize },
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
    /// `!admin mode`: how viewers' commands are applied now.
    Mode(Mode),
    /// `!admin scene list`: every saved scene and how many values it holds.
    Scenes(Vec<(SceneName, usize)>),
    /// `!admin scene recall|delete` of a name no scene has.
    NoScene(SceneName),
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
    #[error("a ramp lasts at most {}", crate::motion::duration_text(*max_ms))]
    RampTooLong { max_ms: u32 },
    /// A viewer's command on a locked parameter (admins may still set it).
    #[error("{variable} is locked{}", lock_scope(target))]
    Locked { variable: Variable, target: LockTarget },
    /// A scene save with more values set than a scene holds.
    #[error("a scene holds at most {max} values; {values} are set")]
    SceneTooLarge { values: usize, max: usize },
    #[error("nothing to save: no parameter is set")]
    EmptyScene,
    /// A new scene beyond [`crate::show::MAX_SCENES`].
    #[error("at most {0} scenes are kept; delete one first")]
    TooManyScenes(usize),
    /// A new lock target beyond [`crate::show::MAX_LOCKS`]; `lock all` still works.
    #[error("at most {0} separate locks; use lock all")]
    TooManyLocks(usize),
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
    #[error("the mode is already {0}")]
    SameMode(Mode),
    #[error("{0} is already locked")]
    AlreadyLocked(LockTarget),
    #[error("{0} is not locked")]
    NotLocked(LockTarget),
}

/// What a wider lock holds, as a refusal names it.
fn lock_scope(target: &LockTarget) -> String {
    match target {
        LockTarget::Param(_) => String::new(),
        LockTarget::Module { .. } => format!(" (all of {target} is)"),
        LockTarget::All => " (everything is)".to_owned(),
    }
}
