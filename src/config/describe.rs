//! Every variable with its default ([`VARIABLES`], what `.env.example` lists), and the effective
//! configuration as `NAME=value` lines with secrets masked ([`Config::describe`], for `cvbot config`).

use std::path::PathBuf;

use super::{Config, mask_url};

/// Every variable with its default, in the order `cvbot config` and `.env.example` list them.
pub const VARIABLES: &[(&str, &str)] = &[
    ("INSTANCE_ID", "bot-001"),
    ("HTTP_ADDR", "127.0.0.1:3001"),
    ("OSC_TARGETS", "127.0.0.1:7400"),
    ("OSC_FORMAT", "max"),
    ("OSC_TICK_MS", "5"),
    ("OSC_HEARTBEAT_MS", "1000"),
    ("OSC_BUNDLE", "false"),
    ("RAMP_MAX_MS", "10000"),
    ("CATALOG_PATH", "(built-in data/catalog.json)"),
    ("ROUTING_FILE", "routing_table.json"),
    ("SCENES_FILE", "(scenes.json beside ROUTING_FILE)"),
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

impl Config {
    /// `NAME=value` lines of the effective configuration, secrets masked, for `cvbot config`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
        let mut admins: Vec<&String> = self.admin_users.iter().collect();
        admins.sort();
        vec![
            ("INSTANCE_ID", self.instance_id.clone()),
            ("HTTP_ADDR", self.http_addr.to_string()),
            ("OSC_TARGETS", join(&mut self.osc_targets.iter().map(ToString::to_string))),
            ("OSC_FORMAT", self.osc_format.to_string()),
            ("OSC_TICK_MS", self.motion.osc_tick.as_millis().to_string()),
            ("OSC_HEARTBEAT_MS", self.motion.osc_heartbeat.map_or(0, |d| d.as_millis()).to_string()),
            ("OSC_BUNDLE", self.motion.osc_bundle.to_string()),
            ("RAMP_MAX_MS", self.motion.ramp_max_ms.to_string()),
            (
                "CATALOG_PATH",
                self.catalog_path
                    .as_ref()
                    .map_or("(built-in data/catalog.json)".to_owned(), |p| p.display().to_string()),
            ),
            ("ROUTING_FILE", self.routing_file.display().to_string()),
            (
                "SCENES_FILE",
                self.scenes_file
                    .as_ref()
                    .map_or("(scenes.json beside ROUTING_FILE)".to_owned(), |p| p.display().to_string()),
            ),
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

fn shown_path(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::from_pairs as cfg;
    use super::*;

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
        let example = include_str!("../../.env.example");
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
