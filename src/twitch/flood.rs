//! Chat-flood shedding in front of twitch-irc, whose incoming queues are unbounded: a flood must be
//! shed before it reaches them, at the socket.
//!
//! Every connection's socket is wrapped ([`Guarded`], [`Shedding`]). The wrapper passes every line on,
//! but it numbers each PRIVMSG it passes (a `cvbot-seq` tag it adds) and the consumer reports the
//! highest number it has handled ([`note_handled`]). The difference is how many chat messages are
//! in flight inside twitch-irc; above [`SHED_ABOVE`] the wrapper drops PRIVMSG lines that are not from
//! the broadcaster, a moderator or an `ADMIN_USERS` entry and counts them ([`shed_total`], reported
//! as `chat_shed`). PING, RECONNECT, NOTICE, USERSTATE and every other line always pass, so the
//! connection stays healthy and admin commands still get through.
//!
//! Because a message can be lost inside twitch-irc (a connection closing with lines in its buffers),
//! the consumer calls [`catch_up`] when a second has gone by without any chat message, so a lost
//! number never keeps the wrapper shedding.
//!
//! twitch-irc makes sockets through `MakeConnection::new_socket()`, which takes no arguments, so the
//! counters are process-wide, like `TWITCH_IRC_ADDR`. Knows IRC line syntax and Twitch's badge tags;
//! nothing of the intake, the gate or the client.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use twitch_irc::message::PrivmsgMessage;
use twitch_irc::transport::tcp::{MakeConnection, TCPTransportConnectError};

/// Chat messages that may be in flight between the socket and the consumer before ordinary viewers'
/// lines are shed. A queued message costs a few KiB inside twitch-irc, so this keeps the queues to a
/// few MiB; the consumer handles a burst of this size in a fraction of a second, so an ordinary busy
/// chat never reaches it.
pub const SHED_ABOVE: u64 = 2048;
/// The tag the wrapper adds to each PRIVMSG it passes.
pub const SEQ_TAG: &str = "cvbot-seq";
/// A server line longer than this is not Twitch's (its longest lines are a few KiB): it is dropped as
/// it streams in, never held whole, and counted as shed.
pub const MAX_SERVER_LINE: usize = 16 * 1024;
/// How much the wrapper reads from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The process-wide accounting between the wrappers and the consumer.
struct Books {
    /// The number given to the last PRIVMSG passed on.
    passed: AtomicU64,
    /// The highest number the consumer has handled.
    handled: AtomicU64,
    /// Lines dropped since the process started (monotonic).
    shed: AtomicU64,
    /// `ADMIN_USERS` (logins and numeric ids, lower case): their lines are never shed.
    admins: RwLock<HashSet<String>>,
}

static BOOKS: LazyLock<Books> = LazyLock::new(|| Books {
    passed: AtomicU64::new(0),
    handled: AtomicU64::new(0),
    shed: AtomicU64::new(0),
    admins: RwLock::new(HashSet::new()),
});

/// Never sheds lines from these users (`ADMIN_USERS`: logins or numeric user ids).
pub fn spare(users: impl IntoIterator<Item = String>) {
    let mut admins = BOOKS.admins.write().unwrap_or_else(PoisonError::into_inner);
    admins.extend(users.into_iter().map(|u| u.to_ascii_lowercase()));
}

/// The consumer has handled `msg`: everything numbered up to its number has left twitch-irc.
pub fn note_handled(msg: &PrivmsgMessage) {
    if let Some(seq) = msg.source.tags.0.get(SEQ_TAG).and_then(|v| v.parse::<u64>().ok()) {
        BOOKS.handled.fetch_max(seq, Ordering::Relaxed);
    }
}

/// Nothing is in flight any more (the consumer went a while without a chat message): forget any
/// number that was lost on the way.
pub fn catch_up() {
    BOOKS.handled.fetch_max(BOOKS.passed.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Lines shed since the process started. The books are process-wide (twitch-irc makes sockets
/// through an argument-less `new_socket()`), so every Twitch source of a process reports the same
/// total; a show runs one source per process.
pub fn shed_total() -> u64 {
    BOOKS.shed.load(Ordering::Relaxed)
}

fn in_flight() -> u64 {
    BOOKS.passed.load(Ordering::Relaxed).saturating_sub(BOOKS.handled.load(Ordering::Relaxed))
}

/// What to do with one server line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// A PRIVMSG to pass on with a number.
    Number,
    Shed,
}

/// The parts of an IRC line the shedder looks at: `@tags :prefix COMMAND …`.
fn split_line(line: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, &[u8]) {
    let mut rest = line;
    let tags = (rest.first() == Some(&b'@')).then(|| &next_word(&mut rest)[1..]);
    let prefix = (rest.first() == Some(&b':')).then(|| &next_word(&mut rest)[1..]);
    (tags, prefix, next_word(&mut rest))
}

/// The bytes up to the next space; `rest` moves past it.
fn next_word<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let line: &'a [u8] = rest;
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    *rest = line.get(end + 1..).unwrap_or_default();
    &line[..end]
}

fn tag<'a>(tags: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    tags.split(|&b| b == b';').find_map(|kv| {
        let (k, v) = kv.split_at(kv.iter().position(|&b| b == b'=').unwrap_or(kv.len()));
        (k == name).then(|| v.get(1..).unwrap_or_default())
    })
}

