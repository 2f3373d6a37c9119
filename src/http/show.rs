//! Show control over HTTP: the mode (`POST /api/admin/mode`), scenes (`/api/scenes`) and locks
//! (`/api/locks`). Reads are open, writes behind the admin token like every other write.
//!
//! Each write becomes the same `AdminCommand` chat's `!admin mode|scene|lock` makes, submitted to
//! the coordinator as the HTTP operator; the names in a body or path are checked by the same
//! parsers chat uses. Knows no chat grammar, OSC or Redis wire format, and never touches State.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::reply::Response;

use super::admin::{authorized, decode_segment, outcome, write};
use super::writes::{Action, operator};
use super::{ApiError, HttpContext, respond, with};
use crate::command::{AdminCommand, Command, SceneAction};
use crate::coord::{Answer, Done, Outcome};
use crate::show::{LockTarget, MAX_WINDOW_MS, MIN_WINDOW_MS, Mode, SceneName};

/// The show-control routes. `GET /api/scenes` and `GET /api/locks` are open like `/api/state`:
/// the state already shows every scene's name and every lock, and a scene's values are parameter
/// values that were public in `/api/state` when it was saved; nothing in them names a viewer.
pub fn routes(ctx: &HttpContext) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + use<> {
    let mode = warp::path!("api" / "admin" / "mode").and(warp::post()).and(write(ctx, set_mode));
    let scenes = warp::path!("api" / "scenes")
        .and(warp::get())
        .and(with(ctx.clone()))
        .map(|ctx: HttpContext| respond(list_scenes(&ctx)));
    let save = warp::path!("api" / "scenes").and(warp::post()).and(write(ctx, save_scene));
    let recall = warp::path!("api" / "scenes" / String / "recall").and(warp::post()).and(named(ctx)).map(
        |name: String, body: Result<Vec<u8>, ApiError>, ctx: HttpContext| {
            respond(body.and_then(|_| scene_action(&ctx, &name, SceneAction::Recall)))
        },
    );
    let delete = warp::path!("api" / "scenes" / String).and(warp::delete()).and(named(ctx)).map(
        |name: String, body: Result<Vec<u8>, ApiError>, ctx: HttpContext| {
            respond(body.and_then(|_| scene_action(&ctx, &name, SceneAction::Delete)))
        },
    );
    let locks = warp::path!("api" / "locks")
        .and(warp::get())
        .and(with(ctx.clone()))
        .map(|ctx: HttpContext| respond(list_locks(&ctx)));
    let lock = warp::path!("api" / "locks").and(warp::post()).and(write(ctx, lock));
    let unlock = warp::path!("api" / "locks" / String).and(warp::delete()).and(named(ctx)).map(
        |target: String, body: Result<Vec<u8>, ApiError>, ctx: HttpContext| {
            respond(body.and_then(|_| unlock(&ctx, &target)))
        },
    );
    mode.or(scenes)
        .unify()
        .or(save)
        .unify()
        .or(recall)
        .unify()
        .or(delete)
        .unify()
        .or(locks)
        .unify()
        .or(lock)
        .unify()
        .or(unlock)
        .unify()
}

/// A write named by its path (a scene, a lock target): the token checked and the body read (and
/// ignored) before the name is looked at, so a request without the token learns nothing.
fn named(
    ctx: &HttpContext,
) -> impl Filter<Extract = (Result<Vec<u8>, ApiError>, HttpContext), Error = warp::Rejection> + Clone + use<> {
    authorized(ctx).and(with(ctx.clone()))
}

/// Submits an admin command as the HTTP operator. A scene name no scene has is a 404 here (chat
/// answers it in words; a page needs to tell it from a recall that worked).
fn submit(ctx: &HttpContext, command: AdminCommand) -> Result<Value, ApiError> {
    match ctx.coord.submit(&operator(None), Command::Admin(command), Instant::now()) {
        Outcome::Done(Done::Answer(answer @ Answer::NoScene(_))) => {
            Err(ApiError::NotFound(crate::chat::reply::answer(&answer)))
        }
        other => outcome(other),
    }
}

// ---- POST /api/admin/mode ----

/// `{"mode": "democracy", "window_ms": 10000}` or `{"mode": "anarchy"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    mode: String,
    #[serde(default)]
    window_ms: Option<u64>,
}

