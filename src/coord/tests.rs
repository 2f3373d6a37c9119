use super::*;
use crate::command::{AdminCommand, parse};
use crate::gate::GatePolicy;
use crate::instances::Alone;
use crate::motion::Ramp;
use crate::state::Stamp;
use std::time::Duration;

fn coordinator(outbox: Option<mpsc::Sender<Event>>) -> Coordinator {
    let catalog = Arc::new(Catalog::builtin());
    let policy = GatePolicy {
        user_cooldown: Duration::from_secs(1),
        global_per_second: 50,
        admin_users: std::collections::HashSet::default(),
    };
    let me: Arc<str> = "bot-001".into();
    Coordinator::new(
        me.clone(),
        catalog,
        State::default(),
        Gate::new(&policy, Instant::now()),
        outbox,
        Arc::new(Alone(me)),
        &Stats::default(),
    )
}

fn run(c: &mut Coordinator, sender: &Sender, line: &str, at: Instant) -> Outcome {
    let command = parse(line, &c.catalog).expect("valid test command");
    c.handle_command(sender, command, at, 1_700_000_000_000)
}

#[test]
fn local_events_are_stamped_applied_and_handed_to_the_outbox() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut c = coordinator(Some(tx));
    let t = Instant::now();
    assert_eq!(run(&mut c, &Sender::viewer("ann"), "doorway#1.threshold: 89", t), Outcome::Done(Done::Set));
    let event = rx.try_recv().expect("an event in the outbox");
    assert_eq!(event.stamp.instance.as_ref(), "bot-001");
    assert!(event.stamp.hlc >= Hlc::from_wall_ms(1_700_000_000_000));
    assert_eq!(
        c.state.params().next().map(|(v, p)| (v.to_string(), p.value)),
        Some(("doorway#1.threshold".into(), 89))
    );
}

#[test]
fn remote_events_are_applied_but_never_reach_the_outbox() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut c = coordinator(Some(tx));
    let variable = c.catalog.parse_variable("doorway#1.gain").expect("variable");
    let remote = Event {
        stamp: Stamp { hlc: Hlc::from_wall_ms(1_800_000_000_000), instance: "bot-002".into() },
        wall_ms: 1_800_000_000_000,
        user: "far".into(),
        kind: EventKind::Set { variable, value: 3, ramp: None },
    };
    c.apply_remote(&remote);
    assert!(rx.try_recv().is_err());
    assert_eq!(c.state.params().count(), 1);
    // The clock caught up: the next local write beats the remote one even though our wall clock is behind.
    run(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 9", Instant::now());
    assert_eq!(c.state.params().next().map(|(_, p)| p.value), Some(9));
}

#[test]
fn emergency_refuses_viewer_commands_until_resume() {
    let mut c = coordinator(None);
    let t = Instant::now();
    let op = Sender::operator("op");
    run(&mut c, &op, "!admin emergency stop strobe", t);
    assert_eq!(run(&mut c, &Sender::viewer("v"), "doorway#1.gain: 5", t), Outcome::Refused(Refusal::Emergency));
    run(&mut c, &op, "!admin resume", t);
    assert_eq!(run(&mut c, &Sender::viewer("v2"), "doorway#1.gain: 5", t), Outcome::Done(Done::Set));
}

#[test]
fn input_jacks_must_be_used_in_order_per_module_instance() {
    let mut c = coordinator(None);
    let t = Instant::now();
    let op = Sender::operator("op");
    let refused = Outcome::Refused(Refusal::InputJackOrder { requested: 2 });
    assert_eq!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), refused);
    assert!(matches!(run(&mut c, &op, "arch#1.inputJack#1: 5", t), Outcome::Done { .. }));
    assert!(matches!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), Outcome::Done { .. }));
    assert!(matches!(run(&mut c, &op, "arch#1.inputJack#1: 7", t), Outcome::Done { .. }), "reusing a jack is fine");
    assert!(matches!(run(&mut c, &op, "arch#2.inputJack#2: 5", t), Outcome::Refused(_)), "other instance starts over");
    run(&mut c, &op, "!admin clear", t);
    assert!(matches!(run(&mut c, &op, "arch#1.inputJack#2: 5", t), Outcome::Refused(_)), "clear resets the sequence");
}

