//! Where an event lives in the state hash: its register (the hash field) and the order key that
//! writes only-if-newer.

use crate::state::{EventKind, Stamp};

/// The register an event writes (the field of the state hash).
pub fn register_key(kind: &EventKind) -> String {
    match kind {
        EventKind::Set { variable, .. } => format!("p:{variable}"),
        EventKind::Route { output, .. } => format!("r:{output}"),
        EventKind::Overlay { .. } => "overlay".to_owned(),
        EventKind::Emergency { .. } => "emergency".to_owned(),
        EventKind::ClearAll => "clear".to_owned(),
        EventKind::Mode { .. } => "mode".to_owned(),
        EventKind::Lock { target, .. } => format!("l:{target}"),
        EventKind::Scene { name, .. } => format!("s:{name}"),
        // Votes are no register: the key only coalesces a viewer's votes in the offline outbox, and
        // the publish script writes nothing for it (see [`is_register`]).
        EventKind::Vote { variable, .. } => format!("v:{variable}"),
    }
}

/// False for events that are never written to the state hash (votes live only in their window).
pub fn is_register(kind: &EventKind) -> bool {
    !matches!(kind, EventKind::Vote { .. })
}

/// A string that orders like `(hlc, instance)` under any collation: 20 zero-padded digits, then the
/// instance name as lower-case hex (digits and `a-f` only, so locale-aware Lua comparison agrees). The state script compares these to write only-if-newer.
pub fn order_key(stamp: &Stamp) -> String {
    format!("{:020}{}", stamp.hlc, hex::encode(stamp.instance.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_stamps() {
        let mk = |hlc, i: &str| Stamp { hlc, instance: i.into() };
        let stamps = [mk(1, "b"), mk(1, "ba"), mk(2, "a"), mk(10, "a"), mk(u64::MAX >> 6, "z"), mk(1, "a")];
        let mut by_stamp = stamps.to_vec();
        by_stamp.sort();
        let mut by_key = stamps.to_vec();
        by_key.sort_by_key(order_key);
        assert_eq!(by_stamp, by_key);
    }
}
