//! A private `redis-server` on a free port for the bench, stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug)]
pub struct RedisProcess {
    child: Child,
    pub url: String,
    _dir: tempfile_dir::Dir,
}

/// A temporary directory without pulling a crate in: removed on drop.
pub(super) mod tempfile_dir {
    #[derive(Debug)]
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        /// A new, empty directory under the system's temporary directory, named `{prefix}-{pid}-{random}`.
        pub fn new(prefix: &str) -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), fastrand::u64(..)));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the listener is closed before returning, so
/// a process started next can bind it; another process may take it first, so starters retry).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `PING` on `url` until it answers, `child` exits (an error naming `what`) or `within` passes.
pub async fn wait_for_ping(url: &str, child: &mut Child, what: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{what} exited ({status}) before it answered PING");
        }
        if let Ok(mut c) = connect(url).await
            && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what} did not answer PING within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl RedisProcess {
    pub async fn start() -> anyhow::Result<RedisProcess> {
        let port = free_port()?;
        let dir = tempfile_dir::Dir::new(&format!("cvbot-bench-redis-{port}"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it, or pass --redis-url)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let mut process = RedisProcess { child, url, _dir: dir };
        let url = process.url.clone();
        wait_for_ping(&url, &mut process.child, "redis-server", Duration::from_secs(10)).await?;
        Ok(process)
    }
}

/// A connection for the bench's own commands. redis-rs gives up on a reply after 500 ms by default;
/// on a loaded 2-core machine (a debug build with 1,000 SSE clients in this process, say) a reply can
/// take longer, and the bench reports slowness rather than failing on it.
pub async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&config).await
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls and microseconds per command name, from `INFO commandstats`; empty when it cannot be read
/// (a managed Redis may refuse `INFO`), so the bench reports no figure rather than failing.
pub async fn command_stats(url: &str) -> CommandStats {
    let text = async {
        let mut conn = connect(url).await.ok()?;
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
