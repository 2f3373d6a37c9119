//! The physical floor, measured in the same run: UDP loopback one-way, Redis pub/sub one-way, the two
//! chained (what a cross-instance command cannot beat), and raw pub/sub throughput.
//!
//! A floor is laid out like the path it is the floor of: whatever runs in a bot instance runs on a
//! runtime of its own thread ([`Side`]), and the receiver (Max/MSP's stand-in) runs in the bench's
//! runtime. So a floor pays the same wake-ups the bot pays and differs only by the bot's own work.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::measure::Samples;
use super::{Pacer, Side, udp_receiver};
use redis::aio::MultiplexedConnection;

/// UDP loopback one-way at `rate`: the sender on its own runtime (as the bot is), the receiver here
/// (as Max/MSP is another process). Each datagram carries its send time.
pub async fn udp_one_way(n: usize, rate: u32) -> anyhow::Result<Samples> {
    let receiver = udp_receiver().await?;
    let target = receiver.local_addr()?;
    let origin = Instant::now();
    let reader = tokio::spawn(stamped_datagrams(receiver, n, origin));
    let side = Side::start("bench-udp-sender")?;
    let sending = side.spawn(async move {
        let sender = UdpSocket::bind("127.0.0.1:0").await?;
        let mut pacer = Pacer::new(rate);
        for _ in 0..n {
            pacer.wait().await;
            let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).to_string();
            sender.send_to(ns.as_bytes(), target).await?;
        }
        anyhow::Ok(())
    });
    sending.await??;
    side.stop().await;
    Ok(reader.await?)
}

/// Redis pub/sub one-way at `rate`: a plain publisher and subscriber (redis-rs) in this runtime.
pub async fn redis_one_way(url: &str, n: usize, rate: u32) -> anyhow::Result<Samples> {
    let client = redis::Client::open(url)?;
    let mut publisher = cvbot_testbed::redis_process::connect(url).await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = format!("bench:floor:{}", fastrand::u64(..));
    pubsub.subscribe(&channel).await?;
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut samples = Samples::with_capacity(n);
        let mut stream = pubsub.into_on_message();
        while samples.len() < n {
            let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await else { break };
            let sent_ns = parse_ns(message.get_payload_bytes());
            samples.push(origin.elapsed().saturating_sub(Duration::from_nanos(sent_ns)));
        }
        samples
    });
    let mut pacer = Pacer::new(rate);
    for _ in 0..n {
        pacer.wait().await;
        let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _: u64 = redis::cmd("PUBLISH").arg(&channel).arg(ns.to_string()).query_async(&mut publisher).await?;
    }
    Ok(reader.await?)
}

/// Receives up to `n` datagrams that carry their send time (decimal nanoseconds since `origin`) and
/// returns their one-way latencies; stops early after 2 s of silence.
async fn stamped_datagrams(receiver: UdpSocket, n: usize, origin: Instant) -> Samples {
    let mut samples = Samples::with_capacity(n);
    let mut buf = [0u8; 64];
    while samples.len() < n {
        let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), receiver.recv(&mut buf)).await else {
            break;
        };
        let got = origin.elapsed();
        samples.push(got.saturating_sub(Duration::from_nanos(parse_ns(&buf[..len]))));
    }
    samples
}

fn parse_ns(payload: &[u8]) -> u64 {
    let stamp = payload.split(|&b| b == b' ').next().unwrap_or_default();
    std::str::from_utf8(stamp).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// How a relay floor's publisher hands each message to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// A bare `PUBLISH`: the physical floor.
    Plain,
    /// The bot's own atomic publish script (register only-if-newer, history `XADD`, `PUBLISH`) with
    /// arguments shaped like a parameter update.
    Script,
    /// The script, with the publisher's side also subscribed (before the relay, as instance A is
    /// before B) and reading every message: every instance hears its own events, so Redis writes
    /// to one more socket and wakes one more thread per event. The floor of the path the design
    /// prescribes.
    ScriptHeard,
}

/// The floor of a cross-instance command, laid out as the real path is: a publisher on its own
/// runtime (instance A), a subscriber on another (instance B) that forwards each message as a UDP
/// datagram, and the UDP receiver back here. Both Redis ends use the raw connection, the cheapest
/// client there is, so what the bot adds on top is its own work.
pub async fn redis_relay(url: &str, n: usize, rate: u32, how: Publish) -> anyhow::Result<Samples> {
    redis_relay_between(url, url, n, rate, how).await
}

