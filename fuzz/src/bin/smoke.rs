//! The stable smoke run: every target over its checked-in corpus, its regressions and a few thousand
//! deterministic mutations of them, without libFuzzer. `scripts/test` runs it when nightly or
//! `cargo fuzz` is missing, so the targets' code always builds and runs. A failing check prints the
//! target and the input in hex, and the process exits non-zero. Knows the targets by name only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cvbot_fuzz::mutate::{Rng, mutate, parse_dictionary};
use cvbot_fuzz::targets;

type Target = fn(&[u8]);

/// Each target with its dictionary.
const TARGETS: [(&str, Target, &str); 5] = [
    ("chat", targets::chat, "chat.dict"),
    ("envelope", targets::envelope, "json.dict"),
    ("routes", targets::routes, "json.dict"),
    ("scenes", targets::scenes, "json.dict"),
    ("catalog", targets::catalog, "json.dict"),
];

/// Mutated inputs per target when no count is given: a few seconds in all, even unoptimised.
const DEFAULT_MUTATIONS: usize = 3000;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mutations = args.next().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_MUTATIONS);
    let only: Vec<String> = args.collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A failing check panics; its message goes to stderr by the default hook, and the input after it.
    for (name, target, dictionary) in TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let mut seeds = read_dir(&root.join("corpus").join(name));
        seeds.extend(read_dir(&root.join("regressions").join(name)));
        if seeds.is_empty() {
            eprintln!("smoke: {name}: no corpus under fuzz/corpus/{name}");
            return ExitCode::FAILURE;
        }
        let tokens = std::fs::read_to_string(root.join("dict").join(dictionary))
            .map(|text| parse_dictionary(&text))
            .unwrap_or_default();
        let mut rng = Rng::new(0x5eed ^ name.len() as u64);
        let mut inputs: Vec<Vec<u8>> = seeds.clone();
        for i in 0..mutations {
            let base = &seeds[i % seeds.len()];
            inputs.push(mutate(&mut rng, base, &tokens, &seeds));
        }
        for input in &inputs {
            if std::panic::catch_unwind(|| target(input)).is_err() {
                eprintln!("smoke: {name}: failed on input (hex) {}", hex(input));
                return ExitCode::FAILURE;
            }
        }
        eprintln!("smoke: {name}: {} inputs ({} seeds), no failure", inputs.len(), seeds.len());
    }
    ExitCode::SUCCESS
}

/// Every file directly under `dir`, sorted by name so runs are repeatable; none when it is missing.
fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.into_iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
