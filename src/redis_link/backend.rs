//! The seam under the link: where one session's connections go, for each deployment shape.
//!
//! * **Standalone**: every connection goes to `REDIS_URL`.
//! * **Sentinel**: the sentinels name the master (redis-rs asks them in turn and checks the master's
//!   `ROLE`); every connection goes to that master, and a subscription to one sentinel's
//!   `+switch-master` ends the session the moment a failover is announced.
//! * **Cluster**: commands go through redis-rs's cluster connection, which follows `MOVED`/`ASK` and
//!   refreshes its slot map (every key shares the `{cv}` hash tag, so every script runs on one node);
//!   the subscription is a plain `SUBSCRIBE` on one healthy node, because a classic `PUBLISH` on any
//!   node of a cluster reaches the subscribers of every node (older bots publish to whichever node
//!   they know).
//!
//! Everything above this file (recovery protocol, outbox, probe, presence, anti-entropy) is written
//! once and does not know which shape it runs on. Every connection is redis-rs's (BENCHMARKS.md,
//! "Redis high availability", has the measurement that chose it).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo as _, Pipeline, RedisFuture, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::nodes::{healthy_nodes, host_port, node_url, slot_master, split_host_port};
use super::tls::TlsMaterial;
use crate::config::RedisTopology;

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session could not be opened or ended; the link logs it, shows it as the degraded reason and
/// opens a new session after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no master for {master:?} from the sentinels: {reason}")]
    NoMaster { master: String, reason: String },
    #[error("{addr} is not a master any more (ROLE says {role})")]
    NotMaster { addr: String, role: String },
    #[error("failover: the sentinels moved {master:?} to {to}")]
    Failover { master: String, to: String },
    #[error("no healthy cluster node to subscribe on: {0}")]
    NoNode(String),
    #[error("subscription closed by the server")]
    SubscriptionClosed,
    #[error("deaf: {0}")]
    Deaf(String),
    #[error("publish failed after retries: {0}")]
    Publish(String),
    #[error("resync failed: {0}")]
    Resync(String),
    #[error("redis lost its data ({0})")]
    DataLost(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the coordinator stopped")]
    Stopped,
}

/// Commands (scripts, reads, side writes): one server's multiplexed connection, or a Cluster's.
#[derive(Clone)]
pub(super) enum Commands {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Why a batch on the hot path failed as a whole (per-command error replies are values).
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("no answer from redis in time")]
    Timeout,
    #[error("{0}")]
    Transport(String),
}

impl From<redis::RedisError> for SendError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() { SendError::Timeout } else { SendError::Transport(e.to_string()) }
    }
}

/// An error reply, its text kept whole (`READONLY You can't write against a read only replica.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(String);

impl ServerError {
    pub fn new(text: impl Into<String>) -> ServerError {
        ServerError(text.into())
    }

    /// The first word: `NOSCRIPT`, `READONLY`, `OOM`, …
    pub fn code(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }

    pub fn is_noscript(&self) -> bool {
        self.code() == "NOSCRIPT"
    }
}

/// The answer to one command on the hot path: done, or the server's error reply.
pub(super) type Reply = Result<(), ServerError>;

impl Commands {
    /// Sends every command as one pipeline and returns one reply per command; only a transport
    /// failure or a timeout fails the whole batch.
    pub(super) async fn send(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Reply>, SendError> {
        let mut pipe = redis::pipe();
        for args in commands {
            let mut command = redis::Cmd::new();
            for arg in args {
                command.arg(*arg);
            }
            pipe.add_command(command);
        }
        pipe.ignore_errors();
        let results: Vec<redis::RedisResult<Value>> = pipe.query_async(self).await?;
        results
            .into_iter()
            .map(|r| match r {
                Ok(_) => Ok(Ok(())),
                Err(e) => match e.code() {
                    Some(code) => Ok(Err(ServerError::new(format!("{code} {}", e.detail().unwrap_or_default())))),
                    None => Err(SendError::from(e)),
                },
            })
            .collect()
    }
}

/// A message on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    pub channel: Bytes,
    pub payload: Bytes,
}

type MessageStream = Pin<Box<dyn Stream<Item = redis::Msg> + Send>>;

/// A subscription on one server.
pub(super) struct Subscriber(MessageStream);

impl Subscriber {
    /// Waits for at least one message, then takes every message already received, up to `max`, so
    /// a burst is applied as one batch.
    pub(super) async fn next_batch(&mut self, out: &mut Vec<PubSubMessage>, max: usize) -> Result<(), SessionError> {
        let first = self.0.next().await.ok_or(SessionError::SubscriptionClosed)?;
        out.push(message(&first));
        while out.len() < max {
            match futures_util::FutureExt::now_or_never(self.0.next()) {
                Some(Some(m)) => out.push(message(&m)),
                Some(None) | None => break,
            }
        }
        Ok(())
    }
}

