//! The routing file (`ROUTING_FILE`): routes survive a restart of a lone instance.
//!
//! Reads the older bot's `routing_table.json` as is (`{"es9out#1": "doorway#1.threshold"}`) and an
//! extended form per output (`{"variable": …, "range": [lo, hi], "safe": v}`); writes atomically
//! (temporary file, then rename) so a crash mid-write never leaves half a file. Knows nothing of chat,
//! Redis or OSC: it observes route changes and writes in a task of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Output, VoltRange};
use crate::coord::CoordHandle;
use crate::motion::checked_slew;
use crate::saved_file::{self, Table};
use crate::state::{Change, Route, State};
use crate::stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum RoutesFileError {
    #[error("cannot read routing file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("routing file {path} line {line}, column {column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("routing file {path} line {line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawRoute {
    /// The older bot's form: just the variable.
    Variable(String),
    Extended {
        variable: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<[f32; 2]>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        safe: Option<f32>,
        /// Volts per second; absent or 0 = no slew limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slew: Option<f32>,
    },
}

/// Loads the routes; a missing file means no routes yet.
pub fn load(path: &Path, catalog: &Catalog) -> Result<Vec<(Output, Route)>, RoutesFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RoutesFileError::Read { path: path.to_path_buf(), source }),
    };
    parse(&text, path, catalog)
}

/// Parses routing-file text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path, catalog: &Catalog) -> Result<Vec<(Output, Route)>, RoutesFileError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: BTreeMap<String, RawRoute> = serde_json::from_str(text).map_err(|e| RoutesFileError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    })?;
    let invalid = |key: &str, message: String| RoutesFileError::Invalid {
        path: path.to_path_buf(),
        line: text.find(&format!("\"{key}\"")).map_or(1, |at| text[..at].matches('\n').count() + 1),
        message,
    };
    let mut routes: Vec<(Output, Route)> = Vec::with_capacity(raw.len());
    for (name, raw_route) in raw {
        let output = catalog.output(&name).ok_or_else(|| invalid(&name, format!("unknown output {name:?}")))?;
        if routes.iter().any(|(o, _)| *o == output) {
            // Output names are case-insensitive: `es9out#1` and `ES9OUT#1` are one jack, and which
            // route it got would depend on the order they were applied.
            return Err(invalid(&name, format!("{name}: output {output} is listed twice")));
        }
        let (variable_name, range, safe, slew) = match raw_route {
            RawRoute::Variable(v) => (v, None, None, None),
            RawRoute::Extended { variable, range, safe, slew } => (variable, range, safe, slew),
        };
        let variable = catalog
            .parse_variable(&variable_name)
            .ok_or_else(|| invalid(&name, format!("{name}: unknown variable {variable_name:?}")))?;
        let range = range.map_or_else(|| catalog.output_range(&output), |[low, high]| VoltRange { low, high });
        let safe = safe.unwrap_or(range.low);
        // The same limit check as every other source: a file edited by hand never drives a jack
        // beyond what the catalogue allows.
        catalog.check_route(&output, range, safe).map_err(|e| invalid(&name, format!("{name}: {e}")))?;
        let slew = checked_slew(f64::from(slew.unwrap_or(0.0))).map_err(|e| invalid(&name, format!("{name}: {e}")))?;
        routes.push((output, Route { variable, range, safe, slew }));
    }
    Ok(routes)
}

