//! The names the catalogue hands out for module parameters: holding a [`Variable`] means it exists.

use std::fmt;
use std::sync::Arc;

/// A parameter of a module: a named CV input from the catalogue, or the generic `inputJack#k` (read in
/// any case, always shown as `inputJack#k`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Parameter {
    Named(Arc<str>),
    InputJack(u8),
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(n) => f.write_str(n),
            Self::InputJack(k) => write!(f, "inputJack#{k}"),
        }
    }
}

/// A validated variable such as `doorway#1.threshold`. Only the catalogue makes these, so holding one
/// means the module, instance and parameter exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variable {
    pub(super) module: Arc<str>,
    pub(super) instance: u16,
    pub(super) parameter: Parameter,
}

impl Variable {
    pub fn module(&self) -> &str {
        &self.module
    }
    pub fn instance(&self) -> u16 {
        self.instance
    }
    pub fn parameter(&self) -> &Parameter {
        &self.parameter
    }
    /// The jack number when this is an `inputJack#k` variable.
    pub fn input_jack(&self) -> Option<u8> {
        match self.parameter {
            Parameter::InputJack(k) => Some(k),
            Parameter::Named(_) => None,
        }
    }
    /// True when `other` is on the same module instance (used by the input-jack rule).
    pub fn same_module_instance(&self, other: &Variable) -> bool {
        self.instance == other.instance && self.module == other.module
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}.{}", self.module, self.instance, self.parameter)
    }
}
