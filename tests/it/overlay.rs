//! The overlay page in a real headless Chromium, driven over `WebDriver` (`chromedriver`, started by the
//! test on a free port): values appear within a second of a chat command, the emergency banner, names
//! rendered as text, reconnection after a server restart on the same port, and screenshots under
//! `target/screenshots/` for a human to look at. `CVBOT_UPDATE_SCREENSHOTS=1` also writes the README's
//! two (`docs/overlay.png`, `docs/admin.png`); without it the repository is never touched. Timed
//! ramps and slew limits on both pages are in [`motion`]; democracy's votes, locks and scenes in
//! [`show`]; the teaching options (`?hint=1`, `?routed=1`) in [`teach`]; the browser itself is in
//! [`browser`].

mod browser;
mod motion;
mod show;
mod teach;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use browser::{Browser, free_port, png_size};
use cvbot::coord::Outcome;

use crate::helpers::{TOKEN, TestApp, eventually};

/// How long a chat command may take to show on the overlay (the promise to streamers).
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// Generous bound for slow steps: page load, browser start, reconnection after a restart.
const SLOW: Duration = Duration::from_secs(20);

/// True when the row of `variable` shows `value`.
fn shows(variable: &str, value: u8) -> String {
    format!(
        "const v = document.querySelector('[data-variable=\"{variable}\"] .value'); \
         return v !== null && v.textContent === '{value}';"
    )
}

const LIVE: &str = "return document.getElementById('conn').textContent === 'live';";

/// With `CVBOT_UPDATE_SCREENSHOTS=1`, copies a screenshot into `docs/` for the README.
fn update_docs(name: &str, png: &[u8]) {
    if std::env::var("CVBOT_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&dir).expect("create docs/");
        std::fs::write(dir.join(name), png).expect("write the README's screenshot");
        eprintln!("updated docs/{name} ({} bytes)", png.len());
    }
}

