//! The overlay's teaching options in the same headless Chromium: `?hint=1` keeps a line saying what
//! to type (a routed parameter when there is one, else the catalogue's first), and `?routed=1` shows
//! only the parameters that are routed; both follow route changes live.

use super::browser::Browser;
use super::{FAKE_VIDEO, LIVE, SLOW, shows};
use crate::helpers::TestApp;

/// True when the hint line is shown and reads `text`.
fn hint_reads(text: &str) -> String {
    format!(
        "const h = document.getElementById('hint'); return !h.hidden && h.offsetHeight > 0 && h.textContent === '{text}';"
    )
}

/// True when a row for `variable` is on the page (`true`) or is not (`false`).
fn row(variable: &str, present: bool) -> String {
    format!("return (document.querySelector('[data-variable=\"{variable}\"]') !== null) === {present};")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_in_chromium_hints_what_to_type_and_can_show_only_routed_parameters() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    app.op("!admin es9out#2 → navigator#1.rotation");
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.viewer("ann", "doorway#1.threshold: 40");
    app.viewer("ann", "doorway#1.gain: 10");
    app.viewer("ann", "navigator#1.rotation: 20");
    let browser = Browser::start().await;

    // Without the options: no hint, every parameter.
    browser.goto(&app.url("/overlay")).await;
    browser.wait_until(&shows("doorway#1.gain", 10), SLOW, "the unrouted parameter is shown").await;
    assert_eq!(browser.eval("return document.getElementById('hint').hidden;").await, true, "no hint unasked");

    browser.goto(&app.url("/overlay?hint=1&routed=1")).await;
    browser.wait_until(LIVE, SLOW, "the overlay connects").await;
    browser.wait_until(&shows("doorway#1.threshold", 40), SLOW, "the routed parameter").await;
    browser.wait_until(&hint_reads("type doorway#1.threshold: 89 in chat"), SLOW, "the first route's hint").await;
    assert_eq!(browser.eval(&row("doorway#1.gain", false)).await, true, "an unrouted parameter is not shown");
    assert_eq!(browser.eval(&row("navigator#1.rotation", true)).await, true);
    browser.eval(FAKE_VIDEO).await;
    browser.screenshot("overlay-hint.png").await;

    // Route changes reach both at once: the hint moves to the next route, then to the catalogue.
    app.op("!admin remove es9out#1");
    browser.wait_until(&hint_reads("type navigator#1.rotation: 89 in chat"), SLOW, "the next route's hint").await;
    browser.wait_until(&row("doorway#1.threshold", false), SLOW, "a parameter no longer routed goes").await;
    app.op("!admin remove es9out#2");
    browser.wait_until(&hint_reads("type bridge#1.crossfade: 89 in chat"), SLOW, "the catalogue's first").await;
    browser.wait_until("return !document.getElementById('empty').hidden;", SLOW, "nothing routed, nothing shown").await;
    app.op("!admin es9out#1 → doorway#1.gain");
    browser.wait_until(&shows("doorway#1.gain", 10), SLOW, "a newly routed parameter appears").await;
    browser.wait_until(&hint_reads("type doorway#1.gain: 89 in chat"), SLOW, "and is the hint").await;
    browser.quit().await;
}
