//! A private `redis-server` on a free port (the bench's own, unless it is given `--redis-url`),
//! stopped on drop, and what every launcher of this crate shares: a free port, a `PING` wait, a
//! temporary directory, a patient connection.

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
pub mod tempfile_dir {
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
        let dir = tempfile_dir::Dir::new(&format!("cvbot-testbed-redis-{port}"))?;
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

/// A connection for a caller's own commands (the bench's, a launcher's). redis-rs gives up on a
/// reply after 500 ms by default; on a loaded 2-core machine (a debug build with 1,000 SSE clients
/// in the bench's process, say) a reply can take longer, and the bench reports slowness rather than
/// failing on it.
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
