//! Show control's plain values: the mode (anarchy or democracy), what a lock holds, scene names
//! and scenes, with the bounds every source (chat, HTTP, the wire, the scenes file) is held to.
//!
//! A leaf above the catalogue: pure values, no state, clock or I/O; `command` parses into them and
//! `state` keeps them in registers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::catalog::{Catalog, Variable};

/// The shortest and longest democracy window chat may ask for.
pub const MIN_WINDOW_MS: u32 = 2_000;
pub const MAX_WINDOW_MS: u32 = 120_000;
/// At most this many scenes, and values in one scene (a scene travels as one envelope).
pub const MAX_SCENES: usize = 64;
pub const MAX_SCENE_VALUES: usize = 256;
/// At most this many lock registers (one per target ever locked); `lock all` covers the rest.
pub const MAX_LOCKS: usize = 512;

/// How viewers' commands are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Each command at once (the default).
    #[default]
    Anarchy,
    /// Each command is a vote; the median of each window is applied.
    Democracy { window_ms: u32 },
}

impl Mode {
    /// A democracy window's length, checked against the bounds every source is held to.
    pub fn democracy(window_ms: u64) -> Option<Mode> {
        let window_ms = u32::try_from(window_ms).ok()?;
        (MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&window_ms).then_some(Mode::Democracy { window_ms })
    }

    pub fn window_ms(self) -> Option<u32> {
        match self {
            Mode::Anarchy => None,
            Mode::Democracy { window_ms } => Some(window_ms),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Anarchy => f.write_str("anarchy"),
            Mode::Democracy { window_ms } => {
                write!(f, "democracy {}", crate::motion::duration_text(*window_ms))
            }
        }
    }
}

/// What a lock holds still: one parameter, every parameter of one module instance, or everything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockTarget {
    All,
    Module { module: Arc<str>, instance: u16 },
    Param(Variable),
}

impl LockTarget {
    /// `all`, a module instance (`doorway#1`) or a variable (`doorway#1.threshold`), in any case.
    pub fn parse(text: &str, catalog: &Catalog) -> Option<LockTarget> {
        if text.eq_ignore_ascii_case("all") {
            return Some(LockTarget::All);
        }
        if text.contains('.') {
            return catalog.parse_variable(text).map(LockTarget::Param);
        }
        catalog.module_instance(text).map(|(module, instance)| LockTarget::Module { module, instance })
    }

    /// True when the lock holds `variable`.
    pub fn covers(&self, variable: &Variable) -> bool {
        match self {
            LockTarget::All => true,
            LockTarget::Module { module, instance } => {
                variable.module() == module.as_ref() && variable.instance() == *instance
            }
            LockTarget::Param(v) => v == variable,
        }
    }
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTarget::All => f.write_str("all"),
            LockTarget::Module { module, instance } => write!(f, "{module}#{instance}"),
            LockTarget::Param(v) => write!(f, "{v}"),
        }
    }
}

/// A scene's name: 1 to 32 letters, digits, `-` or `_`, kept in lower case (chat is case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SceneName(Arc<str>);

impl SceneName {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(text: &str) -> Option<SceneName> {
        let ok = !text.is_empty()
            && text.len() <= Self::MAX_CHARS
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| SceneName(text.to_ascii_lowercase().into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SceneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A saved look: the target of every parameter that was set when it was saved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scene {
    pub values: BTreeMap<Variable, u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_names_are_short_plain_and_lower_case() {
        assert_eq!(SceneName::parse("Intro-2").map(|n| n.to_string()), Some("intro-2".into()));
        for bad in ["", "a b", "x".repeat(33).as_str(), "naïve", "a:b"] {
            assert_eq!(SceneName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn windows_outside_the_bounds_are_no_democracy() {
        assert_eq!(Mode::democracy(1_999), None);
        assert_eq!(Mode::democracy(120_001), None);
        assert_eq!(Mode::democracy(10_000), Some(Mode::Democracy { window_ms: 10_000 }));
        assert_eq!(Mode::Democracy { window_ms: 10_000 }.to_string(), "democracy 10s");
    }

    #[test]
    fn lock_targets_read_in_any_case() {
        let c = Catalog::builtin();
        let read = |t: &str| LockTarget::parse(t, &c).map(|t| t.to_string());
        assert_eq!(read("ALL").as_deref(), Some("all"));
        assert_eq!(read("Doorway#2").as_deref(), Some("doorway#2"));
        assert_eq!(read("doorway#1.THRESHOLD").as_deref(), Some("doorway#1.threshold"));
        for bad in ["doorway", "doorway#9", "doorway#0", "nope#1", "doorway#1.nope", ""] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }
}
