//! The one protocol by which the stages after the coordinator hear of changes. Below the
//! coordinator and its observers alike, so each imports it downward.

use crate::state::{Change, Event, State};

/// Hears of every change as it is applied: the event that made it (its stamp, instance, user and
/// wall time), what visibly changed, and the state after it. The OSC stage, the overlay hub and the
/// routing file are observers; so is whatever the next stage is.
///
/// Called in the caller's task, under the coordinator's lock, in the order the changes were
/// applied: so an observer must be quick and must never block or await. One that has slow work
/// (a file write) hands it to its own task. For a batch of remote events, observers other than the
/// OSC stage hear the batch's changes after its datagrams are sent, with the state as the batch
/// left it.
pub trait Observer: Send + std::fmt::Debug {
    fn on_change(&mut self, event: &Event, change: &Change, state: &State);
}