fn message(m: &redis::Msg) -> PubSubMessage {
    let channel: Vec<u8> = m.get_channel().unwrap_or_default();
    PubSubMessage { channel: Bytes::from(channel), payload: Bytes::copy_from_slice(m.get_payload_bytes()) }
}

/// Where one session's connections go.
pub(super) struct Endpoints {
    pub(super) cmd: Commands,
    /// The one server to subscribe on (and, off a Cluster, to publish on), as a URL.
    pub(super) node: String,
    /// How logs and health name where we are connected.
    pub(super) describe: String,
    /// Sentinel only: the failover announcement that ends this session.
    pub(super) failover: Option<FailoverWatch>,
}

/// A subscription to one sentinel's `+switch-master`, for our master's name only.
pub(super) struct FailoverWatch {
    pub(super) moved: mpsc::Receiver<String>,
    task: JoinHandle<()>,
}

impl Drop for FailoverWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Finds and opens the connections of each new session.
pub(super) struct Backend {
    /// `REDIS_URL`: the server itself, or (with Sentinel or Cluster) the scheme and credentials.
    url: String,
    topology: RedisTopology,
    tls: Arc<TlsMaterial>,
    sentinel: Option<SentinelClient>,
    /// Turns through the cluster's healthy nodes, so a rebuilt session subscribes somewhere else.
    turn: usize,
    /// Every cluster node seen healthy so far: the next session starts from these as well as from
    /// `REDIS_CLUSTER_NODES`, so a seed that died (the only one given, say) does not strand us.
    known: Vec<String>,
}

impl Backend {
    pub(super) fn new(url: &str, topology: RedisTopology, tls: Arc<TlsMaterial>) -> Backend {
        Backend { url: url.to_owned(), topology, tls, sentinel: None, turn: 0, known: Vec::new() }
    }

    pub(super) fn topology(&self) -> &RedisTopology {
        &self.topology
    }

    /// Discovers where to go and opens the command connection; `state_key` places a Cluster's subscription.
    pub(super) async fn open(&mut self, state_key: &str) -> Result<Endpoints, SessionError> {
        match self.topology.clone() {
            RedisTopology::Standalone => {
                let cmd = Commands::Single(self.single(&self.url).await?);
                Ok(Endpoints { cmd, node: self.url.clone(), describe: "standalone".into(), failover: None })
            }
            RedisTopology::Sentinel { master, .. } => self.open_sentinel(&master).await,
            RedisTopology::Cluster { nodes } => self.open_cluster(&nodes, state_key).await,
        }
    }

