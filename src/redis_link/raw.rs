//! A raw async Redis connection whose socket I/O runs in the caller's own task.
//!
//! redis-rs's `MultiplexedConnection` and async `PubSub` put a driver task between the caller and the
//! socket, so every command and every message crosses a channel and a task wake-up (about 40 µs per hop
//! on a small VM). Here the task that awaits a reply is the task that reads the socket: no driver task,
//! no channels, no hand-off. The price is exclusivity: one connection serves one task. It knows RESP2
//! and sockets only: no channel or key names, no wire format; those stay in the parent module.
//!
//! * [`RawConnection`] runs commands: [`append`](RawConnection::append) any number, send them in one
//!   write with [`flush`](RawConnection::flush), read exactly as many replies back with
//!   [`read_replies`](RawConnection::read_replies); [`query`](RawConnection::query) for one command.
//! * [`RawSubscriber`] is a subscribed connection: [`next_batch`](RawSubscriber::next_batch) hands over
//!   every message one read delivered, so a burst costs one wake-up, not one per message.
//!
//! URLs are parsed by redis-rs, so `redis://`, `rediss://` (with `#insecure`), `redis+unix://`, user and
//! password (`AUTH`) and the database (`SELECT`) mean exactly what they mean there. Replies and
//! messages are [`Bytes`] slices of the read buffer, not copies; a caller keeping one for long should
//! copy it, or it pins the whole buffer it came from.
//!
//! TLS is rustls: [`RawConnection::connect_with`] takes the [`TlsMaterial`] (`REDIS_TLS_CA` roots
//! instead of the system's, a client certificate); [`RawConnection::connect`] uses none.
//!
//! Limits: RESP2 only (`?protocol=3` is refused); channel subscriptions only (no patterns, no unsubscribe); addresses from
//! DNS are tried in turn, not raced as redis-rs does; no reconnect. After an I/O error, a timeout, a
//! protocol error or an operation cancelled half-way the connection answers [`RawError::Broken`] and the
//! caller builds a new one. Error replies (`NOSCRIPT`, `WRONGTYPE`, …) are values, not failures.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::tls::TlsMaterial;

/// Longest bulk string accepted: Redis's own `proto-max-bulk-len` default.
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ARRAY: usize = 1 << 24;
/// Deepest array nesting accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 32;
/// Longest type line (`+`, `-`, `:` and length lines).
const MAX_LINE: usize = 64 * 1024;
/// Most bytes buffered for one incomplete reply before the peer is declared broken.
const MAX_FRAME: usize = 1 << 30;
/// Free space made in the read buffer before each read: room for hundreds of small messages.
const READ_CHUNK: usize = 64 * 1024;

/// One RESP2 value. Byte payloads share the read buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A null bulk string or a null array.
    Nil,
    /// A simple string such as `OK` or `PONG`.
    Status(Bytes),
    Int(i64),
    Bulk(Bytes),
    Array(Vec<Value>),
    /// An error inside an array (a script's table, `EXEC`); an error reply on its own is the `Err` of
    /// a [`Reply`].
    Error(ServerError),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(b) | Self::Status(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn into_reply(self) -> Reply {
        match self {
            Self::Error(e) => Err(e),
            v => Ok(v),
        }
    }
}

/// The answer to one command: a value, or the error the server answered with.
pub type Reply = Result<Value, ServerError>;

/// An error reply, its text kept whole (`NOSCRIPT No matching script. Please use EVAL.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(String);

impl ServerError {
    /// An error reply as the server worded it (`READONLY You can't write against a read only replica.`).
    pub fn new(text: impl Into<String>) -> ServerError {
        ServerError(text.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }

    /// The first word: `NOSCRIPT`, `WRONGPASS`, `ERR`, …
    pub fn code(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }

    pub fn is_noscript(&self) -> bool {
        self.code() == "NOSCRIPT"
    }
}

/// Why an operation failed. Only [`RawError::Server`] and [`RawError::Usage`] leave the connection usable.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The server answered [`RawConnection::query`] or a subscription with an error.
    #[error("redis replied with an error: {0}")]
    Server(ServerError),
    #[error("redis protocol error: {0}")]
    Protocol(String),
    #[error("no answer from redis within {0:?}")]
    Timeout(Duration),
    #[error("redis closed the connection")]
    Closed,
    /// An earlier operation failed or was cancelled half-way, so replies no longer line up with commands.
    #[error("redis connection unusable after an earlier failure or a cancelled operation")]
    Broken,
    /// A call that cannot be right, refused before anything was sent or read.
    #[error("raw redis connection misused: {0}")]
    Usage(&'static str),
    #[error("redis i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn protocol(what: impl Into<String>) -> RawError {
    RawError::Protocol(what.into())
}

/// A message on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    pub channel: Bytes,
    pub payload: Bytes,
}

