//! TLS to Redis with verified certificates: a CA of the test's own (openssl CLI), a real
//! `redis-server` that checks the bots' client certificates (`tls-auth-clients yes`), and no
//! `#insecure` anywhere. Proves `REDIS_TLS_CA` replaces the system's roots, `REDIS_TLS_CERT` and
//! `REDIS_TLS_KEY` are presented, and a bad file stops start-up naming its variable.

use std::process::Stdio;
use std::time::Duration;

use cvbot::config::RedisTlsFiles;
use cvbot::coord::Outcome;
use cvbot::redis_link::tls::TlsMaterial;

use crate::cluster::{connected, instance_with, redis_status};
use crate::helpers::{TestApp, cv, eventually};
use crate::redis_server::{RedisServer, TestCa};

const TIMEOUT: Duration = Duration::from_secs(5);

fn material(ca: &TestCa, trust_ca: bool, client_cert: bool) -> TlsMaterial {
    let files = RedisTlsFiles {
        ca: trust_ca.then(|| ca.ca()),
        client: client_cert.then(|| (ca.file("client.pem"), ca.file("client.key"))),
    };
    TlsMaterial::read(&files).expect("the test CA's files are valid")
}

/// With TLS 1.3 a server refuses a missing client certificate only after the client's side of the
/// handshake is done, so the refusal may show on the first reply: hence a `PING`.
async fn redis_rs_ping(url: &str, tls: &TlsMaterial) -> Result<(), String> {
    let client = tls.client(url).map_err(|e| e.to_string())?;
    let config =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(TIMEOUT)).set_response_timeout(Some(TIMEOUT));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())?;
    redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop).map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_client_verifies_the_private_ca_and_presents_the_client_certificate() {
    let ca = TestCa::make();
    let redis = RedisServer::start_mutual_tls(&ca).await;
    let url = redis.url();
    assert!(url.starts_with("rediss://127.0.0.1:") && !url.contains("insecure"), "{url}");

    let full = material(&ca, true, true);
    redis_rs_ping(&url, &full).await.expect("redis-rs client with the CA and the client certificate");

    // Without REDIS_TLS_CA: the system's roots do not know the test CA.
    let system_roots = material(&ca, false, true);
    let refused = redis_rs_ping(&url, &system_roots).await.expect_err("redis-rs must not trust an unknown CA");
    assert!(refused.contains("UnknownIssuer") || refused.contains("certificate"), "{refused}");
    // No material at all (`Client::open`): the same.
    redis_rs_ping(&url, &TlsMaterial::default()).await.expect_err("no CA, no trust");

    // Trusting the CA but presenting no certificate: this server wants one.
    let no_cert = material(&ca, true, false);
    redis_rs_ping(&url, &no_cert).await.expect_err("the server requires a client certificate (redis-rs)");

    // `#insecure` still skips the server's checks, and the client certificate is still presented.
    let insecure = format!("{url}/#insecure");
    redis_rs_ping(&insecure, &material(&ca, false, true)).await.expect("redis-rs #insecure with a client certificate");
}

