//! The motion rows (`--only motion`): what 64 outputs slewing at the default tick cost one instance
//! (CPU and datagrams per second, one datagram per message and bundled, beside the same instance
//! idle), and how closely two instances on one Redis draw the same timed ramp.
//!
//! Both listen with [`Tap`]s: blocking UDP receivers on threads of their own, so a datagram is
//! timestamped when the kernel hands it over, not when a runtime gets round to it, and the two
//! instances' series are on one clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cvbot::catalog::{Catalog, Variable};
use cvbot::config::MotionConfig;
use cvbot::redis_link::wire::PARAMETER_CHANNEL;
use cvbot::state::Hlc;
use serde::Serialize;

use super::child::ChildBot;
use super::measure::{Samples, Summary, percentile};
use super::pipeline::{self, BenchBot, BotOptions};
use super::progress;

mod compare;
pub(crate) mod tap;

use compare::compare;
use tap::{Heard, Log, Tap};

/// Every output's slew limit in the load row, volts per second: the trip across [`SLEW_RANGE_V`]
/// takes 10 s, longer than the settle and the window, so every output moves throughout.
const SLEW_V_PER_S: f32 = 0.1;
/// Every route's range in the load row (inside every built-in output's limit).
const SLEW_RANGE_V: [f32; 2] = [0.0, 1.0];
/// The ramp row's output and variable.
const RAMP_OUTPUT: &str = "es9out#1";
const RAMP_VARIABLE: &str = "doorway#1.gain";
/// Two voltages this close are the same (a voltage the stage computed, against the catalogue's).
const SAME_V: f32 = 1e-6;

/// Both motion rows; each is `{"Ok": …}` or `{"Err": "…"}` on its own.
#[derive(Debug, Clone, Serialize)]
pub struct Motion {
    pub slew_load: super::variants::Outcome<SlewLoad>,
    pub ramp_agreement: super::variants::Outcome<RampAgreement>,
}

/// 64 routed outputs slewing at once on one child instance, without and with `OSC_BUNDLE`.
#[derive(Debug, Clone, Serialize)]
pub struct SlewLoad {
    pub outputs: usize,
    pub slew_v_per_s: f32,
    pub tick_ms: u64,
    /// Length of each measuring window (idle and moving), seconds.
    pub window_s: f64,
    pub unbundled: SlewRun,
    pub bundled: SlewRun,
}

/// One instance's load row: idle first, then every output moving.
#[derive(Debug, Clone, Serialize)]
pub struct SlewRun {
    pub bundle: bool,
    /// CPU time the instance used over the idle window (routed, nothing moving), % of one core.
    pub idle_cpu_pct: f64,
    /// Datagrams while idle: 0 expected (nothing moves; the bench's instances send no heartbeat).
    pub idle_datagrams_per_s: f64,
    /// CPU time over the moving window, % of one core.
    pub cpu_pct: f64,
    /// Datagrams the receiver got per second (a bundle is one).
    pub datagrams_per_s: f64,
    /// `/cv` messages per second in them.
    pub messages_per_s: f64,
    /// The slowest output's steps per second (the tick asks for 1000 / `tick_ms`).
    pub min_steps_per_output_per_s: f64,
    /// Outputs that stepped in the window and were still short of their target at its end.
    pub moving_at_end: usize,
    /// Time between one output's consecutive steps at the receiver.
    pub step_interval: Summary,
    /// Sends the instance counted as failed (`osc_failed`, a full socket buffer): 0 expected.
    pub failed: u64,
}

/// One ramp issued on A, drawn by A and B, compared at the same instants.
#[derive(Debug, Clone, Serialize)]
pub struct RampAgreement {
    pub output: &'static str,
    pub ramp_ms: u32,
    pub tick_ms: u64,
    /// The ramp's span in volts (`from` to target).
    pub range_v: f64,
    /// Over the runs, each run's largest difference: one series interpolated linearly at the other's
    /// timestamps (the curves), volts.
    pub interpolated_v: Spread,
    /// The same as what the two jacks hold at once (each output keeps its last step), volts.
    pub held_v: Spread,
    /// When each reached the target, B's arrival less A's, absolute, milliseconds.
    pub end_ms: Spread,
    pub runs: Vec<RampRun>,
}

/// The largest and the median of the runs' values.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub max: f64,
    pub median: f64,
}

/// One ramp compared.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RampRun {
    pub interpolated_v: f64,
    pub held_v: f64,
    /// B's first step less A's, milliseconds: the Redis hop.
    pub start_ms: f64,
    /// B's arrival at the target less A's, milliseconds.
    pub end_ms: f64,
    pub steps_a: usize,
    pub steps_b: usize,
}

