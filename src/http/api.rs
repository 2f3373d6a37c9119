//! The read-only endpoints: health and readiness, state, counters, catalogue, event health and
//! history, and `/metrics` in the Prometheus text format. History names who did what, so it asks
//! for the admin token like the write endpoints; the rest is open.
//!
//! Reads snapshots and counters only; never submits anything. Knows no OSC, Redis wire format or chat.

use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use warp::Filter;
use warp::reply::Response;

use super::auth::authorize;
use super::hub::HISTORY_RING;
use super::{ApiError, ApiState, HttpContext, respond, with};
use crate::stats::LinkStatus;

/// Entries `/api/events/history` returns when no `limit` is given.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

pub fn routes(ctx: &HttpContext) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + use<> {
    let get = warp::get().and(with(ctx.clone()));
    let healthz = warp::path!("healthz").and(get.clone()).map(|_| respond(Ok(json!({ "status": "ok" }))));
    let readyz = warp::path!("readyz").and(get.clone()).then(readyz);
    let state =
        warp::path!("api" / "state").and(get.clone()).then(|ctx: HttpContext| async move { respond(api_state(&ctx)) });
    let stats = warp::path!("api" / "stats").and(get.clone()).map(|ctx: HttpContext| respond(Ok(ctx.stats.snapshot())));
    let catalog = warp::path!("api" / "catalog").and(get.clone()).map(|ctx: HttpContext| respond(Ok(catalog(&ctx))));
    let health =
        warp::path!("api" / "events" / "health").and(get.clone()).map(|ctx: HttpContext| respond(Ok(health(&ctx))));
    // The token is checked before the query is looked at, so a request without it learns nothing,
    // not even that its query was malformed.
    let query = warp::query::<HistoryQuery>()
        .map(Ok)
        .or(warp::any().map(|| Err(ApiError::BadRequest("the query string cannot be read".into()))))
        .unify();
    let history = warp::path!("api" / "events" / "history")
        .and(get.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(query)
        .then(|ctx: HttpContext, auth: Option<String>, q: Result<HistoryQuery, ApiError>| async move {
            let result = async {
                authorize(&ctx.admin_token, auth.as_deref())?;
                history(&ctx, &q?).await
            };
            respond(result.await)
        });
    let metrics = warp::path!("metrics").and(get).map(|ctx: HttpContext| metrics(&ctx));
    healthz
        .or(readyz)
        .unify()
        .or(state)
        .unify()
        .or(stats)
        .unify()
        .or(catalog)
        .unify()
        .or(health)
        .unify()
        .or(history)
        .unify()
        .or(metrics)
        .unify()
}

pub fn api_state(ctx: &HttpContext) -> Result<ApiState, ApiError> {
    let state = ctx.coord.snapshot().ok_or_else(|| ApiError::Unavailable("shutting down".into()))?;
    Ok(ApiState {
        instance_id: ctx.instance_id.to_string(),
        state: super::view::state_view(&state, &ctx.instance_id, ctx.value_max),
        redis: ctx.redis_status.borrow().as_str(),
    })
}

/// Ready when the coordinator answers (catalogue loaded, state owned) and HTTP is bound (we are
/// answering). Redis is reported, not required: the bot serves local-only without it.
async fn readyz(ctx: HttpContext) -> Response {
    use warp::Reply;
    let redis = ctx.redis_status.borrow().as_str();
    if ctx.coord.is_open() {
        respond(Ok(json!({ "status": "ready", "catalog": true, "http": true, "redis": redis })))
    } else {
        let body = warp::reply::json(&json!({ "status": "shutting down", "redis": redis }));
        warp::reply::with_status(body, warp::http::StatusCode::SERVICE_UNAVAILABLE).into_response()
    }
}

fn catalog(ctx: &HttpContext) -> serde_json::Value {
    let outputs: Vec<serde_json::Value> = ctx
        .catalog
        .outputs()
        .iter()
        .map(|o| {
            let range = ctx.catalog.output_range(o);
            json!({ "name": o.as_str(), "group": ctx.catalog.output_group(o), "range": [range.low, range.high] })
        })
        .collect();
    let modules: Vec<serde_json::Value> = ctx
        .catalog
        .modules()
        .into_iter()
        .map(|(name, (series, instances, parameters))| {
            json!({ "name": name, "series": series, "instances": instances, "parameters": parameters })
        })
        .collect();
    json!({
        "value_max": ctx.catalog.value_max(),
        "max_input_jacks": ctx.catalog.max_input_jacks(),
        "outputs": outputs,
        "modules": modules,
    })
}

/// `/api/events/health`: the mode, the Redis link (status, why it is degraded, probe round trip),
/// the live instances, subscriptions and event counts, and the Twitch connection.
fn health(ctx: &HttpContext) -> serde_json::Value {
    let status = *ctx.redis_status.borrow();
    // Degraded while still serving (Redis full or read-only: events flow, side writes wait) is
    // still hybrid: every instance hears every event.
    let serving = ctx.link.serving.load(std::sync::atomic::Ordering::Relaxed);
    let (mode, healthy) = match status {
        LinkStatus::Connected => ("hybrid", true),
        LinkStatus::Disabled => ("local-only", true),
        LinkStatus::Degraded if serving => ("hybrid", false),
        LinkStatus::Connecting | LinkStatus::Degraded => ("local-only", false),
    };
    let stats = ctx.stats.snapshot();
    let get = |name: &str| stats.get(name).copied().unwrap_or(0);
    json!({
        "status": if healthy { "ok" } else { "degraded" },
        "mode": mode,
        "instance_id": ctx.instance_id.as_ref(),
        "instances": ctx.presence.live_instances(),
        "redis": {
            "status": status.as_str(),
            "connected": status == LinkStatus::Connected,
            "reason": ctx.link.reason(),
            "probe_latency_ms": (status == LinkStatus::Connected).then(|| get("redis_probe_rtt_us") as f64 / 1000.0),
            "reconnects": get("redis_reconnects"),
            // Where the current session is: `standalone`, `sentinel master NAME at HOST:PORT`, `cluster, …`.
            "endpoint": ctx.link.endpoint(),
            "failovers": get("redis_failovers"),
            "outbox_depth": get("redis_outbox_depth"),
            // Registers Redis refused to store (OOM, read-only), written when it accepts writes again.
            "unpersisted": get("redis_unpersisted_depth"),
            // Another publisher using this INSTANCE_ID: how many events, and the last one seen.
            "impostor": {"events": get("redis_impostor_events"), "last": ctx.link.impostor_seen()},
        },
        "subscriptions": {
            "redis_channels": if status == LinkStatus::Disabled { 0 } else { 4 },
            "sse_clients": ctx.hub.clients(),
        },
        "twitch": ctx.twitch_status.borrow().as_str(),
        // How far ahead of this host's clock each peer has stamped events; more than
        // MAX_CLOCK_SKEW_MS and its events are refused.
        "peer_clock_ahead_ms": ctx.link.peer_clocks.snapshot(),
        "events": {
            "published": get("redis_published"),
            "publish_failed": get("redis_publish_failed"),
            "received_redis": get("redis_received"),
            "dropped_redis": crate::redis_link::wire::DropReason::ALL
                .iter()
                .map(|r| get(&format!("redis_dropped_{}", r.label())))
                .sum::<u64>(),
            "received": get("remote_applied"),
            "applied_local": get("local_applied"),
            "stale": get("stale_events"),
            "outbox_overflow": get("outbox_overflow"),
            "sse_client_resyncs": ctx.hub.client_resyncs(),
        },
    })
}

/// `?eventType=&limit=&source=local|redis`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    limit: Option<String>,
    source: Option<String>,
}

