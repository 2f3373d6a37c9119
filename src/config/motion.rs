//! `OSC_TICK_MS`, `OSC_HEARTBEAT_MS`, `OSC_BUNDLE` and `RAMP_MAX_MS`: how the OSC stage moves and
//! beats, read together.

use std::time::Duration;

use super::parse::{at_least, boolean, number};
use super::{ConfigError, Vars, err};
use crate::motion::{DEFAULT_RAMP_MAX_MS, RAMP_LIMIT_MS};

/// How outputs move and how the bot tells a receiver it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotionConfig {
    /// `OSC_TICK_MS`: how often a moving output (slew, ramp) is sent its next step.
    pub osc_tick: Duration,
    /// `OSC_HEARTBEAT_MS`: `/cvbot/heartbeat` to every target this often; `None` when 0 (off).
    pub osc_heartbeat: Option<Duration>,
    /// `OSC_BUNDLE`: what one tick (or one stop, one batch) sends goes out as OSC bundles.
    pub osc_bundle: bool,
    /// `RAMP_MAX_MS`: the longest ramp chat may ask for.
    pub ramp_max_ms: u32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            osc_tick: Duration::from_millis(5),
            osc_heartbeat: Some(Duration::from_secs(1)),
            osc_bundle: false,
            ramp_max_ms: DEFAULT_RAMP_MAX_MS,
        }
    }
}

impl MotionConfig {
    pub(super) fn from_vars(v: &Vars) -> Result<MotionConfig, ConfigError> {
        let osc_tick = Duration::from_millis(at_least("OSC_TICK_MS", v.get("OSC_TICK_MS"), (5, 1, 100))?);
        let heartbeat = number("OSC_HEARTBEAT_MS", v.get("OSC_HEARTBEAT_MS"), 1000, 60_000)?;
        if heartbeat != 0 && heartbeat < 50 {
            return Err(err("OSC_HEARTBEAT_MS", format!("{heartbeat} is smaller than 50 (0 turns the heartbeat off)")));
        }
        let ramp_max =
            number("RAMP_MAX_MS", v.get("RAMP_MAX_MS"), u64::from(DEFAULT_RAMP_MAX_MS), u64::from(RAMP_LIMIT_MS))?;
        Ok(MotionConfig {
            osc_tick,
            osc_heartbeat: (heartbeat > 0).then(|| Duration::from_millis(heartbeat)),
            osc_bundle: boolean("OSC_BUNDLE", v.get("OSC_BUNDLE"), false)?,
            ramp_max_ms: u32::try_from(ramp_max).unwrap_or(RAMP_LIMIT_MS),
        })
    }
}