/// Measures both rows; `url` is the Redis to use (each row under a key prefix of its own).
pub async fn rows(url: &str, catalog: &Catalog, q: bool) -> Motion {
    use super::variants::outcome;
    progress("motion: 64 outputs slewing on one child instance, unbundled then bundled");
    let slew_load = outcome(slew_load(url, catalog, q).await.context("slew load row"));
    progress("motion: one ramp on A, drawn by A and B, compared at the same instants");
    let ramp_agreement = outcome(ramp_agreement(url, catalog, q).await.context("ramp agreement row"));
    Motion { slew_load, ramp_agreement }
}

fn tick() -> Duration {
    MotionConfig::default().osc_tick
}

async fn slew_load(url: &str, catalog: &Catalog, q: bool) -> anyhow::Result<SlewLoad> {
    let window = if q { Duration::from_secs(1) } else { Duration::from_secs(5) };
    let unbundled = slew_run(url, catalog, false, window).await.context("OSC_BUNDLE=false")?;
    let bundled = slew_run(url, catalog, true, window).await.context("OSC_BUNDLE=true")?;
    Ok(SlewLoad {
        outputs: catalog.output_count(),
        slew_v_per_s: SLEW_V_PER_S,
        tick_ms: u64::try_from(tick().as_millis()).unwrap_or(u64::MAX),
        window_s: window.as_secs_f64(),
        unbundled,
        bundled,
    })
}

