//! Show control in the coordinator: democracy's votes and verdicts, locks, scenes.

use super::*;
use crate::command::parse;
use crate::gate::GatePolicy;
use crate::show::SceneName;
use crate::state::Stamp;
use crate::state::VOTE_GRACE_MS;
use std::time::Duration;

/// A fixed live set, as the Redis link would report it (every one publishing).
#[derive(Debug)]
struct Live(Vec<String>);

impl Presence for Live {
    fn live_instances(&self) -> Vec<String> {
        self.0.clone()
    }
}

/// A live set in which only some publish (the others are display-only).
#[derive(Debug)]
struct Publishing {
    live: Vec<String>,
    publishing: Vec<String>,
}

impl Presence for Publishing {
    fn live_instances(&self) -> Vec<String> {
        self.live.clone()
    }
    fn talliers(&self) -> Vec<String> {
        self.publishing.clone()
    }
}

const T0: u64 = 1_700_000_000_000;

fn coordinator(me: &str, live: &[&str], outbox: Option<mpsc::Sender<Event>>) -> Coordinator {
    coordinator_with(me, Arc::new(Live(live.iter().map(|s| (*s).to_owned()).collect())), outbox)
}

fn coordinator_with(me: &str, presence: Arc<dyn Presence>, outbox: Option<mpsc::Sender<Event>>) -> Coordinator {
    let policy = GatePolicy {
        user_cooldown: Duration::ZERO,
        global_per_second: 0,
        admin_users: std::collections::HashSet::default(),
    };
    Coordinator::new(
        me.into(),
        Arc::new(Catalog::builtin()),
        State::default(),
        Gate::new(&policy, Instant::now()),
        outbox,
        presence,
        &Stats::default(),
    )
}

fn run_at(c: &mut Coordinator, sender: &Sender, line: &str, wall_ms: u64) -> Outcome {
    let command = parse(line, &c.catalog).expect("valid test command");
    c.handle_command(sender, command, Instant::now(), wall_ms)
}

fn value(c: &Coordinator, name: &str) -> Option<(u8, String)> {
    let variable = c.catalog.parse_variable(name).expect("variable");
    c.state.param(&variable).map(|p| (p.value, p.user.to_string()))
}

fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<EventKind> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|e| e.kind).collect()
}

#[test]
fn five_votes_make_one_write_of_their_median_when_the_window_closes() {
    let (tx, mut rx) = mpsc::channel(64);
    let mut c = coordinator("bot-001", &["bot-001"], Some(tx));
    let op = Sender::operator("op");
    run_at(&mut c, &op, "!admin mode democracy 10s", T0);
    drain(&mut rx);
    for (i, v) in [10, 20, 30, 100, 120].into_iter().enumerate() {
        let outcome = run_at(&mut c, &Sender::viewer(&format!("v{i}")), &format!("doorway#1.threshold: {v}"), T0 + 100);
        assert!(matches!(outcome, Outcome::Done(Done::Voted { .. })), "{outcome:?}");
    }
    // The first viewer changes their mind: still five votes, and 100 is now theirs.
    run_at(&mut c, &Sender::viewer("v0"), "doorway#1.threshold: 100", T0 + 200);
    assert_eq!(value(&c, "doorway#1.threshold"), None, "a vote writes no value");
    assert!(drain(&mut rx).iter().all(|k| matches!(k, EventKind::Vote { .. })), "votes travel as votes");
    assert!(c.decide(T0 + 10_000 + VOTE_GRACE_MS - 1), "democracy holds");
    assert_eq!(value(&c, "doorway#1.threshold"), None, "still in its grace");
    c.decide(T0 + 10_000 + VOTE_GRACE_MS);
    // 20, 30, 100, 100, 120: the median is 100.
    assert_eq!(value(&c, "doorway#1.threshold"), Some((100, "chat (5 votes)".into())));
    let published = drain(&mut rx);
    assert_eq!(published.len(), 1, "{published:?}");
    c.decide(T0 + 30_000);
    assert!(drain(&mut rx).is_empty(), "a window is decided once");
}

