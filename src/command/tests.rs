//! The chat grammar's data-driven tests: viewer forms, ramps, bad lines, case.
use super::*;

pub(super) fn check(line: &str, expected: &str) {
    let catalog = Catalog::builtin();
    let got = match parse(line, &catalog) {
        Ok(Command::Set { variable, value, ramp_ms: None }) => format!("set {variable} {value}"),
        Ok(Command::Set { variable, value, ramp_ms: Some(ms) }) => format!("set {variable} {value} over {ms}ms"),
        Ok(Command::Admin(a)) => format!("admin {a}"),
        Ok(Command::Ask(q)) => format!("ask {q}"),
        // The reason's label, or the whole reply when a test names one.
        Err(r) if expected.starts_with("error ") => format!("error {}", r.reason().label()),
        Err(r) => r.to_string(),
    };
    assert_eq!(got, expected, "line {line:?}");
}

#[test]
fn viewer_commands_in_the_forms_chat_uses() {
    let cases = [
        ("doorway#1.threshold: 89", "set doorway#1.threshold 89"),
        ("doorway#1.threshold:89", "set doorway#1.threshold 89"),
        ("doorway#1.threshold : 89", "set doorway#1.threshold 89"),
        ("  doorway#1.threshold:    0", "set doorway#1.threshold 0"),
        ("Doorway#1.threshold: 127", "set doorway#1.threshold 127"),
        ("doorway#1.threshold: 089", "set doorway#1.threshold 89"),
        ("doorway#1.threshold: 89 lets goooo", "set doorway#1.threshold 89"),
        ("doorway#1.threshold: 89 doorway#1.gain: 3", "set doorway#1.threshold 89"),
        ("passage#1.thru#2: 64", "set passage#1.thru#2 64"),
        ("marbleindex#2.opacityB: 5", "set marbleindex#2.opacityB 5"),
        ("diver#1.hPhase: 100 \u{1F525}\u{1F525}", "set diver#1.hPhase 100"),
        ("arch#1.inputJack#1: 12", "set arch#1.inputJack#1 12"),
        ("!cv doorway#1.threshold 89", "set doorway#1.threshold 89"),
        ("!CV doorway#1.threshold: 89", "set doorway#1.threshold 89"),
        ("!cv doorway#1.threshold:89 kappa", "set doorway#1.threshold 89"),
    ];
    for (line, expected) in cases {
        check(line, expected);
    }
}

#[test]
fn bad_viewer_commands_are_refused_with_a_reason() {
    let cases = [
        ("doorway#1.threshold: 128", "error bad_value"),
        ("doorway#1.threshold: -1", "error bad_value"),
        ("doorway#1.threshold: 1e9", "error bad_value"),
        ("doorway#1.threshold: 89.5", "error bad_value"),
        ("doorway#1.threshold: abc", "error bad_value"),
        ("doorway#1.threshold: 99999999999999999999", "error bad_value"),
        ("doorway#1.threshold: 89lol", "error bad_value"),
        ("doorway#1.threshold:", "error bad_value"),
        ("doorway#1.threshold 89", "error malformed"),
        ("doorway#1.THRESHOLD: 89", "set doorway#1.threshold 89"),
        ("doorway#0.threshold: 89", "error unknown_variable"),
        ("doorway#99.threshold: 89", "error unknown_variable"),
        ("nosuchmodule#1.x: 5", "error unknown_variable"),
        ("arch#1.gain: 5", "error unknown_variable"),
        ("doorway#1.thres\u{7}hold: 5", "error control_characters"),
        ("doorway#1.threshold: 5\u{0}", "error control_characters"),
        ("doorway#1.threshold: 89 -> to the moon", "set doorway#1.threshold 89"),
        ("doorway#1: 5", "error unknown_variable"),
        ("!cv doorway#1.threshold", "error malformed"),
        ("!cv", "error malformed"),
        ("#.: 1", "error unknown_variable"),
    ];
    for (line, expected) in cases {
        check(line, expected);
    }
}

