//! The HTTP server (warp, one port): the overlay and admin pages, the SSE feed, the JSON API and
//! Prometheus metrics.
//!
//! Reads state through the coordinator's snapshots and the overlay hub; every write becomes a
//! `Command` submitted to the coordinator (or a chat line through the shared `Intake`), so HTTP never
//! mutates State itself. Knows no OSC addresses, Redis wire format or chat grammar.
//!
//! * [`hub`]: the overlay hub, a coordinator observer (numbering, replay ring, history, per-client queues).
//! * [`sse`]: `GET /events`.
//! * [`api`]: the read-only JSON endpoints and `/metrics`.
//! * [`admin`]: the write endpoints (bearer token).
//! * [`show`]: show control: the mode, scenes and locks (writes behind the same token).
//! * [`commands`]: `GET /commands`, the viewers' page of what to type, with the routed parameters marked.
//! * [`auth`]: the token check.
//! * [`limits`]: header deadline, connection and SSE caps, allowed `Host` names, safe paths.
//! * [`server`]: the accept loop that enforces them in front of the routes.

pub mod admin;
pub mod api;
pub mod auth;
pub mod commands;
pub mod hub;
pub mod limits;
pub mod publish;
pub mod server;
pub mod show;
pub mod sse;
pub mod view;
mod writes;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::catalog::Catalog;
use crate::chat::Intake;
use crate::config::Secret;
use crate::coord::CoordHandle;
use crate::stats::{LinkStatus, Stats};
use view::StateView;

pub use auth::AuthError;
pub use hub::{Hub, HubHandle};
pub use limits::HttpLimits;

/// The overlay page compiled in, served when `overlay/index.html` is not on disk.
const EMBEDDED_OVERLAY: &str = include_str!("../../overlay/index.html");
/// The admin page compiled in, served when `overlay/admin.html` is not on disk.
const EMBEDDED_ADMIN: &str = include_str!("../../overlay/admin.html");
/// The index page at `/` (links to everything below), served when `overlay/home.html` is not on disk.
const EMBEDDED_HOME: &str = include_str!("../../overlay/home.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The pages' scripts and styles (files, because the Content-Security-Policy allows no inline
/// script or style), served from `overlay/` when there and compiled in otherwise, like the pages.
const EMBEDDED_ASSETS: [(&str, &str, &str); 6] = [
    ("overlay.js", JS, include_str!("../../overlay/overlay.js")),
    ("overlay.css", CSS, include_str!("../../overlay/overlay.css")),
    ("admin.js", JS, include_str!("../../overlay/admin.js")),
    ("admin.css", CSS, include_str!("../../overlay/admin.css")),
    ("home.css", CSS, include_str!("../../overlay/home.css")),
    ("commands.css", CSS, include_str!("../../overlay/commands.css")),
];

/// Largest request body accepted by a write endpoint; larger ones get 413 and change nothing.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpContext {
    pub instance_id: Arc<str>,
    pub value_max: u8,
    pub coord: CoordHandle,
    pub stats: Arc<Stats>,
    /// The Redis link's gauges (serving, reason, endpoint, impostor, peer clocks) for health.
    pub link: Arc<crate::redis_link::LinkCounters>,
    /// The Redis link's state, as `/api/state` reports it.
    pub redis_status: watch::Receiver<LinkStatus>,
    pub overlay_dir: PathBuf,
    pub catalog: Arc<Catalog>,
    /// The shared chat front door, for `POST /api/chat`.
    pub intake: Intake,
    pub hub: HubHandle,
    /// `ADMIN_TOKEN`; unset disables every write endpoint.
    pub admin_token: Secret,
    /// Ends open SSE streams so a graceful shutdown is never held up by an overlay.
    pub shutdown: CancellationToken,
    /// Interval of SSE keep-alive comments (`SSE_KEEPALIVE_SECS`).
    pub sse_keepalive: std::time::Duration,
    /// The live instance list (this one alone when Redis is off).
    pub presence: Arc<dyn crate::instances::Presence>,
    /// The Redis history stream, when Redis is enabled.
    pub redis_history: Option<crate::redis_link::history::RedisHistory>,
    /// The Twitch connection, for health.
    pub twitch_status: watch::Receiver<crate::twitch::TwitchStatus>,
    /// Header deadline, connection and SSE caps, allowed hosts (shared counts).
    pub limits: HttpLimits,
}

/// `/api/state`: the state view plus who is answering.
#[derive(Debug, Serialize)]
pub struct ApiState {
    pub instance_id: String,
    #[serde(flatten)]
    pub state: StateView,
    pub redis: &'static str,
}

