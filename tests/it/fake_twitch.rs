//! A local IRC server that speaks Twitch's dialect, for the Twitch tests: the handshake (CAP REQ, PASS,
//! NICK, welcome numerics), JOIN with USERSTATE/ROOMSTATE, PING/PONG, RECONNECT, and PRIVMSG lines in
//! the exact format Twitch sends (tags, badges, emotes, escapes).
//!
//! One server per test process, on its own thread and runtime: the bot's `TWITCH_IRC_ADDR` is
//! process-wide (twitch-irc connects without arguments), so every test's bot talks to this server and
//! each test gets its own channel. Lines the bot sends into a channel (JOIN, PRIVMSG, PART) are
//! forwarded to that test's [`Channel`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::helpers::ARRIVAL;

/// What the server writes to one connection: text (one or more CRLF-terminated lines) or a close.
type Out = Option<String>;

#[derive(Clone)]
struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

struct ChannelState {
    /// Lines the bot sent into this channel, to the test.
    to_test: mpsc::UnboundedSender<String>,
    /// Connections joined to the channel.
    conns: Vec<Conn>,
    /// The bot's badges in this channel, as USERSTATE reports them.
    bot_badges: String,
}

type Channels = Arc<Mutex<HashMap<String, ChannelState>>>;

pub struct FakeTwitch {
    pub addr: SocketAddr,
    channels: Channels,
}

static SHARED: OnceLock<FakeTwitch> = OnceLock::new();
/// The server refuses this token as Twitch refuses a revoked one.
pub const BAD_TOKEN: &str = "oauth:revoked-token";
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl FakeTwitch {
    /// The process's server, started on first use.
    pub fn shared() -> &'static FakeTwitch {
        SHARED.get_or_init(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake Twitch");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let channels = Channels::default();
            let served = channels.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(accept(listener, served));
            });
            FakeTwitch { addr, channels }
        })
    }

    /// A fresh channel; the bot's USERSTATE there carries `bot_badges` (e.g. `moderator/1` or empty).
    pub fn channel(bot_badges: &str) -> Channel {
        let server = Self::shared();
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("show{n}");
        let (to_test, from_server) = mpsc::unbounded_channel();
        let state = ChannelState { to_test, conns: Vec::new(), bot_badges: bot_badges.to_owned() };
        server.channels.lock().expect("lock").insert(name.clone(), state);
        Channel { name, room_id: format!("{}", 70_000_000 + n), server, from_server, next_msg: 0 }
    }
}

/// A chatter: login, numeric id, badges and any extra tags (`;vip=1`).
#[derive(Clone, Debug)]
pub struct User {
    pub login: String,
    pub display: String,
    pub id: String,
    pub badges: String,
    pub extra: String,
}

impl User {
    pub fn new(login: &str, id: u32, badges: &str) -> User {
        User {
            login: login.to_owned(),
            display: login.to_owned(),
            id: id.to_string(),
            badges: badges.to_owned(),
            extra: String::new(),
        }
    }
}

/// One test's channel on the shared server.
pub struct Channel {
    pub name: String,
    pub room_id: String,
    server: &'static FakeTwitch,
    from_server: mpsc::UnboundedReceiver<String>,
    next_msg: u64,
}

