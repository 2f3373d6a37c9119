//! The scenes file (`SCENES_FILE`, by default `scenes.json` beside the routing file): saved scenes
//! survive a restart of a lone instance, with or without Redis.
//!
//! `{"intro": {"doorway#1.threshold": 89, "doorway#1.gain": 12}}`, scenes and values sorted; read
//! with the same checks as every other untrusted input and written atomically (temporary file, then
//! rename) so a crash mid-write never leaves half a file. Knows nothing of chat, Redis or OSC: it
//! observes scene changes and writes in a task of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Variable};
use crate::coord::CoordHandle;
use crate::saved_file::{self, Table};
use crate::show::{MAX_SCENE_VALUES, MAX_SCENES, Scene, SceneName};
use crate::state::{Change, State};
use crate::stats::Stats;

/// The largest scenes file read: 1 KiB for each of the most values a table may hold, far above
/// what the bot writes, so only a file that is not a scenes file (or a runaway edit) is refused
/// before it is held in memory.
pub const MAX_FILE_BYTES: usize = MAX_SCENES * MAX_SCENE_VALUES * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScenesFileError {
    #[error("cannot read scenes file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("scenes file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("scenes file {path} line {line}, column {column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("scenes file {path} line {line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
}

/// Loads the scenes; a missing file means no scenes yet.
pub fn load(path: &Path, catalog: &Catalog) -> Result<Vec<(SceneName, Scene)>, ScenesFileError> {
    let read = |source| ScenesFileError::Read { path: path.to_path_buf(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(read(source)),
    };
    // One byte past the bound is enough to know the file is too large, without reading the rest.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ScenesFileError::TooLarge { path: path.to_path_buf() });
    }
    let text = String::from_utf8(bytes).map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    parse(&text, path, catalog)
}

/// An object's members in the file's order, every one kept: a map keeps only the last of a repeated
/// name, and a scene or value listed twice must be refused rather than silently decided.
struct Members<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Members<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Collect<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Collect<T> {
            type Value = Members<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<T>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Collect(PhantomData))
    }
}

/// Parses scenes-file text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path, catalog: &Catalog) -> Result<Vec<(SceneName, Scene)>, ScenesFileError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Members<Members<u64>> = serde_json::from_str(text).map_err(|e| ScenesFileError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    })?;
    let source = Source { path, text };
    let mut scenes: Vec<(SceneName, Scene)> = Vec::with_capacity(raw.0.len().min(MAX_SCENES));
    for (index, (raw_name, raw_values)) in raw.0.iter().enumerate() {
        let invalid = |message: String| source.invalid(None, &raw.0, index, message);
        if scenes.len() == MAX_SCENES {
            return Err(invalid(format!("more than {MAX_SCENES} scenes, the most the bot keeps")));
        }
        let name = SceneName::parse(raw_name)
            .ok_or_else(|| invalid(format!("{raw_name:?} is not a scene name: 1 to 32 letters, digits, '-' or '_'")))?;
        if scenes.iter().any(|(n, _)| *n == name) {
            // Scene names are case-insensitive: `Intro` and `intro` are one scene, and which values
            // it got would depend on the order they were read.
            return Err(invalid(format!("scene {name} is listed twice")));
        }
        if raw_values.0.len() > MAX_SCENE_VALUES {
            return Err(invalid(format!("{name}: more than {MAX_SCENE_VALUES} values in one scene")));
        }
        let scene = scene_values(&name, raw_name, raw_values, &source, catalog)?;
        scenes.push((name, scene));
    }
    Ok(scenes)
}

/// One scene's values: every name a variable of the catalogue, listed once, every value one chat
/// could set.
fn scene_values(
    name: &SceneName,
    raw_name: &str,
    raw: &Members<u64>,
    source: &Source<'_>,
    catalog: &Catalog,
) -> Result<Scene, ScenesFileError> {
    let mut scene = Scene::default();
    for (index, (raw_variable, value)) in raw.0.iter().enumerate() {
        let invalid = |message: String| source.invalid(Some(raw_name), &raw.0, index, message);
        let variable = catalog
            .parse_variable(raw_variable)
            .ok_or_else(|| invalid(format!("{name}: unknown variable {raw_variable:?}")))?;
        let max = catalog.value_max();
        let value = u8::try_from(*value)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| invalid(format!("{name}: {variable}: {value} is above the highest value, {max}")))?;
        if scene.values.insert(variable.clone(), value).is_some() {
            // Variables are read in any case: `doorway#1.gain` and `DOORWAY#1.GAIN` are one value.
            return Err(invalid(format!("{name}: {variable} is listed twice")));
        }
    }
    Ok(scene)
}

