//! What the democracy row reads back to check the bot: the open window's tallies and the values
//! written at each instance's `/api/state`, and the `/cv` arrivals at each tap.

use std::time::Instant;

use super::plan::Expected;
use crate::child::ChildBot;
use crate::motion::tap::Log;

/// What `bot`'s `/api/state` shows of the open window: the votes held in all, how many parameters
/// show the bench's count and median, and how the others differ.
pub(super) fn ballot(bot: &ChildBot, variables: &[String], expected: &[Option<Expected>]) -> (u64, usize, Vec<String>) {
    let votes = bot.json("/api/state").map(|s| s["votes"].clone()).unwrap_or_default();
    let (mut held, mut matches, mut wrong) = (0, 0, Vec::new());
    for (variable, expected) in variables.iter().zip(expected) {
        let shown = &votes[variable.as_str()];
        let (count, median) = (shown["votes"].as_u64(), shown["median"].as_u64());
        held += count.unwrap_or(0);
        match expected {
            Some(e) if count == Some(u64::from(e.votes)) && median == Some(u64::from(e.median)) => matches += 1,
            Some(e) => wrong.push(format!(
                "{variable} shows {} votes, median {}; the bench sent {}, median {}",
                count.map_or("no".to_owned(), |c| c.to_string()),
                median.map_or("none".to_owned(), |m| m.to_string()),
                e.votes,
                e.median
            )),
            None => {}
        }
    }
    (held, matches, wrong)
}

/// How many parameters `bot` holds at the bench's median, written by `chat (N votes)` with the
/// bench's N, and how the others differ.
pub(super) fn values(bot: &ChildBot, variables: &[String], expected: &[Option<Expected>]) -> (usize, Vec<String>) {
    let parameters = bot.json("/api/state").map(|s| s["parameters"].clone()).unwrap_or_default();
    let (mut matches, mut wrong) = (0, Vec::new());
    for (variable, expected) in variables.iter().zip(expected) {
        let Some(e) = expected else { continue };
        let p = &parameters[variable.as_str()];
        let user = format!("chat ({} vote{})", e.votes, if e.votes == 1 { "" } else { "s" });
        if p["value"].as_u64() == Some(u64::from(e.median)) && p["user"] == user.as_str() {
            matches += 1;
        } else {
            wrong.push(format!(
                "{variable} is {} by {}; the bench's median is {} by {user}",
                p["value"], p["user"], e.median
            ));
        }
    }
    (matches, wrong)
}

/// For each of `outputs`: when its first `/cv` in `log` arrived, ms after `close_ms` (`wall_of`
/// turns an arrival into wall-clock ms), and how many arrived.
pub(super) fn arrivals(
    log: &Log,
    outputs: &[String],
    close_ms: f64,
    wall_of: &impl Fn(Instant) -> f64,
) -> (Vec<Option<f64>>, Vec<usize>) {
    let (mut first, mut counts) = (vec![None; outputs.len()], vec![0; outputs.len()]);
    for heard in &log.heard {
        let Some(p) = outputs.iter().position(|o| *o == heard.output) else { continue };
        counts[p] += 1;
        first[p].get_or_insert_with(|| wall_of(heard.at) - close_ms);
    }
    (first, counts)
}
