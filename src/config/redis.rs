//! Where the Redis servers are (standalone, Sentinel, Cluster), the TLS files, the connection URL,
//! and the link's fault timings.

use std::path::PathBuf;
use std::time::Duration;

use super::parse::{host_ports, number};
use super::{ConfigError, Secret, Vars, err, mask_url};

/// How fast the Redis link probes, refreshes its presence and reconnects. Not user knobs (no
/// environment variable sets them): they exist so tests and benchmarks can run faults in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTiming {
    /// How often the link publishes a probe to its own channel (and checks the epoch key).
    pub probe_interval: Duration,
    /// A probe not heard back within this is a deaf subscription.
    pub probe_deadline: Duration,
    /// Presence refresh and the retry of failed side writes; the claim key lives three heartbeats.
    pub heartbeat: Duration,
    /// The first reconnect delay; each failed attempt doubles it, up to the cap (with jitter).
    pub backoff_floor: Duration,
    /// The longest reconnect delay to one server.
    pub backoff_cap: Duration,
    /// The longest reconnect delay with Sentinel or a Cluster, where asking again is cheap.
    pub ha_backoff_cap: Duration,
}

impl Default for RedisTiming {
    fn default() -> RedisTiming {
        RedisTiming {
            probe_interval: Duration::from_secs(2),
            probe_deadline: Duration::from_secs(5),
            heartbeat: Duration::from_secs(5),
            backoff_floor: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            ha_backoff_cap: Duration::from_secs(1),
        }
    }
}

/// Where the Redis servers are. With Sentinel or Cluster, `REDIS_URL` (or `REDIS_PASSWORD`/`REDIS_DB`)
/// still gives the data nodes' scheme (`rediss://` for TLS), user, password and database; its host is
/// not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server at `REDIS_URL`.
    Standalone,
    /// `REDIS_SENTINELS` (`host:port` each) watching the master named `REDIS_SENTINEL_MASTER`.
    Sentinel { sentinels: Vec<String>, master: String, password: Secret },
    /// `REDIS_CLUSTER_NODES`: any reachable nodes of the cluster (`host:port` each) to start from.
    Cluster { nodes: Vec<String> },
}

impl RedisTopology {
    pub(super) fn from_vars(v: &Vars) -> Result<RedisTopology, ConfigError> {
        let sentinels = host_ports("REDIS_SENTINELS", v.get("REDIS_SENTINELS"))?;
        let nodes = host_ports("REDIS_CLUSTER_NODES", v.get("REDIS_CLUSTER_NODES"))?;
        match (sentinels.is_empty(), nodes.is_empty()) {
            (true, true) => Ok(RedisTopology::Standalone),
            (false, false) => Err(err("REDIS_CLUSTER_NODES", "cannot be used together with REDIS_SENTINELS; set one")),
            (false, true) => {
                let master = v.get("REDIS_SENTINEL_MASTER").unwrap_or("mymaster").to_owned();
                if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(err("REDIS_SENTINEL_MASTER", format!("{master:?} is not a master name")));
                }
                let password = Secret::new(v.get("REDIS_SENTINEL_PASSWORD").unwrap_or_default());
                Ok(RedisTopology::Sentinel { sentinels, master, password })
            }
            (true, false) => Ok(RedisTopology::Cluster { nodes }),
        }
    }

    pub fn sentinels(&self) -> &[String] {
        match self {
            Self::Sentinel { sentinels, .. } => sentinels,
            _ => &[],
        }
    }

    pub fn cluster_nodes(&self) -> &[String] {
        match self {
            Self::Cluster { nodes } => nodes,
            _ => &[],
        }
    }

    pub fn master_name(&self) -> &str {
        match self {
            Self::Sentinel { master, .. } => master,
            _ => "mymaster",
        }
    }

    pub(super) fn sentinel_password(&self) -> Secret {
        match self {
            Self::Sentinel { password, .. } => password.clone(),
            _ => Secret::default(),
        }
    }

    /// How logs and health name it: `standalone`, `sentinel`, `cluster`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }
}

/// PEM files for TLS to Redis: a CA to trust instead of the system's roots, and a client certificate
/// with its key (both or neither). Paths only; the link reads them at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTlsFiles {
    pub ca: Option<PathBuf>,
    pub client: Option<(PathBuf, PathBuf)>,
}

impl RedisTlsFiles {
    pub(super) fn from_vars(v: &Vars) -> Result<RedisTlsFiles, ConfigError> {
        let ca = v.get("REDIS_TLS_CA").map(PathBuf::from);
        let client = match (v.get("REDIS_TLS_CERT"), v.get("REDIS_TLS_KEY")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => return Err(err("REDIS_TLS_KEY", "must be set with REDIS_TLS_CERT (the client key)")),
            (None, Some(_)) => {
                return Err(err("REDIS_TLS_CERT", "must be set with REDIS_TLS_KEY (the client certificate)"));
            }
        };
        Ok(RedisTlsFiles { ca, client })
    }

    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// `REDIS_URL`, or one built from `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`/`REDIS_DB`.
pub(super) fn redis_url(v: &Vars) -> Result<String, ConfigError> {
    if let Some(url) = v.get("REDIS_URL") {
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.starts_with(s));
        if !scheme_ok || redis::parse_redis_url(url).is_none() && !url.contains("unix://") {
            return Err(err("REDIS_URL", format!("{:?} is not a redis:// or rediss:// URL", mask_url(url))));
        }
        if url.split_once('?').is_some_and(|(_, query)| {
            query.split('&').any(|kv| {
                kv.to_ascii_lowercase().starts_with("protocol=") && !kv.ends_with("=resp2") && kv != "protocol=2"
            })
        }) {
            return Err(err("REDIS_URL", "protocol=3 (RESP3) is not supported: cvbot speaks RESP2; remove ?protocol="));
        }
        return Ok(url.to_owned());
    }
    let host = v.get("REDIS_HOST").unwrap_or("127.0.0.1");
    let port = number("REDIS_PORT", v.get("REDIS_PORT"), 6379, 65_535)?;
    let db = number("REDIS_DB", v.get("REDIS_DB"), 0, 1_000)?;
    let auth = v.get("REDIS_PASSWORD").map(|p| format!(":{p}@")).unwrap_or_default();
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    Ok(format!("redis://{auth}{host}:{port}/{db}"))
}

