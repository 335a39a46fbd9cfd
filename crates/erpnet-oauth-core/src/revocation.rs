//! Logout: token revocation (RFC 7009, catalogue G1/G2) and the end-session URL (OpenID Connect
//! RP-Initiated Logout, catalogue G3).
//!
//! A local logout (dropping the stored tokens, [`crate::TokenManager::handle_logout`]) happens whatever the
//! revocation's outcome; a retryable failure only means the refresh token may stay valid at the server
//! until it expires.

use crate::config::{ClientConfig, ConfigError};
use crate::encode::query_string;
use crate::error::OAuthError;
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::token::parse_oauth_error;

/// Why a revocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// An RFC 6749 §5.2 error (e.g. `unsupported_token_type`, `invalid_client`).
    #[error("the revocation endpoint answered {status} {error}")]
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The error.
        error: OAuthError,
    },
    /// An error status without an OAuth error body (503 while the server is unavailable, ...).
    #[error("the revocation endpoint answered HTTP {status} ({length} bytes)")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The body's length.
        length: usize,
    },
    /// A redirect; it is not followed and the token is not re-sent (catalogue H1).
    #[error("the revocation endpoint answered with a redirect (HTTP {status}); it is not followed")]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
}

impl RevocationError {
    /// Whether trying again later may succeed: 5xx (RFC 7009 §2.2.1's 503) and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            RevocationError::OAuth { status, .. } | RevocationError::Http { status, .. } => {
                *status >= 500 || *status == 429
            }
            RevocationError::Redirect { .. } => false,
        }
    }
}

impl ClientConfig {
    /// The revocation request for a refresh token (catalogue G1): a form POST of
    /// `token=...&token_type_hint=refresh_token` with the same client authentication as the token
    /// endpoint. Revoking the refresh token also ends the access tokens issued with it at ERP.net.
    pub fn revocation_request(&self, token: &RefreshToken) -> Result<http::Request<Vec<u8>>, ConfigError> {
        self.revoke(token.secret(), "refresh_token")
    }

    /// The revocation request for an access token (`token_type_hint=access_token`). ERP.net's access
    /// tokens are JWTs that stay valid until they expire; this matters for reference tokens.
    pub fn access_token_revocation_request(
        &self,
        token: &AccessToken,
    ) -> Result<http::Request<Vec<u8>>, ConfigError> {
        self.revoke(token.secret(), "access_token")
    }

    fn revoke(&self, token: &str, hint: &str) -> Result<http::Request<Vec<u8>>, ConfigError> {
        let uri = self
            .uris
            .revocation
            .as_ref()
            .ok_or(ConfigError::NoEndpoint { what: "the revocation endpoint" })?;
        Ok(self.form_post(uri, &[("token", token), ("token_type_hint", hint)]))
    }

    /// The URL to send the browser to for logging out at the identity server (catalogue G3):
    /// `{end_session_endpoint}?id_token_hint=...&post_logout_redirect_uri=...&state=...`, each parameter
    /// only when given.
    pub fn end_session_url(&self, logout: &EndSession<'_>) -> Result<String, ConfigError> {
        let mut url = self
            .endpoints()
            .end_session
            .clone()
            .ok_or(ConfigError::NoEndpoint { what: "the end-session endpoint" })?;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(hint) = logout.id_token_hint {
            pairs.push(("id_token_hint", hint.secret()));
        }
        if let Some(uri) = logout.post_logout_redirect_uri {
            pairs.push(("post_logout_redirect_uri", uri));
        }
        if let Some(state) = logout.state {
            pairs.push(("state", state));
        }
        if !pairs.is_empty() {
            let query = query_string(pairs);
            let existing = url.query().map(str::to_owned);
            url.set_query(Some(&match existing {
                Some(q) if !q.is_empty() => format!("{q}&{query}"),
                _ => query,
            }));
        }
        Ok(url.into())
    }
}

