//! The raw Redis connection against real `redis-server` processes: URL semantics shared with redis-rs
//! (passwords, ACL users, databases, TLS, Unix sockets), pipelines, error replies, pub/sub bursts,
//! binary and large payloads, cancellation, and timeouts against a peer that never answers.

use std::time::{Duration, Instant};

use cvbot::redis_link::raw::{PubSubMessage, RawConnection, RawError, RawSubscriber, Value};

use crate::redis_server::RedisServer;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(url: &str) -> RawConnection {
    RawConnection::connect(url, TIMEOUT).await.expect("raw connect")
}

/// The whole error chain of a refused connect.
async fn refused(url: &str) -> String {
    match RawConnection::connect(url, TIMEOUT).await {
        Ok(conn) => panic!("{url} connected: {conn:?}"),
        Err(e) => format!("{e:#}"),
    }
}

async fn ping(conn: &mut RawConnection) {
    assert_eq!(conn.query(&[b"PING"]).await.expect("ping").as_bytes(), Some(&b"PONG"[..]));
}

/// Reads batches until `count` messages arrived; returns them and the batch sizes.
async fn receive(sub: &mut RawSubscriber, count: usize) -> (Vec<PubSubMessage>, Vec<usize>) {
    let (mut all, mut batches) = (Vec::new(), Vec::new());
    let collect = async {
        while all.len() < count {
            let before = all.len();
            sub.next_batch(&mut all).await.expect("next batch");
            batches.push(all.len() - before);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), collect).await.expect("messages arrived in time");
    (all, batches)
}

#[tokio::test]
async fn a_plain_connection_answers_ping() {
    let redis = RedisServer::start().await;
    ping(&mut connect(&redis.url()).await).await;
}

#[tokio::test]
async fn a_password_authenticates_and_a_wrong_one_is_a_clear_error() {
    // Reserved characters, percent-encoded in the URL, are decoded as redis-rs decodes them.
    let args = ["--requirepass", "p@ss:w/rd"].map(str::to_owned);
    let redis = RedisServer::start_with(&args, |port| format!("redis://:p%40ss%3Aw%2Frd@127.0.0.1:{port}")).await;
    ping(&mut connect(&redis.url()).await).await;

    let error = refused(&format!("redis://:hunter2@127.0.0.1:{}", redis.port)).await;
    assert!(error.contains("refused AUTH") && error.contains("WRONGPASS"), "{error}");
    assert!(!error.contains("hunter2"), "the password stays out of errors: {error}");

    let mut anonymous = connect(&format!("redis://127.0.0.1:{}", redis.port)).await;
    match anonymous.query(&[b"PING"]).await {
        Err(RawError::Server(e)) => assert_eq!(e.code(), "NOAUTH"),
        other => panic!("unauthenticated PING answered {other:?}"),
    }
}

#[tokio::test]
async fn an_acl_user_authenticates_and_a_wrong_password_is_a_clear_error() {
    let args = ["--user", "default", "off", "--user", "bot", "on", ">s3cret", "~*", "&*", "+@all"].map(str::to_owned);
    let redis = RedisServer::start_with(&args, |port| format!("redis://bot:s3cret@127.0.0.1:{port}")).await;
    let mut conn = connect(&redis.url()).await;
    assert_eq!(conn.query(&[b"ACL", b"WHOAMI"]).await.expect("whoami").as_bytes(), Some(&b"bot"[..]));

    let error = refused(&redis.url().replace("s3cret", "wrong")).await;
    assert!(error.contains("WRONGPASS") && error.contains("bot:****@"), "{error}");
}

#[tokio::test]
async fn the_url_database_is_selected_and_an_invalid_one_refused() {
    let redis = RedisServer::start().await;
    let mut conn = connect(&format!("{}/3", redis.url())).await;
    conn.query(&[b"SET", b"where", b"three"]).await.expect("set");
    let db3 = redis::Client::open(format!("{}/3", redis.url())).expect("client");
    let mut check = db3.get_multiplexed_async_connection().await.expect("db 3");
    let seen: Option<String> = redis::cmd("GET").arg("where").query_async(&mut check).await.expect("get");
    assert_eq!(seen.as_deref(), Some("three"), "written to database 3");
    let seen: Option<String> = redis::cmd("GET").arg("where").query_async(&mut redis.conn().await).await.expect("get");
    assert_eq!(seen, None, "not to database 0");

    let error = refused(&format!("{}/99", redis.url())).await;
    assert!(error.contains("refused SELECT 99") && error.contains("out of range"), "{error}");
}

