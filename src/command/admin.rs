//! The `!admin` grammar: the words after `!admin`, and the routing form an admin may also write bare
//! (`es9out#1 → doorway#1.threshold`).

use super::names::read_variable;
use super::volts::{parse_route_volts, parse_slew};
use super::{AdminCommand, MAX_MESSAGE_CHARS, ParseError, Rejection, SceneAction, parse_duration_ms, split_token};
use crate::catalog::Catalog;
use crate::show::{LockTarget, Mode, SceneName};

/// The words after `!admin`.
pub(super) fn parse_admin(text: &str, catalog: &Catalog) -> Result<AdminCommand, Rejection> {
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(ParseError::ControlCharacters.into());
    }
    let (verb, rest) = split_token(text);
    let rest = rest.trim();
    let verb_is = |w: &str| verb.eq_ignore_ascii_case(w);
    if verb_is("clear") && rest.is_empty() {
        return Ok(AdminCommand::Clear);
    }
    if verb_is("overlay") {
        return match rest.to_ascii_lowercase().as_str() {
            "on" => Ok(AdminCommand::Overlay { enabled: true }),
            "off" => Ok(AdminCommand::Overlay { enabled: false }),
            _ => Err(ParseError::UnknownAdmin.into()),
        };
    }
    if verb_is("emergency") || verb_is("estop") {
        let message = if verb_is("emergency") {
            let (stop, msg) = split_token(rest);
            if !stop.eq_ignore_ascii_case("stop") {
                return Err(ParseError::UnknownAdmin.into());
            }
            msg
        } else {
            rest
        };
        return Ok(AdminCommand::EmergencyStop { message: clean_message(message) });
    }
    if verb_is("resume") && rest.is_empty() {
        return Ok(AdminCommand::Resume);
    }
    if verb_is("instances") && rest.is_empty() {
        return Ok(AdminCommand::Instances);
    }
    if (verb_is("routes") && rest.is_empty()) || (verb_is("list") && rest.eq_ignore_ascii_case("routes")) {
        return Ok(AdminCommand::ListRoutes);
    }
    if verb_is("remove") || verb_is("unroute") {
        let output = catalog.output(rest).ok_or(ParseError::UnknownOutput)?;
        return Ok(AdminCommand::Unroute { output });
    }
    if verb_is("slew") {
        let (output, rate) = split_token(rest);
        let output = catalog.output(output).ok_or(ParseError::UnknownOutput)?;
        let volts_per_second = parse_slew(rate.trim())?;
        return Ok(AdminCommand::Slew { output, volts_per_second });
    }
    if verb_is("mode") {
        return Ok(AdminCommand::Mode(parse_mode(rest)?));
    }
    if verb_is("scene") {
        return Ok(AdminCommand::Scene(parse_scene(rest)?));
    }
    if verb_is("lock") || verb_is("unlock") {
        let target = LockTarget::parse(rest, catalog).ok_or(ParseError::UnknownVariable)?;
        return Ok(AdminCommand::Lock { target, locked: verb_is("lock") });
    }
    if verb.contains('#') {
        return parse_bare_route(text, catalog)?.ok_or_else(|| ParseError::UnknownAdmin.into());
    }
    Err(ParseError::UnknownAdmin.into())
}

/// `democracy 10s`, `anarchy`, or nothing (the question).
fn parse_mode(rest: &str) -> Result<Option<Mode>, ParseError> {
    let (word, window) = split_token(rest);
    let window = window.trim();
    if word.is_empty() {
        return Ok(None);
    }
    if word.eq_ignore_ascii_case("anarchy") && window.is_empty() {
        return Ok(Some(Mode::Anarchy));
    }
    if !word.eq_ignore_ascii_case("democracy") {
        return Err(ParseError::UnknownAdmin);
    }
    let ms = parse_duration_ms(window).ok_or(ParseError::BadWindow)?;
    Mode::democracy(u64::from(ms)).map(Some).ok_or(ParseError::BadWindow)
}

