//! Redis's own time per command, from `INFO commandstats`: what the server spent on the bot's
//! publishes beside the floor's.

/// Calls and microseconds per command name, from `INFO commandstats`; empty when it cannot be read
/// (a managed Redis may refuse `INFO`), so the bench reports no figure rather than failing.
pub async fn command_stats(url: &str) -> CommandStats {
    let text = async {
        let mut conn = cvbot_testbed::redis_process::connect(url).await.ok()?;
        redis::cmd("INFO").arg("commandstats").query_async::<String>(&mut conn).await.ok()
    }
    .await
    .unwrap_or_default();
    parse_command_stats(&text)
}

/// Parses lines such as `cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,…`.
fn parse_command_stats(text: &str) -> CommandStats {
    CommandStats(
        text.lines()
            .filter_map(|line| {
                let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |key: &str| {
                    fields.split(',').find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
                };
                Some((name.to_owned(), (field("calls")?, field("usec")?)))
            })
            .collect(),
    )
}

/// Calls and microseconds so far, per command name.
#[derive(Debug, Default)]
pub struct CommandStats(std::collections::HashMap<String, (u64, u64)>);

/// Calls of one command and Redis's time in them, summed over the stretches a phase ran in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    calls: u64,
    usec: u64,
}

impl Spent {
    /// Adds what `command` did between two readings.
    pub fn add(&mut self, before: &CommandStats, after: &CommandStats, command: &str) {
        let Some(&(calls, usec)) = after.0.get(command) else { return };
        let (calls0, usec0) = before.0.get(command).copied().unwrap_or((0, 0));
        self.calls += calls.saturating_sub(calls0);
        self.usec += usec.saturating_sub(usec0);
    }

    /// Mean microseconds per call; `None` without calls.
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    pub fn us_per_call(self) -> Option<f64> {
        (self.calls > 0).then(|| self.usec as f64 / self.calls as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_stats_are_read_and_differenced() {
        let before = parse_command_stats(
            "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n",
        );
        let after = parse_command_stats(
            "cmdstat_evalsha:calls=30,usec=700,usec_per_call=23.33\r\ncmdstat_publish:calls=4,usec=8,usec_per_call=2.00\r\n",
        );
        assert_eq!(after.0.get("publish"), Some(&(4, 8)));
        let per_call = |before: &CommandStats, after: &CommandStats, command: &str| {
            let mut spent = Spent::default();
            spent.add(before, after, command);
            spent.us_per_call()
        };
        assert_eq!(per_call(&before, &after, "evalsha"), Some(20.0));
        assert_eq!(per_call(&before, &after, "publish"), Some(2.0));
        assert_eq!(per_call(&after, &after, "evalsha"), None, "no calls in between");
        assert_eq!(per_call(&before, &after, "xadd"), None);
        let later = parse_command_stats("cmdstat_evalsha:calls=40,usec=1000\r\n");
        let mut blocks = Spent::default();
        blocks.add(&before, &after, "evalsha");
        blocks.add(&after, &later, "evalsha");
        assert_eq!(blocks.us_per_call(), Some(700.0 / 30.0), "blocks add up");
    }
}
