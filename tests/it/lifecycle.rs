//! The built binary's life cycle at its edges: it always stops within 2 s of SIGINT or SIGTERM whatever
//! standard input is (a terminal, a pipe or FIFO held open, `/dev/null`), a fatal error ends it even
//! while the terminal chat waits for a line, and no bytes on standard input end the terminal chat.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binary::Bot;
use crate::helpers::{OscReceiver, routing};
use crate::redis_server::RedisServer;

/// What the issue allows from a signal to the process being gone.
const STOP_WITHIN: Duration = Duration::from_secs(2);
/// The memory the terminal chat may use whatever it is fed (the bound).
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_a_terminal_while_the_terminal_chat_reads_exits_within_two_seconds() {
    let osc = OscReceiver::bind().await;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut terminal = std::fs::File::from(pty.master);
    let mut bot = Bot::start_with(&osc, Stdio::from(pty.slave), &[]);
    // The terminal is really read: a line typed there routes an output.
    terminal.write_all(b"!admin es9out#1 \xe2\x86\x92 doorway#1.threshold\n").expect("type");
    assert_eq!(osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    // Now the terminal chat waits for the next line, which never comes.
    let (code, took) = bot.signal("-INT");
    assert_eq!(code, Some(0));
    assert!(took < STOP_WITHIN, "SIGINT with a terminal on stdin took {took:?}");
    let (_, stderr) = bot.output();
    assert!(stderr.contains("type chat commands here"), "the terminal was a chat source: {stderr}");
    drop(terminal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_two_seconds_with_stdin_a_pipe_a_fifo_or_dev_null() {
    let osc = OscReceiver::bind().await;

    // A pipe the test holds open and never writes to.
    let mut bot = Bot::start_with(&osc, Stdio::piped(), &[]);
    let held_pipe = bot.child.stdin.take().expect("stdin");
    let (code, took) = bot.signal("-TERM");
    assert_eq!((code, took < STOP_WITHIN), (Some(0), true), "pipe: {code:?} after {took:?}");
    drop(held_pipe);

    // A named FIFO with a writer that never writes and never closes.
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("chat.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // Read-write, so neither this open nor the bot's read-only one waits for the other side.
    let held_fifo = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).expect("open fifo");
    let reader = std::fs::File::open(&fifo).expect("open fifo for the bot");
    let mut bot = Bot::start_with(&osc, Stdio::from(reader), &[]);
    let (code, took) = bot.signal("-TERM");
    assert_eq!((code, took < STOP_WITHIN), (Some(0), true), "FIFO: {code:?} after {took:?}");
    let (_, stderr) = bot.output();
    assert!(stderr.contains("type chat commands here"), "the FIFO was a chat source: {stderr}");
    drop(held_fifo);

    // /dev/null, read on purpose: the terminal source meets EOF at once and the bot keeps serving.
    let mut bot = Bot::start_with(&osc, Stdio::null(), &vars(&[("CHAT_STDIN", "on")]));
    let (code, took) = bot.signal("-TERM");
    assert_eq!((code, took < STOP_WITHIN), (Some(0), true), "/dev/null: {code:?} after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_ends_the_process_while_the_terminal_chat_waits_for_a_line() {
    let osc = OscReceiver::bind().await;
    // Fatal before anything runs: HTTP_ADDR is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut bot = Bot::spawn(&osc, Stdio::piped(), &vars(&[("HTTP_ADDR", &addr)]), &[]);
    let held = bot.child.stdin.take();
    assert_eq!(bot.wait_exit(Duration::from_secs(10)).map(|s| s.code()), Some(Some(1)), "HTTP_ADDR in use");
    drop(held);

    // Fatal while serving, with the terminal chat reading: another live process holds INSTANCE_ID.
    let redis = RedisServer::start().await;
    let url = redis.url();
    let cluster = [("ENABLE_REDIS_EVENTS", "true"), ("REDIS_URL", url.as_str()), ("INSTANCE_ID", "stage-left")];
    let first = Bot::start_with(&osc, Stdio::null(), &vars(&cluster));
    first.wait_for_body("/readyz", "the Redis link", |h| h["redis"] == "connected");
    let mut second = Bot::spawn(&osc, Stdio::piped(), &vars(&cluster), &[]);
    let held = second.child.stdin.take();
    let started = Instant::now();
    let code = second.wait_exit(Duration::from_secs(15)).map(|s| s.code());
    assert_eq!(code, Some(Some(2)), "a duplicate INSTANCE_ID ends the process with the configuration code");
    let (_, stderr) = second.output();
    assert!(stderr.contains("type chat commands here"), "the terminal chat was reading: {stderr}");
    assert!(stderr.contains("INSTANCE_ID stage-left is already in use"), "{stderr}");
    eprintln!("duplicate INSTANCE_ID: exited {:?} after start", started.elapsed());
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_on_stdin_are_skipped_and_counted_and_the_next_line_still_works() {
    let osc = OscReceiver::bind().await;
    let mut bot = Bot::start_with(&osc, Stdio::piped(), &[]);
    let mut stdin = bot.child.stdin.take().expect("stdin");
    let baseline = bot.rss_kib();

    // One line that is not UTF-8, then an emergency stop: the stop takes effect.
    stdin.write_all(b"doorway#1.gain: \xff\xfe 5\n!admin emergency stop\n").expect("write");
    bot.wait_for_body("/api/state", "the emergency stop", |s| s["emergency"]["active"] == true);

    // A 100 MB line without a newline, written from another thread while the memory is watched.
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            stdin.write_all(&block).expect("write the long line");
        }
        stdin.write_all(b"\n!admin resume\n").expect("write");
        stdin
    });
    let mut peak = baseline;
    while !writer.is_finished() {
        peak = peak.max(bot.rss_kib());
        // The sampling period of the memory watch while the writer runs: nothing to await.
        std::thread::sleep(Duration::from_millis(5));
    }
    let stdin = writer.join().expect("writer");
    bot.wait_for_body("/api/state", "the resume after the long line", |s| s["emergency"]["active"] == false);
    peak = peak.max(bot.rss_kib());
    eprintln!("terminal chat fed a 100 MB line: RSS {baseline} KiB before, peak {peak} KiB");
    assert!(peak < RSS_BOUND_KIB, "the long line was held: peak RSS {peak} KiB");
    bot.wait_for_body("/api/stats", "the skipped lines", |s| {
        s["terminal_not_utf8"] == 1 && s["terminal_too_long"] == 1
    });

    let (code, took) = bot.signal("-TERM");
    assert_eq!((code, took < STOP_WITHIN), (Some(0), true), "{code:?} after {took:?}");
    drop(stdin);
    let (stdout, _) = bot.output();
    assert!(stdout.contains("not UTF-8"), "the operator is told: {stdout}");
    assert!(stdout.contains("longer than 2048 bytes"), "the operator is told: {stdout}");
    assert!(stdout.contains("EMERGENCY STOP"), "{stdout}");
}
