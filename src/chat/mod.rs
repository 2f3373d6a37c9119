//! Chat sources and the intake they share: every line, from the terminal, the demo viewers, Twitch and
//! `POST /api/chat`, goes through [`Intake::submit`] (or its two halves, [`Intake::classify`] and
//! [`Intake::run`]): parse, count, hand to the coordinator.
//!
//! The terminal source is the one place that prints to stdout: it is a user interface. It reads bytes,
//! not text, so no byte sequence can end it: a line that is not UTF-8 or longer than
//! [`MAX_LINE_BYTES`] is skipped, counted and reported, and the next line works. Knows nothing of
//! Redis, OSC or HTTP.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::catalog::Catalog;
use crate::command::{Command, ParseError, Rejection, parse};
use crate::coord::{Answer, CoordHandle, Done, Outcome, Refusal};
use crate::gate::Sender;
use crate::stats::{CounterSet, Stats, Tally};

pub mod help;
pub mod reply;

/// The intake's counters, registered with [`Stats`].
#[derive(Debug, Default)]
pub struct ChatCounters {
    pub lines: AtomicU64,
    /// Questions asked (`!cv help`, `!cv list`, `!admin help`), answered or not.
    pub questions: AtomicU64,
    /// Lines that were attempts at a command but invalid, by [`ParseError`] (index = position in `ALL`).
    invalid: Tally<{ ParseError::ALL.len() }>,
    /// Terminal chat lines longer than [`MAX_LINE_BYTES`], discarded as they were read.
    pub terminal_too_long: AtomicU64,
    /// Terminal chat lines that were not UTF-8, skipped.
    pub terminal_not_utf8: AtomicU64,
}

impl CounterSet for ChatCounters {
    fn report(&self, out: &mut dyn FnMut(&str, u64)) {
        for reason in ParseError::ALL {
            if reason != ParseError::NotACommand {
                out(&format!("invalid_{}", reason.label()), self.invalid.get(&ParseError::ALL, &reason));
            }
        }
        out("chat_lines", self.lines.load(Ordering::Relaxed));
        out("chat_questions", self.questions.load(Ordering::Relaxed));
        out("terminal_too_long", self.terminal_too_long.load(Ordering::Relaxed));
        out("terminal_not_utf8", self.terminal_not_utf8.load(Ordering::Relaxed));
    }
}

/// Longest line looked at. Twitch caps messages at 500 characters; anything longer is cut before
/// parsing so a flood of huge lines costs nothing.
pub const MAX_LINE_BYTES: usize = 2048;

/// The shared front door of the pipeline.
#[derive(Debug, Clone)]
pub struct Intake {
    catalog: Arc<Catalog>,
    coord: CoordHandle,
    counters: Arc<ChatCounters>,
}

impl Intake {
    /// The intake; its counters are registered with `stats`.
    pub fn new(catalog: Arc<Catalog>, coord: CoordHandle, stats: &Stats) -> Intake {
        let counters = Arc::new(ChatCounters::default());
        stats.register(counters.clone());
        Intake { catalog, coord, counters }
    }

    /// Parses one chat line and, when it is a command, runs it. Invalid lines are counted by reason.
    pub fn submit(&self, sender: &Sender, line: &str) -> Outcome {
        let at = Instant::now();
        match self.classify(&sender.login, line) {
            Ok(command) => self.coord.submit(sender, command, at),
            Err(reason) => Outcome::Refused(Refusal::Parse(reason)),
        }
    }

    /// Counts and parses one chat line without waiting for anything: the first half of
    /// [`Intake::submit`], for sources that must keep reading (Twitch) and run the command elsewhere
    /// with [`Intake::run`]. Invalid lines are counted by reason.
    pub fn classify(&self, login: &str, line: &str) -> Result<Command, Rejection> {
        self.counters.lines.fetch_add(1, Ordering::Relaxed);
        let parsed = self.parse(line);
        match &parsed {
            Ok(command) if command.is_question() => {
                self.counters.questions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(rejection) if rejection.reason() == ParseError::NotACommand => {}
            Err(rejection) => {
                let reason = rejection.reason();
                self.counters.invalid.add(&ParseError::ALL, &reason);
                debug!(user = %login, reason = reason.label(), "invalid command ignored");
            }
        }
        parsed
    }

    /// Runs a command [`Intake::classify`] accepted at `at`.
    pub fn run(&self, sender: &Sender, command: Command, at: Instant) -> Outcome {
        self.coord.submit(sender, command, at)
    }

    /// Parses without running; used by sources that must not wait (they hand the command on).
    pub fn parse(&self, line: &str) -> Result<Command, Rejection> {
        parse(truncate(line, MAX_LINE_BYTES), &self.catalog)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// Cuts `line` to at most `max` bytes on a character boundary.
fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// How many bytes the terminal source reads at a time; with the line being assembled (at most
/// [`MAX_LINE_BYTES`] + 1), this is all the memory any input can make it hold.
const READ_CHUNK: usize = 8192;

/// What the bytes between two newlines turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Line(String),
    /// Longer than [`MAX_LINE_BYTES`]: discarded while it streamed in.
    TooLong,
    NotUtf8,
}

/// Splits a byte stream into lines on `\n` (dropping a `\r` before it) without ever holding more than
/// [`MAX_LINE_BYTES`] + 1 bytes of a line: once a line is longer, the rest of it is skipped as it
/// arrives, so a 100 MB line without a newline costs no more memory than a short one.
#[derive(Debug, Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// The current line has passed the limit; its bytes are dropped until the next newline.
    overlong: bool,
}

impl LineSplitter {
    /// The line may hold one byte more than the limit, for the `\r` of a CRLF ending.
    const HOLD: usize = MAX_LINE_BYTES + 1;

