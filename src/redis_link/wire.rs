//! The wire format: the JSON envelope the older JavaScript bots already speak, plus our optional
//! top-level additions (`v`, `id`, `seq`, `hlc`, `correlation_id`, `sig`).
//!
//! Pure: bytes in, a domain [`Event`] (or a [`DropReason`]) out, and back. Only this module and its
//! parent know the envelope; the coordinator and State only ever see `Event`s.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::catalog::{Catalog, Output, RouteError, Variable, VoltRange};
use crate::state::{Event, EventKind, Hlc, Route, Stamp};

/// Payloads larger than this are dropped unread.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Schema version of our additions.
pub const WIRE_VERSION: u64 = 1;

/// The four event channels, without the key prefix.
pub const PARAMETER_CHANNEL: &str = "cv:parameter:update";
pub const ROUTING_CHANNEL: &str = "cv:routing:change";
pub const SYSTEM_CHANNEL: &str = "cv:system:broadcast";
pub const ADMIN_CHANNEL: &str = "cv:admin:command";
/// The event channels in a fixed order (for per-channel counters).
pub const EVENT_CHANNELS: [&str; 4] = [PARAMETER_CHANNEL, ROUTING_CHANNEL, SYSTEM_CHANNEL, ADMIN_CHANNEL];

/// Why an incoming payload was dropped. Each is counted and logged at most once a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DropReason {
    #[error("payload is not JSON")]
    NotJson,
    #[error("payload is larger than 16 KiB")]
    TooLarge,
    #[error("unknown event type")]
    UnknownType,
    #[error("missing or malformed field")]
    Malformed,
    #[error("unknown variable")]
    UnknownVariable,
    #[error("unknown output")]
    UnknownOutput,
    #[error("value out of range")]
    OutOfRange,
    #[error("missing signature")]
    MissingSignature,
    #[error("bad signature")]
    BadSignature,
    #[error("route range or safe voltage outside the output's limit")]
    OutOfLimit,
    #[error("stamped too far ahead of this host's clock")]
    ClockSkew,
    #[error("signed event older than EVENT_MAX_AGE_MS (a replay?)")]
    StaleSignature,
    #[error("unknown routing action (only add and remove)")]
    UnknownAction,
    #[error("routing map with several outputs where one event is expected")]
    SeveralOutputs,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::TooLarge => "too_large",
            Self::UnknownType => "unknown_type",
            Self::Malformed => "malformed",
            Self::UnknownVariable => "unknown_variable",
            Self::UnknownOutput => "unknown_output",
            Self::OutOfRange => "out_of_range",
            Self::MissingSignature => "missing_signature",
            Self::BadSignature => "bad_signature",
            Self::OutOfLimit => "out_of_limit",
            Self::ClockSkew => "clock_skew",
            Self::StaleSignature => "stale_signature",
            Self::UnknownAction => "unknown_action",
            Self::SeveralOutputs => "several_outputs",
        }
    }

    pub const ALL: [DropReason; 14] = [
        Self::NotJson,
        Self::TooLarge,
        Self::UnknownType,
        Self::Malformed,
        Self::UnknownVariable,
        Self::UnknownOutput,
        Self::OutOfRange,
        Self::MissingSignature,
        Self::BadSignature,
        Self::OutOfLimit,
        Self::ClockSkew,
        Self::StaleSignature,
        Self::UnknownAction,
        Self::SeveralOutputs,
    ];
}

/// Where a decoded event came from: pub/sub events must be fresh when signed, while registers in the
/// state hash are old by nature (a route set an hour ago is still the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    PubSub,
    StateHash,
}

/// The time rules a decoded event must meet before it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// A stamp further ahead of our clock than this is refused (`MAX_CLOCK_SKEW_MS`).
    pub max_skew_ms: u64,
    /// With signing on, a pub/sub event older than this is refused as a replay (`EVENT_MAX_AGE_MS`).
    pub max_age_ms: Option<u64>,
}

/// How far ahead of `now_ms` an event claims to be (negative: behind), from the later of its
/// hybrid-clock stamp and its wall-clock `timestamp`.
pub fn ahead_ms(event: &Event, now_ms: u64) -> i64 {
    let claimed = Hlc::wall_ms(event.stamp.hlc).max(event.wall_ms);
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    signed(claimed).saturating_sub(signed(now_ms))
}

/// Checks a decoded event against the clock: never a stamp that would win every later write (far
/// future), and with signing on never a stale pub/sub event (a captured one, replayed).
pub fn admit(event: &Event, origin: Origin, now_ms: u64, rules: Admission) -> Result<(), DropReason> {
    let ahead = ahead_ms(event, now_ms);
    if ahead > i64::try_from(rules.max_skew_ms).unwrap_or(i64::MAX) {
        return Err(DropReason::ClockSkew);
    }
    if let (Origin::PubSub, Some(max_age)) = (origin, rules.max_age_ms)
        && now_ms.saturating_sub(Hlc::wall_ms(event.stamp.hlc)) > max_age
    {
        return Err(DropReason::StaleSignature);
    }
    Ok(())
}

/// What an incoming payload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A state event to apply (`seq` when the sender is one of us, for gap detection).
    Event { event: Event, seq: Option<u64> },
    /// An `admin_command` audit record: logged and kept in history, never applied (the matching
    /// `system_broadcast` or `routing_change` carries the state change).
    Audit { source: String, command: String },
}

/// One encoded event: where to publish it and the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub channel: &'static str,
    pub kind: &'static str,
    pub payload: String,
    /// The `admin_command` audit copy that admin actions also publish, as the older bots do.
    pub audit: Option<String>,
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies envelopes with HMAC-SHA256 over the envelope without its `sig` field.
#[derive(Clone)]
pub struct Signer {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(****)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.into() }
    }

    fn mac(&self, text: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        mac
    }

    fn sign(&self, text: &str) -> String {
        hex::encode(self.mac(text).finalize().into_bytes())
    }

    fn verify(&self, text: &str, sig_hex: &str) -> bool {
        hex::decode(sig_hex).is_ok_and(|sig| self.mac(text).verify_slice(&sig).is_ok())
    }
}

/// Encodes one of our events. `seq` numbers this instance's publications for gap detection.
pub fn encode(event: &Event, seq: u64, signer: Option<&Signer>) -> Encoded {
    if signer.is_none()
        && let EventKind::Set { variable, value } = &event.kind
    {
        return Encoded {
            channel: PARAMETER_CHANNEL,
            kind: "parameter_update",
            payload: encode_parameter_update(event, &variable.to_string(), *value, seq),
            audit: None,
        };
    }
    encode_general(event, seq, signer)
}