/// `save NAME`, `recall NAME`, `delete NAME` or `list`.
fn parse_scene(rest: &str) -> Result<SceneAction, ParseError> {
    let (verb, name) = split_token(rest);
    let name = name.trim();
    if verb.eq_ignore_ascii_case("list") && name.is_empty() {
        return Ok(SceneAction::List);
    }
    let action: fn(SceneName) -> SceneAction = match verb.to_ascii_lowercase().as_str() {
        "save" => SceneAction::Save,
        "recall" | "load" => SceneAction::Recall,
        "delete" | "remove" => SceneAction::Delete,
        _ => return Err(ParseError::UnknownAdmin),
    };
    SceneName::parse(name).map(action).ok_or(ParseError::BadSceneName)
}

/// `output → variable`, `output -> variable` or `output to variable`. `Ok(None)` means the line has
/// no arrow at all (so it may be a viewer command instead).
pub(super) fn parse_bare_route(text: &str, catalog: &Catalog) -> Result<Option<AdminCommand>, Rejection> {
    let text = text.trim();
    let split = ["→", "->"].iter().find_map(|arrow| text.split_once(arrow)).or_else(|| {
        let (first, rest) = split_token(text);
        let (word, second) = split_token(rest.trim_start());
        word.eq_ignore_ascii_case("to").then_some((first, second))
    });
    let Some((output, variable)) = split else {
        return Ok(None);
    };
    let (output, rest) = (output.trim(), variable.trim());
    let (variable, options) = split_token(rest);
    let output = catalog.output(output).ok_or(ParseError::UnknownOutput)?;
    let variable = read_variable(variable, catalog).map_err(Rejection::Unknown)?;
    let volts = parse_route_volts(options)?;
    Ok(Some(AdminCommand::Route { output, variable, volts }))
}

