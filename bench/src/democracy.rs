//! The democracy row (`--only democracy`): what thousands of viewers' votes cost two instances on
//! one Redis while a window is open (votes per second, CPU, memory, and no OSC at all), and how
//! soon and how exactly the window's result reaches both instances' jacks once it closes.
//!
//! Two child instances (A and B, per-process CPU and RSS) route the same [`PARAMETERS`] outputs and
//! send OSC to a [`Tap`] each. Democracy is switched on at A (`POST /api/admin/mode`); the viewers
//! vote through `POST /api/chat` as plain viewers (a `user` and no badge), half on A and half on
//! B, each instance's half over [`CONNECTIONS`] kept-alive connections, as fast as they answer.
//! The bench knows every vote, so it knows each parameter's median before the bot does; it checks
//! the ballots both instances show before the close, then the one `/cv` per parameter each tap must
//! get after it, and the value both instances then hold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use cvbot::app::DECIDE_EVERY;
use cvbot::catalog::Catalog;
use cvbot::coord::BACKUP_STEP_MS;
use cvbot::state::VOTE_GRACE_MS;
use serde::Serialize;
use serde_json::json;

use super::child::ChildBot;
use super::measure::percentile;
use super::motion::tap::Tap;
use super::motion::wait_for;
use super::{pipeline, progress};

mod checks;
mod client;
mod plan;

use checks::{arrivals, ballot, values};
use client::Client;
use plan::{Expected, Vote};

/// Routed parameters the viewers vote on, one output each.
pub const PARAMETERS: usize = 16;
/// Distinct viewers in a full run: the ballot then holds `MAX_BALLOT_VOTES`, the most it may.
pub const VIEWERS: usize = cvbot::state::MAX_BALLOT_VOTES;
/// …and with `--quick`.
pub const QUICK_VIEWERS: usize = 1_000;
/// The window: on the 2-core host of BENCHMARKS.md every vote is in after about 1.3 s (0.1 s with
/// `--quick`), so a host several times slower still fits them in.
const WINDOW_MS: u64 = 10_000;
const QUICK_WINDOW_MS: u64 = 5_000;
/// Every this many viewers votes a second time, on the other instance and with another value.
const REVOTE_EVERY: usize = 10;
/// Kept-alive connections each instance's votes come over.
pub const CONNECTIONS: usize = 4;
/// The instances, by name: A sorts first, so A is the tallier; B would apply a verdict only if no
/// write had reached its parameter a second after B decided it.
const NAMES: [&str; 2] = ["bench-democracy-a", "bench-democracy-b"];
/// The votes' values are drawn from this seed: one plan, one set of medians, every run.
const SEED: u64 = 20_261_202;
/// How often the bot's democracy ticker decides: a result may land this much after the grace.
const DECIDE_EVERY_MS: u64 = DECIDE_EVERY.as_secs() * 1000 + DECIDE_EVERY.subsec_millis() as u64;
/// Listening this long beyond that as well, for a late datagram.
const SETTLE_MS: u64 = 500;

/// The row's figures and checks.
#[derive(Debug, Clone, Serialize)]
pub struct DemocracyRow {
    pub parameters: usize,
    /// Distinct viewers; each voted once on one parameter…
    pub viewers: usize,
    /// …and these a second time, on the other instance, with another value: their later vote counts.
    pub revoters: usize,
    pub window_ms: u64,
    pub connections_per_instance: usize,
    pub votes_sent: usize,
    /// Votes the instance answered as counted (`applied: true`).
    pub votes_accepted: usize,
    /// Votes answered otherwise (none expected), and the first answer's words.
    pub votes_refused: usize,
    pub first_refusal: Option<String>,
    /// From the first vote sent to the last one answered.
    pub voting_ms: f64,
    pub votes_per_s: f64,
    /// When the last vote was answered, from the window's start (the mode's `started_ms`): the row
    /// fails if it is not inside the window.
    pub voted_by_ms: f64,
    /// What the verdict latency should be about: `VOTE_GRACE_MS`, plus up to the decide tick and
    /// the delivery.
    pub grace_ms: u64,
    pub a: InstanceRow,
    pub b: InstanceRow,
    /// Per parameter, B's `/cv` arrival less A's, ms (B applies A's result through Redis).
    pub b_minus_a_ms: Latency,
    /// Every check that failed, in words; empty when all held.
    pub mismatches: Vec<String>,
}