/// Paints a stand-in video frame behind the transparent page, as OBS would composite it.
const FAKE_VIDEO: &str = "const frame = document.createElement('div'); \
    frame.style.cssText = 'position: fixed; inset: 0; z-index: -1; background: \
    radial-gradient(circle at 30% 40%, #3a7bd5 0%, #6a3093 45%, #0f0c29 100%)'; \
    document.body.prepend(frame); return true;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_in_chromium_shows_chat_values_fast_the_estop_banner_and_names_as_text() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.op("!admin es9out#2 → navigator#1.rotation");
    app.viewer("lumen_fox", "navigator#1.rotation: 100");
    app.viewer("synthcat", "prismaticray#1.frequency: 33");
    let browser = Browser::start().await;
    browser.goto(&app.url("/overlay")).await;
    browser.wait_until(LIVE, SLOW, "the overlay connects").await;
    browser.wait_until(&shows("navigator#1.rotation", 100), SLOW, "the snapshot's values").await;
    let background = browser.eval("return getComputedStyle(document.body).backgroundColor;").await;
    assert_eq!(background, "rgba(0, 0, 0, 0)", "transparent for OBS");

    let sent = Instant::now();
    app.viewer("ann", "doorway#1.threshold: 89");
    browser.wait_until(&shows("doorway#1.threshold", 89), VISIBLE_WITHIN, "a chat value on the overlay").await;
    eprintln!("chat command → visible on the overlay in {:?}", sent.elapsed());

    // Two users fighting over one parameter flash it and say so.
    app.viewer("bob", "doorway#1.threshold: 20");
    browser.wait_until(&shows("doorway#1.threshold", 20), SLOW, "bob's value").await;
    let fight = "return document.getElementById('latest').textContent.includes('ann vs bob') && \
                 document.querySelector('[data-variable=\"doorway#1.threshold\"]').classList.contains('fight');";
    browser.wait_until(fight, SLOW, "the fight flash").await;

    let evil = "<img src=x onerror=alert(1)>";
    app.viewer(evil, "doorway#1.gain: 64");
    browser.wait_until(&shows("doorway#1.gain", 64), SLOW, "the value set by the odd name").await;
    let who =
        browser.eval("return document.querySelector('[data-variable=\"doorway#1.gain\"] .who').textContent;").await;
    assert_eq!(who, evil, "the name is shown as text");
    assert_eq!(browser.eval("return document.querySelectorAll('img').length;").await, 0, "no element was injected");
    assert!(browser.eval("return document.body.textContent;").await.as_str().is_some_and(|t| t.contains(evil)));

    browser.eval(FAKE_VIDEO).await;
    browser.screenshot("overlay-chat.png").await;

    app.op("!admin emergency stop strobing too hard");
    let banner = "const b = document.getElementById('estop'); return !b.hidden && b.offsetHeight > 0 && \
                  document.getElementById('estop-message').textContent === 'strobing too hard';";
    browser.wait_until(banner, SLOW, "the emergency banner").await;
    // The jacks are at their safe values, and the overlay says so instead of the last chat value.
    let held = "return document.getElementById('estop-held').textContent.includes('es9out#1 0.00 V') && \
                document.querySelector('[data-variable=\"doorway#1.threshold\"] .meta').textContent.startsWith('held at 0.00 V');";
    browser.wait_until(held, SLOW, "each routed output shown held at its safe value").await;
    browser.screenshot("overlay-estop.png").await;
    app.op("!admin resume");
    browser.wait_until("return document.getElementById('estop').hidden;", SLOW, "the banner goes away").await;

    app.op("!admin overlay off");
    let hidden =
        "return document.getElementById('root').hidden && document.getElementById('panel').offsetHeight === 0;";
    browser.wait_until(hidden, SLOW, "overlay off hides everything").await;
    app.op("!admin overlay on");
    browser.wait_until("return !document.getElementById('root').hidden;", SLOW, "overlay on shows it again").await;

    // Query-string options: corner, theme, module filter, fade time, raw display.
    browser.goto(&app.url("/overlay?corner=tl&theme=light&modules=navigator&fade=1&display=raw")).await;
    browser.wait_until(&shows("navigator#1.rotation", 100), SLOW, "the filtered module").await;
    let options = "return document.body.classList.contains('corner-tl') && \
                   document.body.classList.contains('theme-light') && \
                   document.querySelector('[data-variable=\"doorway#1.threshold\"]') === null && \
                   !document.querySelector('.param .meta').textContent.includes(' V');";
    browser.wait_until(options, SLOW, "corner, theme, module filter and raw display").await;
    let faded = "return document.querySelector('[data-variable=\"navigator#1.rotation\"]').classList.contains('idle');";
    browser.wait_until(faded, SLOW, "an untouched parameter fades after `fade` seconds").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_in_chromium_reconnects_after_the_server_restarts_on_the_same_port() {
    let addr = format!("127.0.0.1:{}", free_port());
    let first = TestApp::spawn_with(&[("HTTP_ADDR", &addr)]).await;
    first.viewer("ann", "doorway#1.gain: 11");
    let browser = Browser::start().await;
    browser.goto(&first.url("/overlay")).await;
    browser.wait_until(&shows("doorway#1.gain", 11), SLOW, "the first server's value").await;

    first.stop().await;
    let down = "return document.getElementById('conn').textContent === 'reconnecting…';";
    browser.wait_until(down, SLOW, "the page says it is reconnecting").await;

    let second = TestApp::spawn_with(&[("HTTP_ADDR", &addr)]).await;
    second.viewer("zed", "doorway#1.threshold: 99");
    browser.wait_until(&shows("doorway#1.threshold", 99), SLOW, "the new server's state after reconnecting").await;
    browser.wait_until(LIVE, SLOW, "live again").await;
    let stale = browser.eval("return document.querySelector('[data-variable=\"doorway#1.gain\"]') === null;").await;
    assert_eq!(stale, true, "the old server's values are gone: the new snapshot replaced them");
    browser.quit().await;
}

