//! How a chat line names a variable, and what a viewer who named one wrongly is told: which part
//! (module, instance or parameter) the catalogue does not have, with the nearest name it does have.
//!
//! Pure and total like the parser around it. Knows the catalogue; not the sender, the counters or
//! where a reply goes.

use std::fmt;
use std::sync::Arc;

use super::ParseError;
use crate::catalog::{Catalog, Variable};

/// Why a line is not a command: a [`ParseError`] (the counters' label), or a name the catalogue
/// lacks, said so that the viewer can put it right. The counters read [`Rejection::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Reason(#[from] ParseError),
    #[error("{0}")]
    Unknown(Unknown),
}

impl Rejection {
    /// The reason, for counters and logs: a name the catalogue lacks is `UnknownVariable`.
    pub fn reason(&self) -> ParseError {
        match self {
            Self::Reason(reason) => *reason,
            Self::Unknown(_) => ParseError::UnknownVariable,
        }
    }

    /// The wrong part of a name, when that is what was wrong.
    pub fn unknown(&self) -> Option<&Unknown> {
        match self {
            Self::Reason(_) => None,
            Self::Unknown(unknown) => Some(unknown),
        }
    }
}

/// A misspelt name and the catalogue's name nearest to it. Only made when the two are close (see
/// `catalog::suggest`), so the text echoed back to chat is always nearly a catalogue name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub written: Box<str>,
    pub nearest: Arc<str>,
}

/// The part of a variable's name the catalogue does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// No such module; the nearest one when one is close.
    Module(Option<Suggestion>),
    /// The module has no such parameter (or none was written).
    Parameter { module: Arc<str>, suggestion: Option<Suggestion> },
    /// An instance number the module does not have.
    Instance { module: Arc<str>, instances: u16 },
    /// `module.parameter` without `#N` on a module the catalogue has more than one of.
    InstanceNeeded { example: Variable, instances: u16 },
}

impl Unknown {
    /// An unknown module written as `written`.
    pub(super) fn module(written: &str, catalog: &Catalog) -> Unknown {
        Unknown::Module(suggest(written, catalog.nearest_module(written)))
    }

    fn parameter(module: &Arc<str>, written: &str, catalog: &Catalog) -> Unknown {
        let suggestion = suggest(written, catalog.nearest_parameter(module, written));
        Unknown::Parameter { module: module.clone(), suggestion }
    }
}

fn suggest(written: &str, nearest: Option<Arc<str>>) -> Option<Suggestion> {
    nearest.map(|nearest| Suggestion { written: written.into(), nearest })
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Module(Some(s)) => write!(f, "unknown module {} — did you mean {}?", s.written, s.nearest),
            Self::Module(None) => f.write_str("unknown module: `!cv list` names them"),
            Self::Parameter { module, suggestion: Some(s) } => {
                write!(f, "unknown parameter {} on {module} — did you mean {}?", s.written, s.nearest)
            }
            Self::Parameter { module, suggestion: None } => {
                write!(f, "unknown parameter on {module}: `!cv list {module}` names them")
            }
            Self::Instance { module, instances: 1 } => write!(f, "{module} has 1 instance: #1"),
            Self::Instance { module, instances } => write!(f, "{module} has {instances} instances: #1 to #{instances}"),
            Self::InstanceNeeded { example, instances } => {
                write!(f, "{} has {instances} instances: write {example} (#1 to #{instances})", example.module())
            }
        }
    }
}

/// Reads `module#N.parameter`, or `module.parameter` for a module the catalogue has one of. When it
/// names nothing, says which part is wrong: the module first, then the parameter (so that the
/// instance's message can show a name that works), then the instance.
pub(super) fn read_variable(text: &str, catalog: &Catalog) -> Result<Variable, Unknown> {
    if let Some(variable) = catalog.parse_variable(text) {
        return Ok(variable);
    }
    let (module_text, rest) = text.split_at(text.find(['#', '.']).unwrap_or(text.len()));
    let Some(module) = catalog.module(module_text) else {
        return Err(Unknown::module(module_text, catalog));
    };
    let (numbered, parameter) = match rest.strip_prefix('#') {
        Some(numbered) => (true, numbered.split_once('.').map_or("", |(_, p)| p)),
        None => (false, rest.strip_prefix('.').unwrap_or("")),
    };
    let Some(first) = catalog.variable(module.name, 1, parameter) else {
        return Err(Unknown::parameter(module.name, parameter, catalog));
    };
    match (numbered, module.instances) {
        (false, 1) => Ok(first),
        (false, instances) => Err(Unknown::InstanceNeeded { example: first, instances }),
        // The parameter exists, so `parse_variable` refused the number: the module has no such instance.
        (true, instances) => Err(Unknown::Instance { module: module.name.clone(), instances }),
    }
}

