//! The democracy row's HTTP client: `POST` with the admin token over one kept-alive HTTP/1.1
//! connection, so the votes measure what the instance does with a request rather than a TCP
//! handshake per vote. As minimal as `child::http_get`: the bench needs no HTTP client stack.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One connection to one instance; it reconnects when the server closed the last one.
#[derive(Debug)]
pub(super) struct Client {
    addr: SocketAddr,
    token: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    pub(super) fn new(addr: SocketAddr, token: &str) -> Client {
        Client { addr, token: token.to_owned(), stream: None }
    }

    /// `POST path` with the JSON `body`; the status and the response body.
    pub(super) async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream =
                    TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
                stream.set_nodelay(true)?;
                self.stream.insert(BufReader::new(stream))
            }
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.get_mut().write_all(request.as_bytes()).await?;
        let (status, length, close) = head(stream).await?;
        let mut response = vec![0u8; length];
        stream.read_exact(&mut response).await?;
        if close {
            self.stream = None;
        }
        Ok((status, String::from_utf8_lossy(&response).into_owned()))
    }
}

/// Reads a response's head: its status, its `Content-Length` and whether the server closes the
/// connection after it. A body of another framing (chunked) is refused: the bot's JSON replies
/// are whole bodies of a known length.
async fn head(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, usize, bool)> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut length, mut close) = (None, false);
    loop {
        line.clear();
        anyhow::ensure!(stream.read_line(&mut line).await? > 0, "the connection closed inside a response head");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            anyhow::bail!("a response body in {value} framing, which this client does not read");
        }
    }
    Ok((status, length.context("a response without Content-Length")?, close))
}