    /// Feeds bytes in, handing each completed line to `on_piece`.
    fn feed(&mut self, mut bytes: &[u8], on_piece: &mut impl FnMut(Piece)) {
        while !bytes.is_empty() {
            let (segment, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], Some(at + 1)),
                None => (bytes, None),
            };
            if !self.overlong {
                if self.line.len() + segment.len() > Self::HOLD {
                    self.overlong = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(segment);
                }
            }
            match ended {
                Some(next) => {
                    on_piece(self.take());
                    bytes = &bytes[next..];
                }
                None => break,
            }
        }
    }

    /// At end of input: the last line, when it had bytes but no newline.
    fn finish(&mut self) -> Option<Piece> {
        (self.overlong || !self.line.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Piece {
        let mut line = std::mem::take(&mut self.line);
        let overlong = std::mem::replace(&mut self.overlong, false);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if overlong || line.len() > MAX_LINE_BYTES {
            return Piece::TooLong;
        }
        String::from_utf8(line).map_or(Piece::NotUtf8, Piece::Line)
    }
}

/// Reads chat lines from `input` as the local operator until EOF or shutdown. EOF ends this source
/// only; the bot keeps running for Twitch, HTTP and the overlay. Bad bytes never end it (see the
/// module docs); only a read error does, and then only this source.
pub async fn run_terminal<R: AsyncRead + Unpin>(
    mut input: R,
    intake: Intake,
    operator: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sender = Sender::operator(&operator);
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut on_piece = |piece: Piece| match piece {
        Piece::Line(line) if line.trim().is_empty() => {}
        Piece::Line(line) => {
            let outcome = intake.submit(&sender, &line);
            print_outcome(&line, &outcome);
        }
        Piece::TooLong => {
            intake.counters.terminal_too_long.fetch_add(1, Ordering::Relaxed);
            print_skipped(&format!("line longer than {MAX_LINE_BYTES} bytes ignored"));
        }
        Piece::NotUtf8 => {
            intake.counters.terminal_not_utf8.fetch_add(1, Ordering::Relaxed);
            print_skipped("line is not UTF-8 text; ignored");
        }
    };
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            read = input.read(&mut chunk) => read,
        };
        match read {
            Ok(0) => {
                if let Some(last) = splitter.finish() {
                    on_piece(last);
                }
                info!("terminal input closed; chat from the terminal has ended, the bot keeps running");
                return Ok(());
            }
            Ok(n) => splitter.feed(&chunk[..n], &mut on_piece),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The device itself failed (not the bytes on it): stop this source, never the process.
                info!(error = %e, "terminal input unreadable; chat from the terminal has ended");
                return Ok(());
            }
        }
    }
}

/// Standard input as a [`run_terminal`] input, read on a plain thread of its own.
///
/// tokio's own stdin reads on a blocking-pool thread that the runtime waits for when it is dropped,
/// so a process whose terminal chat was waiting for a line stayed alive after shutdown until Enter
/// was pressed. This thread is never joined: the process exits whatever it is doing. It hands bytes
/// over through an in-memory pipe of [`READ_CHUNK`] × 2 bytes; when that is full, it waits (and
/// standard input waits in the kernel), so nothing piles up. It ends when the reading side is
/// dropped, at EOF, or on a read error.
pub fn stdin_reader() -> std::io::Result<Box<dyn AsyncRead + Send + Unpin>> {
    let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let (reading, mut writing) = tokio::io::duplex(READ_CHUNK * 2);
    std::thread::Builder::new().name("cvbot-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match stdin.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            // The pipe needs no runtime driver, so this works even while the runtime shuts down.
            if handle.block_on(writing.write_all(&chunk[..n])).is_err() {
                return;
            }
        }
    })?;
    Ok(Box::new(reading))
}

