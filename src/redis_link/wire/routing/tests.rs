use super::super::tests::catalog;
use super::super::{Decoded, Incoming, Signer, decode, decode_all};
use super::*;
use crate::state::{Hlc, Stamp};
use serde_json::json;

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
    let route = Route { variable: c.parse_variable(variable).expect("variable"), range, safe: range.low, slew: 0.0 };
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
        slew: 0.0,
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
        (json!({"action": "add", "output": "es9out#99", "lzxVariable": "doorway#1.gain"}), DropReason::UnknownOutput),
        (json!({"action": "remove", "output": "es9out#99"}), DropReason::UnknownOutput),
        (json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.nope"}), DropReason::UnknownVariable),
        (json!({"action": "add", "output": "es9out#3", "lzxVariable": "doorway#1.gian"}), DropReason::UnknownVariable),
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
            assert_eq!(decode(routing_change(&data).as_bytes(), &c, None), Err(DropReason::UnknownAction), "{data}");
        }
    }
    assert_eq!(DropReason::UnknownAction.label(), "unknown_action");
}

#[test]
fn a_routing_map_is_one_route_per_output_all_or_nothing() {
    let c = catalog();
    let one = json!({"es9out#3": "doorway#1.gain"});
    assert_eq!(kind_of(decode(routing_change(&one).as_bytes(), &c, None)), Ok(route_to("es9out#3", "doorway#1.gain")));
    let jack = json!({"ES9OUT#8": "angles#1.inputjack#1"});
    assert_eq!(
        kind_of(decode(routing_change(&jack).as_bytes(), &c, None)),
        Ok(route_to("es9out#8", "angles#1.inputJack#1"))
    );

    let several = routing_change(&json!({"esx8cv#1.out#2": "passage#1.thru#2", "es9out#3": "doorway#1.gain",
        "es9out#1": "doorway#1.threshold"}));
    let Ok(Decoded { incoming: Incoming::Event { event, seq: None }, more }) = decode_all(several.as_bytes(), &c, None)
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
    }
}
