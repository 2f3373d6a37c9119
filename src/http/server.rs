//! The HTTP server's own accept loop: at most `HTTP_MAX_CONNECTIONS` connections (beyond, a bare 503
//! with `Retry-After`, written without starting an HTTP connection), an HTTP/1.1 connection per socket
//! with a header deadline (`HTTP_HEADER_TIMEOUT_MS`), a `Host` check and security headers in front
//! of the warp routes, quiet logging of clients that go away, and a bounded graceful shutdown.
//!
//! Knows sockets, hyper and the limits; knows nothing of routes, state, OSC or Redis.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use warp::http::{HeaderValue, Request, Version, header};
use warp::reply::Response;

use super::ApiError;
use super::limits::{CONTENT_SECURITY_POLICY, HostPolicy, HostRefusal, HttpLimits, MAX_HEADER_BYTES, RETRY_AFTER_SECS};
use crate::stats::LogThrottle;

/// How long an open connection may take to finish once shutdown is asked for (an in-flight request
/// completes; an idle or half-sent one is dropped). Well inside `app::SHUTDOWN_GRACE` (1.5 s).
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Refused connections being answered at once. Beyond this (a flood) a refused socket is closed
/// without an answer, so refusing costs no more than this many small tasks.
pub const MAX_REFUSING: usize = 64;

/// How long a refusal may take: writing the 503, then reading what the client sent until it closes
/// (closing with unread input would reset the connection and could destroy the 503 in flight).
const REFUSAL_BOUND: Duration = Duration::from_secs(1);

/// Pause after an accept error such as "too many open files", so the loop does not spin while the
/// process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` until `shutdown`, then waits at most [`CLOSE_GRACE`] for open
/// connections.
pub async fn run<S>(listener: TcpListener, service: S, limits: HttpLimits, shutdown: CancellationToken)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let hosts = HostPolicy::new(
        listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
        limits.allowed_hosts.clone(),
    );
    let front = Front { inner: service, hosts, limits: limits.clone() };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_header_size(MAX_HEADER_BYTES);
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tracker = TaskTracker::new();
    let throttle = LogThrottle::per_minute();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e, &throttle).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            limits.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(slot) = refusing.clone().try_acquire_owned() {
                let shutdown = shutdown.clone();
                let max = limits.max_connections;
                tracker.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = refuse(stream, max) => {}
                    }
                    drop(slot);
                });
            } else {
                debug!(%peer, "connection refused without an answer: too many refusals at once");
            }
            continue;
        };
        let (front, builder, shutdown) = (front.clone(), builder.clone(), shutdown.clone());
        tracker.spawn(async move {
            serve_connection(stream, peer, front, &builder, &shutdown).await;
            drop(permit);
        });
    }
    // Closing the listener first: no connection is accepted while the open ones finish.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

async fn accept_failed(error: &std::io::Error, throttle: &LogThrottle) {
    use std::io::ErrorKind;
    // Errors about one half-open connection (aborted or reset before we took it) concern only it.
    if matches!(error.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted) {
        debug!("accept: {error}");
        return;
    }
    if let Some(suppressed) = throttle.allow("http-accept", Instant::now()) {
        warn!("cannot accept HTTP connections: {error} ({suppressed} more since the last report)");
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// One connection, until it closes or, after shutdown, at most [`CLOSE_GRACE`] longer.
async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    front: Front<S>,
    builder: &http1::Builder,
    shutdown: &CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), front));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Ok(result) = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                result
            } else {
                debug!(%peer, "connection dropped at shutdown");
                return;
            }
        }
    };
    if let Err(e) = result {
        connection_ended(peer, &e);
    }
}

/// Logs why a connection ended with an error. Nearly every cause is the client's doing (it went
/// away mid-request or mid-stream, reset, sent no complete headers in time, sent garbage): that is
/// routine for a browser closing the overlay and is logged at debug, never as an error, because OBS
/// users read an ERROR line as a fault of the show. Only an error in our own service is a warning.
fn connection_ended(peer: SocketAddr, error: &hyper::Error) {
    if error.is_user() && !error.is_body_write_aborted() && !error.is_canceled() {
        warn!(%peer, "HTTP connection failed: {error}");
    } else if error.is_timeout() {
        debug!(%peer, "HTTP connection closed: request headers did not arrive in time");
    } else {
        debug!(%peer, "HTTP connection ended by the client: {error}");
    }
}

/// Answers a connection over `HTTP_MAX_CONNECTIONS` with a bare 503 and closes it, within
/// [`REFUSAL_BOUND`].
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":\"this instance is serving its maximum of {max} connections (HTTP_MAX_CONNECTIONS); retry later\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {RETRY_AFTER_SECS}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_BOUND, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read (and discard) the request until the client closes, so our close is a FIN, not a reset.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The service in front of the routes: refuses a foreign or missing `Host` before any route runs,
/// and adds the security headers to every answer.
#[derive(Debug, Clone)]
struct Front<S> {
    inner: S,
    hosts: HostPolicy,
    limits: HttpLimits,
}

type Answer = Result<Response, Infallible>;

impl<S> hyper::service::Service<Request<Incoming>> for Front<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, Map<S::Future, fn(Answer) -> Answer>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        match self.host_check(&request) {
            Ok(()) => Either::Right(self.inner.call(request).map(with_security_headers as fn(Answer) -> Answer)),
            Err(refusal) => {
                self.limits.counters.host_refused.fetch_add(1, Ordering::Relaxed);
                let error = match refusal {
                    HostRefusal::Missing => ApiError::BadRequest(refusal.to_string()),
                    HostRefusal::Foreign(_) => ApiError::Misdirected(refusal.to_string()),
                };
                Either::Left(ready(with_security_headers(Ok(error.into_response()))))
            }
        }
    }
}

impl<S> Front<S> {
    fn host_check(&self, request: &Request<Incoming>) -> Result<(), HostRefusal> {
        // Probes (container health checks, load balancers) address the bot by names we cannot know,
        // and these two answer nothing a rebinding page could use.
        if matches!(request.uri().path(), "/healthz" | "/readyz") {
            return Ok(());
        }
        // An absolute-form target (`GET http://host/ HTTP/1.1`) names the host the client meant.
        let authority = request
            .uri()
            .authority()
            .map(warp::http::uri::Authority::as_str)
            .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()));
        let host_is_garbage = authority.is_none() && request.headers().contains_key(header::HOST);
        if host_is_garbage {
            return Err(HostRefusal::Foreign("(not text)".into()));
        }
        self.hosts.check(authority, matches!(request.version(), Version::HTTP_09 | Version::HTTP_10))
    }
}

/// `nosniff` and `no-referrer` on everything; the page policy on every HTML answer (the pages, and
/// any page a streamer adds under `overlay/`).
#[allow(clippy::unnecessary_wraps)] // The signature is the response future's output, mapped in place.
fn with_security_headers(answer: Answer) -> Answer {
    let Ok(mut response) = answer;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if html {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    Ok(response)
}