/// Tells the operator what their line did. Printing is this source's user interface.
#[allow(clippy::print_stdout)] // The terminal chat source talks to its user on stdout by design.
fn print_outcome(line: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Done(done) => match reply::done(done) {
            Some(reply) => println!("  ✓ {reply}"),
            None => println!("  ✓ {}", line.trim()),
        },
        Outcome::Refused(Refusal::Parse(r)) if r.reason() == ParseError::NotACommand => {
            println!("  · not a command (try `doorway#1.threshold: 89`, `!cv help` or `!admin help`)");
        }
        Outcome::Refused(reason) => println!("  ✗ {reason}"),
    }
}

/// Tells the operator, in one line, that a line was skipped and why.
#[allow(clippy::print_stdout)] // The terminal chat source talks to its user on stdout by design.
fn print_skipped(why: &str) {
    println!("  ✗ {why}");
}

/// Simulated viewers for `--demo`: a few commands a second, mostly valid, some invalid, so a newcomer
/// sees the overlay and the OSC output move. Routes four ES-9 outputs first when nothing is routed.
pub async fn run_demo(intake: Intake, seed: u64, shutdown: CancellationToken) -> anyhow::Result<()> {
    const VARIABLES: [&str; 6] = [
        "doorway#1.threshold",
        "doorway#1.gain",
        "prismaticray#1.frequency",
        "navigator#1.rotation",
        "passage#1.thru#1",
        "staircase#1.phase",
    ];
    const INVALID: [&str; 4] = ["doorway#1.threshold: 300", "doorway#9.nope: 5", "doorway#1.gain: abc", "hello chat!"];
    let mut rng = fastrand::Rng::with_seed(seed);
    let director = Sender::operator("demo-director");
    if let Outcome::Done(Done::Answer(Answer::Routes(routes))) = intake.submit(&director, "!admin routes")
        && routes.is_empty()
    {
        for (i, variable) in VARIABLES.iter().take(4).enumerate() {
            let line = format!("!admin es9out#{} → {variable}", i + 1);
            intake.submit(&director, &line);
        }
        info!("demo: routed es9out#1-4 (remove them with `!admin remove es9out#1` …)");
    }
    let viewers: Vec<String> = (1..=12).map(|i| format!("demo_viewer_{i:02}")).collect();
    loop {
        let pause = Duration::from_millis(150 + rng.u64(0..350));
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        let viewer = Sender::viewer(&viewers[rng.usize(0..viewers.len())]);
        let line = if rng.u8(0..10) == 0 {
            INVALID[rng.usize(0..INVALID.len())].to_owned()
        } else {
            format!("{}: {}", VARIABLES[rng.usize(0..VARIABLES.len())], rng.u8(0..=127))
        };
        intake.submit(&viewer, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        let s = "é".repeat(2000);
        let t = truncate(&s, 2047);
        assert_eq!(t.len(), 2046);
        assert_eq!(truncate("short", 2048), "short");
    }

    fn split(chunks: &[&[u8]]) -> Vec<Piece> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut |p| out.push(p));
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn lines_split_on_newlines_across_chunks_and_crlf_is_accepted() {
        let got = split(&[b"doorway#1.gain: 1\r\ndoor", b"way#1.gain: 2\n\nlast"]);
        let want = ["doorway#1.gain: 1", "doorway#1.gain: 2", "", "last"].map(|l| Piece::Line(l.to_owned()));
        assert_eq!(got, want);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_and_the_next_one_works() {
        assert_eq!(split(&[b"\xff\xfe\n!admin routes\n"]), [Piece::NotUtf8, Piece::Line("!admin routes".into())]);
    }

    #[test]
    fn an_overlong_line_is_discarded_as_it_streams_in_and_never_held() {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 1000];
        for _ in 0..10_000 {
            splitter.feed(&chunk, &mut |p| out.push(p));
            assert!(splitter.line.capacity() <= LineSplitter::HOLD * 2, "held {}", splitter.line.capacity());
        }
        splitter.feed(b"\nok\n", &mut |p| out.push(p));
        assert_eq!(out, [Piece::TooLong, Piece::Line("ok".into())]);
    }

    #[test]
    fn the_limit_is_exactly_max_line_bytes_with_or_without_cr() {
        let at_limit = "a".repeat(MAX_LINE_BYTES);
        let over = "a".repeat(MAX_LINE_BYTES + 1);
        let input = format!("{at_limit}\n{at_limit}\r\n{over}\n{over}");
        let got = split(&[input.as_bytes()]);
        assert_eq!(got, [Piece::Line(at_limit.clone()), Piece::Line(at_limit), Piece::TooLong, Piece::TooLong]);
    }
}
