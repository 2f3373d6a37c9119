//! The motion and democracy rows' receivers: every `/cv` message with its arrival time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rosc::{OscPacket, OscType};

/// One `/cv` message as a [`Tap`] received it.
#[derive(Debug)]
pub(crate) struct Heard {
    pub(crate) at: Instant,
    pub(crate) output: String,
    pub(crate) volts: f32,
}

/// What a [`Tap`] got since it was last taken, counted and kept together so the two agree.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Datagrams of any kind (a bundle is one).
    pub(crate) datagrams: u64,
    pub(crate) heard: Vec<Heard>,
}

/// A UDP receiver blocking on a thread of its own, keeping every `/cv` message (bundles unpacked)
/// with its arrival time, and counting datagrams. Stops when dropped.
#[derive(Debug)]
pub(crate) struct Tap {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    pub(crate) fn start() -> anyhow::Result<Tap> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        // Best effort, as in `udp_receiver`: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(8 << 20);
        socket.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
        let socket: std::net::UdpSocket = socket.into();
        // The thread looks at `stop` this often while nothing arrives.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let (log, stop) = (Arc::<Mutex<Log>>::default(), Arc::<AtomicBool>::default());
        let thread = std::thread::Builder::new().name("bench-tap".to_owned()).spawn({
            let (log, stop) = (log.clone(), stop.clone());
            move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = socket.recv(&mut buf) else { continue };
                    let at = Instant::now();
                    let mut got = Vec::new();
                    if let Ok((_, packet)) = rosc::decoder::decode_udp(&buf[..len]) {
                        collect_cv(packet, at, &mut got);
                    }
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.datagrams += 1;
                    log.heard.append(&mut got);
                }
            }
        })?;
        Ok(Tap { addr, log, stop, thread: Some(thread) })
    }

    /// Everything got since the last take.
    pub(crate) fn take(&self) -> Log {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The last voltage heard for `output` since the last take.
    pub(crate) fn last(&self, output: &str) -> Option<f32> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.heard.iter().rev().find(|h| h.output == output).map(|h| h.volts)
    }

    /// How many outputs' last voltage since the last take satisfies `test`.
    pub(crate) fn outputs_at(&self, test: impl Fn(f32) -> bool) -> usize {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last: HashMap<&str, f32> = HashMap::new();
        for h in &log.heard {
            last.insert(&h.output, h.volts);
        }
        last.values().filter(|v| test(**v)).count()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `/cv` messages in `packet` (a message, or a bundle of them).
fn collect_cv(packet: OscPacket, at: Instant, out: &mut Vec<Heard>) {
    match packet {
        OscPacket::Bundle(bundle) => bundle.content.into_iter().for_each(|p| collect_cv(p, at, out)),
        OscPacket::Message(m) if m.addr == cvbot::osc::CV_ADDR => {
            if let (Some(OscType::String(output)), Some(OscType::Float(volts))) = (m.args.first(), m.args.get(1)) {
                out.push(Heard { at, output: output.clone(), volts: *volts });
            }
        }
        OscPacket::Message(_) => {}
    }
}
