//! One integration-test binary: the real app in-process (`TestApp`) and the built `cvbot` binary,
//! real UDP sockets decoded with rosc, real HTTP.

mod binary;
mod cluster;
mod helpers;
mod pipeline;
mod redis_server;
