//! The overlay tests' browser: a headless Chromium behind its own chromedriver, driven over
//! `WebDriver`, and where its screenshots go.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::SLOW;
use crate::helpers::eventually;

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A headless Chromium behind its own chromedriver, with a fresh profile.
pub(super) struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

impl Browser {
    pub(super) async fn start() -> Browser {
        let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the overlay tests need Chromium and chromedriver \
                 (`apt-get install chromium chromium-driver`; scripts/test does it when run as root)"
            )
        });
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("chromium is not installed (`apt-get install chromium`; scripts/test does it)"));
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
            profile,
        };
        browser.wait_ready().await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1920,1080",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser.call(reqwest::Method::POST, "/session", Some(caps)).await;
        created["sessionId"].as_str().expect("a WebDriver session id").clone_into(&mut browser.session);
        browser
    }

    async fn wait_ready(&self) {
        eventually("chromedriver ready", SLOW, || async {
            match self.http.get(format!("{}/status", self.base)).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
    }

    /// One `WebDriver` command; returns its `value`, failing the test on a `WebDriver` error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let response = self.try_call(method, path, body).await;
        assert!(response["value"]["error"].is_null(), "WebDriver {path}: {response}");
        response["value"].clone()
    }

    /// One `WebDriver` command's whole response, error or not.
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("WebDriver request").json().await.expect("WebDriver JSON")
    }

    /// Logs in to the admin page it shows with `token` and waits until the page is live.
    pub(super) async fn log_in(&self, token: &str) {
        self.type_into("#token", token).await;
        self.click("#login-btn").await;
        self.wait_until("return document.getElementById('status').textContent === 'live';", SLOW, "logged in, live")
            .await;
    }

    pub(super) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, &format!("/session/{}/url", self.session), Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body that returns a value) in the page.
    pub(super) async fn eval(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.call(reqwest::Method::POST, &format!("/session/{}/execute/sync", self.session), Some(body)).await
    }

    /// Runs `script` in every page this session loads from now on, before the page's own scripts
    /// (Chrome `DevTools`' `Page.addScriptToEvaluateOnNewDocument`, through chromedriver).
    pub(super) async fn before_every_page(&self, script: &str) {
        let body = json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": script}});
        self.call(reqwest::Method::POST, &format!("/session/{}/goog/cdp/execute", self.session), Some(body)).await;
    }

    /// Polls `script` until it returns `true`; fails with `what` and the elapsed time after `limit`.
    pub(super) async fn wait_until(&self, script: &str, limit: Duration, what: &str) -> Duration {
        let started = Instant::now();
        eventually(what, limit, || async { self.eval(script).await == Value::Bool(true) }).await;
        started.elapsed()
    }

    /// Finds one element by CSS selector; returns its `WebDriver` reference.
    async fn element(&self, css: &str) -> String {
        let body = json!({"using": "css selector", "value": css});
        let found = self.call(reqwest::Method::POST, &format!("/session/{}/element", self.session), Some(body)).await;
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the element `css` finds, as a user would. A page that redraws a table on every state
    /// update may replace the element between finding and clicking it: then it is found again, as
    /// a user's second try would (a few times at most).
    pub(super) async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.element(css).await;
            let path = format!("/session/{}/element/{id}/click", self.session);
            let response = self.try_call(reqwest::Method::POST, &path, Some(json!({}))).await;
            match response["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => {}
                Some(_) => panic!("WebDriver click on {css}: {response}"),
            }
        }
        panic!("{css} kept being redrawn under the click");
    }

    /// Clears a field and types `text` into it, as a user would.
    pub(super) async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(reqwest::Method::POST, &format!("/session/{}/element/{id}/clear", self.session), Some(json!({})))
            .await;
        let body = json!({"text": text});
        self.call(reqwest::Method::POST, &format!("/session/{}/element/{id}/value", self.session), Some(body)).await;
    }

    /// Sets the window's outer size, browser frame included.
    async fn set_window(&self, width: i64, height: i64) {
        let rect = json!({"width": width, "height": height});
        self.call(reqwest::Method::POST, &format!("/session/{}/window/rect", self.session), Some(rect)).await;
    }

    /// Sizes the window so its viewport (what a screenshot shows) is `width` × `height`: the window
    /// is set first, then grown by what the browser's own frame takes.
    pub(super) async fn resize_viewport(&self, width: u32, height: u32) {
        let (width, height) = (i64::from(width), i64::from(height));
        self.set_window(width, height).await;
        let inner = self.eval("return [window.innerWidth, window.innerHeight];").await;
        let (w, h) = (inner[0].as_i64().expect("innerWidth"), inner[1].as_i64().expect("innerHeight"));
        self.set_window(2 * width - w, 2 * height - h).await;
    }

    /// Saves the viewport as `target/screenshots/{name}`, checks it is a PNG with a plausible size
    /// and returns its bytes and dimensions.
    pub(super) async fn screenshot(&self, name: &str) -> (Vec<u8>, (u32, u32)) {
        let png = self.call(reqwest::Method::GET, &format!("/session/{}/screenshot", self.session), None).await;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64 PNG")).expect("valid base64");
        let size = png_size(&bytes).unwrap_or_else(|| panic!("{name}: not a PNG ({} bytes)", bytes.len()));
        assert!(size.0 >= 320 && size.1 >= 240, "{name}: {size:?} is too small to show anything");
        assert!(bytes.len() > 4096, "{name}: {} bytes is a blank picture, not a page", bytes.len());
        std::fs::write(screenshot_path(name), &bytes).expect("write screenshot");
        (bytes, size)
    }

    pub(super) async fn quit(mut self) {
        self.call(reqwest::Method::DELETE, &format!("/session/{}", self.session), None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After `quit` this is a no-op; after a failed assertion it stops the driver (and its browser).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `target/screenshots/`, so `cargo clean` removes them.
fn screenshot_path(name: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is target/tmp");
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir.join(name)
}

/// The width and height in a PNG's header (signature, then the IHDR chunk), if `bytes` starts like
/// a PNG with a non-empty picture.
pub(super) fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let header = bytes.get(..24)?;
    if &header[..8] != SIGNATURE || &header[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(header[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(header[20..24].try_into().ok()?);
    (width > 0 && height > 0).then_some((width, height))
}
