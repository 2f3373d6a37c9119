//! The write endpoints, all behind `Authorization: Bearer $ADMIN_TOKEN`: publish an event
//! ([`super::publish`]), inject a chat line, edit routes, and the admin actions (clear, overlay, emergency stop, resume).
//! Show control's writes (mode, scenes, locks) are in [`super::show`], built on the helpers here.
//!
//! The token is checked before the body is read; a refused request changes nothing. Every write is
//! turned into a `Command` and submitted to the coordinator (chat lines go through the shared
//! `Intake`), exactly like a chat command: HTTP never touches State. Knows no OSC or Redis wire format.

use std::time::Instant;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use warp::Filter;
use warp::http::Method;
use warp::reply::Response;

use super::auth::authorize;
pub use super::writes::{Action, HTTP_ADMIN};
use super::writes::{message, operator, output, route_volts, variable};
use super::{ApiError, HttpContext, MAX_BODY_BYTES, read_limited, respond, with};
use crate::catalog::Output;
use crate::command::{AdminCommand, Command};
use crate::coord::{Done, Outcome, Refusal};
use crate::gate::Sender;

/// Longest user name `POST /api/chat` accepts (Twitch logins are at most 25 characters).
pub const MAX_USER_CHARS: usize = 64;

pub fn routes(ctx: &HttpContext) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + use<> {
    let session = warp::path!("api" / "admin" / "session")
        .and(warp::get())
        .and(authorized(ctx))
        .map(|checked: Result<Vec<u8>, ApiError>| respond(checked.map(|_| json!({ "ok": true }))));
    let publish = warp::path!("api" / "events" / "publish").and(warp::post()).and(write(ctx, super::publish::publish));
    let chat = warp::path!("api" / "chat").and(warp::post()).and(write(ctx, chat));
    let clear =
        warp::path!("api" / "admin" / "clear").and(warp::post()).and(write(ctx, |_: HttpContext, _: Empty| clear()));
    let overlay = warp::path!("api" / "admin" / "overlay").and(warp::post()).and(write(ctx, overlay));
    let stop = warp::path!("api" / "admin" / "emergency-stop").and(warp::post()).and(write(ctx, emergency_stop));
    let resume =
        warp::path!("api" / "admin" / "resume").and(warp::post()).and(write(ctx, |_: HttpContext, _: Empty| resume()));
    let route_post = warp::path!("api" / "routes").and(warp::post()).and(write(ctx, post_route));
    let route_get = warp::path!("api" / "routes" / String)
        .and(warp::get())
        .and(with(ctx.clone()))
        .then(|output: String, ctx: HttpContext| async move { respond(get_route(&ctx, &output)) });
    let route_write =
        warp::path!("api" / "routes" / String).and(warp::method()).and(authorized(ctx)).and(with(ctx.clone())).then(
            |output: String, method: Method, body: Result<Vec<u8>, ApiError>, ctx: HttpContext| async move {
                respond(write_route(&ctx, &output, &method, body))
            },
        );
    session
        .or(publish)
        .unify()
        .or(chat)
        .unify()
        .or(clear)
        .unify()
        .or(overlay)
        .unify()
        .or(stop)
        .unify()
        .or(resume)
        .unify()
        .or(route_post)
        .unify()
        .or(route_get)
        .unify()
        .or(route_write)
        .unify()
}

/// The token check, then the body (at most [`MAX_BODY_BYTES`]). A refused token means the body is
/// never read.
pub(super) fn authorized(
    ctx: &HttpContext,
) -> impl Filter<Extract = (Result<Vec<u8>, ApiError>,), Error = warp::Rejection> + Clone + use<> {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("content-length"))
        .and(warp::body::stream())
        .and(with(ctx.admin_token.clone()))
        .then(|auth: Option<String>, length: Option<String>, body, token| async move {
            authorize(&token, auth.as_deref())?;
            if length.and_then(|l| l.trim().parse::<usize>().ok()).is_some_and(|l| l > MAX_BODY_BYTES) {
                return Err(ApiError::TooLarge);
            }
            read_limited(body).await
        })
}

