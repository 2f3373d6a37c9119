//! What one instance's HTTP server will put up with: the header deadline, the connection and SSE
//! caps, which `Host` names it answers to, which request paths are safe to look up on disk, and the
//! security headers every response carries.
//!
//! Pure policy plus a few counters and a semaphore: knows no sockets, routes, state, OSC or Redis.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request head (request line and headers) read; a larger one is answered 431 and the
/// connection closed. Without it hyper buffers up to about 400 KB per connection; with it, stalled
/// clients can make one instance hold at most `HTTP_MAX_CONNECTIONS` × 64 KiB (64 MiB by default).
/// Browsers send a few KB; 64 KiB leaves room for the cookies other local tools set on `localhost`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Seconds a refused client is asked to wait (`Retry-After`) when a cap is reached.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The Content-Security-Policy of every page. Scripts and styles are files under `/overlay/`, so no
/// inline script or style is allowed (an injected one would not run); the page's own `fetch` and
/// `EventSource` are same-origin. `frame-ancestors 'self'` stops other sites framing the admin page
/// (click-jacking) and does not affect OBS, which loads the overlay as a top-level page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'self'";

/// The configured limits (`HTTP_HEADER_TIMEOUT_MS`, `HTTP_MAX_CONNECTIONS`, `SSE_MAX_CLIENTS`,
/// `HTTP_ALLOWED_HOSTS`) and the live counts that enforce them; clones share the counts.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection whose request headers have not all arrived after this long is closed.
    pub header_timeout: Duration,
    /// Connections served at once; the next one gets a bare 503 and is closed.
    pub max_connections: usize,
    /// Extra `Host` names served besides the bound address and loopback (lower case).
    pub allowed_hosts: Arc<[String]>,
    sse: Arc<Semaphore>,
    sse_max: usize,
    /// What the limits refused, for `/metrics`.
    pub counters: Arc<LimitCounters>,
}

/// Requests and connections the limits turned away (monotonic).
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Connections answered with 503 because `HTTP_MAX_CONNECTIONS` were open.
    pub connections_refused: AtomicU64,
    /// `/events` requests answered with 503 because `SSE_MAX_CLIENTS` streams were open.
    pub sse_refused: AtomicU64,
    /// Requests refused for their `Host` (missing, or not one this instance answers to).
    pub host_refused: AtomicU64,
}

/// An open `/events` stream's place under `SSE_MAX_CLIENTS`; dropping it frees the place.
#[derive(Debug)]
pub struct SseSlot {
    _permit: OwnedSemaphorePermit,
}

impl HttpLimits {
    pub fn new(
        header_timeout: Duration,
        max_connections: usize,
        sse_max_clients: usize,
        allowed_hosts: Vec<String>,
    ) -> HttpLimits {
        // The semaphore's own ceiling is far above anything the configuration accepts (1,000,000).
        let sse_max = sse_max_clients.min(Semaphore::MAX_PERMITS);
        HttpLimits {
            header_timeout,
            max_connections: max_connections.min(Semaphore::MAX_PERMITS),
            allowed_hosts: allowed_hosts.into(),
            sse: Arc::new(Semaphore::new(sse_max)),
            sse_max,
            counters: Arc::default(),
        }
    }

    /// A place for one more SSE stream, or `None` (counted) when `SSE_MAX_CLIENTS` are open.
    pub fn sse_slot(&self) -> Option<SseSlot> {
        if let Ok(permit) = self.sse.clone().try_acquire_owned() {
            Some(SseSlot { _permit: permit })
        } else {
            self.counters.sse_refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// `SSE_MAX_CLIENTS`.
    pub fn sse_max(&self) -> usize {
        self.sse_max
    }

    /// Open SSE streams holding a slot now.
    pub fn sse_open(&self) -> usize {
        self.sse_max - self.sse.available_permits()
    }
}

/// Why a request's `Host` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    /// HTTP/1.1 requires `Host`; without it we cannot tell a rebound name from ours.
    #[error("the request has no Host header")]
    Missing,
    /// A name (or address) this instance does not answer to: DNS rebinding, or a name the operator
    /// has not listed.
    #[error("this server does not answer to host {0:?}; add the name to HTTP_ALLOWED_HOSTS to serve it")]
    Foreign(String),
}

/// Which `Host` values this instance answers to.
///
/// The check exists against DNS rebinding: a web page on `evil.example` whose name is made to
/// resolve to 127.0.0.1 can otherwise read (and, with a stolen token, write) the API from a
/// viewer's or the streamer's browser. Rebinding needs a *name*, so IP literals are never the
/// attack; ports are not compared either, because the attacker controls the port as easily as we do
/// and proxies and port forwards change it legitimately.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    bound: IpAddr,
    allowed: Arc<[String]>,
}

impl HostPolicy {
    pub fn new(bound: SocketAddr, allowed: Arc<[String]>) -> HostPolicy {
        HostPolicy { bound: bound.ip(), allowed }
    }

