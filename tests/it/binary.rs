//! The built `cvbot` binary as a user runs it: exit codes, messages, stdin chat, signals.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_twitch::{FakeTwitch, User};
use crate::helpers::{OscReceiver, cv, eventually_blocking, poll_blocking, routing};

pub(crate) fn cvbot() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cvbot"));
    // A clean environment: no developer .env or shell variables leak into the test.
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("LOG_LEVEL", "info");
    // Never the shared Redis on 6379 that these machines run.
    cmd.env("ENABLE_REDIS_EVENTS", "false");
    // No `/cvbot/heartbeat`: it would land among the OSC messages a test awaits.
    cmd.env("OSC_HEARTBEAT_MS", "0");
    cmd
}

/// Runs the binary to completion in an empty directory and returns (status code, stderr).
fn run_to_exit(vars: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = cvbot();
    cmd.current_dir(dir.path()).args(args).stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v.replace("{dir}", &dir.path().display().to_string()));
    }
    let out = cmd.output().expect("run cvbot");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_value_exits_2_with_one_line_naming_the_variable() {
    for (name, value) in [
        ("RATE_LIMIT_MS", "soon"),
        ("HTTP_ADDR", "not-an-address"),
        ("OSC_TARGETS", "127.0.0.1"),
        ("OSC_FORMAT", "midi"),
        ("GLOBAL_RATE_LIMIT", "-3"),
        ("MAX_OSC_PORT", "70000"),
        ("CHAT_STDIN", "perhaps"),
        ("TWITCH_IRC_ADDR", "nohostport"),
        ("CHAT_REPLY_ERRORS", "loud"),
        ("TWITCH_CHANNELS", "#not a channel"),
        ("LOG_LEVEL", "loud"),
        ("REDIS_URL", "redis://127.0.0.1:6390/?protocol=3"),
        ("REDIS_SENTINELS", "sentinel-without-port"),
        ("REDIS_CLUSTER_NODES", "127.0.0.1:0"),
    ] {
        let (code, _, stderr) = run_to_exit(&[(name, value)], &[]);
        assert_eq!(code, Some(2), "{name}={value}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {name}: {stderr}");
        assert!(lines[0].contains(name), "{stderr}");
    }
}

#[test]
fn a_malformed_catalogue_exits_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.json");
    std::fs::write(
        &path,
        "{\n  \"format\": 1,\n  \"modules\": [\n    {\"name\": \"doorway\" \"parameters\": []}\n  ]\n}\n",
    )
    .expect("write");
    let (code, _, stderr) =
        run_to_exit(&[("CATALOG_PATH", path.to_str().expect("utf8")), ("HTTP_ADDR", "127.0.0.1:0")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} line 4", path.display())), "{stderr}");
}

