//! HTTP under abuse, over real sockets: slow-loris connections closed at the header deadline, the
//! connection and SSE caps (503 with `Retry-After`, then served again once a place is free), the
//! `Host` check against DNS rebinding, history behind the token, the pages' security headers, and the
//! built binary's log staying free of errors when clients go away or send a bad path.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cvbot::app::SHUTDOWN_GRACE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{OscReceiver, TOKEN, TestApp, eventually, eventually_blocking, eventually_some};
use crate::sse::SseClient;

/// Generous bound for anything that must happen "soon" on a loaded 2-core machine.
const SOON: Duration = Duration::from_secs(10);

/// Sends `request` on a fresh connection and reads the whole answer (the request should say
/// `Connection: close`, or the server must close).
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(SOON, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed within {SOON:?}");
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str, host: Option<&str>) -> String {
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n")
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line: {response:?}"))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_at_the_header_deadline_while_others_are_served() {
    // The configured deadline, less a little for the clock reads on either side.
    let not_before = Duration::from_millis(450);
    let app = TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT_MS", "500")]).await;
    // An open event stream is not a request still sending its headers: opened before the stalled
    // connections, it must outlive their deadline.
    let mut sse = SseClient::connect(&app, None).await;
    assert_eq!(sse.next().await.name, "snapshot");
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(app.http_addr).await.expect("connect");
        let partial = format!("GET /api/state HTTP/1.1\r\nHost: {}\r\nX-Slow: aaa", app.http_addr);
        stream.write_all(partial.as_bytes()).await.expect("partial headers");
        held.push((Instant::now(), stream));
    }
    let answer = exchange(app.http_addr, &get("/api/state", Some(&app.http_addr.to_string()))).await;
    assert_eq!(status(&answer), 200, "a complete request is served beside 200 stalled ones: {answer}");
    // A head larger than MAX_HEADER_BYTES is refused, not buffered.
    let huge = format!("GET /api/state HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", "a".repeat(100_000));
    let mut stream = TcpStream::connect(app.http_addr).await.expect("connect");
    // The server may close before it has read everything, so a failed write is fine.
    let _ = stream.write_all(huge.as_bytes()).await;
    let answer = read_all(&mut stream).await;
    assert!(answer.is_empty() || status(&answer) == 431, "{answer}");

    let closes = held.into_iter().map(|(opened, mut stream)| async move {
        read_all(&mut stream).await;
        opened.elapsed()
    });
    let lasted = futures_util::future::join_all(closes).await;
    app.viewer("ann", "doorway#1.threshold: 89");
    assert_eq!(sse.next().await.name, "update", "the stream is still open after every stalled one was closed");
    for lasted in lasted {
        // Never before the deadline (a timer does not fire early), and never held open much past it:
        // `read_all` fails the test if a connection is still open after SOON.
        assert!(lasted >= not_before, "closed after {lasted:?}, before the deadline");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_a_client_gets_503_and_the_held_ones_are_still_served() {
    let app = TestApp::spawn_with(&[("HTTP_MAX_CONNECTIONS", "4")]).await;
    let host = app.http_addr.to_string();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.http_addr).await.expect("connect"));
    }
    // Connections are accepted in the order they were made, so these four hold every place.
    let refused = exchange(app.http_addr, &get("/api/state", Some(&host))).await;
    assert_eq!(status(&refused), 503, "{refused}");
    assert_eq!(header(&refused, "retry-after"), Some("5"), "{refused}");
    assert_eq!(header(&refused, "connection"), Some("close"), "{refused}");
    assert!(refused.contains("HTTP_MAX_CONNECTIONS"), "the answer names the setting: {refused}");

    for stream in &mut held {
        stream.write_all(get("/api/state", Some(&host)).as_bytes()).await.expect("request");
        let answer = read_all(stream).await;
        assert_eq!(status(&answer), 200, "a held connection is served: {answer}");
    }
    drop(held);
    // Their places come back once the server has seen them close.
    let answer = eventually_some("a connection served after the held ones closed", SOON, || async {
        let answer = exchange(app.http_addr, &get("/metrics", Some(&host))).await;
        (status(&answer) == 200).then_some(answer)
    })
    .await;
    let refusals = answer
        .lines()
        .find_map(|l| l.strip_prefix("cvbot_http_connections_refused_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(refusals.is_some_and(|n| n >= 1), "the refusal is counted: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_sse_cap_a_stream_gets_503_and_a_freed_place_is_given_again() {
    let app =
        TestApp::spawn_with(&[("SSE_MAX_CLIENTS", "3"), ("SSE_KEEPALIVE_SECS", "1"), ("RATE_LIMIT_MS", "0")]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = SseClient::connect(&app, None).await;
        assert_eq!(sse.next().await.name, "snapshot");
        streams.push(sse);
    }
    let refused = reqwest::get(app.url("/events")).await.expect("GET /events");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body = refused.text().await.expect("body");
    assert!(body.contains("SSE_MAX_CLIENTS"), "{body}");

    // The three keep streaming.
    app.viewer("ann", "doorway#1.threshold: 89");
    for sse in &mut streams {
        let update = sse.next().await;
        assert_eq!((update.name.as_str(), &update.data["variable"]), ("update", &"doorway#1.threshold".into()));
    }

    drop(streams.pop());
    let _fresh = eventually_some("a new stream accepted after one closed", SOON, || async {
        let response = reqwest::get(app.url("/events")).await.expect("GET /events");
        (response.status() == 200).then_some(response)
    })
    .await;
    let metrics = reqwest::get(app.url("/metrics")).await.expect("metrics").text().await.expect("text");
    // At least the one above (the wait for a free place may have been refused too).
    let refused = metrics.lines().find_map(|l| l.strip_prefix("cvbot_sse_clients_refused_total "));
    assert!(
        refused.and_then(|n| n.trim().parse::<u64>().ok()).is_some_and(|n| n >= 1),
        "the refusal is counted: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_bound_address_loopback_and_allowed_names_are_served() {
    let app = TestApp::spawn_with(&[("HTTP_ALLOWED_HOSTS", "obs.studio.lan")]).await;
    let port = app.http_addr.port();
    let bound = app.http_addr.to_string();
    let served = [
        bound.clone(),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "obs.studio.lan".to_owned(),
        format!("OBS.Studio.Lan:{port}"),
    ];
    for host in &served {
        for path in ["/api/state", "/overlay", "/events?last_event_id=x"] {
            // `/events` never ends by itself: only its head is read.
            let mut stream = TcpStream::connect(app.http_addr).await.expect("connect");
            stream.write_all(get(path, Some(host)).as_bytes()).await.expect("write");
            let mut head = [0u8; 64];
            let n = tokio::time::timeout(SOON, stream.read(&mut head)).await.expect("an answer").expect("read");
            let head = String::from_utf8_lossy(&head[..n]);
            assert!(head.starts_with("HTTP/1.1 200"), "Host {host} {path}: {head}");
        }
    }
    for host in ["evil.example", &format!("evil.example:{port}"), "127.0.0.1.nip.io", "studio.lan", "192.0.2.7"] {
        for path in ["/api/state", "/events", "/overlay", "/api/events/history"] {
            let answer = exchange(app.http_addr, &get(path, Some(host))).await;
            assert_eq!(status(&answer), 421, "Host {host} {path}: {answer}");
            assert!(answer.contains("HTTP_ALLOWED_HOSTS"), "the refusal names the setting: {answer}");
        }
    }
    // An absolute-form target names the host the client meant, whatever `Host` says.
    let absolute = format!("GET http://evil.example/api/state HTTP/1.1\r\nHost: {bound}\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&exchange(app.http_addr, &absolute).await), 421);
    // HTTP/1.1 requires Host; HTTP/1.0 predates it (no browser sends 1.0).
    assert_eq!(status(&exchange(app.http_addr, &get("/api/state", None)).await), 400);
    assert_eq!(status(&exchange(app.http_addr, "GET /api/state HTTP/1.0\r\n\r\n").await), 200);
    // Probes address the bot by names it cannot know, and health tells a rebinding page nothing.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(status(&exchange(app.http_addr, &get(path, Some("cvbot-container:3001"))).await), 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_asks_for_the_admin_token() {
    let app = TestApp::spawn_admin().await;
    let client = reqwest::Client::new();
    let url = app.url("/api/events/history");
    let right = format!("Bearer {TOKEN}");
    for (auth, query) in
        [(None, ""), (Some("Bearer wrong-token"), ""), (None, "?limit=nope"), (Some(right.as_str()), "")]
    {
        let mut request = client.get(format!("{url}{query}"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("GET history");
        if auth == Some(right.as_str()) {
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.expect("json");
            assert!(body["events"].is_array(), "{body}");
        } else {
            assert_eq!(response.status(), 401, "{auth:?} {query}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    // Without ADMIN_TOKEN configured, history is closed like every write.
    let open = TestApp::spawn().await;
    let response = reqwest::get(open.url("/api/events/history")).await.expect("GET history");
    assert_eq!(response.status(), 401);
}

/// Whether an HTML page has any inline script, inline style or event-handler attribute (all of which
/// the Content-Security-Policy blocks, so the page would silently not work).
fn inline_code(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = html.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>').unwrap_or(0)];
        if !tag.contains(" src=") {
            found.push(format!("inline <script> at byte {at}"));
        }
    }
    if lower.contains("<style") {
        found.push("a <style> element".into());
    }
    for (at, _) in lower.match_indices(" style=") {
        found.push(format!("a style attribute at byte {at}"));
    }
    let bytes = lower.as_bytes();
    for (at, _) in lower.match_indices(" on") {
        let name: String =
            lower[at + 1..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect::<String>();
        if name.len() > 2 && bytes.get(at + 1 + name.len()) == Some(&b'=') {
            found.push(format!("an {name}= attribute at byte {at}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_send_a_strict_policy_that_their_own_code_fits() {
    let app = TestApp::spawn().await;
    for page in ["/overlay", "/admin"] {
        let response = reqwest::get(app.url(page)).await.expect("page");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'self'"] {
            assert!(csp.contains(directive), "{page}: {directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{page}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{page}");
        let html = response.text().await.expect("html");
        assert_eq!(inline_code(&html), Vec::<String>::new(), "{page} has code the policy blocks");
    }
    // The compiled-in copies (served when `overlay/` is absent) obey the same rule.
    for html in [include_str!("../../overlay/index.html"), include_str!("../../overlay/admin.html")] {
        assert_eq!(inline_code(html), Vec::<String>::new());
    }
    assert!(!inline_code("<p onclick=\"x()\">").is_empty() && !inline_code("<script>x()</script>").is_empty());
    let json = reqwest::get(app.url("/api/state")).await.expect("state");
    assert_eq!(json.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_stalled_or_streaming_connections() {
    let mut app = TestApp::spawn().await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(app.http_addr).await.expect("connect");
        stream.write_all(b"GET /api/state HTTP/1.1\r\nHost: localhost\r\n").await.expect("partial");
        stalled.push(stream);
    }
    let mut sse = SseClient::connect(&app, None).await;
    assert_eq!(sse.next().await.name, "snapshot");
    // A request that has been answered proves the stalled ones were accepted before shutdown.
    assert_eq!(status(&exchange(app.http_addr, &get("/healthz", Some("localhost"))).await), 200);
    let started = Instant::now();
    app.shutdown.cancel();
    app.running.take().expect("running").wait().await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(took < SHUTDOWN_GRACE, "shutdown took {took:?} (grace {SHUTDOWN_GRACE:?})");
    for mut stream in stalled {
        read_all(&mut stream).await;
    }
    assert!(sse.read().await.is_none(), "the stream ended");
}

/// The built binary, run in an empty directory (so it serves its compiled-in pages) at debug level.
struct Bot {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Bot {
    async fn start(osc: &OscReceiver) -> Bot {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_cvbot"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOG_LEVEL", "debug")
            .env("ENABLE_REDIS_EVENTS", "false")
            .env("HTTP_ADDR", addr.to_string())
            .env("OSC_TARGETS", osc.addr().to_string())
            .env("SSE_KEEPALIVE_SECS", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cvbot");
        let bot = Bot { child, addr, _dir: dir };
        eventually("the bot serves", SOON, || async {
            match TcpStream::connect(bot.addr).await {
                Ok(mut s) => {
                    let _ = s.write_all(get("/healthz", Some("localhost")).as_bytes()).await;
                    read_all(&mut s).await.contains("\"ok\"")
                }
                Err(_) => false,
            }
        })
        .await;
        bot
    }

    /// SIGTERM, wait for the exit, and return everything it logged.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        eventually_blocking("cvbot exits after SIGTERM", SOON, || self.child.try_wait().expect("try_wait"));
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().expect("stderr"), &mut stderr).expect("stderr");
        stderr
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_going_away_and_bad_paths_leave_no_error_in_the_log() {
    let osc = OscReceiver::bind().await;
    let bot = Bot::start(&osc).await;
    let addr = bot.addr;
    let host = addr.to_string();

    // Overlays that close mid-stream, politely (FIN) and abruptly (RST).
    for abrupt in [false, true] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(get("/events", Some(&host)).as_bytes()).await.expect("request");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("event:snapshot") && !seen.contains("event: snapshot") {
            let n = tokio::time::timeout(SOON, stream.read(&mut buf)).await.expect("snapshot in time").expect("read");
            assert!(n > 0, "the stream ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if abrupt {
            stream.set_zero_linger().expect("linger");
        }
        drop(stream);
    }
    // A request cut off in its headers.
    let mut cut = TcpStream::connect(addr).await.expect("connect");
    cut.write_all(format!("GET /api/state HTTP/1.1\r\nHost: {host}\r\nAcc").as_bytes()).await.expect("partial");
    drop(cut);

    for path in ["/overlay/%00", "/overlay/a%00.js", "/%00", "/overlay/%ff", "/overlay/..%2f..%2fetc%2fpasswd"] {
        let answer = exchange(addr, &get(path, Some(&host))).await;
        assert_eq!(status(&answer), 404, "{path}: {answer}");
    }
    // The compiled-in page and its script are served without an `overlay/` directory.
    let page = exchange(addr, &get("/overlay", Some(&host))).await;
    assert!(status(&page) == 200 && page.contains("/overlay/overlay.js"), "{page}");
    let script = exchange(addr, &get("/overlay/overlay.js", Some(&host))).await;
    assert!(status(&script) == 200 && script.contains("EventSource"), "{script}");

    // The server has noticed both overlays are gone (awaited, not slept on).
    eventually("the closed overlays are dropped", SOON, || async {
        let health = exchange(addr, &get("/api/events/health", Some(&host))).await;
        health.contains("\"sse_clients\":0")
    })
    .await;

    let log = bot.stop();
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).collect();
    assert!(bad.is_empty(), "clients going away or bad paths logged as faults:\n{}", bad.join("\n"));
    // The capture works and the departures were seen, at debug.
    assert!(log.contains("DEBUG") && log.contains("HTTP connection ended by the client"), "{log}");
}
