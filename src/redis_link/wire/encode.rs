//! Events to envelopes: the one `parameter_update` sent at chat rate written straight into a string,
//! every other envelope (and every signed one) through a `serde_json::Value` tree.

use serde_json::{Value, json};

use super::{PARAMETER_CHANNEL, ROUTING_CHANNEL, SHOW_CHANNEL, SYSTEM_CHANNEL, Signer, WIRE_VERSION};
use crate::state::{Event, EventKind, Mode, Scene, SceneName};

/// One encoded event: where to publish it and the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub channel: &'static str,
    pub kind: &'static str,
    pub payload: String,
    /// The `admin_command` audit copy that admin actions also publish, as the older bots do.
    pub audit: Option<String>,
}

/// Encodes one of our events. `seq` numbers this instance's publications for gap detection.
pub fn encode(event: &Event, seq: u64, signer: Option<&Signer>) -> Encoded {
    if signer.is_none()
        && let EventKind::Set { variable, value, ramp: None } = &event.kind
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
        EventKind::Set { variable, value, ramp } => {
            let mut data =
                json!({"variable": variable.to_string(), "value": value, "user": user, "source_instance": source});
            if let Some(ramp) = ramp {
                // Older bots ignore it and jump to `value`; ours draw the same curve from the same start.
                data["ramp"] = json!({"from": ramp.from, "ms": ramp.ms});
            }
            (PARAMETER_CHANNEL, "parameter_update", data, None)
        }
        EventKind::Route { output, route } => {
            let routing = match route {
                Some(r) => {
                    let mut add = json!({"action": "add", "output": output.to_string(), "variable": r.variable.to_string(),
                                         "range": [r.range.low, r.range.high], "safe": r.safe});
                    if r.slew > 0.0 {
                        // Absent is 0 (no limit), as older bots' routes have it.
                        add["slew"] = json!(r.slew);
                    }
                    add
                }
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
        EventKind::Mode { mode } => (SHOW_CHANNEL, "mode_change", mode_data(*mode, user, source), Some(("mode", None))),
        EventKind::Lock { target, locked } => (
            SHOW_CHANNEL,
            "lock_change",
            json!({"target": target.to_string(), "locked": locked, "admin": user, "source_instance": source}),
            Some((if *locked { "lock" } else { "unlock" }, None)),
        ),
        EventKind::Scene { name, scene } => {
            (SHOW_CHANNEL, "scene_change", scene_data(name, scene.as_ref(), user, source), Some(("scene", None)))
        }
        EventKind::Vote { variable, value } => (
            SHOW_CHANNEL,
            "vote",
            json!({"variable": variable.to_string(), "value": value, "user": user, "source_instance": source}),
            None,
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

/// A `mode_change`'s data: the mode, and democracy's window.
fn mode_data(mode: Mode, user: &str, source: &str) -> Value {
    let mut data = json!({"mode": "anarchy", "admin": user, "source_instance": source});
    if let Mode::Democracy { window_ms } = mode {
        data["mode"] = json!("democracy");
        data["windowMs"] = json!(window_ms);
    }
    data
}

/// A `scene_change`'s data: every saved value by variable, or `null` for a deletion.
fn scene_data(name: &SceneName, scene: Option<&Scene>, user: &str, source: &str) -> Value {
    let values = scene.map(|scene| {
        scene.values.iter().map(|(v, value)| (v.to_string(), json!(value))).collect::<serde_json::Map<_, _>>()
    });
    json!({"name": name.as_str(), "values": values, "admin": user, "source_instance": source})
}

#[cfg(test)]
mod tests {
    use super::super::tests::{catalog, ev};
    use super::super::{Incoming, decode};
    use super::*;

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
    fn the_seed_envelope_is_exactly_the_older_bots_shape() {
        let c = catalog();
        let e = ev(EventKind::Set { variable: c.parse_variable("doorway#1.gain").expect("var"), value: 5, ramp: None });
        let v: Value = serde_json::from_str(&encode(&e, 1, None).payload).expect("json");
        assert_eq!(v["type"], "parameter_update");
        assert_eq!(v["timestamp"], 1_703_097_600_000u64);
        assert_eq!(
            v["data"],
            json!({"variable": "doorway#1.gain", "value": 5, "user": "ann", "source_instance": "bot-001"})
        );
        assert_eq!(v["id"], "bot-001-1");
    }

    mod props {
        use super::*;
        use crate::catalog::Catalog;
        use crate::state::Stamp;
        use proptest::prelude::*;

        proptest! {
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
                    kind: EventKind::Set { variable: catalog.parse_variable(&var).expect("variable"), value, ramp: None },
                };
                let typed = encode(&event, seq, None);
                let general = encode_general(&event, seq, None);
                prop_assert_eq!(&typed.payload, &general.payload);
                prop_assert_eq!((typed.channel, typed.kind, typed.audit), (general.channel, general.kind, general.audit));
            }
        }
    }
}