/// Polls the app's `/api/state` until `check` holds.
async fn wait_for_state(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) {
    eventually(what, SLOW, || async { check(&app.state().await) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_chromium_logs_in_and_every_button_works() {
    let app = TestApp::spawn_admin().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/admin")).await;
    browser.type_into("#token", "not-the-token-at-all").await;
    browser.click("#login-btn").await;
    let refused = "return document.getElementById('login-msg').textContent === 'wrong admin token';";
    browser.wait_until(refused, SLOW, "a wrong token is refused").await;
    browser.log_in(TOKEN).await;

    browser.type_into("#chat-text", "doorway#1.threshold: 77").await;
    browser.click("#chat-btn").await;
    wait_for_state(&app, "chat as", |s| s["parameters"]["doorway#1.threshold"]["value"] == 77).await;
    let row =
        "return [...document.querySelectorAll('#params td')].some(td => td.textContent === 'doorway#1.threshold');";
    browser.wait_until(row, SLOW, "the live parameter table").await;

    browser.type_into("#estop-message", "fog machine").await;
    browser.click("#estop-btn").await;
    wait_for_state(&app, "emergency stop", |s| {
        s["emergency"]["active"] == true && s["emergency"]["message"] == "fog machine"
    })
    .await;
    browser.wait_until("return !document.getElementById('estop-banner').hidden;", SLOW, "the banner").await;
    browser.click("#resume-btn").await;
    wait_for_state(&app, "resume", |s| s["emergency"]["active"] == false).await;

    browser.eval("document.getElementById('route-output').value = 'es9out#3'; return true;").await;
    browser.type_into("#route-variable", "doorway#1.gain").await;
    browser.click("#route-btn").await;
    wait_for_state(&app, "route", |s| s["routes"]["es9out#3"] == "doorway#1.gain").await;
    browser.wait_until("return document.querySelector('#routes button') !== null;", SLOW, "the route row").await;
    browser.click("#routes button").await;
    wait_for_state(&app, "route removed", |s| s["routes"] == json!({})).await;

    browser.click("#overlay-btn").await;
    wait_for_state(&app, "overlay off", |s| s["overlay_enabled"] == false).await;
    browser
        .wait_until("return document.getElementById('overlay-btn').textContent.includes('OFF');", SLOW, "label")
        .await;
    browser.click("#overlay-btn").await;
    wait_for_state(&app, "overlay on", |s| s["overlay_enabled"] == true).await;

    browser.eval("window.confirm = () => true; return true;").await;
    browser.click("#clear-btn").await;
    wait_for_state(&app, "clear", |s| s["parameters"] == json!({})).await;
    let history = "return document.querySelectorAll('#history tr').length >= 5;";
    browser.wait_until(history, SLOW, "recent events").await;
    let instances = "return document.getElementById('instances').textContent === 'bot-001';";
    browser.wait_until(instances, SLOW, "live instances").await;
    browser.screenshot("admin-after-clear.png").await;

    // The token is kept for the tab: a reload needs no new login.
    browser.goto(&app.url("/admin")).await;
    browser.wait_until("return !document.getElementById('app').hidden;", SLOW, "still logged in").await;
    browser.quit().await;
}

/// A stand-in video frame for the README's picture: a top-to-bottom gradient, which PNG keeps small
/// (every row is one colour), unlike the radial one above.
const README_VIDEO: &str = "const frame = document.createElement('div'); \
    frame.style.cssText = 'position: fixed; inset: 0; z-index: -1; background: \
    linear-gradient(#3a7bd5 0%, #6a3093 55%, #0f0c29 100%)'; \
    document.body.prepend(frame); return true;";

/// True when the row of `variable` shows `value` driving `output`.
fn shows_routed(variable: &str, value: u8, output: &str) -> String {
    format!(
        "const row = document.querySelector('[data-variable=\"{variable}\"]'); \
         return row !== null && row.querySelector('.value').textContent === '{value}' && \
         row.querySelector('.meta').textContent.includes(' on {output}');"
    )
}

/// The README's two pictures: the overlay over a stand-in video frame with a few routed values, and
/// the admin page logged in with the same state. Always under `target/screenshots/`; into `docs/`
/// only with `CVBOT_UPDATE_SCREENSHOTS=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_for_the_readme_show_live_values_and_routes() {
    const OVERLAY_SIZE: (u32, u32) = (1280, 720);
    const ADMIN_SIZE: (u32, u32) = (1280, 1080);
    let app = TestApp::spawn_admin().await;
    let routes = [
        ("es9out#1", "doorway#1.threshold", 89, "lumen_fox"),
        ("es9out#2", "navigator#1.rotation", 42, "synthcat"),
        ("es9out#3", "prismaticray#1.frequency", 100, "modular_mia"),
    ];
    for (output, variable, _, _) in routes {
        assert!(matches!(app.op(&format!("!admin {output} → {variable}")), Outcome::Done { .. }), "{output}");
    }
    assert!(matches!(app.viewer("lumen_fox", "doorway#1.threshold: 70"), Outcome::Done { .. }), "a first value");
    for (_, variable, value, user) in routes.iter().skip(1) {
        assert!(matches!(app.viewer(user, &format!("{variable}: {value}")), Outcome::Done { .. }), "{variable}");
    }
    assert!(matches!(app.viewer("ann", "doorway#1.gain: 64"), Outcome::Done { .. }), "an unrouted value");

    // The admin page first, while it is the only page following the bot (its health line counts them).
    let browser = Browser::start().await;
    browser.goto(&app.url("/admin")).await;
    browser.resize_viewport(ADMIN_SIZE.0, ADMIN_SIZE.1).await;
    browser.log_in(TOKEN).await;
    let tables = "return document.querySelectorAll('#params tr').length === 4 && \
                  document.querySelectorAll('#routes tr').length === 3 && \
                  document.querySelectorAll('#history tr').length >= 7 && \
                  document.getElementById('instances').textContent === 'bot-001' && \
                  document.getElementById('health').textContent.includes(' 1 live overlay');";
    browser.wait_until(tables, SLOW, "parameters, routes, recent events, the instance and its health").await;
    let (png, size) = browser.screenshot("admin.png").await;
    assert_eq!(size, ADMIN_SIZE, "the admin page's picture has the viewport's size");
    update_docs("admin.png", &png);

    browser.goto(&app.url("/overlay")).await;
    browser.resize_viewport(OVERLAY_SIZE.0, OVERLAY_SIZE.1).await;
    browser.wait_until(LIVE, SLOW, "the overlay connects").await;
    // One command while the page watches, so its "latest command" line has something to show.
    assert!(matches!(app.viewer("lumen_fox", "doorway#1.threshold: 89"), Outcome::Done { .. }));
    let latest = "return document.getElementById('latest').textContent === 'lumen_fox: doorway#1.threshold → 89';";
    browser.wait_until(latest, SLOW, "the latest command").await;
    for (output, variable, value, _) in routes {
        browser.wait_until(&shows_routed(variable, value, output), SLOW, variable).await;
    }
    browser.wait_until(&shows("doorway#1.gain", 64), SLOW, "the unrouted value").await;
    browser.eval(README_VIDEO).await;
    let (png, size) = browser.screenshot("overlay.png").await;
    assert_eq!(size, OVERLAY_SIZE, "the overlay's picture has the viewport's size");
    update_docs("overlay.png", &png);
    browser.quit().await;
    // The check the pictures passed is a real one.
    assert_eq!(png_size(&png[..24]), Some(OVERLAY_SIZE));
    assert_eq!(png_size(b"GIF89a, not a PNG at all, no"), None);
}
