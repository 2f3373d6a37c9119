//! Motion on real sockets: slew limits, timed ramps, stops that cut through them and the heartbeat,
//! read by UDP receivers that timestamp every datagram as it arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;

use crate::binary::Bot;
use crate::helpers::{OscReceiver, TOKEN, TestApp, eventually_some};
use crate::redis_server::RedisServer;

/// The tick the tests run at (the default): the tolerance of every timing check below.
const TICK: Duration = Duration::from_millis(5);

/// A UDP receiver standing in for Max/MSP that keeps every message with its arrival time.
struct Recorder {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<(Instant, OscMessage)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn bind() -> Recorder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = socket.local_addr().expect("addr");
        let log: Arc<Mutex<Vec<(Instant, OscMessage)>>> = Arc::default();
        let sink = log.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf).await {
                let at = Instant::now();
                let Ok((_, packet)) = rosc::decoder::decode_udp(&buf[..n]) else { continue };
                let mut messages = Vec::new();
                flatten(packet, &mut messages);
                sink.lock().expect("log").extend(messages.into_iter().map(|m| (at, m)));
            }
        });
        Recorder { addr, log, task }
    }

    /// `(arrival, voltage)` of every `/cv` for `output` since `since`.
    fn cv(&self, output: &str, since: Instant) -> Vec<(Instant, f32)> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|(at, m)| *at >= since && m.addr == "/cv" && m.args[0] == OscType::String(output.into()))
            .map(|(at, m)| match m.args[1] {
                OscType::Float(v) => (*at, v),
                ref other => panic!("a float voltage, not {other:?}"),
            })
            .collect()
    }

    /// Every message with `addr` since `since`.
    fn messages(&self, addr: &str, since: Instant) -> Vec<(Instant, OscMessage)> {
        self.log.lock().expect("log").iter().filter(|(at, m)| *at >= since && m.addr == addr).cloned().collect()
    }

    /// Waits until `output` has been sent `volts`, and returns when that arrived.
    async fn reached(&self, output: &str, volts: f32, since: Instant, limit: Duration) -> Instant {
        let what = format!("{output} at {volts} V");
        eventually_some(&what, limit, || async {
            self.cv(output, since).into_iter().find(|(_, v)| (v - volts).abs() < 1e-6).map(|(at, _)| at)
        })
        .await
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn flatten(packet: OscPacket, out: &mut Vec<OscMessage>) {
    match packet {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
    }
}

/// An instance sending to `recorder` (and nothing else), with extra variables.
async fn app(recorder: &Recorder, vars: &[(&str, &str)]) -> TestApp {
    let target = recorder.addr.to_string();
    let mut all = vec![("OSC_TARGETS", target.as_str()), ("RATE_LIMIT_MS", "0")];
    all.extend_from_slice(vars);
    TestApp::spawn_with(&all).await
}

fn seconds(d: Duration) -> f32 {
    d.as_secs_f32()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slew_limit_bounds_the_slope_between_datagrams_and_arrives_in_distance_over_rate() {
    let rec = Recorder::bind().await;
    let app = app(&rec, &[]).await;
    app.op("!admin es9out#1 → doorway#1.gain slew 2");
    app.op("doorway#1.gain: 0");
    rec.reached(
        "es9out#1",
        0.0,
        Instant::now().checked_sub(Duration::from_secs(5)).expect("an instant 5 s ago"),
        Duration::from_secs(3),
    )
    .await;
    let start = Instant::now();
    app.viewer("ann", "doorway#1.gain: 127");
    let arrived = rec.reached("es9out#1", 1.0, start, Duration::from_secs(5)).await;
    let steps = rec.cv("es9out#1", start);
    // 1 V at 2 V/s is 0.5 s: never sooner (less a tick), and not much later.
    let took = seconds(arrived - start);
    assert!(took >= 0.5 - seconds(TICK), "arrived after {took} s: faster than the limit");
    assert!(took < 0.5 + 0.25, "arrived after {took} s");
    assert!(steps.len() >= 20, "stepped at the tick, not jumped: {} datagrams", steps.len());
    // Between consecutive datagrams the voltage moves at most 2 V/s, with a tick of tolerance for
    // when a step was computed and when it arrived.
    for pair in steps.windows(2) {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        let allowed = 2.0 * (seconds(t1 - t0) + seconds(TICK));
        assert!((v1 - v0).abs() <= allowed + 1e-6, "{v0} → {v1} in {:?}: faster than 2 V/s", t1 - t0);
    }
    assert!(steps.windows(2).all(|p| p[1].1 >= p[0].1), "a rising slew never turns back");
    // Arrived: an idle output sends nothing (sampled for twenty ticks).
    tokio::time::sleep(TICK * 20).await;
    assert_eq!(rec.cv("es9out#1", arrived + Duration::from_micros(1)), vec![], "nothing after arriving");
    assert_eq!(app.state().await["slew"]["es9out#1"], 2.0, "the state shows the limit");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_ramp_passes_its_midpoint_at_half_a_second_and_ends_on_the_target() {
    let rec = Recorder::bind().await;
    let app = app(&rec, &[]).await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.op("doorway#1.gain: 0");
    let start = Instant::now();
    app.viewer("ann", "doorway#1.gain: 127 over 1s");
    let state = app.state().await;
    assert_eq!(state["parameters"]["doorway#1.gain"]["value"], 127, "the register holds the target");
    assert_eq!(state["parameters"]["doorway#1.gain"]["ramp"], serde_json::json!({"from": 0.0, "ms": 1000}));
    let end = rec.reached("es9out#1", 1.0, start, Duration::from_secs(4)).await;
    let steps = rec.cv("es9out#1", start);
    let mid = steps.iter().find(|(_, v)| *v >= 0.5).map(|(at, _)| *at).expect("a step past the midpoint");
    let (mid, end) = (seconds(mid - start), seconds(end - start));
    assert!((0.5 - 0.02..0.5 + 0.1).contains(&mid), "midpoint after {mid} s");
    assert!((1.0 - 0.02..1.0 + 0.15).contains(&end), "target after {end} s");
    assert!(steps.windows(2).all(|p| p[1].1 >= p[0].1), "a rising ramp never turns back: {steps:?}");
    // Linear: each step's voltage is its elapsed time, within a tick and a bit of scheduling.
    for (at, v) in &steps {
        let t = seconds(*at - start).min(1.0);
        assert!((v - t).abs() < 0.05, "{v} V at {t} s is off the line");
    }
    tokio::time::sleep(TICK * 20).await;
    assert_eq!(rec.cv("es9out#1", start).len(), steps.len(), "nothing after the ramp ends");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_draw_the_same_ramp() {
    let redis = RedisServer::start().await;
    let (rec_a, rec_b) = (Recorder::bind().await, Recorder::bind().await);
    let url = redis.url();
    let (a, b) = connected_pair_to(&url, &rec_a, &rec_b).await;
    a.op("!admin es9out#1 → doorway#1.gain");
    a.op("doorway#1.gain: 0");
    rec_b
        .reached(
            "es9out#1",
            0.0,
            Instant::now().checked_sub(Duration::from_secs(10)).expect("an instant 10 s ago"),
            Duration::from_secs(5),
        )
        .await;
    let start = Instant::now();
    a.viewer("ann", "doorway#1.gain: 127 over 1s");
    let end_a = rec_a.reached("es9out#1", 1.0, start, Duration::from_secs(5)).await;
    let end_b = rec_b.reached("es9out#1", 1.0, start, Duration::from_secs(5)).await;
    let (steps_a, steps_b) = (rec_a.cv("es9out#1", start), rec_b.cv("es9out#1", start));
    assert!(steps_b.len() >= 20, "the far instance ramps too, it does not jump: {steps_b:?}");
    // At every instant the far instance sent a step, the near one's line (interpolated between its
    // steps) is within a few ticks of it: they draw one curve from one event, not two.
    let mut worst = 0.0f32;
    for (t, vb) in &steps_b {
        let Some(i) = steps_a.iter().position(|(ta, _)| ta >= t) else { continue };
        if i == 0 {
            continue;
        }
        let ((t0, v0), (t1, v1)) = (steps_a[i - 1], steps_a[i]);
        let f = if t1 > t0 { seconds(*t - t0) / seconds(t1 - t0) } else { 0.0 };
        worst = worst.max((v0 + f * (v1 - v0) - vb).abs());
    }
    assert!(worst < 0.03, "the instances' ramps differ by up to {worst} V");
    let apart = if end_a > end_b { end_a - end_b } else { end_b - end_a };
    assert!(apart < Duration::from_millis(60), "they reach the target {apart:?} apart");
    let state = b.state().await;
    assert_eq!(state["parameters"]["doorway#1.gain"]["ramp"], serde_json::json!({"from": 0.0, "ms": 1000}));
    a.stop().await;
    b.stop().await;
}

/// Two instances on `url`, both connected, each sending OSC to its own recorder.
async fn connected_pair_to(url: &str, a: &Recorder, b: &Recorder) -> (TestApp, TestApp) {
    let vars = |id| [("INSTANCE_ID", id), ("REDIS_URL", url), ("ENABLE_REDIS_EVENTS", "true")];
    let (app_a, app_b) = (app(a, &vars("bot-a")).await, app(b, &vars("bot-b")).await);
    crate::cluster::connected(&[&app_a, &app_b]).await;
    (app_a, app_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_during_a_slow_slew_lands_on_the_safe_value_within_50ms_and_nothing_follows() {
    let rec = Recorder::bind().await;
    let app = app(&rec, &[]).await;
    app.op("!admin es9out#1 → doorway#1.gain safe 0 slew 0.1");
    app.op("doorway#1.gain: 0");
    let start = Instant::now();
    app.viewer("ann", "doorway#1.gain: 127");
    // Moving (10 s to go at 0.1 V/s): wait for it to be a little way up.
    eventually_some("the slew under way", Duration::from_secs(3), || async {
        rec.cv("es9out#1", start).last().filter(|(_, v)| *v >= 0.01).map(|_| ())
    })
    .await;
    let pressed = Instant::now();
    app.op("!admin emergency stop");
    let safe = rec.reached("es9out#1", 0.0, pressed, Duration::from_secs(1)).await;
    assert!(safe - pressed < Duration::from_millis(50), "the safe value took {:?}", safe - pressed);
    // No step follows (sampled for forty ticks).
    tokio::time::sleep(TICK * 40).await;
    // A step sent just before the stop may be read just after `pressed`; after the safe value, nothing.
    let after: Vec<f32> = rec.cv("es9out#1", pressed).into_iter().map(|(_, v)| v).collect();
    let safe_at = after.iter().position(|v| *v == 0.0).expect("the safe value");
    assert_eq!(&after[safe_at..], &[0.0], "the safe value and nothing after it: {after:?}");
    assert!(safe_at <= 1, "at most one step was in flight when the stop was pressed: {after:?}");
    // Resume slews back from the safe value instead of jumping to where it was.
    let resumed = Instant::now();
    app.op("!admin resume");
    eventually_some("the slew resumed", Duration::from_secs(3), || async {
        rec.cv("es9out#1", resumed).first().map(|_| ())
    })
    .await;
    let first = rec.cv("es9out#1", resumed)[0].1;
    assert!(first < 0.01, "resume starts from the safe value: {first} V");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_arrive_at_their_period_counting_up_and_stop_with_the_process() {
    let rec = Recorder::bind().await;
    let app = app(&rec, &[("OSC_HEARTBEAT_MS", "100"), ("INSTANCE_ID", "studio-a")]).await;
    let start = Instant::now();
    let beats = eventually_some("eight heartbeats", Duration::from_secs(5), || async {
        let beats = rec.messages("/cvbot/heartbeat", start);
        (beats.len() >= 8).then_some(beats)
    })
    .await;
    let seqs: Vec<i32> = beats
        .iter()
        .map(|(_, m)| {
            assert_eq!(m.args[0], OscType::String("studio-a".into()), "names the instance");
            match m.args[1] {
                OscType::Int(seq) => seq,
                ref other => panic!("an int seq, not {other:?}"),
            }
        })
        .collect();
    assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "seq counts up by one: {seqs:?}");
    let mut gaps: Vec<Duration> = beats.windows(2).map(|p| p[1].0 - p[0].0).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        (Duration::from_millis(80)..Duration::from_millis(130)).contains(&median),
        "median period {median:?}: {gaps:?}"
    );
    app.stop().await;
    let stopped = Instant::now();
    // Silence for three periods: what a patch watching the beat needs to see.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A beat sent just before the stop may still be read just after it.
    let late = rec.messages("/cvbot/heartbeat", stopped + Duration::from_millis(20));
    assert!(late.is_empty(), "heartbeats after the process stopped: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_beats_until_sigterm_and_then_is_silent() {
    let osc = OscReceiver::bind().await;
    let rec = Recorder::bind().await;
    let vars = [("OSC_HEARTBEAT_MS".to_owned(), "100".to_owned()), ("OSC_TARGETS".to_owned(), rec.addr.to_string())];
    let mut bot = Bot::start_with(&osc, std::process::Stdio::null(), &vars);
    let start = Instant::now();
    eventually_some("three heartbeats from the binary", Duration::from_secs(5), || async {
        (rec.messages("/cvbot/heartbeat", start).len() >= 3).then_some(())
    })
    .await;
    let (code, _) = bot.signal("-TERM");
    assert_eq!(code, Some(0));
    let exited = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = rec.messages("/cvbot/heartbeat", exited + Duration::from_millis(20));
    assert!(late.is_empty(), "heartbeats after the process exited: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_joining_mid_ramp_picks_it_up_where_it_stands() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let (rec_a, rec_b) = (Recorder::bind().await, Recorder::bind().await);
    let vars = |id| [("INSTANCE_ID", id), ("REDIS_URL", url.as_str()), ("ENABLE_REDIS_EVENTS", "true")];
    let a = app(&rec_a, &vars("bot-a")).await;
    crate::cluster::connected(&[&a]).await;
    a.op("!admin es9out#1 → doorway#1.gain");
    a.op("doorway#1.gain: 0");
    let start = Instant::now();
    a.viewer("ann", "doorway#1.gain: 127 over 3s");
    // A third of the way in, a second instance starts and loads the state from Redis.
    tokio::time::sleep_until((start + Duration::from_secs(1)).into()).await;
    let b = app(&rec_b, &vars("bot-b")).await;
    let joined = Instant::now();
    let first = eventually_some("the joiner's first step", Duration::from_secs(5), || async {
        rec_b.cv("es9out#1", joined).first().copied()
    })
    .await;
    let expected = seconds(first.0 - start) / 3.0;
    assert!((first.1 - expected).abs() < 0.05, "joined at {} V, the ramp stood at {expected} V", first.1);
    let end_a = rec_a.reached("es9out#1", 1.0, start, Duration::from_secs(6)).await;
    let end_b = rec_b.reached("es9out#1", 1.0, joined, Duration::from_secs(6)).await;
    let apart = if end_a > end_b { end_a - end_b } else { end_b - end_a };
    assert!(apart < Duration::from_millis(60), "they reach the target {apart:?} apart");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_api_takes_a_ramp_and_refuses_one_longer_than_ramp_max_ms() {
    let rec = Recorder::bind().await;
    let app = app(&rec, &[("ADMIN_TOKEN", TOKEN), ("RAMP_MAX_MS", "2000")]).await;
    let publish = |body: serde_json::Value| {
        let url = app.url("/api/events/publish");
        async move {
            let response = reqwest::Client::new().post(url).bearer_auth(TOKEN).json(&body).send().await.expect("POST");
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let ramp = |ms: u64| {
        serde_json::json!({"type": "parameter_update",
            "payload": {"variable": "doorway#1.gain", "value": 90, "rampMs": ms}})
    };
    let (status, answer) = publish(ramp(1500)).await;
    assert_eq!(status, 200, "{answer}");
    let state = app.state().await;
    assert_eq!(state["parameters"]["doorway#1.gain"]["ramp"], serde_json::json!({"from": 0.0, "ms": 1500}));
    let (status, answer) = publish(ramp(2001)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("a ramp lasts at most 2s"), "{answer}");
    // The chat says the same to a viewer's too-long ramp, and changes nothing.
    let refused = app.viewer("ann", "doorway#1.gain: 5 over 3s");
    let cvbot::coord::Outcome::Refused(refusal) = refused else { panic!("refused, not {refused:?}") };
    assert_eq!(refusal.to_string(), "a ramp lasts at most 2s");
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 90);
    app.stop().await;
}
