//! Configuration: the process environment (and `.env`) parsed once into a validated [`Config`].
//!
//! Two steps, raw then validated: [`Config::from_vars`] takes name/value pairs, so tests never touch
//! the real environment. A bad value is one [`ConfigError`] naming the variable. Secrets live in
//! [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::osc::OscFormat;

/// A bad configuration value: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// A value that must never be printed or logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "Secret(****)" } else { "Secret(unset)" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "****" } else { "(unset)" })
    }
}

/// Whether the terminal is a chat source (`CHAT_STDIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// On when standard input is a terminal or a pipe, off otherwise (e.g. /dev/null under a service manager).
    Auto,
    On,
    Off,
}

/// The validated configuration. Nothing else in the crate reads the environment.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // Each flag is an independent on/off variable users set.
pub struct Config {
    pub instance_id: String,
    pub http_addr: SocketAddr,
    pub osc_targets: Vec<SocketAddr>,
    pub osc_format: OscFormat,
    /// `None`: the catalogue built into the binary (a copy of `data/catalog.json`).
    pub catalog_path: Option<PathBuf>,
    pub routing_file: PathBuf,
    pub rate_limit: Duration,
    pub global_rate_limit: u32,
    /// Lower-case logins and numeric ids.
    pub admin_users: HashSet<String>,
    pub chat_stdin: StdinMode,
    /// Login the terminal operator's commands are attributed to.
    pub operator_name: String,
    pub output_rest_on_shutdown: bool,
    pub log_level: String,
    /// Twitch channels to join (used by the Twitch chat source).
    pub twitch_channels: Vec<String>,
    pub twitch_username: Option<String>,
    pub twitch_oauth_token: Secret,
    /// `ENABLE_REDIS_EVENTS`: false runs local-only by choice.
    pub redis_enabled: bool,
    /// The connection URL; may hold a password, so it is a secret (shown masked).
    pub redis_url: Secret,
    pub redis_key_prefix: String,
    pub redis_publish: bool,
    pub redis_subscribe: bool,
    /// One server (`REDIS_URL`), a Sentinel-managed master, or a Cluster.
    pub redis_topology: RedisTopology,
    /// `REDIS_TLS_CA`, `REDIS_TLS_CERT`, `REDIS_TLS_KEY`: PEM files for `rediss://` (read at start).
    pub redis_tls: RedisTlsFiles,
    pub event_history_ttl: Duration,
    pub event_signing_key: Secret,
    /// Unpublished local events kept while Redis is unreachable (newest per register).
    pub outbox_capacity: usize,
    /// `TWITCH_IRC_ADDR`: a plain-TCP IRC server to use instead of Twitch (tests, relays).
    pub twitch_irc_addr: Option<SocketAddr>,
    /// `CHAT_REPLY_ERRORS`: tell viewers in chat why their command did nothing.
    pub chat_reply_errors: bool,
    /// Bearer token for the HTTP write endpoints and the admin page; unset disables them.
    pub admin_token: Secret,
    /// How often an idle SSE stream (overlay, admin page) gets a keep-alive comment.
    pub sse_keepalive: Duration,
    /// `MAX_CLOCK_SKEW_MS`: a remote stamp further ahead of our clock than this is refused.
    pub max_clock_skew: Duration,
    /// `EVENT_MAX_AGE_MS`: with `EVENT_SIGNING_KEY`, a signed event older than this is refused as a replay.
    pub event_max_age: Duration,
    /// `HTTP_HEADER_TIMEOUT_MS`: a connection whose request headers take longer is closed.
    pub http_header_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: open HTTP connections served at once; beyond, 503 with `Retry-After`.
    pub http_max_connections: usize,
    /// `SSE_MAX_CLIENTS`: open `/events` streams at once; beyond, 503 with `Retry-After`.
    pub sse_max_clients: usize,
    /// `HTTP_ALLOWED_HOSTS`: extra `Host` names served besides the bound address and `localhost` (lower case).
    pub http_allowed_hosts: Vec<String>,
}