/// The parameters of an end-session URL; all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndSession<'a> {
    /// The ID token of the session to end (`id_token_hint`): lets the server log out without asking.
    pub id_token_hint: Option<&'a IdToken>,
    /// Where the server sends the browser afterwards; must be registered for the application.
    pub post_logout_redirect_uri: Option<&'a str>,
    /// Echoed back to `post_logout_redirect_uri`.
    pub state: Option<&'a str>,
}

/// Parses the revocation endpoint's answer (catalogue G2): any 2xx is success whatever the body
/// (RFC 7009 §2.2: the server answers 200 even for an unknown token); 503 and other 5xx are retryable
/// errors; a 400 with a JSON error body is the typed OAuth error.
pub fn parse_revocation_response<B: AsRef<[u8]>>(
    response: &http::Response<B>,
) -> Result<(), RevocationError> {
    let status = response.status();
    let body = response.body().as_ref();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        return Err(RevocationError::Redirect { status: status.as_u16() });
    }
    match parse_oauth_error(body) {
        Some(error) => Err(RevocationError::OAuth { status: status.as_u16(), error }),
        None => Err(RevocationError::Http { status: status.as_u16(), length: body.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;

    fn client() -> ClientConfig {
        ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
            .client_secret(ClientSecret::new("s3cret"))
            .build()
            .unwrap()
    }

    fn resp(status: u16, body: &str) -> http::Response<Vec<u8>> {
        let mut r = http::Response::new(body.as_bytes().to_vec());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    }

    #[test]
    fn revocation_request_is_a_form_post_with_client_authentication() {
        let r = client().revocation_request(&RefreshToken::new("rt/1")).unwrap();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri(), "https://demodb.my.erp.net/id/connect/revocation");
        assert_eq!(r.headers()["content-type"], "application/x-www-form-urlencoded");
        assert_eq!(
            r.body(),
            b"client_id=my.trusted.app%2Ffirst&client_secret=s3cret&token=rt%2F1&token_type_hint=refresh_token"
        );
        let basic = ClientConfig::builder("https://demodb.my.erp.net", "a")
            .client_secret(ClientSecret::new("b"))
            .auth_method(crate::AuthMethod::ClientSecretBasic)
            .build()
            .unwrap();
        let r = basic.access_token_revocation_request(&AccessToken::new("at")).unwrap();
        assert_eq!(r.headers()["authorization"], "Basic YTpi");
        assert_eq!(r.body(), b"token=at&token_type_hint=access_token");
    }

    #[test]
    fn revocation_responses() {
        assert_eq!(parse_revocation_response(&resp(200, "")), Ok(()));
        assert_eq!(parse_revocation_response(&resp(200, "<html>whatever</html>")), Ok(()));
        let e = parse_revocation_response(&resp(503, "")).unwrap_err();
        assert_eq!(e, RevocationError::Http { status: 503, length: 0 });
        assert!(e.is_retryable());
        let e = parse_revocation_response(&resp(400, r#"{"error":"unsupported_token_type"}"#)).unwrap_err();
        assert!(
            matches!(&e, RevocationError::OAuth { status: 400, error } if error.is("unsupported_token_type"))
        );
        assert!(!e.is_retryable());
        assert_eq!(parse_revocation_response(&resp(307, "")), Err(RevocationError::Redirect { status: 307 }));
    }

    #[test]
    fn end_session_url() {
        let c = client();
        let id = IdToken::new("h.p.s");
        let url = c
            .end_session_url(&EndSession {
                id_token_hint: Some(&id),
                post_logout_redirect_uri: Some("http://localhost/signout-callback"),
                state: Some("st 1"),
            })
            .unwrap();
        assert_eq!(
            url,
            "https://demodb.my.erp.net/id/connect/endsession?id_token_hint=h.p.s&post_logout_redirect_uri=http%3A%2F%2Flocalhost%2Fsignout-callback&state=st%201"
        );
        assert_eq!(
            c.end_session_url(&EndSession::default()).unwrap(),
            "https://demodb.my.erp.net/id/connect/endsession"
        );
    }
}
