//! One integration-test binary: the real app in-process (`TestApp`) and the built `cvbot` binary,
//! real UDP sockets decoded with rosc, real HTTP and SSE, and the overlay in headless Chromium.

mod binary;
mod helpers;
mod http_api;
mod overlay;
mod pipeline;
mod sse;