/// TCP, TLS or Unix socket, boxed once at connect.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection for commands, driven by the task that owns it.
pub struct RawConnection {
    stream: Box<dyn Io>,
    /// Received bytes; complete replies are split off its front, a partial one stays for the next read.
    read_buf: BytesMut,
    /// Commands appended and not yet flushed, already encoded.
    write_buf: Vec<u8>,
    /// Bounds every flush and every wait for replies.
    timeout: Duration,
    /// Commands appended and not yet flushed.
    queued: usize,
    /// Commands flushed whose replies are not yet read.
    in_flight: usize,
    /// Set while an operation runs, cleared when it completes: one that failed or was cancelled
    /// half-way leaves it set, and the connection refuses further use.
    poisoned: bool,
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConnection")
            .field("timeout", &self.timeout)
            .field("queued", &self.queued)
            .field("in_flight", &self.in_flight)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl RawConnection {
    /// Connects, authenticates and selects the database as redis-rs does for `url`. `timeout` bounds
    /// the whole connect, and then every flush and every wait for replies. TLS (`rediss://`) without
    /// a CA file or client certificate: see [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<RawConnection> {
        Self::connect_with(url, timeout, &TlsMaterial::default()).await
    }

    /// [`connect`](Self::connect), with `tls`'s roots and client certificate for a `rediss://` URL (a
    /// plain or Unix-socket URL ignores it, like the `#insecure` flag on a plain URL).
    pub async fn connect_with(url: &str, timeout: Duration, tls: &TlsMaterial) -> anyhow::Result<RawConnection> {
        let masked = crate::config::mask_url(url);
        let info = url.into_connection_info().with_context(|| format!("invalid redis URL {masked}"))?;
        if info.redis_settings().protocol().supports_resp3() {
            bail!("redis URL {masked} asks for RESP3; the raw connection speaks RESP2 only");
        }
        let connect = async {
            let stream = open(info.addr(), tls).await?;
            let mut conn = RawConnection {
                stream,
                read_buf: BytesMut::with_capacity(READ_CHUNK),
                write_buf: Vec::with_capacity(4096),
                timeout,
                queued: 0,
                in_flight: 0,
                poisoned: false,
            };
            conn.handshake(info.redis_settings()).await?;
            anyhow::Ok(conn)
        };
        let result =
            tokio::time::timeout(timeout, connect).await.unwrap_or_else(|_| Err(RawError::Timeout(timeout).into()));
        result.with_context(|| format!("connecting to redis at {masked}"))
    }

