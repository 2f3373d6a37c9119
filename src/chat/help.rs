//! The words of the bot's lessons (`!cv help`, `!cv list`, `!admin help`), the same in Twitch chat,
//! the terminal and the admin API's `reply`; and [`Repeats`], which keeps a viewer who asks the same
//! question again within [`REPEAT_WINDOW`] from being answered twice.
//!
//! Pure: time is passed in. Knows lessons and their words; not where they are said, the throttle
//! that says them, or the state they were read from.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::command::{Lesson, Question, Sheet, help};

/// The admin commands as `!admin help` lists them, each after `!admin`.
pub const ADMIN_COMMANDS: [&str; 14] = [
    "OUTPUT → VARIABLE [range LOW HIGH] [safe V] [slew V/s]",
    "remove OUTPUT",
    "slew OUTPUT V/s|off",
    "routes",
    "instances",
    "clear",
    "overlay on|off",
    "emergency stop [msg]",
    "resume",
    "mode democracy 10s",
    "mode anarchy",
    "scene save|recall|list|delete NAME",
    "lock|unlock TARGET|all",
    "help",
];

/// A lesson in words, for one chat message (the Twitch edge splits what is longer).
pub fn say(lesson: &Lesson) -> String {
    match lesson {
        Lesson::Syntax { example, value_max } => syntax(example.as_ref().map(ToString::to_string), *value_max),
        Lesson::Modules { routed, others } => {
            let example = routed.first().or(others.first()).map_or("doorway", |m| &**m);
            let mut text = String::from(if routed.is_empty() { "modules:" } else { "modules, routed first:" });
            for m in routed {
                let _ = write!(text, " {m}*");
            }
            for m in others {
                let _ = write!(text, " {m}");
            }
            let legend = if routed.is_empty() { "" } else { " — * routed;" };
            let _ = write!(text, "{legend} `!cv list {example}` names its parameters");
            text
        }
        Lesson::Module(sheet) => module(sheet),
        Lesson::AdminCommands => {
            format!("admin commands, each after !admin: {}", ADMIN_COMMANDS.join(" · "))
        }
    }
}

fn syntax(example: Option<String>, value_max: u8) -> String {
    let like = example.map(|e| format!(", like {e}: {}", help::example_value(value_max))).unwrap_or_default();
    format!("type module#N.parameter: 0-{value_max}{like} (add `over 2s` to glide); `!cv list` names the modules")
}

/// `doorway (8 instances): threshold* gain background foreground, inputJack#1 to #16 — * routed: doorway#1.threshold`
fn module(sheet: &Sheet) -> String {
    let count = if sheet.instances == 1 { "1 instance".to_owned() } else { format!("{} instances", sheet.instances) };
    let mut text = format!("{} ({count}):", sheet.module);
    for (parameter, routed) in &sheet.parameters {
        let _ = write!(text, " {parameter}{}", if *routed { "*" } else { "" });
    }
    let separator = if sheet.parameters.is_empty() { " " } else { ", " };
    let jacks = if sheet.jack_routed { "*" } else { "" };
    let _ = write!(text, "{separator}inputJack#1 to #{}{jacks}", sheet.max_input_jacks);
    if !sheet.routed.is_empty() {
        let routed: Vec<String> = sheet.routed.iter().map(ToString::to_string).collect();
        let _ = write!(text, " — * routed: {}", routed.join(" "));
    }
    text
}

/// How long a viewer's question stays answered: the same question from the same viewer within this
/// gets no second reply (the first is still in chat).
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);
/// Questions remembered at most. Past it, those whose window has passed are forgotten, then the oldest,
/// so a crowd of askers never grows the map.
pub const MAX_REMEMBERED: usize = 1024;

/// Who asked what, and when they were answered.
#[derive(Debug, Default)]
pub struct Repeats {
    answered: HashMap<(String, Question), Instant>,
}

impl Repeats {
    /// True when `login` may be answered `question` at `now`, and remembers that it was; false for
    /// the same question again within [`REPEAT_WINDOW`] of the answer.
    pub fn first_time(&mut self, login: &str, question: &Question, now: Instant) -> bool {
        let key = (login.to_owned(), question.clone());
        if self.answered.get(&key).is_some_and(|at| now.saturating_duration_since(*at) < REPEAT_WINDOW) {
            return false;
        }
        if self.answered.len() >= MAX_REMEMBERED && !self.answered.contains_key(&key) {
            self.prune(now);
        }
        self.answered.insert(key, now);
        true
    }

    /// Forgets the answers whose window has passed, and the oldest one if that freed nothing.
    fn prune(&mut self, now: Instant) {
        self.answered.retain(|_, at| now.saturating_duration_since(*at) < REPEAT_WINDOW);
        if self.answered.len() >= MAX_REMEMBERED
            && let Some(oldest) = self.answered.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
        {
            self.answered.remove(&oldest);
        }
    }

    /// How many answers are remembered now.
    pub fn len(&self) -> usize {
        self.answered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Variable};
    use crate::command::{Command, help::lesson, parse};

    fn check(line: &str, routes: &[&str], expected: &str) {
        let c = Catalog::builtin();
        let routed: Vec<Variable> = routes.iter().map(|r| c.parse_variable(r).expect("variable")).collect();
        let Ok(Command::Ask(question)) = parse(line, &c) else { panic!("{line:?} is a question") };
        assert_eq!(say(&lesson(&question, &c, &routed)), expected, "{line:?} with {routes:?}");
    }

