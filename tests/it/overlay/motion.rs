//! Motion on the pages, in the same headless Chromium: a timed ramp from chat shows its target and a
//! bar that travels there frame by frame, placed by the server's clock though the browser's is a
//! minute ahead; a route's slew limit shows on the overlay, and the admin page sets it.

use serde_json::{Value, json};

use super::browser::Browser;
use super::{FAKE_VIDEO, LIVE, SLOW, VISIBLE_WITHIN, shows, wait_for_state};
use crate::helpers::{TOKEN, TestApp, eventually};
use cvbot::coord::Outcome;

/// The browser's clock a minute ahead of the server's: placed by the browser's clock alone, a
/// 2-second ramp would look over before the page first drew it.
pub(super) const CLOCK_AHEAD: &str = "const real = Date.now.bind(Date); Date.now = () => real() + 60000;";

/// Records, in the page, every progress the bar of `variable` is given, as `[ms since the page
/// loaded, percent, fill width in %]`: a frame-by-frame account no poll from outside could take.
fn record_progress(variable: &str) -> String {
    format!(
        "window.rampFrames = []; \
         new MutationObserver(records => {{ for (const r of records) {{ \
           const row = r.target.closest('.param'); \
           if (!row || row.dataset.variable !== '{variable}') continue; \
           window.rampFrames.push([performance.now(), Number(r.target.getAttribute('aria-valuenow')), \
                                   parseFloat(row.querySelector('.fill').style.width)]); \
         }} }}).observe(document.getElementById('modules'), {{subtree: true, attributeFilter: ['aria-valuenow']}}); \
         return true;"
    )
}

/// The fill's width, in percent of the bar, for a chat value.
fn width(value: f64) -> f64 {
    (value / 127.0 * 1000.0).round() / 10.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_in_chromium_shows_a_ramps_target_and_its_progress_to_the_end() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_MS", "0")]).await;
    assert!(matches!(app.op("!admin es9out#1 → doorway#1.threshold slew 2"), Outcome::Done(_)));
    assert!(matches!(app.viewer("ann", "doorway#1.threshold: 20"), Outcome::Done(_)));
    let browser = Browser::start().await;
    browser.before_every_page(CLOCK_AHEAD).await;
    browser.goto(&app.url("/overlay")).await;
    browser.wait_until(LIVE, SLOW, "the overlay connects").await;
    browser.wait_until(&shows("doorway#1.threshold", 20), SLOW, "the value before the ramp").await;
    let ahead = browser.eval("return Date.now() - (performance.timeOrigin + performance.now()) > 50000;").await;
    assert_eq!(ahead, true, "the page's clock is a minute ahead");
    let meta = "return document.querySelector('[data-variable=\"doorway#1.threshold\"] .meta').textContent;";
    let meta = browser.eval(meta).await;
    assert!(meta.as_str().is_some_and(|m| m.contains(" on es9out#1 · slew 2 V/s · by ann")), "{meta}");
    browser.eval(&record_progress("doorway#1.threshold")).await;

    assert!(matches!(app.viewer("ann", "doorway#1.threshold: 100 over 2s"), Outcome::Done(_)));
    let ramping = "const row = document.querySelector('[data-variable=\"doorway#1.threshold\"]'); \
                   return row.classList.contains('ramping') && row.querySelector('.num').textContent === '→ 100' \
                   && row.querySelector('.bar').getAttribute('role') === 'progressbar';";
    browser.wait_until(ramping, VISIBLE_WITHIN, "the target, and the bar on its way").await;
    browser.eval(FAKE_VIDEO).await;
    browser.screenshot("overlay-ramp.png").await;
    let latest = browser.eval("return document.getElementById('latest').textContent;").await;
    assert_eq!(latest, "ann: doorway#1.threshold → 100 over 2 s");
    let done = format!(
        "const row = document.querySelector('[data-variable=\"doorway#1.threshold\"]'); \
         return !row.classList.contains('ramping') && row.querySelector('.num').textContent === '100' \
         && row.querySelector('.bar').getAttribute('role') === null && row.querySelector('.tick') === null \
         && row.querySelector('.fill').style.width === '{}%';",
        width(100.0)
    );
    browser.wait_until(&done, SLOW, "the ramp's end: just the value again").await;

    let frames: Vec<[f64; 3]> =
        serde_json::from_value(browser.eval("return window.rampFrames;").await).expect("the recorded frames");
    assert!(frames.len() >= 3, "the bar moved frame by frame: {frames:?}");
    for pair in frames.windows(2) {
        assert!(pair[0][1] <= pair[1][1] && pair[0][2] <= pair[1][2], "progress only grows: {frames:?}");
    }
    assert!(frames.iter().any(|f| f[1] > 0.0 && f[1] < 100.0), "progress between start and end: {frames:?}");
    assert!(frames.iter().all(|f| (width(20.0)..=width(100.0)).contains(&f[2])), "from 20 to 100: {frames:?}");
    let (first, last) = (frames[0], frames[frames.len() - 1]);
    assert_eq!((last[1], last[2]), (100.0, width(100.0)), "the progress ends at 100%, the bar at the target");
    // Placed by the server's clock, the bar takes the ramp's time from where it was first drawn.
    let left_ms = (100.0 - first[1]) / 100.0 * 2000.0;
    assert!(last[0] - first[0] >= left_ms - 100.0, "{:.0} ms for {left_ms:.0}: {frames:?}", last[0] - first[0]);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_chromium_sets_a_routes_slew_and_lists_it() {
    let app = TestApp::spawn_admin().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/admin")).await;
    browser.log_in(TOKEN).await;
    let listed = "return document.querySelector('#route-output option[value=\"es9out#1\"]') !== null;";
    browser.wait_until(listed, SLOW, "the catalogue's outputs").await;
    browser.eval("document.getElementById('route-output').value = 'es9out#1'; return true;").await;
    browser.type_into("#route-variable", "doorway#1.threshold").await;

    browser.type_into("#route-slew", "5000").await;
    browser.click("#route-btn").await;
    let refused = "const m = document.getElementById('route-msg'); \
                   return m.classList.contains('error') && m.textContent.includes('slew rate');";
    browser.wait_until(refused, SLOW, "a slew beyond 1000 V/s is refused, and the page says why").await;
    assert_eq!(app.state().await["routes"], json!({}), "the refused route changed nothing");

    browser.type_into("#route-slew", "2").await;
    browser.click("#route-btn").await;
    let route = || async { app.get_json("/api/routes/es9out%231").await };
    eventually("the route with its slew", SLOW, || async { route().await["slew"] == 2.0 }).await;
    assert_eq!(route().await["variable"], "doorway#1.threshold");
    let row = |slew: &str| {
        format!(
            "return [...document.querySelectorAll('#routes tr')].some(tr => \
             [...tr.cells].slice(0, 3).map(td => td.textContent).join('|') === 'es9out#1|doorway#1.threshold|{slew}');"
        )
    };
    browser.wait_until(&row("2 V/s"), SLOW, "the routes list shows the slew").await;

    // An empty field is no limit.
    browser.eval("document.getElementById('route-slew').value = ''; return true;").await;
    browser.click("#route-btn").await;
    wait_for_state(&app, "the slew removed", |s: &Value| {
        s.get("slew").is_none() && s["routes"]["es9out#1"] == "doorway#1.threshold"
    })
    .await;
    assert_eq!(route().await["slew"], 0.0);
    browser.wait_until(&row("—"), SLOW, "the routes list shows no slew").await;
    browser.quit().await;
}
