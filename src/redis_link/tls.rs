//! TLS material for Redis connections: the PEM files `REDIS_TLS_CA`, `REDIS_TLS_CERT` and
//! `REDIS_TLS_KEY` name, read and checked once at start, and the clients built with them for each
//! deployment shape (one server, Sentinel, Cluster) and for the raw connection.
//!
//! All TLS goes through rustls with the aws-lc-rs provider (no system OpenSSL). Without
//! `REDIS_TLS_CA` servers are checked against the system's roots, as redis-rs does; `#insecure` in a
//! `rediss://` URL still means "check nothing" (no certificate or hostname checks, no SNI).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::RedisTlsFiles;

/// A TLS file that could not be used; start-up stops naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{variable}: cannot read {path}: {error}")]
    Read { variable: &'static str, path: String, error: std::io::Error },
    /// Read, but not the PEM certificate(s) or key the variable asks for.
    #[error("{variable}: {path} {problem}")]
    Invalid { variable: &'static str, path: String, problem: PemProblem },
}

/// What is wrong with a TLS file's contents, worded to follow its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemProblem {
    #[error("is not a PEM certificate file: {0}")]
    NotCertificates(String),
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("holds a certificate that cannot be a trust anchor: {0}")]
    NotTrustAnchor(String),
    #[error("holds no PEM private key")]
    NoKey,
    #[error("is not a PEM private key: {0}")]
    NotKey(String),
    #[error("is not the key of the certificate in REDIS_TLS_CERT")]
    KeyMismatch,
    #[error("is not a usable private key: {0}")]
    UnusableKey(String),
}

impl TlsFileError {
    /// The variable naming the file (`REDIS_TLS_CA`, `REDIS_TLS_CERT`, `REDIS_TLS_KEY`).
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Read { variable, .. } | Self::Invalid { variable, .. } => variable,
        }
    }
}

/// The contents of the TLS files (PEM), empty when none are configured.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    /// Certificates to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key, for servers that ask for one (`tls-auth-clients yes`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").field("ca", &self.ca.is_some()).field("client", &self.client.is_some()).finish()
    }
}

/// Installs aws-lc-rs as the process's rustls provider, once (later calls do nothing). rustls picks
/// the only provider compiled in by itself; installing it here keeps that true should a dependency
/// ever bring a second one (rustls would then refuse to choose, in twitch-irc and redis-rs alike).
pub fn install_crypto_provider() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

