//! The chat command parser: one chat line in, one [`Command`] (or a reason it is not one) out.
//!
//! Pure and total: no I/O, no clock, no state, never panics on any input. It knows the catalogue (to
//! validate names) but nothing of who sent the line, rate limits, Redis or OSC.
//!
//! This module holds the commands, the reasons and the viewer forms; `admin` is the `!admin` grammar
//! (and the older bot's bare admin forms), `volts` a route's `range` and `safe` voltages, `names` how
//! a variable is named and what a wrong name is told, `help` the questions and their lessons.

mod admin;
pub mod help;
mod names;
mod volts;

use std::fmt;

use crate::catalog::{Catalog, Output, Variable, parse_small_number};
use crate::show::{LockTarget, Mode, SceneName};
use admin::{parse_admin, parse_bare_route};
pub use help::{Lesson, Question, Sheet};
pub use names::{Rejection, Suggestion, Unknown};
use names::{is_bare_set, read_variable};
pub use volts::RouteVolts;

/// Longest emergency-stop message kept; the rest is cut so the overlay banner stays readable.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// What a chat line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `doorway#1.threshold: 89` or `!cv doorway#1.threshold 89`; `… 89 over 2s` is a ramp of
    /// `ramp_ms` milliseconds (whether it is too long is the coordinator's call: `RAMP_MAX_MS`).
    Set { variable: Variable, value: u8, ramp_ms: Option<u32> },
    /// `!admin …` (and the older bot's bare routing and overlay forms).
    Admin(AdminCommand),
    /// `!cv help`, `!cv list [MODULE]`, `!admin help`: answered, never gated by cooldowns, changes nothing.
    Ask(Question),
}

/// Commands only broadcasters, moderators, listed admins and the terminal operator may run.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCommand {
    Clear,
    Overlay {
        enabled: bool,
    },
    EmergencyStop {
        message: Option<String>,
    },
    Resume,
    Instances,
    Route {
        output: Output,
        variable: Variable,
        volts: RouteVolts,
    },
    Unroute {
        output: Output,
    },
    ListRoutes,
    /// `!admin slew es9out#1 2`: the output's slew limit in volts per second, 0 = off.
    Slew {
        output: Output,
        volts_per_second: f32,
    },
    /// `!admin mode democracy 10s` or `!admin mode anarchy`; `!admin mode` alone asks which.
    Mode(Option<Mode>),
    /// `!admin scene save|recall|delete NAME`, `!admin scene list`.
    Scene(SceneAction),
    /// `!admin lock TARGET` (`locked: true`) or `!admin unlock TARGET`; `unlock all` lifts every lock.
    Lock {
        target: LockTarget,
        locked: bool,
    },
}

/// What `!admin scene` does.
#[derive(Debug, Clone, PartialEq)]
pub enum SceneAction {
    Save(SceneName),
    Recall(SceneName),
    Delete(SceneName),
    List,
}

impl Command {
    /// True for what only admins may run: admin commands and the question about them.
    pub fn is_admin(&self) -> bool {
        matches!(self, Command::Admin(_) | Command::Ask(Question::AdminHelp))
    }

    pub fn is_question(&self) -> bool {
        matches!(self, Command::Ask(_))
    }
}

impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear => f.write_str("clear"),
            Self::Overlay { enabled } => write!(f, "overlay {}", if *enabled { "on" } else { "off" }),
            Self::EmergencyStop { message: Some(m) } => write!(f, "emergency stop {m}"),
            Self::EmergencyStop { message: None } => f.write_str("emergency stop"),
            Self::Resume => f.write_str("resume"),
            Self::Instances => f.write_str("instances"),
            Self::Route { output, variable, volts } => write!(f, "{output} → {variable}{volts}"),
            Self::Unroute { output } => write!(f, "remove {output}"),
            Self::ListRoutes => f.write_str("routes"),
            Self::Slew { output, volts_per_second } => write!(f, "slew {output} {volts_per_second}"),
            Self::Mode(Some(mode)) => write!(f, "mode {mode}"),
            Self::Mode(None) => f.write_str("mode"),
            Self::Scene(SceneAction::Save(name)) => write!(f, "scene save {name}"),
            Self::Scene(SceneAction::Recall(name)) => write!(f, "scene recall {name}"),
            Self::Scene(SceneAction::Delete(name)) => write!(f, "scene delete {name}"),
            Self::Scene(SceneAction::List) => f.write_str("scene list"),
            Self::Lock { target, locked } => write!(f, "{} {target}", if *locked { "lock" } else { "unlock" }),
        }
    }
}

