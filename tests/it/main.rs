//! One integration-test binary: the real app in-process (`TestApp`) and the built `cvbot` binary,
//! real UDP sockets decoded with rosc, real HTTP.

mod binary;
mod helpers;
mod pipeline;
