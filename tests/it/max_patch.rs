//! The Max patch users start from, `max/cvbot.maxpat`, read as the patcher JSON Max 8 saves: every box
//! and cord well formed, one `route` naming exactly the addresses the bot sends (`cvbot::osc`), every
//! heartbeat restarting the watchdog that parks the outputs, eight smoothed and scaled ES-9 chains into
//! `dac~`, and no `#` followed by a digit in any box (Max reads that as an argument placeholder).
//! Max itself is not run: these tests read the file, as Max would before building the objects.

use std::collections::{BTreeSet, HashSet, VecDeque};

use serde_json::{Map, Value};

use cvbot::Config;
use cvbot::osc::{CV_ADDR, HEARTBEAT_ADDR, ROUTING_ADDR};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/max/cvbot.maxpat");

/// One box of the patcher: an object, a message, a comment, a number box…
#[derive(Debug)]
struct MaxBox {
    id: String,
    maxclass: String,
    /// The box's text (an object's name and arguments, a message, a comment); empty for UI objects.
    text: String,
    inlets: usize,
    outlets: usize,
    rect: [f64; 4],
}

impl MaxBox {
    fn is_object(&self, name: &str) -> bool {
        self.maxclass == "newobj" && self.text.split_whitespace().next() == Some(name)
    }

    /// An object's arguments: the words after its name.
    fn args(&self) -> Vec<&str> {
        self.text.split_whitespace().skip(1).collect()
    }
}

/// A patch cord: from an outlet of one box to an inlet of another.
#[derive(Debug)]
struct Cord {
    from: (String, usize),
    to: (String, usize),
}

#[derive(Debug)]
struct Patch {
    boxes: Vec<MaxBox>,
    cords: Vec<Cord>,
}

fn patcher() -> Value {
    let text = std::fs::read_to_string(PATH).unwrap_or_else(|e| panic!("{PATH} cannot be read: {e}"));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{PATH} is not JSON: {e}"));
    json.get("patcher").cloned().unwrap_or_else(|| panic!("{PATH} has no top-level \"patcher\" object"))
}

fn index(value: &Value, what: &str) -> usize {
    let n = value.as_u64().unwrap_or_else(|| panic!("{what} is not a whole number: {value}"));
    usize::try_from(n).expect("a small number")
}

fn four_numbers(value: Option<&Value>, what: &str) -> [f64; 4] {
    let numbers: Vec<f64> = value
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{what} is missing or not an array: {value:?}"))
        .iter()
        .map(|n| n.as_f64().unwrap_or_else(|| panic!("{what} holds {n}, not a number")))
        .collect();
    numbers.try_into().unwrap_or_else(|n: Vec<f64>| panic!("{what} has {} numbers, not 4: {n:?}", n.len()))
}

fn parse_box(n: usize, entry: &Value) -> MaxBox {
    let b: &Map<String, Value> = entry
        .get("box")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("boxes[{n}] is not {{\"box\": {{…}}}}: {entry}"));
    let string = |key: &str| b.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = string("id").unwrap_or_else(|| panic!("boxes[{n}] has no string \"id\""));
    let maxclass = string("maxclass").filter(|c| !c.is_empty());
    let maxclass = maxclass.unwrap_or_else(|| panic!("box {id} has no \"maxclass\""));
    let count = |key: &str| {
        let value = b.get(key).unwrap_or_else(|| panic!("box {id} has no \"{key}\""));
        index(value, &format!("box {id}'s \"{key}\""))
    };
    let (inlets, outlets) = (count("numinlets"), count("numoutlets"));
    if let Some(types) = b.get("outlettype") {
        let types = types.as_array().unwrap_or_else(|| panic!("box {id}: \"outlettype\" is not an array"));
        assert_eq!(
            types.len(),
            outlets,
            "box {id} ({maxclass}) names the type of {} outlets, has {outlets}",
            types.len()
        );
    }
    let rect = four_numbers(b.get("patching_rect"), &format!("box {id}'s \"patching_rect\""));
    MaxBox { text: string("text").unwrap_or_default(), id, maxclass, inlets, outlets, rect }
}

