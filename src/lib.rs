//! # cvbot: Twitch chat plays a modular synthesizer
//!
//! A chat line such as `doorway#1.threshold: 89` becomes a control voltage on the Expert Sleepers
//! output routed to that parameter, a few milliseconds later, through Max/MSP over OSC.
//!
//! # Layout
//!
//! One pipeline, one module per stage; every stage after the coordinator is an [`observe::Observer`]
//! told of each change in the caller's task:
//!
//! ```text
//! chat (terminal | demo | twitch | HTTP) -> chat::Intake (parse, count) -> coord (gate, stamp, apply to state)
//!                                                                            |-1-> osc::stage (UDP /cv, /routing; ticks moving outputs)
//!                                                                            |-2-> outbox -> redis_link
//!                                                                            '-3-> routes_file, scenes_file, http::hub (SSE /events)
//! redis_link reader (remote events) -> coord (same apply, never back to the outbox)
//! ```
//!
//! * [`catalog`]: modules, parameters, outputs; validates names.
//! * [`command`]: chat text to [`command::Command`]; pure.
//! * [`gate`]: permissions and rate limits; pure, time injected.
//! * [`state`]: last-writer-wins registers and the hybrid logical clock; pure.
//! * [`show`]: show control's values (democracy's mode, lock targets, scenes) and their bounds.
//! * [`coord`]: the one owner of State, behind one short lock taken by the caller.
//! * [`osc`]: the OSC output stage; [`motion`]: ramps and slew steps as pure functions of time (a leaf).
//! * [`redis_link`]: Redis pub/sub, state hash, history, presence; the only module knowing the wire format.
//! * [`routes_file`]: the routing file, loaded at start and kept saved; [`scenes_file`]: the same for scenes.
//! * [`chat`]: the intake, the terminal and demo chat sources, and every reply's words ([`chat::reply`]).
//! * [`twitch`]: the Twitch chat source: IRC client, roles from badges, throttled replies.
//! * [`http`]: warp routes: index, overlay and admin pages, SSE (`/events`) through the overlay hub,
//!   the JSON API and its views, `/metrics`; writes become commands for the coordinator.
//! * [`config`]: environment to validated [`config::Config`]; [`secret`]: values that never print, masked URLs (a leaf).
//! * [`stats`]: the registry of every module's counters, and the log throttle; [`tally`], [`clock`],
//!   [`instances`] (who is live) and [`observe`] (the observer protocol): leaves every layer may use.
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
pub mod motion;
pub mod observe;
pub mod osc;
pub mod redis_link;
pub mod routes_file;
pub mod saved_file;
pub mod scenes_file;
pub mod secret;
pub mod show;
pub mod state;
pub mod stats;
pub mod tally;
pub mod twitch;

pub use app::{Extras, Listeners, Running, run, start};
pub use config::Config;