/// The mode a body asks for, held to the bounds chat is held to.
fn mode(body: &ModeBody) -> Result<Mode, ApiError> {
    let bad = |why: String| Err(ApiError::BadRequest(why));
    match (body.mode.trim().to_ascii_lowercase().as_str(), body.window_ms) {
        ("anarchy", None) => Ok(Mode::Anarchy),
        ("anarchy", Some(_)) => bad("anarchy takes no window_ms".into()),
        ("democracy", Some(ms)) => Mode::democracy(ms)
            .map_or_else(|| bad(format!("window_ms must be from {MIN_WINDOW_MS} to {MAX_WINDOW_MS}")), Ok),
        ("democracy", None) => bad("democracy needs window_ms".into()),
        (other, _) => bad(format!("unknown mode {other:?}: use anarchy or democracy")),
    }
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn set_mode(_: HttpContext, body: ModeBody) -> Result<Action, ApiError> {
    Ok(Action::Submit(operator(None), Command::Admin(AdminCommand::Mode(Some(mode(&body)?)))))
}

// ---- /api/scenes ----

fn scene_name(text: &str) -> Result<SceneName, ApiError> {
    SceneName::parse(text.trim()).ok_or_else(|| {
        let max = SceneName::MAX_CHARS;
        ApiError::BadRequest(format!("a scene name is 1 to {max} letters, digits, - or _; not {text:?}"))
    })
}

/// Every scene with the value of each parameter it holds: `{"intro": {"values": {"doorway#1.gain": 7}}}`.
fn list_scenes(ctx: &HttpContext) -> Result<Value, ApiError> {
    let scenes = ctx.coord.read(|state| {
        let scenes: BTreeMap<String, Value> = state
            .scenes()
            .map(|(name, scene)| {
                let values: BTreeMap<String, u8> =
                    scene.values.iter().map(|(v, value)| (v.to_string(), *value)).collect();
                (name.to_string(), json!({ "values": values }))
            })
            .collect();
        json!(scenes)
    });
    scenes.ok_or_else(|| ApiError::Unavailable("shutting down".into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneBody {
    name: String,
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn save_scene(_: HttpContext, body: SceneBody) -> Result<Action, ApiError> {
    let command = AdminCommand::Scene(SceneAction::Save(scene_name(&body.name)?));
    Ok(Action::Submit(operator(None), Command::Admin(command)))
}

/// A recall or delete of the scene named by a path segment.
fn scene_action(ctx: &HttpContext, segment: &str, action: fn(SceneName) -> SceneAction) -> Result<Value, ApiError> {
    let name = scene_name(&decode_segment(segment))?;
    submit(ctx, AdminCommand::Scene(action(name)))
}

// ---- /api/locks ----

/// The locked targets, `all` first, then module instances, then parameters: `["doorway#1"]`.
fn list_locks(ctx: &HttpContext) -> Result<Value, ApiError> {
    let locks = ctx.coord.read(|state| state.locks().map(ToString::to_string).collect::<Vec<_>>());
    locks.map(|l| json!(l)).ok_or_else(|| ApiError::Unavailable("shutting down".into()))
}

fn lock_target(ctx: &HttpContext, text: &str) -> Result<LockTarget, ApiError> {
    LockTarget::parse(text.trim(), &ctx.catalog).ok_or_else(|| {
        ApiError::BadRequest(format!("unknown lock target {text:?}: use all, a module instance or a variable"))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    target: String,
}

#[allow(clippy::unused_async)] // Write handlers share one async signature.
async fn lock(ctx: HttpContext, body: LockBody) -> Result<Action, ApiError> {
    let target = lock_target(&ctx, &body.target)?;
    Ok(Action::Submit(operator(None), Command::Admin(AdminCommand::Lock { target, locked: true })))
}

/// `DELETE /api/locks/{target}` (`#` written `%23`); `all` lifts every lock, as `!admin unlock all` does.
fn unlock(ctx: &HttpContext, segment: &str) -> Result<Value, ApiError> {
    let target = lock_target(ctx, &decode_segment(segment))?;
    submit(ctx, AdminCommand::Lock { target, locked: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mode: &str, window_ms: Option<u64>) -> ModeBody {
        ModeBody { mode: mode.into(), window_ms }
    }

    #[test]
    fn a_mode_body_is_held_to_the_bounds_chat_is_held_to() {
        assert_eq!(mode(&body("anarchy", None)).ok(), Some(Mode::Anarchy));
        assert_eq!(mode(&body("Democracy", Some(10_000))).ok(), Some(Mode::Democracy { window_ms: 10_000 }));
        assert_eq!(mode(&body("democracy", Some(2_000))).ok(), Some(Mode::Democracy { window_ms: 2_000 }));
        assert_eq!(mode(&body("democracy", Some(120_000))).ok(), Some(Mode::Democracy { window_ms: 120_000 }));
        for bad in [
            body("democracy", Some(1_999)),
            body("democracy", Some(120_001)),
            body("democracy", Some(u64::MAX)),
            body("democracy", None),
            body("anarchy", Some(10_000)),
            body("monarchy", None),
        ] {
            assert!(matches!(mode(&bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }
}