fn parse_cord(n: usize, entry: &Value) -> Cord {
    let line = entry.get("patchline").unwrap_or_else(|| panic!("lines[{n}] is not {{\"patchline\": {{…}}}}: {entry}"));
    let end = |key: &str| {
        let pair = line.get(key).and_then(Value::as_array);
        match pair.map(Vec::as_slice) {
            Some([Value::String(id), port]) => (id.clone(), index(port, &format!("lines[{n}].{key}[1]"))),
            _ => panic!("lines[{n}].{key} is not [box id, index]: {line}"),
        }
    };
    Cord { from: end("source"), to: end("destination") }
}

impl Patch {
    fn load() -> Patch {
        let patcher = patcher();
        let list = |key: &str| {
            patcher
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| panic!("the patcher has no \"{key}\" array"))
        };
        let boxes = list("boxes").iter().enumerate().map(|(n, b)| parse_box(n, b)).collect();
        let cords = list("lines").iter().enumerate().map(|(n, l)| parse_cord(n, l)).collect();
        Patch { boxes, cords }
    }

    fn get(&self, id: &str) -> Option<&MaxBox> {
        self.boxes.iter().find(|b| b.id == id)
    }

    fn objects(&self, name: &str) -> Vec<&MaxBox> {
        self.boxes.iter().filter(|b| b.is_object(name)).collect()
    }

    fn with_text(&self, text: &str) -> Vec<&MaxBox> {
        self.boxes.iter().filter(|b| b.text == text).collect()
    }

    /// Every (box, inlet) a message leaving `id` (through `outlet`, or any outlet) can reach, following
    /// cords box to box through any outlet.
    fn reachable(&self, id: &str, outlet: Option<usize>) -> HashSet<(String, usize)> {
        let mut reached = HashSet::new();
        let mut visited = HashSet::from([id.to_owned()]);
        let mut queue: VecDeque<(&str, Option<usize>)> = VecDeque::from([(id, outlet)]);
        while let Some((from, outlet)) = queue.pop_front() {
            for cord in self.cords.iter().filter(|c| c.from.0 == from && outlet.is_none_or(|o| c.from.1 == o)) {
                reached.insert(cord.to.clone());
                if visited.insert(cord.to.0.clone()) {
                    queue.push_back((&cord.to.0, None));
                }
            }
        }
        reached
    }

    fn reaches(&self, id: &str, outlet: Option<usize>) -> HashSet<String> {
        self.reachable(id, outlet).into_iter().map(|(id, _)| id).collect()
    }

    /// The one `udpreceive` and the `route` it feeds directly.
    fn receiver_and_route(&self) -> (&MaxBox, &MaxBox) {
        let receivers = self.objects("udpreceive");
        assert_eq!(receivers.len(), 1, "one udpreceive, not {}", receivers.len());
        let receiver = receivers[0];
        let fed: Vec<&MaxBox> = self
            .cords
            .iter()
            .filter(|c| c.from.0 == receiver.id)
            .filter_map(|c| self.get(&c.to.0))
            .filter(|b| b.is_object("route"))
            .collect();
        assert_eq!(fed.len(), 1, "udpreceive feeds one route, not {}: {fed:?}", fed.len());
        (receiver, fed[0])
    }

    /// The outlet of the address-splitting route that carries `address`.
    fn outlet_for(&self, address: &str) -> (&MaxBox, usize) {
        let (_, route) = self.receiver_and_route();
        let outlet = route.args().iter().position(|a| *a == address);
        (route, outlet.unwrap_or_else(|| panic!("{:?} has no argument {address}", route.text)))
    }
}

#[test]
fn the_file_is_a_max_patcher() {
    let patcher = patcher();
    assert_eq!(patcher.get("fileversion"), Some(&Value::from(1)), "\"fileversion\": 1, as Max saves it");
    let major = patcher.pointer("/appversion/major").and_then(Value::as_u64);
    assert!(major.is_some(), "\"appversion\" names the Max version that saved it: {:?}", patcher.get("appversion"));
    four_numbers(patcher.get("rect"), "the patcher's \"rect\" (its window)");
    for key in ["boxes", "lines"] {
        let len = patcher.get(key).and_then(Value::as_array).map(Vec::len);
        assert!(len.is_some_and(|n| n > 0), "the patcher's \"{key}\" is a non-empty array: {len:?}");
    }
}