/// An authorised write whose body is the JSON `T` (an empty body counts as `{}` for optional ones).
pub(super) fn write<T, F, Fut>(
    ctx: &HttpContext,
    handler: F,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + use<T, F, Fut>
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(HttpContext, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ApiError>> + Send + 'static,
{
    authorized(ctx).and(with(ctx.clone())).then(move |body: Result<Vec<u8>, ApiError>, ctx: HttpContext| {
        let handler = handler.clone();
        async move {
            let result = async {
                let body = parse_json::<T>(&body?)?;
                match handler(ctx.clone(), body).await? {
                    Action::Submit(sender, command) => submit(&ctx, &sender, command),
                    Action::Answer(value) => Ok(value),
                }
            };
            respond(result.await)
        }
    })
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Submits through the coordinator and says what happened.
fn submit(ctx: &HttpContext, sender: &Sender, command: Command) -> Result<serde_json::Value, ApiError> {
    outcome(ctx.coord.submit(sender, command, Instant::now()))
}

pub(super) fn outcome(outcome: Outcome) -> Result<serde_json::Value, ApiError> {
    match outcome {
        Outcome::Done(done) => Ok(done_json(&done)),
        Outcome::Refused(r @ Refusal::ShuttingDown) => Err(ApiError::Unavailable(r.to_string())),
        // Values no route or ramp may have: the request is wrong, not the moment.
        Outcome::Refused(r @ (Refusal::OutOfLimit { .. } | Refusal::BadSlew { .. } | Refusal::RampTooLong { .. })) => {
            Err(ApiError::BadRequest(r.to_string()))
        }
        Outcome::Refused(r) => Err(ApiError::Refused(r.to_string())),
    }
}

/// A done command as a write answers it: `applied`, the reply's words, and for a democracy vote
/// (which chat answers with nothing) where its parameter's vote stands.
fn done_json(done: &Done) -> serde_json::Value {
    let mut answer = json!({ "applied": true, "reply": crate::chat::reply::done(done) });
    if let Done::Voted { variable, tally } = done {
        answer["vote"] = json!({"variable": variable.to_string(), "votes": tally.votes, "median": tally.median});
    }
    answer
}

// ---- POST /api/chat ----

/// A chat message from another platform (or a test): it takes the same parser and gate as Twitch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    user: String,
    text: String,
    #[serde(default)]
    badges: Vec<String>,
    #[serde(default)]
    user_id: Option<String>,
}

async fn chat(ctx: HttpContext, body: ChatBody) -> Result<Action, ApiError> {
    let user = body.user.trim();
    if user.is_empty() || user.chars().count() > MAX_USER_CHARS || user.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("user must be 1 to {MAX_USER_CHARS} printable characters")));
    }
    let mut sender = Sender::viewer(user);
    sender.user_id = body.user_id;
    for badge in &body.badges {
        match badge.to_ascii_lowercase().as_str() {
            "broadcaster" => sender.broadcaster = true,
            "moderator" => sender.moderator = true,
            "vip" => sender.vip = true,
            "subscriber" => sender.subscriber = true,
            other => return Err(ApiError::BadRequest(format!("unknown badge {other:?}"))),
        }
    }
    let result = match ctx.intake.submit(&sender, &body.text) {
        Outcome::Done(done) => done_json(&done),
        Outcome::Refused(reason) => json!({ "applied": false, "refused": reason.to_string() }),
    };
    Ok(Action::Answer(result))
}

// ---- admin actions ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn clear() -> Result<Action, ApiError> {
    Ok(Action::Submit(operator(None), Command::Admin(AdminCommand::Clear)))
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn resume() -> Result<Action, ApiError> {
    Ok(Action::Submit(operator(None), Command::Admin(AdminCommand::Resume)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayBody {
    enabled: bool,
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn overlay(_: HttpContext, body: OverlayBody) -> Result<Action, ApiError> {
    Ok(Action::Submit(operator(None), Command::Admin(AdminCommand::Overlay { enabled: body.enabled })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    #[serde(default)]
    message: Option<String>,
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn emergency_stop(_: HttpContext, body: StopBody) -> Result<Action, ApiError> {
    let command = AdminCommand::EmergencyStop { message: message(body.message) };
    Ok(Action::Submit(operator(None), Command::Admin(command)))
}

// ---- /api/routes ----

/// Path segments arrive percent-encoded (`es9out%231`); output names are ASCII.
pub(super) fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(h)), Some(Some(l))) =
                (bytes.get(i + 1).map(|b| hex(*b)), bytes.get(i + 2).map(|b| hex(*b)))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get_route(ctx: &HttpContext, segment: &str) -> Result<serde_json::Value, ApiError> {
    let output = output(ctx, &decode_segment(segment))?;
    let state = ctx.coord.snapshot().ok_or_else(|| ApiError::Unavailable("shutting down".into()))?;
    let route = state.route(&output);
    Ok(json!({
        "output": output.as_str(),
        "variable": route.map(|r| r.variable.to_string()),
        "range": route.map(|r| [r.range.low, r.range.high]),
        "safe": route.map(|r| r.safe),
        "slew": route.map(|r| r.slew),
    }))
}

/// `PUT /api/routes/{output}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    variable: String,
    #[serde(default)]
    range: Option<[f32; 2]>,
    #[serde(default)]
    safe: Option<f32>,
    /// Volts per second; 0 or absent = no slew limit.
    #[serde(default)]
    slew: Option<f32>,
}

fn write_route(
    ctx: &HttpContext,
    segment: &str,
    method: &Method,
    body: Result<Vec<u8>, ApiError>,
) -> Result<serde_json::Value, ApiError> {
    let body = body?;
    let output = output(ctx, &decode_segment(segment))?;
    let command = match *method {
        Method::PUT => route(ctx, output, &parse_json(&body)?)?,
        Method::DELETE => AdminCommand::Unroute { output },
        _ => return Err(ApiError::BadRequest("use GET, PUT or DELETE".into())),
    };
    submit(ctx, &operator(None), Command::Admin(command))
}

/// `POST /api/routes`'s body: a PUT's, with the output in it rather than in the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRouteBody {
    output: String,
    variable: String,
    #[serde(default)]
    range: Option<[f32; 2]>,
    #[serde(default)]
    safe: Option<f32>,
    #[serde(default)]
    slew: Option<f32>,
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn post_route(ctx: HttpContext, body: NewRouteBody) -> Result<Action, ApiError> {
    let NewRouteBody { output: name, variable, range, safe, slew } = body;
    let command = route(&ctx, output(&ctx, &name)?, &RouteBody { variable, range, safe, slew })?;
    Ok(Action::Submit(operator(None), Command::Admin(command)))
}

/// The route command both route writes make; the coordinator checks the voltages and the slew.
fn route(ctx: &HttpContext, output: Output, body: &RouteBody) -> Result<AdminCommand, ApiError> {
    let variable = variable(ctx, &body.variable)?;
    Ok(AdminCommand::Route { output, variable, volts: route_volts(body.range, body.safe, body.slew) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_segment("es9out%231"), "es9out#1");
        assert_eq!(decode_segment("esx8cv%232.out%233"), "esx8cv#2.out#3");
        assert_eq!(decode_segment("plain"), "plain");
        assert_eq!(decode_segment("bad%2"), "bad%2");
        assert_eq!(decode_segment("%zz"), "%zz");
    }
}
