//! Envelopes to events: size, JSON, signature, type and every field checked, each refusal with its
//! [`DropReason`]. The unsigned `parameter_update` has a typed fast path; everything else, and the
//! reason for any drop, goes through a `serde_json::Value` tree.

use serde_json::Value;

use super::reason::text;
use super::routing::routing_kinds;
use super::sign::verify_and_strip;
use super::{DropReason, Incoming, MAX_PAYLOAD, Signer};
use crate::catalog::{Catalog, Variable};
use crate::motion::Ramp;
use crate::state::{Event, EventKind, Hlc, LockTarget, MAX_SCENE_VALUES, Mode, Scene, SceneName, Stamp};

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
            let (variable, value) = variable_and_value(data, catalog)?;
            let ramp = match data.get("ramp") {
                None | Some(Value::Null) => None,
                Some(ramp) => {
                    let field = |name| ramp.get(name).and_then(Value::as_f64).ok_or(DropReason::Malformed);
                    let ms = ramp.get("ms").and_then(Value::as_u64).ok_or(DropReason::OutOfRange);
                    Ramp::checked(field("from")?, ms?, catalog.value_max()).map_err(|_| DropReason::OutOfRange)?
                }
            };
            (user_field("user"), EventKind::Set { variable, value, ramp })
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
        "vote" => {
            let (variable, value) = variable_and_value(data, catalog)?;
            (user_field("user"), EventKind::Vote { variable, value })
        }
        "mode_change" => {
            let mode = match text(data, "mode")? {
                "anarchy" => Mode::Anarchy,
                "democracy" => {
                    let window = data.get("windowMs").and_then(Value::as_u64).ok_or(DropReason::Malformed)?;
                    Mode::democracy(window).ok_or(DropReason::OutOfRange)?
                }
                _ => return Err(DropReason::UnknownAction),
            };
            (user_field("admin"), EventKind::Mode { mode })
        }
        "lock_change" => {
            let target = LockTarget::parse(text(data, "target")?, catalog).ok_or(DropReason::UnknownVariable)?;
            let locked = data.get("locked").and_then(Value::as_bool).ok_or(DropReason::Malformed)?;
            (user_field("admin"), EventKind::Lock { target, locked })
        }
        "scene_change" => {
            let name = SceneName::parse(text(data, "name")?).ok_or(DropReason::Malformed)?;
            let scene = match data.get("values") {
                None => return Err(DropReason::Malformed),
                Some(Value::Null) => None,
                Some(values) => Some(scene_values(values, catalog)?),
            };
            (user_field("admin"), EventKind::Scene { name, scene })
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
        /// Present only on ramps, which the general path decodes.
        #[serde(default)]
        ramp: Option<serde::de::IgnoredAny>,
    }
    let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    if envelope.kind != "parameter_update" || envelope.data.source_instance.is_empty() || envelope.data.ramp.is_some() {
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
        kind: EventKind::Set { variable, value, ramp: None },
    };
    Some(Ok(Incoming::Event { event, seq: envelope.seq }))
}

/// A `parameter_update`'s or a vote's `variable` and chat `value`.
fn variable_and_value(data: &serde_json::Map<String, Value>, catalog: &Catalog) -> Result<(Variable, u8), DropReason> {
    let variable = catalog.parse_variable(text(data, "variable")?).ok_or(DropReason::UnknownVariable)?;
    let value = data.get("value").and_then(Value::as_u64).ok_or(DropReason::OutOfRange)?;
    let value = u8::try_from(value).ok().filter(|v| *v <= catalog.value_max()).ok_or(DropReason::OutOfRange)?;
    Ok((variable, value))
}

/// A scene's `values` object: every name a variable, every value a chat value, at most
/// [`MAX_SCENE_VALUES`] of them; all or nothing.
fn scene_values(values: &Value, catalog: &Catalog) -> Result<Scene, DropReason> {
    let values = values.as_object().ok_or(DropReason::Malformed)?;
    if values.len() > MAX_SCENE_VALUES {
        return Err(DropReason::OutOfRange);
    }
    let mut scene = Scene::default();
    for (name, value) in values {
        let variable = catalog.parse_variable(name).ok_or(DropReason::UnknownVariable)?;
        let value = value.as_u64().and_then(|v| u8::try_from(v).ok()).filter(|v| *v <= catalog.value_max());
        scene.values.insert(variable, value.ok_or(DropReason::OutOfRange)?);
    }
    Ok(scene)
}

fn clean_message(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(crate::command::MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::super::encode;
    use super::super::tests::{catalog, ev};
    use super::*;
    use crate::catalog::VoltRange;
    use crate::state::Route;

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
    fn poison_ramps_and_slew_rates_are_refused_with_their_reason() {
        let c = catalog();
        let base = |data: &str, kind: &str| format!(r#"{{"timestamp": 1, "type": "{kind}", "data": {data}}}"#);
        let cases: Vec<(String, DropReason)> = vec![
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": {"from": 200, "ms": 10}}"#,
                    "parameter_update",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": {"from": -1, "ms": 10}}"#,
                    "parameter_update",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": {"from": 1, "ms": 600001}}"#,
                    "parameter_update",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": {"from": 1, "ms": -5}}"#,
                    "parameter_update",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": {"ms": 5}}"#,
                    "parameter_update",
                ),
                DropReason::Malformed,
            ),
            (
                base(
                    r#"{"variable": "doorway#1.gain", "value": 5, "source_instance": "b", "ramp": "fast"}"#,
                    "parameter_update",
                ),
                DropReason::Malformed,
            ),
            (
                base(
                    r#"{"routingData": {"action": "add", "output": "es9out#1", "variable": "doorway#1.gain", "slew": -2}, "source_instance": "b"}"#,
                    "routing_change",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"routingData": {"action": "add", "output": "es9out#1", "variable": "doorway#1.gain", "slew": 1e300}, "source_instance": "b"}"#,
                    "routing_change",
                ),
                DropReason::OutOfRange,
            ),
            (
                base(
                    r#"{"routingData": {"action": "add", "output": "es9out#1", "variable": "doorway#1.gain", "slew": "2"}, "source_instance": "b"}"#,
                    "routing_change",
                ),
                DropReason::Malformed,
            ),
        ];
        for (payload, reason) in cases {
            assert_eq!(decode(payload.as_bytes(), &c, None), Err(reason), "{payload:.120}");
        }
    }

    #[test]
    fn every_other_envelope_carries_exactly_one_event() {
        let c = catalog();
        let var = c.parse_variable("doorway#1.gain").expect("var");
        let out = c.output("es9out#1").expect("out");
        for kind in [
            EventKind::Set { variable: var.clone(), value: 9, ramp: None },
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

    mod props {
        use super::*;
        use proptest::prelude::*;

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
            fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes, &Catalog::builtin(), None);
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