/// Why a request failed, with the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The coordinator refused the command (e.g. emergency stop is active).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    /// A cap is reached (connections, SSE clients): answered with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// The request named a host this instance does not answer to (421 Misdirected Request).
    #[error("{0}")]
    Misdirected(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Refused(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    pub fn into_response(self) -> Response {
        use warp::Reply;
        let status = self.status();
        let busy = matches!(self, Self::Busy(_));
        let body = warp::reply::json(&serde_json::json!({ "error": self.to_string() }));
        let mut response = warp::reply::with_status(body, status).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", warp::http::HeaderValue::from_static("Bearer"));
        }
        if busy {
            response.headers_mut().insert("retry-after", warp::http::HeaderValue::from(limits::RETRY_AFTER_SECS));
        }
        response
    }
}

/// Turns a handler's result into a response: JSON on success, `{"error": …}` with its status otherwise.
pub fn respond<T: Serialize>(result: Result<T, ApiError>) -> Response {
    use warp::Reply;
    match result {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Serves until `shutdown`; the listener is bound by the caller. Enforces [`HttpLimits`] (see
/// [`server`]); returns within [`server::CLOSE_GRACE`] of `shutdown`.
pub async fn serve(listener: TcpListener, ctx: HttpContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The filter is boxed so each connection holds a pointer to its request's future instead of
    // room for the largest future any route can build (measured: 44 KB per idle SSE connection
    // unboxed, see BENCHMARKS.md).
    let routes = routes(&ctx).boxed();
    let service = hyper_util::service::TowerToHyperService::new(warp::service(routes));
    // Boxed: the accept loop's future lives for the whole run.
    Box::pin(server::run(listener, service, ctx.limits.clone(), shutdown)).await;
    Ok(())
}

pub(crate) fn with<T: Clone + Send>(value: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// All routes; public so tests can drive them with `warp::test` as well as over real sockets.
pub fn routes(
    ctx: &HttpContext,
) -> impl Filter<Extract = (impl warp::Reply + use<>,), Error = warp::Rejection> + Clone + use<> {
    let overlay = warp::path!("overlay")
        .and(warp::get())
        .and(with((ctx.overlay_dir.join("index.html"), EMBEDDED_OVERLAY)))
        .then(page);
    let admin_page = warp::path!("admin")
        .and(warp::get())
        .and(with((ctx.overlay_dir.join("admin.html"), EMBEDDED_ADMIN)))
        .then(page);
    let home =
        warp::path::end().and(warp::get()).and(with((ctx.overlay_dir.join("home.html"), EMBEDDED_HOME))).then(page);
    let assets = warp::path("overlay")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(with(ctx.overlay_dir.clone()))
        .and_then(asset);
    // Only a plain path reaches the file server: `%00` and friends make it log an error (and answer
    // 500), `..` a warning; here they are a quiet 404.
    let static_files = warp::path("overlay")
        .and(warp::path::full())
        .and_then(|path: warp::path::FullPath| async move {
            if limits::path_is_safe(path.as_str()) { Ok(()) } else { Err(warp::reject::not_found()) }
        })
        .untuple_one()
        .and(warp::fs::dir(ctx.overlay_dir.clone()));
    api::routes(ctx)
        .or(admin::routes(ctx))
        .unify()
        .or(show::routes(ctx))
        .unify()
        .or(sse::route(ctx.hub.clone(), ctx.shutdown.clone(), ctx.sse_keepalive, ctx.limits.clone()))
        .unify()
        .or(overlay)
        .unify()
        .or(admin_page)
        .unify()
        .or(home)
        .unify()
        .or(commands::route(ctx))
        .unify()
        .or(assets)
        .unify()
        .or(static_files)
}

/// A page from disk (so a streamer can restyle it without rebuilding), else the compiled-in copy.
async fn page((path, embedded): (PathBuf, &'static str)) -> Response {
    use warp::Reply;
    let page = tokio::fs::read_to_string(path).await.unwrap_or_else(|_| embedded.to_owned());
    // `no-cache`: OBS keeps browser sources for days; a restyled page must show on the next load.
    warp::reply::with_header(warp::reply::html(page), "cache-control", "no-cache").into_response()
}

/// One of [`EMBEDDED_ASSETS`], from `overlay/` when there, else compiled in; other names fall
/// through to the file server.
async fn asset(name: String, dir: PathBuf) -> Result<Response, warp::Rejection> {
    use warp::Reply;
    let Some((file, content_type, embedded)) = EMBEDDED_ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return Err(warp::reject::not_found());
    };
    let text = tokio::fs::read_to_string(dir.join(file)).await.unwrap_or_else(|_| (*embedded).to_owned());
    let reply = warp::reply::with_header(text, "content-type", *content_type);
    Ok(warp::reply::with_header(reply, "cache-control", "no-cache").into_response())
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_limited<S, B>(body: S) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if out.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(out)
}