    /// `AUTH` and `SELECT` in one round trip. Like redis-rs: `AUTH user pass` when the URL names a
    /// user, retried as `AUTH pass` for a server older than 6.0; nothing for a user without a password.
    async fn handshake(&mut self, settings: &RedisConnectionInfo) -> anyhow::Result<()> {
        let db = settings.db().to_string();
        for with_user in [true, false] {
            let user = settings.username().filter(|_| with_user);
            if let Some(password) = settings.password() {
                match user {
                    Some(user) => self.append(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                    None => self.append(&[b"AUTH", password.as_bytes()]),
                }
            }
            if settings.db() != 0 {
                self.append(&[b"SELECT", db.as_bytes()]);
            }
            if self.queued == 0 {
                return Ok(());
            }
            self.flush().await?;
            let mut replies = self.read_replies(self.in_flight).await?.into_iter();
            if settings.password().is_some() {
                match replies.next() {
                    Some(Err(e)) if user.is_some() && e.message().contains("wrong number of arguments for 'auth'") => {
                        continue;
                    }
                    Some(Err(e)) => bail!("redis refused AUTH: {e}"),
                    _ => {}
                }
            }
            if let Some(Err(e)) = replies.next() {
                bail!("redis refused SELECT {db}: {e}");
            }
            return Ok(());
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Encodes one command into the outgoing buffer; nothing is sent until [`flush`](Self::flush). An
    /// empty command is ignored: Redis would never answer it.
    pub fn append(&mut self, args: &[&[u8]]) {
        if args.is_empty() {
            return;
        }
        put_header(&mut self.write_buf, b'*', args.len());
        for arg in args {
            put_header(&mut self.write_buf, b'$', arg.len());
            self.write_buf.extend_from_slice(arg);
            self.write_buf.extend_from_slice(b"\r\n");
        }
        self.queued += 1;
    }

    /// Commands flushed whose replies are not yet read.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Sends every appended command in one write.
    pub async fn flush(&mut self) -> Result<(), RawError> {
        self.write_out().await?;
        self.in_flight += std::mem::take(&mut self.queued);
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), RawError> {
        self.begin()?;
        let (stream, buf) = (&mut self.stream, &self.write_buf);
        within(self.timeout, async {
            stream.write_all(buf).await?;
            stream.flush().await?;
            Ok(())
        })
        .await?;
        self.write_buf.clear();
        self.poisoned = false;
        Ok(())
    }

    /// Reads the next `n` replies, in command order. Error replies are `Err` values, not failures.
    pub async fn read_replies(&mut self, n: usize) -> Result<Vec<Reply>, RawError> {
        self.usable()?;
        if n > self.in_flight {
            return Err(RawError::Usage("more replies asked for than commands flushed"));
        }
        self.begin()?;
        let mut replies = Vec::with_capacity(n);
        let limit = self.timeout;
        within(limit, async {
            while replies.len() < n {
                match next_frame(&mut self.read_buf)? {
                    Some(frame) => replies.push(Reader::new(&frame).value()?.into_reply()),
                    None => self.fill().await?,
                }
            }
            Ok(())
        })
        .await?;
        self.in_flight -= n;
        self.poisoned = false;
        Ok(replies)
    }

    /// Runs one command; an error reply becomes [`RawError::Server`]. Refused while pipelined
    /// commands are outstanding, since their replies come first.
    pub async fn query(&mut self, args: &[&[u8]]) -> Result<Value, RawError> {
        self.usable()?;
        if args.is_empty() {
            return Err(RawError::Usage("empty command"));
        }
        if self.queued + self.in_flight > 0 {
            return Err(RawError::Usage("query while pipelined commands are outstanding"));
        }
        self.append(args);
        self.flush().await?;
        match self.read_replies(1).await?.pop() {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(RawError::Server(e)),
            None => Err(protocol("no reply")),
        }
    }

    /// Turns this connection into a subscriber of `channels` once Redis confirmed every one.
    pub async fn subscribe(self, channels: &[&[u8]]) -> Result<RawSubscriber, RawError> {
        self.usable()?;
        if self.queued + self.in_flight > 0 {
            return Err(RawError::Usage("subscribe while pipelined commands are outstanding"));
        }
        let mut subscriber = RawSubscriber { conn: self, early: Vec::new(), pongs: 0 };
        subscriber.subscribe(channels).await?;
        Ok(subscriber)
    }

    /// Refuses use after a failed or cancelled operation, before any other complaint.
    fn usable(&self) -> Result<(), RawError> {
        if self.poisoned { Err(RawError::Broken) } else { Ok(()) }
    }

    /// Marks an operation as running; see [`RawConnection::poisoned`].
    fn begin(&mut self) -> Result<(), RawError> {
        if std::mem::replace(&mut self.poisoned, true) { Err(RawError::Broken) } else { Ok(()) }
    }

    /// One read, appended to the buffer. Cancel-safe: bytes are either in the buffer or still in the socket.
    async fn fill(&mut self) -> Result<(), RawError> {
        if self.read_buf.len() >= MAX_FRAME {
            return Err(protocol("a reply larger than 1 GiB"));
        }
        self.read_buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.read_buf).await? {
            0 => Err(RawError::Closed),
            _ => Ok(()),
        }
    }
}

/// A subscribed connection. RESP2 allows only (un)subscribe and `PING` on it, hence a type of its own.
pub struct RawSubscriber {
    conn: RawConnection,
    /// Messages that arrived while a [`subscribe`](Self::subscribe) waited for its confirmations.
    early: Vec<PubSubMessage>,
    pongs: u64,
}

impl fmt::Debug for RawSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSubscriber").field("conn", &self.conn).field("pongs", &self.pongs).finish_non_exhaustive()
    }
}

