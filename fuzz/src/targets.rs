//! One function per parser that faces strangers. Each takes any bytes, runs the parser as the bot
//! does, and panics when something that must hold for every input does not: libFuzzer and the smoke
//! runner report such a panic as a crash. Knows the parsers' public entry points, not how inputs are
//! chosen.
//!
//! Beyond "never panics", each target checks what the rest of the bot relies on: accepted values are
//! in range, what the bot prints or sends is what it reads back (chat commands, envelopes, routing
//! and scenes files), and two decoders that must agree do agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use cvbot::catalog::{Catalog, CatalogSource, Output};
use cvbot::command::{self, AdminCommand, Command, MAX_MESSAGE_CHARS, Rejection, Unknown};
use cvbot::redis_link::wire::{self, Incoming, MAX_PAYLOAD, Signer};
use cvbot::routes_file;
use cvbot::scenes_file;
use cvbot::show::{MAX_SCENE_VALUES, MAX_SCENES, Scene, SceneName};
use cvbot::state::{EventKind, Route};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);

/// The key every signed case uses; any key exercises the same code.
const SIGNING_KEY: &[u8] = b"fuzz signing key";

static SIGNER: LazyLock<Signer> = LazyLock::new(|| Signer::new(SIGNING_KEY));

/// Chat lines: `command::parse` with the built-in catalogue.
pub fn chat(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let catalog = &*CATALOG;
    let parsed = match command::parse(&line, catalog) {
        Ok(parsed) => parsed,
        Err(rejection) => return check_rejection(&rejection, catalog),
    };
    // The forms the bot itself shows (the log, replies, the admin page's hints) must read back as
    // the same command, or an operator copying one would get something else.
    let canonical = match &parsed {
        Command::Set { variable, value, ramp_ms } => {
            assert!(*value <= catalog.value_max(), "accepted value {value} above the maximum");
            match ramp_ms {
                Some(ms) => format!("{variable}: {value} over {ms}ms"),
                None => format!("{variable}: {value}"),
            }
        }
        Command::Admin(AdminCommand::Unroute { output }) => format!("!admin remove {output}"),
        Command::Admin(AdminCommand::EmergencyStop { message: Some(message) }) => {
            // The overlay banner shows this text: short, printable, trimmed, never empty.
            assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "emergency message too long");
            assert!(!message.chars().any(char::is_control), "control characters in {message:?}");
            assert!(!message.is_empty() && message.trim() == message, "untrimmed message {message:?}");
            format!("!admin emergency stop {message}")
        }
        Command::Admin(admin) => format!("!admin {admin}"),
        Command::Ask(question) => question.to_string(),
    };
    assert_eq!(command::parse(&canonical, catalog).as_ref(), Ok(&parsed), "{canonical:?} reads back differently");
}

/// What a refused line tells the viewer is true of the catalogue: a suggested name exists, an
/// echoed name is short printable ASCII (nearly a catalogue name, never arbitrary chat), and the
/// instance counts are the catalogue's.
fn check_rejection(rejection: &Rejection, catalog: &Catalog) {
    let echoed = |written: &str| {
        assert!(written.len() <= 40 && written.bytes().all(|b| b.is_ascii_graphic()), "echoed {written:?}");
    };
    match rejection.unknown() {
        None | Some(Unknown::Module(None)) => {}
        Some(Unknown::Module(Some(s))) => {
            echoed(&s.written);
            assert!(catalog.module(&s.nearest).is_some(), "suggested module {} is unknown", s.nearest);
        }
        Some(Unknown::Parameter { module, suggestion }) => {
            assert!(catalog.module(module).is_some(), "{module} is no module");
            if let Some(s) = suggestion {
                echoed(&s.written);
                assert!(
                    catalog.variable(module, 1, &s.nearest).is_some(),
                    "suggested {module}.{} is unknown",
                    s.nearest
                );
            }
        }
        Some(Unknown::Instance { module, instances }) => {
            assert_eq!(catalog.module(module).map(|m| m.instances), Some(*instances), "{module}'s instances");
        }
        Some(Unknown::InstanceNeeded { example, instances }) => {
            assert!(*instances > 1, "a module there is one of needs no instance number");
            let named = catalog.parse_variable(&example.to_string());
            assert_eq!(named.as_ref(), Some(example), "the name to write, {example}, reads back");
        }
    }
}

/// Pub/sub payloads and state-hash values: `wire::decode`, unsigned and signed.
pub fn envelope(data: &[u8]) {
    payload(data);
    // A state-hash value is `order_key|envelope`: the hash is loaded as bytes, read as UTF-8 and
    // split on the first `|`, as `RedisLink::resync` does.
    if let Ok(value) = std::str::from_utf8(data)
        && let Some((_, rest)) = value.split_once('|')
    {
        payload(rest.as_bytes());
    }
}