/// The file an entry came from, to name it and find the entry's line in an error.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// The error for the `index`th of `members` (the scenes, or the values of the scene `within`). Its
    /// line is where the member's name is quoted: after the scene's name, and past every earlier
    /// member spelled the same.
    fn invalid<T>(
        &self,
        within: Option<&str>,
        members: &[(String, T)],
        index: usize,
        message: String,
    ) -> ScenesFileError {
        let key = members[index].0.as_str();
        let twins = members[..index].iter().filter(|(k, _)| k == key).count();
        let keys = within.into_iter().chain(std::iter::repeat_n(key, twins + 1));
        ScenesFileError::Invalid { path: self.path.to_path_buf(), line: line_of(self.text, keys), message }
    }
}

/// The line of the last of `keys`, each found as a quoted string after the one before. A key not
/// found as written (an escaped name) leaves the line at the last one found.
fn line_of<'k>(text: &str, keys: impl Iterator<Item = &'k str>) -> usize {
    let mut at = 0;
    for key in keys {
        let Some(found) = text[at..].find(&format!("\"{key}\"")) else { break };
        at += found + key.len() + 2;
    }
    text[..at].matches('\n').count() + 1
}

/// A scene's values as a JSON object, in the variables' order.
struct Values<'a>(&'a BTreeMap<Variable, u8>);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(variable, value)| (variable.to_string(), value)))
    }
}

/// Renders scenes as given (the state keeps them sorted by name, and each scene's values by
/// variable), pretty-printed, one value to a line.
pub fn render<'a>(scenes: impl Iterator<Item = (&'a SceneName, &'a Scene)>) -> String {
    let table: Vec<(&str, Values<'_>)> = scenes.map(|(name, scene)| (name.as_str(), Values(&scene.values))).collect();
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::new());
    // Writing into memory cannot fail, and every key is a string.
    let rendered = serializer.collect_map(table.iter().map(|(name, values)| (name, values)));
    let mut text = rendered.ok().and_then(|()| String::from_utf8(out).ok()).unwrap_or_else(|| "{}".to_owned());
    text.push('\n');
    text
}