impl Channel {
    /// Environment for a bot in this channel with a token (so it replies).
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("TWITCH_IRC_ADDR".into(), self.server.addr.to_string()),
            ("TWITCH_CHANNELS".into(), format!("#{}", self.name)),
            ("TWITCH_USERNAME".into(), "CvBot".into()),
            ("TWITCH_OAUTH_TOKEN".into(), "oauth:not-a-real-token".into()),
        ]
    }

    /// The broadcaster of this channel: user id equal to the room id.
    pub fn broadcaster(&self, badges: &str) -> User {
        User { id: self.room_id.clone(), ..User::new(&self.name, 0, badges) }
    }

    /// A PRIVMSG from `user` with a fresh message id, in Twitch's format.
    pub fn privmsg(&mut self, user: &User, text: &str) -> String {
        self.next_msg += 1;
        let id = format!("{}-{:04}-4000-8000-{:012}", self.name, self.next_msg % 10_000, self.next_msg);
        self.privmsg_with_id(user, &id, text)
    }

    pub fn privmsg_with_id(&self, user: &User, id: &str, text: &str) -> String {
        let m = u8::from(user.badges.contains("moderator/"));
        let sub = u8::from(user.badges.contains("subscriber/"));
        let user_type = if m == 1 { "mod" } else { "" };
        let emotes = text.find("Kappa").map(|at| format!("25:{at}-{}", at + 4)).unwrap_or_default();
        let badge_info = if sub == 1 { "subscriber/12" } else { "" };
        format!(
            "@badge-info={badge_info};badges={badges};client-nonce=5f0e;color=#1E90FF;display-name={display};emotes={emotes};first-msg=0;flags=;id={id};mod={m};returning-chatter=0;room-id={room};subscriber={sub};tmi-sent-ts=1700000000000;turbo=0;user-id={uid};user-type={user_type}{extra} :{login}!{login}@{login}.tmi.twitch.tv PRIVMSG #{chan} :{text}",
            badges = user.badges,
            display = user.display,
            room = self.room_id,
            uid = user.id,
            extra = user.extra,
            login = user.login,
            chan = self.name,
        )
    }

    /// Sends raw lines to every connection joined to this channel, in one write.
    pub fn send_lines(&self, lines: &[String]) {
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        let mut channels = self.server.channels.lock().expect("lock");
        let state = channels.get_mut(&self.name).expect("registered");
        assert!(!state.conns.is_empty(), "nobody joined #{}", self.name);
        state.conns.retain(|c| c.tx.send(Some(text.clone())).is_ok());
    }

    /// Sends a PRIVMSG from `user` with a fresh message id.
    pub fn say(&mut self, user: &User, text: &str) {
        let line = self.privmsg(user, text);
        self.send(line);
    }

    pub fn send(&self, line: String) {
        self.send_lines(&[line]);
    }

    /// Tells the joined connections to reconnect, as Twitch does before a server restart, and closes them.
    pub fn reconnect(&self) {
        self.close_connections(Some(":tmi.twitch.tv RECONNECT\r\n"));
    }

    /// Pings the joined connections, as Twitch does every few minutes; their PONG comes back here.
    pub fn ping(&self) {
        self.send_lines(&["PING :tmi.twitch.tv".to_owned()]);
    }

    /// Closes the joined connections without a word, as a network failure does.
    pub fn cut_connections(&self) {
        self.close_connections(None);
    }

    fn close_connections(&self, last_words: Option<&str>) {
        let mut channels = self.server.channels.lock().expect("lock");
        let state = channels.get_mut(&self.name).expect("registered");
        for conn in state.conns.drain(..) {
            if let Some(text) = last_words {
                let _ = conn.tx.send(Some(text.to_owned()));
            }
            let _ = conn.tx.send(None);
        }
    }

    /// The next line the bot sent into this channel; fails the test after [`ARRIVAL`].
    pub async fn next_line(&mut self) -> String {
        self.try_next_line(ARRIVAL).await.unwrap_or_else(|| panic!("no line from the bot in #{}", self.name))
    }

    pub async fn try_next_line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.from_server.recv()).await.ok().flatten()
    }

    /// Skips lines until one starts with `prefix`.
    pub async fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next_line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Waits for the bot's JOIN; returns it with the connection's login (`JOIN #c nick=… pass=…`).
    pub async fn joined(&mut self) -> String {
        let prefix = format!("JOIN #{}", self.name);
        self.wait_for(&prefix).await
    }

    /// The text of the next PRIVMSG the bot sent here.
    pub async fn reply(&mut self) -> String {
        let prefix = format!("PRIVMSG #{} :", self.name);
        let line = self.wait_for(&prefix).await;
        line[prefix.len()..].to_owned()
    }

    /// The texts of the next `n` PRIVMSGs the bot sends here (each within [`ARRIVAL`]).
    pub async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.reply().await);
        }
        out
    }

    /// The PRIVMSG texts the bot sends here before `marker` (a reply the test asked for last).
    pub async fn replies_before(&mut self, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let text = self.reply().await;
            if text == marker {
                return out;
            }
            out.push(text);
        }
    }

    /// Every line the bot sends here until it answers a PING sent now: what it said so far.
    pub async fn lines_until_pong(&mut self) -> Vec<String> {
        self.ping();
        let mut out = Vec::new();
        loop {
            let line = self.next_line().await;
            if line.starts_with("PONG") {
                return out;
            }
            out.push(line);
        }
    }

    /// PRIVMSG texts the bot sends until it is quiet for `quiet`.
    pub async fn replies_until_quiet(&mut self, quiet: Duration) -> Vec<String> {
        let prefix = format!("PRIVMSG #{} :", self.name);
        let mut out = Vec::new();
        while let Some(line) = self.try_next_line(quiet).await {
            if let Some(text) = line.strip_prefix(&prefix) {
                out.push(text.to_owned());
            }
        }
        out
    }
}