fn payload(data: &[u8]) {
    let catalog = &*CATALOG;
    let signer = &*SIGNER;
    let unsigned = wire::decode(data, catalog, None);
    let signed = wire::decode(data, catalog, Some(signer));
    // A signature only adds a condition: whatever passes it decodes as it does without a key.
    if let Ok(incoming) = &signed {
        assert_eq!(unsigned.as_ref(), Ok(incoming), "the signed decode accepted what the unsigned one did not");
    }
    if let Ok(Incoming::Event { event, seq }) = &unsigned {
        if let EventKind::Set { value, ramp, .. } = &event.kind {
            assert!(*value <= catalog.value_max(), "accepted value {value} above the maximum");
            if let Some(ramp) = ramp {
                // Every instance must be able to draw it: a start within the values, a bounded length.
                assert!((0.0..=f32::from(catalog.value_max())).contains(&ramp.from), "ramp from {}", ramp.from);
                assert!(ramp.ms > 0 && ramp.ms <= cvbot::motion::RAMP_LIMIT_MS, "ramp of {} ms", ramp.ms);
            }
        }
        if let EventKind::Route { route: Some(route), .. } = &event.kind {
            assert!((0.0..=cvbot::motion::SLEW_LIMIT).contains(&route.slew), "slew {}", route.slew);
        }
        show_control_bounds(&event.kind, catalog.value_max());
        // What we publish must decode to the event we meant, both with and without a key (the
        // unsigned `parameter_update` is written by hand, the rest through serde_json).
        for key in [None, Some(signer)] {
            let encoded = wire::encode(event, seq.unwrap_or(0), key);
            let again = wire::decode(encoded.payload.as_bytes(), catalog, key);
            let Ok(Incoming::Event { event: decoded, .. }) = again else {
                panic!("our own envelope {:?} was refused: {again:?}", encoded.payload);
            };
            assert_eq!(&decoded, event, "{:?} decodes to another event", encoded.payload);
        }
    }
    // The same envelope, signed with the right key, must decode as the unsigned one did: the
    // unsigned decode takes a typed fast path for `parameter_update`, the signed one never does, so
    // this holds the two paths equal on every input.
    if data.len() <= MAX_PAYLOAD
        && let Some(resigned) = sign(data)
        && resigned.len() <= MAX_PAYLOAD
        && reserialises_the_same(&resigned)
    {
        let general = wire::decode(resigned.as_bytes(), catalog, Some(signer));
        assert_eq!(general, unsigned, "the signed copy {resigned:?} decodes differently");
    }
}

/// Votes, windows and scenes accepted from the wire stay inside the bounds chat is held to.
fn show_control_bounds(kind: &EventKind, value_max: u8) {
    match kind {
        EventKind::Vote { value, .. } => assert!(*value <= value_max, "vote {value}"),
        EventKind::Mode { mode } => {
            if let Some(ms) = mode.window_ms() {
                assert!((cvbot::show::MIN_WINDOW_MS..=cvbot::show::MAX_WINDOW_MS).contains(&ms), "window {ms}");
            }
        }
        EventKind::Scene { scene: Some(scene), .. } => {
            assert!(scene.values.len() <= cvbot::show::MAX_SCENE_VALUES, "{} values", scene.values.len());
            assert!(scene.values.values().all(|v| *v <= value_max), "a scene value above the maximum");
        }
        _ => {}
    }
}

/// `data` with a valid `sig` for [`SIGNING_KEY`], as the wire format defines it: HMAC-SHA256 over the
/// compact JSON of the envelope without `sig`, in hex. `None` when `data` is not a JSON object.
fn sign(data: &[u8]) -> Option<String> {
    let mut root: Value = serde_json::from_slice(data).ok()?;
    let object = root.as_object_mut()?;
    object.remove("sig");
    let text = Value::Object(object.clone()).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_KEY).ok()?;
    mac.update(text.as_bytes());
    object.insert("sig".to_owned(), Value::String(hex::encode(mac.finalize().into_bytes())));
    Some(root.to_string())
}

/// True when `text` parsed and printed again by `serde_json` is the same text: the signature is
/// checked over the receiver's re-serialisation, so only such text can carry a valid signature.
/// (Our own envelopes always do: `serde_json`'s `float_roundtrip` keeps every voltage exact; the
/// regression `fuzz/regressions/envelope/signed-route-float-roundtrip` holds that.)
fn reserialises_the_same(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .is_ok_and(|value| serde_json::to_string(&value).is_ok_and(|again| again == text))
}

