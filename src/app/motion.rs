//! The OSC stage's clock: steps travelling outputs every `OSC_TICK_MS` while anything travels (and
//! sleeps while nothing does), and beats every `OSC_HEARTBEAT_MS`. Both go through the coordinator's
//! lock, so a step never lands between a stop and its safe values.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::config::MotionConfig;
use crate::coord::CoordHandle;

/// Runs until shutdown (or until the coordinator closes). The heartbeat stops with it, which is how
/// a receiver learns that the bot is gone.
pub(super) async fn run_motion(
    coord: CoordHandle,
    wake: Arc<Notify>,
    config: MotionConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticks = interval(config.osc_tick);
    // A late tick is not made up for: the next step covers the time since the last one.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut beats = config.osc_heartbeat.map(|period| {
        let mut beats = interval(period);
        beats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        beats
    });
    // The start-up replay may already have set outputs travelling.
    let mut moving = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick(), if moving => match coord.tick_now() {
                Some(still) => moving = still,
                None => return Ok(()),
            },
            () = wake.notified(), if !moving => {
                ticks.reset_immediately();
                moving = true;
            }
            () = next_beat(beats.as_mut()) => {
                if !coord.heartbeat() {
                    return Ok(());
                }
            }
        }
    }
}

/// The next heartbeat, or never when the heartbeat is off.
async fn next_beat(beats: Option<&mut Interval>) {
    match beats {
        Some(beats) => {
            beats.tick().await;
        }
        None => std::future::pending().await,
    }
}