/// A child instance with every output routed at [`SLEW_V_PER_S`]: all set to 0 (they jump, having no
/// voltage yet), the idle window, then all set to the top at once and the moving window.
async fn slew_run(url: &str, catalog: &Catalog, bundle: bool, window: Duration) -> anyhow::Result<SlewRun> {
    let routes = pipeline::routes(catalog, catalog.output_count());
    anyhow::ensure!(routes.len() == catalog.output_count(), "fewer variables than outputs to route");
    let routing: serde_json::Map<String, serde_json::Value> = routes
        .iter()
        .map(|(o, v)| (o.clone(), serde_json::json!({ "variable": v, "range": SLEW_RANGE_V, "slew": SLEW_V_PER_S })))
        .collect();
    let tap = Tap::start()?;
    let prefix = format!("bench-slew-{}:", fastrand::u64(..));
    let vars = [("REDIS_KEY_PREFIX", prefix.clone()), ("OSC_BUNDLE", bundle.to_string())];
    let child = ChildBot::start_routed("bench-slew", url, tap.addr, &routing.into(), &vars).await?;
    let variables: Vec<Variable> = routes.iter().filter_map(|(_, v)| catalog.parse_variable(v)).collect();
    let mut conn = cvbot_testbed::redis_process::connect(url).await?;
    let channel = format!("{prefix}{PARAMETER_CHANNEL}");
    let outputs = routes.len();

    let [low, high] = SLEW_RANGE_V;
    publish_all(&mut conn, &channel, &variables, 0, 0).await?;
    wait_for(Duration::from_secs(5), "every output at its low end", || {
        tap.outputs_at(|v| (v - low).abs() < SAME_V) == outputs
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = Window::measure(&child, &tap, window).await;

    let top = catalog.value_max();
    publish_all(&mut conn, &channel, &variables, top, variables.len()).await?;
    wait_for(Duration::from_secs(2), "every output moving", || tap.outputs_at(|v| v > low) == outputs).await?;
    let moving = Window::measure(&child, &tap, window).await;

    let mut per_output: HashMap<&str, Vec<&Heard>> = HashMap::new();
    for h in &moving.log.heard {
        per_output.entry(h.output.as_str()).or_default().push(h);
    }
    let mut intervals = Samples::with_capacity(moving.log.heard.len());
    for steps in per_output.values() {
        for pair in steps.windows(2) {
            intervals.push(pair[1].at.duration_since(pair[0].at));
        }
    }
    let fewest = if per_output.len() == outputs { per_output.values().map(Vec::len).min().unwrap_or(0) } else { 0 };
    let moving_at_end =
        per_output.values().filter(|steps| steps.last().is_some_and(|h| h.volts < high - SAME_V)).count();
    Ok(SlewRun {
        bundle,
        idle_cpu_pct: idle.cpu_pct(),
        idle_datagrams_per_s: idle.per_s(idle.log.datagrams),
        cpu_pct: moving.cpu_pct(),
        datagrams_per_s: moving.per_s(moving.log.datagrams),
        messages_per_s: moving.per_s(moving.log.heard.len() as u64),
        min_steps_per_output_per_s: moving.per_s(fewest as u64),
        moving_at_end,
        step_interval: intervals.summary(),
        failed: child.stat("osc_failed"),
    })
}

/// Sets every variable to `value` in one pipeline, as a peer's events (stamps from now, sequence
/// numbers after `sent` earlier ones).
async fn publish_all(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    variables: &[Variable],
    value: u8,
    sent: usize,
) -> anyhow::Result<()> {
    let base = Hlc::from_wall_ms(cvbot::clock::wall_ms_now());
    let mut pipe = redis::pipe();
    for (i, variable) in variables.iter().enumerate() {
        let seq = (sent + i + 1) as u64;
        pipe.cmd("PUBLISH").arg(channel).arg(pipeline::raw_set_event(
            variable,
            value,
            base + seq,
            "bench-slew-pub",
            seq,
        ));
        pipe.ignore();
    }
    let () = pipe.query_async(conn).await?;
    Ok(())
}

/// What one window measured on a child instance.
#[derive(Debug)]
struct Window {
    cpu: Duration,
    elapsed: Duration,
    log: Log,
}

impl Window {
    /// The child's CPU time (its threads' scheduler counts; the coarser `/proc/<pid>/stat` should a
    /// thread end in the window) and what the tap got, from the window's start to its end, with
    /// nothing else asked of the child between.
    async fn measure(child: &ChildBot, tap: &Tap, window: Duration) -> Window {
        let cpu = child.cpu_mark();
        tap.take();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let (log, elapsed) = (tap.take(), started.elapsed());
        Window { cpu: child.cpu_mark().since(&cpu), elapsed, log }
    }

    fn cpu_pct(&self) -> f64 {
        self.cpu.as_secs_f64() * 100.0 / self.elapsed.as_secs_f64()
    }

    fn per_s(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Two in-process instances on one Redis, each to its own tap; `es9out#1 → doorway#1.gain` routed
/// on A (B gets it through Redis). Each run sets the value to 0 (a jump), then to the top over the
/// ramp, typed on A, and compares the two taps' series.
async fn ramp_agreement(url: &str, catalog: &Catalog, q: bool) -> anyhow::Result<RampAgreement> {
    let (ramp_ms, runs) = if q { (1000, 2) } else { (2000, 5) };
    let (tap_a, tap_b) = (Tap::start()?, Tap::start()?);
    let prefix = format!("bench-ramp-{}:", fastrand::u64(..));
    let options = BotOptions { redis_url: Some(url.to_owned()), vars: vec![("REDIS_KEY_PREFIX".to_owned(), prefix)] };
    let a = BenchBot::start("bench-ramp-a", tap_a.addr, &options).await?;
    let b = BenchBot::start("bench-ramp-b", tap_b.addr, &options).await?;
    a.connected().await?;
    b.connected().await?;
    pipeline::install_routes(&a, &[&b], &[(RAMP_OUTPUT.to_owned(), RAMP_VARIABLE.to_owned())]).await?;
    let output = catalog.output(RAMP_OUTPUT).context("the ramp's output is not in the catalogue")?;
    let (range, top) = (catalog.output_range(&output), catalog.value_max());
    let (from_v, to_v) = (range.voltage(0, top), range.voltage(top, top));
    let taps = [&tap_a, &tap_b];
    let both_at = |v: f32| move || taps.iter().all(|t| t.last(RAMP_OUTPUT).is_some_and(|at| (at - v).abs() < SAME_V));
    let mut measured = Vec::with_capacity(runs);
    for run in 0..runs {
        a.say(&format!("{RAMP_VARIABLE}: 0"));
        wait_for(Duration::from_secs(5), "both outputs at the ramp's start", both_at(from_v)).await?;
        tap_a.take();
        tap_b.take();
        let origin = Instant::now();
        a.say(&format!("{RAMP_VARIABLE}: {top} over {ramp_ms}ms"));
        let within = Duration::from_millis(u64::from(ramp_ms)) + Duration::from_secs(5);
        wait_for(within, "both outputs at the ramp's target", both_at(to_v)).await?;
        let series = |tap: &Tap| -> Vec<(f64, f64)> {
            tap.take()
                .heard
                .into_iter()
                .filter(|h| h.output == RAMP_OUTPUT)
                .map(|h| (h.at.duration_since(origin).as_secs_f64() * 1e3, f64::from(h.volts)))
                .collect()
        };
        let (series_a, series_b) = (series(&tap_a), series(&tap_b));
        measured.push(compare(&series_a, &series_b, f64::from(to_v)).with_context(|| format!("run {run}"))?);
    }
    a.stop().await;
    b.stop().await;
    let spread = |value: fn(&RampRun) -> f64| {
        let mut v: Vec<f64> = measured.iter().map(value).collect();
        v.sort_by(f64::total_cmp);
        Spread { max: v.last().copied().unwrap_or(0.0), median: percentile(&v, 0.5) }
    };
    Ok(RampAgreement {
        output: RAMP_OUTPUT,
        ramp_ms,
        tick_ms: u64::try_from(tick().as_millis()).unwrap_or(u64::MAX),
        range_v: f64::from((to_v - from_v).abs()),
        interpolated_v: spread(|r| r.interpolated_v),
        held_v: spread(|r| r.held_v),
        end_ms: spread(|r| r.end_ms.abs()),
        runs: measured,
    })
}

/// Polls `done` every 10 ms until it holds, or fails naming `what` after `within`.
pub(crate) async fn wait_for(within: Duration, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
