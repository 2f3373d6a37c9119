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
mod tempfile_dir {
    #[derive(Debug)]
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RedisProcess {
    pub async fn start() -> anyhow::Result<RedisProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("cvbot-bench-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it, or pass --redis-url)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let process = RedisProcess { child, url, _dir: tempfile_dir::Dir(dir) };
        let client = redis::Client::open(process.url.as_str())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return Ok(process);
            }
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