/// The unsigned `parameter_update` envelope written straight into one string, byte for byte what
/// [`encode_general`] makes (a property test holds them equal) without building a `Value` tree:
/// this is the one envelope sent at chat rate, and on the path of every cross-instance command.
fn encode_parameter_update(event: &Event, variable: &str, value: u8, seq: u64) -> String {
    use std::fmt::Write as _;
    let source = event.stamp.instance.as_ref();
    let mut out = String::with_capacity(192 + variable.len() + 2 * source.len() + event.user.len());
    out.push_str(r#"{"data":{"source_instance":"#);
    push_json_string(&mut out, source);
    out.push_str(r#","user":"#);
    push_json_string(&mut out, &event.user);
    let _ = write!(out, r#","value":{value},"variable":"#);
    push_json_string(&mut out, variable);
    let _ = write!(out, r#"}},"hlc":{},"id":"#, event.stamp.hlc);
    push_json_string(&mut out, &format!("{source}-{seq}"));
    let _ = write!(out, r#","seq":{seq},"timestamp":{},"type":"parameter_update","v":{WIRE_VERSION}}}"#, event.wall_ms);
    out
}

/// Appends `text` as a JSON string, escaped exactly as `serde_json` escapes it.
fn push_json_string(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Every envelope through a `serde_json::Value` tree: every type, and the signature.
fn encode_general(event: &Event, seq: u64, signer: Option<&Signer>) -> Encoded {
    let source = event.stamp.instance.as_ref();
    let user = event.user.as_ref();
    let (channel, kind, data, audit_command) = match &event.kind {
        EventKind::Set { variable, value } => (
            PARAMETER_CHANNEL,
            "parameter_update",
            json!({"variable": variable.to_string(), "value": value, "user": user, "source_instance": source}),
            None,
        ),
        EventKind::Route { output, route } => {
            let routing = match route {
                Some(r) => json!({"action": "add", "output": output.to_string(), "variable": r.variable.to_string(),
                                   "range": [r.range.low, r.range.high], "safe": r.safe}),
                None => json!({"action": "remove", "output": output.to_string()}),
            };
            (
                ROUTING_CHANNEL,
                "routing_change",
                json!({"routingData": routing, "admin": user, "source_instance": source}),
                Some(("routing", None)),
            )
        }
        EventKind::Overlay { enabled } => (
            SYSTEM_CHANNEL,
            "system_broadcast",
            json!({"action": "overlay_toggle", "enabled": enabled, "admin": user, "source_instance": source}),
            Some(("overlay_toggle", Some(*enabled))),
        ),
        EventKind::Emergency { active: true, message } => (
            SYSTEM_CHANNEL,
            "system_broadcast",
            json!({"action": "emergency_stop", "message": message, "admin": user, "source_instance": source}),
            Some(("emergency", None)),
        ),
        EventKind::Emergency { active: false, .. } => (
            SYSTEM_CHANNEL,
            "system_broadcast",
            json!({"action": "resume", "admin": user, "source_instance": source}),
            Some(("resume", None)),
        ),
        EventKind::ClearAll => (
            SYSTEM_CHANNEL,
            "system_broadcast",
            json!({"action": "clear_all", "admin": user, "source_instance": source}),
            Some(("clear", None)),
        ),
    };
    let id = format!("{source}-{seq}");
    let envelope = |kind: &str, data: Value| {
        let mut v = json!({
            "timestamp": event.wall_ms, "type": kind, "data": data,
            "v": WIRE_VERSION, "id": id, "seq": seq, "hlc": event.stamp.hlc,
        });
        if let Some(signer) = signer {
            let text = v.to_string();
            v["sig"] = Value::String(signer.sign(&text));
        }
        v.to_string()
    };
    let audit = audit_command.map(|(command, enabled)| {
        let mut data = json!({"command": command, "admin": user, "source_instance": source});
        if let Some(enabled) = enabled {
            data["enabled"] = Value::Bool(enabled);
        }
        envelope("admin_command", data)
    });
    Encoded { channel, kind, payload: envelope(kind, data), audit }
}

/// Everything one payload carries. Every envelope holds one event or audit record, except a
/// `routing_change` whose `routingData` is a map naming several outputs: one route event per output.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The event or audit record; for a routing map, the route of its first output (in name order).
    pub incoming: Incoming,
    /// The routes of a routing map's other outputs, in output name order: each has the envelope's
    /// stamp, time and user, and shares its `seq`. Empty for every other envelope.
    pub more: Vec<Event>,
}

impl Decoded {
    fn one(incoming: Incoming) -> Decoded {
        Decoded { incoming, more: Vec::new() }
    }

    /// The one event or record, or [`DropReason::SeveralOutputs`] for a routing map of several outputs
    /// (nothing of it is applied, rather than a part).
    pub fn single(self) -> Result<Incoming, DropReason> {
        if self.more.is_empty() { Ok(self.incoming) } else { Err(DropReason::SeveralOutputs) }
    }
}

/// Decodes and validates a payload from any peer, ours or an older bot, that carries one event: a
/// routing map naming several outputs is refused as [`DropReason::SeveralOutputs`] (see [`decode_all`]).
pub fn decode(payload: &[u8], catalog: &Catalog, signer: Option<&Signer>) -> Result<Incoming, DropReason> {
    decode_all(payload, catalog, signer).and_then(Decoded::single)
}

/// Decodes and validates a payload from any peer, ours or an older bot, with every event it carries.
/// A routing map is all or nothing: one unknown name or route beyond its output's limit refuses it all.
pub fn decode_all(payload: &[u8], catalog: &Catalog, signer: Option<&Signer>) -> Result<Decoded, DropReason> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DropReason::TooLarge);
    }
    if signer.is_none()
        && let Some(decoded) = decode_parameter_update(payload, catalog)
    {
        return decoded.map(Decoded::one);
    }
    decode_general(payload, catalog, signer)
}

/// Any envelope, through a `serde_json::Value` tree: every type, the signature, every drop reason.
fn decode_general(payload: &[u8], catalog: &Catalog, signer: Option<&Signer>) -> Result<Decoded, DropReason> {
    let mut root: Value = serde_json::from_slice(payload).map_err(|_| DropReason::NotJson)?;
    let obj = root.as_object_mut().ok_or(DropReason::Malformed)?;
    if let Some(signer) = signer {
        verify_and_strip(obj, signer)?;
    }
    let kind = obj.get("type").and_then(Value::as_str).ok_or(DropReason::Malformed)?.to_owned();
    let timestamp = obj.get("timestamp").and_then(Value::as_u64).ok_or(DropReason::Malformed)?;
    let data = obj.get("data").and_then(Value::as_object).ok_or(DropReason::Malformed)?;
    let source = text(data, "source_instance")?;
    if source.is_empty() {
        return Err(DropReason::Malformed);
    }
    // Events from older bots carry no HLC: their timestamp, in HLC units, orders them.
    let hlc = obj.get("hlc").and_then(Value::as_u64).unwrap_or_else(|| Hlc::from_wall_ms(timestamp));
    let seq = obj.get("seq").and_then(Value::as_u64);
    let user_field = |name: &str| data.get(name).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let mut more_kinds = Vec::new();
    let (user, kind) = match kind.as_str() {
        "parameter_update" => {
            let variable = catalog.parse_variable(text(data, "variable")?).ok_or(DropReason::UnknownVariable)?;
            let value = data.get("value").and_then(Value::as_u64).ok_or(DropReason::OutOfRange)?;
            let value = u8::try_from(value).ok().filter(|v| *v <= catalog.value_max()).ok_or(DropReason::OutOfRange)?;
            (user_field("user"), EventKind::Set { variable, value })
        }
        "routing_change" => {
            let routing = data.get("routingData").and_then(Value::as_object).ok_or(DropReason::Malformed)?;
            let mut kinds = routing_kinds(routing, catalog)?.into_iter();
            let first = kinds.next().ok_or(DropReason::Malformed)?;
            more_kinds.extend(kinds);
            (user_field("admin"), first)
        }
        "system_broadcast" => {
            let kind = match text(data, "action")? {
                "clear_all" => EventKind::ClearAll,
                "overlay_toggle" => EventKind::Overlay {
                    enabled: data.get("enabled").and_then(Value::as_bool).ok_or(DropReason::Malformed)?,
                },
                "emergency_stop" => EventKind::Emergency {
                    active: true,
                    message: data.get("message").and_then(Value::as_str).map(clean_message),
                },
                "resume" => EventKind::Emergency { active: false, message: None },
                _ => return Err(DropReason::UnknownType),
            };
            (user_field("admin"), kind)
        }
        "admin_command" => {
            let command = text(data, "command")?.to_owned();
            return Ok(Decoded::one(Incoming::Audit { source: source.to_owned(), command }));
        }
        _ => return Err(DropReason::UnknownType),
    };
    let event = Event { stamp: Stamp { hlc, instance: source.into() }, wall_ms: timestamp, user: user.into(), kind };
    let more = more_kinds.into_iter().map(|kind| Event { kind, ..event.clone() }).collect();
    Ok(Decoded { incoming: Incoming::Event { event, seq }, more })
}

/// Removes `sig` from a signed object and checks it: HMAC-SHA256 over the compact JSON of the rest.
fn verify_and_strip(obj: &mut Map<String, Value>, signer: &Signer) -> Result<(), DropReason> {
    let sig = match obj.remove("sig") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(DropReason::BadSignature),
        None => return Err(DropReason::MissingSignature),
    };
    if signer.verify(&Value::Object(obj.clone()).to_string(), &sig) { Ok(()) } else { Err(DropReason::BadSignature) }
}

/// The hot case — an unsigned `parameter_update` — decoded into borrowed typed fields, without
/// building a `serde_json::Value` tree (which costs an allocation per key and string). `None` when
/// the payload is anything else or anything unusual, so the general path decides (and names the
/// reason for a drop); for every payload this accepts, both paths give the same event.
fn decode_parameter_update(payload: &[u8], catalog: &Catalog) -> Option<Result<Incoming, DropReason>> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        timestamp: u64,
        #[serde(borrow)]
        data: Data<'a>,
        hlc: Option<u64>,
        seq: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        variable: std::borrow::Cow<'a, str>,
        value: u64,
        #[serde(borrow, default)]
        user: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        source_instance: std::borrow::Cow<'a, str>,
    }
    let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    if envelope.kind != "parameter_update" || envelope.data.source_instance.is_empty() {
        return None;
    }
    let data = envelope.data;
    let Some(variable) = catalog.parse_variable(&data.variable) else { return Some(Err(DropReason::UnknownVariable)) };
    let Some(value) = u8::try_from(data.value).ok().filter(|v| *v <= catalog.value_max()) else {
        return Some(Err(DropReason::OutOfRange));
    };
    let hlc = envelope.hlc.unwrap_or_else(|| Hlc::from_wall_ms(envelope.timestamp));
    let event = Event {
        stamp: Stamp { hlc, instance: data.source_instance.as_ref().into() },
        wall_ms: envelope.timestamp,
        user: data.user.as_deref().unwrap_or("unknown").into(),
        kind: EventKind::Set { variable, value },
    };
    Some(Ok(Incoming::Event { event, seq: envelope.seq }))
}

