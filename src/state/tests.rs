use super::*;
use crate::catalog::Catalog;
use proptest::prelude::*;

fn var(name: &str) -> Variable {
    Catalog::builtin().parse_variable(name).expect("test variable exists")
}

fn ev(hlc: u64, instance: &str, kind: EventKind) -> Event {
    Event { stamp: Stamp { hlc, instance: instance.into() }, wall_ms: hlc >> 16, user: "u".into(), kind }
}

fn set(hlc: u64, instance: &str, name: &str, value: u8) -> Event {
    ev(hlc, instance, EventKind::Set { variable: var(name), value, ramp: None })
}

#[test]
fn greatest_stamp_wins_and_ties_break_on_instance_name() {
    let mut s = State::default();
    assert!(s.apply(&set(10, "bot-b", "doorway#1.gain", 5)).is_some());
    assert!(s.apply(&set(9, "bot-z", "doorway#1.gain", 6)).is_none(), "older hlc loses");
    assert!(s.apply(&set(10, "bot-a", "doorway#1.gain", 7)).is_none(), "same hlc, smaller name loses");
    assert!(s.apply(&set(10, "bot-c", "doorway#1.gain", 8)).is_some());
    assert_eq!(s.param(&var("doorway#1.gain")).map(|p| p.value), Some(8));
}

#[test]
fn clear_resets_only_what_was_set_before_it() {
    let mut s = State::default();
    s.apply(&set(1, "a", "doorway#1.gain", 5));
    s.apply(&set(3, "a", "doorway#1.threshold", 9));
    let change = s.apply(&ev(2, "b", EventKind::ClearAll));
    assert_eq!(change, Some(Change::Cleared { variables: vec![var("doorway#1.gain")].into() }));
    assert!(s.apply(&set(1, "z", "doorway#1.gain", 7)).is_none(), "a write older than the clear stays cleared");
    assert_eq!(s.params().count(), 1);
}

#[test]
fn emergency_latch_and_overlay_are_registers() {
    let mut s = State::default();
    assert!(s.overlay_enabled());
    s.apply(&ev(5, "a", EventKind::Emergency { active: true, message: Some("too bright".into()) }));
    s.apply(&ev(4, "b", EventKind::Emergency { active: false, message: None }));
    assert!(s.emergency().active, "an older resume does not undo a newer stop");
    s.apply(&ev(6, "b", EventKind::Emergency { active: false, message: Some("ignored".into()) }));
    assert_eq!(*s.emergency(), Emergency { active: false, message: None });
    s.apply(&ev(2, "a", EventKind::Overlay { enabled: false }));
    assert!(!s.overlay_enabled());
}

#[test]
fn route_removal_is_a_tombstone() {
    let c = Catalog::builtin();
    let out = c.output("es9out#1").expect("output");
    let mut s = State::default();
    let add = ev(
        1,
        "a",
        EventKind::Route { output: out.clone(), route: Some(Route::new(var("doorway#1.gain"), VoltRange::LZX)) },
    );
    let remove = ev(2, "b", EventKind::Route { output: out.clone(), route: None });
    s.apply(&remove);
    assert!(s.apply(&add).is_none(), "the add is older than the removal");
    assert!(s.route(&out).is_none());
}

#[test]
fn seeded_routes_lose_to_any_event() {
    let c = Catalog::builtin();
    let out = c.output("es9out#2").expect("output");
    let mut s = State::default();
    s.seed_route(out.clone(), Route::new(var("doorway#1.gain"), VoltRange::LZX));
    assert!(s.apply(&ev(1, "a", EventKind::Route { output: out.clone(), route: None })).is_some());
    assert!(s.route(&out).is_none());
}

#[test]
fn highest_input_jack_is_per_module_instance() {
    let mut s = State::default();
    s.apply(&set(1, "a", "arch#1.inputJack#1", 1));
    s.apply(&set(2, "a", "arch#1.inputJack#2", 1));
    s.apply(&set(3, "a", "arch#2.inputJack#5", 1));
    assert_eq!(s.highest_input_jack(&var("arch#1.inputJack#9")), 2);
    assert_eq!(s.highest_input_jack(&var("arch#2.inputJack#1")), 5);
    assert_eq!(s.highest_input_jack(&var("doorway#1.gain")), 0);
}

#[test]
fn hlc_is_monotonic_and_follows_wall_time() {
    let mut h = Hlc::default();
    let a = h.stamp(1000);
    let b = h.stamp(1000);
    let c = h.stamp(999);
    assert!(a < b && b < c);
    h.observe(Hlc::from_wall_ms(5000));
    assert!(h.stamp(1000) > Hlc::from_wall_ms(5000));
    assert_eq!(Hlc::wall_ms(Hlc::from_wall_ms(1234)), 1234);
}

fn arb_event() -> impl Strategy<Value = Event> {
    let names = ["doorway#1.gain", "doorway#1.threshold", "arch#1.inputJack#1", "passage#2.thru#1"];
    let outputs = ["es9out#1", "es9out#2"];
    let instances = ["bot-a", "bot-b", "bot-c"];
    (0u64..40, 0usize..3, 0u8..6, 0usize..4, 0u8..=127, any::<bool>(), 0usize..2).prop_map(
        move |(hlc, inst, kind, n, value, flag, o)| {
            let c = Catalog::builtin();
            let kind = match kind {
                0 | 1 => EventKind::Set { variable: var(names[n]), value, ramp: None },
                2 => EventKind::ClearAll,
                3 => EventKind::Overlay { enabled: flag },
                4 => EventKind::Emergency { active: flag, message: flag.then(|| format!("m{value}")) },
                _ => EventKind::Route {
                    output: c.output(outputs[o]).expect("output"),
                    route: flag.then(|| Route::new(var(names[n]), VoltRange::LZX)),
                },
            };
            ev(hlc, instances[inst], kind)
        },
    )
}

proptest! {
    #[test]
    fn any_order_with_duplicates_converges(
        events in proptest::collection::vec(arb_event(), 0..40),
        order_a in any::<proptest::sample::Index>(),
        seed in any::<u64>(),
    ) {
        // Stamps are unique per event in a real system: (hlc, instance) names one write.
        let mut seen = std::collections::HashSet::new();
        let events: Vec<Event> = events.into_iter().filter(|e| seen.insert(e.stamp.clone())).collect();
        let mut forward = State::default();
        for e in &events { forward.apply(e); }
        let mut shuffled: Vec<Event> = events.iter().chain(events.iter().take(order_a.index(events.len().max(1)))).cloned().collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let mut other = State::default();
        for e in &shuffled { other.apply(e); other.apply(e); }
        prop_assert_eq!(&forward, &other);
    }
}
