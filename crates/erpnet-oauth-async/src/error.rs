//! The adapter's error: the core's typed errors, transport failures and store failures.

use crate::store::StoreError;
use erpnet_oauth_core::{
    ApiError, BuildError, CallbackError, ConfigError, DiscoveryError, IdTokenError, JwksError, RandomError,
    RefreshError, RetryAfter, RevocationError, TokenError, UserInfoError,
};

/// Everything that can go wrong in this crate.
///
/// The core's errors are wrapped, not flattened, so callers can match on them. No variant carries a token
/// or a secret: the messages come from the core's redacting types, the HTTP client and the file system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client configuration is invalid, or a request URL could not be resolved against the instance.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The authorization request could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The login callback was rejected (state, issuer, `error=access_denied`, ...).
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// The authorization code exchange failed at the token endpoint.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The ID token failed validation: the login is refused and nothing is stored.
    #[error("the ID token was rejected: {0}")]
    IdToken(#[from] IdTokenError),
    /// The JWKS (the identity server's signing keys) could not be read.
    #[error("the signing keys could not be read: {0}")]
    Jwks(#[from] JwksError),
    /// The discovery document was rejected (for instance an issuer other than the instance's).
    #[error("the discovery document was rejected: {0}")]
    Discovery(#[from] DiscoveryError),
    /// The UserInfo endpoint's answer was refused.
    #[error("the userinfo request failed: {0}")]
    UserInfo(#[from] UserInfoError),
    /// The revocation endpoint refused to revoke the token.
    #[error("the revocation failed: {0}")]
    Revocation(#[from] RevocationError),
    /// No valid access token could be had (login required, refresh failed, new tokens not stored).
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// The Domain API answered with an error (after the one refresh and retry a 401 allows).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No connection could be made (DNS, refused, unreachable).
    #[error("the connection failed: {0}")]
    Connect(String),
    /// The request did not complete in time (see [`crate::HttpOptions::timeout`]).
    #[error("the request timed out ({0})")]
    Timeout(String),
    /// The response body was larger than the limit for its kind of request.
    #[error("the response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Another failure of the HTTP client (reset connection, malformed response, bad URL, ...).
    #[error("HTTP client error: {0}")]
    Http(String),
    /// The token store failed (read, write, lock, or a corrupt file).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The OS random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A background task of the session (a refresh, a file store operation) failed to complete.
    #[error("a background task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether the user must log in again: the refresh token was rejected (`invalid_grant`), is missing,
    /// or there are no tokens at all.
    pub fn is_login_required(&self) -> bool {
        matches!(self, Error::Refresh(e) if e.is_login_required())
    }

    /// Whether trying again later may succeed: transport failures, 5xx and 429 answers, failed refreshes
    /// that kept the tokens.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Refresh(e) => e.is_retryable(),
            Error::Api(ApiError::RateLimited { .. }) => true,
            Error::Api(ApiError::Status { status, .. }) => *status >= 500,
            Error::Connect(_) | Error::Timeout(_) | Error::Http(_) => true,
            Error::Jwks(e) => e.is_retryable(),
            Error::Discovery(e) => e.is_retryable(),
            Error::Revocation(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The `Retry-After` of a 429 answer from the Domain API, if any.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Error::Api(ApiError::RateLimited { retry_after }) => *retry_after,
            _ => None,
        }
    }
}