impl TlsMaterial {
    /// Reads the files and checks that they hold what their variables promise (PEM certificates for
    /// `REDIS_TLS_CA` and `REDIS_TLS_CERT`, a PEM private key matching that certificate for
    /// `REDIS_TLS_KEY`), so a wrong file stops start-up instead of failing every reconnect. Also
    /// installs the rustls provider ([`install_crypto_provider`]).
    pub fn read(files: &RedisTlsFiles) -> Result<TlsMaterial, TlsFileError> {
        install_crypto_provider();
        let read = |variable: &'static str, path: &Path| {
            std::fs::read(path).map_err(|error| TlsFileError::Read {
                variable,
                path: path.display().to_string(),
                error,
            })
        };
        let material = TlsMaterial {
            ca: files.ca.as_deref().map(|p| read("REDIS_TLS_CA", p)).transpose()?,
            client: match &files.client {
                Some((cert, key)) => Some((read("REDIS_TLS_CERT", cert)?, read("REDIS_TLS_KEY", key)?)),
                None => None,
            },
        };
        material.check().map_err(|(variable, problem)| {
            let path = match variable {
                "REDIS_TLS_CA" => files.ca.as_deref(),
                "REDIS_TLS_CERT" => files.client.as_ref().map(|(c, _)| c.as_path()),
                _ => files.client.as_ref().map(|(_, k)| k.as_path()),
            };
            TlsFileError::Invalid { variable, path: path.map(|p| p.display().to_string()).unwrap_or_default(), problem }
        })?;
        Ok(material)
    }

    /// Parses the material as a connection would; the error names the variable at fault.
    fn check(&self) -> Result<(), (&'static str, PemProblem)> {
        if self.ca.is_some() {
            self.roots().map_err(|problem| ("REDIS_TLS_CA", problem))?;
        }
        if let Some((chain, key)) = self.identity()? {
            rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => ("REDIS_TLS_KEY", PemProblem::KeyMismatch),
                other => ("REDIS_TLS_KEY", PemProblem::UnusableKey(one_line(&other))),
            })?;
        }
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// The material in redis-rs's form.
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
            root_cert: self.ca.clone(),
        }
    }

    /// A client for one server (or a Sentinel-discovered master) at `url`. With material set the URL
    /// must be `rediss://` (redis-rs refuses a plain one rather than ignore the certificates).
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if self.is_set() { redis::Client::build_with_tls(url, self.certificates()) } else { redis::Client::open(url) }
    }

    /// The certificates a Cluster client uses for every node. Setting them makes redis-rs require TLS
    /// (`TlsMode::Secure` unless the builder already chose a mode, e.g. insecure from the URL).
    pub fn cluster(&self, builder: redis::cluster::ClusterClientBuilder) -> redis::cluster::ClusterClientBuilder {
        if self.is_set() { builder.certs(self.certificates()) } else { builder }
    }

    /// The certificates a Sentinel client uses, towards the data nodes and towards the sentinels.
    /// redis-rs refuses certificates for a sentinel it reaches without TLS, so the sentinel side gets
    /// them only when `sentinels_use_tls` (the caller knows how it addresses them).
    pub fn sentinel(&self, builder: redis::sentinel::SentinelClientBuilder) -> redis::sentinel::SentinelClientBuilder {
        self.sentinel_with(builder, true)
    }

    /// [`sentinel`](Self::sentinel), saying whether the sentinels themselves speak TLS.
    pub fn sentinel_with(
        &self,
        builder: redis::sentinel::SentinelClientBuilder,
        sentinels_use_tls: bool,
    ) -> redis::sentinel::SentinelClientBuilder {
        if !self.is_set() {
            return builder;
        }
        let builder = builder.set_client_to_redis_certificates(self.certificates());
        if sentinels_use_tls { builder.set_client_to_sentinel_certificates(self.certificates()) } else { builder }
    }

    /// `REDIS_TLS_CA`'s certificates as trust anchors (at least one).
    fn roots(&self) -> Result<RootCertStore, PemProblem> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(self.ca.as_deref().unwrap_or_default())? {
            roots.add(cert).map_err(|e| PemProblem::NotTrustAnchor(one_line(&e)))?;
        }
        Ok(roots)
    }

    /// The client certificate chain and key, parsed; the error names the variable at fault.
    #[allow(clippy::type_complexity)]
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, (&'static str, PemProblem)> {
        let Some((cert, key)) = &self.client else { return Ok(None) };
        let chain = certificates(cert).map_err(|problem| ("REDIS_TLS_CERT", problem))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
            let problem = match e {
                rustls::pki_types::pem::Error::NoItemsFound => PemProblem::NoKey,
                other => PemProblem::NotKey(one_line(&other)),
            };
            ("REDIS_TLS_KEY", problem)
        })?;
        Ok(Some((chain, key)))
    }
}

/// Every PEM certificate in `pem`; none, or a broken one, is an error (worded to follow the path).
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemProblem> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::NotCertificates(one_line(&e)))?;
    if certs.is_empty() {
        return Err(PemProblem::NoCertificate);
    }
    Ok(certs)
}

/// An error's text on one line, for start-up messages.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_with_ca(contents: &[u8]) -> (tempfile::TempDir, RedisTlsFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, contents).expect("write");
        (dir, RedisTlsFiles { ca: Some(ca), client: None })
    }

    fn refused(files: &RedisTlsFiles) -> String {
        let e = TlsMaterial::read(files).expect_err("refused");
        assert_eq!(e.variable(), "REDIS_TLS_CA");
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("REDIS_TLS_CA: "), "{text}");
        text
    }

    #[test]
    fn nothing_configured_is_nothing_set() {
        let material = TlsMaterial::read(&RedisTlsFiles::default()).expect("no files");
        assert!(!material.is_set());
        assert!(material.client("redis://127.0.0.1:1").is_ok());
    }

    #[test]
    fn a_missing_or_wrong_ca_file_is_refused_naming_the_variable() {
        let missing = RedisTlsFiles { ca: Some("no/such/ca.pem".into()), client: None };
        assert!(refused(&missing).contains("cannot read no/such/ca.pem"));

        let (_dir, junk) = files_with_ca(b"not a certificate at all\n");
        assert!(refused(&junk).contains("holds no PEM certificate"));

        let (_dir, broken) = files_with_ca(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        assert!(refused(&broken).contains("is not a PEM certificate file"));

        // Well-formed PEM whose body is not a certificate.
        let (_dir, hollow) =
            files_with_ca(b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n");
        assert!(refused(&hollow).contains("cannot be a trust anchor"));
    }

    #[test]
    fn certificates_need_a_tls_url() {
        // Contents are not checked here (read() does that); a plain URL with TLS material is refused
        // rather than connecting without the certificates.
        let material = TlsMaterial { ca: Some(b"x".to_vec()), client: None };
        assert!(material.is_set());
        let error = material.client("redis://127.0.0.1:1").expect_err("plain URL").to_string();
        assert!(error.contains("rediss://"), "{error}");
    }
}
