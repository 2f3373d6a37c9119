//! Chat sources and the intake they share: every line, from the terminal, the demo viewers, Twitch (and
//! later HTTP), goes through [`Intake::submit`] (or its two halves, [`Intake::classify`] and
//! [`Intake::run`]): parse, count, hand to the coordinator.
//!
//! The terminal source is the one place that prints to stdout: it is a user interface. Knows nothing
//! of Redis, OSC or HTTP.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::catalog::Catalog;
use crate::command::{Command, ParseError, parse};
use crate::coord::{CoordHandle, Outcome, Refusal};
use crate::gate::Sender;
use crate::stats::Stats;

/// Longest line looked at. Twitch caps messages at 500 characters; anything longer is cut before
/// parsing so a flood of huge lines costs nothing.
pub const MAX_LINE_BYTES: usize = 2048;

/// The shared front door of the pipeline.
#[derive(Debug, Clone)]
pub struct Intake {
    catalog: Arc<Catalog>,
    coord: CoordHandle,
    stats: Arc<Stats>,
}

impl Intake {
    pub fn new(catalog: Arc<Catalog>, coord: CoordHandle, stats: Arc<Stats>) -> Intake {
        Intake { catalog, coord, stats }
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
    pub fn classify(&self, login: &str, line: &str) -> Result<Command, ParseError> {
        self.stats.chat_lines.fetch_add(1, Ordering::Relaxed);
        let parsed = self.parse(line);
        if let Err(reason) = parsed
            && reason != ParseError::NotACommand
        {
            self.stats.count_invalid(reason);
            debug!(user = %login, reason = reason.label(), "invalid command ignored");
        }
        parsed
    }

    /// Runs a command [`Intake::classify`] accepted at `at`.
    pub fn run(&self, sender: &Sender, command: Command, at: Instant) -> Outcome {
        self.coord.submit(sender, command, at)
    }

    /// Parses without running; used by sources that must not wait (they hand the command on).
    pub fn parse(&self, line: &str) -> Result<Command, ParseError> {
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

/// Reads chat lines from `input` as the local operator until EOF or shutdown. EOF ends this source
/// only; the bot keeps running for Twitch, HTTP and the overlay.
pub async fn run_terminal<R: AsyncBufRead + Unpin>(
    input: R,
    intake: Intake,
    operator: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut lines = input.lines();
    let sender = Sender::operator(&operator);
    loop {
        let line = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            line = lines.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                info!("terminal input closed; chat from the terminal has ended, the bot keeps running");
                return Ok(());
            }
            Err(e) => {
                // Not UTF-8 or a read error: report it and stop this source, never the process.
                info!(error = %e, "terminal input unreadable; chat from the terminal has ended");
                return Ok(());
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let outcome = intake.submit(&sender, &line);
        print_outcome(&line, &outcome);
    }
}

/// Tells the operator what their line did. Printing is this source's user interface.
#[allow(clippy::print_stdout)] // The terminal chat source talks to its user on stdout by design.
fn print_outcome(line: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Done { reply: Some(reply) } => println!("  ✓ {reply}"),
        Outcome::Done { reply: None } => println!("  ✓ {}", line.trim()),
        Outcome::Refused(Refusal::Parse(ParseError::NotACommand)) => {
            println!("  · not a command (try `doorway#1.threshold: 89` or `!admin routes`)");
        }
        Outcome::Refused(reason) => println!("  ✗ {reason}"),
    }
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
    if let Outcome::Done { reply: Some(routes) } = intake.submit(&director, "!admin routes")
        && routes == "no routes"
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
}
