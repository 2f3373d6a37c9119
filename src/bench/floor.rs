//! The physical floor, measured in the same run: UDP loopback one-way, Redis pub/sub one-way, the two
//! chained (what a cross-instance command cannot beat), and raw pub/sub throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::UdpSocket;

use super::measure::Samples;
use super::{Pacer, udp_receiver};

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

/// Redis pub/sub one-way at `rate`, and (with `relay`) the subscriber forwarding each message as a UDP
/// datagram: Redis one-way plus a UDP hop, the floor of a cross-instance command.
pub async fn redis_one_way(url: &str, n: usize, rate: u32, relay: bool) -> anyhow::Result<Samples> {
    let client = redis::Client::open(url)?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = format!("bench:floor:{}", fastrand::u64(..));
    pubsub.subscribe(&channel).await?;
    let origin = Instant::now();
    let receiver = Arc::new(udp_receiver().await?);
    let relay_to = receiver.local_addr()?;
    let relay_socket = UdpSocket::bind("127.0.0.1:0").await?;
    let reader = tokio::spawn(async move {
        let mut samples = Samples::with_capacity(n);
        let mut stream = pubsub.into_on_message();
        let mut buf = [0u8; 64];
        while samples.len() < n {
            let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await else { break };
            let payload = message.get_payload_bytes().to_vec();
            let sent_ns = std::str::from_utf8(&payload).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            if relay {
                if relay_socket.send_to(&payload, relay_to).await.is_err() {
                    continue;
                }
                let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), receiver.recv(&mut buf)).await else {
                    break;
                };
            }
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
