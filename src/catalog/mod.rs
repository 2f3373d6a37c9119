//! The catalogue: which modules, parameters, instances and hardware outputs exist.
//!
//! Pure data and validation: answers "is this a real variable / output?" for the parser and the
//! routing loader. Knows nothing of chat, Redis, OSC or HTTP. The catalogue's text is checked by
//! `parse` (pure); only `load` touches the filesystem, reading a `CATALOG_PATH` file once at start-up
//! (without one, the compiled-in `data/catalog.json`). `variable` and `output` hold the validated
//! names the catalogue hands out and the voltage arithmetic of an output's range.

mod load;
mod output;
mod parse;
mod suggest;
mod variable;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use output::{Output, VoltRange};
pub use variable::{Parameter, Variable};

/// The catalogue shipped with the project, used when `CATALOG_PATH` is not set.
pub const DEFAULT_CATALOG_PATH: &str = "data/catalog.json";

/// The shipped catalogue's text, compiled in so an installed binary works outside the repository.
pub const EMBEDDED_CATALOG: &str = include_str!("../../data/catalog.json");

/// Where a catalogue came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    Embedded,
    File(PathBuf),
}

impl fmt::Display for CatalogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("the built-in catalogue (data/catalog.json)"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a catalogue could not be used. Every variant names the file; parse errors also the line.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalogue {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{source_name} line {line}, column {column}: {message}")]
    Syntax { source_name: String, line: usize, column: usize, message: String },
    #[error("{source_name} line {line}: {message}")]
    Invalid { source_name: String, line: usize, message: String },
}

#[derive(Debug)]
struct ModuleEntry {
    name: Arc<str>,
    series: String,
    instances: u16,
    parameters: Vec<Arc<str>>,
}

impl ModuleEntry {
    fn info(&self) -> ModuleInfo<'_> {
        ModuleInfo { name: &self.name, instances: self.instances, parameters: &self.parameters }
    }
}

/// A module as the catalogue lists it: its name, how many of it there are (`#1` to `#instances`)
/// and its named parameters in the catalogue's order (`inputJack#k` is on every module besides).
#[derive(Debug, Clone, Copy)]
pub struct ModuleInfo<'a> {
    pub name: &'a Arc<str>,
    pub instances: u16,
    pub parameters: &'a [Arc<str>],
}

#[derive(Debug)]
struct OutputEntry {
    name: Output,
    group: Arc<str>,
    range: VoltRange,
    /// The hard limit: no route range, safe value or datagram may leave it.
    limit: VoltRange,
}

/// Why a route's range or safe voltage cannot be used on an output.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("the range {low} V to {high} V is not two different voltages")]
    BadRange { low: f32, high: f32 },
    #[error("the range {low} V to {high} V leaves {output_limit}")]
    RangeOutOfLimit { low: f32, high: f32, output_limit: LimitText },
    #[error("the safe voltage {safe} V is not inside the route's range {low} V to {high} V")]
    SafeOutOfRange { safe: f32, low: f32, high: f32 },
}

/// An output's limit as error messages show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitText(pub VoltRange);

impl fmt::Display for LimitText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = self.0.bounds();
        write!(f, "the output's limit of {lo} V to {hi} V")
    }
}

/// The loaded, validated catalogue.
#[derive(Debug)]
pub struct Catalog {
    value_max: u8,
    max_input_jacks: u8,
    /// Keyed by lower-case module name: module names are case-insensitive in chat.
    modules: HashMap<String, ModuleEntry>,
    /// Keyed by lower-case output name: output names are case-insensitive in chat.
    outputs: HashMap<String, OutputEntry>,
    source: CatalogSource,
}

impl Catalog {
    /// The built-in catalogue. It is checked by the test suite, so failing here is a build defect.
    pub fn builtin() -> Catalog {
        Self::parse(EMBEDDED_CATALOG, CatalogSource::Embedded).expect("the built-in catalogue is valid")
    }

    pub fn source(&self) -> &CatalogSource {
        &self.source
    }

    /// The largest chat value (127 for the MIDI-like range users know).
    pub fn value_max(&self) -> u8 {
        self.value_max
    }