#[test]
fn admin_questions_are_answered_without_events() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut c = coordinator(Some(tx));
    let op = Sender::operator("op");
    let t = Instant::now();
    let answer = |a| Outcome::Done(Done::Answer(a));
    assert_eq!(run(&mut c, &op, "!admin routes", t), answer(Answer::Routes(Vec::new())));
    assert_eq!(run(&mut c, &op, "!admin instances", t), answer(Answer::Instances(vec!["bot-001".into()])));
    let out = c.catalog.output("es9out#1").expect("output");
    assert_eq!(run(&mut c, &op, "!admin remove es9out#1", t), answer(Answer::NotRouted(out.clone())));
    assert!(rx.try_recv().is_err());
    let Outcome::Done(Done::Admin(EventKind::Route { output, route: Some(_) })) =
        run(&mut c, &op, "es9out#1 → doorway#1.threshold", t)
    else {
        panic!("a route is applied and says what it did");
    };
    assert_eq!(output, out);
    assert!(rx.try_recv().is_ok(), "the route went to the outbox");
    let variable = c.catalog.parse_variable("doorway#1.threshold").expect("variable");
    assert_eq!(run(&mut c, &op, "routes", t), answer(Answer::Routes(vec![(out, variable)])));
}

#[test]
fn a_command_that_changes_nothing_says_why_and_makes_no_event() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut c = coordinator(Some(tx));
    let (op, t) = (Sender::operator("op"), Instant::now());
    let unchanged = |u| Outcome::Refused(Refusal::Unchanged(u));
    assert_eq!(run(&mut c, &op, "!admin overlay on", t), unchanged(Unchanged::Overlay(true)));
    assert_eq!(run(&mut c, &op, "!admin resume", t), unchanged(Unchanged::NotStopped));
    assert!(rx.try_recv().is_err(), "nothing was stamped or published");
    run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0.25 0.75", t);
    let out = c.catalog.output("es9out#1").expect("output");
    assert_eq!(
        run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0.25 0.75 safe 0.25", t),
        unchanged(Unchanged::SameRoute(out.clone())),
        "the same range and safe voltage, spelled out"
    );
    let Outcome::Refused(Refusal::OutOfLimit { output, .. }) =
        run(&mut c, &op, "!admin es9out#1 → doorway#1.gain range 0 2", t)
    else {
        panic!("beyond the limit is refused");
    };
    assert_eq!(output, out);
    assert_eq!(c.counters.unchanged.load(Ordering::Relaxed), 3);
    assert_eq!(c.counters.refused_out_of_limit.load(Ordering::Relaxed), 1);
    assert_eq!(c.state.route(&out).map(|r| r.range.high), Some(0.75), "the route stands as it was");
}

#[test]
fn a_full_outbox_is_counted_not_fatal() {
    let (tx, _rx) = mpsc::channel(1);
    let mut c = coordinator(Some(tx));
    let op = Sender::operator("op");
    for v in 0..5 {
        run(&mut c, &op, &format!("doorway#1.gain: {v}"), Instant::now());
    }
    assert_eq!(c.counters.outbox_overflow.load(Ordering::Relaxed), 4);
    assert_eq!(c.state.params().next().map(|(_, p)| p.value), Some(4));
}

/// Records what it hears: the event's user, the change, and the value the state held after it.
#[derive(Debug)]
struct Heard(Arc<Mutex<Vec<HeardChange>>>);

/// The event's user, the change, and a parameter's value in the state after it.
type HeardChange = (String, Change, Option<u8>);

impl Observer for Heard {
    fn on_change(&mut self, event: &Event, change: &Change, state: &State) {
        let value = match change {
            Change::Param { variable, .. } => state.param(variable).map(|p| p.value),
            _ => None,
        };
        self.0.lock().expect("heard").push((event.user.to_string(), change.clone(), value));
    }
}

#[test]
fn observers_hear_every_change_with_its_event_and_the_state_after_it() {
    let token = CancellationToken::new();
    let (handle, closer) = coordinator(None).spawn(token.clone());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let mut started_with = None;
    assert!(handle.observe(|state| {
        started_with = Some(state.params().count());
        Box::new(Heard(heard.clone()))
    }));
    assert_eq!(started_with, Some(0));
    let op = Sender::operator("op");
    for line in ["doorway#1.gain: 3", "!admin es9out#1 → doorway#1.gain", "doorway#1.gain: 4", "!admin overlay off"] {
        let command = parse(line, &Catalog::builtin()).expect("valid");
        assert!(matches!(handle.submit(&op, command, Instant::now()), Outcome::Done(_)));
    }
    let far = Event {
        stamp: Stamp { hlc: Hlc::from_wall_ms(wall_ms_now() + 1000), instance: "bot-002".into() },
        wall_ms: 1,
        user: "far".into(),
        kind: EventKind::Set {
            variable: Catalog::builtin().parse_variable("doorway#1.gain").expect("v"),
            value: 9,
            ramp: None,
        },
    };
    assert!(handle.apply_remote_batch(&[far.clone(), far]), "the same event twice: one change");
    let heard_now = heard.lock().expect("heard").clone();
    let kinds: Vec<(&str, &str, Option<u8>)> = heard_now
        .iter()
        .map(|(user, c, value)| {
            let kind = match c {
                Change::Param { .. } => "param",
                Change::Route { .. } => "route",
                Change::Overlay { .. } => "overlay",
                Change::Cleared { .. } => "cleared",
                Change::Emergency { .. } => "emergency",
                _ => "show control",
            };
            (user.as_str(), kind, *value)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("op", "param", Some(3)),
            ("op", "route", None),
            ("op", "param", Some(4)),
            ("op", "overlay", None),
            ("far", "param", Some(9))
        ]
    );
    // At shutdown the observers are dropped and no new one is taken.
    token.cancel();
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(closer);
    assert_eq!(Arc::strong_count(&heard), 1, "the observer is dropped at shutdown");
    assert!(!handle.observe(|_| Box::new(Heard(heard.clone()))));
    assert!(handle.read(|_| ()).is_none(), "and nothing reads the state after it");
}

