//! The physical floor, measured in the same run: UDP loopback one-way, Redis pub/sub one-way, the two
//! chained (what a cross-instance command cannot beat), and raw pub/sub throughput.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::measure::Samples;
use super::{Pacer, udp_receiver};
use crate::redis_link::raw::RawConnection;

/// UDP loopback one-way: a datagram carrying its index, sent at `rate`.
pub async fn udp_one_way(n: usize, rate: u32) -> anyhow::Result<Samples> {
    let receiver = udp_receiver().await?;
    let target = receiver.local_addr()?;
    let sender = UdpSocket::bind("127.0.0.1:0").await?;
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut samples = Samples::with_capacity(n);
        let mut buf = [0u8; 64];
        while samples.len() < n {
            let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), receiver.recv(&mut buf)).await else {
                break;
            };
            let got = Instant::now();
            if let Some(sent_ns) = buf.get(..len).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) {
                samples.push(got.duration_since(origin).saturating_sub(Duration::from_nanos(sent_ns)));
            }
        }
        samples
    });
    let mut pacer = Pacer::new(rate);
    for _ in 0..n {
        pacer.wait().await;
        let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sender.send_to(&ns.to_le_bytes(), target).await?;
    }
    Ok(reader.await?)
}

/// Redis pub/sub one-way at `rate`: a plain publisher and subscriber (redis-rs) in this runtime.
pub async fn redis_one_way(url: &str, n: usize, rate: u32) -> anyhow::Result<Samples> {
    let client = redis::Client::open(url)?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
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

fn parse_ns(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// The floor of a cross-instance command, laid out as the real path is: a publisher in this runtime,
/// a subscriber on its own thread and runtime (another instance is another process) that forwards each
/// message as a UDP datagram, and the UDP receiver back in this runtime. Both Redis ends use the raw
/// connection, the cheapest client there is, so what the bot adds on top is its own work.
pub async fn redis_relay(url: &str, n: usize, rate: u32) -> anyhow::Result<Samples> {
    let receiver = udp_receiver().await?;
    let target = receiver.local_addr()?;
    let channel = format!("bench:relay:{}", fastrand::u64(..));
    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let relay = {
        let (url, channel, stop) = (url.to_owned(), channel.clone(), stop.clone());
        std::thread::Builder::new().name("bench-relay".into()).spawn(move || {
            let runtime = match crate::app::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            runtime.block_on(relay_messages(url, channel, target, ready_tx, stop));
        })?
    };
    ready_rx.await??;
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut samples = Samples::with_capacity(n);
        let mut buf = [0u8; 64];
        while samples.len() < n {
            let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), receiver.recv(&mut buf)).await else {
                break;
            };
            let sent_ns = parse_ns(&buf[..len]);
            samples.push(origin.elapsed().saturating_sub(Duration::from_nanos(sent_ns)));
        }
        samples
    });
    let mut publisher = RawConnection::connect(url, Duration::from_secs(2)).await?;
    let mut pacer = Pacer::new(rate);
    for _ in 0..n {
        pacer.wait().await;
        let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).to_string();
        publisher.query(&[b"PUBLISH", channel.as_bytes(), ns.as_bytes()]).await?;
    }
    let samples = reader.await?;
    stop.cancel();
    let _ = tokio::task::spawn_blocking(move || relay.join()).await;
    Ok(samples)
}

/// The relay's side of [`redis_relay`]: subscribe, then forward every payload to `target`.
async fn relay_messages(
    url: String,
    channel: String,
    target: std::net::SocketAddr,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    stop: CancellationToken,
) {
    let setup = async {
        let connection = RawConnection::connect(&url, Duration::from_secs(2)).await?;
        let subscriber = connection.subscribe(&[channel.as_bytes()]).await?;
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        anyhow::Ok((subscriber, socket))
    };
    let (mut subscriber, socket) = match setup.await {
        Ok(parts) => {
            let _ = ready.send(Ok(()));
            parts
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            read = subscriber.next_batch(&mut batch) => if read.is_err() { return },
        }
        for message in batch.drain(..) {
            let _ = socket.send_to(&message.payload, target).await;
        }
    }
}

/// Raw sustained pub→sub throughput: `n` messages published in pipelined batches as fast as Redis
/// takes them; messages per second until the subscriber has them all.
pub async fn redis_throughput(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
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
