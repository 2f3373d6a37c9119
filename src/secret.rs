//! Secrets: a value that never prints ([`Secret`]), and a URL with its password masked
//! ([`mask_url`]). A leaf: it imports nothing from the crate, so any layer may use it.

use std::fmt;

/// A value that must never be printed or logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`; only [`Secret::expose`] gives it back.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "Secret(****)" } else { "Secret(unset)" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "****" } else { "(unset)" })
    }
}

/// A URL with its password replaced by `****`, safe to print.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            let masked = if userinfo.contains(':') { format!("{user}:****") } else { "****".to_owned() };
            format!("{scheme}://{masked}@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_its_user_but_never_its_password() {
        assert_eq!(mask_url("rediss://bot:s3cret@redis.example:6380/2"), "rediss://bot:****@redis.example:6380/2");
        assert_eq!(mask_url("redis://:pw@10.0.0.5:6390/3"), "redis://:****@10.0.0.5:6390/3");
        assert_eq!(mask_url("redis://token@host:6379"), "redis://****@host:6379");
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!((format!("{s}"), format!("{s:?}")), ("****".to_owned(), "Secret(****)".to_owned()));
        assert_eq!(s.expose(), "hunter2");
        let unset = Secret::default();
        assert!(!unset.is_set());
        assert_eq!((format!("{unset}"), format!("{unset:?}")), ("(unset)".to_owned(), "Secret(unset)".to_owned()));
    }
}