#[tokio::test]
async fn tls_with_insecure_accepts_a_self_signed_certificate_and_without_it_refuses() {
    let redis = RedisServer::start_tls().await;
    assert!(redis.url().ends_with("#insecure"));
    let mut conn = connect(&redis.url()).await;
    ping(&mut conn).await;
    let big = vec![b'x'; 300_000];
    conn.query(&[b"SET", b"big", &big]).await.expect("set over TLS");
    assert_eq!(conn.query(&[b"GET", b"big"]).await.expect("get over TLS").as_bytes(), Some(&big[..]));

    let error = refused(&redis.url().replace("#insecure", "")).await;
    assert!(error.contains("TLS handshake"), "{error}");
}

#[tokio::test]
async fn a_unix_socket_url_connects_and_selects_its_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("redis.sock");
    let args = ["--unixsocket".to_owned(), socket.display().to_string()];
    let redis = RedisServer::start_with(&args, |port| format!("redis://127.0.0.1:{port}")).await;
    let mut conn = connect(&format!("redis+unix://{}?db=2", socket.display())).await;
    let info = conn.query(&[b"CLIENT", b"INFO"]).await.expect("client info");
    let info = String::from_utf8_lossy(info.as_bytes().expect("bulk")).into_owned();
    assert!(info.contains(" db=2 "), "{info}");
    drop(redis);
}

#[tokio::test]
async fn resp3_urls_are_refused_before_connecting() {
    let error = refused("redis://127.0.0.1:1/?protocol=3").await;
    assert!(error.contains("RESP2 only"), "{error}");
}

#[tokio::test]
async fn a_pipeline_of_a_thousand_evalsha_and_publish_reads_back_in_order() {
    let redis = RedisServer::start().await;
    let mut conn = connect(&redis.url()).await;
    let sha = conn.query(&[b"SCRIPT", b"LOAD", b"return ARGV[1]"]).await.expect("script load");
    let sha = sha.as_bytes().expect("sha").to_vec();
    for i in 0..1000 {
        let n = i.to_string();
        conn.append(&[b"EVALSHA", &sha, b"0", n.as_bytes()]);
        conn.append(&[b"PUBLISH", b"nobody", n.as_bytes()]);
    }
    conn.flush().await.expect("flush");
    assert_eq!(conn.in_flight(), 2000);
    let replies = conn.read_replies(2000).await.expect("replies");
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0].as_ref().ok().and_then(Value::as_bytes), Some(i.to_string().as_bytes()), "reply {i}");
        assert_eq!(pair[1].as_ref().ok().and_then(Value::as_int), Some(0), "publish {i}");
    }
    assert!(matches!(conn.read_replies(1).await, Err(RawError::Usage(_))), "no reply is owed");
    ping(&mut conn).await;
}