/// Every variable with its default, in the order `cvbot config` and `.env.example` list them.
pub const VARIABLES: &[(&str, &str)] = &[
    ("INSTANCE_ID", "bot-001"),
    ("HTTP_ADDR", "127.0.0.1:3001"),
    ("OSC_TARGETS", "127.0.0.1:7400"),
    ("OSC_FORMAT", "max"),
    ("CATALOG_PATH", "(built-in data/catalog.json)"),
    ("ROUTING_FILE", "routing_table.json"),
    ("RATE_LIMIT_MS", "1000"),
    ("GLOBAL_RATE_LIMIT", "50"),
    ("ADMIN_USERS", ""),
    ("CHAT_STDIN", "auto"),
    ("OPERATOR_NAME", "operator"),
    ("OUTPUT_REST_ON_SHUTDOWN", "false"),
    ("LOG_LEVEL", "info"),
    ("TWITCH_CHANNELS", ""),
    ("TWITCH_USERNAME", ""),
    ("TWITCH_OAUTH_TOKEN", ""),
    ("ENABLE_REDIS_EVENTS", "true"),
    ("REDIS_URL", "redis://127.0.0.1:6379"),
    ("REDIS_KEY_PREFIX", ""),
    ("REDIS_ENABLE_PUBLISHING", "true"),
    ("REDIS_ENABLE_SUBSCRIPTION", "true"),
    ("REDIS_SENTINELS", ""),
    ("REDIS_SENTINEL_MASTER", "mymaster"),
    ("REDIS_SENTINEL_PASSWORD", ""),
    ("REDIS_CLUSTER_NODES", ""),
    ("REDIS_TLS_CA", ""),
    ("REDIS_TLS_CERT", ""),
    ("REDIS_TLS_KEY", ""),
    ("EVENT_HISTORY_TTL", "3600"),
    ("EVENT_SIGNING_KEY", ""),
    ("OUTBOX_CAPACITY", "10000"),
    ("TWITCH_IRC_ADDR", ""),
    ("CHAT_REPLY_ERRORS", "false"),
    ("ADMIN_TOKEN", ""),
    ("SSE_KEEPALIVE_SECS", "15"),
    ("MAX_CLOCK_SKEW_MS", "10000"),
    ("EVENT_MAX_AGE_MS", "60000"),
    ("HTTP_HEADER_TIMEOUT_MS", "10000"),
    ("HTTP_MAX_CONNECTIONS", "1024"),
    ("SSE_MAX_CLIENTS", "256"),
    ("HTTP_ALLOWED_HOSTS", ""),
];

struct Vars(HashMap<String, String>);

