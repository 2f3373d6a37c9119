//! `GET /events`: the overlay hub's events as a text/event-stream, with `Last-Event-ID` resume and
//! keep-alive comments. Every stream ends on the shutdown token, so open overlays never hold up exit.
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
use super::with;

/// How long a browser waits before reconnecting on its own (sent with every snapshot).
pub const RETRY: Duration = Duration::from_secs(1);

/// `?last_event_id=`: a page that re-creates its `EventSource` cannot set the header, so it may pass
/// the id it last saw here.
#[derive(Debug, Deserialize)]
struct Resume {
    last_event_id: Option<String>,
}

/// `keep_alive`: how often an idle stream sends a comment, so proxies and OBS keep the connection open.
pub fn route(
    hub: HubHandle,
    shutdown: CancellationToken,
    keep_alive: Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("events")
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::<Resume>().or(warp::any().map(|| Resume { last_event_id: None })).unify())
        .and(with(hub))
        .and(with(shutdown))
        .and(with(keep_alive))
        .then(events)
}

async fn events(
    header: Option<String>,
    query: Resume,
    hub: HubHandle,
    shutdown: CancellationToken,
    keep_alive: Duration,
) -> warp::reply::Response {
    use warp::Reply;
    // An id we cannot read is treated like no id: the client gets a snapshot.
    let last = header.or(query.last_event_id).and_then(|id| id.trim().parse::<u64>().ok());
    match hub.connect(last) {
        Some(client) => {
            let stream = client_stream(client, shutdown);
            warp::sse::reply(warp::sse::keep_alive().interval(keep_alive).text("keep-alive").stream(stream))
                .into_response()
        }
        None => warp::reply::with_status("shutting down", StatusCode::SERVICE_UNAVAILABLE).into_response(),
    }
}

/// The client's queue as a stream; it ends when the server shuts down (or the client goes away and
/// warp drops it, which also drops the client's guard).
fn client_stream(
    client: Client,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + Sync + 'static {
    futures_util::stream::unfold((client, shutdown), |(client, shutdown)| async move {
        loop {
            if let Some(event) = client.queue.pop() {
                return Some((Ok(to_sse(&event)), (client, shutdown)));
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
