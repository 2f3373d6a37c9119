//! Who is live: the instance list `!admin instances` and health report. A leaf: the coordinator
//! asks it, the Redis link fills it, the HTTP layer shows it, and it imports none of them.

use std::sync::Arc;

/// Answers "which instances are online". Local-only mode knows just itself; the Redis link supplies
/// the list its heartbeat reads.
pub trait Presence: Send + Sync + std::fmt::Debug {
    fn live_instances(&self) -> Vec<String>;

    /// The live instances that publish, which democracy's tally ranks (a display-only instance
    /// could apply a verdict only to itself); by default every live one.
    fn talliers(&self) -> Vec<String> {
        self.live_instances()
    }
}

/// Presence when there is no cluster: this instance alone.
#[derive(Debug)]
pub struct Alone(pub Arc<str>);

impl Presence for Alone {
    fn live_instances(&self) -> Vec<String> {
        vec![self.0.to_string()]
    }
}
