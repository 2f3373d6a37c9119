//! A real `redis-server` per test on a free port (never the shared one on 6379), a test CA for TLS
//! with verified certificates, and a TCP proxy in front of it that can blackhole traffic, for fault
//! tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// What the test's own client presents and trusts, for a server that checks it.
    client_tls: Option<redis::TlsCertificates>,
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
        let mut server =
            RedisServer { port, child: None, dir, args: args.to_vec(), url: url(port), certs: None, client_tls: None };
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

    /// TLS only, with a server certificate from `ca` (for 127.0.0.1 and localhost), and clients must
    /// present a certificate `ca` signed (`tls-auth-clients yes`). The URL is `rediss://127.0.0.1:P`:
    /// no `#insecure`, so a client must trust `ca` to connect.
    pub async fn start_mutual_tls(ca: &TestCa) -> RedisServer {
        let path = |p: PathBuf| p.display().to_string();
        let args = vec![
            "--tls-cert-file".to_owned(),
            path(ca.file("server.pem")),
            "--tls-key-file".to_owned(),
            path(ca.file("server.key")),
            "--tls-ca-cert-file".to_owned(),
            path(ca.ca()),
            "--tls-auth-clients".to_owned(),
            "yes".to_owned(),
            "--port".to_owned(),
            "0".to_owned(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            args,
            url: format!("rediss://127.0.0.1:{port}"),
            certs: None,
            client_tls: Some(ca.certificates()),
        };
        server.launch().await;
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
        let client = self.client();
        crate::helpers::eventually("redis-server answering PING", Duration::from_secs(10), || async {
            match client.get_multiplexed_async_connection().await {
                Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn client(&self) -> redis::Client {
        match &self.client_tls {
            Some(certs) => redis::Client::build_with_tls(self.url(), certs.clone()).expect("TLS client"),
            None => redis::Client::open(self.url()).expect("client"),
        }
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
    /// filler keys until writes fail with `OOM`; freeing the filler (about 512 KiB) lets writes in
    /// again. Returns the filler keys, for [`RedisServer::free`].
    pub async fn fill_to_maxmemory(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let used = self.used_memory(&mut conn).await;
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 512 * 1024)
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
                    // Right at the limit, client buffers shrinking (they go by tens of KiB as
                    // connections come, go and idle) would let the next write in again: pull the
                    // limit well below what is used, so writes stay refused until the filler is freed.
                    let full = self.used_memory(&mut conn).await;
                    let () = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("maxmemory")
                        .arg(full - 192 * 1024)
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

    /// Every reason in the dead-letter stream, oldest first.
    pub async fn dead_letters(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::cmd("XRANGE").arg("{cv}:dlq").arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
        entries
            .into_iter()
            .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "reason").map(|(_, v)| v))
            .collect()
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

/// A certificate authority of the test's own, made with the openssl CLI: `ca.pem` (and its key), a
/// server certificate `server.pem`/`server.key` for IP 127.0.0.1 and DNS localhost, and a client
/// certificate `client.pem`/`client.key`, both signed by it. Files live as long as this value.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn make() -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = dir.path();
        openssl(
            at,
            &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"],
            &[
                "-subj",
                "/CN=cvbot test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        Self::sign(at, "server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
        Self::sign(at, "client", "cvbot", "extendedKeyUsage=clientAuth");
        TestCa { dir }
    }

    /// A key and a certificate `name.key`/`name.pem` for `cn`, signed by the CA, with `extensions`.
    fn sign(at: &Path, name: &str, cn: &str, extensions: &str) {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(at.join(&ext), format!("basicConstraints=CA:FALSE\n{extensions}\n")).expect("write extensions");
        openssl(
            at,
            &["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
            &["-subj", &format!("/CN={cn}"), "-keyout", &key, "-out", &csr],
        );
        openssl(
            at,
            &["x509", "-req", "-days", "2", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"],
            &["-in", &csr, "-extfile", &ext, "-out", &pem],
        );
    }

    /// A file of the CA's directory (`ca.pem`, `server.pem`, `client.key`, …).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// The environment a bot needs to trust the CA and present the client certificate.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDIS_TLS_CA", self.ca().display().to_string()),
            ("REDIS_TLS_CERT", self.file("client.pem").display().to_string()),
            ("REDIS_TLS_KEY", self.file("client.key").display().to_string()),
        ]
    }

    /// The same, in redis-rs's form, for the test's own client.
    pub fn certificates(&self) -> redis::TlsCertificates {
        let read = |name: &str| std::fs::read(self.file(name)).expect("read test certificate");
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read("client.pem"),
                client_key: read("client.key"),
            }),
            root_cert: Some(read("ca.pem")),
        }
    }
}

/// Runs the openssl CLI in `at` with `args` then `more`; fails the test (with its output) if it fails.
fn openssl(at: &Path, args: &[&str], more: &[&str]) {
    let out = Command::new("openssl").current_dir(at).args(args).args(more).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?} {more:?}: {}", String::from_utf8_lossy(&out.stderr));
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