#[test]
fn a_malformed_routing_file_exits_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routing_table.json");
    std::fs::write(&path, "{\n  \"es9out#1\": \"doorway#1.threshold\",\n  \"es9out#42\": \"doorway#1.gain\"\n}\n")
        .expect("write");
    let (code, _, stderr) =
        run_to_exit(&[("ROUTING_FILE", path.to_str().expect("utf8")), ("HTTP_ADDR", "127.0.0.1:0")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("routing file {} line 3: unknown output", path.display())), "{stderr}");
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_masked() {
    let (code, stdout, _) = run_to_exit(
        &[
            ("TWITCH_OAUTH_TOKEN", "oauth:hunter2hunter2"),
            ("TWITCH_USERNAME", "streambot"),
            ("MAX_OSC_PORT", "9001"),
            ("ADMIN_USERNAME", "Streamer"),
            ("ADMIN_TOKEN", "hunter3-admin-token-hunter3"),
        ],
        &["config"],
    );
    assert_eq!(code, Some(0));
    assert!(stdout.contains("OSC_TARGETS=127.0.0.1:9001"), "{stdout}");
    assert!(stdout.contains("ADMIN_USERS=streamer"), "{stdout}");
    assert!(stdout.contains("TWITCH_OAUTH_TOKEN=****"), "{stdout}");
    assert!(stdout.contains("ADMIN_TOKEN=****"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stdout.contains("hunter3"), "{stdout}");
}

#[test]
fn help_describes_the_commands() {
    let (code, stdout, _) = run_to_exit(&[], &["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("config") && stdout.contains("--demo"), "{stdout}");
}

#[test]
fn the_show_binary_has_no_bench_subcommand() {
    // The bench is its own binary (`cvbot-bench`, bench/); the show's neither lists nor accepts it.
    let (code, stdout, _) = run_to_exit(&[], &["--help"]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("bench"), "{stdout}");
    let (code, _, stderr) = run_to_exit(&[], &["bench", "--quick"]);
    assert_eq!(code, Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("'bench'"), "{stderr}");
}

pub(crate) struct Bot {
    pub(crate) child: Child,
    _dir: tempfile::TempDir,
    pub(crate) http: String,
}

impl Bot {
    fn start(osc: &OscReceiver, stdin: Stdio) -> Bot {
        Self::start_with(osc, stdin, &[])
    }

    pub(crate) fn start_with(osc: &OscReceiver, stdin: Stdio, vars: &[(String, String)]) -> Bot {
        let bot = Self::spawn(osc, stdin, vars, &[]);
        bot.wait_healthy();
        bot
    }

    /// Starts the binary with `args` in a temp directory of its own without waiting for it to serve.
    pub(crate) fn spawn(osc: &OscReceiver, stdin: Stdio, vars: &[(String, String)], args: &[&str]) -> Bot {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = cvbot()
            .args(args)
            .current_dir(dir.path())
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("OSC_TARGETS", osc.addr().to_string())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cvbot");
        Bot { child, _dir: dir, http: format!("127.0.0.1:{port}") }
    }

    pub(crate) fn wait_healthy(&self) {
        eventually_blocking("cvbot healthy", Duration::from_secs(10), || {
            http_get(&self.http, "/healthz").is_some_and(|b| b.contains("ok")).then_some(())
        });
    }

    /// Sends `signal` (`-TERM`, `-INT`) and waits for the exit: (status code, time it took).
    pub(crate) fn signal(&mut self, signal: &str) -> (Option<i32>, Duration) {
        let sent = Instant::now();
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let exit =
            self.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| panic!("cvbot did not exit after {signal}"));
        (exit.code(), sent.elapsed())
    }

    fn terminate(&mut self) -> (Option<i32>, Duration) {
        self.signal("-TERM")
    }

    /// Waits up to `within` for the process to end; its status when it did.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        poll_blocking(within, || self.child.try_wait().expect("try_wait"))
    }

    /// The process's resident memory in KiB (`VmRSS` in `/proc/PID/status`); 0 once it is gone.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Polls `GET path` until `check` accepts the body; fails the test after 10 s.
    pub(crate) fn wait_for_body(&self, path: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let mut last = serde_json::Value::Null;
        let seen = poll_blocking(Duration::from_secs(10), || {
            let json = serde_json::from_str::<serde_json::Value>(&http_get(&self.http, path)?).ok()?;
            let holds = check(&json);
            last = json;
            holds.then_some(())
        });
        assert!(seen.is_some(), "{what} never showed in {path}: {last}");
    }

    /// Everything the process wrote to stdout and stderr (call after it exited).
    pub(crate) fn output(&mut self) -> (String, String) {
        let mut stdout = String::new();
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().expect("stdout"), &mut stdout).expect("read stdout");
        std::io::Read::read_to_string(self.child.stderr.as_mut().expect("stderr"), &mut stderr).expect("read stderr");
        (stdout, stderr)
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A minimal HTTP/1.0 GET over a real socket, so this blocking test needs no async client.
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_chat_drives_osc_and_sigterm_exits_cleanly_within_two_seconds() {
    let osc = OscReceiver::bind().await;
    let mut bot = Bot::start(&osc, Stdio::piped());
    let mut stdin = bot.child.stdin.take().expect("stdin");
    writeln!(stdin, "!admin es9out#1 → doorway#1.threshold").expect("write");
    writeln!(stdin, "doorway#1.threshold: 89").expect("write");
    stdin.flush().expect("flush");
    assert_eq!(osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    assert_eq!(osc.recv().await, cv("es9out#1", 89.0 / 127.0, "doorway", 1, "threshold", 89));

    // EOF on stdin ends the terminal source, not the process: the log shows the EOF handled, and then
    // the SIGTERM received by a process still running (no wait for something not to happen).
    drop(stdin);
    let state = http_get(&bot.http, "/api/state").expect("state after EOF");
    assert!(state.contains("\"doorway#1.threshold\""), "{state}");

    let (code, took) = bot.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    let (stdout, stderr) = bot.output();
    assert!(stdout.contains("routed es9out#1 → doorway#1.threshold"), "the operator sees replies: {stdout}");
    let eof = stderr.find("terminal input closed").unwrap_or_else(|| panic!("the EOF is logged: {stderr}"));
    let term = stderr.find("SIGTERM: shutting down").unwrap_or_else(|| panic!("the SIGTERM is logged: {stderr}"));
    assert!(eof < term, "still running after stdin closed: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_or_pipe_the_bot_serves_and_prints_its_urls() {
    let osc = OscReceiver::bind().await;
    let mut bot = Bot::start(&osc, Stdio::null());
    // An overlay is connected: its open event stream must not hold up the exit.
    let mut overlay = std::net::TcpStream::connect(&bot.http).expect("connect");
    overlay.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(overlay, "GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", bot.http).expect("request");
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut overlay, &mut head).expect("the stream starts");
    assert!(String::from_utf8_lossy(&head[..n]).contains("text/event-stream"));
    let (code, took) = bot.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "shutdown with an open overlay took {took:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(bot.child.stderr.as_mut().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(stderr.contains(&format!("http://{}/overlay", bot.http)), "{stderr}");
    assert!(stderr.contains(&format!("http://{}/admin", bot.http)), "{stderr}");
    assert!(!stderr.contains("type chat commands here"), "stdin is /dev/null: no terminal chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twitch_token_never_reaches_the_log_even_at_trace_level() {
    let osc = OscReceiver::bind().await;
    let mut chan = FakeTwitch::channel("");
    let mut vars = chan.vars();
    vars.retain(|(k, _)| k != "TWITCH_OAUTH_TOKEN");
    vars.push(("TWITCH_OAUTH_TOKEN".into(), "oauth:sekrit0token0xyz".into()));
    vars.push(("LOG_LEVEL".into(), "trace".into()));
    let mut bot = Bot::start_with(&osc, Stdio::null(), &vars);
    let join = chan.joined().await;
    assert!(join.ends_with("pass=true"), "{join}");
    chan.say(&User::new("modperson", 1, "moderator/1"), "!admin routes");
    assert_eq!(chan.reply().await, "no routes");
    let (code, took) = bot.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "shutdown with Twitch connected took {took:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(bot.child.stderr.as_mut().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(stderr.contains("joined Twitch channel"), "{stderr}");
    assert!(!stderr.contains("sekrit0token"), "the token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_never_writes_the_routing_file() {
    let osc = OscReceiver::bind().await;
    let files = tempfile::tempdir().expect("tempdir");
    let path = files.path().join("routing_table.json");
    let vars = [("ROUTING_FILE".to_owned(), path.display().to_string())];
    let routed = |output: &'static str| move |s: &serde_json::Value| s["routes"].get(output).is_some();

    // No routing file: the demo routes four outputs itself, the operator a fifth; none is saved.
    let mut bot = Bot::spawn(&osc, Stdio::piped(), &vars, &["--demo"]);
    bot.wait_healthy();
    bot.wait_for_body("/api/state", "the demo's routes", routed("es9out#4"));
    let mut stdin = bot.child.stdin.take().expect("stdin");
    writeln!(stdin, "!admin es9out#5 → doorway#1.gain").expect("write");
    bot.wait_for_body("/api/state", "the operator's route", routed("es9out#5"));
    let (code, _) = bot.terminate();
    assert_eq!(code, Some(0));
    assert!(!path.exists(), "--demo wrote {}", std::fs::read_to_string(&path).unwrap_or_default());
    let (_, stderr) = bot.output();
    assert!(stderr.contains("routes and scenes live in memory only"), "{stderr}");

    // A show's routing file: the demo reads it and leaves it byte for byte as it was.
    let show = "{\n  \"es9out#1\": \"doorway#1.threshold\"\n}\n";
    std::fs::write(&path, show).expect("write routing file");
    let mut bot = Bot::spawn(&osc, Stdio::piped(), &vars, &["--demo"]);
    bot.wait_healthy();
    bot.wait_for_body("/api/state", "the show's route", |s| s["routes"]["es9out#1"] == "doorway#1.threshold");
    let mut stdin = bot.child.stdin.take().expect("stdin");
    writeln!(stdin, "!admin es9out#2 → doorway#1.gain").expect("write");
    writeln!(stdin, "!admin remove es9out#1").expect("write");
    bot.wait_for_body("/api/state", "the demo's changes", |s| {
        s["routes"].get("es9out#2").is_some() && s["routes"].get("es9out#1").is_none()
    });
    let (code, _) = bot.terminate();
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), show, "--demo changed the routing file");
}
