//! The UserInfo endpoint (OpenID Connect Core §5.3): a GET with the access token as a bearer, and the
//! parsing of its answer, whose `sub` must be the ID token's (§5.3.2: otherwise the answer is not about
//! the user who logged in and must not be used).

use crate::challenge::{BearerChallenge, bearer_challenge};
use crate::config::{ClientConfig, ConfigError, get_json};
use crate::error::excerpt;
use crate::safe_text::escape;
use crate::secret::{AccessToken, ReferenceToken};
use serde_json::{Map, Value};

/// Why a UserInfo answer was refused. `Display` shows the server's text escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserInfoError {
    /// 401: the access token was refused.
    #[error("the userinfo endpoint refused the access token (HTTP 401)")]
    Unauthorized {
        /// The Bearer challenge, if any.
        challenge: Option<BearerChallenge>,
    },
    /// A redirect; it is not followed (catalogue H1).
    #[error("the userinfo endpoint answered with a redirect (HTTP {status}); it is not followed")]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// Another error status.
    #[error("the userinfo endpoint answered HTTP {status} ({length} bytes)")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The body's length.
        length: usize,
    },
    /// A signed or encrypted (`application/jwt`) answer, which this client does not request.
    #[error("the userinfo answer is a JWT (application/jwt), which this client does not accept")]
    SignedResponse,
    /// The body is not a JSON object with a string `sub`.
    #[error("the userinfo answer is malformed: {}", escape(.reason))]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// `sub` is not the ID token's.
    #[error("the userinfo answer is about `{}`, not the user who logged in (`{}`)", escape(.found), escape(.expected))]
    SubjectMismatch {
        /// The ID token's `sub`.
        expected: String,
        /// The userinfo `sub`.
        found: String,
    },
}

impl UserInfoError {
    /// Whether trying again later may succeed (5xx, 429).
    pub fn is_retryable(&self) -> bool {
        matches!(self, UserInfoError::Http { status, .. } if *status >= 500 || *status == 429)
    }
}

/// The claims about the user from the UserInfo endpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UserInfo {
    /// `sub`, equal to the ID token's.
    pub sub: String,
    /// `name`, when present.
    pub name: Option<String>,
    /// `email`, when present.
    pub email: Option<String>,
    /// Every claim as received.
    pub raw: Map<String, Value>,
}

/// Sets `Authorization: Bearer <token>` (marked sensitive) on `request`. `false` when the token has
/// characters a header cannot carry (then nothing is set).
pub(crate) fn set_bearer<B>(request: &mut http::Request<B>, token: &str) -> bool {
    match http::HeaderValue::try_from(format!("Bearer {token}")) {
        Ok(mut v) => {
            v.set_sensitive(true);
            request.headers_mut().insert(http::header::AUTHORIZATION, v);
            true
        }
        Err(_) => false,
    }
}

/// A token that cannot be put in an `Authorization` header (control characters, non-ASCII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token has characters an Authorization header cannot carry")]
pub struct InvalidBearer;

impl ClientConfig {
    /// The UserInfo GET, with `access_token` as `Authorization: Bearer` (never in the URL, catalogue F1).
    pub fn userinfo_request(
        &self,
        access_token: &AccessToken,
    ) -> Result<http::Request<Vec<u8>>, ConfigError> {
        let uri =
            self.uris.userinfo.as_ref().ok_or(ConfigError::NoEndpoint { what: "the userinfo endpoint" })?;
        let mut request = get_json(uri);
        if !set_bearer(&mut request, access_token.secret()) {
            return Err(ConfigError::InvalidToken { what: "access token" });
        }
        Ok(request)
    }
}

impl ReferenceToken {
    /// Sets this ERP.net reference token (`enrt_...`, a personal or service access token) as
    /// `Authorization: Bearer` on `request`, marked sensitive: the static credential an adapter uses in
    /// place of a login's access token.
    pub fn authorize<B>(&self, request: &mut http::Request<B>) -> Result<(), InvalidBearer> {
        if set_bearer(request, self.secret()) { Ok(()) } else { Err(InvalidBearer) }
    }
}

