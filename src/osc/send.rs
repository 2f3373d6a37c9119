//! Messages onto the wire: one datagram each, or gathered into OSC bundles (`OSC_BUNDLE`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rosc::{OscMessage, OscPacket, OscTime};
use tracing::warn;

use super::counters::OscCounters;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rosc::OscType;

    #[test]
    fn a_large_flush_is_split_into_bundles_that_fit_one_ethernet_frame_and_keep_their_order() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_read_timeout(Some(std::time::Duration::from_secs(3))).expect("timeout");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let counters = Arc::new(OscCounters::default());
        let mut wire = Wire::new(socket, vec![receiver.local_addr().expect("addr")], true, counters.clone());
        let message = |i: i32| OscMessage {
            addr: "/cv".into(),
            args: vec![
                OscType::String(format!("esx8cv#{}.out#{}", i / 8 + 1, i % 8 + 1)),
                OscType::Float(0.5),
                OscType::Int(i),
            ],
        };
        for i in 0..64 {
            wire.push(message(i));
        }
        wire.flush();
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while seen.len() < 64 {
            let n = receiver.recv(&mut buf).expect("a bundle");
            assert!(n <= MAX_BUNDLE_BYTES, "a {n}-byte datagram");
            let (_, packet) = rosc::decoder::decode_udp(&buf[..n]).expect("osc");
            let OscPacket::Bundle(bundle) = packet else { panic!("a bundle, not {packet:?}") };
            assert_eq!(bundle.timetag, IMMEDIATELY);
            for p in bundle.content {
                let OscPacket::Message(m) = p else { panic!("messages in the bundle") };
                seen.push(m);
            }
        }
        assert_eq!(seen, (0..64).map(message).collect::<Vec<_>>(), "every message once, in order");
        let bundles = counters.bundles.load(Ordering::Relaxed);
        assert!(bundles >= 2, "64 messages of 36 bytes do not fit one bundle: {bundles}");
        assert_eq!(counters.sent.load(Ordering::Relaxed), bundles, "a bundle is one datagram");
        // A lone message is sent as itself, not wrapped.
        wire.push(message(7));
        wire.flush();
        let n = receiver.recv(&mut buf).expect("a message");
        assert!(matches!(rosc::decoder::decode_udp(&buf[..n]), Ok((_, OscPacket::Message(_)))));
    }
}
