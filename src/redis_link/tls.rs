//! TLS material for Redis connections: the PEM files `REDIS_TLS_CA`, `REDIS_TLS_CERT` and
//! `REDIS_TLS_KEY` name, read once at start, and the clients built with them for each deployment
//! shape (one server, Sentinel, Cluster).

use std::path::Path;

use crate::config::RedisTlsFiles;

/// A TLS file that could not be read; start-up stops naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: cannot read {path}: {source}")]
pub struct TlsFileError {
    pub variable: &'static str,
    pub path: String,
    #[source]
    pub source: std::io::Error,
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

impl TlsMaterial {
    pub fn read(files: &RedisTlsFiles) -> Result<TlsMaterial, TlsFileError> {
        let read = |variable: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsFileError { variable, path: path.display().to_string(), source })
        };
        Ok(TlsMaterial {
            ca: files.ca.as_deref().map(|p| read("REDIS_TLS_CA", p)).transpose()?,
            client: match &files.client {
                Some((cert, key)) => Some((read("REDIS_TLS_CERT", cert)?, read("REDIS_TLS_KEY", key)?)),
                None => None,
            },
        })
    }

    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// A client for one server (or a Sentinel-discovered master) at `url`.
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        redis::Client::open(url)
    }

    /// The certificates a Cluster client uses for every node.
    pub fn cluster(&self, builder: redis::cluster::ClusterClientBuilder) -> redis::cluster::ClusterClientBuilder {
        builder
    }

    /// The certificates a Sentinel client uses, towards the sentinels and towards the data nodes.
    pub fn sentinel(&self, builder: redis::sentinel::SentinelClientBuilder) -> redis::sentinel::SentinelClientBuilder {
        builder
    }
}