/// Broadcaster, moderator or `ADMIN_USERS`, from the tags Twitch vouches for (the same rules as
/// `roles::sender_of`, on raw bytes).
fn is_privileged(tags: Option<&[u8]>, prefix: Option<&[u8]>, admins: &HashSet<String>) -> bool {
    let tags = tags.unwrap_or_default();
    let badges = tag(tags, b"badges").unwrap_or_default();
    let badge = |name: &[u8]| badges.split(|&b| b == b',').any(|b| b.split(|&c| c == b'/').next() == Some(name));
    if badge(b"broadcaster") || badge(b"moderator") || badge(b"lead_moderator") || tag(tags, b"mod") == Some(b"1") {
        return true;
    }
    let user_id = tag(tags, b"user-id").filter(|id| !id.is_empty());
    if user_id.is_some() && user_id == tag(tags, b"room-id") {
        return true;
    }
    if admins.is_empty() {
        return false;
    }
    let login = prefix.map(|p| &p[..p.iter().position(|&b| b == b'!').unwrap_or(p.len())]);
    [user_id, login]
        .into_iter()
        .flatten()
        .any(|who| std::str::from_utf8(who).is_ok_and(|who| admins.contains(&who.to_ascii_lowercase())))
}

fn judge(line: &[u8], shedding: bool) -> Verdict {
    let (tags, prefix, command) = split_line(line);
    if command != b"PRIVMSG" {
        return Verdict::Pass;
    }
    if !shedding {
        return Verdict::Number;
    }
    let admins = BOOKS.admins.read().unwrap_or_else(PoisonError::into_inner);
    if is_privileged(tags, prefix, &admins) { Verdict::Number } else { Verdict::Shed }
}

/// Appends `line` to `out` with the `cvbot-seq` tag first.
fn push_numbered(out: &mut Vec<u8>, line: &[u8], seq: u64) {
    out.extend_from_slice(format!("@{SEQ_TAG}={seq}").as_bytes());
    match line.strip_prefix(b"@") {
        Some(tags) => {
            out.push(b';');
            out.extend_from_slice(tags);
        }
        None => {
            out.push(b' ');
            out.extend_from_slice(line);
        }
    }
}

/// A socket whose incoming lines pass the shedder. Holds at most one partial line
/// ([`MAX_SERVER_LINE`]), one read chunk and the lines of that chunk that passed.
#[derive(Debug)]
pub struct Shedding<S> {
    inner: S,
    chunk: Vec<u8>,
    /// The line being assembled.
    line: Vec<u8>,
    /// The current line is over [`MAX_SERVER_LINE`]; its bytes are dropped until the next newline.
    overlong: bool,
    /// Lines ready for the reader, from `taken` on.
    ready: Vec<u8>,
    taken: usize,
}

impl<S> Shedding<S> {
    pub fn new(inner: S) -> Shedding<S> {
        Shedding { inner, chunk: vec![0; READ_CHUNK], line: Vec::new(), overlong: false, ready: Vec::new(), taken: 0 }
    }