/// Parses the UserInfo answer and checks that its `sub` is `expected_sub` (the verified ID token's).
pub fn parse_userinfo_response<B: AsRef<[u8]>>(
    response: &http::Response<B>,
    expected_sub: &str,
) -> Result<UserInfo, UserInfoError> {
    let status = response.status();
    let body = response.body().as_ref();
    if status == http::StatusCode::UNAUTHORIZED {
        return Err(UserInfoError::Unauthorized { challenge: bearer_challenge(response.headers()) });
    }
    if status.is_redirection() {
        return Err(UserInfoError::Redirect { status: status.as_u16() });
    }
    if !status.is_success() {
        return Err(UserInfoError::Http { status: status.as_u16(), length: body.len() });
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/jwt") {
        return Err(UserInfoError::SignedResponse);
    }
    let raw = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(UserInfoError::Malformed { reason: "expected a JSON object".to_owned() }),
        Err(e) => return Err(UserInfoError::Malformed { reason: format!("not JSON ({e})") }),
    };
    let sub = match raw.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(UserInfoError::Malformed { reason: "`sub` is not a non-empty string".to_owned() });
        }
        None => return Err(UserInfoError::Malformed { reason: "`sub` is missing".to_owned() }),
    };
    if sub != expected_sub {
        return Err(UserInfoError::SubjectMismatch {
            expected: expected_sub.to_owned(),
            found: excerpt(&sub, 200),
        });
    }
    let text = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(UserInfo { sub, name: text("name"), email: text("email"), raw: raw.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> http::Response<Vec<u8>> {
        let mut r = http::Response::new(body.as_bytes().to_vec());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    }

    #[test]
    fn request_carries_the_bearer() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app").build().unwrap();
        let r = client.userinfo_request(&AccessToken::new("at1")).unwrap();
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(r.uri(), "https://demodb.my.erp.net/id/connect/userinfo");
        assert_eq!(r.headers()["authorization"], "Bearer at1");
        assert!(r.headers()["authorization"].is_sensitive());
        assert!(client.userinfo_request(&AccessToken::new("a\nb")).is_err());
    }

    #[test]
    fn subject_is_checked() {
        let ok = parse_userinfo_response(
            &resp(200, r#"{"sub":"admin","name":"SPS","email":"admin@mail.com"}"#),
            "admin",
        )
        .unwrap();
        assert_eq!((ok.name.as_deref(), ok.email.as_deref()), (Some("SPS"), Some("admin@mail.com")));
        assert_eq!(
            parse_userinfo_response(&resp(200, r#"{"sub":"mallory"}"#), "admin"),
            Err(UserInfoError::SubjectMismatch { expected: "admin".into(), found: "mallory".into() })
        );
        for body in [r#"{"name":"x"}"#, r#"{"sub":5}"#, r#"{"sub":""}"#, "[]", "<html>", ""] {
            assert!(
                matches!(
                    parse_userinfo_response(&resp(200, body), "admin"),
                    Err(UserInfoError::Malformed { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn error_statuses() {
        let mut r = resp(401, "");
        r.headers_mut().insert("www-authenticate", r#"Bearer error="invalid_token""#.parse().unwrap());
        assert!(matches!(
            parse_userinfo_response(&r, "a"),
            Err(UserInfoError::Unauthorized { challenge: Some(BearerChallenge { error: Some(e), .. }) }) if e == "invalid_token"
        ));
        assert!(parse_userinfo_response(&resp(503, "busy"), "a").unwrap_err().is_retryable());
        assert_eq!(
            parse_userinfo_response(&resp(302, ""), "a"),
            Err(UserInfoError::Redirect { status: 302 })
        );
        let mut jwt = resp(200, "a.b.c");
        jwt.headers_mut().insert("content-type", "application/jwt".parse().unwrap());
        assert_eq!(parse_userinfo_response(&jwt, "a"), Err(UserInfoError::SignedResponse));
    }

    #[test]
    fn reference_token_as_bearer() {
        let mut req =
            http::Request::get("https://demodb.my.erp.net/api/domain/odata/Crm_Customers").body(()).unwrap();
        ReferenceToken::new("enrt_abc").authorize(&mut req).unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer enrt_abc");
        assert!(req.headers()["authorization"].is_sensitive());
        assert_eq!(ReferenceToken::new("x\u{7f}").authorize(&mut req), Err(InvalidBearer));
    }
}