#[test]
fn admins_write_at_once_in_democracy_and_anarchy_applies_at_once_again() {
    let mut c = coordinator("bot-001", &["bot-001"], None);
    let op = Sender::operator("op");
    run_at(&mut c, &op, "!admin mode democracy 5s", T0);
    assert_eq!(run_at(&mut c, &op, "doorway#1.gain: 7", T0 + 1), Outcome::Done(Done::Set));
    assert_eq!(value(&c, "doorway#1.gain").map(|v| v.0), Some(7));
    run_at(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 90", T0 + 2);
    run_at(&mut c, &op, "!admin mode anarchy", T0 + 3);
    assert_eq!(run_at(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 50", T0 + 4), Outcome::Done(Done::Set));
    c.decide(T0 + 60_000);
    assert_eq!(value(&c, "doorway#1.gain").map(|v| v.0), Some(50), "the old window's votes went with the mode");
}

#[test]
fn a_backup_applies_a_verdict_only_when_the_tallier_did_not() {
    for tallier_answers in [true, false] {
        let mut c = coordinator("bot-002", &["bot-001", "bot-002"], None);
        run_at(&mut c, &Sender::operator("op"), "!admin mode democracy 2s", T0);
        run_at(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 40", T0 + 10);
        let close = T0 + 2_000 + VOTE_GRACE_MS;
        c.decide(close);
        assert_eq!(value(&c, "doorway#1.gain"), None, "bot-001 tallies first");
        if tallier_answers {
            let result = Event {
                stamp: Stamp { hlc: Hlc::from_wall_ms(close + 5), instance: "bot-001".into() },
                wall_ms: close + 5,
                user: "chat (1 vote)".into(),
                kind: EventKind::Set {
                    variable: c.catalog.parse_variable("doorway#1.gain").expect("v"),
                    value: 40,
                    ramp: None,
                },
            };
            c.apply_remote(&result);
        }
        c.decide(close + super::democracy::BACKUP_STEP_MS);
        let expected = if tallier_answers { "bot-001" } else { "bot-002" };
        let variable = c.catalog.parse_variable("doorway#1.gain").expect("v");
        assert_eq!(c.state.param(&variable).map(|p| p.stamp.instance.to_string()).as_deref(), Some(expected));
        assert_eq!(c.counters.verdicts_applied.load(Ordering::Relaxed), u64::from(!tallier_answers));
    }
}

#[test]
fn a_lock_refuses_viewers_and_not_admins() {
    let mut c = coordinator("bot-001", &["bot-001"], None);
    let op = Sender::operator("op");
    let ann = Sender::viewer("ann");
    run_at(&mut c, &op, "!admin lock doorway#1.threshold", T0);
    let refused = run_at(&mut c, &ann, "doorway#1.threshold: 5", T0 + 1);
    assert_eq!(refused.to_string_refusal().as_deref(), Some("doorway#1.threshold is locked"));
    assert_eq!(run_at(&mut c, &op, "doorway#1.threshold: 5", T0 + 2), Outcome::Done(Done::Set));
    assert_eq!(run_at(&mut c, &ann, "doorway#1.gain: 5", T0 + 3), Outcome::Done(Done::Set));
    run_at(&mut c, &op, "!admin lock doorway#1", T0 + 4);
    let refused = run_at(&mut c, &ann, "doorway#1.gain: 6", T0 + 5);
    assert_eq!(refused.to_string_refusal().as_deref(), Some("doorway#1.gain is locked (all of doorway#1 is)"));
    assert_eq!(run_at(&mut c, &ann, "doorway#2.gain: 6", T0 + 6), Outcome::Done(Done::Set));
    run_at(&mut c, &op, "!admin lock all", T0 + 7);
    assert!(matches!(run_at(&mut c, &ann, "doorway#2.gain: 7", T0 + 8), Outcome::Refused(Refusal::Locked { .. })));
    assert!(matches!(
        run_at(&mut c, &op, "!admin lock all", T0 + 9),
        Outcome::Refused(Refusal::Unchanged(Unchanged::AlreadyLocked(_)))
    ));
    run_at(&mut c, &op, "!admin unlock all", T0 + 10);
    assert_eq!(c.state.locks().count(), 0, "unlock all lifts every lock");
    assert_eq!(run_at(&mut c, &ann, "doorway#1.threshold: 9", T0 + 11), Outcome::Done(Done::Set));
}

#[test]
fn a_scene_is_saved_recalled_as_one_batch_listed_and_deleted() {
    let (tx, mut rx) = mpsc::channel(64);
    let mut c = coordinator("bot-001", &["bot-001"], Some(tx));
    let op = Sender::operator("op");
    run_at(&mut c, &op, "doorway#1.threshold: 10", T0);
    run_at(&mut c, &op, "doorway#1.gain: 20", T0);
    assert!(matches!(run_at(&mut c, &op, "!admin scene save intro", T0 + 1), Outcome::Done(Done::Admin(_))));
    run_at(&mut c, &op, "doorway#1.threshold: 90", T0 + 2);
    run_at(&mut c, &op, "doorway#1.gain: 91", T0 + 2);
    drain(&mut rx);
    let recalled = run_at(&mut c, &op, "!admin scene recall INTRO", T0 + 3);
    assert_eq!(recalled, Outcome::Done(Done::Recalled { name: SceneName::parse("intro").expect("n"), values: 2 }));
    assert_eq!(value(&c, "doorway#1.threshold").map(|v| v.0), Some(10));
    assert_eq!(value(&c, "doorway#1.gain").map(|v| v.0), Some(20));
    assert_eq!(drain(&mut rx).len(), 2, "every recalled value is published");
    let listed = run_at(&mut c, &op, "!admin scene list", T0 + 4);
    assert_eq!(crate::chat::reply::done(&expect_done(listed)).as_deref(), Some("scenes: intro (2)"));
    run_at(&mut c, &op, "!admin scene delete intro", T0 + 5);
    let gone = run_at(&mut c, &op, "!admin scene recall intro", T0 + 6);
    assert_eq!(crate::chat::reply::done(&expect_done(gone)).as_deref(), Some("no scene named intro (see scene list)"));
    assert!(matches!(
        run_at(&mut c, &Sender::viewer("ann"), "!admin scene save x", T0 + 7),
        Outcome::Refused(Refusal::Gate(_))
    ));
}

fn expect_done(outcome: Outcome) -> Done {
    match outcome {
        Outcome::Done(done) => done,
        Outcome::Refused(r) => panic!("refused: {r}"),
    }
}

trait RefusalText {
    fn to_string_refusal(&self) -> Option<String>;
}

impl RefusalText for Outcome {
    fn to_string_refusal(&self) -> Option<String> {
        match self {
            Outcome::Refused(r) => Some(r.to_string()),
            Outcome::Done(_) => None,
        }
    }
}

#[test]
fn an_empty_scene_from_the_scenes_file_recalls_as_nothing_set_not_as_a_lost_write() {
    let mut c = coordinator("bot-001", &["bot-001"], None);
    let name = SceneName::parse("blank").expect("name");
    c.state.seed_scene(name.clone(), crate::state::Scene::default());
    let recalled = run_at(&mut c, &Sender::operator("op"), "!admin scene recall blank", T0);
    assert_eq!(recalled, Outcome::Done(Done::Recalled { name, values: 0 }));
}

#[test]
fn a_display_only_instance_first_by_name_is_passed_over_by_the_tally() {
    for (me, applies_at_close) in [("b-studio", true), ("a-display", false)] {
        let presence =
            Publishing { live: vec!["a-display".into(), "b-studio".into()], publishing: vec!["b-studio".into()] };
        let mut c = coordinator_with(me, Arc::new(presence), None);
        run_at(&mut c, &Sender::operator("op"), "!admin mode democracy 2s", T0);
        run_at(&mut c, &Sender::viewer("ann"), "doorway#1.gain: 40", T0 + 10);
        c.decide(T0 + 2_000 + VOTE_GRACE_MS);
        assert_eq!(value(&c, "doorway#1.gain").is_some(), applies_at_close, "{me} at the close");
    }
}
