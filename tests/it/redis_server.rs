//! A real `redis-server` per test on a free port (never the shared one on 6379), and a TCP proxy in
//! front of it that can blackhole traffic, for fault tests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A redis-server child process that lives as long as this value.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra server arguments (TLS, ACL users).
    args: Vec<String>,
    /// How clients reach it (`redis://…` or `rediss://…`, with credentials when ACLs need them).
    url: String,
    /// TLS certificate and key, kept as long as the server runs.
    certs: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(&[], |port| format!("redis://127.0.0.1:{port}")).await
    }

    /// With extra arguments; `url` says how an authorised client reaches the port.
    pub async fn start_with(args: &[String], url: impl Fn(u16) -> String) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut server = RedisServer { port, child: None, dir, args: args.to_vec(), url: url(port), certs: None };
        server.launch().await;
        server
    }

    /// TLS only (no plain port), with a self-signed certificate made by the openssl CLI.
    pub async fn start_tls() -> RedisServer {
        let certs = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl made a certificate");
        let path = |p: &std::path::Path| p.display().to_string();
        let args = vec![
            "--tls-cert-file".to_owned(),
            path(&cert),
            "--tls-key-file".to_owned(),
            path(&key),
            "--tls-ca-cert-file".to_owned(),
            path(&cert),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
            "--port".to_owned(),
            "0".to_owned(),
        ];
        let mut server = Self::start_with(&args, |port| format!("rediss://127.0.0.1:{port}/#insecure")).await;
        server.certs = Some(certs);
        server
    }

    async fn launch(&mut self) {
        let port_flag = if self.url.starts_with("rediss://") { "--tls-port" } else { "--port" };
        let child = Command::new("redis-server")
            .args([port_flag, &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = self.client().get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    /// A connection for the test's own commands. redis-rs gives up on a reply after 500 ms by
    /// default, which a loaded CI machine can exceed; a test fails on what the bot does, not on that.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        self.client().get_multiplexed_async_connection_with_config(&config).await.expect("connect to test redis")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port (with empty data, like a restarted cache).
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Refusing writes when full (`maxmemory-policy noeviction`), as a cache-sized production Redis is
    /// set up; the limit itself is set by [`RedisServer::fill_to_maxmemory`].
    pub async fn start_noeviction() -> RedisServer {
        let args = ["--maxmemory-policy", "noeviction"].map(str::to_owned);
        Self::start_with(&args, |port| format!("redis://127.0.0.1:{port}")).await
    }

    /// Caps memory a little above what is used now (an empty server already uses about 1 MB, so a
    /// fixed `maxmemory 1mb` would refuse writes before the bots could start) and fills it with
    /// filler keys until writes fail with `OOM`; freeing the filler (at least 256 KiB) lets writes in
    /// again. Returns the filler keys, for [`RedisServer::free`].
    pub async fn fill_to_maxmemory(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let used = self.used_memory(&mut conn).await;
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 256 * 1024)
            .query_async(&mut conn)
            .await
            .expect("config set maxmemory");
        let filler = "x".repeat(8 * 1024);
        let mut keys = Vec::new();
        for i in 0..10_000 {
            let key = format!("filler:{i}");
            let set: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&filler).query_async(&mut conn).await;
            match set {
                Ok(()) => keys.push(key),
                Err(e) if e.code() == Some("OOM") => {
                    // Right at the limit, a client buffer shrinking would let the next write in again:
                    // pull the limit a little below what is used, so writes stay refused until freed.
                    let full = self.used_memory(&mut conn).await;
                    let () = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("maxmemory")
                        .arg(full - 64 * 1024)
                        .query_async(&mut conn)
                        .await
                        .expect("config set maxmemory");
                    return keys;
                }
                Err(e) => panic!("filling redis: {e}"),
            }
        }
        panic!("redis never refused a write: used {used} bytes at the start");
    }

    /// Deletes the filler keys, so writes work again.
    pub async fn free(&self, keys: &[String]) {
        let mut conn = self.conn().await;
        for chunk in keys.chunks(100) {
            let _: u64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await.expect("del filler");
        }
    }

    async fn used_memory(&self, conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await.expect("info memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    }

    pub async fn publish(&self, channel: &str, payload: &str) -> u64 {
        let mut conn = self.conn().await;
        redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn).await.expect("publish")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy to `upstream`. While blackholed it keeps every connection open and forwards nothing,
/// the way a dead network path looks to both ends.
pub struct Proxy {
    pub addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let blackhole = Arc::new(AtomicBool::new(false));
        let flag = blackhole.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, flag.clone()));
                    tokio::spawn(pump(sr, cw, flag));
                });
            }
        });
        Proxy { addr, blackhole, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read while blackholed are lost, as on a dead path.
        if hole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
