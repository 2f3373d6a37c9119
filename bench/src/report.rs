//! The report as a table: every row beside its floor, and what failed, named.

use super::{Only, OnlyReport, Report, Summary, democracy, motion, twitch, variants};

/// The table's first lines: a warning when the build is not a release build, what ran where, and
/// the column heads.
fn header(command: &str, build: &str, quick: bool, machine: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if build != "release" {
        let _ = writeln!(
            out,
            "NOT REPRESENTATIVE: a {build} build (unoptimised, debug assertions on); measure with `cargo run --release -p cvbot-bench`"
        );
    }
    let _ = writeln!(out, "{command}{} ({build} build) on {machine}", if quick { " --quick" } else { "" });
    let _ = writeln!(out, "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency (µs)", "p50", "p90", "p99", "p99.9", "max");
    out
}

/// One latency row: p50, p90, p99, p99.9 and max in microseconds.
fn row(out: &mut String, name: &str, s: &Summary) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "{name:<40} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
        s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us
    );
}

/// The human-readable table.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = header("cvbot-bench", report.build, report.quick, &report.machine);
    row(&mut out, "floor: UDP loopback one-way", &report.floor_udp);
    row(&mut out, "floor: Redis pub/sub one-way", &report.floor_redis);
    row(&mut out, "local: chat → OSC", &report.local);
    render_twitch(&mut out, &report.twitch);
    row(&mut out, "receiving half: Redis → OSC @1000/s", &report.remote_to_osc);
    for c in &report.cross {
        row(&mut out, &format!("floor: Redis → relay → UDP @{}/s", c.rate_per_s), &c.floor);
        row(&mut out, &format!("cross-instance @{}/s", c.rate_per_s), &c.latency);
        let _ = writeln!(
            out,
            "{:<40} {:>9.2} {:>9} {:>9.2}",
            format!("  ratio to floor @{}/s", c.rate_per_s),
            c.latency.p50_us / c.floor.p50_us.max(1e-9),
            "",
            c.latency.p99_us / c.floor.p99_us.max(1e-9)
        );
        if let (Some(bot), Some(floor)) = (c.redis_us_per_publish, c.floor_redis_us_per_publish) {
            let _ = writeln!(out, "  Redis's own time per publish: script {bot:.1} µs, floor's PUBLISH {floor:.1} µs");
        }
        for (name, floor) in [("the publish script", &c.script_floor), ("script + own subscription", &c.design_floor)] {
            let Some(floor) = floor else { continue };
            row(&mut out, &format!("floor: {name} @{}/s", c.rate_per_s), floor);
            let _ = writeln!(
                out,
                "{:<40} {:>9.2} {:>9} {:>9.2}",
                "  ratio to that floor",
                c.latency.p50_us / floor.p50_us.max(1e-9),
                "",
                c.latency.p99_us / floor.p99_us.max(1e-9)
            );
        }
    }
    let t = &report.throughput;
    let _ = writeln!(
        out,
        "throughput: {:.0} remote events/s applied by one instance ({} published, {} applied, {} OSC sent, {} OSC received), {:.2} cores",
        t.events_per_s, t.published, t.applied, t.osc_sent, t.osc_received, t.cpu_cores
    );
    let _ = writeln!(
        out,
        "  floor: raw Redis pub/sub {:.0} msg/s; ratio {:.2}",
        report.floor_redis_throughput_per_s,
        t.events_per_s / report.floor_redis_throughput_per_s.max(1e-9)
    );
    let _ = writeln!(
        out,
        "memory: RSS idle {:.1} MB, under load {:.1} MB",
        report.memory.idle_rss_mb, report.memory.load_rss_mb
    );
    let o = &report.overlay;
    let _ = writeln!(
        out,
        "overlay: {}/{} SSE clients at {} events/s: event → client p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; RSS {:.1} MB",
        o.connected,
        o.clients,
        o.events_per_s,
        o.latency.p50_us / 1000.0,
        o.latency.p99_us / 1000.0,
        o.latency.max_us / 1000.0,
        o.rss_mb
    );
    let _ = writeln!(
        out,
        "overlay hold: {}/{} clients connected, {:.1} % got the next update, RSS {:.1} MB",
        o.hold_connected, o.hold_clients, o.hold_delivered_pct, o.hold_rss_mb
    );
    render_motion(&mut out, &report.motion);
    render_democracy(&mut out, &report.democracy);
    render_variants(&mut out, report);
    out
}

