//! The HTTP server (warp): health, state and counters as JSON, and the overlay page.
//!
//! Reads state only through the coordinator's snapshot; never mutates anything. Knows no OSC, Redis
//! wire format or chat grammar.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

use crate::coord::CoordHandle;
use crate::state::StateView;
use crate::stats::{LinkStatus, Stats};

/// The overlay page compiled in, served when `overlay/index.html` is not on disk.
const EMBEDDED_OVERLAY: &str = include_str!("../overlay/index.html");

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpContext {
    pub instance_id: Arc<str>,
    pub value_max: u8,
    pub coord: CoordHandle,
    pub stats: Arc<Stats>,
    /// The Redis link's state, as `/api/state` reports it.
    pub redis_status: watch::Receiver<LinkStatus>,
    pub overlay_dir: PathBuf,
}

/// `/api/state`: the state view plus who is answering.
#[derive(Debug, Serialize)]
pub struct ApiState {
    pub instance_id: String,
    #[serde(flatten)]
    pub state: StateView,
    pub redis: &'static str,
}

/// Serves until `shutdown`; the listener is bound by the caller.
pub async fn serve(listener: TcpListener, ctx: HttpContext, shutdown: CancellationToken) -> anyhow::Result<()> {
    let routes = routes(&ctx);
    warp::serve(routes).incoming(listener).graceful(shutdown.cancelled_owned()).run().await;
    Ok(())
}

fn with<T: Clone + Send>(value: T) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// All routes; public so tests can drive them with `warp::test` as well as over real sockets.
pub fn routes(
    ctx: &HttpContext,
) -> impl Filter<Extract = (impl warp::Reply + use<>,), Error = warp::Rejection> + Clone + use<> {
    let healthz =
        warp::path!("healthz").and(warp::get()).map(|| warp::reply::json(&serde_json::json!({ "status": "ok" })));
    let state = warp::path!("api" / "state").and(warp::get()).and(with(ctx.clone())).then(api_state);
    let stats = warp::path!("api" / "stats")
        .and(warp::get())
        .and(with(ctx.stats.clone()))
        .map(|stats: Arc<Stats>| warp::reply::json(&stats.snapshot()));
    let overlay = warp::path!("overlay").and(warp::get()).and(with(ctx.overlay_dir.clone())).then(overlay_page);
    let static_files = warp::path("overlay").and(warp::fs::dir(ctx.overlay_dir.clone()));
    healthz.or(state).or(stats).or(overlay).or(static_files)
}

async fn api_state(ctx: HttpContext) -> warp::reply::Response {
    use warp::Reply;
    match ctx.coord.snapshot().await {
        Some(state) => {
            let body = ApiState {
                instance_id: ctx.instance_id.to_string(),
                state: state.view(&ctx.instance_id, ctx.value_max),
                redis: ctx.redis_status.borrow().as_str(),
            };
            warp::reply::json(&body).into_response()
        }
        None => warp::reply::with_status("shutting down", StatusCode::SERVICE_UNAVAILABLE).into_response(),
    }
}

async fn overlay_page(dir: PathBuf) -> warp::reply::Response {
    use warp::Reply;
    let page = tokio::fs::read_to_string(dir.join("index.html")).await.unwrap_or_else(|_| EMBEDDED_OVERLAY.to_owned());
    warp::reply::html(page).into_response()
}
