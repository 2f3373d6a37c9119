//! `GET /events`: the overlay hub's events as a text/event-stream, with `Last-Event-ID` resume and
//! keep-alive comments. Every stream ends on the shutdown token, so open overlays never hold up exit.
//! At most `SSE_MAX_CLIENTS` streams are open at once; the next request gets 503 with `Retry-After`.
//!
//! Knows warp's SSE types and the hub's client queue; knows nothing of state, OSC, Redis or chat.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;
use warp::sse::Event;

use super::hub::{Client, HubEvent, HubHandle};
use super::limits::{HttpLimits, SseSlot};
use super::{ApiError, with};

/// How long a browser waits before reconnecting on its own (sent with every snapshot).
pub const RETRY: Duration = Duration::from_secs(1);

/// `?last_event_id=`: a page that re-creates its `EventSource` cannot set the header, so it may pass
/// the id it last saw here.
#[derive(Debug, Deserialize)]
struct Resume {
    last_event_id: Option<String>,
}

/// `keep_alive`: how often an idle stream sends a comment, so proxies and OBS keep the connection open.
/// `limits`: each stream holds one of its SSE slots until it ends or the client goes away.
pub fn route(
    hub: HubHandle,
    shutdown: CancellationToken,
    keep_alive: Duration,
    limits: HttpLimits,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("events")
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::<Resume>().or(warp::any().map(|| Resume { last_event_id: None })).unify())
        .and(with(hub))
        .and(with(shutdown))
        .and(with(keep_alive))
        .and(with(limits))
        .then(events)
}

async fn events(
    header: Option<String>,
    query: Resume,
    hub: HubHandle,
    shutdown: CancellationToken,
    keep_alive: Duration,
    limits: HttpLimits,
) -> warp::reply::Response {
    use warp::Reply;
    // The slot is taken before the hub hears of the client, so a refused request costs the hub nothing.
    let Some(slot) = limits.sse_slot() else {
        return ApiError::Busy(format!(
            "this instance is serving its maximum of {} overlay streams (SSE_MAX_CLIENTS); retry later",
            limits.sse_max()
        ))
        .into_response();
    };
    // An id we cannot read is treated like no id: the client gets a snapshot.
    let last = header.or(query.last_event_id).and_then(|id| id.trim().parse::<u64>().ok());
    match hub.connect(last) {
        Some(client) => {
            let stream = client_stream(client, slot, shutdown);
            warp::sse::reply(warp::sse::keep_alive().interval(keep_alive).text("keep-alive").stream(stream))
                .into_response()
        }
        None => warp::reply::with_status("shutting down", StatusCode::SERVICE_UNAVAILABLE).into_response(),
    }
}

/// The client's queue as a stream; it ends when the server shuts down (or the client goes away and
/// the server drops it, which also drops the client's guard and frees its SSE slot).
fn client_stream(
    client: Client,
    slot: SseSlot,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + Sync + 'static {
    futures_util::stream::unfold((client, slot, shutdown), |(client, slot, shutdown)| async move {
        loop {
            if let Some(event) = client.queue.pop() {
                return Some((Ok(to_sse(&event)), (client, slot, shutdown)));
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = client.queue.ready() => {}
            }
        }
    })
}

fn to_sse(event: &HubEvent) -> Event {
    let sse = Event::default().event(event.name.as_str()).id(event.id.to_string()).data(event.data.as_ref());
    match event.name {
        super::hub::EventName::Snapshot => sse.retry(RETRY),
        super::hub::EventName::Update => sse,
    }
}