/// Keeps the scenes file saved: rewritten after every scene saved or deleted (see
/// [`crate::saved_file`]).
pub fn keep_saved(
    path: PathBuf,
    coord: &CoordHandle,
    stats: &Stats,
    shutdown: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + use<> {
    let table = Table {
        name: "scenes",
        touches: |change| matches!(change, Change::Scene { .. }),
        of: |state: &State| -> Scenes { state.scenes().map(|(n, s)| (n.clone(), s.clone())).collect() },
        render: Box::new(|scenes: &Scenes| render(scenes.iter())),
    };
    saved_file::keep_saved(path, table, coord, stats, shutdown)
}

type Scenes = BTreeMap<SceneName, Scene>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable of the catalogue: each module instance's named parameters and input jacks.
    fn all_variables(c: &Catalog) -> Vec<Variable> {
        let jacks: Vec<String> = (1..=c.max_input_jacks()).map(|k| format!("inputJack#{k}")).collect();
        let mut out = Vec::new();
        for (module, (_, instances, parameters)) in c.modules() {
            for instance in 1..=instances {
                let names = parameters.iter().copied().chain(jacks.iter().map(String::as_str));
                out.extend(names.filter_map(|p| c.variable(module, instance, p)));
            }
        }
        out
    }

    /// Scenes as a test writes them: each name with its `(variable, value)` pairs.
    type Table<'a> = &'a [(&'a str, &'a [(&'a str, u8)])];

    fn scenes(c: &Catalog, table: Table<'_>) -> Vec<(SceneName, Scene)> {
        table
            .iter()
            .map(|(name, values)| {
                let values = values.iter().map(|(v, x)| (c.parse_variable(v).expect("variable"), *x)).collect();
                (SceneName::parse(name).expect("name"), Scene { values })
            })
            .collect()
    }

    #[test]
    fn scenes_render_sorted_and_pretty_and_load_back() {
        let c = Catalog::builtin();
        let p = Path::new("scenes.json");
        let cases: &[(Table<'_>, &str)] = &[
            (&[], "{}\n"),
            (&[("empty", &[])], "{\n  \"empty\": {}\n}\n"),
            (
                &[
                    ("intro", &[("doorway#1.threshold", 89), ("doorway#1.gain", 12)]),
                    ("b-2", &[("doorway#8.gain", 127)]),
                ],
                "{\n  \"b-2\": {\n    \"doorway#8.gain\": 127\n  },\n  \"intro\": {\n    \"doorway#1.gain\": 12,\n    \"doorway#1.threshold\": 89\n  }\n}\n",
            ),
            (
                &[("jacks", &[("angles#1.inputJack#2", 0), ("angles#1.inputJack#1", 5), ("doorway#2.gain", 1)])],
                "{\n  \"jacks\": {\n    \"angles#1.inputJack#1\": 5,\n    \"angles#1.inputJack#2\": 0,\n    \"doorway#2.gain\": 1\n  }\n}\n",
            ),
        ];
        for (table, text) in cases {
            // The state holds scenes sorted by name and values sorted by variable; so does the file.
            let sorted: BTreeMap<SceneName, Scene> = scenes(&c, table).into_iter().collect();
            let rendered = render(sorted.iter());
            assert_eq!(rendered, *text);
            let loaded = parse(&rendered, p, &c).expect("a rendered file loads");
            assert_eq!(loaded, sorted.into_iter().collect::<Vec<_>>(), "{rendered}");
        }
    }

    #[test]
    fn names_and_variables_load_in_any_case_as_the_bot_spells_them() {
        let c = Catalog::builtin();
        let text = "{\"Intro\": {\"DOORWAY#1.Threshold\": 89, \"angles#1.inputjack#3\": 127}, \"\": {}}";
        let err = parse(text, Path::new("s.json"), &c).expect_err("an empty name");
        assert!(err.to_string().contains("\"\" is not a scene name"), "{err}");
        let text = "{\"Intro\": {\"DOORWAY#1.Threshold\": 89, \"angles#1.inputjack#3\": 127}}";
        let loaded = parse(text, Path::new("s.json"), &c).expect("valid");
        assert_eq!(loaded, scenes(&c, &[("intro", &[("doorway#1.threshold", 89), ("angles#1.inputJack#3", 127)])]));
        let rendered = render(loaded.iter().map(|(n, s)| (n, s)));
        assert!(rendered.contains("\"intro\"") && rendered.contains("\"angles#1.inputJack#3\": 127"), "{rendered}");
    }

    #[test]
    fn every_refusal_names_the_file_and_the_line_of_the_entry() {
        let c = Catalog::builtin();
        let p = Path::new("scenes.json");
        let cases: &[(&str, &str)] = &[
            ("{\n\"intro\": {\"doorway#1.gain\": 1},\n}", "scenes file scenes.json line 3, column 1: trailing comma"),
            ("[1, 2]", "scenes file scenes.json line 1, column 0: invalid type: sequence, expected an object"),
            (
                "{\"intro\": [1]}",
                "scenes file scenes.json line 1, column 10: invalid type: sequence, expected an object",
            ),
            (
                "{\"intro\": {\"doorway#1.gain\": -1}}",
                "scenes file scenes.json line 1, column 31: invalid value: integer `-1`, expected u64",
            ),
            (
                "{\"intro\": {\"doorway#1.gain\": 1.5}}",
                "scenes file scenes.json line 1, column 32: invalid type: floating point `1.5`, expected u64",
            ),
            (
                "{\"intro\": {\"doorway#1.gain\": \"12\"}}",
                "scenes file scenes.json line 1, column 33: invalid type: string \"12\", expected u64",
            ),
            (
                "{\n\"ok\": {},\n\"two words\": {}\n}",
                "scenes file scenes.json line 3: \"two words\" is not a scene name: 1 to 32 letters, digits, '-' or '_'",
            ),
            ("{\n\"intro\": {},\n\"INTRO\": {}\n}", "scenes file scenes.json line 3: scene intro is listed twice"),
            ("{\n\"intro\": {},\n\"intro\": {}\n}", "scenes file scenes.json line 3: scene intro is listed twice"),
            (
                "{\"a\": {\"doorway#1.gain\": 1},\n\"b\": {\n\"doorway#1.gain\": 1,\n\"doorway#1.nope\": 2}}",
                "scenes file scenes.json line 4: b: unknown variable \"doorway#1.nope\"",
            ),
            (
                "{\"a\": {\"doorway#1.gain\": 1},\n\"b\": {\n\"doorway#1.gain\": 128}}",
                "scenes file scenes.json line 3: b: doorway#1.gain: 128 is above the highest value, 127",
            ),
            (
                "{\"b\": {\n\"doorway#1.gain\": 1,\n\"doorway#1.gain\": 1}}",
                "scenes file scenes.json line 3: b: doorway#1.gain is listed twice",
            ),
            (
                "{\"b\": {\n\"doorway#1.gain\": 1,\n\"Doorway#1.GAIN\": 2}}",
                "scenes file scenes.json line 3: b: doorway#1.gain is listed twice",
            ),
            (
                "{\"b\": {\"doorway#1.gain\": 99999999999999999999}}",
                "scenes file scenes.json line 1, column 45: invalid type: floating point `1e+20`, expected u64",
            ),
        ];
        for (text, wanted) in cases {
            let err = parse(text, p, &c).expect_err(text);
            assert_eq!(err.to_string(), *wanted, "{text}");
        }
    }

    #[test]
    fn more_scenes_or_values_than_the_bot_keeps_are_refused_at_the_first_one_too_many() {
        let c = Catalog::builtin();
        let p = Path::new("scenes.json");
        let table = |count: usize| (0..count).map(|i| format!("\"s{i}\": {{}}")).collect::<Vec<_>>().join(",\n");
        assert_eq!(parse(&format!("{{\n{}\n}}", table(MAX_SCENES)), p, &c).expect("the most").len(), MAX_SCENES);
        let err = parse(&format!("{{\n{}\n}}", table(MAX_SCENES + 1)), p, &c).expect_err("one too many");
        assert_eq!(
            err.to_string(),
            format!("scenes file scenes.json line {}: more than 64 scenes, the most the bot keeps", MAX_SCENES + 2)
        );
        let variables = all_variables(&c);
        let values =
            |count: usize| variables[..count].iter().map(|v| format!("\"{v}\": 1")).collect::<Vec<_>>().join(", ");
        let full = parse(&format!("{{\"a\": {{}},\n\"big\": {{{}}}}}", values(MAX_SCENE_VALUES)), p, &c).expect("full");
        assert_eq!(full[1].1.values.len(), MAX_SCENE_VALUES);
        let err = parse(&format!("{{\"a\": {{}},\n\"big\": {{{}}}}}", values(MAX_SCENE_VALUES + 1)), p, &c)
            .expect_err("too many values");
        assert_eq!(err.to_string(), "scenes file scenes.json line 2: big: more than 256 values in one scene");
    }

    #[test]
    fn the_fullest_table_the_bot_can_hold_renders_well_within_the_file_bound() {
        let c = Catalog::builtin();
        // The longest names the built-in catalogue has, at the highest value, in every scene.
        let mut variables = all_variables(&c);
        variables.sort_by_key(|v| std::cmp::Reverse(v.to_string().len()));
        let values: BTreeMap<Variable, u8> =
            variables.into_iter().take(MAX_SCENE_VALUES).map(|v| (v, c.value_max())).collect();
        let table: BTreeMap<SceneName, Scene> = (0..MAX_SCENES)
            .map(|i| (SceneName::parse(&format!("{i:0>32}")).expect("name"), Scene { values: values.clone() }))
            .collect();
        let rendered = render(table.iter());
        assert!(rendered.len() * 10 < MAX_FILE_BYTES, "{} bytes", rendered.len());
        assert_eq!(parse(&rendered, Path::new("s.json"), &c).expect("loads").len(), MAX_SCENES);
    }

    #[test]
    fn a_file_beyond_the_bound_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scenes.json");
        let c = Catalog::builtin();
        std::fs::write(&path, " ".repeat(MAX_FILE_BYTES)).expect("write");
        assert!(load(&path, &c).expect("at the bound, blank").is_empty());
        std::fs::write(&path, " ".repeat(MAX_FILE_BYTES + 1)).expect("write");
        let err = load(&path, &c).expect_err("one byte over");
        assert_eq!(err.to_string(), format!("scenes file {} is larger than {MAX_FILE_BYTES} bytes", path.display()));
        std::fs::write(&path, b"{\"intro\": {\"doorway#1.gain\": 1}, \"\xff\": {}}").expect("write");
        let err = load(&path, &c).expect_err("not UTF-8");
        assert!(err.to_string().starts_with(&format!("cannot read scenes file {}: ", path.display())), "{err}");
    }

    #[test]
    fn a_missing_or_blank_file_is_no_scenes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Catalog::builtin();
        assert!(load(&dir.path().join("nope.json"), &c).expect("missing").is_empty());
        assert!(parse(" \n", Path::new("s.json"), &c).expect("blank").is_empty());
    }
}