impl Vars {
    /// The value of `name`, treating empty as unset (an empty line in `.env` means "use the default").
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

impl Config {
    /// Builds the configuration from name/value pairs (the process environment in `main`).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let v = Vars(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        let instance_id = v.get("INSTANCE_ID").unwrap_or("bot-001").to_owned();
        if instance_id.len() > 64 || !instance_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(err("INSTANCE_ID", format!("{instance_id:?} must be 1-64 letters, digits, '-', '_' or '.'")));
        }
        let http_addr = parse_addr("HTTP_ADDR", v.get("HTTP_ADDR").unwrap_or("127.0.0.1:3001"))?;
        let osc_targets = osc_targets(&v)?;
        let osc_format = match v.get("OSC_FORMAT").unwrap_or("max").to_ascii_lowercase().as_str() {
            "max" => OscFormat::Max,
            "address" => OscFormat::Address,
            "both" => OscFormat::Both,
            other => return Err(err("OSC_FORMAT", format!("{other:?} is not one of max, address, both"))),
        };
        let mut admin_users: HashSet<String> = list(v.get("ADMIN_USERS")).map(str::to_ascii_lowercase).collect();
        admin_users.extend(list(v.get("ADMIN_USERNAME")).map(str::to_ascii_lowercase));
        let channels = v.get("TWITCH_CHANNELS").or_else(|| v.get("TWITCH_CHANNEL"));
        let twitch_channels: BTreeSet<String> =
            list(channels).map(|c| c.trim_start_matches('#').to_ascii_lowercase()).collect();
        if let Some(bad) = twitch_channels.iter().find(|c| !is_twitch_login(c)) {
            return Err(err("TWITCH_CHANNELS", format!("{bad:?} is not a Twitch channel name")));
        }
        let redis_url = redis_url(&v)?;
        let twitch_username = v.get("TWITCH_USERNAME").map(str::to_ascii_lowercase);
        if let Some(bad) = twitch_username.as_ref().filter(|u| !is_twitch_login(u)) {
            return Err(err("TWITCH_USERNAME", format!("{bad:?} is not a Twitch login")));
        }
        let token = v.get("TWITCH_OAUTH_TOKEN").or_else(|| v.get("TWITCH_PASSWORD")).unwrap_or_default();
        if !token.is_empty() && v.get("TWITCH_USERNAME").is_none() {
            return Err(err("TWITCH_USERNAME", "must be set with TWITCH_OAUTH_TOKEN (the bot account's login)"));
        }
        let twitch_irc_addr = v.get("TWITCH_IRC_ADDR").map(|a| resolve("TWITCH_IRC_ADDR", a)).transpose()?;
        let safety = Safety::from_vars(&v)?;
        Ok(Config {
            instance_id,
            http_addr,
            osc_targets,
            osc_format,
            catalog_path: v.get("CATALOG_PATH").map(PathBuf::from),
            routing_file: PathBuf::from(v.get("ROUTING_FILE").unwrap_or("routing_table.json")),
            rate_limit: Duration::from_millis(number("RATE_LIMIT_MS", v.get("RATE_LIMIT_MS"), 1000, 3_600_000)?),
            global_rate_limit: u32::try_from(number("GLOBAL_RATE_LIMIT", v.get("GLOBAL_RATE_LIMIT"), 50, 100_000)?)
                .unwrap_or(50),
            admin_users,
            chat_stdin: match v.get("CHAT_STDIN").unwrap_or("auto").to_ascii_lowercase().as_str() {
                "auto" => StdinMode::Auto,
                "on" | "true" | "1" | "yes" => StdinMode::On,
                "off" | "false" | "0" | "no" => StdinMode::Off,
                other => return Err(err("CHAT_STDIN", format!("{other:?} is not one of auto, on, off"))),
            },
            operator_name: v.get("OPERATOR_NAME").unwrap_or("operator").to_ascii_lowercase(),
            output_rest_on_shutdown: boolean("OUTPUT_REST_ON_SHUTDOWN", v.get("OUTPUT_REST_ON_SHUTDOWN"), false)?,
            log_level: log_level(v.get("LOG_LEVEL"))?,
            twitch_channels: twitch_channels.into_iter().collect(),
            twitch_username,
            twitch_oauth_token: Secret(token.trim_start_matches("oauth:").to_owned()),
            redis_enabled: boolean("ENABLE_REDIS_EVENTS", v.get("ENABLE_REDIS_EVENTS"), true)?,
            redis_url: Secret(redis_url),
            redis_key_prefix: v.get("REDIS_KEY_PREFIX").unwrap_or_default().to_owned(),
            redis_publish: boolean("REDIS_ENABLE_PUBLISHING", v.get("REDIS_ENABLE_PUBLISHING"), true)?,
            redis_subscribe: boolean("REDIS_ENABLE_SUBSCRIPTION", v.get("REDIS_ENABLE_SUBSCRIPTION"), true)?,
            redis_topology: RedisTopology::from_vars(&v)?,
            redis_tls: RedisTlsFiles::from_vars(&v)?,
            event_history_ttl: Duration::from_secs(number(
                "EVENT_HISTORY_TTL",
                v.get("EVENT_HISTORY_TTL"),
                3600,
                30 * 24 * 3600,
            )?),
            event_signing_key: Secret(v.get("EVENT_SIGNING_KEY").unwrap_or_default().to_owned()),
            outbox_capacity: usize::try_from(number("OUTBOX_CAPACITY", v.get("OUTBOX_CAPACITY"), 10_000, 1_000_000)?)
                .unwrap_or(10_000)
                .max(1),
            twitch_irc_addr,
            chat_reply_errors: boolean("CHAT_REPLY_ERRORS", v.get("CHAT_REPLY_ERRORS"), false)?,
            admin_token: admin_token(v.get("ADMIN_TOKEN"))?,
            sse_keepalive: Duration::from_secs(keepalive_secs(v.get("SSE_KEEPALIVE_SECS"))?),
            max_clock_skew: safety.max_clock_skew,
            event_max_age: safety.event_max_age,
            http_header_timeout: safety.http_header_timeout,
            http_max_connections: safety.http_max_connections,
            sse_max_clients: safety.sse_max_clients,
            http_allowed_hosts: safety.http_allowed_hosts,
        })
    }

    /// `NAME=value` lines of the effective configuration, secrets masked, for `cvbot config`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
        let mut admins: Vec<&String> = self.admin_users.iter().collect();
        admins.sort();
        vec![
            ("INSTANCE_ID", self.instance_id.clone()),
            ("HTTP_ADDR", self.http_addr.to_string()),
            ("OSC_TARGETS", join(&mut self.osc_targets.iter().map(ToString::to_string))),
            ("OSC_FORMAT", format!("{:?}", self.osc_format).to_ascii_lowercase()),
            (
                "CATALOG_PATH",
                self.catalog_path
                    .as_ref()
                    .map_or("(built-in data/catalog.json)".to_owned(), |p| p.display().to_string()),
            ),
            ("ROUTING_FILE", self.routing_file.display().to_string()),
            ("RATE_LIMIT_MS", self.rate_limit.as_millis().to_string()),
            ("GLOBAL_RATE_LIMIT", self.global_rate_limit.to_string()),
            ("ADMIN_USERS", join(&mut admins.into_iter().cloned())),
            ("CHAT_STDIN", format!("{:?}", self.chat_stdin).to_ascii_lowercase()),
            ("OPERATOR_NAME", self.operator_name.clone()),
            ("OUTPUT_REST_ON_SHUTDOWN", self.output_rest_on_shutdown.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            ("TWITCH_CHANNELS", self.twitch_channels.join(",")),
            ("TWITCH_USERNAME", self.twitch_username.clone().unwrap_or_default()),
            ("TWITCH_OAUTH_TOKEN", self.twitch_oauth_token.to_string()),
            ("ENABLE_REDIS_EVENTS", self.redis_enabled.to_string()),
            ("REDIS_URL", mask_url(self.redis_url.expose())),
            ("REDIS_KEY_PREFIX", self.redis_key_prefix.clone()),
            ("REDIS_ENABLE_PUBLISHING", self.redis_publish.to_string()),
            ("REDIS_ENABLE_SUBSCRIPTION", self.redis_subscribe.to_string()),
            ("REDIS_SENTINELS", self.redis_topology.sentinels().join(",")),
            ("REDIS_SENTINEL_MASTER", self.redis_topology.master_name().to_owned()),
            ("REDIS_SENTINEL_PASSWORD", self.redis_topology.sentinel_password().to_string()),
            ("REDIS_CLUSTER_NODES", self.redis_topology.cluster_nodes().join(",")),
            ("REDIS_TLS_CA", shown_path(self.redis_tls.ca.as_ref())),
            ("REDIS_TLS_CERT", shown_path(self.redis_tls.client.as_ref().map(|(c, _)| c))),
            ("REDIS_TLS_KEY", shown_path(self.redis_tls.client.as_ref().map(|(_, k)| k))),
            ("EVENT_HISTORY_TTL", self.event_history_ttl.as_secs().to_string()),
            ("EVENT_SIGNING_KEY", self.event_signing_key.to_string()),
            ("OUTBOX_CAPACITY", self.outbox_capacity.to_string()),
            ("TWITCH_IRC_ADDR", self.twitch_irc_addr.map(|a| a.to_string()).unwrap_or_default()),
            ("CHAT_REPLY_ERRORS", self.chat_reply_errors.to_string()),
            ("ADMIN_TOKEN", self.admin_token.to_string()),
            ("SSE_KEEPALIVE_SECS", self.sse_keepalive.as_secs().to_string()),
            ("MAX_CLOCK_SKEW_MS", self.max_clock_skew.as_millis().to_string()),
            ("EVENT_MAX_AGE_MS", self.event_max_age.as_millis().to_string()),
            ("HTTP_HEADER_TIMEOUT_MS", self.http_header_timeout.as_millis().to_string()),
            ("HTTP_MAX_CONNECTIONS", self.http_max_connections.to_string()),
            ("SSE_MAX_CLIENTS", self.sse_max_clients.to_string()),
            ("HTTP_ALLOWED_HOSTS", self.http_allowed_hosts.join(",")),
        ]
    }
}