/// [`redis_relay`] with the publisher on the server at `publish_url` and the relay subscribed on the
/// one at `subscribe_url`: on a Cluster, a `PUBLISH` on one node is heard on every node.
pub async fn redis_relay_between(
    publish_url: &str,
    subscribe_url: &str,
    n: usize,
    rate: u32,
    how: Publish,
) -> anyhow::Result<Samples> {
    let url = publish_url;
    let receiver = udp_receiver().await?;
    let target = receiver.local_addr()?;
    let channel = format!("bench:relay:{}", fastrand::u64(..));
    let stop = CancellationToken::new();
    let publisher_side = Side::start("bench-publisher")?;
    let echo = if how == Publish::ScriptHeard {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let echo = publisher_side.spawn(relay_messages(url.to_owned(), channel.clone(), None, ready_tx, stop.clone()));
        ready_rx.await??;
        Some(echo)
    } else {
        None
    };
    let relay_side = Side::start("bench-relay")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let relay = relay_side.spawn(relay_messages(
        subscribe_url.to_owned(),
        channel.clone(),
        Some(target),
        ready_tx,
        stop.clone(),
    ));
    ready_rx.await??;
    let origin = Instant::now();
    let reader = tokio::spawn(stamped_datagrams(receiver, n, origin));
    let url = url.to_owned();
    let publishing = publisher_side.spawn(async move {
        let mut publisher = cvbot_testbed::redis_process::connect(&url).await?;
        let mut script = match how {
            Publish::Plain => None,
            Publish::Script | Publish::ScriptHeard => Some(ScriptArgs::load(&mut publisher, &channel).await?),
        };
        let mut pacer = Pacer::new(rate);
        for i in 0..n {
            pacer.wait().await;
            let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).to_string();
            match script.as_mut() {
                None => {
                    let _: u64 = redis::cmd("PUBLISH").arg(&channel).arg(&ns).query_async(&mut publisher).await?;
                }
                Some(args) => args.publish(&mut publisher, i, &ns).await?,
            }
        }
        if let Some(args) = script {
            args.clean_up(&mut publisher).await?;
        }
        anyhow::Ok(())
    });
    publishing.await??;
    let samples = reader.await?;
    stop.cancel();
    let _ = relay.await;
    if let Some(echo) = echo {
        let _ = echo.await;
    }
    publisher_side.stop().await;
    relay_side.stop().await;
    Ok(samples)
}

/// The publish script's arguments for [`Publish::Script`], on keys of the floor's own.
struct ScriptArgs {
    sha: String,
    state: String,
    history: String,
    channel: String,
    min_id: String,
    /// Pads each payload to the size of a real parameter-update envelope.
    padding: String,
}

impl ScriptArgs {
    async fn load(publisher: &mut MultiplexedConnection, channel: &str) -> anyhow::Result<ScriptArgs> {
        let sha: String =
            redis::cmd("SCRIPT").arg("LOAD").arg(cvbot::redis_link::PUBLISH_SCRIPT).query_async(publisher).await?;
        Ok(ScriptArgs {
            sha,
            state: format!("{channel}:state"),
            history: format!("{channel}:history"),
            channel: channel.to_owned(),
            min_id: cvbot::clock::wall_ms_now().saturating_sub(3_600_000).to_string(),
            padding: "x".repeat(ENVELOPE_BYTES),
        })
    }

    /// One message: `ns` first in the payload (the relay forwards it; the receiver reads up to the
    /// first space), one of 64 registers, always newer, so every call writes as the bot's do.
    async fn publish(&mut self, publisher: &mut MultiplexedConnection, i: usize, ns: &str) -> anyhow::Result<()> {
        let register = format!("p:floor#{}.value", i % 64);
        let order = format!("{i:020}");
        let payload = format!("{ns} {}", self.padding);
        let _: redis::Value = redis::cmd("EVALSHA")
            .arg(&self.sha)
            .arg(2)
            .arg(&self.state)
            .arg(&self.history)
            .arg(register)
            .arg(order)
            .arg(payload)
            .arg(&self.channel)
            .arg(&self.min_id)
            .arg("parameter_update")
            .arg("")
            .arg("")
            .query_async(publisher)
            .await?;
        Ok(())
    }

    async fn clean_up(self, publisher: &mut MultiplexedConnection) -> anyhow::Result<()> {
        let _: u64 = redis::cmd("DEL").arg(&self.state).arg(&self.history).query_async(publisher).await?;
        Ok(())
    }
}

/// About the size of a parameter-update envelope on the wire.
const ENVELOPE_BYTES: usize = 240;

/// The relay's side of [`redis_relay`]: subscribe, then forward every payload to `target`; without
/// a target, read and drop every message (the publisher's own subscription).
async fn relay_messages(
    url: String,
    channel: String,
    target: Option<std::net::SocketAddr>,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    stop: CancellationToken,
) {
    let setup = async {
        let mut pubsub = redis::Client::open(url.as_str())?.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let subscriber = pubsub.into_on_message();
        let forward = match target {
            Some(target) => Some((UdpSocket::bind("127.0.0.1:0").await?, target)),
            None => None,
        };
        anyhow::Ok((subscriber, forward))
    };
    let (mut subscriber, forward) = match setup.await {
        Ok(parts) => {
            let _ = ready.send(Ok(()));
            parts
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            read = subscriber.next() => match read { Some(m) => m, None => return },
        };
        if let Some((socket, target)) = &forward {
            let _ = socket.send_to(message.get_payload_bytes(), target).await;
        }
    }
}

/// Raw sustained pub→sub throughput: `n` messages published in pipelined batches as fast as Redis
/// takes them; messages per second until the subscriber has them all.
pub async fn redis_throughput(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut publisher = cvbot_testbed::redis_process::connect(url).await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = format!("bench:tput:{}", fastrand::u64(..));
    pubsub.subscribe(&channel).await?;
    let payload = "x".repeat(160);
    let reader = tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        let mut count = 0usize;
        while count < n {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(_)) => count += 1,
                _ => break,
            }
        }
        (count, Instant::now())
    });
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            pipe.cmd("PUBLISH").arg(&channel).arg(&payload).ignore();
        }
        let () = pipe.query_async(&mut publisher).await?;
    }
    let (count, done) = reader.await?;
    Ok(count as f64 / done.duration_since(started).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::parse_ns;

    #[test]
    fn a_stamp_is_read_up_to_the_padding_and_garbage_reads_as_zero() {
        assert_eq!(parse_ns(b"123456"), 123_456);
        assert_eq!(parse_ns(b"987 xxxxxxxx"), 987);
        assert_eq!(parse_ns(b"x987"), 0);
        assert_eq!(parse_ns(b""), 0);
    }
}
