//! One integration-test binary: the real app in-process (`TestApp`) and the built `cvbot` binary,
//! real UDP sockets decoded with rosc, real HTTP and SSE, a local IRC server speaking Twitch's dialect,
//! and the overlay in headless Chromium.

mod binary;
mod cluster;
mod fake_twitch;
mod flood;
mod ha;
mod helpers;
mod http_api;
mod http_limits;
mod index;
mod interop;
mod lifecycle;
mod limits;
mod max_patch;
mod motion;
mod overlay;
mod pipeline;
mod redis_faults;
mod redis_server;
mod redis_tls;
mod safety;
mod scenes_file;
mod show;
mod sse;
mod teach;
mod twitch;
