//! Bearer-token check for the write endpoints: constant-time comparison against `ADMIN_TOKEN`, and
//! every write refused while no token is configured.
//!
//! Knows the `Authorization` header's format; knows nothing of routes, state or what a write does.

use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Why a write was refused before anything was read or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("write endpoints are disabled: set ADMIN_TOKEN to enable them")]
    Disabled,
    #[error("missing `Authorization: Bearer <ADMIN_TOKEN>` header")]
    Missing,
    #[error("wrong admin token")]
    Wrong,
}

/// Checks an `Authorization` header value against the configured token.
pub fn authorize(token: &Secret, header: Option<&str>) -> Result<(), AuthError> {
    if !token.is_set() {
        return Err(AuthError::Disabled);
    }
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, given) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    // `ct_eq` on slices of different lengths returns false at once; the length of a random token
    // is not the secret, its bytes are, and those are compared in constant time.
    if bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes())) { Ok(()) } else { Err(AuthError::Wrong) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn token(value: &str) -> Secret {
        Config::from_vars([("ADMIN_TOKEN", value)]).expect("valid").admin_token
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = token("0123456789abcdef-token");
        assert_eq!(authorize(&t, Some("Bearer 0123456789abcdef-token")), Ok(()));
        assert_eq!(authorize(&t, Some("bearer 0123456789abcdef-token")), Ok(()));
        assert_eq!(authorize(&t, None), Err(AuthError::Missing));
        assert_eq!(authorize(&t, Some("0123456789abcdef-token")), Err(AuthError::Missing));
        assert_eq!(authorize(&t, Some("Basic 0123456789abcdef-token")), Err(AuthError::Missing));
        assert_eq!(authorize(&t, Some("Bearer 0123456789abcdef-tokeN")), Err(AuthError::Wrong));
        assert_eq!(authorize(&t, Some("Bearer 0123456789abcdef")), Err(AuthError::Wrong));
        assert_eq!(authorize(&t, Some("Bearer ")), Err(AuthError::Missing));
    }

    #[test]
    fn no_token_configured_disables_every_write() {
        assert_eq!(authorize(&Secret::default(), Some("Bearer anything")), Err(AuthError::Disabled));
        assert_eq!(authorize(&Secret::default(), Some("Bearer ")), Err(AuthError::Disabled));
    }
}