/// True when `line` opens with `module.parameter:` (no `#N`) and the module is in the catalogue: the
/// short form for a module there is one of. Chat such as `lol.jk: hi` or `see doorway.com` is not it.
pub(super) fn is_bare_set(line: &str, catalog: &Catalog) -> bool {
    let name_end = line.find(|c: char| c == ':' || c.is_whitespace()).unwrap_or(line.len());
    let Some((module, _)) = line[..name_end].split_once('.') else { return false };
    !module.contains('#') && catalog.module(module).is_some() && line[name_end..].trim_start().starts_with(':')
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::super::{Command, parse};
    use crate::catalog::{Catalog, CatalogSource};

    #[test]
    fn a_wrong_name_is_told_which_part_is_wrong_and_the_nearest_right_one() {
        let cases = [
            ("doorway#1.threshhold: 89", "unknown parameter threshhold on doorway — did you mean threshold?"),
            ("doorway#1.Thresold: 89", "unknown parameter Thresold on doorway — did you mean threshold?"),
            ("doorwy#1.threshold: 89", "unknown module doorwy — did you mean doorway?"),
            ("!cv doorwy#1.threshold 89", "unknown module doorwy — did you mean doorway?"),
            ("nosuchmodule#1.x: 5", "unknown module: `!cv list` names them"),
            ("doorway#1.volume: 5", "unknown parameter on doorway: `!cv list doorway` names them"),
            ("doorway#1: 5", "unknown parameter on doorway: `!cv list doorway` names them"),
            ("doorway#9.threshold: 89", "doorway has 8 instances: #1 to #8"),
            ("doorway#0.threshold: 89", "doorway has 8 instances: #1 to #8"),
            ("doorway#x.threshold: 89", "doorway has 8 instances: #1 to #8"),
            // A moderator's route names the wrong part too.
            (
                "!admin es9out#1 → doorway#1.threshhold",
                "unknown parameter threshhold on doorway — did you mean threshold?",
            ),
            ("es9out#1 -> doorwy#1.gain", "unknown module doorwy — did you mean doorway?"),
            ("!admin es9out#1 → doorway#12.gain", "doorway has 8 instances: #1 to #8"),
            ("doorway#9.threshhold: 89", "unknown parameter threshhold on doorway — did you mean threshold?"),
            ("arch#1.inputJack#17: 5", "unknown parameter on arch: `!cv list arch` names them"),
            ("\u{1F525}\u{1F525}#1.\u{1F525}: 5", "unknown module: `!cv list` names them"),
            ("d\u{f6}orway#1.threshold: 5", "unknown module: `!cv list` names them"),
            // The counters still see the reason they always did.
            ("doorway#1.threshhold: 89", "error unknown_variable"),
            ("doorwy#1.threshold: 89", "error unknown_variable"),
        ];
        for (line, expected) in cases {
            check(line, expected);
        }
    }

    #[test]
    fn the_short_form_without_an_instance_is_recognised_only_for_catalogue_modules() {
        let cases = [
            ("doorway.threshold: 5", "doorway has 8 instances: write doorway#1.threshold (#1 to #8)"),
            ("Doorway.threshold:5", "doorway has 8 instances: write doorway#1.threshold (#1 to #8)"),
            ("!cv doorway.threshold 5", "doorway has 8 instances: write doorway#1.threshold (#1 to #8)"),
            ("doorway.threshold : 5", "error unknown_variable"),
            ("doorway.threshhold: 5", "unknown parameter threshhold on doorway — did you mean threshold?"),
            ("lol.jk: hi", "error not_a_command"),
            ("doorway.threshold 5", "error not_a_command"),
            ("see doorway.com: lol", "error not_a_command"),
            ("doorway: 5", "error not_a_command"),
            ("doorwy.threshold: 5", "error not_a_command"),
        ];
        for (line, expected) in cases {
            check(line, expected);
        }
    }

    /// What `line` comes to with a catalogue where `solo` has one instance and `duo` two.
    fn small(line: &str) -> String {
        let text = r#"{"format": 1, "default_instances": 2, "modules": [
            {"name": "solo", "instances": 1, "parameters": ["gain", "tilt"]},
            {"name": "duo", "parameters": ["gain"]}], "outputs": []}"#;
        let catalog = Catalog::parse(text, CatalogSource::Embedded).expect("valid");
        match parse(line, &catalog) {
            Ok(Command::Set { variable, value, .. }) => format!("set {variable} {value}"),
            Ok(other) => format!("{other:?}"),
            Err(r) => r.to_string(),
        }
    }

    #[test]
    fn a_module_the_catalogue_has_one_of_needs_no_instance_number() {
        let cases = [
            ("solo.gain: 5", "set solo#1.gain 5"),
            ("SOLO.Tilt: 7 over 2s", "set solo#1.tilt 7"),
            ("!cv solo.gain 9", "set solo#1.gain 9"),
            ("solo#1.gain: 5", "set solo#1.gain 5"),
            ("solo#2.gain: 5", "solo has 1 instance: #1"),
            ("solo.gian: 5", "unknown parameter gian on solo — did you mean gain?"),
            ("duo.gain: 5", "duo has 2 instances: write duo#1.gain (#1 to #2)"),
            ("duo#3.gain: 5", "duo has 2 instances: #1 to #2"),
            ("duo#2.gain: 5", "set duo#2.gain 5"),
        ];
        for (line, expected) in cases {
            assert_eq!(small(line), expected, "{line:?}");
        }
    }
}