#[tokio::test]
async fn noscript_is_an_error_value_and_the_connection_goes_on() {
    let redis = RedisServer::start().await;
    let mut conn = connect(&redis.url()).await;
    let unknown = [b'0'; 40];
    conn.append(&[b"EVALSHA", &unknown, b"0"]);
    conn.append(&[b"PING"]);
    conn.flush().await.expect("flush");
    let replies = conn.read_replies(2).await.expect("replies");
    assert!(matches!(&replies[0], Err(e) if e.is_noscript() && e.message().contains("No matching script")));
    assert_eq!(replies[1].as_ref().ok().and_then(Value::as_bytes), Some(&b"PONG"[..]));
    match conn.query(&[b"EVALSHA", &unknown, b"0"]).await {
        Err(RawError::Server(e)) => assert!(e.is_noscript(), "{e}"),
        other => panic!("unknown script answered {other:?}"),
    }
    ping(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_messages_arrives_whole_in_order_and_in_batches() {
    let redis = RedisServer::start().await;
    let mut sub = connect(&redis.url()).await.subscribe(&[b"burst"]).await.expect("subscribe");
    let mut publisher = connect(&redis.url()).await;
    for i in 0..10_000 {
        publisher.append(&[b"PUBLISH", b"burst", i.to_string().as_bytes()]);
    }
    let publish = async {
        publisher.flush().await.expect("flush");
        let replies = publisher.read_replies(10_000).await.expect("publish replies");
        assert!(replies.iter().all(|r| r.as_ref().ok().and_then(Value::as_int) == Some(1)), "one receiver each");
    };
    let ((messages, batches), ()) = tokio::join!(receive(&mut sub, 10_000), publish);
    assert_eq!(messages.len(), 10_000, "nothing lost, nothing extra");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!((&m.channel[..], &m.payload[..]), (&b"burst"[..], i.to_string().as_bytes()), "message {i}");
    }
    assert!(batches.iter().any(|&n| n > 1), "one read carried several messages: {batches:?}");
}

#[tokio::test]
async fn binary_and_one_megabyte_payloads_arrive_intact() {
    let redis = RedisServer::start().await;
    let channel = b"bin\x00\r\n\xff";
    let mut sub = connect(&redis.url()).await.subscribe(&[channel]).await.expect("subscribe");
    let mut publisher = connect(&redis.url()).await;
    let every_byte: Vec<u8> = (0..=255).collect();
    let mut rng = fastrand::Rng::with_seed(6);
    let large: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(1 << 20).collect();
    for payload in [&every_byte, &large, &Vec::new()] {
        let receivers = publisher.query(&[b"PUBLISH", channel, payload]).await.expect("publish");
        assert_eq!(receivers.as_int(), Some(1));
    }
    let (messages, _) = receive(&mut sub, 3).await;
    let payloads: Vec<&[u8]> = messages.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&every_byte[..], &large[..], &[][..]]);
    assert!(messages.iter().all(|m| &m.channel[..] == channel));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_next_batch_loses_nothing() {
    let redis = RedisServer::start().await;
    let mut sub = connect(&redis.url()).await.subscribe(&[b"c"]).await.expect("subscribe");
    let mut publisher = connect(&redis.url()).await;
    // Payloads of 5 to 9 KB, so frames straddle reads and cancellations hit half-received frames.
    let payloads: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().repeat(1250 + (i as usize % 1000))).collect();
    // Published in bursts of 100 (about 700 KB, so frames straddle reads) with pauses between, during
    // which the reader has caught up and is waiting: there the race below cancels it for certain,
    // whatever the machine's load.
    let bursts: Vec<Vec<Vec<u8>>> = payloads.chunks(100).map(<[Vec<u8>]>::to_vec).collect();
    let publishing = tokio::spawn(async move {
        for burst in bursts {
            for payload in &burst {
                publisher.append(&[b"PUBLISH", b"c", payload]);
            }
            publisher.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
    });
    let (mut received, mut cancelled) = (Vec::new(), 0);
    let collect = async {
        while received.len() < payloads.len() {
            tokio::select! {
                result = sub.next_batch(&mut received) => result.expect("next batch"),
                () = tokio::task::yield_now() => cancelled += 1,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), collect).await.expect("messages arrived in time");
    drop(publishing.await.expect("publisher"));
    assert!(cancelled > 0, "the test cancelled next_batch at least once");
    let got: Vec<&[u8]> = received.iter().map(|m| &m.payload[..]).collect();
    let sent: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    assert!(got == sent, "{} of {} messages, first difference at {:?}", got.len(), sent.len(), {
        got.iter().zip(&sent).position(|(a, b)| a != b)
    });
}

#[tokio::test]
async fn pings_on_a_subscribed_connection_are_counted_and_later_subscriptions_confirmed() {
    let redis = RedisServer::start().await;
    let mut sub = connect(&redis.url()).await.subscribe(&[b"first"]).await.expect("subscribe");
    sub.ping().await.expect("ping");
    // Redis answers one connection in order: the pong comes before the next confirmation.
    sub.subscribe(&[b"second", b"third"]).await.expect("subscribe more");
    assert_eq!(sub.pongs(), 1);
    assert_eq!(redis.publish("third", "hello").await, 1);
    let (messages, _) = receive(&mut sub, 1).await;
    assert_eq!((&messages[0].channel[..], &messages[0].payload[..]), (&b"third"[..], &b"hello"[..]));
}

/// A TCP peer that accepts and then says nothing, holding each connection open.
async fn silent_peer() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("redis://:secret@{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_and_the_connection_refuses_further_use() {
    let (url, peer) = silent_peer().await;
    let limit = Duration::from_millis(300);

    let started = Instant::now();
    let error = RawConnection::connect(&url, limit).await.expect_err("AUTH never answered");
    assert!(format!("{error:#}").contains("no answer from redis within 300ms"), "{error:#}");
    assert!(started.elapsed() < limit * 5, "took {:?}", started.elapsed());

    let mut conn = RawConnection::connect(&url.replace(":secret@", ""), limit).await.expect("no handshake to wait for");
    let started = Instant::now();
    assert!(matches!(conn.query(&[b"PING"]).await, Err(RawError::Timeout(d)) if d == limit));
    assert!(started.elapsed() >= limit && started.elapsed() < limit * 5, "took {:?}", started.elapsed());
    assert!(matches!(conn.query(&[b"PING"]).await, Err(RawError::Broken)), "replies would no longer line up");

    let conn = RawConnection::connect(&url.replace(":secret@", ""), limit).await.expect("connect");
    assert!(matches!(conn.subscribe(&[b"c"]).await, Err(RawError::Timeout(_))));
    peer.abort();
}

#[tokio::test]
async fn a_killed_server_is_reported_and_the_connection_refuses_further_use() {
    let mut redis = RedisServer::start().await;
    let mut conn = connect(&redis.url()).await;
    ping(&mut conn).await;
    redis.kill();
    let error = conn.query(&[b"PING"]).await.expect_err("server is gone");
    assert!(matches!(error, RawError::Closed | RawError::Io(_)), "{error:?}");
    assert!(matches!(conn.flush().await, Err(RawError::Broken)));
}