/// The table of an [`OnlyReport`].
pub fn render_only(report: &OnlyReport) -> String {
    let command = match report.only {
        Only::Twitch => "cvbot-bench --only twitch",
        Only::Motion => "cvbot-bench --only motion",
        Only::Democracy => "cvbot-bench --only democracy",
    };
    let mut out = header(command, report.build, report.quick, &report.machine);
    if let Some(twitch) = &report.twitch {
        render_twitch(&mut out, twitch);
    }
    if let Some(motion) = &report.motion {
        render_motion(&mut out, motion);
    }
    if let Some(democracy) = &report.democracy {
        render_democracy(&mut out, democracy);
    }
    out
}

/// The slew load (each form beside the same instance idle) and the ramp agreement, or why each failed.
fn render_motion(out: &mut String, motion: &motion::Motion) {
    use std::fmt::Write;
    match &motion.slew_load {
        Ok(s) => {
            for r in [&s.unbundled, &s.bundled] {
                let _ = writeln!(
                    out,
                    "slew: {} outputs at {} V/s, tick {} ms, OSC_BUNDLE={}: CPU {:.1} % of a core (idle {:.2} %), \
                     {:.0} datagrams/s ({:.0} /cv/s; idle {:.1}/s), slowest output {:.0} steps/s, {}/{} moving at the end, \
                     {} failed sends",
                    s.outputs,
                    s.slew_v_per_s,
                    s.tick_ms,
                    r.bundle,
                    r.cpu_pct,
                    r.idle_cpu_pct,
                    r.datagrams_per_s,
                    r.messages_per_s,
                    r.idle_datagrams_per_s,
                    r.min_steps_per_output_per_s,
                    r.moving_at_end,
                    s.outputs,
                    r.failed
                );
                row(out, &format!("  slew: step interval, OSC_BUNDLE={}", r.bundle), &r.step_interval);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED {e}");
        }
    }
    match &motion.ramp_agreement {
        Ok(r) => {
            let fraction = |v: f64| v / r.range_v.max(1e-9);
            let _ = writeln!(
                out,
                "ramp: {} over {} ms on two instances, {} runs: largest difference {:.2} mV interpolated (1/{:.0} of \
                 the range; median {:.2} mV), {:.2} mV held (1/{:.0}; median {:.2} mV); end times {:.2} ms apart \
                 (median {:.2} ms)",
                r.output,
                r.ramp_ms,
                r.runs.len(),
                r.interpolated_v.max * 1e3,
                1.0 / fraction(r.interpolated_v.max).max(1e-12),
                r.interpolated_v.median * 1e3,
                r.held_v.max * 1e3,
                1.0 / fraction(r.held_v.max).max(1e-12),
                r.held_v.median * 1e3,
                r.end_ms.max,
                r.end_ms.median
            );
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED {e}");
        }
    }
}

/// The democracy row: the votes and what they cost each instance, the verdict's latency at both
/// jacks, and every check that failed, or why the row failed.
fn render_democracy(out: &mut String, democracy: &variants::Outcome<democracy::DemocracyRow>) {
    use std::fmt::Write;
    let d = match democracy {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "FAILED {e}");
            return;
        }
    };
    let _ = writeln!(
        out,
        "democracy: {} viewers ({} voted twice) on {} parameters, window {} s, POST /api/chat over {} connections \
         per instance: {}/{} votes counted in {:.2} s, {:.0} votes/s, the last {:.1} s into the window",
        d.viewers,
        d.revoters,
        d.parameters,
        d.window_ms / 1000,
        d.connections_per_instance,
        d.votes_accepted,
        d.votes_sent,
        d.voting_ms / 1e3,
        d.votes_per_s,
        d.voted_by_ms / 1e3
    );
    for i in [&d.a, &d.b] {
        let _ = writeln!(
            out,
            "  {}: CPU {:.0} % of a core while voting ({:.1} µs per vote); RSS {:.1} MB → {:.1} MB holding {} votes \
             ({}/{} parameters as sent); {} /cv ({} datagrams) while voting",
            i.instance,
            i.cpu_pct,
            i.cpu_us_per_vote,
            i.rss_before_mb,
            i.rss_full_mb,
            i.ballot_votes,
            i.ballot_matches,
            d.parameters,
            i.cv_while_voting,
            i.datagrams_while_voting
        );
        let v = &i.verdict_ms;
        let _ = writeln!(
            out,
            "  {}: window close → /cv p50 {:.1} ms, min {:.1}, max {:.1} (grace {} ms); one /cv for {}/{} parameters \
             ({} in all); {}/{} values the bench's medians; verdicts applied {}, found applied {}",
            i.instance,
            v.p50_ms,
            v.min_ms,
            v.max_ms,
            d.grace_ms,
            i.one_cv_parameters,
            d.parameters,
            i.cv_after_close,
            i.values_match,
            d.parameters,
            i.verdicts_applied,
            i.verdicts_seen
        );
    }
    let diff = &d.b_minus_a_ms;
    let _ = writeln!(
        out,
        "  democracy: B's /cv less A's p50 {:.2} ms, min {:.2}, max {:.2} ({} parameters)",
        diff.p50_ms, diff.min_ms, diff.max_ms, diff.n
    );
    for m in &d.mismatches {
        let _ = writeln!(out, "  MISMATCH democracy: {m}");
    }
}

