//! Show control on the pages, in the same headless Chromium: in democracy the overlay shows each
//! parameter's votes, median and a time left that counts down by the server's clock (the
//! browser's is a minute ahead), then the window's result; locked parameters carry a lock mark;
//! the admin page sets the mode, lists a saved scene and recalls it, and locks and unlocks.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::browser::Browser;
use super::motion::CLOCK_AHEAD;
use super::{FAKE_VIDEO, LIVE, SLOW, VISIBLE_WITHIN, shows, wait_for_state};
use crate::helpers::{TOKEN, TestApp};

/// An admin write over HTTP, as the admin page makes it; the answer's JSON when it succeeded.
async fn admin(app: &TestApp, method: Method, path: &str, body: &Value) -> Value {
    let response =
        reqwest::Client::new().request(method, app.url(path)).bearer_auth(TOKEN).json(body).send().await.expect(path);
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("json")
}

/// A viewer's vote through `POST /api/chat`.
async fn vote(app: &TestApp, user: &str, value: u8) {
    let body = json!({"user": user, "text": format!("doorway#1.threshold: {value}")});
    let answer = admin(app, Method::POST, "/api/chat", &body).await;
    assert_eq!(answer["applied"], true, "{user}'s vote is counted: {answer}");
}

/// The vote row of `variable`, as the page shows it: `[count, median, time left]`, or null.
fn vote_row(variable: &str) -> String {
    format!(
        "const row = document.querySelector('#votes [data-vote=\"{variable}\"]'); \
         return row === null ? null : ['.count', '.median', '.left'].map(c => row.querySelector(c).textContent);"
    )
}

/// True when the rows of `locked` carry a lock mark and the rows of `free` do not.
fn locks_shown(locked: &[&str], free: &[&str]) -> String {
    let list = |names: &[&str]| serde_json::to_string(names).expect("json");
    format!(
        "const marked = v => {{ const row = document.querySelector('[data-variable=\"' + v + '\"]'); \
           return row !== null && row.classList.contains('locked') && row.querySelector('.name .lock') !== null; }}; \
         const free = v => {{ const row = document.querySelector('[data-variable=\"' + v + '\"]'); \
           return row !== null && !row.classList.contains('locked') && row.querySelector('.lock') === null; }}; \
         return {}.every(marked) && {}.every(free);",
        list(locked),
        list(free)
    )
}