async fn accept(listener: std::net::TcpListener, channels: Channels) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, channels.clone()));
        }
    }
}

/// One client connection: the Twitch handshake and routing of channel lines.
async fn serve(stream: TcpStream, channels: Channels) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    tokio::spawn(async move {
        while let Some(Some(text)) = rx.recv().await {
            if write.write_all(text.as_bytes()).await.is_err() {
                break;
            }
        }
        // Dropping the write half closes our side of the connection.
    });
    let conn = Conn { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), tx: tx.clone() };
    let say = |text: String| {
        let _ = tx.send(Some(text + "\r\n"));
    };
    let mut nick = String::new();
    let mut had_pass = false;
    let mut bad_token = false;
    // Channels this connection joined, where its PONGs are reported.
    let mut joined: Vec<String> = Vec::new();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(raw)) = lines.next_line().await {
        // Clients may tag their messages (e.g. reply-parent-msg-id); routing ignores tags.
        let line = match raw.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest).to_owned(),
            None => raw.clone(),
        };
        let (command, args) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "CAP" => say(format!(":tmi.twitch.tv CAP * ACK {}", args.trim_start_matches("REQ "))),
            "PASS" => {
                had_pass = args.starts_with("oauth:");
                bad_token = args.trim() == BAD_TOKEN;
            }
            "NICK" if bad_token => {
                // What Twitch does with a revoked or mistyped token.
                say(":tmi.twitch.tv NOTICE * :Login authentication failed".into());
                let _ = tx.send(None);
                break;
            }
            "NICK" => {
                nick = args.trim().to_ascii_lowercase();
                for (code, text) in [
                    ("001", ":Welcome, GLHF!"),
                    ("002", ":Your host is tmi.twitch.tv"),
                    ("003", ":This server is rather new"),
                    ("004", ":-"),
                    ("375", ":-"),
                    ("372", ":You are in a maze of twisty passages, all alike."),
                    ("376", ":>"),
                ] {
                    say(format!(":tmi.twitch.tv {code} {nick} {text}"));
                }
            }
            "PING" => say(format!(":tmi.twitch.tv PONG tmi.twitch.tv {args}")),
            "JOIN" => {
                let name = args.trim().trim_start_matches('#').to_owned();
                let mut map = channels.lock().expect("lock");
                let Some(state) = map.get_mut(&name) else { continue };
                state.conns.push(conn.clone());
                say(format!(":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{name}"));
                say(format!(":{nick}.tmi.twitch.tv 353 {nick} = #{name} :{nick}"));
                say(format!(":{nick}.tmi.twitch.tv 366 {nick} #{name} :End of /NAMES list"));
                let m = u8::from(state.bot_badges.contains("moderator/"));
                say(format!(
                    "@badge-info=;badges={};color=;display-name={nick};emote-sets=0;mod={m};subscriber=0;user-type= :tmi.twitch.tv USERSTATE #{name}",
                    state.bot_badges
                ));
                say(format!(
                    "@emote-only=0;followers-only=-1;r9k=0;room-id=1;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #{name}"
                ));
                let _ = state.to_test.send(format!("JOIN #{name} nick={nick} pass={had_pass}"));
                joined.push(name);
            }
            "PONG" => {
                let map = channels.lock().expect("lock");
                for name in &joined {
                    if let Some(state) = map.get(name) {
                        let _ = state.to_test.send(line.clone());
                    }
                }
            }
            "PRIVMSG" | "PART" => {
                let name = args.split_whitespace().next().unwrap_or("").trim_start_matches('#').to_owned();
                let map = channels.lock().expect("lock");
                if let Some(state) = map.get(&name) {
                    let _ = state.to_test.send(line.clone());
                }
            }
            _ => {}
        }
    }
    // The client went away: forget this connection everywhere.
    for state in channels.lock().expect("lock").values_mut() {
        state.conns.retain(|c| c.id != conn.id);
    }
}
