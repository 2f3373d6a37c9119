//! Messages onto the wire: one datagram each, or gathered into OSC bundles (`OSC_BUNDLE`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::{OscMessage, OscPacket, OscTime};
use tracing::warn;

use super::stage::OscCounters;
use crate::stats::LogThrottle;

/// The largest bundle datagram: below a typical Ethernet path's payload (1500 bytes less IP and UDP
/// headers), so a bundle to another machine is never fragmented. About twenty `/cv` messages.
const MAX_BUNDLE_BYTES: usize = 1400;

/// A bundle's header: `#bundle\0` and the time tag.
const BUNDLE_HEADER_BYTES: usize = 16;

/// OSC's "immediately" time tag.
const IMMEDIATELY: OscTime = OscTime { seconds: 0, fractional: 1 };

/// The socket, its targets and, when bundling, the messages gathered since the last flush.
#[derive(Debug)]
pub(super) struct Wire {
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    bundle: bool,
    /// Encoded messages waiting for [`Wire::flush`] (bundling only).
    pending: Vec<Vec<u8>>,
    counters: Arc<OscCounters>,
    log: LogThrottle,
}

impl Wire {
    pub(super) fn new(socket: UdpSocket, targets: Vec<SocketAddr>, bundle: bool, counters: Arc<OscCounters>) -> Wire {
        Wire { socket, targets, bundle, pending: Vec::new(), counters, log: LogThrottle::per_minute() }
    }

    /// Sends `message` now, or (bundling) keeps it for the next [`Wire::flush`].
    pub(super) fn push(&mut self, message: OscMessage) {
        let bytes = match rosc::encoder::encode(&OscPacket::Message(message)) {
            Ok(b) => b,
            Err(e) => return self.fail("encode", &format!("{e:?}")),
        };
        if self.bundle {
            self.pending.push(bytes);
        } else {
            self.send(&bytes);
        }
    }

    /// Sends what was gathered: a lone message as itself, more as bundles of at most
    /// [`MAX_BUNDLE_BYTES`], in order. Nothing to do when not bundling.
    pub(super) fn flush(&mut self) {
        match self.pending.len() {
            0 => {}
            1 => {
                let bytes = self.pending.pop().unwrap_or_default();
                self.send(&bytes);
            }
            _ => {
                let pending = std::mem::take(&mut self.pending);
                let mut group: Vec<Vec<u8>> = Vec::new();
                let mut size = BUNDLE_HEADER_BYTES;
                for bytes in pending {
                    // Each element carries a 4-byte length before it.
                    if !group.is_empty() && size + 4 + bytes.len() > MAX_BUNDLE_BYTES {
                        self.send_bundle(&std::mem::take(&mut group));
                        size = BUNDLE_HEADER_BYTES;
                    }
                    size += 4 + bytes.len();
                    group.push(bytes);
                }
                self.send_bundle(&group);
            }
        }
    }

    /// Writes the bundle by hand (`#bundle\0`, the time tag, then each message behind its length),
    /// so messages are encoded once.
    fn send_bundle(&mut self, group: &[Vec<u8>]) {
        if group.len() == 1 {
            return self.send(&group[0]);
        }
        let mut bytes = Vec::with_capacity(MAX_BUNDLE_BYTES);
        bytes.extend_from_slice(b"#bundle\0");
        bytes.extend_from_slice(&IMMEDIATELY.seconds.to_be_bytes());
        bytes.extend_from_slice(&IMMEDIATELY.fractional.to_be_bytes());
        for message in group {
            // An encoded message is a few dozen bytes: its length fits a u32.
            let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(message);
        }
        self.counters.bundles.fetch_add(1, Ordering::Relaxed);
        self.send(&bytes);
    }

    fn send(&self, bytes: &[u8]) {
        for target in &self.targets {
            match self.socket.send_to(bytes, target) {
                Ok(_) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail("send", &format!("{target}: {e}")),
            }
        }
    }

    fn fail(&self, reason: &'static str, detail: &str) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow(reason, Instant::now()) {
            warn!(reason, detail, suppressed, "OSC output failed; the show goes on");
        }
    }
}