    pub fn max_input_jacks(&self) -> u8 {
        self.max_input_jacks
    }

    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    /// Looks up `module#instance.parameter` parts, each in any case (mobile keyboards capitalise,
    /// `opacitya` is `opacityA`), resolving to the catalogue's spelling. A parameter spelled exactly
    /// wins; otherwise the one parameter that matches ignoring case, and none when two of a module's
    /// parameters differ only in case. `inputJack#k` exists on every module (`inputjack#1` is the
    /// only spelling older bots' routing files accept).
    pub fn variable(&self, module: &str, instance: u16, parameter: &str) -> Option<Variable> {
        let entry = self.module_entry(module)?;
        if instance == 0 || instance > entry.instances {
            return None;
        }
        let parameter = if let Some(k) = strip_input_jack(parameter) {
            let k: u8 = parse_small_number(k)?;
            if k == 0 || k > self.max_input_jacks {
                return None;
            }
            Parameter::InputJack(k)
        } else {
            Parameter::Named(Self::named_parameter(&entry.parameters, parameter)?.clone())
        };
        Some(Variable { module: entry.name.clone(), instance, parameter })
    }

    /// `parameter` among `parameters`: spelled exactly, or else the only one equal ignoring case.
    fn named_parameter<'a>(parameters: &'a [Arc<str>], parameter: &str) -> Option<&'a Arc<str>> {
        if let Some(exact) = parameters.iter().find(|p| p.as_ref() == parameter) {
            return Some(exact);
        }
        let mut matches = parameters.iter().filter(|p| p.eq_ignore_ascii_case(parameter));
        let only = matches.next()?;
        matches.next().is_none().then_some(only)
    }

    /// Parses a whole variable name such as `doorway#1.threshold`.
    pub fn parse_variable(&self, text: &str) -> Option<Variable> {
        let (module, rest) = text.split_once('#')?;
        let (instance, parameter) = rest.split_once('.')?;
        self.variable(module, parse_small_number(instance)?, parameter)
    }

    /// A module instance such as `doorway#1`, in any case: the catalogue's module name and the
    /// instance, when the module exists and has that many instances.
    pub fn module_instance(&self, text: &str) -> Option<(Arc<str>, u16)> {
        let (module, instance) = text.split_once('#')?;
        let entry = self.module_entry(module)?;
        let instance: u16 = parse_small_number(instance)?;
        (1..=entry.instances).contains(&instance).then(|| (entry.name.clone(), instance))
    }

    /// Looks up an output name case-insensitively.
    pub fn output(&self, name: &str) -> Option<Output> {
        self.output_entry(name).map(|e| e.name.clone())
    }

    /// The default voltage range of an output (from its group).
    pub fn output_range(&self, output: &Output) -> VoltRange {
        self.outputs.get(output.as_str()).map_or(VoltRange::LZX, |e| e.range)
    }

    /// The hard voltage limit of an output: nothing sent to it, from any source, may leave it. An
    /// output the catalogue does not know (impossible for a parsed `Output`) gets the narrowest, LZX.
    pub fn output_limit(&self, output: &Output) -> VoltRange {
        self.outputs.get(output.as_str()).map_or(VoltRange::LZX, |e| e.limit)
    }

    /// Checks a route's range and safe voltage against the output's limit: the one rule every source
    /// (chat, HTTP, Redis, the routing file, the state hash) is held to.
    pub fn check_route(&self, output: &Output, range: VoltRange, safe: f32) -> Result<(), RouteError> {
        let VoltRange { low, high } = range;
        // An infinite end is simply outside every limit (below); NaN and an empty span are no range.
        if low.is_nan() || high.is_nan() || low == high {
            return Err(RouteError::BadRange { low, high });
        }
        let limit = self.output_limit(output);
        if !(limit.contains(low) && limit.contains(high)) {
            return Err(RouteError::RangeOutOfLimit { low, high, output_limit: LimitText(limit) });
        }
        if !(safe.is_finite() && range.contains(safe)) {
            return Err(RouteError::SafeOutOfRange { safe, low, high });
        }
        Ok(())
    }

    /// The output group name (`es9`, `esx8cv`, `es5gate`).
    pub fn output_group(&self, output: &Output) -> Option<&str> {
        self.outputs.get(output.as_str()).map(|e| e.group.as_ref())
    }

    /// Every output, sorted, for menus and the admin page.
    pub fn outputs(&self) -> Vec<Output> {
        let mut v: Vec<Output> = self.outputs.values().map(|e| e.name.clone()).collect();
        v.sort();
        v
    }

    /// A module by name in any case, as chat's lessons show it.
    pub fn module(&self, name: &str) -> Option<ModuleInfo<'_>> {
        self.module_entry(name).map(ModuleEntry::info)
    }

    /// Every module, sorted by name.
    pub fn module_list(&self) -> Vec<ModuleInfo<'_>> {
        let mut list: Vec<ModuleInfo<'_>> = self.modules.values().map(ModuleEntry::info).collect();
        list.sort_by(|a, b| a.name.cmp(b.name));
        list
    }

    /// Module names with their series and parameters, sorted by name.
    pub fn modules(&self) -> BTreeMap<&str, (&str, u16, Vec<&str>)> {
        self.modules
            .values()
            .map(|m| {
                (m.name.as_ref(), (m.series.as_str(), m.instances, m.parameters.iter().map(AsRef::as_ref).collect()))
            })
            .collect()
    }

    fn module_entry(&self, module: &str) -> Option<&ModuleEntry> {
        if module.bytes().any(|b| b.is_ascii_uppercase()) {
            self.modules.get(&module.to_ascii_lowercase())
        } else {
            self.modules.get(module)
        }
    }

    fn output_entry(&self, name: &str) -> Option<&OutputEntry> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.outputs.get(&name.to_ascii_lowercase())
        } else {
            self.outputs.get(name)
        }
    }
}

