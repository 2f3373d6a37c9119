//! The output-limit promise as a property: random sequences of commands and events from every
//! source — chat, HTTP, Redis pub/sub, the state hash and the routing file — never put a `/cv`
//! voltage outside its output's limit or a `/lzx` value outside 0..1 on the wire, and the OSC stage's
//! clamp (the last line of defence) never has to act, because every source refused what it had to.

use std::fmt::Write as _;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use rosc::OscType;
use serde_json::json;

use crate::cluster::connected;
use crate::helpers::{TOKEN, TestApp, eventually, start_with_routing_file};
use crate::redis_server::RedisServer;
use cvbot::catalog::Catalog;
use cvbot::clock::wall_ms_now;

/// Voltages a hostile or careless source might send: inside, at the edges, beyond, absurd.
const VOLTS: [f64; 12] = [0.0, 0.25, 0.5, 1.0, -0.0, 1.0001, -0.5, 5.0, -1000.0, 1000.0, 3e38, 1e300];
const OUTPUTS: [&str; 3] = ["es9out#1", "esx8cv#2.out#3", "es5gate#8"];
const VARIABLES: [&str; 3] = ["doorway#1.gain", "doorway#1.threshold", "passage#1.thru#2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Chat,
    Http,
    PubSub,
    StateHash,
}

/// One thing done to the bot: a route with some range and safe voltage, a value, or a stop/resume/clear.
#[derive(Debug, Clone)]
enum Action {
    Route { source: Source, output: usize, variable: usize, range: Option<(usize, usize)>, safe: Option<usize> },
    Set { variable: usize, value: u8 },
    Stop,
    Resume,
    Clear,
}

fn volts(i: usize) -> f64 {
    VOLTS[i % VOLTS.len()]
}

fn arb_action() -> impl Strategy<Value = Action> {
    let source = prop_oneof![Just(Source::Chat), Just(Source::Http), Just(Source::PubSub), Just(Source::StateHash)];
    let route = (
        source,
        0..OUTPUTS.len(),
        0..VARIABLES.len(),
        proptest::option::of((0..12usize, 0..12usize)),
        proptest::option::of(0..12usize),
    )
        .prop_map(|(source, output, variable, range, safe)| Action::Route {
            source,
            output,
            variable,
            range,
            safe,
        });
    prop_oneof![
        4 => route,
        3 => (0..VARIABLES.len(), 0u8..=127).prop_map(|(variable, value)| Action::Set { variable, value }),
        1 => Just(Action::Stop),
        1 => Just(Action::Resume),
        1 => Just(Action::Clear),
    ]
}

