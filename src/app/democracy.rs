//! Democracy's clock: asks the coordinator to decide the windows whose grace ran out, every
//! [`DECIDE_EVERY`] while democracy holds (or verdicts wait their turn) and less often otherwise.
//! A loop and no logic: the tally is the coordinator's (`coord::democracy`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::coord::CoordHandle;

/// How often windows are looked at in democracy: a result lands at most this long after its
/// window's grace.
pub const DECIDE_EVERY: Duration = Duration::from_millis(50);
/// How often the mode is looked at in anarchy (a new democracy's first window lasts at least 2 s).
const IDLE_EVERY: Duration = Duration::from_millis(250);

/// Runs until shutdown or until the coordinator closes.
pub(super) async fn run_democracy(coord: CoordHandle, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut pause = IDLE_EVERY;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => match coord.decide_now() {
                Some(busy) => pause = if busy { DECIDE_EVERY } else { IDLE_EVERY },
                None => return Ok(()),
            },
        }
    }
}