fn text<'a>(data: &'a Map<String, Value>, field: &str) -> Result<&'a str, DropReason> {
    data.get(field).and_then(Value::as_str).ok_or(DropReason::Malformed)
}

/// The keys that make a `routingData` object one route change (ours, or an older bot's overlay
/// message, which names the variable `lzxVariable`) rather than a map of outputs.
const ROUTE_CHANGE_KEYS: [&str; 4] = ["action", "output", "variable", "lzxVariable"];

/// The route events a `routingData` object asks for. Three shapes, each validated like every other
/// source (catalogue names, `Catalog::check_route`):
///
/// * ours: `{"action": "add", "output", "variable", "range"?, "safe"?}` or `{"action": "remove", "output"}`;
/// * older bots' overlay messages: the same with `lzxVariable` for `variable` (both may be given if
///   they name the same variable);
/// * older bots' routing table: `{"es9out#3": "doorway#1.gain", …}`, output → variable, at most as
///   many entries as the catalogue has outputs, each one an `add` with the output's default range.
///
/// An object mixing the first two with a map entry is refused; so is any other action than `add` or
/// `remove` ([`DropReason::UnknownAction`]).
fn routing_kinds(routing: &Map<String, Value>, catalog: &Catalog) -> Result<Vec<EventKind>, DropReason> {
    if ROUTE_CHANGE_KEYS.iter().any(|k| routing.contains_key(*k)) {
        if routing.keys().any(|k| catalog.output(k).is_some()) {
            return Err(DropReason::Malformed);
        }
        return routing_change(routing, catalog).map(|kind| vec![kind]);
    }
    routing_map(routing, catalog)
}

/// One route change: `add` or `remove`.
fn routing_change(routing: &Map<String, Value>, catalog: &Catalog) -> Result<EventKind, DropReason> {
    let action = text(routing, "action")?;
    if !matches!(action, "add" | "remove") {
        return Err(DropReason::UnknownAction);
    }
    let output = catalog.output(text(routing, "output")?).ok_or(DropReason::UnknownOutput)?;
    if action == "remove" {
        return Ok(EventKind::Route { output, route: None });
    }
    let named = |field: &str| -> Result<Option<Variable>, DropReason> {
        match routing.get(field) {
            None => Ok(None),
            Some(v) => {
                let name = v.as_str().ok_or(DropReason::Malformed)?;
                catalog.parse_variable(name).map(Some).ok_or(DropReason::UnknownVariable)
            }
        }
    };
    let variable = match (named("variable")?, named("lzxVariable")?) {
        (Some(v), None) | (None, Some(v)) => v,
        (Some(a), Some(b)) if a == b => a,
        _ => return Err(DropReason::Malformed),
    };
    let default = catalog.output_range(&output);
    let range = match routing.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        None => default,
        Some([lo, hi]) => {
            let (Some(low), Some(high)) = (lo.as_f64(), hi.as_f64()) else { return Err(DropReason::Malformed) };
            // A value beyond f32 becomes infinite and is refused below as out of limit.
            #[allow(clippy::cast_possible_truncation)] // Voltages are small; f32 is what OSC sends.
            VoltRange { low: low as f32, high: high as f32 }
        }
        Some(_) => return Err(DropReason::Malformed),
    };
    let safe = match routing.get("safe") {
        None | Some(Value::Null) => range.low,
        #[allow(clippy::cast_possible_truncation)] // As above.
        Some(v) => v.as_f64().ok_or(DropReason::Malformed)? as f32,
    };
    checked_route(catalog, output, Route { variable, range, safe })
}

