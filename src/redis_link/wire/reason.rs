//! Why an incoming payload was dropped.

/// Why an incoming payload was dropped. Each is counted and logged at most once a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DropReason {
    #[error("payload is not JSON")]
    NotJson,
    #[error("payload is larger than 16 KiB")]
    TooLarge,
    #[error("unknown event type")]
    UnknownType,
    #[error("missing or malformed field")]
    Malformed,
    #[error("unknown variable")]
    UnknownVariable,
    #[error("unknown output")]
    UnknownOutput,
    #[error("value out of range")]
    OutOfRange,
    #[error("missing signature")]
    MissingSignature,
    #[error("bad signature")]
    BadSignature,
    #[error("route range or safe voltage outside the output's limit")]
    OutOfLimit,
    #[error("stamped too far ahead of this host's clock")]
    ClockSkew,
    #[error("signed event older than EVENT_MAX_AGE_MS (a replay?)")]
    StaleSignature,
    #[error("unknown routing action (only add and remove)")]
    UnknownAction,
    #[error("routing map with several outputs where one event is expected")]
    SeveralOutputs,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::TooLarge => "too_large",
            Self::UnknownType => "unknown_type",
            Self::Malformed => "malformed",
            Self::UnknownVariable => "unknown_variable",
            Self::UnknownOutput => "unknown_output",
            Self::OutOfRange => "out_of_range",
            Self::MissingSignature => "missing_signature",
            Self::BadSignature => "bad_signature",
            Self::OutOfLimit => "out_of_limit",
            Self::ClockSkew => "clock_skew",
            Self::StaleSignature => "stale_signature",
            Self::UnknownAction => "unknown_action",
            Self::SeveralOutputs => "several_outputs",
        }
    }

    pub const ALL: [DropReason; 14] = [
        Self::NotJson,
        Self::TooLarge,
        Self::UnknownType,
        Self::Malformed,
        Self::UnknownVariable,
        Self::UnknownOutput,
        Self::OutOfRange,
        Self::MissingSignature,
        Self::BadSignature,
        Self::OutOfLimit,
        Self::ClockSkew,
        Self::StaleSignature,
        Self::UnknownAction,
        Self::SeveralOutputs,
    ];
}

/// A text field of a payload's `data`; a missing or non-text one makes the payload malformed.
pub(super) fn text<'a>(
    data: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<&'a str, DropReason> {
    data.get(field).and_then(serde_json::Value::as_str).ok_or(DropReason::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_has_its_own_label() {
        let labels: std::collections::BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        assert!(labels.contains("unknown_action") && labels.contains("several_outputs"));
    }
}