const EVENT_TYPES: [&str; 4] = ["parameter_update", "routing_change", "system_broadcast", "admin_command"];

async fn history(ctx: &HttpContext, q: &HistoryQuery) -> Result<serde_json::Value, ApiError> {
    let from_redis = match q.source.as_deref().unwrap_or("local") {
        "local" => false,
        "redis" => true,
        other => return Err(ApiError::BadRequest(format!("source {other:?} is not local or redis"))),
    };
    let kind = q.event_type.as_deref().filter(|t| !t.is_empty());
    if let Some(k) = kind
        && !EVENT_TYPES.contains(&k)
    {
        return Err(ApiError::BadRequest(format!("eventType {k:?} is not one of {}", EVENT_TYPES.join(", "))));
    }
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_HISTORY_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=HISTORY_RING).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be a number from 1 to {HISTORY_RING}")))?,
    };
    if from_redis {
        let Some(redis) = &ctx.redis_history else {
            return Err(ApiError::Unavailable(
                "Redis history is not available: Redis is disabled (ENABLE_REDIS_EVENTS=false); use source=local"
                    .into(),
            ));
        };
        let events = redis.recent(kind, limit).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        return Ok(json!({ "source": "redis", "count": events.len(), "events": events }));
    }
    let events = ctx.hub.history(kind, limit);
    Ok(json!({ "source": "local", "count": events.len(), "events": events }))
}

/// `/metrics`: every `Stats` counter plus the hub's figures, read at scrape time.
fn metrics(ctx: &HttpContext) -> Response {
    use warp::Reply;
    let mut registry = Registry::with_prefix("cvbot");
    for (name, value) in ctx.stats.snapshot() {
        let help = format!("cvbot counter {name} (see /api/stats)");
        registry.register(name, help, ConstCounter::new(value));
    }
    registry.register(
        "sse_client_resyncs",
        "SSE clients whose queue overflowed and were sent a fresh snapshot",
        ConstCounter::new(ctx.hub.client_resyncs()),
    );
    let refused = &ctx.limits.counters;
    registry.register(
        "http_connections_refused",
        "HTTP connections answered 503 because HTTP_MAX_CONNECTIONS were open",
        ConstCounter::new(refused.connections_refused.load(Ordering::Relaxed)),
    );
    registry.register(
        "sse_clients_refused",
        "SSE requests answered 503 because SSE_MAX_CLIENTS streams were open",
        ConstCounter::new(refused.sse_refused.load(Ordering::Relaxed)),
    );
    registry.register(
        "http_host_refused",
        "HTTP requests refused for a missing Host or one not in HTTP_ALLOWED_HOSTS",
        ConstCounter::new(refused.host_refused.load(Ordering::Relaxed)),
    );
    let clients = i64::try_from(ctx.hub.clients()).unwrap_or(i64::MAX);
    registry.register("sse_clients", "SSE clients connected now", ConstGauge::new(clients));
    let connected = i64::from(*ctx.redis_status.borrow() == LinkStatus::Connected);
    registry.register("redis_connected", "1 while the Redis link is connected", ConstGauge::new(connected));
    let peers = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for (peer, ahead) in ctx.link.peer_clocks.snapshot() {
        peers.get_or_create(&vec![("peer", peer)]).set(ahead);
    }
    registry.register(
        "peer_clock_ahead_ms",
        "Furthest ahead of this host's clock each peer has stamped an event",
        peers,
    );
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => {
            warp::reply::with_header(body, "content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                .into_response()
        }
        Err(e) => ApiError::Unavailable(format!("cannot encode metrics: {e}")).into_response(),
    }
}