/// An older bot's routing table, output → variable: one route per output, each with the output's
/// default range and its bottom as the safe voltage, in output name order. All or nothing.
fn routing_map(routing: &Map<String, Value>, catalog: &Catalog) -> Result<Vec<EventKind>, DropReason> {
    // Bounded before any name is looked up: no map can name more outputs than exist.
    if routing.is_empty() || routing.len() > catalog.output_count() {
        return Err(DropReason::Malformed);
    }
    let mut routes: std::collections::BTreeMap<Output, Variable> = std::collections::BTreeMap::new();
    for (name, value) in routing {
        let output = catalog.output(name).ok_or(DropReason::UnknownOutput)?;
        let variable = catalog.parse_variable(value.as_str().ok_or(DropReason::Malformed)?);
        let variable = variable.ok_or(DropReason::UnknownVariable)?;
        // One jack in two spellings (`es9out#1`, `ES9OUT#1`): which route would win is no one's guess.
        if routes.insert(output, variable).is_some() {
            return Err(DropReason::Malformed);
        }
    }
    routes
        .into_iter()
        .map(|(output, variable)| {
            let range = catalog.output_range(&output);
            checked_route(catalog, output, Route { variable, range, safe: range.low })
        })
        .collect()
}

/// The route, once `Catalog::check_route` (the one limit rule) allows it on `output`.
fn checked_route(catalog: &Catalog, output: Output, route: Route) -> Result<EventKind, DropReason> {
    match catalog.check_route(&output, route.range, route.safe) {
        Ok(()) => Ok(EventKind::Route { output, route: Some(route) }),
        Err(RouteError::BadRange { .. }) => Err(DropReason::OutOfRange),
        Err(RouteError::RangeOutOfLimit { .. } | RouteError::SafeOutOfRange { .. }) => Err(DropReason::OutOfLimit),
    }
}

fn clean_message(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(crate::command::MAX_MESSAGE_CHARS).collect()
}

/// A request on one instance's own command channel (`cv:instance:{id}:command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceCommand {
    /// Reload the state hash and merge it.
    Resync,
    /// Publish a status report on `cv:instance:status`.
    Status,
}

impl InstanceCommand {
    fn name(self) -> &'static str {
        match self {
            Self::Resync => "resync",
            Self::Status => "status",
        }
    }
}

/// `{"command": "resync", "timestamp": …}`, signed like an envelope when `signer` is set.
pub fn encode_command(command: InstanceCommand, wall_ms: u64, signer: Option<&Signer>) -> String {
    let mut v = json!({"command": command.name(), "timestamp": wall_ms});
    if let Some(signer) = signer {
        let text = v.to_string();
        v["sig"] = Value::String(signer.sign(&text));
    }
    v.to_string()
}

/// Decodes a request on our command channel. With a signing key it must be signed and fresh (its
/// `timestamp` no older than `max_age_ms` and not in the future beyond it), so neither an
/// unsigned client of the same Redis nor a replayed capture can make an instance act.
pub fn decode_command(
    payload: &[u8],
    signer: Option<&Signer>,
    now_ms: u64,
    max_age_ms: u64,
) -> Result<InstanceCommand, DropReason> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DropReason::TooLarge);
    }
    let mut root: Value = serde_json::from_slice(payload).map_err(|_| DropReason::NotJson)?;
    let obj = root.as_object_mut().ok_or(DropReason::Malformed)?;
    if let Some(signer) = signer {
        verify_and_strip(obj, signer)?;
        let at = obj.get("timestamp").and_then(Value::as_u64).ok_or(DropReason::Malformed)?;
        if now_ms.abs_diff(at) > max_age_ms {
            return Err(DropReason::StaleSignature);
        }
    }
    match obj.get("command").and_then(Value::as_str) {
        Some("resync") => Ok(InstanceCommand::Resync),
        Some("status") => Ok(InstanceCommand::Status),
        _ => Err(DropReason::UnknownType),
    }
}

/// The register an event writes (the field of the state hash).
pub fn register_key(kind: &EventKind) -> String {
    match kind {
        EventKind::Set { variable, .. } => format!("p:{variable}"),
        EventKind::Route { output, .. } => format!("r:{output}"),
        EventKind::Overlay { .. } => "overlay".to_owned(),
        EventKind::Emergency { .. } => "emergency".to_owned(),
        EventKind::ClearAll => "clear".to_owned(),
    }
}