/// A routing file with up to three entries, each with or without a range and safe voltage.
fn arb_routing_file() -> impl Strategy<Value = String> {
    proptest::collection::btree_map(
        0..OUTPUTS.len(),
        (0..VARIABLES.len(), proptest::option::of((0..12usize, 0..12usize)), proptest::option::of(0..12usize)),
        0..3,
    )
    .prop_map(|entries| {
        let map: serde_json::Map<String, serde_json::Value> = entries
            .into_iter()
            .map(|(o, (v, range, safe))| {
                let mut entry = json!({"variable": VARIABLES[v]});
                if let Some((lo, hi)) = range {
                    entry["range"] = json!([volts(lo), volts(hi)]);
                }
                if let Some(s) = safe {
                    entry["safe"] = json!(volts(s));
                }
                (OUTPUTS[o].to_owned(), entry)
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    })
}

/// The routing data of a route action, as a peer would put it on the wire.
fn routing_data(
    output: usize,
    variable: usize,
    range: Option<(usize, usize)>,
    safe: Option<usize>,
) -> serde_json::Value {
    let mut data = json!({"action": "add", "output": OUTPUTS[output], "variable": VARIABLES[variable]});
    if let Some((lo, hi)) = range {
        data["range"] = json!([volts(lo), volts(hi)]);
    }
    if let Some(s) = safe {
        data["safe"] = json!(volts(s));
    }
    data
}

async fn perform(app: &TestApp, redis: &RedisServer, step: u64, action: &Action) {
    match action {
        Action::Route { source: Source::Chat, output, variable, range, safe } => {
            let mut line = format!("!admin {} → {}", OUTPUTS[*output], VARIABLES[*variable]);
            // Chat can only spell plain decimals; absurd values are typed as the largest it reads.
            let typed = |v: f64| if v.abs() > 1e6 { format!("{}", v.signum() * 999_999.0) } else { format!("{v}") };
            if let Some((lo, hi)) = range {
                let _ = write!(line, " range {} {}", typed(volts(*lo)), typed(volts(*hi)));
            }
            if let Some(s) = safe {
                let _ = write!(line, " safe {}", typed(volts(*s)));
            }
            app.op(&line);
        }
        Action::Route { source: Source::Http, output, variable, range, safe } => {
            let mut body = json!({"variable": VARIABLES[*variable]});
            if let Some((lo, hi)) = range {
                body["range"] = json!([volts(*lo), volts(*hi)]);
            }
            if let Some(s) = safe {
                body["safe"] = json!(volts(*s));
            }
            let path = format!("/api/routes/{}", OUTPUTS[*output].replace('#', "%23"));
            let answer = reqwest::Client::new()
                .put(app.url(&path))
                .header("authorization", format!("Bearer {TOKEN}"))
                .json(&body)
                .send()
                .await
                .expect("PUT");
            // Routed (200), beyond the limit (400) or refused as things stand, e.g. while stopped (409).
            assert!(matches!(answer.status().as_u16(), 200 | 400 | 409), "{path} {body}: {}", answer.status());
        }
        Action::Route { source: Source::PubSub, output, variable, range, safe } => {
            let event = json!({"timestamp": wall_ms_now(), "type": "routing_change",
                "data": {"routingData": routing_data(*output, *variable, *range, *safe), "admin": "peer", "source_instance": "js-peer"}});
            redis.publish("cv:routing:change", &event.to_string()).await;
        }
        Action::Route { source: Source::StateHash, output, variable, range, safe } => {
            let at = wall_ms_now();
            let event = json!({"timestamp": at, "hlc": (at << 16) + step, "type": "routing_change",
                "data": {"routingData": routing_data(*output, *variable, *range, *safe), "admin": "peer", "source_instance": "hash-peer"}});
            let value = format!("{:020}{}|{event}", (at << 16) + step, hex::encode("hash-peer"));
            let mut conn = redis.conn().await;
            let () = redis::cmd("HSET")
                .arg("{cv}:state")
                .arg(format!("r:{}", OUTPUTS[*output]))
                .arg(value)
                .query_async(&mut conn)
                .await
                .expect("hset");
            redis.publish("cv:instance:bot-p:command", r#"{"command": "resync"}"#).await;
        }
        Action::Set { variable, value } => {
            app.viewer(&format!("v{step}"), &format!("{}: {value}", VARIABLES[*variable]));
        }
        Action::Stop => {
            app.op("!admin emergency stop");
        }
        Action::Resume => {
            app.op("!admin resume");
        }
        Action::Clear => {
            app.op("!admin clear");
        }
    }
}

/// Every datagram sent so far, checked against the limits.
async fn check_datagrams(app: &TestApp, catalog: &Catalog) -> Result<usize, TestCaseError> {
    let messages = app.osc.drain().await;
    for m in &messages {
        match (m.addr.as_str(), m.args.as_slice()) {
            ("/cv", [OscType::String(output), OscType::Float(v), ..]) => {
                let output = catalog.output(output).expect("a catalogue output");
                let limit = catalog.output_limit(&output);
                prop_assert!(limit.contains(*v), "/cv {output} {v} V is outside {limit:?}");
            }
            (addr, [OscType::Float(t)]) if addr.starts_with("/lzx/") => {
                prop_assert!((0.0..=1.0).contains(t), "{addr} {t} is outside 0..1");
            }
            ("/routing", _) => {}
            other => prop_assert!(false, "unexpected datagram {other:?}"),
        }
    }
    Ok(messages.len())
}

#[test]
fn no_datagram_from_any_source_ever_leaves_its_outputs_limit() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let redis = runtime.block_on(RedisServer::start());
    let catalog = Catalog::builtin();
    let strategy = (arb_routing_file(), proptest::collection::vec(arb_action(), 1..16));
    let mut runner =
        TestRunner::new(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() });
    let sent = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |(file, actions)| {
            runtime.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                std::fs::write(dir.path().join("routing_table.json"), &file).expect("write");
                // A routing file beyond the limit stops start-up: nothing of it can reach the wire.
                if cvbot::routes_file::parse(&file, std::path::Path::new("r.json"), &catalog).is_err() {
                    prop_assert!(refuses_to_start(dir.path()).await, "{file} must stop start-up");
                    return Ok(());
                }
                let mut conn = redis.conn().await;
                let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("flush");
                let vars =
                    [("OSC_FORMAT", "both"), ("ADMIN_TOKEN", TOKEN), ("ROUTING_FILE", "{dir}/routing_table.json")];
                let app = instance_with_dir("bot-p", &redis.url(), dir, &vars).await;
                connected(&[&app]).await;
                let counters = ["redis_received_routing_change", "redis_published_routing_change", "redis_resyncs"];
                let mut before = Vec::new();
                for name in counters {
                    before.push(app.stat(name).await);
                }
                for (step, action) in actions.iter().enumerate() {
                    perform(&app, &redis, step as u64 + 1, action).await;
                }
                // What came through Redis is awaited (read, or merged by the resync asked for), so
                // its datagrams are out before the check reads up to its marker.
                let from = |source: Source| {
                    actions.iter().filter(|a| matches!(a, Action::Route { source: s, .. } if *s == source)).count()
                        as u64
                };
                let (published, hashed) = (from(Source::PubSub), from(Source::StateHash));
                // Routes heard on the routing channel: the foreign ones and the echoes of our own.
                eventually("Redis's routes taken in", Duration::from_secs(10), || async {
                    let ours = app.stat("redis_published_routing_change").await - before[1];
                    app.stat("redis_received_routing_change").await >= before[0] + published + ours
                        && app.stat("redis_resyncs").await >= before[2] + hashed
                })
                .await;
                app.op("!admin emergency stop");
                app.op("!admin resume");
                sent.fetch_add(check_datagrams(&app, &catalog).await?, std::sync::atomic::Ordering::Relaxed);
                let clamped = app.stat("osc_clamped").await;
                app.stop().await;
                prop_assert_eq!(clamped, 0, "every source refused what it had to; the clamp never acted");
                Ok(())
            })
        })
        .expect("no datagram leaves its output's limit");
    assert!(sent.into_inner() > 0, "the property saw datagrams at all");
}

/// An instance on `url` whose files live in `dir` (so it reads the routing file written there).
async fn instance_with_dir(id: &str, url: &str, dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestApp {
    let mut vars =
        vec![("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true"), ("RATE_LIMIT_MS", "0")];
    vars.extend_from_slice(extra);
    TestApp::spawn_in(dir, &vars).await
}

/// True when the bot refuses to start with the routing file in `dir` as a configuration error.
async fn refuses_to_start(dir: &std::path::Path) -> bool {
    let token = tokio_util::sync::CancellationToken::new();
    match start_with_routing_file(&dir.join("routing_table.json"), token.clone()).await {
        Ok(running) => {
            token.cancel();
            let _ = running.wait().await;
            false
        }
        Err(e) => e.downcast_ref::<cvbot::app::StartupError>().is_some(),
    }
}