#[cfg(test)]
mod tests {
    use super::super::from_pairs as cfg;
    use super::*;

    #[test]
    fn sentinel_cluster_and_tls_settings_are_checked_and_named() {
        let s = cfg(&[
            ("REDIS_SENTINELS", "10.0.0.1:26379, sentinel-b:26380,[::1]:26381"),
            ("REDIS_SENTINEL_PASSWORD", "pw"),
        ])
        .expect("valid");
        assert_eq!(s.redis_topology.sentinels(), ["10.0.0.1:26379", "sentinel-b:26380", "[::1]:26381"]);
        assert_eq!(s.redis_topology.master_name(), "mymaster");
        assert!(!format!("{:?}", s.describe()).contains("pw"), "the sentinel password is masked");
        let c = cfg(&[("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001")]).expect("valid");
        assert_eq!(
            c.redis_topology,
            RedisTopology::Cluster { nodes: vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()] }
        );
        assert_eq!(cfg(&[]).expect("valid").redis_topology, RedisTopology::Standalone);
        let refused = |vars: &[(&str, &str)], variable: &str| {
            let e = cfg(vars).expect_err("refused");
            assert_eq!(e.variable, variable, "{e}");
        };
        refused(&[("REDIS_SENTINELS", "host-without-port")], "REDIS_SENTINELS");
        refused(&[("REDIS_SENTINELS", "a:0")], "REDIS_SENTINELS");
        refused(&[("REDIS_CLUSTER_NODES", "a b:7000")], "REDIS_CLUSTER_NODES");
        refused(&[("REDIS_SENTINELS", "a:1"), ("REDIS_CLUSTER_NODES", "b:2")], "REDIS_CLUSTER_NODES");
        refused(&[("REDIS_SENTINELS", "a:1"), ("REDIS_SENTINEL_MASTER", "my master")], "REDIS_SENTINEL_MASTER");
        refused(&[("REDIS_TLS_CERT", "client.pem")], "REDIS_TLS_KEY");
        refused(&[("REDIS_TLS_KEY", "client.key")], "REDIS_TLS_CERT");
        refused(&[("REDIS_URL", "redis://127.0.0.1:6379/?protocol=3")], "REDIS_URL");
        refused(&[("REDIS_URL", "redis://127.0.0.1:6379/?protocol=resp3")], "REDIS_URL");
        assert!(cfg(&[("REDIS_URL", "redis://127.0.0.1:6379/?protocol=resp2")]).is_ok());
        let tls =
            cfg(&[("REDIS_TLS_CA", "ca.pem"), ("REDIS_TLS_CERT", "c.pem"), ("REDIS_TLS_KEY", "k.pem")]).expect("valid");
        assert_eq!(tls.redis_tls.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert!(tls.redis_tls.is_set() && tls.redis_tls.client.is_some());
    }

    #[test]
    fn redis_settings_from_url_or_parts_with_the_password_masked() {
        let c = cfg(&[("REDIS_URL", "rediss://bot:s3cret@redis.example:6380/2")]).expect("valid");
        assert_eq!(c.redis_url.expose(), "rediss://bot:s3cret@redis.example:6380/2");
        let shown: String = c.describe().iter().map(|(k, v)| format!("{k}={v}\n")).collect::<Vec<_>>().concat();
        assert!(shown.contains("REDIS_URL=rediss://bot:****@redis.example:6380/2"), "{shown}");
        assert!(!shown.contains("s3cret"));
        let parts =
            cfg(&[("REDIS_HOST", "10.0.0.5"), ("REDIS_PORT", "6390"), ("REDIS_PASSWORD", "pw"), ("REDIS_DB", "3")])
                .expect("valid");
        assert_eq!(parts.redis_url.expose(), "redis://:pw@10.0.0.5:6390/3");
        assert!(cfg(&[("REDIS_URL", "http://nope")]).is_err_and(|e| e.variable == "REDIS_URL"));
        assert!(cfg(&[("REDIS_PORT", "x")]).is_err_and(|e| e.variable == "REDIS_PORT"));
        assert!(cfg(&[("ENABLE_REDIS_EVENTS", "perhaps")]).is_err_and(|e| e.variable == "ENABLE_REDIS_EVENTS"));
        assert!(cfg(&[("EVENT_HISTORY_TTL", "-1")]).is_err_and(|e| e.variable == "EVENT_HISTORY_TTL"));
    }
}