impl RawSubscriber {
    /// Subscribes to more channels and waits (within the timeout) until Redis confirmed each one.
    pub async fn subscribe(&mut self, channels: &[&[u8]]) -> Result<(), RawError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut command = Vec::with_capacity(channels.len() + 1);
        command.push(b"SUBSCRIBE".as_slice());
        command.extend_from_slice(channels);
        self.conn.append(&command);
        self.send().await?;
        self.conn.begin()?;
        let mut confirmed = 0;
        within(self.conn.timeout, async {
            while confirmed < channels.len() {
                let Some(frame) = next_frame(&mut self.conn.read_buf)? else {
                    self.conn.fill().await?;
                    continue;
                };
                match decode_push(&frame)? {
                    Push::Message(m) => self.early.push(m),
                    Push::Subscribed => confirmed += 1,
                    Push::Pong => self.pongs += 1,
                    Push::Other => {}
                }
            }
            Ok(())
        })
        .await?;
        self.conn.poisoned = false;
        Ok(())
    }

    /// Waits for at least one message, then appends to `out` every message already received without
    /// waiting again. No timeout: a quiet channel is normal; tell quiet from dead with [`ping`](Self::ping).
    ///
    /// Cancel-safe: dropped while waiting (in `tokio::select!`), it loses nothing; partial data stays
    /// in the connection's buffer. Messages taken before an error reply stay in `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<PubSubMessage>) -> Result<(), RawError> {
        self.conn.usable()?;
        let result = self.batch(out).await;
        if matches!(&result, Err(e) if !matches!(e, RawError::Server(_))) {
            self.conn.poisoned = true;
        }
        result
    }

    async fn batch(&mut self, out: &mut Vec<PubSubMessage>) -> Result<(), RawError> {
        let start = out.len();
        out.append(&mut self.early);
        loop {
            while let Some(frame) = next_frame(&mut self.conn.read_buf)? {
                match decode_push(&frame)? {
                    Push::Message(m) => out.push(m),
                    Push::Pong => self.pongs += 1,
                    Push::Subscribed | Push::Other => {}
                }
            }
            if out.len() > start {
                return Ok(());
            }
            self.conn.fill().await?;
        }
    }

    /// Sends `PING`; the answer counts in [`pongs`](Self::pongs) once a `next_batch` has read it.
    pub async fn ping(&mut self) -> Result<(), RawError> {
        self.conn.append(&[b"PING"]);
        self.send().await
    }

    /// `PING` answers read so far.
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// Flushes without counting replies: a subscribed connection answers with push frames.
    async fn send(&mut self) -> Result<(), RawError> {
        self.conn.write_out().await?;
        self.conn.queued = 0;
        Ok(())
    }
}

/// A frame on a subscribed connection.
enum Push {
    Message(PubSubMessage),
    Subscribed,
    Pong,
    Other,
}

fn decode_push(frame: &Bytes) -> Result<Push, RawError> {
    let mut reader = Reader::new(frame);
    let (tag, text) = reader.line()?;
    let len = match tag {
        b'*' => parse_len(&frame[text], MAX_ARRAY)?.unwrap_or(0),
        b'-' => return Err(RawError::Server(server_error(&frame[text]))),
        _ => return Err(protocol("a reply that is not a push on a subscribed connection")),
    };
    if len == 0 {
        return Ok(Push::Other);
    }
    let kind = reader.bulk()?.map(|r| &frame[r]);
    Ok(match (kind, len) {
        (Some(b"message"), 3) => match (reader.bulk()?, reader.bulk()?) {
            (Some(channel), Some(payload)) => {
                Push::Message(PubSubMessage { channel: frame.slice(channel), payload: frame.slice(payload) })
            }
            _ => return Err(protocol("a message with a null channel or payload")),
        },
        (Some(b"subscribe"), _) => Push::Subscribed,
        (Some(b"pong"), _) => Push::Pong,
        _ => Push::Other,
    })
}

