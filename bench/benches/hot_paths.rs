//! Micro-benchmarks of the hot pure paths: chat parse, gate, state apply, envelope encode/decode,
//! OSC encode. Run with `cargo bench -p cvbot-bench --bench hot_paths`; results are summarised in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use cvbot::catalog::{Catalog, VoltRange};
use cvbot::command::parse;
use cvbot::gate::{Gate, GatePolicy, Sender};
use cvbot::osc::{Encoder, OscFormat};
use cvbot::redis_link::wire;
use cvbot::state::{Event, EventKind, Hlc, Route, Stamp, State};

fn benches(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    c.bench_function("parse viewer command", |b| {
        b.iter(|| parse(black_box("doorway#1.threshold: 89 lets go"), &catalog));
    });
    c.bench_function("parse ordinary chat", |b| {
        b.iter(|| parse(black_box("what a great stream tonight"), &catalog));
    });

    let policy = GatePolicy {
        user_cooldown: Duration::from_secs(1),
        global_per_second: 50,
        admin_users: std::collections::HashSet::default(),
    };
    let t0 = Instant::now();
    let mut gate = Gate::new(&policy, t0);
    let command = parse("doorway#1.threshold: 89", &catalog).expect("valid");
    let viewers: Vec<Sender> = (0..1000).map(|i| Sender::viewer(&format!("viewer{i}"))).collect();
    let mut i = 0usize;
    c.bench_function("gate check (1000 viewers)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            gate.check(&viewers[i % viewers.len()], &command, t0 + Duration::from_millis(i as u64))
        });
    });

    let variable = catalog.parse_variable("doorway#1.threshold").expect("variable");
    let mut state = State::default();
    let mut hlc = 1u64;
    c.bench_function("state apply (newer write)", |b| {
        b.iter(|| {
            hlc += 1;
            let event = Event {
                stamp: Stamp { hlc, instance: "bot-001".into() },
                wall_ms: 0,
                user: "u".into(),
                kind: EventKind::Set { variable: variable.clone(), value: 89, ramp: None },
            };
            state.apply(black_box(&event))
        });
    });

    let event = Event {
        stamp: Stamp { hlc: Hlc::from_wall_ms(1_700_000_000_000), instance: "bot-001".into() },
        wall_ms: 1_700_000_000_000,
        user: "viewer".into(),
        kind: EventKind::Set { variable: variable.clone(), value: 89, ramp: None },
    };
    c.bench_function("envelope encode", |b| b.iter(|| wire::encode(black_box(&event), 42, None)));
    let payload = wire::encode(&event, 42, None).payload;
    c.bench_function("envelope decode", |b| b.iter(|| wire::decode(black_box(payload.as_bytes()), &catalog, None)));

    let encoder = Encoder::new(OscFormat::MAX, std::sync::Arc::new(Catalog::builtin()));
    let output = catalog.output("es9out#1").expect("output");
    let route = Route::new(variable, VoltRange::LZX);
    c.bench_function("OSC /cv encode", |b| {
        b.iter(|| rosc::encoder::encode(&rosc::OscPacket::Message(encoder.cv(&output, &route, black_box(89)).message)));
    });
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