/// Seconds in a time left such as `7s`.
fn seconds(left: &Value) -> u64 {
    left.as_str().and_then(|l| l.strip_suffix('s')).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{left}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_in_chromium_counts_democracys_votes_down_by_the_servers_clock_and_marks_locks() {
    let app = TestApp::spawn_admin().await;
    app.op("doorway#1.threshold: 10");
    app.op("doorway#1.gain: 5");
    let browser = Browser::start().await;
    browser.before_every_page(CLOCK_AHEAD).await;
    browser.goto(&app.url("/overlay")).await;
    browser.wait_until(LIVE, SLOW, "the overlay connects").await;
    browser.wait_until(&shows("doorway#1.threshold", 10), SLOW, "the value before the vote").await;
    assert_eq!(browser.eval("return document.getElementById('mode').hidden;").await, true, "no badge in anarchy");

    admin(&app, Method::POST, "/api/admin/mode", &json!({"mode": "democracy", "window_ms": 10_000})).await;
    let badge = "const b = document.getElementById('mode'); return !b.hidden && b.textContent === 'democracy 10s';";
    browser.wait_until(badge, VISIBLE_WITHIN, "the democracy badge").await;
    for (user, value) in [("ann", 20), ("bob", 30), ("cat", 90)] {
        vote(&app, user, value).await;
    }
    let counted = format!(
        "const v = (() => {{ {} }})(); return v !== null && v[0] === '3 votes';",
        vote_row("doorway#1.threshold")
    );
    browser.wait_until(&counted, VISIBLE_WITHIN, "three votes on the overlay").await;
    let row = browser.eval(&vote_row("doorway#1.threshold")).await;
    assert_eq!(row[1], "median 30", "{row}");
    let first = seconds(&row[2]);
    assert!((2..=10).contains(&first), "a time left within the 10 s window, not off by the browser's minute: {row}");
    browser.eval(FAKE_VIDEO).await;
    browser.screenshot("overlay-democracy.png").await;
    let counting = format!(
        "const v = (() => {{ {} }})(); return v !== null && /^[0-9]+s$/.test(v[2]) && parseInt(v[2]) < {first};",
        vote_row("doorway#1.threshold")
    );
    browser.wait_until(&counting, SLOW, "the time left counts down").await;

    // The window closes: its row goes, and the median is the value.
    let closed = format!("return (() => {{ {} }})() === null;", vote_row("doorway#1.threshold"));
    browser.wait_until(&closed, SLOW, "the vote leaves when its window closes").await;
    browser.wait_until(&shows("doorway#1.threshold", 30), SLOW, "the median applied").await;
    assert_eq!(app.state().await["parameters"]["doorway#1.threshold"]["value"], 30);

    admin(&app, Method::POST, "/api/locks", &json!({"target": "doorway#1.gain"})).await;
    let gain_only = locks_shown(&["doorway#1.gain"], &["doorway#1.threshold"]);
    browser.wait_until(&gain_only, VISIBLE_WITHIN, "the locked parameter's mark").await;
    admin(&app, Method::POST, "/api/locks", &json!({"target": "doorway#1"})).await;
    let both = locks_shown(&["doorway#1.gain", "doorway#1.threshold"], &[]);
    browser.wait_until(&both, VISIBLE_WITHIN, "a module lock marks each of its parameters").await;
    browser.screenshot("overlay-locks.png").await;
    admin(&app, Method::DELETE, "/api/locks/all", &json!({})).await;
    let none = locks_shown(&[], &["doorway#1.gain", "doorway#1.threshold"]);
    browser.wait_until(&none, VISIBLE_WITHIN, "unlocked: no marks").await;

    admin(&app, Method::POST, "/api/admin/mode", &json!({"mode": "anarchy"})).await;
    browser.wait_until("return document.getElementById('mode').hidden;", VISIBLE_WITHIN, "the badge goes").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_chromium_sets_the_mode_saves_lists_and_recalls_a_scene_and_locks() {
    let app = TestApp::spawn_admin().await;
    app.op("doorway#1.threshold: 30");
    app.op("doorway#1.gain: 7");
    let browser = Browser::start().await;
    browser.goto(&app.url("/admin")).await;
    browser.log_in(TOKEN).await;

    browser.eval("document.getElementById('mode-select').value = 'democracy'; return true;").await;
    browser.type_into("#mode-window", "5").await;
    browser.click("#mode-btn").await;
    wait_for_state(&app, "democracy 5 s", |s| s["mode"]["mode"] == "democracy" && s["mode"]["window_ms"] == 5000).await;
    let now = "return document.getElementById('mode-now').textContent === 'now: democracy 5 s';";
    browser.wait_until(now, SLOW, "the page shows the mode").await;
    browser.eval("document.getElementById('mode-select').value = 'anarchy'; return true;").await;
    browser.click("#mode-btn").await;
    wait_for_state(&app, "anarchy", |s| s["mode"]["mode"] == "anarchy").await;

    browser.type_into("#scene-name", "intro").await;
    browser.click("#scene-save-btn").await;
    wait_for_state(&app, "the scene saved", |s| s["scenes"] == json!({"intro": 2})).await;
    let listed = "const row = document.querySelector('#scenes tr[data-scene=\"intro\"]'); \
                  return row !== null && [...row.cells].slice(0, 2).map(td => td.textContent).join('|') === 'intro|2';";
    browser.wait_until(listed, SLOW, "the scene listed with its value count").await;

    app.op("doorway#1.threshold: 99");
    wait_for_state(&app, "the value changed", |s| s["parameters"]["doorway#1.threshold"]["value"] == 99).await;
    browser.click("#scenes tr[data-scene=\"intro\"] button.recall").await;
    wait_for_state(&app, "the scene recalled", |s| s["parameters"]["doorway#1.threshold"]["value"] == 30).await;
    let said = "return document.getElementById('show-msg').textContent === 'recalled scene intro (2 values)';";
    browser.wait_until(said, SLOW, "the page says what the recall did").await;

    browser.type_into("#lock-target", "doorway#1.threshold").await;
    browser.click("#lock-btn").await;
    wait_for_state(&app, "locked", |s| s["locks"] == json!(["doorway#1.threshold"])).await;
    browser.type_into("#lock-target", "nosuch#1").await;
    browser.click("#lock-btn").await;
    let refused = "const m = document.getElementById('show-msg'); \
                   return m.classList.contains('error') && m.textContent.startsWith('unknown lock target');";
    browser.wait_until(refused, SLOW, "an unknown target is refused, saying why").await;
    let lock_row =
        "return document.querySelector('#locks tr[data-lock=\"doorway#1.threshold\"] button.unlock') !== null;";
    browser.wait_until(lock_row, SLOW, "the lock listed").await;
    let history = "return [...document.querySelectorAll('#history tr')].some(tr => tr.textContent.includes('action=scene_save'));";
    browser.wait_until(history, SLOW, "the show's actions among the recent events").await;
    browser.screenshot("admin-show.png").await;
    browser.click("#locks tr[data-lock=\"doorway#1.threshold\"] button.unlock").await;
    wait_for_state(&app, "unlocked", |s| s.get("locks").is_none()).await;

    browser.eval("window.confirm = () => true; return true;").await;
    browser.click("#scenes tr[data-scene=\"intro\"] button.delete").await;
    wait_for_state(&app, "the scene deleted", |s| s.get("scenes").is_none()).await;
    browser.wait_until("return document.querySelectorAll('#scenes tr').length === 0;", SLOW, "no scene listed").await;
    browser.quit().await;
}