/// A string that orders like `(hlc, instance)` under any collation: 20 zero-padded digits, then the
/// instance name as lower-case hex (digits and `a-f` only, so locale-aware Lua comparison agrees). The state script compares these to write only-if-newer.
pub fn order_key(stamp: &Stamp) -> String {
    format!("{:020}{}", stamp.hlc, hex::encode(stamp.instance.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::builtin()
    }

    fn ev(kind: EventKind) -> Event {
        Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_703_097_600_000) + 3, instance: "bot-001".into() },
            wall_ms: 1_703_097_600_000,
            user: "ann".into(),
            kind,
        }
    }

    fn round_trip(event: &Event, signer: Option<&Signer>) -> Event {
        let encoded = encode(event, 7, signer);
        match decode(encoded.payload.as_bytes(), &catalog(), signer).expect("decodes") {
            Incoming::Event { event, seq } => {
                assert_eq!(seq, Some(7));
                event
            }
            Incoming::Audit { .. } => panic!("expected an event"),
        }
    }

    #[test]
    fn every_event_kind_round_trips() {
        let c = catalog();
        let var = c.parse_variable("doorway#1.threshold").expect("var");
        let out = c.output("es9out#1").expect("out");
        let kinds = vec![
            EventKind::Set { variable: var.clone(), value: 127 },
            EventKind::Route { output: out.clone(), route: Some(Route::new(var.clone(), VoltRange::LZX)) },
            EventKind::Route {
                output: out.clone(),
                route: Some(Route { variable: var, range: VoltRange { low: 0.8, high: 0.2 }, safe: 0.5 }),
            },
            EventKind::Route { output: out, route: None },
            EventKind::Overlay { enabled: false },
            EventKind::Emergency { active: true, message: Some("too bright".into()) },
            EventKind::Emergency { active: false, message: None },
            EventKind::ClearAll,
        ];
        let signer = Signer::new(b"k");
        for kind in kinds {
            let e = ev(kind);
            assert_eq!(round_trip(&e, None), e);
            assert_eq!(round_trip(&e, Some(&signer)), e);
        }
    }

    #[test]
    fn the_seed_envelope_is_exactly_the_older_bots_shape() {
        let c = catalog();
        let e = ev(EventKind::Set { variable: c.parse_variable("doorway#1.gain").expect("var"), value: 5 });
        let v: Value = serde_json::from_str(&encode(&e, 1, None).payload).expect("json");
        assert_eq!(v["type"], "parameter_update");
        assert_eq!(v["timestamp"], 1_703_097_600_000u64);
        assert_eq!(
            v["data"],
            json!({"variable": "doorway#1.gain", "value": 5, "user": "ann", "source_instance": "bot-001"})
        );
        assert_eq!(v["id"], "bot-001-1");
    }

    #[test]
    fn an_older_bots_event_without_extensions_is_ordered_by_timestamp() {
        let raw = r#"{"timestamp": 1703097600000, "type": "parameter_update",
            "data": {"variable": "doorway#1.threshold", "value": 89, "user": "old", "source_instance": "js-bot"}}"#;
        let Ok(Incoming::Event { event, seq }) = decode(raw.as_bytes(), &catalog(), None) else {
            panic!("accepted");
        };
        assert_eq!(seq, None);
        assert_eq!(event.stamp.hlc, Hlc::from_wall_ms(1_703_097_600_000));
        assert_eq!(event.stamp.instance.as_ref(), "js-bot");
        let raw_stop = r#"{"timestamp": 1, "type": "system_broadcast",
            "data": {"action": "emergency_stop", "admin": "mod", "message": "Emergency stop activated", "source_instance": "js"}}"#;
        assert!(matches!(
            decode(raw_stop.as_bytes(), &catalog(), None),
            Ok(Incoming::Event { event: Event { kind: EventKind::Emergency { active: true, .. }, .. }, .. })
        ));
    }

    #[test]
    fn admin_actions_carry_an_audit_copy_that_is_not_applied() {
        let encoded = encode(&ev(EventKind::ClearAll), 2, None);
        let audit = encoded.audit.expect("audit copy");
        assert_eq!(
            decode(audit.as_bytes(), &catalog(), None),
            Ok(Incoming::Audit { source: "bot-001".into(), command: "clear".into() })
        );
    }

    #[test]
    fn poison_payloads_are_refused_with_their_reason() {
        let c = catalog();
        let base = |data: &str, kind: &str| format!(r#"{{"timestamp": 1, "type": "{kind}", "data": {data}}}"#);
        let cases: Vec<(String, DropReason)> = vec![
            ("not json at all".into(), DropReason::NotJson),
            ("[1,2,3]".into(), DropReason::Malformed),
            (format!("{{\"x\": \"{}\"}}", "a".repeat(17_000)), DropReason::TooLarge),
            (base(r#"{"source_instance": "b"}"#, "dance_party"), DropReason::UnknownType),
            (
                base(r#"{"variable": "nope#1.x", "value": 1, "source_instance": "b"}"#, "parameter_update"),
                DropReason::UnknownVariable,
            ),
            (
                base(r#"{"variable": "doorway#1.gain", "value": 128, "source_instance": "b"}"#, "parameter_update"),
                DropReason::OutOfRange,
            ),
            (
                base(r#"{"variable": "doorway#1.gain", "value": -1, "source_instance": "b"}"#, "parameter_update"),
                DropReason::OutOfRange,
            ),
            (
                base(r#"{"variable": "doorway#1.gain", "value": "5", "source_instance": "b"}"#, "parameter_update"),
                DropReason::OutOfRange,
            ),
            (base(r#"{"variable": "doorway#1.gain", "value": 5}"#, "parameter_update"), DropReason::Malformed),
            (
                base(
                    r#"{"routingData": {"action": "add", "output": "es9out#99", "variable": "doorway#1.gain"}, "source_instance": "b"}"#,
                    "routing_change",
                ),
                DropReason::UnknownOutput,
            ),
            (
                base(r#"{"action": "launch_rockets", "source_instance": "b"}"#, "system_broadcast"),
                DropReason::UnknownType,
            ),
        ];
        for (payload, reason) in cases {
            assert_eq!(decode(payload.as_bytes(), &c, None), Err(reason), "{payload:.80}");
        }
    }

    #[test]
    fn a_route_outside_the_output_limit_is_refused_however_it_is_written() {
        let c = catalog();
        let route = |extra: &str| {
            format!(
                r#"{{"timestamp": 1, "type": "routing_change", "data": {{"routingData": {{"action": "add",
                "output": "es9out#1", "variable": "doorway#1.gain"{extra}}}, "source_instance": "b"}}}}"#
            )
        };
        for (extra, reason) in [
            (r#", "range": [-1000, 1000], "safe": 1000"#, DropReason::OutOfLimit),
            (r#", "range": [0, 3e38]"#, DropReason::OutOfLimit),
            (r#", "range": [0, 1e300]"#, DropReason::OutOfLimit),
            (r#", "safe": 1000"#, DropReason::OutOfLimit),
            (r#", "safe": -0.5"#, DropReason::OutOfLimit),
            (r#", "safe": "high""#, DropReason::Malformed),
            (r#", "range": [0.5, 0.5]"#, DropReason::OutOfRange),
        ] {
            assert_eq!(decode(route(extra).as_bytes(), &c, None), Err(reason), "{extra}");
        }
        assert!(decode(route(r#", "range": [1, 0], "safe": 1"#).as_bytes(), &c, None).is_ok(), "a falling range");
        assert!(decode(route(r#", "safe": null"#).as_bytes(), &c, None).is_ok());
    }

    /// A `routing_change` envelope from an older bot with `routing_data` as its `routingData`.
    fn routing_change(routing_data: &Value) -> String {
        json!({"timestamp": 1_703_097_600_000u64, "type": "routing_change",
            "data": {"routingData": routing_data, "admin": "oldmod", "source_instance": "js-bot"}})
        .to_string()
    }

    fn route_to(output: &str, variable: &str) -> EventKind {
        let c = catalog();
        let output = c.output(output).expect("output");
        let range = c.output_range(&output);
        let route = Route { variable: c.parse_variable(variable).expect("variable"), range, safe: range.low };
        EventKind::Route { output, route: Some(route) }
    }

    fn kind_of(decoded: Result<Incoming, DropReason>) -> Result<EventKind, DropReason> {
        match decoded? {
            Incoming::Event { event, .. } => Ok(event.kind),
            Incoming::Audit { .. } => panic!("an event, not an audit record"),
        }
    }

    #[test]
    fn older_bots_overlay_shaped_routing_data_is_a_route_change() {
        let c = catalog();
        let decode_kind = |data: Value| kind_of(decode(routing_change(&data).as_bytes(), &c, None));
        // As the older bot's overlay message is written, extra keys and all.
        let add = json!({"type": "routing_update", "output": "es9out#3", "lzxVariable": "doorway#1.gain",
            "action": "add", "timestamp": 1_703_097_600_000u64});
        assert_eq!(decode_kind(add), Ok(route_to("es9out#3", "doorway#1.gain")));
        assert_eq!(
            decode_kind(json!({"output": "ES9OUT#8", "lzxVariable": "angles#1.inputjack#1", "action": "add"})),
            Ok(route_to("es9out#8", "angles#1.inputJack#1"))
        );
        let remove = json!({"type": "routing_update", "output": "es9out#3", "action": "remove"});
        let output = c.output("es9out#3").expect("output");
        assert_eq!(decode_kind(remove), Ok(EventKind::Route { output: output.clone(), route: None }));
        // Our shape and theirs at once: fine when both name the same variable, in any spelling.
        let both = json!({"action": "add", "output": "es9out#3", "variable": "arch#1.inputJack#2",
            "lzxVariable": "arch#1.INPUTJACK#2"});
        assert_eq!(decode_kind(both), Ok(route_to("es9out#3", "arch#1.inputJack#2")));
        // The range and safe voltage of our shape apply to theirs too, and so does the output's limit.
        let ranged = json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.gain",
            "range": [0.8, 0.2], "safe": 0.5});
        let route = Route {
            variable: c.parse_variable("doorway#1.gain").expect("var"),
            range: VoltRange { low: 0.8, high: 0.2 },
            safe: 0.5,
        };
        assert_eq!(decode_kind(ranged), Ok(EventKind::Route { output, route: Some(route) }));
        let refused = [
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.gain", "range": [-5, 5]}),
                DropReason::OutOfLimit,
            ),
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.gain", "safe": 2}),
                DropReason::OutOfLimit,
            ),
            (
                json!({"action": "add", "output": "es9out#99", "lzxVariable": "doorway#1.gain"}),
                DropReason::UnknownOutput,
            ),
            (json!({"action": "remove", "output": "es9out#99"}), DropReason::UnknownOutput),
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.nope"}),
                DropReason::UnknownVariable,
            ),
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.GAIN"}),
                DropReason::UnknownVariable,
            ),
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "angles#1.inputjack#17"}),
                DropReason::UnknownVariable,
            ),
            (json!({"action": "add", "output": "es9out#3"}), DropReason::Malformed),
            (json!({"action": "add", "output": "es9out#3", "lzxVariable": 7}), DropReason::Malformed),
            (json!({"action": "add", "output": "es9out#3", "lzxVariable": null}), DropReason::Malformed),
            (json!({"action": "add", "output": "es9out#3", "lzxVariable": ["doorway#1.gain"]}), DropReason::Malformed),
            (json!({"action": "add", "output": ["es9out#3"], "lzxVariable": "doorway#1.gain"}), DropReason::Malformed),
            (json!({"action": "add", "lzxVariable": "doorway#1.gain"}), DropReason::Malformed),
            (json!({"output": "es9out#3", "lzxVariable": "doorway#1.gain"}), DropReason::Malformed),
            (json!({"lzxVariable": "doorway#1.gain"}), DropReason::Malformed),
            (json!({"action": 1, "output": "es9out#3", "lzxVariable": "doorway#1.gain"}), DropReason::Malformed),
            // Two different variables for one route.
            (
                json!({"action": "add", "output": "es9out#3", "variable": "doorway#1.gain", "lzxVariable": "doorway#1.threshold"}),
                DropReason::Malformed,
            ),
            // A route change with a map entry beside it: which one is meant?
            (
                json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.gain", "es9out#4": "doorway#1.gain"}),
                DropReason::Malformed,
            ),
            (json!({"action": "remove", "output": "es9out#3", "ES9OUT#4": "doorway#1.gain"}), DropReason::Malformed),
        ];
        for (data, reason) in refused {
            assert_eq!(decode_kind(data.clone()), Err(reason), "{data}");
        }
    }

    #[test]
    fn an_unknown_routing_action_has_its_own_reason_in_every_shape() {
        let c = catalog();
        for action in ["set", "clear", "update", "ADD", "Remove", "", "add ", "launch_rockets"] {
            for data in [
                json!({"action": action, "output": "es9out#3", "lzxVariable": "doorway#1.gain"}),
                json!({"action": action, "output": "es9out#3", "variable": "doorway#1.gain"}),
                json!({"action": action, "output": "es9out#3"}),
                json!({"action": action}),
            ] {
                assert_eq!(
                    decode(routing_change(&data).as_bytes(), &c, None),
                    Err(DropReason::UnknownAction),
                    "{data}"
                );
            }
        }
        assert_eq!(DropReason::UnknownAction.label(), "unknown_action");
    }

    #[test]
    fn a_routing_map_is_one_route_per_output_all_or_nothing() {
        let c = catalog();
        let one = json!({"es9out#3": "doorway#1.gain"});
        assert_eq!(
            kind_of(decode(routing_change(&one).as_bytes(), &c, None)),
            Ok(route_to("es9out#3", "doorway#1.gain"))
        );
        let jack = json!({"ES9OUT#8": "angles#1.inputjack#1"});
        assert_eq!(
            kind_of(decode(routing_change(&jack).as_bytes(), &c, None)),
            Ok(route_to("es9out#8", "angles#1.inputJack#1"))
        );

        let several = routing_change(&json!({"esx8cv#1.out#2": "passage#1.thru#2", "es9out#3": "doorway#1.gain",
            "es9out#1": "doorway#1.threshold"}));
        let Ok(Decoded { incoming: Incoming::Event { event, seq: None }, more }) =
            decode_all(several.as_bytes(), &c, None)
        else {
            panic!("decoded");
        };
        let kinds: Vec<EventKind> = std::iter::once(&event).chain(&more).map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                route_to("es9out#1", "doorway#1.threshold"),
                route_to("es9out#3", "doorway#1.gain"),
                route_to("esx8cv#1.out#2", "passage#1.thru#2")
            ],
            "one route per output, in output order"
        );
        for e in &more {
            assert_eq!(
                (&e.stamp, e.wall_ms, &e.user),
                (&event.stamp, event.wall_ms, &event.user),
                "one envelope, one stamp"
            );
        }
        assert_eq!(event.stamp, Stamp { hlc: Hlc::from_wall_ms(1_703_097_600_000), instance: "js-bot".into() });
        assert_eq!(event.user.as_ref(), "oldmod");
        // Where one event is expected, several are refused whole rather than applied in part.
        assert_eq!(decode(several.as_bytes(), &c, None), Err(DropReason::SeveralOutputs));

        let every_output: Map<String, Value> =
            c.outputs().iter().map(|o| (o.to_string(), Value::String("doorway#1.gain".into()))).collect();
        let Ok(all) = decode_all(routing_change(&Value::Object(every_output.clone())).as_bytes(), &c, None) else {
            panic!("a map of every output is fine");
        };
        assert_eq!(all.more.len() + 1, c.output_count());
        let mut too_many = every_output;
        too_many.insert("es9out#9".into(), Value::String("doorway#1.gain".into()));
        let refused = [
            (Value::Object(too_many), DropReason::Malformed),
            (json!({}), DropReason::Malformed),
            (json!({"es9out#3": "doorway#1.gain", "es9out#99": "doorway#1.gain"}), DropReason::UnknownOutput),
            (json!({"es9out#3": "doorway#1.gain", "type": "routing_update"}), DropReason::UnknownOutput),
            (json!({"es9out#3": "doorway#1.gain", "es9out#4": "doorway#1.nope"}), DropReason::UnknownVariable),
            (json!({"es9out#3": "doorway#1.gain", "es9out#4": "angles#1.inputjack#99"}), DropReason::UnknownVariable),
            (json!({"es9out#3": "doorway#1.gain", "ES9OUT#3": "doorway#1.threshold"}), DropReason::Malformed),
            (json!({"es9out#3": 5}), DropReason::Malformed),
            (json!({"es9out#3": null}), DropReason::Malformed),
            (json!({"es9out#3": ["doorway#1.gain"]}), DropReason::Malformed),
            (json!({"es9out#3": {"variable": "doorway#1.gain"}}), DropReason::Malformed),
            (json!({"es9out#3": true}), DropReason::Malformed),
        ];
        for (data, reason) in refused {
            assert_eq!(decode_all(routing_change(&data).as_bytes(), &c, None), Err(reason), "{data:.120}");
            assert_eq!(decode(routing_change(&data).as_bytes(), &c, None), Err(reason), "{data:.120}");
        }
    }

    #[test]
    fn routing_data_that_is_not_an_object_is_malformed() {
        let c = catalog();
        for data in [
            json!([]),
            json!([{"es9out#3": "doorway#1.gain"}]),
            json!(["es9out#3", "doorway#1.gain"]),
            json!(3),
            json!(-1.5),
            json!("es9out#3 → doorway#1.gain"),
            json!(null),
            json!(true),
        ] {
            assert_eq!(decode(routing_change(&data).as_bytes(), &c, None), Err(DropReason::Malformed), "{data}");
        }
        let missing = r#"{"timestamp": 1, "type": "routing_change", "data": {"source_instance": "js"}}"#;
        assert_eq!(decode(missing.as_bytes(), &c, None), Err(DropReason::Malformed));
    }

    #[test]
    fn the_new_shapes_are_held_to_signatures_like_any_envelope() {
        let c = catalog();
        let signer = Signer::new(b"k");
        let map = routing_change(&json!({"es9out#3": "doorway#1.gain"}));
        assert_eq!(decode(map.as_bytes(), &c, Some(&signer)), Err(DropReason::MissingSignature));
        let mut v: Value = serde_json::from_str(&map).expect("json");
        v["sig"] = Value::String(signer.sign(&v.to_string()));
        assert_eq!(
            kind_of(decode(v.to_string().as_bytes(), &c, Some(&signer))),
            Ok(route_to("es9out#3", "doorway#1.gain"))
        );
    }

    #[test]
    fn every_drop_reason_has_its_own_label() {
        let labels: std::collections::BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        assert!(labels.contains("unknown_action") && labels.contains("several_outputs"));
    }

    #[test]
    fn every_other_envelope_carries_exactly_one_event() {
        let c = catalog();
        let var = c.parse_variable("doorway#1.gain").expect("var");
        let out = c.output("es9out#1").expect("out");
        for kind in [
            EventKind::Set { variable: var.clone(), value: 9 },
            EventKind::Route { output: out.clone(), route: Some(Route::new(var, VoltRange::LZX)) },
            EventKind::Route { output: out, route: None },
            EventKind::ClearAll,
        ] {
            let payload = encode(&ev(kind), 1, None).payload;
            let all = decode_all(payload.as_bytes(), &c, None).expect("decodes");
            assert!(all.more.is_empty());
            assert_eq!(Ok(all.incoming), decode(payload.as_bytes(), &c, None));
        }
    }

    #[test]
    fn admission_refuses_far_future_stamps_and_stale_signed_pubsub_events() {
        let now = 1_800_000_000_000u64;
        let at = |wall_ms: u64| Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(wall_ms) + 1, instance: "b".into() },
            wall_ms,
            user: "u".into(),
            kind: EventKind::ClearAll,
        };
        let open = Admission { max_skew_ms: 10_000, max_age_ms: None };
        let signed = Admission { max_age_ms: Some(60_000), ..open };
        assert_eq!(admit(&at(now + 10_000), Origin::PubSub, now, open), Ok(()));
        assert_eq!(admit(&at(now + 10_001), Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        assert_eq!(admit(&at(now + 20_000), Origin::StateHash, now, open), Err(DropReason::ClockSkew));
        // The saturating case: a timestamp of 2^53 ms, as one hostile event sent.
        let huge = Event { stamp: Stamp { hlc: u64::MAX, instance: "b".into() }, ..at(now) };
        assert_eq!(admit(&huge, Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        // A plausible stamp with a far-future display timestamp is refused too.
        let lying = Event { wall_ms: now + 3_600_000, ..at(now) };
        assert_eq!(admit(&lying, Origin::PubSub, now, open), Err(DropReason::ClockSkew));
        assert_eq!(admit(&at(now - 3_600_000), Origin::PubSub, now, open), Ok(()), "old is fine unsigned");
        assert_eq!(admit(&at(now - 60_001), Origin::PubSub, now, signed), Err(DropReason::StaleSignature));
        assert_eq!(admit(&at(now - 59_000), Origin::PubSub, now, signed), Ok(()));
        assert_eq!(admit(&at(now - 3_600_000), Origin::StateHash, now, signed), Ok(()), "registers are old by nature");
        assert_eq!(ahead_ms(&at(now + 1500), now), 1500);
        assert_eq!(ahead_ms(&at(now - 1500), now), -1500);
    }

    #[test]
    fn signatures_are_required_and_checked_when_a_key_is_set() {
        let c = catalog();
        let signer = Signer::new(b"secret");
        let e = ev(EventKind::Overlay { enabled: true });
        let unsigned = encode(&e, 1, None).payload;
        assert_eq!(decode(unsigned.as_bytes(), &c, Some(&signer)), Err(DropReason::MissingSignature));
        let wrong = encode(&e, 1, Some(&Signer::new(b"other"))).payload;
        assert_eq!(decode(wrong.as_bytes(), &c, Some(&signer)), Err(DropReason::BadSignature));
        let tampered = encode(&e, 1, Some(&signer)).payload.replace("\"enabled\":true", "\"enabled\":false");
        assert_eq!(decode(tampered.as_bytes(), &c, Some(&signer)), Err(DropReason::BadSignature));
    }

    /// Found by the envelope fuzz target: signed routes with ranges such as `[0.012036108411848545, 5]`
    /// failed verification at every peer until `serde_json` parsed floats exactly (`float_roundtrip`).
    #[test]
    fn signed_routes_with_any_voltage_verify() {
        let text = r#"{"format": 1, "modules": [{"name": "doorway", "parameters": ["gain"]}],
            "outputs": [{"group": "g", "range": [0, 1], "limit": [-10, 10], "names": ["es9out#1"]}]}"#;
        let c = Catalog::parse(text, crate::catalog::CatalogSource::Embedded).expect("catalogue");
        let signer = Signer::new(b"k");
        let (out, var) = (c.output("es9out#1").expect("out"), c.parse_variable("doorway#1.gain").expect("var"));
        for i in 0..2000u16 {
            let range = VoltRange { low: f32::from(i) / 997.0, high: 5.0 };
            let route = Route { variable: var.clone(), range, safe: range.low };
            let e = ev(EventKind::Route { output: out.clone(), route: Some(route) });
            let payload = encode(&e, 1, Some(&signer)).payload;
            assert!(decode(payload.as_bytes(), &c, Some(&signer)).is_ok(), "{payload}");
        }
    }

    #[test]
    fn instance_commands_must_be_signed_and_fresh_when_a_key_is_set() {
        let now = 1_800_000_000_000u64;
        let signer = Signer::new(b"secret");
        let plain = br#"{"command": "resync"}"#;
        assert_eq!(decode_command(plain, None, now, 60_000), Ok(InstanceCommand::Resync));
        assert_eq!(decode_command(plain, Some(&signer), now, 60_000), Err(DropReason::MissingSignature));
        let signed = encode_command(InstanceCommand::Status, now - 1_000, Some(&signer));
        assert_eq!(decode_command(signed.as_bytes(), Some(&signer), now, 60_000), Ok(InstanceCommand::Status));
        let replayed = encode_command(InstanceCommand::Resync, now - 61_000, Some(&signer));
        assert_eq!(decode_command(replayed.as_bytes(), Some(&signer), now, 60_000), Err(DropReason::StaleSignature));
        let forged = encode_command(InstanceCommand::Resync, now, Some(&Signer::new(b"guess")));
        assert_eq!(decode_command(forged.as_bytes(), Some(&signer), now, 60_000), Err(DropReason::BadSignature));
        assert_eq!(decode_command(br#"{"command": "reboot"}"#, None, now, 60_000), Err(DropReason::UnknownType));
        assert_eq!(decode_command(b"nope", None, now, 60_000), Err(DropReason::NotJson));
    }

    #[test]
    fn order_keys_sort_like_stamps() {
        let mk = |hlc, i: &str| Stamp { hlc, instance: i.into() };
        let stamps = [mk(1, "b"), mk(1, "ba"), mk(2, "a"), mk(10, "a"), mk(u64::MAX >> 6, "z"), mk(1, "a")];
        let mut by_stamp = stamps.to_vec();
        by_stamp.sort();
        let mut by_key = stamps.to_vec();
        by_key.sort_by_key(order_key);
        assert_eq!(by_stamp, by_key);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// `routingData` as a hostile client might write it: any JSON, biased towards real names.
        fn routing_data() -> impl Strategy<Value = Value> {
            let name = prop_oneof![
                Just("es9out#3".to_owned()),
                Just("ES9OUT#3".to_owned()),
                Just("esx8cv#1.out#2".to_owned()),
                Just("doorway#1.gain".to_owned()),
                Just("angles#1.inputjack#1".to_owned()),
                Just("action".to_owned()),
                Just("output".to_owned()),
                Just("lzxVariable".to_owned()),
                Just("variable".to_owned()),
                Just("add".to_owned()),
                Just("remove".to_owned()),
                "[a-zA-Z#0-9.]{0,12}",
            ];
            let leaf = prop_oneof![
                name.clone().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                (-1e40f64..1e40).prop_map(Value::from),
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
            ];
            leaf.prop_recursive(3, 96, 8, move |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(name.clone(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn the_fast_path_agrees_with_the_general_one(
                var in "(doorway#[0-9]\\.(gain|threshold)|nope#1\\.x)", value in 0u64..300,
                user in proptest::option::of("[a-z\\\\\"]{0,8}"), hlc in proptest::option::of(0u64..u64::MAX),
                seq in proptest::option::of(0u64..10),
            ) {
                let mut v = serde_json::json!({"timestamp": 1_700_000_000_000u64, "type": "parameter_update",
                    "data": {"variable": var, "value": value, "source_instance": "peer"}});
                if let Some(u) = &user { v["data"]["user"] = serde_json::Value::String(u.clone()); }
                if let Some(h) = hlc { v["hlc"] = h.into(); }
                if let Some(s) = seq { v["seq"] = s.into(); }
                let payload = v.to_string();
                let catalog = Catalog::builtin();
                let fast = decode_parameter_update(payload.as_bytes(), &catalog);
                let general = decode_general(payload.as_bytes(), &catalog, None).and_then(Decoded::single);
                prop_assert!(fast.is_some());
                prop_assert_eq!(fast.expect("fast path taken"), general);
            }

            #[test]
            fn the_typed_encoder_writes_what_the_general_one_writes(
                var in "(doorway#[12]\\.(gain|threshold)|arch#1\\.inputJack#3)", value in 0u8..128,
                user in "[a-z\\\\\"\u{0}-\u{1f}\u{7f}é🎛]{0,12}", source in "[a-z0-9\\-\"\\\\]{1,12}",
                hlc in any::<u64>(), seq in any::<u64>(), wall_ms in any::<u64>(),
            ) {
                let catalog = Catalog::builtin();
                let event = Event {
                    stamp: Stamp { hlc, instance: source.as_str().into() },
                    wall_ms,
                    user: user.as_str().into(),
                    kind: EventKind::Set { variable: catalog.parse_variable(&var).expect("variable"), value },
                };
                let typed = encode(&event, seq, None);
                let general = encode_general(&event, seq, None);
                prop_assert_eq!(&typed.payload, &general.payload);
                prop_assert_eq!((typed.channel, typed.kind, typed.audit), (general.channel, general.kind, general.audit));
            }

            #[test]
            fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes, &Catalog::builtin(), None);
            }

            #[test]
            fn hostile_routing_data_never_panics_and_every_accepted_route_keeps_its_limit(
                data in routing_data(), signed in any::<bool>(),
            ) {
                let catalog = Catalog::builtin();
                let mut v = json!({"timestamp": 5, "type": "routing_change",
                    "data": {"routingData": data, "source_instance": "x"}});
                let signer = Signer::new(b"k");
                if signed {
                    v["sig"] = Value::String(signer.sign(&v.to_string()));
                }
                let payload = v.to_string();
                let signer = signed.then_some(&signer);
                let all = decode_all(payload.as_bytes(), &catalog, signer);
                if let Ok(Decoded { incoming: Incoming::Event { event, .. }, more }) = &all {
                    prop_assert!(more.len() < catalog.output_count());
                    for e in std::iter::once(event).chain(more) {
                        let EventKind::Route { output, route } = &e.kind else { panic!("a route event") };
                        if let Some(r) = route {
                            prop_assert!(catalog.check_route(output, r.range, r.safe).is_ok());
                        }
                    }
                }
                let one = decode(payload.as_bytes(), &catalog, signer);
                match all {
                    Ok(all) if all.more.is_empty() => prop_assert_eq!(one, Ok(all.incoming)),
                    Ok(_) => prop_assert_eq!(one, Err(DropReason::SeveralOutputs)),
                    Err(reason) => prop_assert_eq!(one, Err(reason)),
                }
            }

            #[test]
            fn decode_never_panics_on_near_envelopes(t in "[a-z_]{0,20}", var in "[a-z#0-9.]{0,25}", value in any::<i64>()) {
                let raw = format!(r#"{{"timestamp": 5, "type": "{t}", "data": {{"variable": "{var}", "value": {value}, "source_instance": "x", "action": "{t}", "routingData": {{"action": "{t}", "output": "{var}"}}}}}}"#);
                if let Ok(Incoming::Event { event: Event { kind: EventKind::Set { value, .. }, .. }, .. }) = decode(raw.as_bytes(), &Catalog::builtin(), None) {
                    prop_assert!(value <= 127);
                }
            }
        }
    }
}