#[test]
fn every_box_has_a_unique_id_a_maxclass_and_a_rect() {
    let patch = Patch::load(); // Parsing checks each box's maxclass, inlet and outlet counts and rect.
    let mut seen = HashSet::new();
    let twice: Vec<&str> = patch.boxes.iter().map(|b| b.id.as_str()).filter(|id| !seen.insert(*id)).collect();
    assert!(twice.is_empty(), "box ids used more than once: {twice:?}");
    for b in &patch.boxes {
        let [_, _, w, h] = b.rect;
        assert!(w > 0.0 && h > 0.0, "box {} ({:?}) has an empty patching_rect {:?}", b.id, b.text, b.rect);
    }
}

#[test]
fn every_cord_joins_an_outlet_to_an_inlet_that_exist() {
    let patch = Patch::load();
    for cord in &patch.cords {
        let (from, outlet) = &cord.from;
        let (to, inlet) = &cord.to;
        let source = patch.get(from).unwrap_or_else(|| panic!("a cord starts at box {from}, which does not exist"));
        let target = patch.get(to).unwrap_or_else(|| panic!("a cord ends at box {to}, which does not exist"));
        assert!(
            *outlet < source.outlets,
            "a cord leaves outlet {outlet} of {from} ({:?}), which has {} outlets",
            source.text,
            source.outlets
        );
        assert!(
            *inlet < target.inlets,
            "a cord enters inlet {inlet} of {to} ({:?}), which has {} inlets",
            target.text,
            target.inlets
        );
    }
}

#[test]
fn it_listens_where_the_bot_sends_by_default() {
    let defaults = Config::from_vars(std::iter::empty::<(String, String)>()).expect("the defaults are valid");
    let port = defaults.osc_targets[0].port();
    let patch = Patch::load();
    let (receiver, _) = patch.receiver_and_route();
    assert_eq!(receiver.text, format!("udpreceive {port}"), "the patch listens on the bot's default OSC port");
}

#[test]
fn one_route_splits_exactly_the_addresses_the_bot_sends() {
    let patch = Patch::load();
    let (_, route) = patch.receiver_and_route();
    assert_eq!(route.args(), [CV_ADDR, ROUTING_ADDR, HEARTBEAT_ADDR], "the route after udpreceive: {:?}", route.text);
    assert_eq!(route.outlets, 4, "route has an outlet per address and one for anything else: {:?}", route.text);
}

#[test]
fn every_heartbeat_restarts_the_three_second_watchdog_and_shows_the_bot_alive() {
    let patch = Patch::load();
    let (route, beat) = patch.outlet_for(HEARTBEAT_ADDR);
    let reached = patch.reachable(&route.id, Some(beat));
    let delays = patch.with_text("delay 3000");
    assert!(
        delays.iter().any(|d| reached.contains(&(d.id.clone(), 0))),
        "a heartbeat reaches the left inlet (bang: start or restart) of a delay 3000: {delays:?}"
    );
    let alive = patch.with_text("prepend set bot alive");
    assert!(
        alive.iter().any(|a| reached.contains(&(a.id.clone(), 0))),
        "a heartbeat shows `bot alive <instance> <seq>` through a prepend set bot alive: {alive:?}"
    );
}

#[test]
fn a_silent_bot_parks_every_output_and_says_so() {
    let patch = Patch::load();
    let (route, beat) = patch.outlet_for(HEARTBEAT_ADDR);
    let from_beats = patch.reaches(&route.id, Some(beat));
    let delay = patch.with_text("delay 3000").into_iter().find(|d| from_beats.contains(&d.id));
    let delay = delay.expect("a delay 3000 fed by the heartbeats");
    let fired = patch.reaches(&delay.id, None);
    let ramps = patch.objects("line~");
    let unparked: Vec<&str> = ramps.iter().filter(|r| !fired.contains(&r.id)).map(|r| r.id.as_str()).collect();
    assert!(unparked.is_empty(), "the delay firing reaches every line~; it misses {unparked:?}");
    let silent = patch.with_text("set bot silent");
    assert!(
        silent.iter().any(|s| s.maxclass == "message" && fired.contains(&s.id)),
        "the delay firing bangs a message box `set bot silent`: {silent:?}"
    );
}

