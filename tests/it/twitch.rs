//! Twitch chat end to end: the real bot connects to a local IRC server speaking Twitch's dialect
//! (`fake_twitch`), chat lines in Twitch's exact format go in, OSC comes out on a real UDP socket, and
//! the bot's replies are counted where Twitch would receive them.

use std::time::{Duration, Instant};

use cvbot::twitch::TwitchStatus;

use crate::fake_twitch::{BAD_TOKEN, Channel, FakeTwitch, User};
use crate::helpers::{ARRIVAL, SILENCE, TestApp, cv, eventually_some, poll, routing};

/// Starts a bot in `chan` with a token, plus `extra` variables (which win over the defaults).
async fn bot(chan: &Channel, extra: &[(&str, &str)]) -> TestApp {
    let vars = chan.vars();
    let mut pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(&pairs).await
}

async fn wait_status(app: &TestApp, want: TwitchStatus) {
    let mut rx = app.running.as_ref().expect("running").twitch_status.clone();
    tokio::time::timeout(ARRIVAL, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("Twitch status never became {want:?}"))
        .expect("status sender alive");
}

/// Waits (bounded) until the counter `name` reaches `at_least`; its value then (or at the deadline).
async fn wait_stat(app: &TestApp, name: &str, at_least: u64, within: Duration) -> u64 {
    let reached = poll(within, || async {
        let n = app.stat(name).await;
        (n >= at_least).then_some(n)
    })
    .await;
    match reached {
        Some(n) => n,
        None => app.stat(name).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_commands_in_twitch_chat_move_the_routed_output() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("RATE_LIMIT_MS", "0")]).await;
    let join = chan.joined().await;
    assert!(join.ends_with("nick=cvbot pass=true"), "logged in with the token: {join}");
    wait_status(&app, TwitchStatus::Joined).await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.threshold"]));
    app.op("!admin es9out#2 → doorway#1.gain");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#2", "doorway#1.gain"]));

    // Escaped tag values, an emote and unicode around the command.
    let ann = User { display: "Ann\\s\\:)".into(), ..User::new("ann", 1001, "subscriber/12") };
    chan.say(&ann, "doorway#1.threshold: 89 Kappa 🔥 ñandú");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 89.0 / 127.0, "doorway", 1, "threshold", 89));

    // `/me doorway#1.threshold: 64` arrives as an ACTION and counts like plain text.
    chan.say(&User::new("bob", 1002, ""), "\u{1}ACTION doorway#1.threshold: 64\u{1}");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 64.0 / 127.0, "doorway", 1, "threshold", 64));

    // A message of Twitch's full 500 characters, mostly multi-byte.
    let head = "doorway#1.threshold: 100 ";
    let long = format!("{head}{}", "ü".repeat(500 - head.len()));
    assert_eq!(long.chars().count(), 500);
    chan.say(&User::new("cat", 1003, "vip/1"), &long);
    assert_eq!(app.osc.recv().await, cv("es9out#1", 100.0 / 127.0, "doorway", 1, "threshold", 100));

    // Ordinary chat is read and ignored: the next command's output is the next datagram.
    chan.say(&User::new("dan", 1004, ""), "hello chat, what a sound 🎶");
    chan.say(&User::new("eve", 1005, ""), "doorway#1.gain: 1");
    assert_eq!(app.osc.recv().await, cv("es9out#2", 1.0 / 127.0, "doorway", 1, "gain", 1));
    assert_eq!(wait_stat(&app, "chat_lines", 7, ARRIVAL).await, 7, "two operator lines and five from chat");
    let state = app.state().await;
    assert_eq!(state["parameters"]["doorway#1.threshold"]["user"], "cat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_run_the_show_from_chat_with_replies_and_viewers_cannot() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("ADMIN_USERS", "424242")]).await;
    chan.joined().await;

    let vip = User { extra: ";vip=1".into(), ..User::new("fancy", 2001, "vip/1,subscriber/12") };
    chan.say(&vip, "!admin es9out#1 → doorway#1.threshold");
    chan.say(&User::new("rando", 2002, ""), "!admin emergency stop");
    chan.say(&User::new("modperson", 2003, "moderator/1"), "!admin es9out#2 → doorway#1.gain");
    // Commands run in chat order, so the first OSC message is the moderator's route.
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#2", "doorway#1.gain"]));
    assert_eq!(chan.reply().await, "routed es9out#2 → doorway#1.gain");

    chan.say(&User::new("headmod", 2004, "lead_moderator/1"), "!admin routes");
    assert_eq!(chan.reply().await, "routes: es9out#2 → doorway#1.gain");
    // The broadcaster is recognised by user id = room id even without the badge.
    let streamer = chan.broadcaster("");
    chan.say(&streamer, "!admin overlay off");
    assert_eq!(chan.reply().await, "overlay off");
    // ADMIN_USERS may name a numeric Twitch id.
    chan.say(&User::new("renamed_friend", 424_242, ""), "!admin instances");
    assert_eq!(chan.reply().await, "1 instance(s) online: bot-001");
    // A moderator's typo gets a hint; viewers' refusals stay silent.
    chan.say(&User::new("modperson", 2003, "moderator/1"), "!admin es9out#99 → doorway#1.gain");
    assert_eq!(chan.reply().await, "@modperson unknown output");
    chan.say(&User::new("modperson", 2003, "moderator/1"), "!admin es9out#2 → doorway#1.gian");
    assert_eq!(chan.reply().await, "@modperson unknown parameter gian on doorway — did you mean gain?");
    // Replies go out in order: had a viewer been answered, it would come before this one.
    chan.say(&User::new("headmod", 2004, "lead_moderator/1"), "!admin routes");
    assert_eq!(chan.reply().await, "routes: es9out#2 → doorway#1.gain", "no reply to the viewers");

    let state = app.state().await;
    assert_eq!(state["emergency"]["active"], false);
    assert_eq!(state["overlay_enabled"], false);
    assert_eq!(state["routes"], serde_json::json!({"es9out#2": "doorway#1.gain"}));
    assert_eq!(app.stat("denied_not_admin").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_viewer_cooldown_applies_to_twitch_chat() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.osc.recv().await;
    chan.say(&User::new("ann", 3001, ""), "doorway#1.gain: 1");
    chan.say(&User::new("ann", 3001, ""), "doorway#1.gain: 2");
    chan.say(&User::new("bob", 3002, ""), "doorway#1.gain: 3");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 1.0 / 127.0, "doorway", 1, "gain", 1));
    assert_eq!(app.osc.recv().await, cv("es9out#1", 3.0 / 127.0, "doorway", 1, "gain", 3));
    // Bob's line came after Ann's second: that one was refused, not merely late.
    assert!(app.osc.drain().await.is_empty());
    assert_eq!(app.stat("denied_cooldown").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_is_applied_once() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("RATE_LIMIT_MS", "0")]).await;
    chan.joined().await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.osc.recv().await;
    let ann = User::new("ann", 4001, "");
    let bob = User::new("bob", 4002, "");
    let first = chan.privmsg_with_id(&ann, "5d2c1f4e-0000-4000-8000-00000000dup1", "doorway#1.gain: 10");
    chan.send(first.clone());
    assert_eq!(app.osc.recv().await, cv("es9out#1", 10.0 / 127.0, "doorway", 1, "gain", 10));
    chan.say(&bob, "doorway#1.gain: 20");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 20.0 / 127.0, "doorway", 1, "gain", 20));
    // The same message again, as a reconnect overlap delivers it: ignored.
    chan.send(first);
    chan.say(&bob, "doorway#1.gain: 30");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 30.0 / 127.0, "doorway", 1, "gain", 30));
    assert_eq!(app.stat("chat_duplicates").await, 1);
    assert_eq!(app.state().await["parameters"]["doorway#1.gain"]["value"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stay_within_20_per_30_seconds_for_an_ordinary_bot_account() {
    let mut chan = FakeTwitch::channel("");
    let _app = bot(&chan, &[]).await;
    chan.joined().await;
    let moderator = User::new("modperson", 5001, "moderator/1");
    let lines: Vec<String> = (0..25).map(|_| chan.privmsg(&moderator, "!admin routes")).collect();
    chan.send_lines(&lines);
    let replies = chan.replies(20).await;
    assert!(replies.iter().all(|r| r == "no routes"), "{replies:?}");
    // The 21st may go only 31 s after the first, when the throttle's real window has passed: no
    // event marks that it is held, so a short quiet spell is the proof (it would come at once).
    assert!(
        chan.replies_until_quiet(SILENCE).await.is_empty(),
        "Twitch allows an ordinary account 20 messages per 30 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_moderates_the_channel_may_say_more() {
    let mut chan = FakeTwitch::channel("moderator/1");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    wait_status(&app, TwitchStatus::Joined).await;
    let moderator = User::new("modperson", 6001, "moderator/1");
    let lines: Vec<String> = (0..30).map(|_| chan.privmsg(&moderator, "!admin routes")).collect();
    chan.send_lines(&lines);
    let replies = chan.replies(30).await;
    assert!(replies.iter().all(|r| r == "no routes"), "USERSTATE showed the bot as moderator: up to 100 per 30 s");
    // And no more than one reply each: the next reply is the one to the next command.
    chan.say(&moderator, "!admin overlay off");
    assert_eq!(chan.reply().await, "overlay off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_request_or_a_dropped_connection_the_bot_rejoins_and_commands_still_flow() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    wait_status(&app, TwitchStatus::Joined).await;
    app.op("!admin es9out#1 → doorway#1.gain");
    app.osc.recv().await;
    // Twitch's keep-alive: the bot answers PING with PONG, or Twitch would drop it.
    chan.ping();
    assert_eq!(chan.wait_for("PONG").await, "PONG tmi.twitch.tv");

    chan.reconnect();
    let again = chan.joined().await;
    assert!(again.ends_with("nick=cvbot pass=true"), "{again}");
    chan.say(&User::new("ann", 7001, ""), "doorway#1.gain: 77");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 77.0 / 127.0, "doorway", 1, "gain", 77));
    chan.say(&User::new("modperson", 7002, "moderator/1"), "!admin overlay off");
    assert_eq!(chan.reply().await, "overlay off", "replies flow on the new connection");
    wait_status(&app, TwitchStatus::Joined).await;

    // A connection that just drops (network trouble) is rejoined the same way.
    chan.cut_connections();
    chan.joined().await;
    chan.say(&User::new("bob", 7003, ""), "doorway#1.gain: 78");
    assert_eq!(app.osc.recv().await, cv("es9out#1", 78.0 / 127.0, "doorway", 1, "gain", 78));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_lines_is_consumed_without_losing_an_admin_command() {
    let mut chan = FakeTwitch::channel("moderator/1");
    let app = bot(&chan, &[]).await;
    chan.joined().await;
    let moderator = User::new("modperson", 8001, "moderator/1");
    let outputs: Vec<String> = (1..=8)
        .map(|i| format!("es9out#{i}"))
        .chain((1..=8).map(|i| format!("esx8cv#1.out#{i}")))
        .chain((1..=4).map(|i| format!("es5gate#{i}")))
        .collect();
    let mut lines = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let viewer = User::new(&format!("viewer{}", i % 500), 100_000 + (i % 500), "");
        let line = if i % 500 == 250 {
            let output = &outputs[i as usize / 500];
            chan.privmsg(&moderator, &format!("!admin {output} → doorway#1.gain"))
        } else if i % 3 == 0 {
            chan.privmsg(&viewer, &format!("doorway#1.threshold: {}", i % 128))
        } else {
            chan.privmsg(&viewer, "PogChamp what a patch, love the colours")
        };
        lines.push(line);
    }
    let started = Instant::now();
    chan.send_lines(&lines);
    // Every line is read, or shed at the socket if too many were in flight (never an admin's). The
    // shed count is process-wide, so other tests' floods may add to it: at least every line.
    let (read, shed) = eventually_some("every line read or shed", Duration::from_secs(30), || async {
        let (read, shed) = (app.stat("chat_lines").await, app.stat("chat_shed").await);
        (read + shed >= 10_000).then_some((read, shed))
    })
    .await;
    let took = started.elapsed();
    // Admin commands are queued, never dropped: all 20 routes arrive.
    eventually_some("every admin command in the burst applied", Duration::from_secs(10), || async {
        let routes = app.state().await["routes"].as_object().map_or(0, serde_json::Map::len);
        (routes == outputs.len()).then_some(())
    })
    .await;
    eprintln!("10,000 Twitch lines consumed in {took:?} ({shed} shed, {read} read)");
    let confirmations = chan.replies(outputs.len()).await;
    assert!(
        confirmations.iter().all(|c| c.starts_with("routed ")),
        "every admin command was confirmed: {confirmations:?}"
    );

    // The route list is longer than Twitch allows in one message: it comes in parts of at most 500
    // (and nothing else comes before the reply to the next command).
    chan.say(&moderator, "!admin routes");
    chan.say(&moderator, "!admin overlay off");
    let parts = chan.replies_before("overlay off").await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.chars().count() <= 500), "{parts:?}");
    let all = parts.join(" ");
    assert!(outputs.iter().all(|o| all.contains(&format!("{o} → doorway#1.gain"))), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_bot_reads_chat_anonymously_and_never_speaks() {
    let mut chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("TWITCH_OAUTH_TOKEN", ""), ("TWITCH_USERNAME", "")]).await;
    let join = chan.joined().await;
    assert!(join.contains("nick=justinfan") && join.ends_with("pass=false"), "{join}");
    chan.say(&User::new("modperson", 9001, "moderator/1"), "!admin es9out#3 → doorway#1.gain");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#3", "doorway#1.gain"]));
    chan.say(&User::new("modperson", 9001, "moderator/1"), "!admin routes");
    // Commands run in chat order: once the next one's output is out, `routes` has been answered (or not).
    chan.say(&User::new("modperson", 9001, "moderator/1"), "!admin es9out#4 → doorway#1.threshold");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#4", "doorway#1.threshold"]));
    let said: Vec<String> = chan.lines_until_pong().await.into_iter().filter(|l| l.starts_with("PRIVMSG")).collect();
    assert!(said.is_empty(), "read-only: nothing said in chat: {said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_chat_reply_errors_viewers_learn_why_nothing_happened() {
    let mut chan = FakeTwitch::channel("");
    let _app = bot(&chan, &[("CHAT_REPLY_ERRORS", "true")]).await;
    chan.joined().await;
    chan.say(&User::new("ann", 9101, ""), "doorway#1.gain: 300");
    assert_eq!(chan.reply().await, "@ann value must be a whole number from 0 to 127");
    chan.say(&User::new("rando", 9102, ""), "!admin clear");
    assert_eq!(chan.reply().await, "@rando admin commands need broadcaster, moderator or ADMIN_USERS");
    chan.say(&User::new("bob", 9103, ""), "just chatting");
    // Lines are read in order: the reply to the next bad command is the next reply.
    chan.say(&User::new("cat", 9104, ""), "doorway#1.gain: 999");
    assert_eq!(chan.reply().await, "@cat value must be a whole number from 0 to 127", "ordinary chat gets no reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_shows_as_login_failed_and_the_bot_keeps_serving() {
    let chan = FakeTwitch::channel("");
    let app = bot(&chan, &[("TWITCH_OAUTH_TOKEN", BAD_TOKEN)]).await;
    wait_status(&app, TwitchStatus::LoginFailed).await;
    // The rest of the bot is unaffected: the terminal operator still drives the outputs.
    app.op("!admin es9out#1 → doorway#1.gain");
    assert_eq!(app.osc.recv().await, routing(&["add", "es9out#1", "doorway#1.gain"]));
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
}

/// Commands this bot has finished with: applied, refused by the emergency stop or the gate, or
/// answered as unchanged. Every chat line of these tests is a command, so once every line read
/// (`chat_lines`) but the `!admin routes` answers counted in `answered` is in here, nothing is pending.
async fn settled(app: &TestApp, answered: u64) -> bool {
    let mut done = 0;
    for name in ["local_applied", "refused_emergency", "denied_cooldown", "denied_global_limit", "unchanged"] {
        done += app.stat(name).await;
    }
    done + answered == app.stat("chat_lines").await
}

/// Waits for the reply to an `!admin routes` (skipping the other replies), then until every command
/// read so far has run.
async fn barrier(app: &TestApp, chan: &mut Channel, answered: u64) {
    let prefix = format!("PRIVMSG #{} :", chan.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = chan.try_next_line(wait).await.expect("the reply to !admin routes");
        if line.strip_prefix(&prefix).is_some_and(|text| text.starts_with("routes:")) {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !settled(app, answered).await {
        assert!(Instant::now() < deadline, "commands read but never run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_in_the_middle_of_a_flood_takes_effect_and_stops_the_viewers_after_it() {
    let mut chan = FakeTwitch::channel("moderator/1");
    let app = bot(&chan, &[("RATE_LIMIT_MS", "0"), ("GLOBAL_RATE_LIMIT", "0")]).await;
    chan.joined().await;
    app.op("!admin es9out#1 → doorway#1.threshold");
    app.osc.recv().await;
    let moderator = User::new("stagemod", 8101, "moderator/1");
    let viewers: Vec<User> = (0..500).map(|i| User::new(&format!("crowd{i}"), 300_000 + i, "")).collect();
    // Viewers set 0–99 before the stop and 100–127 after it: no value of 100 or more may ever apply.
    let mut lines = Vec::with_capacity(6003);
    for i in 0..3000 {
        lines.push(chan.privmsg(&viewers[i % 500], &format!("doorway#1.threshold: {}", i % 100)));
    }
    lines.push(chan.privmsg(&moderator, "!admin es9out#2 → doorway#1.gain"));
    lines.push(chan.privmsg(&moderator, "!admin emergency stop"));
    for i in 0..3000 {
        lines.push(chan.privmsg(&viewers[i % 500], &format!("doorway#1.threshold: {}", 100 + i % 28)));
    }
    // Sent after the flood and never shed (a moderator's): when it is answered, the flood is read.
    lines.push(chan.privmsg(&moderator, "!admin routes"));
    chan.send_lines(&lines);
    barrier(&app, &mut chan, 1).await;

    let state = app.state().await;
    assert_eq!(state["emergency"]["active"], true, "the stop sent mid-flood took effect");
    assert_eq!(state["routes"]["es9out#2"], "doorway#1.gain", "the route sent mid-flood took effect");
    let value = state["parameters"]["doorway#1.threshold"]["value"].as_u64();
    assert!(value.is_none_or(|v| v < 100), "a viewer's line after the stop was applied: {value:?}");

    // And a viewer's line now, while stopped, is refused. The shedder's books are process-wide, so a
    // flood in another test may shed it: then it is sent again.
    let mut answered = 1;
    for attempt in 0.. {
        assert!(attempt < 50, "a viewer's line never got past the shedder");
        let (read, refused) = (app.stat("chat_lines").await, app.stat("refused_emergency").await);
        chan.say(&viewers[0], "doorway#1.threshold: 120");
        chan.say(&moderator, "!admin routes");
        answered += 1;
        barrier(&app, &mut chan, answered).await;
        if app.stat("chat_lines").await == read + 2 {
            assert_eq!(app.stat("refused_emergency").await, refused + 1, "refused while stopped");
            break;
        }
    }
    let value = app.state().await["parameters"]["doorway#1.threshold"]["value"].as_u64();
    assert!(value.is_none_or(|v| v < 100), "applied while stopped: {value:?}");
}
