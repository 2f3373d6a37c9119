//! Envelope signatures: HMAC-SHA256 over the compact JSON of the envelope without its `sig` field.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::DropReason;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies envelopes with HMAC-SHA256 over the envelope without its `sig` field.
#[derive(Clone)]
pub struct Signer {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(****)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.into() }
    }

    fn mac(&self, text: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        mac
    }

    pub(super) fn sign(&self, text: &str) -> String {
        hex::encode(self.mac(text).finalize().into_bytes())
    }

    fn verify(&self, text: &str, sig_hex: &str) -> bool {
        hex::decode(sig_hex).is_ok_and(|sig| self.mac(text).verify_slice(&sig).is_ok())
    }
}

/// Removes `sig` from a signed object and checks it: HMAC-SHA256 over the compact JSON of the rest.
pub(super) fn verify_and_strip(obj: &mut Map<String, Value>, signer: &Signer) -> Result<(), DropReason> {
    let sig = match obj.remove("sig") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(DropReason::BadSignature),
        None => return Err(DropReason::MissingSignature),
    };
    if signer.verify(&Value::Object(obj.clone()).to_string(), &sig) { Ok(()) } else { Err(DropReason::BadSignature) }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{catalog, ev};
    use super::super::{decode, encode};
    use super::*;
    use crate::catalog::{Catalog, VoltRange};
    use crate::state::{EventKind, Route};

    #[test]
    fn signatures_are_required_and_checked_when_a_key_is_set() {
        let c = catalog();
        let signer = Signer::new(b"secret");
        let e = ev(EventKind::Overlay { enabled: true });
        let unsigned = encode(&e, 1, None).payload;
        assert_eq!(decode(unsigned.as_bytes(), &c, Some(&signer)), Err(DropReason::MissingSignature));
        let wrong = encode(&e, 1, Some(&Signer::new(b"other"))).payload;
        assert_eq!(decode(wrong.as_bytes(), &c, Some(&signer)), Err(DropReason::BadSignature));
        let tampered = encode(&e, 1, Some(&signer)).payload.replace("\"enabled\":true", "\"enabled\":false");
        assert_eq!(decode(tampered.as_bytes(), &c, Some(&signer)), Err(DropReason::BadSignature));
    }

    /// Found by the envelope fuzz target: signed routes with ranges such as `[0.012036108411848545, 5]`
    /// failed verification at every peer until `serde_json` parsed floats exactly (`float_roundtrip`).
    #[test]
    fn signed_routes_with_any_voltage_verify() {
        let text = r#"{"format": 1, "modules": [{"name": "doorway", "parameters": ["gain"]}],
            "outputs": [{"group": "g", "range": [0, 1], "limit": [-10, 10], "names": ["es9out#1"]}]}"#;
        let c = Catalog::parse(text, crate::catalog::CatalogSource::Embedded).expect("catalogue");
        let signer = Signer::new(b"k");
        let (out, var) = (c.output("es9out#1").expect("out"), c.parse_variable("doorway#1.gain").expect("var"));
        for i in 0..2000u16 {
            let range = VoltRange { low: f32::from(i) / 997.0, high: 5.0 };
            let route = Route { variable: var.clone(), range, safe: range.low, slew: 0.0 };
            let e = ev(EventKind::Route { output: out.clone(), route: Some(route) });
            let payload = encode(&e, 1, Some(&signer)).payload;
            assert!(decode(payload.as_bytes(), &c, Some(&signer)).is_ok(), "{payload}");
        }
    }
}
