//! One integration-test binary: the real app in-process (`TestApp`) and the built `cvbot` binary,
//! real UDP sockets decoded with rosc, real HTTP, and a local IRC server speaking Twitch's dialect.

mod binary;
mod cluster;
mod fake_twitch;
mod helpers;
mod pipeline;
mod redis_server;
mod twitch;