    #[test]
    fn lessons_say_what_to_type() {
        let cases: [(&str, &[&str], &str); 5] = [
            (
                "!cv help",
                &["doorway#1.threshold"],
                "type module#N.parameter: 0-127, like doorway#1.threshold: 89 (add `over 2s` to glide); \
                 `!cv list` names the modules",
            ),
            (
                "!cv help",
                &[],
                "type module#N.parameter: 0-127, like bridge#1.crossfade: 89 (add `over 2s` to glide); \
                 `!cv list` names the modules",
            ),
            (
                "!cv list doorway",
                &["doorway#1.threshold", "navigator#1.x"],
                "doorway (8 instances): threshold* gain background foreground, inputJack#1 to #16 \
                 — * routed: doorway#1.threshold",
            ),
            (
                "!cv list doorway",
                &[],
                "doorway (8 instances): threshold gain background foreground, inputJack#1 to #16",
            ),
            (
                "!cv list arch",
                &["arch#2.inputJack#1"],
                "arch (8 instances): inputJack#1 to #16* — * routed: arch#2.inputJack#1",
            ),
        ];
        for (line, routes, expected) in cases {
            check(line, routes, expected);
        }
    }

    #[test]
    fn the_module_list_names_every_module_routed_first_inside_twitchs_limits() {
        let c = Catalog::builtin();
        let routed = [c.parse_variable("navigator#1.x").expect("v")];
        let text = say(&lesson(&Question::Modules, &c, &routed));
        assert!(text.starts_with("modules, routed first: navigator* angles arch bridge"), "{text}");
        assert!(text.ends_with(" — * routed; `!cv list navigator` names its parameters"), "{text}");
        for m in c.module_list() {
            assert!(text.contains(&format!(" {}", m.name)), "{} in {text}", m.name);
        }
        assert!(text.chars().count() <= 900, "two chat messages at most: {} characters", text.chars().count());
    }

    #[test]
    fn admin_help_names_every_admin_command_in_one_message() {
        let text = say(&Lesson::AdminCommands);
        assert!(text.chars().count() <= 500, "{} characters", text.chars().count());
        // Every admin command this build has reads as the help says it is written.
        let c = Catalog::builtin();
        for (line, entry) in [
            ("!admin es9out#1 → doorway#1.gain range 0.2 0.8 safe 0.5 slew 2", "OUTPUT → VARIABLE"),
            ("!admin remove es9out#1", "remove OUTPUT"),
            ("!admin slew es9out#1 off", "slew OUTPUT V/s|off"),
            ("!admin routes", "routes"),
            ("!admin instances", "instances"),
            ("!admin clear", "clear"),
            ("!admin overlay off", "overlay on|off"),
            ("!admin emergency stop strobe", "emergency stop [msg]"),
            ("!admin resume", "resume"),
            ("!admin mode democracy 10s", "mode democracy 10s"),
            ("!admin mode anarchy", "mode anarchy"),
            ("!admin scene save intro", "scene save|recall|list|delete NAME"),
            ("!admin scene recall intro", "scene save|recall|list|delete NAME"),
            ("!admin scene delete intro", "scene save|recall|list|delete NAME"),
            ("!admin scene list", "scene save|recall|list|delete NAME"),
            ("!admin lock doorway#1.threshold", "lock|unlock TARGET|all"),
            ("!admin unlock all", "lock|unlock TARGET|all"),
        ] {
            assert!(matches!(parse(line, &c), Ok(Command::Admin(_))), "{line}");
            assert!(text.contains(entry), "{entry} in {text}");
        }
    }

    #[test]
    fn the_same_question_from_the_same_viewer_is_answered_once_per_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let doorway = Question::Module("doorway".into());
        let mut r = Repeats::default();
        let cases: [(&str, &Question, u64, bool); 8] = [
            ("ann", &Question::Help, 0, true),
            ("ann", &Question::Help, 1_000, false),
            ("bob", &Question::Help, 1_000, true),
            ("ann", &Question::Modules, 2_000, true),
            ("ann", &doorway, 2_000, true),
            ("ann", &Question::Help, 29_999, false),
            ("ann", &Question::Help, 30_000, true),
            ("ann", &Question::Help, 59_999, false),
        ];
        for (login, question, ms, expected) in cases {
            assert_eq!(r.first_time(login, question, at(ms)), expected, "{login} {question} at {ms} ms");
        }
    }

    #[test]
    fn the_memory_of_askers_is_bounded_and_pruned() {
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_millis(u64::try_from(i).expect("small"));
        let mut r = Repeats::default();
        let askers = MAX_REMEMBERED * 3;
        for i in 0..askers {
            assert!(r.first_time(&format!("viewer{i}"), &Question::Help, at(i)));
            assert!(r.len() <= MAX_REMEMBERED);
        }
        // The oldest went first, so the newest are still remembered.
        assert!(!r.first_time(&format!("viewer{}", askers - 1), &Question::Help, at(askers)));
        assert!(r.first_time("viewer0", &Question::Help, at(askers)));
        // A window later, one new asker forgets every expired answer.
        assert!(r.first_time("late", &Question::Help, at(askers) + REPEAT_WINDOW));
        assert_eq!(r.len(), 1);
    }
}