/// The reply parser the connections use, run on a caller's buffer: the entry points of the fuzz
/// targets (`fuzz/`) and their regression tests. Not an API: it changes whenever the parser does.
#[doc(hidden)]
pub mod parse {
    use bytes::{Bytes, BytesMut};

    use super::{PubSubMessage, Push, RawError, Reader, Reply};

    /// Takes the next complete frame off the front of `buf`, as every read does; `None` while only
    /// part of it has arrived, with `buf` left as it was.
    pub fn next_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, RawError> {
        super::next_frame(buf)
    }

    /// A frame read as a command's reply, as [`RawConnection::read_replies`](super::RawConnection::read_replies) does.
    pub fn reply(frame: &Bytes) -> Result<Reply, RawError> {
        Ok(Reader::new(frame).value()?.into_reply())
    }

    /// A frame read as a subscribed connection's push: `Some` for a channel message, `None` for a
    /// confirmation, a `PING` answer or anything else a subscriber skips.
    pub fn push(frame: &Bytes) -> Result<Option<PubSubMessage>, RawError> {
        Ok(match super::decode_push(frame)? {
            Push::Message(message) => Some(message),
            Push::Subscribed | Push::Pong | Push::Other => None,
        })
    }
}

/// Appends a type line such as `*3\r\n` or `$5\r\n` without going through `fmt`.
fn put_header(out: &mut Vec<u8>, tag: u8, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789"[n % 10];
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(tag);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Bounds `work` by `limit`.
async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, RawError>>) -> Result<T, RawError> {
    tokio::time::timeout(limit, work).await.unwrap_or(Err(RawError::Timeout(limit)))
}