/// The routing file: `routes_file::parse` with the built-in catalogue.
pub fn routes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let catalog = &*CATALOG;
    let path = Path::new("routes.json");
    let routes = match routes_file::parse(&text, path, catalog) {
        Ok(routes) => routes,
        Err(routes_file::RoutesFileError::Syntax { line, .. } | routes_file::RoutesFileError::Invalid { line, .. }) => {
            // An error names a line of the file, so the operator can find it.
            assert!(line <= text.lines().count().max(1) + 1, "line {line} is past the end of the file");
            return;
        }
        Err(e) => panic!("parsing text failed as if reading a file: {e}"),
    };
    for (_, route) in &routes {
        assert!(route.range.low.is_finite() && route.range.high.is_finite() && route.range.low != route.range.high);
        assert!(
            route.safe >= route.range.low.min(route.range.high) && route.safe <= route.range.low.max(route.range.high)
        );
    }
    // What the bot saves after a route change must load back as the same routes (one output listed
    // in two spellings is refused by `parse`: `fuzz/regressions/routes/same-output-twice-in-two-cases`).
    let rendered = routes_file::render(routes.iter().map(|(output, route)| (output, route)), catalog);
    let reloaded = routes_file::parse(&rendered, path, catalog).expect("a rendered routing file loads");
    let sorted = |list: &[(Output, Route)]| {
        let mut v: Vec<(Output, String)> = list.iter().map(|(o, r)| (o.clone(), format!("{r:?}"))).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&reloaded), sorted(&routes), "the rendered file {rendered:?} loads other routes");
}

/// The scenes file: `scenes_file::parse` with the built-in catalogue.
pub fn scenes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let catalog = &*CATALOG;
    let path = Path::new("scenes.json");
    let scenes = match scenes_file::parse(&text, path, catalog) {
        Ok(scenes) => scenes,
        Err(scenes_file::ScenesFileError::Syntax { line, .. } | scenes_file::ScenesFileError::Invalid { line, .. }) => {
            // An error names a line of the file, so the operator can find it.
            assert!(line <= text.lines().count().max(1) + 1, "line {line} is past the end of the file");
            return;
        }
        Err(e) => panic!("parsing text failed as if reading a file: {e}"),
    };
    // What the state may hold, and nothing else: a scene loaded from the file is recalled as chat
    // commands would set its values.
    assert!(scenes.len() <= MAX_SCENES, "{} scenes", scenes.len());
    for (name, scene) in &scenes {
        assert_eq!(SceneName::parse(name.as_str()).as_ref(), Some(name), "the name {name} reads back as another");
        assert!(scene.values.len() <= MAX_SCENE_VALUES, "{name}: {} values", scene.values.len());
        assert!(scene.values.values().all(|v| *v <= catalog.value_max()), "{name}: a value above the maximum");
    }
    // What the bot saves after a scene change (the state's table, sorted by name) must load back as
    // the same scenes; a name loaded twice would make that table smaller than the file.
    let table: BTreeMap<SceneName, Scene> = scenes.iter().cloned().collect();
    assert_eq!(table.len(), scenes.len(), "one scene loaded twice");
    let rendered = scenes_file::render(table.iter());
    let reloaded = scenes_file::parse(&rendered, path, catalog).expect("a rendered scenes file loads");
    assert_eq!(reloaded, table.into_iter().collect::<Vec<_>>(), "the rendered file {rendered:?} loads other scenes");
}

/// The catalogue file: `Catalog::parse`, then a few chat lines and routes against what it accepted.
pub fn catalog(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(catalog) = Catalog::parse(&text, CatalogSource::File("catalog.json".into())) else { return };
    // Every variable the catalogue lists can be set from chat, by the name the bot shows for it. A
    // few per module keep a huge catalogue from making one input slow.
    for (module, (_, instances, parameters)) in catalog.modules() {
        let jack = (catalog.max_input_jacks() > 0).then(|| "inputJack#1".to_owned());
        for parameter in parameters.iter().take(4).map(|p| (*p).to_owned()).chain(jack) {
            for instance in [1, instances] {
                let variable = catalog.variable(module, instance, &parameter);
                let variable =
                    variable.unwrap_or_else(|| panic!("{module}#{instance}.{parameter} is listed but unknown"));
                assert_eq!(catalog.parse_variable(&variable.to_string()).as_ref(), Some(&variable));
                let line = format!("{variable}: {}", catalog.value_max());
                if catalog.output(&variable.to_string()).is_none() {
                    let parsed = command::parse(&line, &catalog);
                    assert_eq!(
                        parsed,
                        Ok(Command::Set { variable, value: catalog.value_max(), ramp_ms: None }),
                        "{line:?}"
                    );
                }
            }
        }
    }
    for output in catalog.outputs().into_iter().take(8) {
        let range = catalog.output_range(&output);
        assert!(range.low.is_finite() && range.high.is_finite() && range.low != range.high);
        assert_eq!(catalog.output(&output.as_str().to_ascii_uppercase()).as_ref(), Some(&output));
        check_unroute(&catalog, &output);
    }
    // Arbitrary chat against an arbitrary catalogue: the parser stays total.
    for line in ["a#1.b: 1", "!admin es9out#1 → a#1.b", "!cv x#65535.inputJack#255 255", "remove a"] {
        if let Ok(Command::Set { value, .. }) = command::parse(line, &catalog) {
            assert!(value <= catalog.value_max());
        }
    }
}

fn check_unroute(catalog: &Catalog, output: &Output) {
    let line = format!("!admin remove {output}");
    assert_eq!(command::parse(&line, catalog), Ok(Command::Admin(AdminCommand::Unroute { output: output.clone() })));
}