#[test]
fn a_ramp_starts_where_the_value_stands_and_too_long_a_ramp_is_refused() {
    let mut c = coordinator(None).with_ramp_max_ms(10_000);
    let op = Sender::operator("op");
    let t = Instant::now();
    let variable = c.catalog.parse_variable("doorway#1.gain").expect("variable");
    assert_eq!(run(&mut c, &op, "doorway#1.gain: 100 over 2s", t), Outcome::Done(Done::Set));
    let entry = c.state.param(&variable).expect("entry").clone();
    assert_eq!((entry.value, entry.ramp), (100, Some(Ramp { from: 0.0, ms: 2000 })), "unset values ramp from 0");
    // One second later (the test's wall clock), half way: a new ramp starts from there.
    let command = parse("doorway#1.gain: 0 over 1s", &c.catalog).expect("command");
    assert_eq!(c.handle_command(&op, command, t, entry.wall_ms + 1000), Outcome::Done(Done::Set));
    assert_eq!(c.state.param(&variable).and_then(|p| p.ramp), Some(Ramp { from: 50.0, ms: 1000 }));
    // `over 0s` is a jump, not a ramp.
    assert_eq!(run(&mut c, &op, "doorway#1.gain: 7 over 0s", t), Outcome::Done(Done::Set));
    assert_eq!(c.state.param(&variable).and_then(|p| p.ramp), None);
    let refused = run(&mut c, &op, "doorway#1.gain: 9 over 10.001s", t);
    assert_eq!(refused, Outcome::Refused(Refusal::RampTooLong { max_ms: 10_000 }));
    assert_eq!(refused_text(&refused), "a ramp lasts at most 10s");
    assert_eq!(c.counters.refused_ramp.load(Ordering::Relaxed), 1);
    assert_eq!(c.state.param(&variable).map(|p| p.value), Some(7), "a refused ramp changes nothing");
}

fn refused_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Refused(refusal) => refusal.to_string(),
        Outcome::Done(done) => panic!("refused, not {done:?}"),
    }
}

#[test]
fn slew_is_part_of_the_route_and_checked_from_every_source() {
    let mut c = coordinator(None);
    let op = Sender::operator("op");
    let t = Instant::now();
    let out = c.catalog.output("es9out#1").expect("output");
    let slew = |c: &Coordinator| c.state.route(&out).map(|r| r.slew);
    assert_eq!(
        run(&mut c, &op, "!admin slew es9out#1 2", t),
        Outcome::Done(Done::Answer(Answer::NotRouted(out.clone())))
    );
    run(&mut c, &op, "!admin es9out#1 → doorway#1.gain slew 1.5", t);
    assert_eq!(slew(&c), Some(1.5));
    assert!(matches!(
        run(&mut c, &op, "!admin slew es9out#1 2", t),
        Outcome::Done(Done::Admin(EventKind::Route { .. }))
    ));
    assert_eq!(slew(&c), Some(2.0));
    assert_eq!(
        run(&mut c, &op, "!admin slew es9out#1 2", t),
        Outcome::Refused(Refusal::Unchanged(Unchanged::SameRoute(out.clone())))
    );
    // A route made elsewhere (HTTP) carries its slew as a number: the same bound applies.
    for bad in [-1.0, f32::NAN, f32::INFINITY, 1000.5] {
        let volts = crate::command::RouteVolts { slew: Some(bad), ..Default::default() };
        let variable = c.catalog.parse_variable("doorway#1.gain").expect("variable");
        let command = Command::Admin(AdminCommand::Route { output: out.clone(), variable, volts });
        let outcome = c.handle_command(&op, command, t, 1_700_000_000_000);
        assert!(matches!(outcome, Outcome::Refused(Refusal::BadSlew { .. })), "{bad}: {outcome:?}");
    }
    let command = Command::Admin(AdminCommand::Slew { output: out.clone(), volts_per_second: -3.0 });
    assert!(matches!(c.handle_command(&op, command, t, 1_700_000_000_000), Outcome::Refused(Refusal::BadSlew { .. })));
    assert_eq!(slew(&c), Some(2.0), "refusals change nothing");
    run(&mut c, &op, "!admin slew es9out#1 off", t);
    assert_eq!(slew(&c), Some(0.0));
}
