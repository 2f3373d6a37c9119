//! The questions chat may ask (`!cv help`, `!cv list`, `!cv list doorway`, `!admin help`) and the
//! lessons that answer them: what to type, which modules there are, which parameters a module has
//! and which of those are routed (typing them moves something).
//!
//! Pure: the routed variables are handed in. Knows the catalogue; not the sender, the state, or the
//! words a reply is said in (the chat edge's) or the page it is shown on (HTTP's).

use std::fmt;
use std::sync::Arc;

use super::names::{Rejection, Unknown};
use super::split_token;
use crate::catalog::{Catalog, ModuleInfo, Parameter, Variable};

/// What a viewer or an admin asked the bot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Question {
    /// `!cv help`: the syntax, with an example.
    Help,
    /// `!cv list`: the module names.
    Modules,
    /// `!cv list doorway`: one module's parameters (the catalogue's spelling).
    Module(Arc<str>),
    /// `!admin help`: the admin commands (admins only).
    AdminHelp,
}

impl fmt::Display for Question {
    /// The question as it is typed, which reads back as the same question.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => f.write_str("!cv help"),
            Self::Modules => f.write_str("!cv list"),
            Self::Module(module) => write!(f, "!cv list {module}"),
            Self::AdminHelp => f.write_str("!admin help"),
        }
    }
}

/// The words after `!cv` when they are a question; `None` when they are a parameter to set.
/// Chatter after the question is ignored, as after a command.
pub(super) fn viewer_question(rest: &str, catalog: &Catalog) -> Option<Result<Question, Rejection>> {
    let (word, after) = split_token(rest.trim_start());
    if word.eq_ignore_ascii_case("help") {
        return Some(Ok(Question::Help));
    }
    if !word.eq_ignore_ascii_case("list") {
        return None;
    }
    let (module, _chatter) = split_token(after.trim_start());
    if module.is_empty() {
        return Some(Ok(Question::Modules));
    }
    // `!cv list doorway#1` and `!cv list doorway.gain` ask about the module too.
    let module = &module[..module.find(['#', '.']).unwrap_or(module.len())];
    Some(match catalog.module(module) {
        Some(m) => Ok(Question::Module(m.name.clone())),
        None => Err(Rejection::Unknown(Unknown::module(module, catalog))),
    })
}

/// True when the words after `!admin` ask for the admin commands.
pub(super) fn is_admin_help(rest: &str) -> bool {
    split_token(rest.trim_start()).0.eq_ignore_ascii_case("help")
}

/// The answer to a question, before it is put into words.
#[derive(Debug, Clone, PartialEq)]
pub enum Lesson {
    /// How to set a parameter, with a name to copy (see [`example`]; `None` with no module at all).
    Syntax { example: Option<Variable>, value_max: u8 },
    /// The module names, sorted, the routed ones first.
    Modules { routed: Vec<Arc<str>>, others: Vec<Arc<str>> },
    /// One module's parameters.
    Module(Sheet),
    /// The admin commands.
    AdminCommands,
}

/// One module as the lessons show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    pub module: Arc<str>,
    pub instances: u16,
    /// Named parameters in catalogue order, each with whether it is routed on some instance.
    pub parameters: Vec<(Arc<str>, bool)>,
    pub max_input_jacks: u8,
    /// Whether some `inputJack#k` of the module is routed.
    pub jack_routed: bool,
    /// Every routed variable on the module, sorted.
    pub routed: Vec<Variable>,
}

/// Answers `question` from the catalogue and the variables routed now.
pub fn lesson(question: &Question, catalog: &Catalog, routed: &[Variable]) -> Lesson {
    match question {
        Question::Help => Lesson::Syntax { example: example(catalog, routed), value_max: catalog.value_max() },
        Question::Module(name) => match catalog.module(name) {
            Some(module) => Lesson::Module(sheet(module, catalog, routed)),
            None => modules(catalog, routed),
        },
        Question::Modules => modules(catalog, routed),
        Question::AdminHelp => Lesson::AdminCommands,
    }
}

fn modules(catalog: &Catalog, routed: &[Variable]) -> Lesson {
    let (routed, others) = catalog
        .module_list()
        .into_iter()
        .map(|m| m.name.clone())
        .partition(|m| routed.iter().any(|v| v.module() == &**m));
    Lesson::Modules { routed, others }
}

/// `module`'s sheet with `routed` marked.
pub fn sheet(module: ModuleInfo<'_>, catalog: &Catalog, routed: &[Variable]) -> Sheet {
    let mut on_module: Vec<Variable> = routed.iter().filter(|v| v.module() == &**module.name).cloned().collect();
    on_module.sort();
    on_module.dedup();
    let is_routed = |p: &str| on_module.iter().any(|v| matches!(v.parameter(), Parameter::Named(n) if &**n == p));
    Sheet {
        module: module.name.clone(),
        instances: module.instances,
        parameters: module.parameters.iter().map(|p| (p.clone(), is_routed(p))).collect(),
        max_input_jacks: catalog.max_input_jacks(),
        jack_routed: on_module.iter().any(|v| v.input_jack().is_some()),
        routed: on_module,
    }
}

