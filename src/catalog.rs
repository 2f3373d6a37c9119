//! The catalogue: which modules, parameters, instances and hardware outputs exist.
//!
//! Pure data and validation: loads a JSON file once at start-up and answers "is this a real variable /
//! output?" for the parser and the routing loader. Knows nothing of chat, Redis, OSC or HTTP.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

/// The catalogue shipped with the project, used when `CATALOG_PATH` is not set.
pub const DEFAULT_CATALOG_PATH: &str = "data/catalog.json";

/// The shipped catalogue's text, compiled in so an installed binary works outside the repository.
pub const EMBEDDED_CATALOG: &str = include_str!("../data/catalog.json");

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
    module: Arc<str>,
    instance: u16,
    parameter: Parameter,
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

/// A hardware output such as `es9out#1` or `esx8cv#2.out#5`, in its catalogue spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Output(Arc<str>);

impl Output {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The voltage span of an output: value 0 maps to `low`, value 127 to `high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoltRange {
    pub low: f32,
    pub high: f32,
}

impl VoltRange {
    /// LZX modules expect 0–1 V control voltages.
    pub const LZX: VoltRange = VoltRange { low: 0.0, high: 1.0 };

    /// The lower and upper end, whichever way round the range runs (a range may fall: 1 V → 0 V).
    pub fn bounds(self) -> (f32, f32) {
        (self.low.min(self.high), self.low.max(self.high))
    }

    /// True when `volts` lies within the range (ends included).
    pub fn contains(self, volts: f32) -> bool {
        let (lo, hi) = self.bounds();
        volts >= lo && volts <= hi
    }

    /// `volts` brought inside the range; a non-finite voltage (NaN) becomes the lower end.
    pub fn clamp(self, volts: f32) -> f32 {
        let (lo, hi) = self.bounds();
        if volts.is_nan() { lo } else { volts.clamp(lo, hi) }
    }

    /// The voltage for a chat value; values above the maximum are clamped rather than overshooting.
    pub fn voltage(self, value: u8, value_max: u8) -> f32 {
        let t = f32::from(value.min(value_max)) / f32::from(value_max.max(1));
        self.low + t * (self.high - self.low)
    }
}

#[derive(Debug)]
struct ModuleEntry {
    name: Arc<str>,
    series: String,
    instances: u16,
    parameters: Vec<Arc<str>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    format: u32,
    #[serde(default = "default_value_max")]
    value_max: u8,
    #[serde(default = "default_max_jacks")]
    max_input_jacks: u8,
    #[serde(default = "default_instances")]
    default_instances: u16,
    modules: Vec<RawModule>,
    outputs: Vec<RawOutputGroup>,
}

fn default_value_max() -> u8 {
    127
}
fn default_max_jacks() -> u8 {
    16
}
fn default_instances() -> u16 {
    8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: String,
    #[serde(default)]
    series: String,
    #[serde(default)]
    instances: Option<u16>,
    #[serde(default)]
    parameters: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputGroup {
    group: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_range")]
    range: [f32; 2],
    /// The hard limit of the group's outputs; the range when absent.
    #[serde(default)]
    limit: Option<[f32; 2]>,
    names: Vec<String>,
}

fn default_range() -> [f32; 2] {
    [VoltRange::LZX.low, VoltRange::LZX.high]
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '#' || c == '_'
}

impl Catalog {
    /// Loads the catalogue from `path`, or the built-in one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Catalog, CatalogError> {
        match path {
            None => Self::parse(EMBEDDED_CATALOG, CatalogSource::Embedded),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| CatalogError::Read { path: p.to_path_buf(), source })?;
                Self::parse(&text, CatalogSource::File(p.to_path_buf()))
            }
        }
    }

    /// The built-in catalogue. It is checked by the test suite, so failing here is a build defect.
    pub fn builtin() -> Catalog {
        Self::parse(EMBEDDED_CATALOG, CatalogSource::Embedded).expect("the built-in catalogue is valid")
    }

    /// Parses catalogue text; `source` only names it in errors.
    pub fn parse(text: &str, source: CatalogSource) -> Result<Catalog, CatalogError> {
        let source_name = source.to_string();
        let raw: RawCatalog = serde_json::from_str(text).map_err(|e| CatalogError::Syntax {
            source_name: source_name.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
        })?;
        let invalid = |needle: &str, message: String| CatalogError::Invalid {
            source_name: source_name.clone(),
            line: line_of(text, needle),
            message,
        };
        if raw.format != 1 {
            return Err(invalid("\"format\"", format!("unsupported format {} (expected 1)", raw.format)));
        }
        if raw.value_max == 0 {
            return Err(invalid("\"value_max\"", "value_max must be at least 1".into()));
        }
        let mut modules = HashMap::new();
        for m in raw.modules {
            let needle = format!("\"{}\"", m.name);
            if m.name.is_empty() || !m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(&needle, format!("module name {:?} must be letters and digits", m.name)));
            }
            let instances = m.instances.unwrap_or(raw.default_instances);
            if instances == 0 {
                return Err(invalid(&needle, format!("module {} has zero instances", m.name)));
            }
            let mut parameters: Vec<Arc<str>> = Vec::with_capacity(m.parameters.len());
            for p in m.parameters {
                if p.is_empty() || !p.chars().all(is_name_char) || strip_input_jack(&p).is_some() {
                    return Err(invalid(&needle, format!("module {}: bad parameter name {p:?}", m.name)));
                }
                if parameters.iter().any(|q| q.as_ref() == p) {
                    return Err(invalid(&needle, format!("module {}: parameter {p} listed twice", m.name)));
                }
                parameters.push(p.into());
            }
            let key = m.name.to_ascii_lowercase();
            let entry = ModuleEntry { name: key.as_str().into(), series: m.series, instances, parameters };
            if modules.insert(key, entry).is_some() {
                return Err(invalid(&needle, format!("module {} listed twice", m.name)));
            }
        }
        let mut outputs = HashMap::new();
        for g in raw.outputs {
            let needle = format!("\"{}\"", g.group);
            let [low, high] = g.range;
            if !(low.is_finite() && high.is_finite()) || low == high {
                return Err(invalid(&needle, format!("output group {}: bad range {:?}", g.group, g.range)));
            }
            let range = VoltRange { low, high };
            let limit = match g.limit {
                None => range,
                Some([a, b]) if a.is_finite() && b.is_finite() && a < b => VoltRange { low: a, high: b },
                Some(l) => {
                    return Err(invalid(
                        &needle,
                        format!("output group {}: bad limit {l:?} (low below high)", g.group),
                    ));
                }
            };
            if !(limit.contains(low) && limit.contains(high)) {
                return Err(invalid(
                    &needle,
                    format!(
                        "output group {}: range {:?} leaves its limit {:?}",
                        g.group,
                        g.range,
                        [limit.low, limit.high]
                    ),
                ));
            }
            let _ = g.description;
            let group: Arc<str> = g.group.as_str().into();
            for name in g.names {
                if name.is_empty() || !name.chars().all(|c| is_name_char(c) || c == '.') {
                    return Err(invalid(&format!("\"{name}\""), format!("bad output name {name:?}")));
                }
                let key = name.to_ascii_lowercase();
                let entry = OutputEntry { name: Output(key.as_str().into()), group: group.clone(), range, limit };
                if outputs.insert(key, entry).is_some() {
                    return Err(invalid(&format!("\"{name}\""), format!("output {name} listed twice")));
                }
            }
        }
        Ok(Catalog { value_max: raw.value_max, max_input_jacks: raw.max_input_jacks, modules, outputs, source })
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

    /// Looks up `module#instance.parameter` parts. The module is matched case-insensitively; a named
    /// parameter must be spelled as in the catalogue; `inputJack#k` exists on every module and is
    /// matched in any case (`inputjack#1`, the only spelling older bots' routing files accept).
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
            Parameter::Named(entry.parameters.iter().find(|p| p.as_ref() == parameter)?.clone())
        };
        Some(Variable { module: entry.name.clone(), instance, parameter })
    }

    /// Parses a whole variable name such as `doorway#1.threshold`.
    pub fn parse_variable(&self, text: &str) -> Option<Variable> {
        let (module, rest) = text.split_once('#')?;
        let (instance, parameter) = rest.split_once('.')?;
        self.variable(module, parse_small_number(instance)?, parameter)
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
pub fn parse_small_number<T: TryFrom<u32>>(text: &str) -> Option<T> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().and_then(|n| T::try_from(n).ok())
}

