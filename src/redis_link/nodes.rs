//! Node addresses, pure: a URL pointed at another server, `host:port` forms, and what a Cluster's
//! `CLUSTER NODES` listing says about which nodes are healthy and which master serves a slot.

use redis::ConnectionAddr;

/// A redis-rs address as `host:port` (IPv6 in brackets).
pub(super) fn host_port(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        other => format!("{other}"),
    }
}

/// `host:port` (with IPv6 in brackets) split into a host for redis-rs and a port.
pub(super) fn split_host_port(entry: &str) -> (String, u16) {
    let (host, port) = entry.rsplit_once(':').unwrap_or((entry, "6379"));
    (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().unwrap_or(6379))
}

/// `base` (a `redis://` or `rediss://` URL with credentials) pointed at another `host:port`: the
/// scheme, user, password, database, query and fragment stay.
pub(super) fn node_url(base: &str, host_port: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("redis", base));
    let scheme = if scheme.starts_with("rediss") { "rediss" } else { "redis" };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{host_port}{tail}")
}

/// The healthy master serving `slot` in a `CLUSTER NODES` listing, as `host:port`.
pub(super) fn slot_master(listing: &str, slot: u16) -> Option<String> {
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") || fields.get(7) != Some(&"connected") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
        });
        serves.then(|| fields.get(1)?.split(['@', ',']).next().map(str::to_owned)).flatten()
    })
}

/// The nodes of `CLUSTER NODES` that are connected and not failing, as `host:port`.
pub(super) fn healthy_nodes(listing: &str) -> Vec<String> {
    let mut nodes: Vec<String> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags, link) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            let bad = flags.split(',').any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr" | "nofailover"));
            let addr = addr.split(['@', ',']).next()?;
            (!bad && *link == "connected" && !addr.starts_with(':')).then(|| addr.to_owned())
        })
        .collect();
    nodes.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_url_keeps_scheme_credentials_and_database() {
        assert_eq!(node_url("redis://127.0.0.1:6379", "10.0.0.2:7001"), "redis://10.0.0.2:7001");
        assert_eq!(
            node_url("rediss://bot:pw@redis.example:6380/2", "10.0.0.2:7001"),
            "rediss://bot:pw@10.0.0.2:7001/2"
        );
        assert_eq!(node_url("redis://:p@ss@h:1/0?x=1#insecure", "[::1]:7"), "redis://:p@ss@[::1]:7/0?x=1#insecure");
        assert_eq!(split_host_port("[::1]:26379"), ("::1".to_owned(), 26379));
    }

    #[test]
    fn failing_and_disconnected_cluster_nodes_are_not_subscribed_on() {
        let listing = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected 5461-10922
c3 127.0.0.1:7002@17002,host-c slave a1 0 0 1 connected
d4 :0@0 master,noaddr - 0 0 0 disconnected
";
        assert_eq!(healthy_nodes(listing), ["127.0.0.1:7000", "127.0.0.1:7002"]);
        assert_eq!(slot_master(listing, 40).as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(slot_master(listing, 6000), None, "its master has failed");
        assert_eq!(slot_master(listing, 16000), None, "nobody serves it");
    }
}