/// One instance's share of the row.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub instance: &'static str,
    /// CPU time over the voting, % of one core (its threads' scheduler counts).
    pub cpu_pct: f64,
    /// That CPU time per vote counted: every instance files every vote, its own viewers' over HTTP
    /// and the other's through Redis.
    pub cpu_us_per_vote: f64,
    /// RSS before democracy, and with the ballot holding every vote (read before the close).
    pub rss_before_mb: f64,
    pub rss_full_mb: f64,
    /// Votes `/api/state` showed held before the close, summed over the parameters.
    pub ballot_votes: u64,
    /// Parameters whose count and median in `/api/state` before the close were the bench's.
    pub ballot_matches: usize,
    /// Datagrams of any kind, and `/cv` messages, the tap got from the first vote until the ballots
    /// were read, before the close.
    pub datagrams_while_voting: u64,
    pub cv_while_voting: usize,
    /// Window close (the mode's `started_ms` + `window_ms`, the server's clock) → each parameter's
    /// first `/cv` at the tap (the bench host's clock: the same host), over the parameters.
    pub verdict_ms: Latency,
    /// Parameters that got exactly one `/cv` after the close ([`PARAMETERS`] expected).
    pub one_cv_parameters: usize,
    pub cv_after_close: usize,
    /// Parameters whose `/api/state` value after the verdict is the bench's median, written by
    /// `chat (N votes)` with the bench's N.
    pub values_match: usize,
    /// Its `verdicts_applied` and `verdicts_seen` counters: A applies every verdict, B finds each
    /// applied.
    pub verdicts_applied: u64,
    pub verdicts_seen: u64,
}

/// The smallest, median and largest of a few values, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    pub n: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut values: Vec<f64>) -> Latency {
        values.sort_by(f64::total_cmp);
        Latency {
            n: values.len(),
            min_ms: values.first().copied().unwrap_or(0.0),
            p50_ms: percentile(&values, 0.5),
            max_ms: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// Votes answered, counted.
#[derive(Debug, Default)]
struct Answers {
    accepted: usize,
    refused: usize,
    first_refusal: Option<String>,
}

impl Answers {
    fn count(&mut self, status: u16, reply: &str) {
        let counted = status == 200
            && serde_json::from_str::<serde_json::Value>(reply)
                .is_ok_and(|v| v["applied"] == serde_json::Value::Bool(true));
        if counted {
            self.accepted += 1;
        } else {
            self.refused += 1;
            self.first_refusal.get_or_insert_with(|| format!("{status} {reply}"));
        }
    }

    fn add(&mut self, other: Answers) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        if self.first_refusal.is_none() {
            self.first_refusal = other.first_refusal;
        }
    }
}

/// The row, or why it failed (the phase named); `url` is the Redis to use.
pub async fn measured(url: &str, catalog: &Catalog, q: bool) -> super::variants::Outcome<DemocracyRow> {
    let viewers = if q { QUICK_VIEWERS } else { VIEWERS };
    progress(&format!(
        "democracy: {viewers} viewers voting on {PARAMETERS} parameters over two child instances, then the verdict"
    ));
    super::variants::outcome(row(url, catalog, q).await.context("democracy row"))
}