/// Why a line is not a command. `NotACommand` is ordinary chat; the others are attempts that failed,
/// which are counted by reason and never answered in chat by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    #[error("not a command")]
    NotACommand,
    #[error("malformed command")]
    Malformed,
    #[error("unknown module, instance or parameter")]
    UnknownVariable,
    #[error("value must be a whole number from 0 to 127")]
    BadValue,
    #[error("unknown output")]
    UnknownOutput,
    #[error("unknown admin command")]
    UnknownAdmin,
    #[error("control characters in command")]
    ControlCharacters,
    #[error("voltages are written like 0.5 or -2 (range LOW HIGH, safe VOLTS)")]
    BadVoltage,
    #[error("a ramp is written like `over 2s` or `over 500ms`")]
    BadDuration,
    #[error("a slew rate is volts per second from 0 (off) to 1000, like `slew es9out#1 2`")]
    BadSlew,
    #[error("a democracy window lasts 2s to 120s, like `mode democracy 10s`")]
    BadWindow,
    #[error("a scene name is 1 to 32 letters, digits, - or _, like `scene save intro`")]
    BadSceneName,
}

impl ParseError {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotACommand => "not_a_command",
            Self::Malformed => "malformed",
            Self::UnknownVariable => "unknown_variable",
            Self::BadValue => "bad_value",
            Self::UnknownOutput => "unknown_output",
            Self::UnknownAdmin => "unknown_admin",
            Self::ControlCharacters => "control_characters",
            Self::BadVoltage => "bad_voltage",
            Self::BadDuration => "bad_duration",
            Self::BadSlew => "bad_slew",
            Self::BadWindow => "bad_window",
            Self::BadSceneName => "bad_scene_name",
        }
    }

    /// Every reason, for registering metrics up front.
    pub const ALL: [ParseError; 12] = [
        Self::NotACommand,
        Self::Malformed,
        Self::UnknownVariable,
        Self::BadValue,
        Self::UnknownOutput,
        Self::UnknownAdmin,
        Self::ControlCharacters,
        Self::BadVoltage,
        Self::BadDuration,
        Self::BadSlew,
        Self::BadWindow,
        Self::BadSceneName,
    ];
}

/// Parses one chat line. The first command on the line counts; chatter after it is ignored, because
/// Twitch refuses identical repeated messages and viewers append text to get around that. A refusal
/// carries its [`ParseError`] and, for a wrong name, which part is wrong ([`Rejection`]).
pub fn parse(line: &str, catalog: &Catalog) -> Result<Command, Rejection> {
    let line = line.trim_start();
    let (head, rest) = split_token(line);
    if head.eq_ignore_ascii_case("!cv") {
        if let Some(question) = help::viewer_question(rest, catalog) {
            return question.map(Command::Ask);
        }
        return parse_set(rest.trim_start(), catalog, false);
    }
    if head.eq_ignore_ascii_case("!admin") {
        if help::is_admin_help(rest) {
            return Ok(Command::Ask(Question::AdminHelp));
        }
        return Ok(Command::Admin(parse_admin(rest.trim(), catalog)?));
    }
    if starts_with_output(line, catalog) {
        // The older bot's bare routing form, `es9out#1 → doorway#1.threshold`, starts with an output.
        return Ok(parse_bare_route(line, catalog)?.map(Command::Admin).ok_or(ParseError::Malformed)?);
    }
    if (head.contains('#') && (head.contains('.') || head.contains(':'))) || is_bare_set(line, catalog) {
        return parse_set(line, catalog, true);
    }
    // The older bot accepted these without a prefix from its admin; they must fill the whole line so
    // ordinary chat ("overlay on my screen is nice") is never taken as a command.
    match parse_admin(line.trim(), catalog) {
        Ok(cmd @ (AdminCommand::Overlay { .. } | AdminCommand::ListRoutes | AdminCommand::Unroute { .. }))
            if is_bare_admin_phrase(line) =>
        {
            Ok(Command::Admin(cmd))
        }
        _ => Err(ParseError::NotACommand.into()),
    }
}

