//! Requests on one instance's own command channel (`cv:instance:{id}:command`): resync, status.

use serde_json::{Value, json};

use super::sign::verify_and_strip;
use super::{DropReason, MAX_PAYLOAD, Signer};

/// A request on one instance's own command channel (`cv:instance:{id}:command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceCommand {
    /// Reload the state hash and merge it.
    Resync,
    /// Publish a status report on `cv:instance:status`.
    Status,
}

impl InstanceCommand {
    fn name(self) -> &'static str {
        match self {
            Self::Resync => "resync",
            Self::Status => "status",
        }
    }
}

/// `{"command": "resync", "timestamp": …}`, signed like an envelope when `signer` is set.
pub fn encode_command(command: InstanceCommand, wall_ms: u64, signer: Option<&Signer>) -> String {
    let mut v = json!({"command": command.name(), "timestamp": wall_ms});
    if let Some(signer) = signer {
        let text = v.to_string();
        v["sig"] = Value::String(signer.sign(&text));
    }
    v.to_string()
}

/// Decodes a request on our command channel. With a signing key it must be signed and fresh (its
/// `timestamp` no older than `max_age_ms` and not in the future beyond it), so neither an
/// unsigned client of the same Redis nor a replayed capture can make an instance act.
pub fn decode_command(
    payload: &[u8],
    signer: Option<&Signer>,
    now_ms: u64,
    max_age_ms: u64,
) -> Result<InstanceCommand, DropReason> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DropReason::TooLarge);
    }
    let mut root: Value = serde_json::from_slice(payload).map_err(|_| DropReason::NotJson)?;
    let obj = root.as_object_mut().ok_or(DropReason::Malformed)?;
    if let Some(signer) = signer {
        verify_and_strip(obj, signer)?;
        let at = obj.get("timestamp").and_then(Value::as_u64).ok_or(DropReason::Malformed)?;
        if now_ms.abs_diff(at) > max_age_ms {
            return Err(DropReason::StaleSignature);
        }
    }
    match obj.get("command").and_then(Value::as_str) {
        Some("resync") => Ok(InstanceCommand::Resync),
        Some("status") => Ok(InstanceCommand::Status),
        _ => Err(DropReason::UnknownType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_commands_must_be_signed_and_fresh_when_a_key_is_set() {
        let now = 1_800_000_000_000u64;
        let signer = Signer::new(b"secret");
        let plain = br#"{"command": "resync"}"#;
        assert_eq!(decode_command(plain, None, now, 60_000), Ok(InstanceCommand::Resync));
        assert_eq!(decode_command(plain, Some(&signer), now, 60_000), Err(DropReason::MissingSignature));
        let signed = encode_command(InstanceCommand::Status, now - 1_000, Some(&signer));
        assert_eq!(decode_command(signed.as_bytes(), Some(&signer), now, 60_000), Ok(InstanceCommand::Status));
        let replayed = encode_command(InstanceCommand::Resync, now - 61_000, Some(&signer));
        assert_eq!(decode_command(replayed.as_bytes(), Some(&signer), now, 60_000), Err(DropReason::StaleSignature));
        let forged = encode_command(InstanceCommand::Resync, now, Some(&Signer::new(b"guess")));
        assert_eq!(decode_command(forged.as_bytes(), Some(&signer), now, 60_000), Err(DropReason::BadSignature));
        assert_eq!(decode_command(br#"{"command": "reboot"}"#, None, now, 60_000), Err(DropReason::UnknownType));
        assert_eq!(decode_command(b"nope", None, now, 60_000), Err(DropReason::NotJson));
    }
}
