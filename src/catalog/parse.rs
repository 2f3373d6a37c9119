//! Catalogue text to a validated [`Catalog`]: the file's JSON shape and every rule it must meet, with
//! the line of the first offence in each error. Pure: the text comes from `load` or is compiled in.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{Catalog, CatalogError, CatalogSource, ModuleEntry, Output, OutputEntry, VoltRange, strip_input_jack};

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
}

/// The 1-based line of the first occurrence of `needle`, or 1 when it is not found.
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(1, |at| text[..at].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
