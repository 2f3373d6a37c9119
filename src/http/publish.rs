//! `POST /api/events/publish`: the older bot's publish endpoint. Each event becomes a command for
//! the coordinator, as a chat line would, and is shared with every instance from there.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::writes::{Action, message, operator, output, route_volts, variable};
use super::{ApiError, HttpContext};
use crate::command::{AdminCommand, Command};
use crate::stats::LinkStatus;

/// The older bot's publish body: `{"type", "payload", "options": {"localOnly", "redisOnly"}}`.
/// Unknown fields are ignored here (unlike our own bodies): older peers may send more.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    options: PublishOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishOptions {
    #[serde(default)]
    local_only: bool,
    #[serde(default)]
    redis_only: bool,
}

#[derive(Debug, Deserialize)]
struct ParameterPayload {
    variable: String,
    value: serde_json::Value,
    user: Option<String>,
    /// A ramp's length in milliseconds (`RAMP_MAX_MS` bounds it, as in chat).
    #[serde(default, rename = "rampMs")]
    ramp_ms: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RoutingPayload {
    output: String,
    variable: Option<String>,
    action: Option<String>,
    #[serde(default)]
    range: Option<[f32; 2]>,
    #[serde(default)]
    safe: Option<f32>,
    #[serde(default)]
    slew: Option<f32>,
}

#[derive(Debug, Deserialize)]
struct AdminPayload {
    action: String,
    enabled: Option<bool>,
    message: Option<String>,
    admin: Option<String>,
}

fn payload<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("bad payload: {e}")))
}

pub(super) async fn publish(ctx: HttpContext, body: PublishBody) -> Result<Action, ApiError> {
    // Every event is applied here and shared with every instance, which is what keeps them converged;
    // the older API's one-sided options would break that, so they are refused rather than pretended.
    let redis_on = *ctx.redis_status.borrow() != LinkStatus::Disabled;
    if body.options.redis_only {
        return Err(if redis_on {
            ApiError::BadRequest("redisOnly is not supported: events apply locally and reach every instance".into())
        } else {
            ApiError::Unavailable("redisOnly: Redis is disabled (ENABLE_REDIS_EVENTS=false); nothing applied".into())
        });
    }
    if body.options.local_only && redis_on {
        return Err(ApiError::BadRequest(
            "localOnly is not supported while Redis is on: every instance must see every event to converge".into(),
        ));
    }
    let command = match body.kind.as_str() {
        "parameter_update" => {
            let p: ParameterPayload = payload(body.payload)?;
            let variable = variable(&ctx, &p.variable)?;
            let value =
                p.value.as_u64().and_then(|v| u8::try_from(v).ok()).filter(|v| *v <= ctx.value_max).ok_or_else(
                    || ApiError::BadRequest(format!("value must be a whole number from 0 to {}", ctx.value_max)),
                )?;
            return Ok(Action::Submit(
                operator(p.user.as_deref()),
                Command::Set { variable, value, ramp_ms: p.ramp_ms },
            ));
        }
        "routing_change" => {
            let p: RoutingPayload = payload(body.payload)?;
            let output = output(&ctx, &p.output).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            match (p.action.as_deref(), p.variable) {
                (Some("remove"), _) | (None, None) => AdminCommand::Unroute { output },
                (Some("add") | None, Some(v)) => AdminCommand::Route {
                    output,
                    variable: variable(&ctx, &v)?,
                    volts: route_volts(p.range, p.safe, p.slew),
                },
                (Some("add"), None) => return Err(ApiError::BadRequest("routing add needs a variable".into())),
                (Some(other), _) => {
                    return Err(ApiError::BadRequest(format!("routing action {other:?} is not add or remove")));
                }
            }
        }
        "admin_command" => {
            let p: AdminPayload = payload(body.payload)?;
            let command = match p.action.as_str() {
                "clear_all" => AdminCommand::Clear,
                "overlay_toggle" => AdminCommand::Overlay {
                    enabled: p.enabled.ok_or_else(|| ApiError::BadRequest("overlay_toggle needs `enabled`".into()))?,
                },
                "emergency_stop" => AdminCommand::EmergencyStop { message: message(p.message) },
                "resume" => AdminCommand::Resume,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "admin action {other:?} is not clear_all, overlay_toggle, emergency_stop or resume"
                    )));
                }
            };
            return Ok(Action::Submit(operator(p.admin.as_deref()), Command::Admin(command)));
        }
        "system_broadcast" => {
            return Err(ApiError::BadRequest("system_broadcast is not supported yet: nothing applied".into()));
        }
        other => return Err(ApiError::BadRequest(format!("unknown event type {other:?}"))),
    };
    Ok(Action::Submit(operator(None), Command::Admin(command)))
}
