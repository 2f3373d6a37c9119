//! The built `cvbot-bench` binary as a user runs it: arguments checked before minutes of measuring,
//! and the hidden child mode the bench starts its per-process instances in.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cvbot-bench"));
    // A clean environment: no developer .env or shell variables leak into the test.
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn it_refuses_a_plot_file_it_cannot_draw_before_measuring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench()
        .current_dir(dir.path())
        .args(["--quick", "--plot", "latency.png"])
        .stdin(Stdio::null())
        .output()
        .expect("run cvbot-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--plot latency.png") && stderr.contains("FILE.svg"), "{stderr}");
    assert!(!stderr.contains("floor:"), "it stopped before the first phase: {stderr}");
}

#[test]
fn help_lists_the_flags_but_not_the_child_mode() {
    let out = bench().arg("--help").output().expect("run cvbot-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for flag in ["--quick", "--json", "--plot", "--redis-url", "--only"] {
        assert!(stdout.contains(flag), "{flag}: {stdout}");
    }
    assert!(!stdout.contains("serve-instance"), "{stdout}");
}

#[test]
fn only_twitch_measures_the_twitch_row_alone_and_every_admin_command_gets_through() {
    let (stdout, report) = run_only("twitch");
    assert!(stdout.contains("twitch: IRC PRIVMSG → OSC @200/s"), "{stdout}");
    assert!(!stdout.contains("floor:") && !stdout.contains("FAILED"), "only the Twitch row: {stdout}");
    let row = &report["twitch"]["Ok"];
    assert!(row["latency"]["n"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(row["admin_arrived"], row["admin_sent"], "every paced admin command took effect: {report}");
    assert_eq!(row["burst_admin_arrived"], row["bursts"], "every mid-burst admin command took effect: {report}");
}

#[test]
fn only_motion_measures_the_slew_load_and_the_ramp_agreement() {
    let (stdout, report) = run_only("motion");
    assert!(!stdout.contains("FAILED") && !stdout.contains("twitch:"), "only the motion rows: {stdout}");
    assert_eq!(report["only"], "motion", "{report}");
    let slew = &report["motion"]["slew_load"]["Ok"];
    for form in ["unbundled", "bundled"] {
        assert_eq!(slew[form]["moving_at_end"], slew["outputs"], "every output moved throughout: {report}");
        assert!(slew[form]["datagrams_per_s"].as_f64().is_some_and(|d| d > 0.0), "{report}");
    }
    let ramp = &report["motion"]["ramp_agreement"]["Ok"];
    // However slow a debug build on a loaded host, two instances on one clock draw one line: far
    // within a tenth of the range.
    assert!(
        ramp["interpolated_v"]["max"].as_f64().is_some_and(|v| v < 0.1 * ramp["range_v"].as_f64().unwrap_or(0.0)),
        "{report}"
    );
}

#[test]
fn only_democracy_counts_every_vote_sends_no_osc_while_voting_and_lands_each_median_once_on_both() {
    let (stdout, report) = run_only("democracy");
    assert!(!stdout.contains("FAILED") && !stdout.contains("MISMATCH"), "{stdout}");
    assert!(stdout.contains("democracy: ") && !stdout.contains("slew:"), "only the democracy row: {stdout}");
    assert_eq!(report["only"], "democracy", "{report}");
    let row = &report["democracy"]["Ok"];
    let parameters = row["parameters"].as_u64().expect("parameters");
    assert!(row["revoters"].as_u64().is_some_and(|r| r > 0), "some viewers voted twice: {report}");
    assert_eq!(row["votes_accepted"], row["votes_sent"], "every vote counted: {report}");
    assert_eq!(row["mismatches"], serde_json::json!([]), "{report}");
    let grace = row["grace_ms"].as_f64().expect("grace_ms");
    for instance in ["a", "b"] {
        let i = &row[instance];
        assert_eq!(i["ballot_matches"], parameters, "{instance}'s ballot held what was sent: {report}");
        assert_eq!(i["datagrams_while_voting"], 0, "{instance}: no OSC while voting: {report}");
        assert_eq!(i["one_cv_parameters"], parameters, "{instance}: one /cv per parameter: {report}");
        assert_eq!(i["cv_after_close"], parameters, "{instance}: and no other: {report}");
        assert_eq!(i["values_match"], parameters, "{instance}: the bench's medians: {report}");
        // Never before the grace ran out (2 ms for mapping the taps' clock onto the wall clock).
        assert!(i["verdict_ms"]["min_ms"].as_f64().is_some_and(|ms| ms >= grace - 2.0), "{instance}: {report}");
    }
    assert_eq!(row["a"]["verdicts_applied"], parameters, "A, first by name, applied every verdict: {report}");
    assert_eq!(row["b"]["verdicts_applied"], 0, "B found each applied: {report}");
}

/// `cvbot-bench --only ROW --quick --json FILE`: it must exit 0; its standard output and the report.
fn run_only(row: &str) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join(format!("{row}.json"));
    let out = bench()
        .current_dir(dir.path())
        .args(["--only", row, "--quick", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run cvbot-bench");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON")).expect("valid JSON");
    (stdout.into_owned(), report)
}

/// `GET path` over HTTP/1.0; the status line and the body.
fn get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

#[test]
fn the_child_mode_serves_one_bot_configured_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let osc = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = format!("127.0.0.1:{port}");
    let mut child = bench()
        .arg("--serve-instance")
        .current_dir(dir.path())
        .env("HTTP_ADDR", &addr)
        .env("INSTANCE_ID", "bench-child-test")
        .env("OSC_TARGETS", osc.local_addr().expect("addr").to_string())
        .env("CHAT_STDIN", "off")
        // Never the shared Redis on 6379: this instance runs without one.
        .env("ENABLE_REDIS_EVENTS", "false")
        .env("ROUTING_FILE", dir.path().join("routing_table.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cvbot-bench --serve-instance");
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        if let Some((status, body)) = get(&addr, "/api/state")
            && status.contains(" 200")
        {
            break body;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
            panic!("the child exited ({status}) before it served: {stderr}");
        }
        assert!(Instant::now() < deadline, "the child did not serve /api/state within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let state: serde_json::Value = serde_json::from_str(&state).expect("/api/state is JSON");
    assert_eq!(state["instance_id"], "bench-child-test", "configured from the environment: {state}");
}

#[test]
fn the_child_mode_exits_on_a_bad_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench()
        .arg("--serve-instance")
        .current_dir(dir.path())
        .env("HTTP_ADDR", "not-an-address")
        .env("ENABLE_REDIS_EVENTS", "false")
        .stdin(Stdio::null())
        .output()
        .expect("run cvbot-bench --serve-instance");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP_ADDR"), "{stderr}");
}