    /// Sorts the bytes of one read into `ready` (passed lines) and the partial `line`.
    fn sort(&mut self, n: usize) {
        let mut bytes = &self.chunk[..n];
        while !bytes.is_empty() {
            let (segment, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], Some(at + 1)),
                None => (bytes, None),
            };
            if !self.overlong {
                if self.line.len() + segment.len() > MAX_SERVER_LINE {
                    self.overlong = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(segment);
                }
            }
            let Some(next) = ended else { break };
            bytes = &bytes[next..];
            if std::mem::replace(&mut self.overlong, false) {
                BOOKS.shed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            match judge(text, in_flight() > SHED_ABOVE) {
                Verdict::Pass => self.ready.extend_from_slice(text),
                Verdict::Number => {
                    let seq = BOOKS.passed.fetch_add(1, Ordering::Relaxed) + 1;
                    push_numbered(&mut self.ready, text, seq);
                }
                Verdict::Shed => {
                    BOOKS.shed.fetch_add(1, Ordering::Relaxed);
                    self.line = line;
                    self.line.clear();
                    continue;
                }
            }
            self.ready.extend_from_slice(b"\r\n");
            self.line = line;
            self.line.clear();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Shedding<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.taken < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.taken);
                buf.put_slice(&this.ready[this.taken..this.taken + n]);
                this.taken += n;
                return Poll::Ready(Ok(()));
            }
            this.ready.clear();
            this.taken = 0;
            let mut read = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                // End of stream: a last line without a newline goes on as it is, then EOF.
                if this.line.is_empty() || this.overlong {
                    return Poll::Ready(Ok(()));
                }
                this.ready = std::mem::take(&mut this.line);
                continue;
            }
            this.sort(n);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Shedding<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connections of `C` (Twitch's TLS, or the plain-TCP relay) with [`Shedding`] sockets.
#[derive(Debug)]
pub struct Guarded<C>(PhantomData<C>);

#[async_trait]
impl<C: MakeConnection> MakeConnection for Guarded<C>
where
    C::Socket: Unpin,
{
    type Socket = Shedding<C::Socket>;

    async fn new_socket() -> Result<Self::Socket, TCPTransportConnectError> {
        Ok(Shedding::new(C::new_socket().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEWER: &[u8] =
        b"@badge-info=;badges=subscriber/12;mod=0;room-id=7;user-id=42 :ann!ann@ann.tmi.twitch.tv PRIVMSG #show :hi";
    const MODERATOR: &[u8] =
        b"@badges=moderator/1;mod=1;room-id=7;user-id=43 :mo!mo@mo.tmi.twitch.tv PRIVMSG #show :!admin clear";
    const LEAD: &[u8] =
        b"@badges=lead_moderator/1;mod=0;room-id=7;user-id=44 :lee!lee@lee.tmi.twitch.tv PRIVMSG #show :x";
    const STREAMER: &[u8] = b"@badges=;mod=0;room-id=7;user-id=7 :show!show@show.tmi.twitch.tv PRIVMSG #show :x";

    #[test]
    fn only_privmsg_is_ever_shed_and_never_from_the_broadcaster_or_moderators() {
        for line in
            [&b"PING :tmi.twitch.tv"[..], b":tmi.twitch.tv RECONNECT", b"@msg-id=x :tmi.twitch.tv NOTICE #show :hi"]
        {
            assert_eq!(judge(line, true), Verdict::Pass, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(judge(VIEWER, false), Verdict::Number);
        assert_eq!(judge(VIEWER, true), Verdict::Shed);
        for line in [MODERATOR, LEAD, STREAMER] {
            assert_eq!(judge(line, true), Verdict::Number, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn admin_users_are_spared_by_login_or_id() {
        let admins: HashSet<String> = ["ann".to_owned(), "99".to_owned()].into();
        let (tags, prefix, _) = split_line(VIEWER);
        assert!(is_privileged(tags, prefix, &admins));
        let by_id = b"@badges=;room-id=7;user-id=99 :zed!zed@zed.tmi.twitch.tv PRIVMSG #show :x";
        let (tags, prefix, _) = split_line(by_id);
        assert!(is_privileged(tags, prefix, &admins));
        let (tags, prefix, _) = split_line(VIEWER);
        assert!(!is_privileged(tags, prefix, &HashSet::new()));
    }

    #[test]
    fn the_number_goes_in_as_the_first_tag() {
        let mut out = Vec::new();
        push_numbered(&mut out, b"@a=1 :x PRIVMSG #c :hi", 5);
        push_numbered(&mut out, b":x PRIVMSG #c :hi", 6);
        assert_eq!(out, b"@cvbot-seq=5;a=1 :x PRIVMSG #c :hi@cvbot-seq=6 :x PRIVMSG #c :hi");
    }

    #[tokio::test]
    async fn the_wrapper_passes_lines_across_reads_and_drops_an_overlong_one_as_it_streams() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            server.write_all(b"PING :tmi.twitch.tv\r\n:tmi.twitch.tv 00").await.expect("write");
            server.write_all(b"1 bot :Welcome\r\n").await.expect("write");
            let long = vec![b'x'; 1024];
            for _ in 0..100 {
                server.write_all(&long).await.expect("write");
            }
            server.write_all(b"\r\nlast").await.expect("write");
        });
        let shed_before = BOOKS.shed.load(Ordering::Relaxed);
        let mut lines = BufReader::new(Shedding::new(client)).lines();
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read") {
            got.push(line);
        }
        writer.await.expect("writer");
        assert_eq!(got, ["PING :tmi.twitch.tv", ":tmi.twitch.tv 001 bot :Welcome", "last"]);
        assert!(BOOKS.shed.load(Ordering::Relaxed) > shed_before, "the overlong line was counted");
    }
}
