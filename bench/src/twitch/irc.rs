//! A minimal IRC server speaking as much of Twitch's dialect as twitch-irc needs, on a runtime of
//! its own thread, and the PRIVMSG lines it writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use std::time::Duration;

use anyhow::Context as _;

use super::{CHANNEL, Line, ROOM_ID, Sent};
use crate::{Pacer, Side};

/// Someone in chat, with the tags Twitch vouches for.
pub(super) struct Chatter {
    login: String,
    id: String,
    badges: &'static str,
}

impl Chatter {
    pub(super) fn viewer(i: usize) -> Chatter {
        Chatter { login: format!("viewer{i}"), id: (100_000 + i).to_string(), badges: "" }
    }

    /// The channel's owner: the badge, and a user id equal to the room id.
    pub(super) fn broadcaster() -> Chatter {
        Chatter { login: CHANNEL.to_owned(), id: ROOM_ID.to_owned(), badges: "broadcaster/1" }
    }
}

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

/// A PRIVMSG in Twitch's format, with a fresh message id.
pub(super) fn privmsg(from: &Chatter, text: &str) -> String {
    let n = NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed);
    format!(
        "@badge-info=;badges={badges};color=#1E90FF;display-name={login};emotes=;first-msg=0;flags=;\
         id=b3nc0000-0000-4000-8000-{n:012};mod=0;returning-chatter=0;room-id={ROOM_ID};subscriber=0;\
         tmi-sent-ts=1700000000000;turbo=0;user-id={id};user-type= :{login}!{login}@{login}.tmi.twitch.tv \
         PRIVMSG #{CHANNEL} :{text}",
        badges = from.badges,
        login = from.login,
        id = from.id,
    )
}

/// The write half of the connection that joined the channel.
pub(super) type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

/// The IRC server, on a runtime of its own thread.
pub(super) struct Server {
    pub(super) addr: SocketAddr,
    pub(super) side: Side,
    /// The connection that last joined the channel.
    joined: watch::Receiver<Option<Writer>>,
}

impl Server {
    pub(super) fn start() -> anyhow::Result<Server> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let side = Side::start("twitch-irc")?;
        let (joined_tx, joined) = watch::channel(None);
        let joined_tx = Arc::new(joined_tx);
        side.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, joined_tx.clone()));
            }
        });
        Ok(Server { addr, side, joined })
    }

    /// The joined connection's writer, once the bot has joined.
    pub(super) async fn joined(&self, within: Duration) -> anyhow::Result<Writer> {
        let mut joined = self.joined.clone();
        let writer = tokio::time::timeout(within, joined.wait_for(Option::is_some))
            .await
            .with_context(|| format!("the bot did not join #{CHANNEL} within {within:?}"))??;
        writer.clone().context("joined")
    }

    /// Writes `lines` one at a time at `rate`, each marked in `sent` as it goes onto the socket, from
    /// a task on the server's runtime.
    pub(super) async fn paced(
        &self,
        writer: &Writer,
        lines: Vec<Line>,
        rate: u32,
        sent: Arc<Sent>,
    ) -> anyhow::Result<()> {
        let writer = writer.clone();
        self.side
            .spawn(async move {
                let mut pacer = Pacer::new(rate);
                let mut bytes = Vec::with_capacity(1024);
                for line in lines {
                    pacer.wait().await;
                    bytes.clear();
                    bytes.extend_from_slice(line.text.as_bytes());
                    bytes.extend_from_slice(b"\r\n");
                    // Locked per line, so the connection's PONGs are never held up for a phase.
                    let mut socket = writer.lock().await;
                    sent.mark(&line.mark);
                    socket.write_all(&bytes).await?;
                }
                anyhow::Ok(())
            })
            .await?
    }

    /// Writes `first`, then `admin` (marked as it goes onto the socket), then `second`.
    pub(super) async fn burst(
        &self,
        writer: &Writer,
        first: String,
        admin: Line,
        second: String,
        sent: Arc<Sent>,
    ) -> anyhow::Result<()> {
        let writer = writer.clone();
        self.side
            .spawn(async move {
                let mut socket = writer.lock().await;
                socket.write_all(first.as_bytes()).await?;
                sent.mark(&admin.mark);
                socket.write_all(format!("{}\r\n", admin.text).as_bytes()).await?;
                socket.write_all(second.as_bytes()).await?;
                anyhow::Ok(())
            })
            .await?
    }
}

/// One client connection: the handshake, PING/PONG, and the JOIN that makes it the one written to.
async fn serve(stream: TcpStream, joined: Arc<watch::Sender<Option<Writer>>>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
    let mut nick = String::new();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(raw)) = lines.next_line().await {
        // Clients may tag their lines (a reply's parent id); only the command matters here.
        let line = match raw.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
            None => raw.as_str(),
        };
        let (command, args) = line.split_once(' ').unwrap_or((line, ""));
        let mut join = false;
        let answer: Vec<String> = match command {
            "CAP" => vec![format!(":tmi.twitch.tv CAP * ACK {}", args.trim_start_matches("REQ "))],
            "NICK" => {
                nick = args.trim().to_ascii_lowercase();
                ["001 {n} :Welcome, GLHF!", "002 {n} :Your host is tmi.twitch.tv", "003 {n} :-", "004 {n} :-"]
                    .into_iter()
                    .chain(["375 {n} :-", "372 {n} :-", "376 {n} :>"])
                    .map(|l| format!(":tmi.twitch.tv {}", l.replace("{n}", &nick)))
                    .collect()
            }
            "PING" => vec![format!(":tmi.twitch.tv PONG tmi.twitch.tv {args}")],
            "JOIN" if args.trim() == format!("#{CHANNEL}") => {
                join = true;
                vec![
                    format!(":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #{CHANNEL}"),
                    format!(":{nick}.tmi.twitch.tv 353 {nick} = #{CHANNEL} :{nick}"),
                    format!(":{nick}.tmi.twitch.tv 366 {nick} #{CHANNEL} :End of /NAMES list"),
                    // The bot moderates the channel, as in a show: up to 100 replies per 30 s.
                    format!(
                        "@badge-info=;badges=moderator/1;color=;display-name={nick};emote-sets=0;mod=1;subscriber=0;\
                         user-type=mod :tmi.twitch.tv USERSTATE #{CHANNEL}"
                    ),
                    format!(
                        "@emote-only=0;followers-only=-1;r9k=0;room-id={ROOM_ID};slow=0;subs-only=0 \
                         :tmi.twitch.tv ROOMSTATE #{CHANNEL}"
                    ),
                ]
            }
            // PASS, the bot's replies (PRIVMSG), PONG: nothing to answer.
            _ => Vec::new(),
        };
        if !answer.is_empty() {
            let mut text = answer.join("\r\n");
            text.push_str("\r\n");
            if writer.lock().await.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
        if join {
            joined.send_replace(Some(writer.clone()));
        }
    }
}