async fn open(addr: &ConnectionAddr, tls: &TlsMaterial) -> anyhow::Result<Box<dyn Io>> {
    Ok(match addr {
        ConnectionAddr::Tcp(host, port) => Box::new(tcp(host, *port).await?),
        ConnectionAddr::TcpTls { host, port, insecure, tls_params } => {
            if tls_params.is_some() {
                bail!("TLS parameters in the connection info are not supported; the raw connection takes TlsMaterial");
            }
            let connector = tls.connector(*insecure)?;
            let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .with_context(|| format!("{host} is not a TLS server name"))?
                .to_owned();
            let socket = tcp(host, *port).await?;
            Box::new(connector.connect(name, socket).await.context("TLS handshake")?)
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        other => bail!("unsupported redis address {other}"),
    })
}

/// The first address of `host` that accepts, with Nagle off so small commands leave at once.
async fn tcp(host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await.with_context(|| format!("resolving {host}"))? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(anyhow::Error::from(e).context(format!("connecting to {addr}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("{host} resolved to no address")))
}

/// Takes the next complete value off the front of `buf`, leaving a partial one where it is.
fn next_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, RawError> {
    Ok(frame_len(buf, 0, 0)?.map(|len| buf.split_to(len).freeze()))
}

/// Where the value at `pos` ends, or `None` while only part of it has arrived. Checks everything
/// [`Reader`] relies on, so a bad frame is refused before it leaves the buffer, and allocates nothing.
fn frame_len(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, RawError> {
    if depth > MAX_DEPTH {
        return Err(protocol("arrays nested too deep"));
    }
    let Some((tag, text)) = line(buf, pos)? else { return Ok(None) };
    let end = text.end + 2;
    match tag {
        b'+' | b'-' => Ok(Some(end)),
        b':' => parse_int(&buf[text]).map(|_| Some(end)),
        b'$' => match parse_len(&buf[text], MAX_BULK)? {
            None => Ok(Some(end)),
            Some(len) if buf.len() < end + len + 2 => Ok(None),
            Some(len) if &buf[end + len..end + len + 2] == b"\r\n" => Ok(Some(end + len + 2)),
            Some(_) => Err(protocol("a bulk string not followed by CRLF")),
        },
        b'*' => {
            let Some(len) = parse_len(&buf[text], MAX_ARRAY)? else { return Ok(Some(end)) };
            let mut at = end;
            for _ in 0..len {
                match frame_len(buf, at, depth + 1)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(protocol(format!("unknown type byte {other:#04x}"))),
    }
}

/// The type line at `pos`: its tag byte and the range of its text before CRLF.
fn line(buf: &[u8], pos: usize) -> Result<Option<(u8, Range<usize>)>, RawError> {
    let Some(&tag) = buf.get(pos) else { return Ok(None) };
    let start = pos + 1;
    let window = &buf[start..buf.len().min(start + MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some((tag, start..start + i - 1))),
        Some(_) => Err(protocol("a line not ended by CRLF")),
        None if window.len() == MAX_LINE + 2 => Err(protocol("a line longer than 64 KiB")),
        None => Ok(None),
    }
}

fn parse_int(text: &[u8]) -> Result<i64, RawError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol(format!("bad integer {:?}", String::from_utf8_lossy(text))))
}

/// A bulk or array length: `None` for -1 (null); any other negative or anything above `max` is refused.
fn parse_len(text: &[u8], max: usize) -> Result<Option<usize>, RawError> {
    match parse_int(text)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&len| len <= max)
            .map(Some)
            .ok_or_else(|| protocol(format!("length {n} out of range"))),
    }
}

fn server_error(text: &[u8]) -> ServerError {
    ServerError(String::from_utf8_lossy(text).into_owned())
}

/// Walks one complete frame (already checked by [`frame_len`]) and builds values sharing its memory.
struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a Bytes) -> Self {
        Reader { frame, pos: 0 }
    }

    fn line(&mut self) -> Result<(u8, Range<usize>), RawError> {
        let (tag, text) = line(self.frame, self.pos)?.ok_or_else(|| protocol("a truncated frame"))?;
        self.pos = text.end + 2;
        Ok((tag, text))
    }

    /// The body of the bulk string whose length line was `text`.
    fn body(&mut self, text: Range<usize>) -> Result<Option<Range<usize>>, RawError> {
        let Some(len) = parse_len(&self.frame[text], MAX_BULK)? else { return Ok(None) };
        let body = self.pos..self.pos + len;
        if self.frame.len() < body.end + 2 {
            return Err(protocol("a truncated frame"));
        }
        self.pos = body.end + 2;
        Ok(Some(body))
    }

    fn bulk(&mut self) -> Result<Option<Range<usize>>, RawError> {
        match self.line()? {
            (b'$', text) => self.body(text),
            _ => Err(protocol("a push frame element that is not a bulk string")),
        }
    }

    fn value(&mut self) -> Result<Value, RawError> {
        let (tag, text) = self.line()?;
        Ok(match tag {
            b'+' => Value::Status(self.frame.slice(text)),
            b'-' => Value::Error(server_error(&self.frame[text])),
            b':' => Value::Int(parse_int(&self.frame[text])?),
            b'$' => self.body(text)?.map_or(Value::Nil, |body| Value::Bulk(self.frame.slice(body))),
            b'*' => match parse_len(&self.frame[text], MAX_ARRAY)? {
                None => Value::Nil,
                Some(len) => {
                    let mut items = Vec::with_capacity(len);
                    for _ in 0..len {
                        items.push(self.value()?);
                    }
                    Value::Array(items)
                }
            },
            other => return Err(protocol(format!("unknown type byte {other:#04x}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status(s: &str) -> Value {
        Value::Status(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(Bytes::copy_from_slice(b))
    }

    fn server(s: &str) -> ServerError {
        ServerError(s.to_owned())
    }

    /// Takes every complete reply off `buf`.
    fn drain(buf: &mut BytesMut, out: &mut Vec<Reply>) -> Result<(), RawError> {
        while let Some(frame) = next_frame(buf)? {
            out.push(Reader::new(&frame).value()?.into_reply());
        }
        Ok(())
    }

    /// Decodes `input` as if the first read ended at `cut` and the second brought the rest.
    fn decode_split(input: &[u8], cut: usize) -> Vec<Reply> {
        let mut buf = BytesMut::from(&input[..cut]);
        let mut out = Vec::new();
        drain(&mut buf, &mut out).expect("first part decodes");
        buf.extend_from_slice(&input[cut..]);
        drain(&mut buf, &mut out).expect("second part decodes");
        assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
        out
    }

    /// Decodes `input` split at every byte boundary, and fed one byte per read.
    fn check(input: &[u8], expected: &[Reply]) {
        for cut in 0..=input.len() {
            assert_eq!(decode_split(input, cut), expected, "split at byte {cut}");
        }
        let (mut buf, mut out) = (BytesMut::new(), Vec::new());
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            drain(&mut buf, &mut out).expect("decodes byte by byte");
        }
        assert_eq!(out, expected, "fed byte by byte");
    }

    fn rejected(input: &[u8]) -> String {
        match next_frame(&mut BytesMut::from(input)) {
            Err(RawError::Protocol(why)) => why,
            other => panic!("{:?} was not refused: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn every_reply_type_decodes_at_every_split() {
        check(b"+OK\r\n", &[Ok(status("OK"))]);
        check(b"-NOSCRIPT No matching script.\r\n", &[Err(server("NOSCRIPT No matching script."))]);
        check(b":-42\r\n:9223372036854775807\r\n", &[Ok(Value::Int(-42)), Ok(Value::Int(i64::MAX))]);
        check(b"$5\r\nhello\r\n$0\r\n\r\n", &[Ok(bulk(b"hello")), Ok(bulk(b""))]);
        check(b"$4\r\n\r\n\r\n\r\n", &[Ok(bulk(b"\r\n\r\n"))]);
        check(b"$-1\r\n*-1\r\n*0\r\n", &[Ok(Value::Nil), Ok(Value::Nil), Ok(Value::Array(vec![]))]);
        check(
            b"*3\r\n*1\r\n:1\r\n$-1\r\n-ERR inner\r\n+PONG\r\n",
            &[
                Ok(Value::Array(vec![
                    Value::Array(vec![Value::Int(1)]),
                    Value::Nil,
                    Value::Error(server("ERR inner")),
                ])),
                Ok(status("PONG")),
            ],
        );
    }

    #[test]
    fn an_incomplete_reply_waits_for_more() {
        for partial in [&b"*3\r\n:1\r\n"[..], b"$10\r\nhello", b"$5\r\nhello\r", b":12", b"+O", b"*"] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(next_frame(&mut buf).expect("not an error"), None, "{partial:?}");
            assert_eq!(&buf[..], partial, "nothing consumed");
        }
    }

    #[test]
    fn absurd_or_malformed_input_is_refused_without_allocating() {
        assert!(rejected(b"$536870913\r\n").contains("out of range"), "bulk over 512 MB");
        assert!(rejected(b"*16777217\r\n").contains("out of range"), "array over 16 M elements");
        assert!(rejected(b"$-2\r\n").contains("out of range"));
        assert!(rejected(b"*-5\r\n").contains("out of range"));
        assert!(rejected(b"$99999999999999999999\r\n").contains("bad integer"));
        assert!(rejected(b":12a\r\n").contains("bad integer"));
        assert!(rejected(b":\r\n").contains("bad integer"));
        assert!(rejected(b"?5\r\n").contains("unknown type"));
        assert!(rejected(b"+OK\n").contains("CRLF"));
        assert!(rejected(b"$3\r\nabcXY").contains("CRLF"));
        assert!(rejected(&b"*1\r\n".repeat(40)).contains("nested"));
        let mut long = b"+".to_vec();
        long.resize(MAX_LINE + 10, b'a');
        assert!(rejected(&long).contains("longer"));
    }

    #[test]
    fn push_frames_decode_to_messages_and_the_rest_is_recognised() {
        let frame = Bytes::from_static(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\n\x00\r\n\r\n");
        match decode_push(&frame) {
            Ok(Push::Message(m)) => assert_eq!((&m.channel[..], &m.payload[..]), (&b"ch"[..], &b"\x00\r\n"[..])),
            _ => panic!("not a message"),
        }
        let confirmation = Bytes::from_static(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        assert!(matches!(decode_push(&confirmation), Ok(Push::Subscribed)));
        assert!(matches!(decode_push(&Bytes::from_static(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")), Ok(Push::Pong)));
        let refusal = decode_push(&Bytes::from_static(b"-NOPERM no channel\r\n"));
        assert!(matches!(refusal, Err(RawError::Server(e)) if e.code() == "NOPERM"));
        assert!(matches!(decode_push(&Bytes::from_static(b":1\r\n")), Err(RawError::Protocol(_))));
    }

    #[test]
    fn the_fuzzing_entry_points_are_the_connections_parser() {
        let mut buf = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n+OK\r\n*2\r\n$4\r"[..]);
        let message = parse::next_frame(&mut buf).expect("valid").expect("complete");
        let pushed = parse::push(&message).expect("a push").expect("a message");
        assert_eq!((&pushed.channel[..], &pushed.payload[..]), (&b"ch"[..], &b"x"[..]));
        let ok = parse::next_frame(&mut buf).expect("valid").expect("complete");
        assert_eq!(parse::reply(&ok).expect("decodes"), Ok(status("OK")));
        assert!(matches!(parse::push(&ok), Err(RawError::Protocol(_))), "a status is no push");
        assert_eq!(parse::next_frame(&mut buf).expect("valid"), None, "a partial frame waits");
        assert_eq!(&buf[..], b"*2\r\n$4\r", "and stays in the buffer");
    }

    /// A length far beyond what arrived makes the parser wait: it neither refuses a length Redis may
    /// send nor touches the buffer (the fuzz target `resp` checks that nothing is allocated).
    #[test]
    fn a_header_announcing_more_than_arrived_waits_without_reserving() {
        for header in [&b"$536870912\r\n"[..], b"*16777216\r\n", b"*16777216\r\n$536870912\r\nab"] {
            let mut buf = BytesMut::from(header);
            let capacity = buf.capacity();
            assert_eq!(parse::next_frame(&mut buf).expect("in range"), None);
            assert_eq!((&buf[..], buf.capacity()), (header, capacity));
        }
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        for n in [0, 7, 10, 99, 12_345, usize::MAX] {
            let mut out = Vec::new();
            put_header(&mut out, b'$', n);
            assert_eq!(out, format!("${n}\r\n").into_bytes());
        }
    }

    #[test]
    fn a_server_error_names_its_code() {
        let e = server("NOSCRIPT No matching script. Please use EVAL.");
        assert_eq!((e.code(), e.is_noscript()), ("NOSCRIPT", true));
        assert_eq!(server("").code(), "");
    }

    fn encode(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Nil => out.extend_from_slice(b"$-1\r\n"),
            Value::Status(s) => out.extend_from_slice(&[b"+", &s[..], b"\r\n"].concat()),
            Value::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Value::Error(e) => out.extend_from_slice(format!("-{}\r\n", e.message()).as_bytes()),
            Value::Bulk(b) => {
                put_header(out, b'$', b.len());
                out.extend_from_slice(&[&b[..], b"\r\n"].concat());
            }
            Value::Array(items) => {
                put_header(out, b'*', items.len());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            "[a-zA-Z0-9 ]{0,12}".prop_map(|s| Value::Status(Bytes::from(s))),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Bulk(Bytes::from(b))),
            "[A-Z]{1,8} [a-z ]{0,12}".prop_map(|s| Value::Error(ServerError(s))),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| proptest::collection::vec(inner, 0..6).prop_map(Value::Array))
    }

    proptest! {
        #[test]
        fn any_reply_stream_decodes_to_what_was_encoded(
            values in proptest::collection::vec(any_value(), 1..6),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut input = Vec::new();
            for value in &values {
                encode(value, &mut input);
            }
            let expected: Vec<Reply> = values.into_iter().map(Value::into_reply).collect();
            prop_assert_eq!(decode_split(&input, cut.index(input.len() + 1)), expected);
        }
    }
}