/// True when the line opens with a hardware output name (the routing form).
fn starts_with_output(line: &str, catalog: &Catalog) -> bool {
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '#' | '.' | '_'))).unwrap_or(line.len());
    catalog.output(&line[..end]).is_some()
}

fn is_bare_admin_phrase(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [w] => w.eq_ignore_ascii_case("routes"),
        [a, b] => {
            (a.eq_ignore_ascii_case("overlay") && (b.eq_ignore_ascii_case("on") || b.eq_ignore_ascii_case("off")))
                || (a.eq_ignore_ascii_case("list") && b.eq_ignore_ascii_case("routes"))
                || (a.eq_ignore_ascii_case("remove") && b.contains('#'))
        }
        _ => false,
    }
}

/// Splits off the first whitespace-separated token.
fn split_token(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], &text[at..]),
        None => (text, ""),
    }
}

/// `module#N.parameter: value [over DURATION] [chatter]` (or `module.parameter` for a module there is
/// one of); with `colon_required` false (the `!cv` form) the colon may be replaced by whitespace.
fn parse_set(text: &str, catalog: &Catalog, colon_required: bool) -> Result<Command, Rejection> {
    let name_end = text.find(|c: char| c == ':' || c.is_whitespace()).unwrap_or(text.len());
    let name = &text[..name_end];
    if name.chars().any(char::is_control) {
        return Err(ParseError::ControlCharacters.into());
    }
    let after = text[name_end..].trim_start();
    let value_text = match after.strip_prefix(':') {
        Some(v) => v.trim_start(),
        None if !colon_required && !after.is_empty() && name_end < text.len() => after,
        None => return Err(ParseError::Malformed.into()),
    };
    let variable = read_variable(name, catalog).map_err(Rejection::Unknown)?;
    let (value_token, after_value) = split_token(value_text);
    if value_token.chars().any(char::is_control) {
        return Err(ParseError::ControlCharacters.into());
    }
    let value: u8 = parse_small_number(value_token).ok_or(ParseError::BadValue)?;
    if value > catalog.value_max() {
        return Err(ParseError::BadValue.into());
    }
    let (word, rest) = split_token(after_value.trim_start());
    let ramp_ms = if word.eq_ignore_ascii_case("over") {
        let (duration, _chatter) = split_token(rest.trim_start());
        Some(parse_duration_ms(duration).ok_or(ParseError::BadDuration)?)
    } else {
        None
    };
    Ok(Command::Set { variable, value, ramp_ms })
}

/// A ramp's length as typed in chat: `2s`, `1.5s`, `500ms` (at most 8 characters before the unit,
/// at most three decimals on seconds, at most [`MAX_DURATION_MS`]), in milliseconds. Never a float
/// parse: `1e9s` and `infs` are not durations. Whether it is too long for a ramp is the
/// coordinator's call, which says so.
pub(crate) fn parse_duration_ms(word: &str) -> Option<u32> {
    let lower = word.to_ascii_lowercase();
    let (number, scale) = match lower.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (lower.strip_suffix('s')?, 1000),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if number.len() > 8 || whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    if scale == 1 && !fraction.is_empty() || fraction.len() > 3 {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction_ms: u32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
    whole.checked_mul(scale)?.checked_add(fraction_ms).filter(|ms| *ms <= MAX_DURATION_MS)
}

/// The longest duration chat can write: the most `500ms` form's eight digits hold, so every
/// duration the parser accepts reads back the same written in milliseconds.
pub const MAX_DURATION_MS: u32 = 99_999_999;

#[cfg(test)]
mod tests;