/// The bounds on what reaches the bot from outside: clocks, signatures, HTTP.
struct Safety {
    max_clock_skew: Duration,
    event_max_age: Duration,
    http_header_timeout: Duration,
    http_max_connections: usize,
    sse_max_clients: usize,
    http_allowed_hosts: Vec<String>,
}

impl Safety {
    fn from_vars(v: &Vars) -> Result<Safety, ConfigError> {
        let ms = |name: &'static str, bounds| at_least(name, v.get(name), bounds).map(Duration::from_millis);
        let count = |name: &'static str, default: u64| {
            at_least(name, v.get(name), (default, 1, 1_000_000)).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        Ok(Safety {
            max_clock_skew: ms("MAX_CLOCK_SKEW_MS", (10_000, 100, 24 * 3_600_000))?,
            event_max_age: ms("EVENT_MAX_AGE_MS", (60_000, 1_000, 24 * 3_600_000))?,
            http_header_timeout: ms("HTTP_HEADER_TIMEOUT_MS", (10_000, 100, 600_000))?,
            http_max_connections: count("HTTP_MAX_CONNECTIONS", 1024)?,
            sse_max_clients: count("SSE_MAX_CLIENTS", 256)?,
            http_allowed_hosts: allowed_hosts(v.get("HTTP_ALLOWED_HOSTS"))?,
        })
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
    fn from_vars(v: &Vars) -> Result<RedisTopology, ConfigError> {
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
                let password = Secret(v.get("REDIS_SENTINEL_PASSWORD").unwrap_or_default().to_owned());
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

    fn sentinel_password(&self) -> Secret {
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
    fn from_vars(v: &Vars) -> Result<RedisTlsFiles, ConfigError> {
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

fn shown_path(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// A comma-separated list of `host:port` (a host name, an IPv4 address or a bracketed IPv6 one).
fn host_ports(variable: &'static str, value: Option<&str>) -> Result<Vec<String>, ConfigError> {
    list(value)
        .map(|entry| {
            let bad = || err(variable, format!("{entry:?} is not host:port"));
            let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
            let host_ok = !host.is_empty()
                && (host.starts_with('[') && host.ends_with(']')
                    || host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
            match port.parse::<u16>() {
                Ok(p) if p > 0 && host_ok => Ok(entry.to_owned()),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `REDIS_URL`, or one built from `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`/`REDIS_DB`.
fn redis_url(v: &Vars) -> Result<String, ConfigError> {
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

/// A URL with its password replaced by `****`, safe to print.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            let masked = if userinfo.contains(':') { format!("{user}:****") } else { "****".to_owned() };
            format!("{scheme}://{masked}@{host}")
        }
        None => url.to_owned(),
    }
}

/// Twitch logins (and so channel names): 1-25 of `a-z`, `0-9`, `_` (lower-cased before this check).
fn is_twitch_login(name: &str) -> bool {
    (1..=25).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The HTTP admin token: long enough that guessing it is hopeless, and printable so it fits a header.
fn admin_token(value: Option<&str>) -> Result<Secret, ConfigError> {
    let Some(token) = value else { return Ok(Secret::default()) };
    if token.len() < 16 {
        return Err(err("ADMIN_TOKEN", "must be at least 16 characters (try `openssl rand -hex 24`)"));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(err("ADMIN_TOKEN", "must be printable ASCII without spaces"));
    }
    Ok(Secret(token.to_owned()))
}

fn keepalive_secs(value: Option<&str>) -> Result<u64, ConfigError> {
    match number("SSE_KEEPALIVE_SECS", value, 15, 300)? {
        0 => Err(err("SSE_KEEPALIVE_SECS", "must be at least 1")),
        n => Ok(n),
    }
}

/// `LOG_LEVEL`: one of the five tracing levels; anything else (a typo such as `loud`) stops start-up
/// instead of silently logging at some other level.
fn log_level(value: Option<&str>) -> Result<String, ConfigError> {
    let level = value.unwrap_or("info").to_ascii_lowercase();
    if ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(err("LOG_LEVEL", format!("{level:?} is not one of error, warn, info, debug, trace")))
    }
}

/// A whole number with a default, a floor and a ceiling: `(default, min, max)`.
fn at_least(
    variable: &'static str,
    value: Option<&str>,
    (default, min, max): (u64, u64, u64),
) -> Result<u64, ConfigError> {
    match number(variable, value, default, max)? {
        n if n < min => Err(err(variable, format!("{n} is smaller than {min}"))),
        n => Ok(n),
    }
}

/// `HTTP_ALLOWED_HOSTS`: host names (no port, no scheme), lower-cased.
fn allowed_hosts(value: Option<&str>) -> Result<Vec<String>, ConfigError> {
    list(value)
        .map(|h| {
            let h = h.to_ascii_lowercase();
            if h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)) {
                Ok(h)
            } else {
                Err(err("HTTP_ALLOWED_HOSTS", format!("{h:?} is not a host name")))
            }
        })
        .collect()
}

fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_addr(variable: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|_| err(variable, format!("{text:?} is not an address like 127.0.0.1:3001")))
}

/// `host:port`, resolving names such as `localhost` once at start-up.
fn resolve(variable: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (_, port) = text.rsplit_once(':').ok_or_else(|| err(variable, format!("{text:?} needs host:port")))?;
    port.parse::<u16>().map_err(|_| err(variable, format!("{text:?}: {port:?} is not a port number")))?;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| err(variable, format!("cannot resolve {text:?}")))
}

fn osc_targets(v: &Vars) -> Result<Vec<SocketAddr>, ConfigError> {
    if let Some(targets) = v.get("OSC_TARGETS") {
        let parsed: Result<Vec<SocketAddr>, ConfigError> =
            list(Some(targets)).map(|t| resolve("OSC_TARGETS", t)).collect();
        let parsed = parsed?;
        if parsed.is_empty() {
            return Err(err("OSC_TARGETS", "needs at least one host:port"));
        }
        return Ok(parsed);
    }
    // The older bot's pair of variables, for existing .env files.
    let host = v.get("MAX_OSC_HOST").unwrap_or("127.0.0.1");
    let port = v.get("MAX_OSC_PORT").unwrap_or("7400");
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| err("MAX_OSC_PORT", format!("{port:?} is not a port number")))?;
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(vec![resolve("MAX_OSC_HOST", &target)?])
}

fn number(variable: &'static str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ConfigError> {
    let Some(text) = value else { return Ok(default) };
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(err(variable, format!("{text} is larger than {max}"))),
        Err(_) => Err(err(variable, format!("{text:?} is not a whole number"))),
    }
}

fn boolean(variable: &'static str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(err(variable, format!("{other:?} is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn defaults_need_nothing() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.instance_id, "bot-001");
        assert_eq!(c.http_addr, "127.0.0.1:3001".parse().expect("addr"));
        assert_eq!(c.osc_targets, vec!["127.0.0.1:7400".parse().expect("addr")]);
        assert_eq!(c.osc_format, OscFormat::Max);
        assert_eq!(c.rate_limit, Duration::from_secs(1));
        assert_eq!(c.global_rate_limit, 50);
        assert_eq!(c.chat_stdin, StdinMode::Auto);
        assert_eq!(c.routing_file, PathBuf::from("routing_table.json"));
        assert!(c.catalog_path.is_none());
    }

    #[test]
    fn older_bot_names_are_accepted() {
        let c = cfg(&[
            ("MAX_OSC_HOST", "127.0.0.2"),
            ("MAX_OSC_PORT", "9000"),
            ("ADMIN_USERNAME", "TheStreamer"),
            ("TWITCH_CHANNEL", "#MyChannel"),
            ("TWITCH_PASSWORD", "oauth:abc123"),
            ("TWITCH_USERNAME", "MyBot"),
        ])
        .expect("valid");
        assert_eq!(c.osc_targets, vec!["127.0.0.2:9000".parse().expect("addr")]);
        assert!(c.admin_users.contains("thestreamer"));
        assert_eq!(c.twitch_channels, vec!["mychannel"]);
        assert_eq!(c.twitch_oauth_token.expose(), "abc123");
    }

    #[test]
    fn several_osc_targets() {
        let c = cfg(&[("OSC_TARGETS", "127.0.0.1:7400, 127.0.0.1:7401,localhost:9000")]).expect("valid");
        assert_eq!(c.osc_targets.len(), 3);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("HTTP_ADDR", "localhost", "HTTP_ADDR"),
            ("OSC_TARGETS", "nohostport", "OSC_TARGETS"),
            ("OSC_TARGETS", "127.0.0.1:99999", "OSC_TARGETS"),
            ("OSC_FORMAT", "midi", "OSC_FORMAT"),
            ("RATE_LIMIT_MS", "fast", "RATE_LIMIT_MS"),
            ("RATE_LIMIT_MS", "-5", "RATE_LIMIT_MS"),
            ("GLOBAL_RATE_LIMIT", "1e9", "GLOBAL_RATE_LIMIT"),
            ("CHAT_STDIN", "sometimes", "CHAT_STDIN"),
            ("INSTANCE_ID", "bot 1", "INSTANCE_ID"),
            ("MAX_OSC_PORT", "0", "MAX_OSC_PORT"),
            ("OUTPUT_REST_ON_SHUTDOWN", "maybe", "OUTPUT_REST_ON_SHUTDOWN"),
            ("TWITCH_CHANNELS", "a b", "TWITCH_CHANNELS"),
            ("TWITCH_CHANNELS", "averyveryverylongchannelname", "TWITCH_CHANNELS"),
            ("TWITCH_USERNAME", "bot account", "TWITCH_USERNAME"),
            ("TWITCH_IRC_ADDR", "irc.example", "TWITCH_IRC_ADDR"),
            ("TWITCH_IRC_ADDR", "127.0.0.1:notaport", "TWITCH_IRC_ADDR"),
            ("CHAT_REPLY_ERRORS", "loud", "CHAT_REPLY_ERRORS"),
            ("TWITCH_OAUTH_TOKEN", "oauth:abc", "TWITCH_USERNAME"),
            ("ADMIN_TOKEN", "short", "ADMIN_TOKEN"),
            ("SSE_KEEPALIVE_SECS", "0", "SSE_KEEPALIVE_SECS"),
            ("SSE_KEEPALIVE_SECS", "301", "SSE_KEEPALIVE_SECS"),
            ("ADMIN_TOKEN", "with a space in it 0123456789", "ADMIN_TOKEN"),
            ("LOG_LEVEL", "loud", "LOG_LEVEL"),
            ("MAX_CLOCK_SKEW_MS", "50", "MAX_CLOCK_SKEW_MS"),
            ("MAX_CLOCK_SKEW_MS", "soon", "MAX_CLOCK_SKEW_MS"),
            ("EVENT_MAX_AGE_MS", "0", "EVENT_MAX_AGE_MS"),
            ("HTTP_HEADER_TIMEOUT_MS", "0", "HTTP_HEADER_TIMEOUT_MS"),
            ("HTTP_MAX_CONNECTIONS", "0", "HTTP_MAX_CONNECTIONS"),
            ("SSE_MAX_CLIENTS", "0", "SSE_MAX_CLIENTS"),
            ("HTTP_ALLOWED_HOSTS", "http://evil/", "HTTP_ALLOWED_HOSTS"),
        ];
        for (name, value, expected) in cases {
            let e = cfg(&[(name, value)]).expect_err(&format!("{name}={value} must be refused"));
            assert_eq!(e.variable, *expected);
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

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

    #[test]
    fn secrets_never_print() {
        let c = cfg(&[
            ("TWITCH_OAUTH_TOKEN", "oauth:supersecret"),
            ("TWITCH_USERNAME", "bot"),
            ("ADMIN_TOKEN", "supersecret-admin-token"),
        ])
        .expect("valid");
        assert!(!format!("{c:?}").contains("supersecret"));
        let described = c.describe().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n");
        assert!(!described.contains("supersecret"));
        assert!(described.contains("TWITCH_OAUTH_TOKEN=****"));
        assert!(described.contains("ADMIN_TOKEN=****"));
    }

    #[test]
    fn env_example_lists_every_variable_with_its_default() {
        let example = include_str!("../.env.example");
        for (name, default) in VARIABLES {
            let shown = if default.starts_with('(') { "" } else { default };
            let line = format!("\n{name}={shown}\n");
            assert!(example.contains(&line), ".env.example lacks {line:?}");
        }
        let c = cfg(&[]).expect("valid");
        for (name, value) in c.describe() {
            let documented = VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d).expect("documented");
            let value = if value == "(unset)" { String::new() } else { value };
            let value = if name == "REDIS_URL" { value.trim_end_matches("/0").to_owned() } else { value };
            assert_eq!(value, documented, "the default of {name} in VARIABLES matches the code");
        }
    }

    #[test]
    fn describe_lists_every_documented_variable() {
        let c = cfg(&[]).expect("valid");
        let names: Vec<&str> = c.describe().iter().map(|(k, _)| *k).collect();
        let documented: Vec<&str> = VARIABLES.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, documented);
    }
}