#[test]
fn a_value_may_ramp_over_a_duration() {
    let cases = [
        ("doorway#1.threshold: 100 over 2s", "set doorway#1.threshold 100 over 2000ms"),
        ("doorway#1.threshold: 100 over 500ms", "set doorway#1.threshold 100 over 500ms"),
        ("doorway#1.threshold: 100 OVER 1.5S lets go", "set doorway#1.threshold 100 over 1500ms"),
        ("doorway#1.threshold: 100 over 0.25s", "set doorway#1.threshold 100 over 250ms"),
        ("!cv doorway#1.threshold 3 over 10s", "set doorway#1.threshold 3 over 10000ms"),
        ("doorway#1.threshold: 100 over 0s", "set doorway#1.threshold 100 over 0ms"),
        ("doorway#1.threshold: 100 overdrive", "set doorway#1.threshold 100"),
        ("doorway#1.threshold: 100 over", "error bad_duration"),
        ("doorway#1.threshold: 100 over 2", "error bad_duration"),
        ("doorway#1.threshold: 100 over 2 s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 1.5ms", "error bad_duration"),
        ("doorway#1.threshold: 100 over 1.2345s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 1e9s", "error bad_duration"),
        ("doorway#1.threshold: 100 over infs", "error bad_duration"),
        ("doorway#1.threshold: 100 over -2s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 99999999s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 4294968s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 1127128s", "error bad_duration"),
        ("doorway#1.threshold: 100 over 9999.999s", "set doorway#1.threshold 100 over 9999999ms"),
        ("doorway#1.threshold: 100 over 99999999ms", "set doorway#1.threshold 100 over 99999999ms"),
    ];
    for (line, expected) in cases {
        check(line, expected);
    }
}

#[test]
fn ordinary_chat_is_not_a_command() {
    for line in ["hello chat", "", "   ", "overlay on my screen is nice", "lol #1 stream", "\u{1F600}", "!clip"] {
        check(line, "error not_a_command");
    }
}

#[test]
fn input_jacks_are_accepted_in_any_case_and_resolve_to_the_catalogue_spelling() {
    let cases = [
        ("!admin es9out#8 → angles#1.inputjack#1", "admin es9out#8 → angles#1.inputJack#1"),
        ("!admin es9out#8 → angles#1.INPUTJACK#1", "admin es9out#8 → angles#1.inputJack#1"),
        (
            "!admin es9out#8 -> Angles#1.InputJack#2 range 0.2 0.8",
            "admin es9out#8 → angles#1.inputJack#2 range 0.2 0.8",
        ),
        ("es9out#8 to angles#1.inputjack#3", "admin es9out#8 → angles#1.inputJack#3"),
        ("angles#1.inputjack#1: 64", "set angles#1.inputJack#1 64"),
        ("!cv arch#2.INPUTJACK#16 0", "set arch#2.inputJack#16 0"),
        ("doorway#1.InputJack#4: 7", "set doorway#1.inputJack#4 7"),
        ("!admin es9out#8 → angles#1.INPUTJACK#17", "error unknown_variable"),
        ("!admin es9out#8 → angles#1.inputjack#0", "error unknown_variable"),
        ("angles#1.inputjack1: 5", "error unknown_variable"),
        ("doorway#1.Gain: 5", "set doorway#1.gain 5"),
        ("marbleindex#2.opacitya: 5", "set marbleindex#2.opacityA 5"),
    ];
    for (line, expected) in cases {
        check(line, expected);
    }
}

#[test]
fn a_ten_kilobyte_line_is_handled() {
    let catalog = Catalog::builtin();
    let junk = "a".repeat(10_000);
    assert_eq!(parse(&junk, &catalog), Err(ParseError::NotACommand.into()));
    let cmd_with_junk = format!("doorway#1.threshold: 89 {junk}");
    assert!(matches!(parse(&cmd_with_junk, &catalog), Ok(Command::Set { value: 89, .. })));
    let hashes = "#.".repeat(5_000);
    assert!(parse(&hashes, &catalog).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_and_never_accepts_out_of_range(line in "\\PC{0,300}") {
            let catalog = Catalog::builtin();
            if let Ok(Command::Set { value, .. }) = parse(&line, &catalog) {
                prop_assert!(value <= 127);
            }
        }

        #[test]
        fn any_value_above_127_is_refused(value in 128u64..u64::MAX) {
            let catalog = Catalog::builtin();
            let line = format!("doorway#1.threshold: {value}");
            prop_assert!(parse(&line, &catalog).is_err());
        }

        #[test]
        fn every_in_range_value_is_accepted(value in 0u8..=127, chatter in "( [a-z]{0,10}){0,3}") {
            let catalog = Catalog::builtin();
            let line = format!("doorway#2.gain: {value}{chatter}");
            let parsed = parse(&line, &catalog);
            let got = match parsed { Ok(Command::Set { value: v, .. }) => Some(v), _ => None };
            prop_assert_eq!(got, Some(value));
        }

        #[test]
        fn near_commands_never_panic(line in "[a-zA-Z!#.:→> 0-9-]{0,60}") {
            let catalog = Catalog::builtin();
            if let Ok(Command::Set { value, .. }) = parse(&line, &catalog) {
                prop_assert!(value <= 127);
            }
        }
    }
}