/// Keeps an emergency message printable and short; an empty one becomes `None`.
fn clean_message(text: &str) -> Option<String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>()
        .trim_end()
        .to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::super::{AdminCommand, Command, MAX_MESSAGE_CHARS, parse};
    use crate::catalog::Catalog;

    #[test]
    fn admin_commands() {
        let cases = [
            ("!admin clear", "admin clear"),
            ("!ADMIN Clear", "admin clear"),
            ("!admin overlay on", "admin overlay on"),
            ("!admin overlay OFF", "admin overlay off"),
            ("!admin emergency stop", "admin emergency stop"),
            ("!admin emergency stop strobing too hard", "admin emergency stop strobing too hard"),
            ("!admin estop", "admin emergency stop"),
            ("!admin resume", "admin resume"),
            ("!admin instances", "admin instances"),
            ("!admin routes", "admin routes"),
            ("!admin list routes", "admin routes"),
            ("!admin es9out#1 → doorway#1.threshold", "admin es9out#1 → doorway#1.threshold"),
            ("!admin es9out#1→doorway#1.threshold", "admin es9out#1 → doorway#1.threshold"),
            ("!admin ES9OUT#2 -> doorway#1.gain", "admin es9out#2 → doorway#1.gain"),
            ("!admin esx8cv#3.out#4 to passage#1.thru#1", "admin esx8cv#3.out#4 → passage#1.thru#1"),
            ("!admin remove es9out#1", "admin remove es9out#1"),
            ("es9out#1 → doorway#1.threshold", "admin es9out#1 → doorway#1.threshold"),
            ("esx8cv#1.out#1 -> arch#1.inputJack#1", "admin esx8cv#1.out#1 → arch#1.inputJack#1"),
            (
                "!admin es9out#1 → doorway#1.gain range 0.2 0.8 safe 0.5",
                "admin es9out#1 → doorway#1.gain range 0.2 0.8 safe 0.5",
            ),
            ("!admin es9out#1 → doorway#1.gain RANGE 1 0v", "admin es9out#1 → doorway#1.gain range 1 0"),
            ("!admin es9out#1 -> doorway#1.gain safe -1000", "admin es9out#1 → doorway#1.gain safe -1000"),
            ("!admin es9out#1 → doorway#1.gain slew 2", "admin es9out#1 → doorway#1.gain slew 2"),
            (
                "!admin es9out#1 → doorway#1.gain range 0 1 safe 0 slew 0.5",
                "admin es9out#1 → doorway#1.gain range 0 1 safe 0 slew 0.5",
            ),
            ("!admin slew es9out#1 2", "admin slew es9out#1 2"),
            ("!admin SLEW esx8cv#2.out#3 0.25V/s", "admin slew esx8cv#2.out#3 0.25"),
            ("!admin slew es9out#1 off", "admin slew es9out#1 0"),
            ("!admin slew es9out#1 1000", "admin slew es9out#1 1000"),
            ("!admin mode democracy 10s", "admin mode democracy 10s"),
            ("!admin MODE Democracy 2.5s", "admin mode democracy 2.5s"),
            ("!admin mode democracy 120s", "admin mode democracy 120s"),
            ("!admin mode anarchy", "admin mode anarchy"),
            ("!admin mode", "admin mode"),
            ("!admin scene save Intro", "admin scene save intro"),
            ("!admin scene recall intro", "admin scene recall intro"),
            ("!admin scene delete intro", "admin scene delete intro"),
            ("!admin scene list", "admin scene list"),
            ("!admin lock doorway#1.threshold", "admin lock doorway#1.threshold"),
            ("!admin lock Doorway#1", "admin lock doorway#1"),
            ("!admin lock all", "admin lock all"),
            ("!admin unlock doorway#1.THRESHOLD", "admin unlock doorway#1.threshold"),
            ("!admin unlock all", "admin unlock all"),
            ("overlay off", "admin overlay off"),
            ("routes", "admin routes"),
            ("remove es9out#3", "admin remove es9out#3"),
        ];
        for (line, expected) in cases {
            check(line, expected);
        }
    }

    #[test]
    fn bad_admin_commands() {
        let cases = [
            ("!admin", "error unknown_admin"),
            ("!admin dance", "error unknown_admin"),
            ("!admin overlay maybe", "error unknown_admin"),
            ("!admin emergency go", "error unknown_admin"),
            ("!admin clear now", "error unknown_admin"),
            ("!admin es9out#9 → doorway#1.threshold", "error unknown_output"),
            ("!admin es9out#1 → doorway#1.nope", "error unknown_variable"),
            ("es9out#1", "error malformed"),
            ("!admin remove es9out#99", "error unknown_output"),
            ("es9out#1 → doorway#1.threshold and more", "error malformed"),
            ("!admin es9out#1 → doorway#1.gain range 0 1e39", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain range 0 inf", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain range 0 NaN", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain range 0", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain safe", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain safe 0.5 range 0 1", "error malformed"),
            ("!admin es9out#1 → doorway#1.gain safe 1234567890123", "error bad_voltage"),
            ("!admin es9out#1 → doorway#1.gain slew -1", "error bad_slew"),
            ("!admin es9out#1 → doorway#1.gain slew 0.5 safe 0", "error malformed"),
            ("!admin slew es9out#1", "error bad_slew"),
            ("!admin slew es9out#1 -2", "error bad_slew"),
            ("!admin slew es9out#1 1000.5", "error bad_slew"),
            ("!admin slew es9out#1 fast", "error bad_slew"),
            ("!admin slew es9out#1 2 please", "error bad_slew"),
            ("!admin slew es9out#99 2", "error unknown_output"),
            ("!admin mode democracy", "error bad_window"),
            ("!admin mode democracy 1s", "error bad_window"),
            ("!admin mode democracy 121s", "error bad_window"),
            ("!admin mode democracy 10", "error bad_window"),
            ("!admin mode anarchy now", "error unknown_admin"),
            ("!admin mode chaos", "error unknown_admin"),
            ("!admin scene save", "error bad_scene_name"),
            ("!admin scene save two words", "error bad_scene_name"),
            ("!admin scene dance intro", "error unknown_admin"),
            ("!admin lock doorway#9", "error unknown_variable"),
            ("!admin lock doorway#1.nope", "error unknown_variable"),
            ("!admin lock", "error unknown_variable"),
        ];
        for (line, expected) in cases {
            check(line, expected);
        }
    }

    #[test]
    fn emergency_message_is_cleaned_and_capped() {
        let catalog = Catalog::builtin();
        let long = format!("!admin emergency stop {}", "x".repeat(1000));
        let Ok(Command::Admin(AdminCommand::EmergencyStop { message: Some(m) })) = parse(&long, &catalog) else {
            panic!("expected an emergency stop");
        };
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS);
    }
}