    async fn single(&self, url: &str) -> Result<MultiplexedConnection, SessionError> {
        let client = self.tls.client(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config))
            .await
            .map_err(|_| SessionError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| SessionError::Connect(e.to_string()))
    }

    async fn open_sentinel(&mut self, master: &str) -> Result<Endpoints, SessionError> {
        let no_master = |reason: String| SessionError::NoMaster { master: master.to_owned(), reason };
        if self.sentinel.is_none() {
            self.sentinel = Some(self.sentinel_client(master).map_err(|e| no_master(e.to_string()))?);
        }
        let Some(sentinels) = self.sentinel.as_mut() else { return Err(no_master("no sentinel client".into())) };
        // redis-rs asks each sentinel in turn and accepts an address only when that server's ROLE says master.
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 3, sentinels.async_get_client())
            .await
            .map_err(|_| no_master("no sentinel answered in time".into()))?
            .map_err(|e| no_master(e.to_string()))?;
        let addr = host_port(client.get_connection_info().addr());
        let node = node_url(&self.url, &addr);
        let mut cmd = Commands::Single(self.single(&node).await?);
        // Checked again on our own connection: the master may have changed since the sentinel answered.
        let role = role(&mut cmd).await?;
        if role != "master" {
            return Err(SessionError::NotMaster { addr, role });
        }
        let failover = self.watch_failover(master).await;
        if failover.is_none() {
            debug!("no sentinel subscription for +switch-master: failovers are noticed by the probe instead");
        }
        Ok(Endpoints { cmd, node, describe: format!("sentinel master {master} at {addr}"), failover })
    }

    fn sentinel_client(&self, master: &str) -> redis::RedisResult<SentinelClient> {
        let RedisTopology::Sentinel { sentinels, password, .. } = &self.topology else {
            return Err((redis::ErrorKind::InvalidClientConfig, "not a sentinel topology").into());
        };
        let base = self.url.as_str().into_connection_info()?;
        let tls = match base.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => Some(redis::TlsMode::Insecure),
            ConnectionAddr::TcpTls { .. } => Some(redis::TlsMode::Secure),
            _ => None,
        };
        let addrs = sentinels
            .iter()
            .map(|s| {
                let (host, port) = split_host_port(s);
                match tls {
                    Some(mode) => ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: mode == redis::TlsMode::Insecure,
                        tls_params: None,
                    },
                    None => ConnectionAddr::Tcp(host, port),
                }
            })
            .collect::<Vec<_>>();
        let settings = base.redis_settings();
        let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
            .set_client_to_redis_db(settings.db());
        if let Some(user) = settings.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(pw) = settings.password() {
            builder = builder.set_client_to_redis_password(pw);
        }
        if password.is_set() {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if let Some(mode) = tls {
            builder = builder.set_client_to_redis_tls_mode(mode).set_client_to_sentinel_tls_mode(mode);
        }
        self.tls.sentinel_with(builder, tls.is_some()).build()
    }

    /// Subscribes to `+switch-master` on the first sentinel that answers; `None` when none does.
    async fn watch_failover(&mut self, master: &str) -> Option<FailoverWatch> {
        let sentinels = self.sentinel.as_mut()?;
        let client = tokio::time::timeout(CONNECT_TIMEOUT, sentinels.async_get_sentinel_client()).await.ok()?.ok()?;
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await.ok()?.ok()?;
        pubsub.subscribe("+switch-master").await.ok()?;
        let (tx, moved) = mpsc::channel(4);
        let name = master.to_owned();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(m) = messages.next().await {
                // `<name> <old-ip> <old-port> <new-ip> <new-port>`
                let text: String = m.get_payload().unwrap_or_default();
                let mut parts = text.split_whitespace();
                if parts.next() != Some(name.as_str()) {
                    continue;
                }
                let to = parts.skip(2).collect::<Vec<_>>().join(":");
                info!(master = %name, %to, "sentinels announced a failover");
                if tx.send(to).await.is_err() {
                    return;
                }
            }
        });
        Some(FailoverWatch { moved, task })
    }

    async fn open_cluster(&mut self, seeds: &[String], state_key: &str) -> Result<Endpoints, SessionError> {
        let mut starts: Vec<String> = seeds.to_vec();
        starts.extend(self.known.iter().filter(|k| !seeds.contains(k)).cloned());
        let urls: Vec<String> = starts.iter().map(|s| node_url(&self.url, s)).collect();
        let builder = redis::cluster::ClusterClientBuilder::new(urls.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3);
        let client = self.tls.cluster(builder).build()?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_async_connection())
            .await
            .map_err(|_| SessionError::Connect(format!("no cluster node answered within {:?}", CONNECT_TIMEOUT * 2)))?
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let mut cmd = Commands::Cluster(conn);
        let listed: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("NODES").query_async(&mut cmd).await;
        let slot: redis::RedisResult<u16> =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(state_key).query_async(&mut cmd).await;
        let (owner, mut healthy) = match (&listed, slot) {
            (Ok(text), Ok(slot)) => (slot_master(text, slot), healthy_nodes(text)),
            (Ok(text), Err(_)) => (None, healthy_nodes(text)),
            (Err(e), _) => {
                debug!(error = %e, "CLUSTER NODES failed; subscribing on a seed node");
                (None, Vec::new())
            }
        };
        if healthy.is_empty() {
            healthy.clone_from(&starts);
        } else {
            self.known.clone_from(&healthy);
        }
        // On the master that runs our scripts, the publish script's PUBLISH reaches our subscription
        // without crossing the cluster bus (milliseconds on a busy bus). Without it, any healthy node
        // does (a different one each session): classic pub/sub reaches every node.
        let addr = match owner {
            Some(owner) => owner,
            None => {
                let Some(addr) = healthy.get(self.turn % healthy.len().max(1)).cloned() else {
                    return Err(SessionError::NoNode("the cluster lists no node".into()));
                };
                self.turn = self.turn.wrapping_add(1);
                addr
            }
        };
        let node = node_url(&self.url, &addr);
        Ok(Endpoints { cmd, node, describe: format!("cluster, subscribed on {addr}"), failover: None })
    }

    /// A fresh command connection to the same server after a transport failure (a Cluster's
    /// connection reconnects by itself).
    pub(super) async fn reconnect(&self, cmd: &mut Commands, node: &str) -> Result<(), SessionError> {
        if let Commands::Single(_) = cmd {
            *cmd = Commands::Single(self.single(node).await?);
        }
        Ok(())
    }

    /// Subscribes to `channels` on `node`, confirmed by the server before this returns.
    pub(super) async fn subscribe(&self, node: &str, channels: &[String]) -> Result<Subscriber, SessionError> {
        let client = self.tls.client(node)?;
        let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| SessionError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        tokio::time::timeout(RESPONSE_TIMEOUT, pubsub.subscribe(channels))
            .await
            .map_err(|_| SessionError::Connect("subscribe: no confirmation in time".into()))??;
        Ok(Subscriber(Box::pin(pubsub.into_on_message())))
    }
}

/// `ROLE`'s first element: `master`, `slave` or `sentinel`.
async fn role(cmd: &mut Commands) -> Result<String, SessionError> {
    let reply: Value = redis::cmd("ROLE").query_async(cmd).await?;
    let first = match &reply {
        Value::Array(items) => items.first(),
        _ => None,
    };
    Ok(match first {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => "unknown".to_owned(),
    })
}