/// Measures the row on the Redis at `url`, under a key prefix of its own.
async fn row(url: &str, catalog: &Catalog, q: bool) -> anyhow::Result<DemocracyRow> {
    let (viewers, window_ms) = if q { (QUICK_VIEWERS, QUICK_WINDOW_MS) } else { (VIEWERS, WINDOW_MS) };
    let show = Show::start(url, catalog).await?;
    let rss_before = show.bots().map(|bot| mb(bot.rss_bytes()));
    let close_ms = show.democracy(window_ms).await?;
    let started_ms = close_ms - window_ms;
    let (first, again) = plan::plan(viewers, PARAMETERS, REVOTE_EVERY, catalog.value_max(), SEED);
    let voting = show.vote(&first, &again).await?;
    let voted_by_ms = wall_ms() - started_ms as f64;
    anyhow::ensure!(
        voted_by_ms < window_ms as f64,
        "the votes did not fit in the window: the last was answered {voted_by_ms:.0} ms after its start, and it \
         lasts {window_ms} ms"
    );

    let sent: Vec<Vote> = first.iter().chain(&again).copied().collect();
    let expected = plan::expected(&sent, PARAMETERS);
    let mut mismatches = Vec::new();
    let answers = &voting.answers;
    if answers.refused > 0 {
        mismatches.push(format!(
            "{} of {} votes not counted (the first answer: {})",
            answers.refused,
            sent.len(),
            answers.first_refusal.as_deref().unwrap_or("?")
        ));
    }
    let ballots = show.ballots(&expected, close_ms).await;
    let rss_full = show.bots().map(|bot| mb(bot.rss_bytes()));
    let during = show.taps.each_ref().map(Tap::take);

    sleep_until_wall(close_ms + VOTE_GRACE_MS + DECIDE_EVERY_MS + BACKUP_STEP_MS + SETTLE_MS).await;
    let (now, now_wall) = (Instant::now(), wall_ms());
    let after = show.taps.each_ref().map(Tap::take);
    let wall_of = |at: Instant| now_wall - now.duration_since(at).as_secs_f64() * 1e3;
    let arrivals = after.each_ref().map(|log| arrivals(log, &show.outputs, close_ms as f64, &wall_of));

    let [a, b] = [0, 1].map(|i| {
        let (name, bot) = (["A", "B"][i], show.bots()[i]);
        let (ballot_votes, ballot_matches, ballot_wrong) = &ballots[i];
        mismatches.extend(ballot_wrong.iter().map(|w| format!("{name}'s ballot before the close: {w}")));
        let cv_while_voting = during[i].heard.len();
        if cv_while_voting > 0 {
            mismatches.push(format!("{name}: {cv_while_voting} /cv while voting (none expected)"));
        }
        let (first_at, counts) = &arrivals[i];
        for (p, count) in counts.iter().enumerate().filter(|(_, c)| **c != 1) {
            mismatches.push(format!("{name}: {} got {count} /cv after the close (one expected)", show.outputs[p]));
        }
        let (values_match, values_wrong) = values(bot, &show.variables, &expected);
        mismatches.extend(values_wrong.iter().map(|w| format!("{name} after the verdict: {w}")));
        let cpu = voting.cpu[i].as_secs_f64();
        InstanceRow {
            instance: NAMES[i],
            cpu_pct: cpu * 100.0 / voting.elapsed.as_secs_f64().max(1e-9),
            cpu_us_per_vote: cpu * 1e6 / answers.accepted.max(1) as f64,
            rss_before_mb: rss_before[i],
            rss_full_mb: rss_full[i],
            ballot_votes: *ballot_votes,
            ballot_matches: *ballot_matches,
            datagrams_while_voting: during[i].datagrams,
            cv_while_voting,
            verdict_ms: Latency::of(first_at.iter().flatten().copied().collect()),
            one_cv_parameters: counts.iter().filter(|c| **c == 1).count(),
            cv_after_close: counts.iter().sum(),
            values_match,
            verdicts_applied: bot.stat("verdicts_applied"),
            verdicts_seen: bot.stat("verdicts_seen"),
        }
    });
    let differences = arrivals[0].0.iter().zip(&arrivals[1].0).filter_map(|(a, b)| Some((*b)? - (*a)?)).collect();
    Ok(DemocracyRow {
        parameters: PARAMETERS,
        viewers,
        revoters: again.len(),
        window_ms,
        connections_per_instance: CONNECTIONS,
        votes_sent: sent.len(),
        votes_accepted: answers.accepted,
        votes_refused: answers.refused,
        first_refusal: answers.first_refusal.clone(),
        voting_ms: voting.elapsed.as_secs_f64() * 1e3,
        votes_per_s: answers.accepted as f64 / voting.elapsed.as_secs_f64().max(1e-9),
        voted_by_ms,
        grace_ms: VOTE_GRACE_MS,
        a,
        b,
        b_minus_a_ms: Latency::of(differences),
        mismatches,
    })
}

