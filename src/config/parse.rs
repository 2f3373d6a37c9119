//! The value parsers: numbers, flags, lists, addresses, host names, tokens and levels, each failing
//! with a [`ConfigError`] that names the variable.

use std::net::{SocketAddr, ToSocketAddrs};

use super::{ConfigError, Secret, Vars, err};

/// A comma-separated list of `host:port` (a host name, an IPv4 address or a bracketed IPv6 one).
pub(super) fn host_ports(variable: &'static str, value: Option<&str>) -> Result<Vec<String>, ConfigError> {
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

/// Twitch logins (and so channel names): 1-25 of `a-z`, `0-9`, `_` (lower-cased before this check).
pub(super) fn is_twitch_login(name: &str) -> bool {
    (1..=25).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The HTTP admin token: long enough that guessing it is hopeless, and printable so it fits a header.
pub(super) fn admin_token(value: Option<&str>) -> Result<Secret, ConfigError> {
    let Some(token) = value else { return Ok(Secret::default()) };
    if token.len() < 16 {
        return Err(err("ADMIN_TOKEN", "must be at least 16 characters (try `openssl rand -hex 24`)"));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(err("ADMIN_TOKEN", "must be printable ASCII without spaces"));
    }
    Ok(Secret::new(token))
}

pub(super) fn keepalive_secs(value: Option<&str>) -> Result<u64, ConfigError> {
    match number("SSE_KEEPALIVE_SECS", value, 15, 300)? {
        0 => Err(err("SSE_KEEPALIVE_SECS", "must be at least 1")),
        n => Ok(n),
    }
}

/// `LOG_LEVEL`: one of the five tracing levels; anything else (a typo such as `loud`) stops start-up
/// instead of silently logging at some other level.
pub(super) fn log_level(value: Option<&str>) -> Result<String, ConfigError> {
    let level = value.unwrap_or("info").to_ascii_lowercase();
    if ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(err("LOG_LEVEL", format!("{level:?} is not one of error, warn, info, debug, trace")))
    }
}

/// A whole number with a default, a floor and a ceiling: `(default, min, max)`.
pub(super) fn at_least(
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
pub(super) fn allowed_hosts(value: Option<&str>) -> Result<Vec<String>, ConfigError> {
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

pub(super) fn list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn parse_addr(variable: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|_| err(variable, format!("{text:?} is not an address like 127.0.0.1:3001")))
}

/// `host:port`, resolving names such as `localhost` once at start-up.
pub(super) fn resolve(variable: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
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

pub(super) fn osc_targets(v: &Vars) -> Result<Vec<SocketAddr>, ConfigError> {
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

pub(super) fn number(variable: &'static str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ConfigError> {
    let Some(text) = value else { return Ok(default) };
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(err(variable, format!("{text} is larger than {max}"))),
        Err(_) => Err(err(variable, format!("{text:?} is not a whole number"))),
    }
}

pub(super) fn boolean(variable: &'static str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(err(variable, format!("{other:?} is not true or false"))),
    }
}