/// Every module's sheet, sorted by name.
pub fn sheets(catalog: &Catalog, routed: &[Variable]) -> Vec<Sheet> {
    catalog.module_list().into_iter().map(|m| sheet(m, catalog, routed)).collect()
}

/// The name a lesson tells viewers to type: the first routed variable (by output), because typing
/// it moves something; else `#1` of the first named parameter of the first module (by name) that
/// has one; else `inputJack#1` of the first module. The overlay's hint line picks the same way.
pub fn example(catalog: &Catalog, routed: &[Variable]) -> Option<Variable> {
    if let Some(first) = routed.first() {
        return Some(first.clone());
    }
    let modules = catalog.module_list();
    let named = modules.iter().find_map(|m| Some((m.name, m.parameters.first()?.as_ref())));
    let (module, parameter) = named.or_else(|| modules.first().map(|m| (m.name, "inputJack#1")))?;
    catalog.variable(module, 1, parameter)
}

/// The value a lesson's example sets: seven tenths of the way up, rounded (89 of 127).
pub fn example_value(value_max: u8) -> u8 {
    u8::try_from((u16::from(value_max) * 7 + 5) / 10).unwrap_or(value_max)
}

#[cfg(test)]
mod tests {
    use super::super::tests::check;
    use super::*;
    use crate::catalog::CatalogSource;

    #[test]
    fn questions_in_the_forms_chat_types_them() {
        let cases = [
            ("!cv help", "ask !cv help"),
            ("!CV HELP please", "ask !cv help"),
            ("!cv list", "ask !cv list"),
            ("!cv list doorway", "ask !cv list doorway"),
            ("!cv list DoorWay#2", "ask !cv list doorway"),
            ("!cv list doorway.threshold", "ask !cv list doorway"),
            ("!cv list doorwy", "unknown module doorwy — did you mean doorway?"),
            ("!cv list lolwhat", "unknown module: `!cv list` names them"),
            ("!admin help", "ask !admin help"),
            ("!ADMIN Help me", "ask !admin help"),
            ("help", "error not_a_command"),
            ("!cv helpme", "error malformed"),
        ];
        for (line, expected) in cases {
            check(line, expected);
        }
    }

    fn routed(names: &[&str]) -> Vec<Variable> {
        let c = Catalog::builtin();
        names.iter().map(|n| c.parse_variable(n).expect("test variable")).collect()
    }

    #[test]
    fn a_module_sheet_marks_routed_parameters_and_jacks() {
        let c = Catalog::builtin();
        let doorway = c.module("doorway").expect("module");
        let vars = routed(&["doorway#2.threshold", "doorway#1.threshold", "navigator#1.x", "doorway#1.inputJack#3"]);
        let sheet = sheet(doorway, &c, &vars);
        let marked: Vec<(&str, bool)> = sheet.parameters.iter().map(|(p, r)| (&**p, *r)).collect();
        assert_eq!(marked, [("threshold", true), ("gain", false), ("background", false), ("foreground", false)]);
        assert!(sheet.jack_routed);
        let names: Vec<String> = sheet.routed.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["doorway#1.threshold", "doorway#1.inputJack#3", "doorway#2.threshold"]);
        assert_eq!((sheet.instances, sheet.max_input_jacks), (8, 16));
    }

    #[test]
    fn the_module_list_puts_routed_modules_first() {
        let c = Catalog::builtin();
        let Lesson::Modules { routed: first, others } = lesson(&Question::Modules, &c, &routed(&["navigator#1.x"]))
        else {
            panic!("a module list");
        };
        assert_eq!(first.iter().map(|m| &**m).collect::<Vec<_>>(), ["navigator"]);
        assert_eq!(others.len(), c.module_count() - 1);
        assert!(others.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn the_example_is_a_routed_variable_else_the_first_named_parameter() {
        let c = Catalog::builtin();
        let cases: [(&[&str], &str); 2] =
            [(&["navigator#2.rotation", "doorway#1.gain"], "navigator#2.rotation"), (&[], "bridge#1.crossfade")];
        for (names, expected) in cases {
            assert_eq!(example(&c, &routed(names)).map(|v| v.to_string()).as_deref(), Some(expected), "{names:?}");
        }
        let jacks = r#"{"format": 1, "modules": [{"name": "zed"}, {"name": "arch"}], "outputs": []}"#;
        let jacks = Catalog::parse(jacks, CatalogSource::Embedded).expect("valid");
        assert_eq!(example(&jacks, &[]).map(|v| v.to_string()).as_deref(), Some("arch#1.inputJack#1"));
        let empty = Catalog::parse(r#"{"format": 1, "modules": [], "outputs": []}"#, CatalogSource::Embedded);
        assert_eq!(example(&empty.expect("valid"), &[]), None);
        assert_eq!([127, 100, 5, 1].map(example_value), [89, 70, 4, 1]);
    }
}
