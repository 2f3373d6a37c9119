//! The OSC output: turns state changes into UDP datagrams for Max/MSP (or any OSC receiver).
//!
//! The only module that knows OSC addresses and argument lists. [`encode`] builds the messages and
//! holds every voltage inside its output's limit (pure); [`stage`] is the coordinator's first
//! observer, called under its lock with each change and the state after it, so a datagram leaves in
//! the same call that applied the command: no queue, no mirror, nothing to fall behind. A failed
//! send is counted and logged, never fatal.

pub mod encode;
pub mod stage;

pub use encode::{CV_ADDR, Cv, Encoder, HEARTBEAT_ADDR, ROUTING_ADDR};
pub use stage::{OscCounters, OscStage};

/// Which messages to send (`OSC_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OscFormat {
    /// `/cv` and `/routing`, as the existing Max/MSP patches expect.
    Max,
    /// `/lzx/{module}/{instance}/{parameter} f` for every variable, routed or not.
    Address,
    Both,
}

impl OscFormat {
    pub(crate) fn max(self) -> bool {
        matches!(self, Self::Max | Self::Both)
    }
    pub(crate) fn address(self) -> bool {
        matches!(self, Self::Address | Self::Both)
    }
}