    /// `authority` is the request's `Host` (or the authority of an absolute-form URI). `http10`
    /// requests may omit it: browsers always send one, so a request without it is not a page's.
    pub fn check(&self, authority: Option<&str>, http10: bool) -> Result<(), HostRefusal> {
        let authority = authority.map(str::trim).filter(|a| !a.is_empty());
        let Some(authority) = authority else {
            return if http10 { Ok(()) } else { Err(HostRefusal::Missing) };
        };
        let lower = authority.to_ascii_lowercase();
        let refused = || HostRefusal::Foreign(authority.chars().take(100).collect());
        let host = host_part(&lower).ok_or_else(refused)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if ip.is_loopback() || ip == self.bound || self.bound.is_unspecified() {
                Ok(())
            } else {
                Err(refused())
            };
        }
        // A fully qualified name may end in a dot; it names the same host.
        let name = host.strip_suffix('.').unwrap_or(host);
        if name == "localhost" || self.allowed.iter().any(|a| a == name || *a == lower) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

/// The host of `host[:port]` or `[v6][:port]`, without brackets; `None` when it is malformed.
fn host_part(authority: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    (port_ok && host_ok).then_some(host)
}

/// Whether a request path may be looked up under the overlay directory: it percent-decodes to UTF-8
/// with no NUL or other control character, no backslash and no `..` segment. Anything else is a
/// plain 404, decided here so the file server never sees it (it logs such paths as errors).
pub fn path_is_safe(path: &str) -> bool {
    let Some(decoded) = percent_decode(path) else { return false };
    let Ok(text) = std::str::from_utf8(&decoded) else { return false };
    !text.chars().any(|c| c.is_control() || c == '\\') && !text.split('/').any(|segment| segment.starts_with(".."))
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bound: &str, allowed: &[&str]) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        HostPolicy::new(bound.parse().expect("addr"), allowed.into())
    }

    #[test]
    fn loopback_names_the_bound_address_and_listed_names_are_served() {
        let p = policy("127.0.0.1:3001", &["obs.lan", "studio:8080"]);
        for ok in [
            "127.0.0.1:3001",
            "127.0.0.1",
            "localhost",
            "LOCALHOST:3001",
            "localhost.",
            "[::1]",
            "[::1]:3001",
            "obs.lan",
            "obs.lan:3001",
            "Obs.Lan",
            "studio:8080",
        ] {
            assert_eq!(p.check(Some(ok), false), Ok(()), "{ok}");
        }
        for bad in ["evil.example", "evil.example:3001", "localhost.evil.example", "studio", "192.168.1.5:3001"] {
            assert!(matches!(p.check(Some(bad), false), Err(HostRefusal::Foreign(_))), "{bad}");
        }
    }

    #[test]
    fn an_unspecified_bind_serves_any_ip_literal_but_no_unknown_name() {
        let p = policy("0.0.0.0:3001", &[]);
        assert_eq!(p.check(Some("192.168.1.5:3001"), false), Ok(()));
        assert_eq!(p.check(Some("[fe80::1]:3001"), false), Ok(()));
        assert!(p.check(Some("rebind.evil.example:3001"), false).is_err());
        let p = policy("192.168.1.5:3001", &[]);
        assert_eq!(p.check(Some("192.168.1.5:3001"), false), Ok(()));
        assert!(p.check(Some("10.0.0.1:3001"), false).is_err());
    }

    #[test]
    fn a_missing_host_is_refused_on_http11_only_and_malformed_hosts_are_foreign() {
        let p = policy("127.0.0.1:3001", &[]);
        assert_eq!(p.check(None, false), Err(HostRefusal::Missing));
        assert_eq!(p.check(Some("  "), false), Err(HostRefusal::Missing));
        assert_eq!(p.check(None, true), Ok(()));
        for bad in ["localhost:", "localhost:http", "[::1", "[::1]x", "::1", "a b", "localhost:123456", "@evil"] {
            assert!(matches!(p.check(Some(bad), false), Err(HostRefusal::Foreign(_))), "{bad}");
        }
        let long = "x".repeat(500);
        let Err(HostRefusal::Foreign(echo)) = p.check(Some(&long), false) else { panic!("refused") };
        assert_eq!(echo.len(), 100, "the echoed name is cut short");
    }

    #[test]
    fn only_plain_paths_reach_the_file_server() {
        for ok in ["/overlay/overlay.js", "/overlay/img/logo%20big.png", "/overlay/caf%C3%A9.css", "/overlay/a..b"] {
            assert!(path_is_safe(ok), "{ok}");
        }
        for bad in [
            "/overlay/%00",
            "/overlay/a%00b.js",
            "/overlay/%ff",
            "/overlay/%zz",
            "/overlay/%2",
            "/overlay/..%2f..%2fetc/passwd",
            "/overlay/%2e%2e/secret",
            "/overlay/a%5cb",
            "/overlay/%0a",
        ] {
            assert!(!path_is_safe(bad), "{bad}");
        }
    }

    #[test]
    fn sse_slots_are_capped_and_freed_on_drop() {
        let limits = HttpLimits::new(Duration::from_secs(1), 8, 2, Vec::new());
        let a = limits.sse_slot().expect("first");
        let _b = limits.sse_slot().expect("second");
        assert!(limits.sse_slot().is_none(), "the third is refused");
        assert_eq!(limits.counters.sse_refused.load(Ordering::Relaxed), 1);
        assert_eq!(limits.sse_open(), 2);
        drop(a);
        assert!(limits.sse_slot().is_some(), "a freed place is given again");
    }
}
