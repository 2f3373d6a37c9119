//! Configuration: the process environment (and `.env`) parsed once into a validated [`Config`].
//!
//! Two steps, raw then validated: [`Config::from_vars`] takes name/value pairs, so tests never touch
//! the real environment. A bad value is one [`ConfigError`] naming the variable. Secrets live in
//! [`Secret`], whose `Debug` and `Display` never show the value.
//!
//! By concern: `redis` (where the servers are, TLS files, the URL, the link's timings), `safety`
//! (the bounds on what reaches the bot from outside), `parse` (the value parsers) and `describe`
//! (every variable with its default, and the effective configuration shown with secrets masked).

mod describe;
mod motion;
mod parse;
mod redis;
mod safety;

pub use self::describe::VARIABLES;
pub use self::motion::MotionConfig;
pub use self::redis::{RedisTiming, RedisTlsFiles, RedisTopology};
pub use crate::secret::{Secret, mask_url};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use self::parse::{
    admin_token, boolean, is_twitch_login, keepalive_secs, list, log_level, number, osc_targets, parse_addr, resolve,
};
use self::redis::redis_url;
use self::safety::Safety;
use crate::osc::OscFormat;

/// A bad configuration value: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
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
    /// The OSC tick, heartbeat, bundling and the longest ramp.
    pub motion: MotionConfig,
    /// `None`: the catalogue built into the binary (a copy of `data/catalog.json`).
    pub catalog_path: Option<PathBuf>,
    pub routing_file: PathBuf,
    /// `None`: `scenes.json` in the routing file's directory ([`Config::scenes_file`]).
    pub scenes_file: Option<PathBuf>,
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
    /// The Redis link's probe, heartbeat and reconnect timings: always the defaults in a running bot
    /// (no variable sets them); tests and benchmarks shorten them.
    pub redis_timing: RedisTiming,
}

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
        let osc_format = OscFormat::parse(v.get("OSC_FORMAT").unwrap_or("max")).map_err(|e| err("OSC_FORMAT", e))?;
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
        let routing_file = PathBuf::from(v.get("ROUTING_FILE").unwrap_or("routing_table.json"));
        let scenes_file = v.get("SCENES_FILE").map(PathBuf::from);
        let scenes_path = scenes_file.clone().unwrap_or_else(|| scenes_beside(&routing_file));
        if scenes_path == routing_file {
            // Each file's writer would replace the other's table, and the next start would refuse both.
            return Err(err(
                "SCENES_FILE",
                format!("{} is the routing file; give scenes a file of their own", scenes_path.display()),
            ));
        }
        Ok(Config {
            instance_id,
            http_addr,
            osc_targets,
            osc_format,
            motion: MotionConfig::from_vars(&v)?,
            catalog_path: v.get("CATALOG_PATH").map(PathBuf::from),
            routing_file,
            scenes_file,
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
            twitch_oauth_token: Secret::new(token.trim_start_matches("oauth:")),
            redis_enabled: boolean("ENABLE_REDIS_EVENTS", v.get("ENABLE_REDIS_EVENTS"), true)?,
            redis_url: Secret::new(redis_url),
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
            event_signing_key: Secret::new(v.get("EVENT_SIGNING_KEY").unwrap_or_default()),
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
            redis_timing: RedisTiming::default(),
        })
    }
}

impl Config {
    /// Where scenes are kept: `SCENES_FILE`, or `scenes.json` beside the routing file.
    pub fn scenes_file(&self) -> PathBuf {
        self.scenes_file.clone().unwrap_or_else(|| scenes_beside(&self.routing_file))
    }
}

/// `scenes.json` in the directory of `routing_file`, so one directory holds a lone instance's show.
fn scenes_beside(routing_file: &std::path::Path) -> PathBuf {
    routing_file.parent().unwrap_or(std::path::Path::new("")).join("scenes.json")
}

#[cfg(test)]
fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        from_pairs(pairs)
    }

    #[test]
    fn defaults_need_nothing() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.instance_id, "bot-001");
        assert_eq!(c.http_addr, "127.0.0.1:3001".parse().expect("addr"));
        assert_eq!(c.osc_targets, vec!["127.0.0.1:7400".parse().expect("addr")]);
        assert_eq!(c.osc_format, OscFormat::MAX);
        assert_eq!(c.motion, MotionConfig::default());
        assert_eq!(c.rate_limit, Duration::from_secs(1));
        assert_eq!(c.global_rate_limit, 50);
        assert_eq!(c.chat_stdin, StdinMode::Auto);
        assert_eq!(c.routing_file, PathBuf::from("routing_table.json"));
        assert_eq!(c.scenes_file(), PathBuf::from("scenes.json"));
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
            ("OSC_TICK_MS", "0", "OSC_TICK_MS"),
            ("OSC_TICK_MS", "101", "OSC_TICK_MS"),
            ("OSC_HEARTBEAT_MS", "10", "OSC_HEARTBEAT_MS"),
            ("OSC_HEARTBEAT_MS", "-1", "OSC_HEARTBEAT_MS"),
            ("OSC_BUNDLE", "sometimes", "OSC_BUNDLE"),
            ("RAMP_MAX_MS", "600001", "RAMP_MAX_MS"),
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
            ("ROUTING_FILE", "show/scenes.json", "SCENES_FILE"),
            ("SCENES_FILE", "routing_table.json", "SCENES_FILE"),
        ];
        for (name, value, expected) in cases {
            let e = cfg(&[(name, value)]).expect_err(&format!("{name}={value} must be refused"));
            assert_eq!(e.variable, *expected);
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn the_scenes_file_sits_beside_the_routing_file_unless_set() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "scenes.json"),
            (&[("ROUTING_FILE", "/srv/show/routing_table.json")], "/srv/show/scenes.json"),
            (&[("ROUTING_FILE", "show/left.json")], "show/scenes.json"),
            (&[("ROUTING_FILE", "show/left.json"), ("SCENES_FILE", "show/left-scenes.json")], "show/left-scenes.json"),
            (&[("SCENES_FILE", "  ")], "scenes.json"),
        ];
        for (pairs, wanted) in cases {
            assert_eq!(cfg(pairs).expect("valid").scenes_file(), PathBuf::from(wanted), "{pairs:?}");
        }
    }
}
