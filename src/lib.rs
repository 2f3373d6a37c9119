//! # cvbot: Twitch chat plays a modular synthesizer
//!
//! A chat line such as `doorway#1.threshold: 89` becomes a control voltage on the Expert Sleepers
//! output routed to that parameter, a few milliseconds later, through Max/MSP over OSC.
//!
//! # Layout
//!
//! One pipeline, one module per stage, each arrow a typed channel or a method call:
//!
//! ```text
//! chat (terminal | demo | twitch | HTTP) ->  command (parse)  ->  gate (roles, rate)  ->  coord (stamp, apply)
//!                                                                                     |-> state (LWW registers)
//!                                                                                     |-> osc (UDP /cv, /routing)
//!                                                                                     |-> outbox -> redis_link
//!                                                                                     |-> http::hub (observer; SSE /events)
//!                                                                                     '-> change feed (structural)
//!                                                                                           '-> routes_file (persist)
//! ```
//!
//! * [`catalog`]: modules, parameters, outputs; validates names.
//! * [`command`]: chat text to [`command::Command`]; pure.
//! * [`gate`]: permissions and rate limits; pure, time injected.
//! * [`state`]: last-writer-wins registers and the hybrid logical clock; pure.
//! * [`coord`]: the one owner of State, behind one short lock taken by the caller.
//! * [`osc`]: the OSC output stage.
//! * [`redis_link`]: Redis pub/sub, state hash, history, presence; the only module knowing the wire format.
//! * [`routes_file`]: the routing file, loaded at start and kept saved.
//! * [`chat`]: the intake and the terminal and demo chat sources.
//! * [`twitch`]: the Twitch chat source: IRC client, roles from badges, throttled replies.
//! * [`http`]: warp routes: overlay and admin pages, SSE (`/events`) through the overlay hub, the JSON
//!   API and `/metrics`; writes become commands for the coordinator.
//! * [`config`]: environment to validated [`config::Config`]; [`secret`]: values that never print, masked URLs (a leaf).
//! * [`stats`]: counters and the log throttle; [`tally`] and [`clock`]: leaves every layer may use.
//! * [`app`]: wiring and supervision: [`app::start`], [`app::run`].

pub mod app;
pub mod catalog;
pub mod chat;
pub mod clock;
pub mod command;
pub mod config;
pub mod coord;
pub mod gate;
pub mod http;
pub mod instances;
pub mod observe;
pub mod osc;
pub mod redis_link;
pub mod routes_file;
pub mod secret;
pub mod state;
pub mod stats;
pub mod tally;
pub mod twitch;

pub use app::{Extras, Listeners, Running, run, start};
pub use config::Config;
