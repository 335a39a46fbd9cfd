//! The transport policy every adapter applies: how long a request may take and how large a body may be
//! (catalogue H2, H3). Plain settings: the core sends nothing; the adapters read these.

use std::time::Duration;

/// Settings of an adapter's HTTP client, the same for the blocking and the async adapter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Longest time for a whole request, from connecting to the last body byte (catalogue H2). Default 30 s.
    pub timeout: Duration,
    /// Longest time to connect. Default 30 s.
    pub connect_timeout: Duration,
    /// Largest body accepted from the identity server (token, JWKS, ...) (catalogue H3). Default 1 MiB.
    pub token_body_limit: u64,
    /// Largest Domain API response body accepted. Default 64 MiB.
    pub api_body_limit: u64,
    /// Idle connections kept per host for reuse. Default 32.
    pub max_idle_connections_per_host: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            token_body_limit: 1024 * 1024,
            api_body_limit: 64 * 1024 * 1024,
            max_idle_connections_per_host: 32,
        }
    }
}

impl HttpOptions {
    /// Sets [`Self::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Self::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Self::token_body_limit`].
    pub fn token_body_limit(mut self, bytes: u64) -> Self {
        self.token_body_limit = bytes;
        self
    }

    /// Sets [`Self::api_body_limit`].
    pub fn api_body_limit(mut self, bytes: u64) -> Self {
        self.api_body_limit = bytes;
        self
    }

    /// Sets [`Self::max_idle_connections_per_host`].
    pub fn max_idle_connections_per_host(mut self, n: usize) -> Self {
        self.max_idle_connections_per_host = n;
        self
    }
}
