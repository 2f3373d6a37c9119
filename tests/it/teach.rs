//! A chat that teaches itself, end to end: `!cv help`, `!cv list`, `!admin help` and the nearest-name
//! suggestions answered through the stand-in Twitch server (`fake_twitch`), the terminal and
//! `POST /api/chat`, a viewer's repeated question not answered twice, and the `/commands` page over
//! real HTTP with the live routes marked.

use cvbot::coord::{Answer, Done, Outcome};
use serde_json::json;

use crate::fake_twitch::{Channel, FakeTwitch, User};
use crate::helpers::{TOKEN, TestApp};

/// Starts a bot in `chan` with a token, plus `extra` variables (which win over the defaults).
async fn bot(chan: &Channel, extra: &[(&str, &str)]) -> TestApp {
    let vars = chan.vars();
    let mut pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(&pairs).await
}

/// The answer to `!cv list doorway` with doorway#1.threshold routed, as chat reads it.
const DOORWAY_LISTED: &str = "doorway (8 instances): threshold* gain background foreground, inputJack#1 to #16 \
                              — * routed: doorway#1.threshold";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_doorway_in_twitch_chat_names_its_parameters_with_the_routed_one_marked() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    // Without CHAT_REPLY_ERRORS too: the viewer asked.
    chan.say(&User::new("ann", 12_001, ""), "!cv list doorway");
    assert_eq!(chan.reply().await, format!("@ann {DOORWAY_LISTED}"));
    chan.say(&User::new("bob", 12_002, ""), "!cv list");
    let modules = chan.reply().await;
    assert!(modules.starts_with("@bob modules, routed first: doorway* angles arch"), "{modules}");
    chan.say(&User::new("cat", 12_003, ""), "!cv help");
    assert_eq!(
        chan.reply().await,
        "@cat type module#N.parameter: 0-127, like doorway#1.threshold: 89 (add `over 2s` to glide); \
         `!cv list` names the modules"
    );
    assert_eq!(app.stat("chat_questions").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_chat_reply_errors_a_misspelt_name_gets_the_nearest_right_one() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("CHAT_REPLY_ERRORS", "true"), ("RATE_LIMIT_MS", "0")]).await;
    chan.joined().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    let ann = User::new("ann", 12_101, "");
    for (line, reply) in [
        ("doorway#1.threshhold: 89", "@ann unknown parameter threshhold on doorway — did you mean threshold?"),
        ("doorwy#1.threshold: 89", "@ann unknown module doorwy — did you mean doorway?"),
        ("doorway#9.threshold: 89", "@ann doorway has 8 instances: #1 to #8"),
        ("doorway.threshold: 89", "@ann doorway has 8 instances: write doorway#1.threshold (#1 to #8)"),
        ("!cv list doorwy", "@ann unknown module doorwy — did you mean doorway?"),
    ] {
        chan.say(&ann, line);
        assert_eq!(chan.reply().await, reply, "{line}");
    }
    // The counters keep their labels: each of these was an unknown variable.
    assert_eq!(app.stat("invalid_unknown_variable").await, 5);
    // Ordinary chat that looks like a name is still chat, and nothing was set.
    chan.say(&ann, "lol.jk: hi");
    chan.say(&ann, "doorway#1.threshold: 300");
    assert_eq!(chan.reply().await, "@ann value must be a whole number from 0 to 127", "no reply to the chat line");
    assert_eq!(app.state().await["parameters"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_asking_the_same_question_again_within_30_seconds_is_answered_once() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    let ann = User::new("ann", 12_201, "");
    chan.say(&ann, "!cv help");
    assert!(chan.reply().await.starts_with("@ann type module#N.parameter: 0-127"));
    chan.say(&ann, "!cv help");
    chan.say(&ann, "!CV HELP again?");
    // Lines are read in order: once Bob's answer is out, Ann's repeats were read and not answered.
    chan.say(&User::new("bob", 12_202, ""), "!cv help");
    assert!(chan.reply().await.starts_with("@bob type module#N.parameter"), "Ann was not answered twice");
    // Another question from Ann is a new one.
    chan.say(&ann, "!cv list doorway");
    assert!(chan.reply().await.starts_with("@ann doorway (8 instances)"));
    assert_eq!(app.stat("questions_repeated").await, 2);
    assert_eq!(app.stat("chat_questions").await, 5, "every question is counted, answered or not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_help_is_answered_to_a_moderator_and_not_to_a_viewer() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    chan.say(&User::new("rando", 12_301, ""), "!admin help");
    chan.say(&User::new("modperson", 12_302, "moderator/1"), "!admin help");
    let reply = chan.reply().await;
    assert!(reply.starts_with("@modperson admin commands, each after !admin: OUTPUT → VARIABLE"), "{reply}");
    for command in
        ["clear", "overlay on|off", "emergency stop [msg]", "mode democracy 10s", "scene save", "lock|unlock"]
    {
        assert!(reply.contains(command), "{command} in {reply}");
    }
    assert_eq!(app.stat("denied_not_admin").await, 1, "the viewer was refused, silently without CHAT_REPLY_ERRORS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_list_are_answered_at_the_terminal_and_through_the_chat_api() {
    let app = TestApp::spawn_admin().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    // The terminal's operator asks as often as they like: no repeat is held back there.
    for _ in 0..2 {
        let Outcome::Done(done) = app.op("!cv list doorway") else { panic!("the terminal's question is answered") };
        assert!(matches!(done, Done::Answer(Answer::Lesson(_))), "{done:?}");
        assert_eq!(cvbot::chat::reply::done(&done).as_deref(), Some(DOORWAY_LISTED));
    }
    let client = reqwest::Client::new();
    let chat = |text: &str| {
        client.post(app.url("/api/chat")).bearer_auth(TOKEN).json(&json!({"user": "ann", "text": text})).send()
    };
    let answer: serde_json::Value = chat("!cv list doorway").await.expect("POST").json().await.expect("json");
    assert_eq!(answer, json!({"applied": true, "reply": DOORWAY_LISTED}));
    let answer: serde_json::Value = chat("doorway#1.threshhold: 5").await.expect("POST").json().await.expect("json");
    let refused =
        json!({"applied": false, "refused": "unknown parameter threshhold on doorway — did you mean threshold?"});
    assert_eq!(answer, refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_page_over_http_lists_every_module_and_marks_the_routed_parameter() {
    let app = TestApp::spawn().await;
    let page = |app: &TestApp| {
        let url = app.url("/commands");
        async move {
            let response = reqwest::get(url).await.expect("GET /commands");
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            assert!(headers["content-type"].to_str().is_ok_and(|t| t.starts_with("text/html")));
            assert!(headers.contains_key("content-security-policy"), "the pages' policy");
            response.text().await.expect("html")
        }
    };
    let before = page(&app).await;
    assert!(before.contains("Nothing is routed right now"), "{before}");
    assert!(!before.contains("<strong class=\"routed\">threshold</strong>"));

    app.op("!admin es9out#3 → doorway#1.threshold");
    let html = page(&app).await;
    let doorway = html.lines().find(|l| l.contains("<th scope=\"row\">doorway</th>")).expect("a doorway row");
    assert!(doorway.contains("<td>#1 to #8</td>"), "{doorway}");
    assert!(doorway.contains("<strong class=\"routed\">threshold</strong> gain background"), "{doorway}");
    assert!(html.contains("<li><code>doorway#1.threshold</code> on es9out#3</li>"), "{html}");
    assert!(html.contains("doorway#1.threshold: 89 over 2s"), "a ramp, with the routed parameter as the example");
    for module in ["arch", "bridge", "navigator", "switcher"] {
        assert!(html.contains(&format!("<th scope=\"row\">{module}</th>")), "{module}");
    }
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script") && !lower.contains(" style="), "nothing the policy blocks");
}