/// The two instances, their taps and what they route.
#[derive(Debug)]
struct Show {
    a: ChildBot,
    b: ChildBot,
    taps: [Tap; 2],
    token: String,
    /// The routed variables, the viewers' parameters in order, and their outputs.
    variables: Arc<Vec<String>>,
    outputs: Vec<String>,
}

/// The voting, as it went.
#[derive(Debug)]
struct Voting {
    answers: Answers,
    /// From the first vote sent to the last answered.
    elapsed: Duration,
    /// Each instance's CPU time over it.
    cpu: [Duration; 2],
}

impl Show {
    /// A and B, each routing the same [`PARAMETERS`] outputs (its routing file) and sending to a
    /// tap of its own, connected to Redis and each listing the other as live.
    async fn start(url: &str, catalog: &Catalog) -> anyhow::Result<Show> {
        let routes = pipeline::routes(catalog, PARAMETERS);
        anyhow::ensure!(routes.len() == PARAMETERS, "fewer variables than the row's {PARAMETERS} parameters");
        let routing: serde_json::Map<String, serde_json::Value> =
            routes.iter().map(|(o, v)| (o.clone(), serde_json::Value::String(v.clone()))).collect();
        let routing = serde_json::Value::Object(routing);
        let taps = [Tap::start()?, Tap::start()?];
        let token = format!("bench-{:032x}", fastrand::u128(..));
        let vars = [
            ("REDIS_KEY_PREFIX", format!("bench-democracy-{}:", fastrand::u64(..))),
            ("ADMIN_TOKEN", token.clone()),
            // The bench's instances let every command in, as in the other rows: the show's defaults
            // (one command a second per viewer, 50 a second in all) would measure the gate instead.
            ("RATE_LIMIT_MS", "0".to_owned()),
            ("GLOBAL_RATE_LIMIT", "0".to_owned()),
        ];
        let a = ChildBot::start_routed(NAMES[0], url, taps[0].addr, &routing, &vars).await?;
        let b = ChildBot::start_routed(NAMES[1], url, taps[1].addr, &routing, &vars).await?;
        let show = Show {
            a,
            b,
            taps,
            token,
            variables: Arc::new(routes.iter().map(|(_, v)| v.clone()).collect()),
            outputs: routes.into_iter().map(|(o, _)| o).collect(),
        };
        // B must know A is live to leave the tally to it; A learns of B at its next heartbeat.
        wait_for(Duration::from_secs(15), "both instances listing both as live", || {
            show.bots().iter().all(|bot| {
                let live = bot.json("/api/events/health").map(|h| h["instances"].clone()).unwrap_or_default();
                NAMES.iter().all(|name| live.as_array().is_some_and(|l| l.iter().any(|n| n == name)))
            })
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(show)
    }

    fn bots(&self) -> [&ChildBot; 2] {
        [&self.a, &self.b]
    }

    /// Democracy with `window_ms`, switched on at A, seen by both from one start; when its first
    /// window closes. The taps are emptied of what came before.
    async fn democracy(&self, window_ms: u64) -> anyhow::Result<u64> {
        // Each instance's ticker wakes every DECIDE_EVERY, so where its ticks fall in the window
        // decides how long after the grace the verdict comes. This set-up would otherwise fix that
        // phase run after run (the mode follows A's presence heartbeat, which follows A's start, by
        // about the same time), so it is drawn afresh: the runs sample it.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(..DECIDE_EVERY_MS))).await;
        let mode = json!({ "mode": "democracy", "window_ms": window_ms }).to_string();
        let (status, reply) = Client::new(self.a.http, &self.token).post("/api/admin/mode", &mode).await?;
        anyhow::ensure!(status == 200, "POST /api/admin/mode on A answered {status}: {reply}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let started_ms = loop {
            let starts = self.bots().map(|bot| {
                let mode = bot.json("/api/state").map(|s| s["mode"].clone()).unwrap_or_default();
                let democracy = mode["mode"] == "democracy" && mode["window_ms"] == window_ms;
                democracy.then(|| mode["started_ms"].as_u64()).flatten()
            });
            if let [Some(a), Some(b)] = starts
                && a == b
            {
                break a;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "both instances in democracy from one start: not within 5 s ({starts:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for tap in &self.taps {
            tap.take();
        }
        Ok(started_ms + window_ms)
    }

    /// Both rounds of votes, the second once the first is answered, and each instance's CPU time
    /// over them.
    async fn vote(&self, first: &[Vote], again: &[Vote]) -> anyhow::Result<Voting> {
        let addrs = [self.a.http, self.b.http];
        let cpu = self.bots().map(ChildBot::cpu_mark);
        let started = Instant::now();
        let mut answers = vote_round(addrs, &self.token, &self.variables, first).await?;
        // A second vote must be stamped after the first, which the other instance may not have
        // heard of yet: a later millisecond of the wall clock both stamp from guarantees it.
        tokio::time::sleep(Duration::from_millis(5)).await;
        answers.add(vote_round(addrs, &self.token, &self.variables, again).await?);
        let elapsed = started.elapsed();
        let cpu = [self.a.cpu_mark().since(&cpu[0]), self.b.cpu_mark().since(&cpu[1])];
        Ok(Voting { answers, elapsed, cpu })
    }

    /// Each instance's ballot as [`ballot`] reads it, once both hold every vote as sent (A's
    /// viewers' reach B through Redis, and B's A), or as they stand 5 s on or 200 ms before the
    /// close.
    async fn ballots(&self, expected: &[Option<Expected>], close_ms: u64) -> [(u64, usize, Vec<String>); 2] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ballots = self.bots().map(|bot| ballot(bot, &self.variables, expected));
            let all = ballots.iter().all(|(_, matches, _)| *matches == PARAMETERS);
            if all || Instant::now() > deadline || wall_ms() + 200.0 > close_ms as f64 {
                return ballots;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends `votes` to their instances, [`CONNECTIONS`] connections each, every connection one vote
/// after the other as fast as the instance answers; returns once every vote is answered.
async fn vote_round(
    addrs: [SocketAddr; 2],
    token: &str,
    variables: &Arc<Vec<String>>,
    votes: &[Vote],
) -> anyhow::Result<Answers> {
    let mut lanes = tokio::task::JoinSet::new();
    for (instance, addr) in addrs.into_iter().enumerate() {
        let mine: Vec<Vote> = votes.iter().filter(|v| v.instance == instance).copied().collect();
        for lane in 0..CONNECTIONS {
            let queue: Vec<Vote> = mine.iter().skip(lane).step_by(CONNECTIONS).copied().collect();
            let (mut client, variables) = (Client::new(addr, token), variables.clone());
            lanes.spawn(async move {
                let mut answers = Answers::default();
                for v in queue {
                    let text = format!("{}: {}", variables[v.parameter], v.value);
                    let body = json!({ "user": format!("viewer{}", v.viewer), "text": text }).to_string();
                    let (status, reply) = client.post("/api/chat", &body).await?;
                    answers.count(status, &reply);
                }
                anyhow::Ok(answers)
            });
        }
    }
    let mut answers = Answers::default();
    while let Some(lane) = lanes.join_next().await {
        answers.add(lane.context("a voting connection's task")??);
    }
    Ok(answers)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Wall-clock milliseconds, to the microsecond: the taps' arrivals compared with the server's
/// millisecond stamps.
fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn sleep_until_wall(target_ms: u64) {
    let wait = target_ms as f64 - wall_ms();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait / 1e3)).await;
    }
}
