//! The wire format: the JSON envelope the older JavaScript bots already speak, plus our optional
//! top-level additions (`v`, `id`, `seq`, `hlc`, `sig`).
//!
//! Pure: bytes in, a domain [`Event`] (or a [`DropReason`]) out, and back. Only this module and its
//! parent know the envelope; the coordinator and State only ever see `Event`s.
//!
//! Its parts, used from outside only through what is re-exported here:
//!
//! * `encode`: events to envelopes (a typed fast path for the chat-rate `parameter_update`);
//! * `decode`: envelopes to events, every check and drop reason (the same fast path back);
//! * `routing`: the shapes of `routingData`, each route held to the output's limit;
//! * `sign`: HMAC-SHA256 signatures over the envelope without its `sig`;
//! * `admission`: the clock rules (skew, replay age) an event meets before it is applied;
//! * `instance`: requests on one instance's own command channel;
//! * `keys`: the state hash's field and order key for an event;
//! * `reason`: why a payload was dropped.

mod admission;
mod decode;
mod encode;
mod instance;
mod keys;
mod reason;
mod routing;
mod sign;

use crate::state::Event;

pub use admission::{Admission, Origin, admit, ahead_ms};
pub use decode::{Decoded, decode, decode_all};
pub use encode::{Encoded, encode};
pub use instance::{InstanceCommand, decode_command, encode_command};
pub use keys::{is_register, order_key, register_key};
pub use reason::DropReason;
pub use sign::Signer;

/// Payloads larger than this are dropped unread.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Schema version of our additions.
pub const WIRE_VERSION: u64 = 1;

/// The four event channels, without the key prefix.
pub const PARAMETER_CHANNEL: &str = "cv:parameter:update";
pub const ROUTING_CHANNEL: &str = "cv:routing:change";
pub const SYSTEM_CHANNEL: &str = "cv:system:broadcast";
pub const ADMIN_CHANNEL: &str = "cv:admin:command";
/// Show control (votes, the mode, locks, scenes): ours alone, so older bots, which could not honour
/// them, never hear of them (they hear a vote's result as an ordinary `parameter_update`).
pub const SHOW_CHANNEL: &str = "cv:show:control";
/// The event channels in a fixed order (for per-channel counters).
pub const EVENT_CHANNELS: [&str; 5] = [PARAMETER_CHANNEL, ROUTING_CHANNEL, SYSTEM_CHANNEL, ADMIN_CHANNEL, SHOW_CHANNEL];

/// What an incoming payload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A state event to apply (`seq` when the sender is one of us, for gap detection).
    Event { event: Event, seq: Option<u64> },
    /// An `admin_command` audit record: logged and kept in history, never applied (the matching
    /// `system_broadcast` or `routing_change` carries the state change).
    Audit { source: String, command: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, VoltRange};
    use crate::state::{EventKind, Hlc, LockTarget, Mode, Route, Scene, SceneName, Stamp};

    pub(super) fn catalog() -> Catalog {
        Catalog::builtin()
    }

    pub(super) fn ev(kind: EventKind) -> Event {
        Event {
            stamp: Stamp { hlc: Hlc::from_wall_ms(1_703_097_600_000) + 3, instance: "bot-001".into() },
            wall_ms: 1_703_097_600_000,
            user: "ann".into(),
            kind,
        }
    }

    fn round_trip(event: &Event, signer: Option<&Signer>) -> Event {
        let encoded = encode(event, 7, signer);
        match decode(encoded.payload.as_bytes(), &catalog(), signer).expect("decodes") {
            Incoming::Event { event, seq } => {
                assert_eq!(seq, Some(7));
                event
            }
            Incoming::Audit { .. } => panic!("expected an event"),
        }
    }

    #[test]
    fn every_event_kind_round_trips() {
        let c = catalog();
        let var = c.parse_variable("doorway#1.threshold").expect("var");
        let out = c.output("es9out#1").expect("out");
        let mut scene = Scene::default();
        scene.values.insert(var.clone(), 12);
        scene.values.insert(c.parse_variable("arch#1.inputJack#2").expect("var"), 127);
        let kinds = vec![
            EventKind::Set { variable: var.clone(), value: 127, ramp: None },
            EventKind::Set {
                variable: var.clone(),
                value: 3,
                ramp: Some(crate::motion::Ramp { from: 100.25, ms: 2000 }),
            },
            EventKind::Route { output: out.clone(), route: Some(Route::new(var.clone(), VoltRange::LZX)) },
            EventKind::Route {
                output: out.clone(),
                route: Some(Route { slew: 0.3, ..Route::new(var.clone(), VoltRange::LZX) }),
            },
            EventKind::Route {
                output: out.clone(),
                route: Some(Route { variable: var, range: VoltRange { low: 0.8, high: 0.2 }, safe: 0.5, slew: 0.0 }),
            },
            EventKind::Route { output: out, route: None },
            EventKind::Overlay { enabled: false },
            EventKind::Emergency { active: true, message: Some("too bright".into()) },
            EventKind::Emergency { active: false, message: None },
            EventKind::ClearAll,
            EventKind::Mode { mode: Mode::Democracy { window_ms: 10_000 } },
            EventKind::Mode { mode: Mode::Anarchy },
            EventKind::Lock { target: LockTarget::All, locked: true },
            EventKind::Lock { target: LockTarget::Module { module: "doorway".into(), instance: 2 }, locked: false },
            EventKind::Lock {
                target: LockTarget::Param(c.parse_variable("doorway#1.gain").expect("var")),
                locked: true,
            },
            EventKind::Scene { name: SceneName::parse("intro").expect("name"), scene: Some(scene) },
            EventKind::Scene { name: SceneName::parse("intro").expect("name"), scene: None },
            EventKind::Vote { variable: c.parse_variable("doorway#1.gain").expect("var"), value: 30 },
        ];
        let signer = Signer::new(b"k");
        for kind in kinds {
            let e = ev(kind);
            assert_eq!(round_trip(&e, None), e);
            assert_eq!(round_trip(&e, Some(&signer)), e);
        }
    }
}
