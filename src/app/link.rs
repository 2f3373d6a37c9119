//! The Redis link's settings from the configuration, and the warning an unsigned remote Redis earns.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{Config, RedisTopology};
use crate::redis_link::LinkSettings;

pub(super) fn link_settings(config: &Config, tls: Arc<crate::redis_link::tls::TlsMaterial>) -> LinkSettings {
    let settings = LinkSettings {
        url: config.redis_url.expose().to_owned(),
        key_prefix: config.redis_key_prefix.clone(),
        publish: config.redis_publish,
        subscribe: config.redis_subscribe,
        history_ttl: config.event_history_ttl,
        signing_key: config.event_signing_key.is_set().then(|| config.event_signing_key.expose().as_bytes().to_vec()),
        outbox_capacity: config.outbox_capacity,
        timing: config.redis_timing,
        max_clock_skew: config.max_clock_skew,
        event_max_age: config.event_max_age,
        topology: config.redis_topology.clone(),
        tls,
    };
    match &settings.topology {
        RedisTopology::Standalone => {
            info!(redis = %crate::secret::mask_url(&settings.url), "connecting to Redis in the background");
        }
        RedisTopology::Sentinel { sentinels, master, .. } => {
            info!(sentinels = %sentinels.join(","), %master, "connecting to the Redis master the sentinels name, in the background");
        }
        RedisTopology::Cluster { nodes } => {
            info!(nodes = %nodes.join(","), "connecting to the Redis Cluster in the background");
        }
    }
    let local = match &settings.topology {
        RedisTopology::Standalone => redis_is_local(&settings.url),
        RedisTopology::Sentinel { sentinels: hosts, .. } | RedisTopology::Cluster { nodes: hosts } => {
            hosts.iter().all(|h| redis_is_local(&format!("redis://{h}")))
        }
    };
    if settings.signing_key.is_none() && !local {
        warn!(
            redis = %crate::secret::mask_url(&settings.url),
            "EVENT_SIGNING_KEY is not set and Redis is not on this machine: any client of that Redis can \
             drive the outputs and the emergency stop; set the same EVENT_SIGNING_KEY on every instance"
        );
    }
    settings
}

/// True when the Redis URL points at this machine (loopback or a Unix socket), where only local
/// processes can publish.
fn redis_is_local(url: &str) -> bool {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let Ok(info) = url.into_connection_info() else { return false };
    let host = match info.addr() {
        ConnectionAddr::Unix(_) => return true,
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host,
        // A kind of address this code does not know yet: warn rather than assume it is private.
        _ => return false,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_unix_socket_redis_count_as_local() {
        for url in ["redis://127.0.0.1:6379", "redis://localhost/0", "redis://[::1]:7000", "redis+unix:///tmp/r.sock"] {
            assert!(redis_is_local(url), "{url}");
        }
        for url in ["redis://10.0.0.5:6379", "rediss://redis.example.com:6380", "redis://studio-a/0", "nonsense"] {
            assert!(!redis_is_local(url), "{url}");
        }
    }
}