/// The Twitch rows: viewers' lines, admin commands paced and mid-burst, and whether every admin
/// command took effect.
fn render_twitch(out: &mut String, twitch: &variants::Outcome<twitch::TwitchRow>) {
    use std::fmt::Write;
    match twitch {
        Ok(t) => {
            row(out, &format!("twitch: IRC PRIVMSG → OSC @{}/s", t.rate_per_s), &t.latency);
            row(out, "  twitch: admin route → /routing", &t.admin);
            row(out, &format!("  twitch: admin mid-burst of {}", t.burst_lines), &t.burst_admin);
            let _ = writeln!(
                out,
                "  twitch: {}/{} viewer sets arrived ({} chat lines between); admin commands through: {}/{} paced, \
                 {}/{} mid-burst ({} viewer lines shed in the bursts)",
                t.latency.n,
                t.viewer_sent,
                t.chatter_sent,
                t.admin_arrived,
                t.admin_sent,
                t.burst_admin_arrived,
                t.bursts,
                t.burst_shed
            );
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED {e}");
        }
    }
}

/// The client A/B, Sentinel and Cluster rows and the failover times, or why each failed.
fn render_variants(out: &mut String, report: &Report) {
    use std::fmt::Write;
    let ratio = |out: &mut String, name: &str, p50: f64, p99: f64| {
        let _ = writeln!(out, "{name:<40} {p50:>9.2} {:>9} {p99:>9.2}", "");
    };
    for (name, topology) in [("sentinel", &report.sentinel), ("cluster", &report.cluster)] {
        match topology {
            Ok(t) => {
                let _ = writeln!(out, "{name}: set started in {:.0} ms", t.start_ms);
                row(out, &format!("{name}: floor: relay → UDP @{}/s", t.rate_per_s), &t.floor);
                row(out, &format!("{name}: cross-instance @{}/s", t.rate_per_s), &t.latency);
                let (p50, p99) =
                    (t.latency.p50_us / t.floor.p50_us.max(1e-9), t.latency.p99_us / t.floor.p99_us.max(1e-9));
                ratio(out, "  ratio to floor", p50, p99);
                if let Some(design) = &t.design_floor {
                    row(out, &format!("{name}: floor: script + own subscription"), design);
                    let (p50, p99) =
                        (t.latency.p50_us / design.p50_us.max(1e-9), t.latency.p99_us / design.p99_us.max(1e-9));
                    ratio(out, "  ratio to that floor", p50, p99);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED {e}");
            }
        }
    }
    for (name, failover) in [("sentinel", &report.sentinel_failover), ("cluster", &report.cluster_failover)] {
        match failover {
            Ok(f) => {
                let list = |value: &dyn Fn(&variants::FailoverRun) -> String| {
                    f.runs.iter().map(value).collect::<Vec<_>>().join(", ")
                };
                let _ = writeln!(
                    out,
                    "{name} failover: kill → first command through {:.0} ms (median of {}; runs {} ms); that command was typed {} ms after the kill; Redis's new master in place after {} ms",
                    f.median_ms,
                    f.runs.len(),
                    list(&|r| format!("{:.0}", r.recovered_ms)),
                    list(&|r| format!("{:.0}", r.typed_ms)),
                    list(&|r| r.redis_ms.map_or("?".to_owned(), |m| format!("{m:.0}"))),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Samples;
    use crate::{BUILD, Memory, Overlay, Report, Throughput, motion};

    fn report(build: &'static str) -> Report {
        let none = Samples::default().summary();
        Report {
            build,
            quick: true,
            machine: "2 cores, test".to_owned(),
            floor_udp: none,
            floor_redis: none,
            floor_redis_udp: none,
            floor_redis_throughput_per_s: 0.0,
            local: none,
            twitch: Err("twitch row: not run".to_owned()),
            remote_to_osc: none,
            cross: Vec::new(),
            throughput: Throughput {
                published: 0,
                applied: 0,
                osc_sent: 0,
                osc_received: 0,
                events_per_s: 0.0,
                cpu_cores: 0.0,
            },
            memory: Memory { idle_rss_mb: 0.0, load_rss_mb: 0.0 },
            overlay: Overlay {
                clients: 0,
                connected: 0,
                events_per_s: 0,
                latency: none,
                rss_mb: 0.0,
                hold_clients: 0,
                hold_connected: 0,
                hold_delivered_pct: 0.0,
                hold_rss_mb: 0.0,
            },
            motion: motion::Motion {
                slew_load: Err("slew load row: not run".to_owned()),
                ramp_agreement: Err("ramp agreement row: not run".to_owned()),
            },
            democracy: Err("democracy row: not run".to_owned()),
            sentinel: Err("sentinel row: not run".to_owned()),
            sentinel_failover: Err("sentinel failover: not run".to_owned()),
            cluster: Err("cluster row: not run".to_owned()),
            cluster_failover: Err("cluster failover: not run".to_owned()),
        }
    }

    #[test]
    fn a_debug_build_says_so_first_in_the_table_and_in_the_json() {
        assert_eq!(BUILD, if cfg!(debug_assertions) { "debug" } else { "release" });
        let debug = report("debug");
        let text = render(&debug);
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("NOT REPRESENTATIVE: a debug build"), "{text}");
        assert!(text.lines().nth(1).is_some_and(|l| l.contains("(debug build)")), "{text}");
        let json = serde_json::to_value(&debug).expect("the report serialises");
        assert_eq!(json["build"], "debug");

        let release = render(&report("release"));
        assert!(!release.contains("NOT REPRESENTATIVE"), "{release}");
        assert!(release.starts_with("cvbot-bench --quick (release build) on 2 cores, test"), "{release}");
    }
}
