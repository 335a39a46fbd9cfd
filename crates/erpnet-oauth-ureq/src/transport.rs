//! The HTTP client: a ureq 3 agent with timeouts, no redirects, non-2xx as responses and bounded bodies.

use crate::Error;
use erpnet_oauth_core::lifecycle::Target;
use erpnet_oauth_core::{ClientConfig, HttpOptions, ProviderMetadata};

/// A ureq agent configured for OAuth: it follows no redirect (catalogue C5, H1), returns error statuses
/// as responses so that RFC 6749 §5.2 bodies are read, times out (H2), and reads bodies up to a limit
/// (H3).
#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    options: HttpOptions,
}

impl HttpClient {
    /// A client with `options`.
    pub fn new(options: HttpOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .timeout_connect(Some(options.connect_timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .max_idle_connections_per_host(options.max_idle_connections_per_host)
            .max_idle_connections(options.max_idle_connections_per_host.saturating_mul(4))
            .user_agent(concat!("erpnet-oauth-ureq/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpClient { agent: config.into(), options }
    }

    /// A client sending through your own `agent` (its proxy, TLS roots, connection pool) with `options`'
    /// timeouts and body limits. Whatever the agent's configuration, each request is sent with no redirect
    /// followed, error statuses returned as responses, and `options`' timeouts: the protocol relies on
    /// them (catalogue C5, H1, H2).
    pub fn with_agent(agent: ureq::Agent, options: HttpOptions) -> Self {
        HttpClient { agent, options }
    }

    /// The body limit for a request to `target`.
    pub fn limit(&self, target: Target) -> u64 {
        match target {
            Target::IdentityServer => self.options.token_body_limit,
            Target::Api => self.options.api_body_limit,
        }
    }

    /// The settings.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The ureq agent, for requests of your own with the same settings.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Sends a request to the identity server (token endpoint...), reading at most
    /// [`HttpOptions::token_body_limit`] bytes.
    pub fn send_token_request(
        &self,
        request: &http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        self.send(request, self.options.token_body_limit)
    }

    /// Sends `request` as is (no redirect followed) and reads the response body up to `limit` bytes.
    pub fn send(
        &self,
        request: &http::Request<Vec<u8>>,
        limit: u64,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        let mut builder =
            http::Request::builder().method(request.method()).uri(request.uri()).version(request.version());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(request.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let result = if request.body().is_empty() {
            builder.body(()).map(|r| self.agent.run(self.protocol_config(r)))
        } else {
            builder.body(request.body().as_slice()).map(|r| self.agent.run(self.protocol_config(r)))
        };
        let mut response = match result.map_err(|e| Error::Http(e.to_string()))?.map_err(from_ureq) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(method = %request.method(), uri = %request.uri(), error = %e, "HTTP request failed");
                return Err(e);
            }
        };
        let body = response.body_mut().with_config().limit(limit).read_to_vec().map_err(from_ureq)?;
        let (parts, _) = response.into_parts();
        // Tokens travel in headers and bodies only (catalogue F1), never in URIs: the URI and the status
        // are safe to log; headers and bodies are not logged.
        tracing::debug!(
            method = %request.method(),
            uri = %request.uri(),
            status = parts.status.as_u16(),
            bytes = body.len(),
            "HTTP exchange"
        );
        Ok(http::Response::from_parts(parts, body))
    }

    /// `request` with the settings the protocol relies on, whatever the agent's own (an application's agent
    /// may follow redirects, treat error statuses as errors, or wait forever).
    fn protocol_config<S: ureq::AsSendBody>(&self, request: http::Request<S>) -> http::Request<S> {
        self.agent
            .configure_request(request)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(self.options.timeout))
            .timeout_connect(Some(self.options.connect_timeout))
            .build()
    }

    /// Fetches and validates the discovery document of `client`'s issuer (catalogue H5: an issuer other
    /// than the expected one is rejected). Apply it with [`ClientConfig::with_provider`].
    pub fn discover(&self, client: &ClientConfig) -> Result<ProviderMetadata, Error> {
        let response = self.send_token_request(&client.discovery_request())?;
        Ok(ProviderMetadata::parse(&response, client.issuer())?)
    }
}

/// ureq's error as the core's transport errors (what is retryable is decided there, once).
fn from_ureq(e: ureq::Error) -> Error {
    use std::io::ErrorKind;
    match e {
        ureq::Error::HostNotFound => Error::Dns("host not found".to_owned()),
        ureq::Error::ConnectionFailed => Error::Connect("connection failed".to_owned()),
        ureq::Error::Timeout(t) => Error::Timeout(t.to_string()),
        ureq::Error::BodyExceedsLimit(limit) => Error::BodyTooLarge { limit },
        ureq::Error::Tls(m) => Error::Tls(m.to_owned()),
        ureq::Error::Rustls(e) => Error::Tls(e.to_string()),
        ureq::Error::TlsRequired => Error::Tls("TLS required".to_owned()),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::HostUnreachable => {
                Error::Connect(io.to_string())
            }
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Error::Timeout(io.to_string()),
            _ => Error::Io(io.to_string()),
        },
        other => Error::Http(other.to_string()),
    }
}