/// The 1-based line of the first occurrence of `needle`, or 1 when it is not found.
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(1, |at| text[..at].matches('\n').count() + 1)
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
        let doc = include_str!("../commands.md");
        for (module, (_, _, parameters)) in Catalog::builtin().modules() {
            assert!(doc.contains(module), "commands.md lacks module {module}");
            for p in parameters {
                assert!(doc.contains(p), "commands.md lacks {module}.{p}");
            }
        }
    }

    #[test]
    fn parameters_keep_catalogue_case_and_modules_do_not() {
        let c = Catalog::builtin();
        assert_eq!(
            c.parse_variable("DoorWay#1.threshold").map(|v| v.to_string()).as_deref(),
            Some("doorway#1.threshold")
        );
        assert!(c.parse_variable("marbleindex#1.opacitya").is_none());
        assert!(c.parse_variable("doorway#1.THRESHOLD").is_none());
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
            "doorway#1.Threshold",
            "marbleindex#1.OPACITYA",
            "angles#1.inputjacké#1",
            "angles#1.input",
        ] {
            assert!(c.parse_variable(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn a_catalogue_parameter_spelled_like_an_input_jack_in_any_case_is_refused() {
        for name in ["inputJack#1", "inputjack#1", "INPUTJACK#x"] {
            let text =
                format!(r#"{{"format": 1, "modules": [{{"name": "m", "parameters": ["{name}"]}}], "outputs": []}}"#);
            let err = Catalog::parse(&text, CatalogSource::Embedded).expect_err(name);
            assert!(err.to_string().contains("bad parameter name"), "{err}");
        }
        let ok = r#"{"format": 1, "modules": [{"name": "m", "parameters": ["inputs", "jack#1"]}], "outputs": []}"#;
        assert!(Catalog::parse(ok, CatalogSource::Embedded).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = Catalog::parse("{\n  \"format\": 1,\n  \"modules\": [,]\n}", CatalogSource::File("my.json".into()))
            .expect_err("malformed");
        let text = err.to_string();
        assert!(text.starts_with("my.json line 3"), "{text}");
    }

    #[test]
    fn semantic_errors_name_the_file_and_line() {
        let text = "{\"format\": 1,\n\"modules\": [\n{\"name\": \"a\", \"parameters\": [\"x\"]},\n{\"name\": \"a\"}\n],\n\"outputs\": []}";
        let err = Catalog::parse(text, CatalogSource::File("c.json".into())).expect_err("duplicate");
        assert_eq!(err.to_string(), "c.json line 3: module a listed twice");
        let bad_range =
            "{\"format\": 1, \"modules\": [],\n\"outputs\": [{\"group\": \"g\", \"range\": [1, 1], \"names\": []}]}";
        let err = Catalog::parse(bad_range, CatalogSource::File("c.json".into())).expect_err("range");
        assert!(err.to_string().starts_with("c.json line 2: output group g: bad range"), "{err}");
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

    #[test]
    fn a_group_limit_widens_what_routes_may_use_and_the_range_must_lie_inside_it() {
        let text = r#"{"format": 1, "modules": [], "outputs": [
            {"group": "bipolar", "range": [0, 1], "limit": [-5, 5], "names": ["es9out#1"]}]}"#;
        let c = Catalog::parse(text, CatalogSource::Embedded).expect("valid");
        let out = c.output("es9out#1").expect("output");
        assert!(c.check_route(&out, VoltRange { low: -5.0, high: 5.0 }, 0.0).is_ok());
        assert!(c.check_route(&out, VoltRange { low: -5.0, high: 5.1 }, 0.0).is_err());
        let outside = r#"{"format": 1, "modules": [],
"outputs": [{"group": "g", "range": [0, 10], "limit": [0, 5], "names": ["x"]}]}"#;
        let err = Catalog::parse(outside, CatalogSource::File("c.json".into())).expect_err("range outside limit");
        assert!(err.to_string().starts_with("c.json line 2: output group g: range"), "{err}");
        let backwards = r#"{"format": 1, "modules": [], "outputs": [{"group": "g", "limit": [5, 0], "names": ["x"]}]}"#;
        assert!(Catalog::parse(backwards, CatalogSource::Embedded).is_err());
    }

    #[test]
    fn clamping_keeps_every_voltage_inside_and_turns_nan_into_the_low_end() {
        let limit = VoltRange { low: 1.0, high: 0.0 };
        assert_eq!(limit.clamp(5.0), 1.0);
        assert_eq!(limit.clamp(-5.0), 0.0);
        assert_eq!(limit.clamp(f32::NAN), 0.0);
        assert_eq!(limit.clamp(f32::INFINITY), 1.0);
        assert_eq!(limit.clamp(0.25), 0.25);
    }

    #[test]
    fn voltage_scales_across_the_route_range() {
        assert!((VoltRange::LZX.voltage(127, 127) - 1.0).abs() < f32::EPSILON);
        assert!(VoltRange::LZX.voltage(0, 127).abs() < f32::EPSILON);
        let bipolar = VoltRange { low: -5.0, high: 5.0 };
        assert!((bipolar.voltage(0, 127) + 5.0).abs() < 1e-6);
        assert!((VoltRange::LZX.voltage(89, 127) - 89.0 / 127.0).abs() < 1e-6);
    }
}