#[test]
fn the_cluster_and_sentinel_builders_take_the_material() {
    use redis::ConnectionAddr;
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let ca = TestCa::make();
    let full = material(&ca, true, true);
    let node = "rediss://127.0.0.1:7001".to_owned();
    full.cluster(redis::cluster::ClusterClientBuilder::new(vec![node])).build().expect("a cluster client with the CA");

    let tls_sentinel =
        ConnectionAddr::TcpTls { host: "127.0.0.1".into(), port: 26379, insecure: false, tls_params: None };
    let plain_sentinel = ConnectionAddr::Tcp("127.0.0.1".into(), 26379);
    let builder = |addr: &ConnectionAddr| {
        SentinelClientBuilder::new([addr.clone()], "mymaster", SentinelServerType::Master).expect("builder")
    };
    full.sentinel(builder(&tls_sentinel)).build().expect("TLS sentinels get the certificates too");
    // redis-rs refuses certificates for a sentinel reached without TLS; the data nodes still get them.
    assert!(full.sentinel(builder(&plain_sentinel)).build().is_err());
    full.sentinel_with(builder(&plain_sentinel), false).build().expect("plain sentinels, TLS data nodes");
    // A broken PEM would have been refused at read(); redis-rs parses what it is given.
    let broken = TlsMaterial {
        ca: Some(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".to_vec()),
        client: None,
    };
    assert!(broken.sentinel(builder(&tls_sentinel)).build().is_err(), "the material reaches the builder");
}

fn tls_vars(ca: &TestCa, keep: &[&str]) -> Vec<(&'static str, String)> {
    ca.vars().into_iter().filter(|(name, _)| keep.contains(name)).collect()
}

async fn bot(id: &str, url: &str, vars: &[(&'static str, String)]) -> TestApp {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    instance_with(id, url, &pairs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_with_the_private_ca_and_client_certificates_share_commands_over_verified_tls() {
    let ca = TestCa::make();
    let redis = RedisServer::start_mutual_tls(&ca).await;
    let vars = ca.vars();
    let (a, b) = (bot("bot-a", &redis.url(), &vars).await, bot("bot-b", &redis.url(), &vars).await);
    connected(&[&a, &b]).await;
    let health = a.get_json("/api/events/health").await;
    assert_eq!(health["redis"]["connected"], true, "{health}");

    // A route and a value set on a reach b's Max/MSP.
    a.op("!admin es9out#2 → doorway#1.threshold");
    b.osc.recv_addr("/routing").await;
    a.viewer("viewer", "doorway#1.threshold: 127");
    assert_eq!(b.osc.recv_addr("/cv").await, cv("es9out#2", 1.0, "doorway", 1, "threshold", 127));
    assert_eq!(b.state().await["parameters"]["doorway#1.threshold"]["source_instance"], "bot-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_or_without_a_client_certificate_the_bot_stays_degraded_and_works_locally() {
    let ca = TestCa::make();
    let redis = RedisServer::start_mutual_tls(&ca).await;
    let system_roots = bot("bot-roots", &redis.url(), &tls_vars(&ca, &["REDIS_TLS_CERT", "REDIS_TLS_KEY"])).await;
    let no_cert = bot("bot-nocert", &redis.url(), &tls_vars(&ca, &["REDIS_TLS_CA"])).await;
    for app in [&system_roots, &no_cert] {
        eventually("degraded", Duration::from_secs(10), || async { redis_status(app).await == "degraded" }).await;
        // Retried a few times (awaited), and not one attempt ever got as far as a probe round trip.
        let failed = app.stat("redis_reconnects").await;
        eventually("kept retrying", Duration::from_secs(10), || async {
            app.stat("redis_reconnects").await >= failed + 3
        })
        .await;
        assert_eq!(redis_status(app).await, "degraded", "never connected");
        assert_eq!(app.stat("redis_probe_rtt_us").await, 0, "no session ever came up");
        assert_eq!(
            app.viewer("v", "doorway#1.gain: 2"),
            Outcome::Done(cvbot::coord::Done::Set),
            "still works local-only"
        );
    }
}

/// Runs the built binary with `vars` until it exits: (status code, stderr).
fn run_binary(vars: &[(&str, String)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = crate::binary::cvbot();
    let port = crate::binary::free_port();
    cmd.current_dir(dir.path())
        .stdin(Stdio::null())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("ENABLE_REDIS_EVENTS", "true")
        .env("REDIS_URL", format!("rediss://127.0.0.1:{port}"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cvbot");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_tls_file_that_is_missing_or_not_what_its_variable_names_stops_start_up_with_status_2() {
    let ca = TestCa::make();
    let junk = ca.file("junk.pem");
    std::fs::write(&junk, "this is not a certificate\n").expect("write");
    let path = |p: std::path::PathBuf| p.display().to_string();
    let with = |name: &'static str, value: String| {
        let mut vars = ca.vars();
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value));
        vars
    };
    for (vars, variable, says) in [
        (with("REDIS_TLS_CA", path(junk.clone())), "REDIS_TLS_CA", "holds no PEM certificate"),
        (with("REDIS_TLS_CA", path(ca.file("missing.pem"))), "REDIS_TLS_CA", "cannot read"),
        (with("REDIS_TLS_CA", path(ca.file("ca.key"))), "REDIS_TLS_CA", "holds no PEM certificate"),
        (with("REDIS_TLS_CERT", path(junk.clone())), "REDIS_TLS_CERT", "holds no PEM certificate"),
        (with("REDIS_TLS_KEY", path(junk.clone())), "REDIS_TLS_KEY", "holds no PEM private key"),
        (with("REDIS_TLS_KEY", path(ca.file("server.key"))), "REDIS_TLS_KEY", "is not the key of the certificate"),
    ] {
        let (code, stderr) = run_binary(&vars);
        assert_eq!(code, Some(2), "{variable} ({says}): {stderr}");
        // Start-up logs what it loaded before the TLS files (the catalogue); the error is one line.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR") || l.contains("panicked")).collect();
        assert_eq!(errors.len(), 1, "one error line for {variable}: {stderr}");
        assert!(errors[0].contains(variable) && errors[0].contains(says), "{variable} ({says}): {stderr}");
        assert!(!stderr.contains("connecting to Redis"), "stopped before connecting: {stderr}");
    }
    // The same files, valid, pass the check: the bot serves (local-only, nothing listens on that port).
    let osc = crate::helpers::OscReceiver::bind().await;
    let mut vars: Vec<(String, String)> = ca.vars().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    vars.push(("ENABLE_REDIS_EVENTS".into(), "true".into()));
    vars.push(("REDIS_URL".into(), format!("rediss://127.0.0.1:{}", crate::binary::free_port())));
    let bot = crate::binary::Bot::spawn(&osc, Stdio::null(), &vars, &[]);
    bot.wait_healthy();
}