/// The jack number's text after an `inputJack#` prefix written in any case; `None` for any other name.
/// The one place that spelling is recognised, so a catalogue can never name a parameter that clashes
/// with it.
fn strip_input_jack(parameter: &str) -> Option<&str> {
    const PREFIX: &str = "inputJack#";
    let head = parameter.get(..PREFIX.len())?;
    head.eq_ignore_ascii_case(PREFIX).then(|| &parameter[PREFIX.len()..])
}

/// Parses a short run of ASCII digits (no sign, no spaces, at most 5 digits) into a number.
pub(crate) fn parse_small_number<T: TryFrom<u32>>(text: &str) -> Option<T> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().and_then(|n| T::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_has_every_shared_module_and_output() {
        let c = Catalog::builtin();
        assert_eq!(c.module_count(), 39);
        assert_eq!(c.output_count(), 64);
        assert!(c.parse_variable("doorway#1.threshold").is_some());
        assert!(c.parse_variable("passage#2.thru#3").is_some());
        assert!(c.parse_variable("marbleindex#1.opacityA").is_some());
        assert!(c.output("esx8cv#6.out#8").is_some());
        assert!(c.output("ES9OUT#1").is_some());
    }

    #[test]
    fn commands_md_lists_every_builtin_module_and_parameter() {
        let doc = include_str!("../../commands.md");
        for (module, (_, _, parameters)) in Catalog::builtin().modules() {
            assert!(doc.contains(module), "commands.md lacks module {module}");
            for p in parameters {
                assert!(doc.contains(p), "commands.md lacks {module}.{p}");
            }
        }
    }

    #[test]
    fn names_are_read_in_any_case_and_shown_in_the_catalogue_spelling() {
        let c = Catalog::builtin();
        let read = |text: &str| c.parse_variable(text).map(|v| v.to_string());
        assert_eq!(read("DoorWay#1.threshold").as_deref(), Some("doorway#1.threshold"));
        assert_eq!(read("marbleindex#1.opacitya").as_deref(), Some("marbleindex#1.opacityA"));
        assert_eq!(read("doorway#1.THRESHOLD").as_deref(), Some("doorway#1.threshold"));
        assert_eq!(read("diver#1.HPHASE").as_deref(), Some("diver#1.hPhase"));
        assert!(read("doorway#1.threshhold").is_none(), "any case, not any spelling");
        // Two parameters that differ only in case: each is found spelled exactly, neither otherwise.
        let text = r#"{"format": 1, "modules": [{"name": "m", "parameters": ["gainA", "gaina"]}], "outputs": []}"#;
        let twins = Catalog::parse(text, CatalogSource::Embedded).expect("valid");
        let read = |text: &str| twins.parse_variable(text).map(|v| v.to_string());
        assert_eq!(read("m#1.gainA").as_deref(), Some("m#1.gainA"));
        assert_eq!(read("m#1.gaina").as_deref(), Some("m#1.gaina"));
        assert_eq!(read("m#1.GAINA"), None, "ambiguous: no guess");
    }

    #[test]
    fn instance_and_jack_bounds_come_from_the_catalogue() {
        let c = Catalog::builtin();
        assert!(c.parse_variable("doorway#0.threshold").is_none());
        assert!(c.parse_variable("doorway#8.threshold").is_some());
        assert!(c.parse_variable("doorway#9.threshold").is_none());
        assert!(c.parse_variable("arch#1.inputJack#16").is_some());
        assert!(c.parse_variable("arch#1.inputJack#17").is_none());
        assert!(c.parse_variable("arch#1.inputJack#0").is_none());
        assert!(c.parse_variable("arch#1.gain").is_none(), "modules without CV only take inputJack");
    }

    #[test]
    fn input_jacks_are_read_in_any_case_and_shown_in_the_catalogue_spelling() {
        let c = Catalog::builtin();
        let canonical = c.parse_variable("angles#1.inputJack#1").expect("canonical");
        for spelling in ["angles#1.inputjack#1", "angles#1.INPUTJACK#1", "Angles#1.InputJack#1", "angles#1.iNpUtJaCk#1"]
        {
            let v = c.parse_variable(spelling).unwrap_or_else(|| panic!("{spelling} resolves"));
            assert_eq!(v, canonical, "{spelling}");
            assert_eq!(v.to_string(), "angles#1.inputJack#1");
            assert_eq!(v.input_jack(), Some(1));
        }
        assert_eq!(c.variable("doorway", 2, "INPUTJACK#16").and_then(|v| v.input_jack()), Some(16));
        // Only the jack prefix is case-free: the bounds still hold, and named parameters keep their case.
        for refused in [
            "angles#1.inputjack#17",
            "angles#1.inputjack#0",
            "angles#1.inputjack#",
            "angles#1.inputjack1",
            "angles#1.inputjak#1",
            "angles#1.inputjack#x",
            "angles#1.inputjack#+1",
            "doorway#1.Threshhold",
            "angles#1.inputjacké#1",
            "angles#1.input",
        ] {
            assert!(c.parse_variable(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn routes_must_stay_inside_the_output_limit() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        assert_eq!(c.output_limit(&out), VoltRange::LZX);
        let check = |low: f32, high: f32, safe: f32| c.check_route(&out, VoltRange { low, high }, safe);
        assert!(check(0.0, 1.0, 0.0).is_ok());
        assert!(check(1.0, 0.0, 1.0).is_ok(), "a falling range is fine");
        assert!(check(0.2, 0.8, 0.5).is_ok());
        assert!(matches!(check(-1000.0, 1000.0, 0.0), Err(RouteError::RangeOutOfLimit { .. })));
        assert!(matches!(check(0.0, 3e38, 0.0), Err(RouteError::RangeOutOfLimit { .. })));
        assert!(matches!(check(0.0, 1.0, 1000.0), Err(RouteError::SafeOutOfRange { .. })));
        assert!(matches!(check(0.0, 1.0, f32::NAN), Err(RouteError::SafeOutOfRange { .. })));
        assert!(matches!(check(0.5, 0.5, 0.5), Err(RouteError::BadRange { .. })));
        assert!(matches!(check(f32::NAN, 1.0, 0.5), Err(RouteError::BadRange { .. })));
        let text = check(-1000.0, 1000.0, 0.0).expect_err("out").to_string();
        assert_eq!(text, "the range -1000 V to 1000 V leaves the output's limit of 0 V to 1 V");
    }
}
