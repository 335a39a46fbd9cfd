//! Error types shared by several phases.

use crate::safe_text::escape;
use std::fmt;

/// An OAuth 2.0 error response (RFC 6749 §4.1.2.1 and §5.2): `error`, `error_description`, `error_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The `error` code, e.g. `invalid_grant`, `access_denied`.
    pub error: String,
    /// The `error_description`, when given.
    pub description: Option<String>,
    /// The `error_uri`, when given.
    pub uri: Option<String>,
}

impl OAuthError {
    /// Whether the error code is `code` (e.g. `invalid_grant`).
    pub fn is(&self, code: &str) -> bool {
        self.error == code
    }
}

/// Shows the server's text escaped ([`crate::escape`]): an `error_description` cannot drive the terminal
/// or forge a log line.
impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.error))?;
        if let Some(d) = &self.description {
            write!(f, ": {}", escape(d))?;
        }
        if let Some(u) = &self.uri {
            write!(f, " (see {})", escape(u))?;
        }
        Ok(())
    }
}

/// Text that came off the wire, made fit for an error message: shortened to `max` characters, then
/// escaped ([`crate::escape`]).
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let shown = match s.char_indices().nth(max) {
        None => escape(s),
        Some((end, _)) => {
            let mut cut = escape(s.get(..end).unwrap_or_default()).into_owned();
            cut.push('…');
            return cut;
        }
    };
    shown.into_owned()
}

/// Everything that can go wrong in a login's lifecycle: the one error type of the core's operations
/// ([`crate::lifecycle`]) and of both adapters, which re-export it.
///
/// The phase errors are wrapped, not flattened, so callers can match on them. Transport failures are
/// described here too, adapter-neutral: each adapter maps its HTTP client's errors onto [`Error::Dns`],
/// [`Error::Connect`], [`Error::Tls`], [`Error::Timeout`], [`Error::BodyTooLarge`], [`Error::Io`] and
/// [`Error::Http`], so that [`Error::is_retryable`] and [`Error::is_login_required`] are decided once, here.
/// No variant carries a token or a secret, and `Display` shows text from a server (or an HTTP client's
/// message about it) only escaped ([`crate::escape`]): the message is safe to print on a terminal or in a
/// log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client configuration is invalid, or a request URL could not be resolved against the instance.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The authorization request could not be built.
    #[error(transparent)]
    Build(#[from] crate::authorize::BuildError),
    /// The login callback was rejected (state, issuer, `error=access_denied`, ...).
    #[error(transparent)]
    Callback(#[from] crate::authorize::CallbackError),
    /// The authorization code exchange failed at the token endpoint.
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    /// The ID token failed validation (signature, issuer, audience, times, nonce, hashes): the login is
    /// refused and nothing is stored.
    #[error("the ID token was rejected: {0}")]
    IdToken(#[from] crate::id_token::IdTokenError),
    /// The JWKS (the identity server's signing keys) could not be read.
    #[error("the signing keys could not be read: {0}")]
    Jwks(#[from] crate::jwks::JwksError),
    /// The discovery document was rejected (for instance an issuer other than the instance's).
    #[error("the discovery document was rejected: {0}")]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The UserInfo endpoint's answer was refused (an error status, or a `sub` other than the ID token's).
    #[error("the userinfo request failed: {0}")]
    UserInfo(#[from] crate::userinfo::UserInfoError),
    /// The revocation endpoint refused to revoke the token.
    #[error("the revocation failed: {0}")]
    Revocation(#[from] crate::revocation::RevocationError),
    /// No valid access token could be had (login required, refresh failed, new tokens not stored).
    #[error(transparent)]
    Refresh(#[from] crate::manager::RefreshError),
    /// The Domain API answered with an error (after the one refresh and retry a 401 allows).
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    /// The host name could not be resolved.
    #[error("the host name could not be resolved: {}", escape(.0))]
    Dns(String),
    /// No connection could be made (refused, unreachable).
    #[error("the connection failed: {}", escape(.0))]
    Connect(String),
    /// The TLS handshake or certificate check failed.
    #[error("TLS failed: {}", escape(.0))]
    Tls(String),
    /// The request did not complete in time (see [`crate::HttpOptions::timeout`]).
    #[error("the request timed out ({})", escape(.0))]
    Timeout(String),
    /// The response body was larger than the limit for its kind of request.
    #[error("the response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An I/O error on the connection (reset, closed early, ...).
    #[error("I/O error during the request: {}", escape(.0))]
    Io(String),
    /// Another failure of the HTTP client (malformed response, bad URL, ...).
    #[error("HTTP client error: {}", escape(.0))]
    Http(String),
    /// The token store failed (read, write, lock, or a corrupt file).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The OS random source failed.
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
    /// The redirect listener could not be used (bind, non-loopback redirect URI, ...).
    #[error("the redirect listener failed: {}", escape(.0))]
    Listener(String),
    /// No callback arrived at the redirect listener in time.
    #[error("no login callback arrived within {0:?}")]
    LoginTimeout(std::time::Duration),
    /// Waiting for the login callback was cancelled.
    #[error("waiting for the login callback was cancelled")]
    Cancelled,
    /// A task of the adapter's (a refresh, a store operation) ended before it finished.
    #[error("a background task failed: {}", escape(.0))]
    Task(String),
}

impl Error {
    /// Whether the user must log in again: the refresh token was rejected (`invalid_grant`), is missing,
    /// a refreshed ID token failed a security check, or there are no tokens at all.
    pub fn is_login_required(&self) -> bool {
        matches!(self, Error::Refresh(e) if e.is_login_required())
    }

    /// Whether trying again later may succeed: transport failures (the request may not have arrived, or
    /// its answer was lost), 5xx and 429 answers, failed refreshes that kept the tokens, a shared token
    /// store that was unreachable, busy or had newer tokens ([`crate::store::StoreError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        use crate::api::ApiError;
        match self {
            Error::Refresh(e) => e.is_retryable(),
            Error::Api(ApiError::RateLimited { .. }) => true,
            Error::Api(ApiError::Status { status, .. }) => *status >= 500,
            Error::Dns(_) | Error::Connect(_) | Error::Timeout(_) | Error::Io(_) => true,
            Error::Task(_) => true,
            Error::Store(e) => e.is_retryable(),
            Error::Jwks(e) => e.is_retryable(),
            Error::Discovery(e) => e.is_retryable(),
            Error::Revocation(e) => e.is_retryable(),
            Error::UserInfo(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is a transport failure: the request got no (complete) answer.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Dns(_)
                | Error::Connect(_)
                | Error::Tls(_)
                | Error::Timeout(_)
                | Error::BodyTooLarge { .. }
                | Error::Io(_)
                | Error::Http(_)
                | Error::Task(_)
        )
    }

    /// The `Retry-After` of a 429 answer from the Domain API, if any.
    pub fn retry_after(&self) -> Option<crate::api::RetryAfter> {
        match self {
            Error::Api(crate::api::ApiError::RateLimited { retry_after }) => *retry_after,
            _ => None,
        }
    }
}