#[test]
fn cv_drives_eight_smoothed_scaled_chains_into_the_dac() {
    let patch = Patch::load();
    let (route, cv) = patch.outlet_for(CV_ADDR);
    let from_cv = patch.reaches(&route.id, Some(cv));
    let ramps: Vec<&MaxBox> = patch.objects("line~").into_iter().filter(|r| from_cv.contains(&r.id)).collect();
    assert_eq!(ramps.len(), 8, "/cv reaches a line~ for each of the 8 ES-9 outputs, not {}", ramps.len());
    let dacs = patch.objects("dac~");
    assert_eq!(dacs.len(), 1, "one dac~, not {}", dacs.len());
    let dac = dacs[0];
    assert_eq!(dac.args(), ["1", "2", "3", "4", "5", "6", "7", "8"], "dac~ names channels 1-8: {:?}", dac.text);

    let mut channels = BTreeSet::new();
    for ramp in &ramps {
        let reached = patch.reachable(&ramp.id, None);
        let into_dac: Vec<usize> = reached.iter().filter(|(id, _)| *id == dac.id).map(|(_, inlet)| *inlet).collect();
        assert_eq!(into_dac.len(), 1, "line~ {} feeds one dac~ channel, not {into_dac:?}", ramp.id);
        let scaled = reached.iter().filter_map(|(id, _)| patch.get(id)).any(|b| b.text == "*~ 0.1");
        assert!(scaled, "line~ {} reaches the dac~ through *~ 0.1 (1.0 is 10 V on the ES-9)", ramp.id);
        channels.insert(into_dac[0]);
    }
    assert_eq!(channels, (0..8).collect::<BTreeSet<usize>>(), "the eight chains feed the eight dac~ inlets, one each");
}

#[test]
fn routing_changes_are_shown_and_printed() {
    let patch = Patch::load();
    let (route, routing) = patch.outlet_for(ROUTING_ADDR);
    let reached = patch.reaches(&route.id, Some(routing));
    let printed = patch.with_text("print cvbot-routing").into_iter().any(|p| reached.contains(&p.id));
    assert!(printed, "/routing reaches a print cvbot-routing");
    let shown = patch
        .with_text("prepend set")
        .into_iter()
        .filter(|p| reached.contains(&p.id))
        .any(|p| patch.reaches(&p.id, None).iter().filter_map(|id| patch.get(id)).any(|b| b.maxclass == "message"));
    assert!(shown, "/routing reaches a prepend set into a message box, which shows it");
}

#[test]
fn no_box_has_an_argument_placeholder_in_its_text() {
    // In a box, `#1`…`#9` stand for the patcher's arguments (0 in a top-level patch): `es9out#1` typed
    // into a route would become `es9out0`.
    let patch = Patch::load();
    let placeholders: Vec<(&str, &str)> = patch
        .boxes
        .iter()
        .filter(|b| b.text.as_bytes().windows(2).any(|w| w[0] == b'#' && w[1].is_ascii_digit()))
        .map(|b| (b.id.as_str(), b.text.as_str()))
        .collect();
    assert!(placeholders.is_empty(), "boxes with `#` followed by a digit: {placeholders:?}");
}

#[test]
fn no_two_boxes_overlap() {
    let patch = Patch::load();
    let overlap = |a: &[f64; 4], b: &[f64; 4]| {
        a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
    };
    let mut overlapping = Vec::new();
    for (n, a) in patch.boxes.iter().enumerate() {
        for b in &patch.boxes[n + 1..] {
            if overlap(&a.rect, &b.rect) {
                overlapping.push(((a.id.as_str(), a.text.as_str()), (b.id.as_str(), b.text.as_str())));
            }
        }
    }
    assert!(overlapping.is_empty(), "boxes drawn over each other: {overlapping:?}");
}