/// Renders routes; default ranges stay in the older bot's plain form so it can still read the file.
pub fn render<'a>(routes: impl Iterator<Item = (&'a Output, &'a Route)>, catalog: &Catalog) -> String {
    let map: BTreeMap<String, RawRoute> = routes
        .map(|(output, route)| {
            let default = catalog.output_range(output);
            let raw = if route.range == default && route.safe == default.low && route.slew == 0.0 {
                RawRoute::Variable(route.variable.to_string())
            } else {
                RawRoute::Extended {
                    variable: route.variable.to_string(),
                    range: Some([route.range.low, route.range.high]),
                    safe: Some(route.safe),
                    slew: (route.slew > 0.0).then_some(route.slew),
                }
            };
            (output.to_string(), raw)
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&map).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// Keeps the routing file saved: rewritten after every route change (see [`crate::saved_file`]).
pub fn keep_saved(
    path: PathBuf,
    catalog: Arc<Catalog>,
    coord: &CoordHandle,
    stats: &Stats,
    shutdown: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + use<> {
    let table = Table {
        name: "routing",
        touches: |change| matches!(change, Change::Route { .. }),
        of: |state: &State| -> Routes { state.routes().map(|(o, r)| (o.clone(), r.clone())).collect() },
        render: Box::new(move |routes: &Routes| render(routes.iter(), &catalog)),
    };
    saved_file::keep_saved(path, table, coord, stats, shutdown)
}

type Routes = BTreeMap<Output, Route>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_older_bots_file_as_is() {
        let c = Catalog::builtin();
        let text = "{\n  \"es9out#1\": \"doorway#1.threshold\",\n  \"esx8cv#1.out#2\": \"passage#1.thru#2\"\n}";
        let routes = parse(text, Path::new("routing_table.json"), &c).expect("valid");
        let names: Vec<(String, String)> =
            routes.iter().map(|(o, r)| (o.to_string(), r.variable.to_string())).collect();
        assert_eq!(
            names,
            [("es9out#1".into(), "doorway#1.threshold".into()), ("esx8cv#1.out#2".into(), "passage#1.thru#2".into())]
        );
        assert_eq!(routes[0].1.range, VoltRange::LZX);
        assert!(routes[0].1.safe.abs() < f32::EPSILON);
    }

    #[test]
    fn input_jacks_load_in_any_case_as_the_catalogue_variable() {
        let c = Catalog::builtin();
        let text = "{\"es9out#8\": \"angles#1.inputjack#1\", \"es9out#7\": \"angles#1.INPUTJACK#2\",\n\"es9out#6\": {\"variable\": \"arch#3.InputJack#16\", \"range\": [1, 0]}}";
        let routes = parse(text, Path::new("routing_table.json"), &c).expect("valid");
        let names: Vec<(String, String)> =
            routes.iter().map(|(o, r)| (o.to_string(), r.variable.to_string())).collect();
        assert_eq!(
            names,
            [
                ("es9out#6".into(), "arch#3.inputJack#16".into()),
                ("es9out#7".into(), "angles#1.inputJack#2".into()),
                ("es9out#8".into(), "angles#1.inputJack#1".into())
            ]
        );
        assert_eq!(routes[2].1.variable, c.parse_variable("angles#1.inputJack#1").expect("canonical"));
        // Saved again in the catalogue's spelling, which loads back as the same routes.
        let rendered = render(routes.iter().map(|(o, r)| (o, r)), &c);
        assert!(rendered.contains("\"es9out#8\": \"angles#1.inputJack#1\""), "{rendered}");
        assert_eq!(parse(&rendered, Path::new("r.json"), &c).expect("valid"), routes);
        let err = parse("{\"es9out#8\": \"angles#1.inputjack#17\"}", Path::new("r.json"), &c).expect_err("jack 17");
        assert!(err.to_string().contains("unknown variable \"angles#1.inputjack#17\""), "{err}");
    }

    #[test]
    fn extended_entries_keep_range_and_safe_value_and_round_trip() {
        let c = Catalog::builtin();
        let text = "{\"es9out#2\": {\"variable\": \"doorway#1.gain\", \"range\": [0.8, 0.2], \"safe\": 0.5}, \"es9out#1\": \"doorway#1.threshold\"}";
        let routes = parse(text, Path::new("r.json"), &c).expect("valid");
        let rendered = render(routes.iter().map(|(o, r)| (o, r)), &c);
        assert!(rendered.contains("\"es9out#1\": \"doorway#1.threshold\""), "{rendered}");
        let again = parse(&rendered, Path::new("r.json"), &c).expect("valid");
        assert_eq!(routes, again);
    }

    #[test]
    fn a_slew_limit_loads_round_trips_and_is_bounded() {
        let c = Catalog::builtin();
        let p = Path::new("routing_table.json");
        let text = "{\"es9out#1\": {\"variable\": \"doorway#1.gain\", \"slew\": 2}, \"es9out#2\": {\"variable\": \"doorway#1.threshold\", \"slew\": 0.1}}";
        let routes = parse(text, p, &c).expect("valid");
        assert_eq!(routes.iter().map(|(_, r)| r.slew).collect::<Vec<_>>(), vec![2.0, 0.1]);
        let rendered = render(routes.iter().map(|(o, r)| (o, r)), &c);
        assert!(rendered.contains("\"slew\": 2.0") && rendered.contains("\"slew\": 0.1"), "{rendered}");
        assert_eq!(parse(&rendered, p, &c).expect("reads back"), routes);
        for bad in ["-1", "1001", "1e39", "\"fast\""] {
            let text = format!("{{\n\"es9out#1\": {{\"variable\": \"doorway#1.gain\", \"slew\": {bad}}}}}");
            let err = parse(&text, p, &c).expect_err(bad).to_string();
            assert!(err.contains("routing_table.json line"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let c = Catalog::builtin();
        let p = Path::new("routing_table.json");
        let err = parse("{\n\"es9out#1\": \"doorway#1.threshold\",\n}", p, &c).expect_err("trailing comma");
        assert!(err.to_string().starts_with("routing file routing_table.json line 3"), "{err}");
        let err = parse("{\n\"es9out#1\": \"doorway#1.threshold\",\n\"es9out#77\": \"doorway#1.gain\"\n}", p, &c)
            .expect_err("output");
        assert_eq!(err.to_string(), "routing file routing_table.json line 3: unknown output \"es9out#77\"");
        let err = parse("{\"es9out#1\": \"doorway#1.nope\"}", p, &c).expect_err("variable");
        assert!(err.to_string().contains("unknown variable \"doorway#1.nope\""), "{err}");
        let err = parse("{\"es9out#1\": {\"variable\": \"doorway#1.gain\", \"range\": [0, 1], \"safe\": 3}}", p, &c)
            .expect_err("safe");
        assert!(err.to_string().contains("the safe voltage 3 V is not inside the route's range"), "{err}");
    }

    #[test]
    fn one_output_in_two_spellings_is_refused() {
        let text = "{\"es9out#1\": \"doorway#1.threshold\",\n\"ES9OUT#1\": \"doorway#1.gain\"}";
        let err = parse(text, Path::new("r.json"), &Catalog::builtin()).expect_err("twice");
        assert_eq!(err.to_string(), "routing file r.json line 1: es9out#1: output es9out#1 is listed twice");
    }

    #[test]
    fn a_range_or_safe_value_beyond_the_output_limit_names_the_file_and_entry() {
        let c = Catalog::builtin();
        let p = Path::new("routing_table.json");
        let text = "{\n\"es9out#1\": \"doorway#1.threshold\",\n\"es9out#2\": {\"variable\": \"doorway#1.gain\", \"range\": [-1000, 1000], \"safe\": 1000}\n}";
        let err = parse(text, p, &c).expect_err("beyond the limit");
        assert_eq!(
            err.to_string(),
            "routing file routing_table.json line 3: es9out#2: the range -1000 V to 1000 V leaves the output's limit of 0 V to 1 V"
        );
        let huge = "{\"es9out#1\": {\"variable\": \"doorway#1.gain\", \"range\": [0, 3e38]}}";
        assert!(parse(huge, p, &c).is_err());
        let nan_like = "{\"es9out#1\": {\"variable\": \"doorway#1.gain\", \"range\": [0, 1], \"safe\": -1}}";
        assert!(parse(nan_like, p, &c).is_err());
    }

    #[test]
    fn a_missing_file_is_no_routes() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(&dir.path().join("nope.json"), &Catalog::builtin()).expect("ok").is_empty());
    }
}
