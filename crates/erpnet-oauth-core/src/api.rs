//! Domain API responses: which are errors, and which error (catalogue F).

use crate::challenge::{BearerChallenge, bearer_challenge};
use crate::error::excerpt;
use crate::safe_text::escape;
use std::time::{Duration, SystemTime};

/// An ERP.net Domain API business error: HTTP 500 (or another error status) with
/// `{message, code, type, info, ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainApiError {
    /// `message`.
    pub message: String,
    /// `code`, as sent (number or string).
    pub code: Option<serde_json::Value>,
    /// `type`, e.g. the server-side exception type.
    pub kind: Option<String>,
    /// `info`, as sent.
    pub info: Option<serde_json::Value>,
}

/// When to try again after a 429 (RFC 9110 §10.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(Duration),
    /// `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a `Retry-After` value.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim();
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return v.parse().ok().map(|s| RetryAfter::Delay(Duration::from_secs(s)));
        }
        httpdate::parse_http_date(v).ok().map(RetryAfter::At)
    }

    /// The delay to wait from `now`.
    pub fn delay(&self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(d) => *d,
            RetryAfter::At(t) => t.duration_since(now).unwrap_or_default(),
        }
    }
}

/// A Domain API call that did not succeed. `Display` shows the server's text escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the access token was refused (after one refresh and one retry, when those were possible).
    #[error("the API refused the access token (HTTP 401{})", describe(.challenge))]
    Unauthorized {
        /// The Bearer challenge, if any.
        challenge: Option<BearerChallenge>,
    },
    /// 403: the token lacks a scope (`insufficient_scope`) or the user lacks a right; no refresh helps.
    #[error("the API forbids this call (HTTP 403{}){}", describe(.challenge), .scope.as_ref().map(|s| format!("; it needs the scope `{}`", escape(s))).unwrap_or_default())]
    Forbidden {
        /// The scope named by an `insufficient_scope` challenge.
        scope: Option<String>,
        /// The Bearer challenge, if any.
        challenge: Option<BearerChallenge>,
    },
    /// 429: rate-limited; try again after the delay, when given.
    #[error("the API is rate-limiting (HTTP 429){}", .retry_after.map(|r| match r { RetryAfter::Delay(d) => format!("; retry after {} s", d.as_secs()), RetryAfter::At(_) => "; retry after the time given".to_owned() }).unwrap_or_default())]
    RateLimited {
        /// The `Retry-After` header.
        retry_after: Option<RetryAfter>,
    },
    /// An ERP.net business error (HTTP 500 with `{message, code, type, info}`).
    #[error("the API reported an error (HTTP {status}): {}", escape(&.error.message))]
    Business {
        /// The HTTP status.
        status: u16,
        /// The error.
        error: DomainApiError,
    },
    /// Any other error status.
    #[error("the API answered HTTP {status} ({}, {length} bytes)", escape(.content_type))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The Content-Type, or `no content type`.
        content_type: String,
        /// The body's length.
        length: usize,
    },
}

fn describe(c: &Option<BearerChallenge>) -> String {
    match c {
        Some(BearerChallenge { error: Some(e), error_description: Some(d), .. }) => {
            format!(": {}, {}", excerpt(e, 100), excerpt(d, 200))
        }
        Some(BearerChallenge { error: Some(e), .. }) => format!(": {}", excerpt(e, 100)),
        _ => String::new(),
    }
}

/// Classifies a Domain API response: `Ok` for 1xx-3xx, else the typed error (catalogue F3, F5, F6).
/// Codes outside RFC 9110's 100-599 (which `http` accepts up to 999) are errors too.
pub fn check_api_response<B: AsRef<[u8]>>(response: &http::Response<B>) -> Result<(), ApiError> {
    let status = response.status();
    if status.is_informational() || status.is_success() || status.is_redirection() {
        return Ok(());
    }
    let headers = response.headers();
    let body = response.body().as_ref();
    match status.as_u16() {
        401 => Err(ApiError::Unauthorized { challenge: bearer_challenge(headers) }),
        403 => {
            let challenge = bearer_challenge(headers);
            let scope = challenge
                .as_ref()
                .filter(|c| c.error.as_deref() == Some("insufficient_scope"))
                .and_then(|c| c.scope.clone());
            Err(ApiError::Forbidden { scope, challenge })
        }
        429 => Err(ApiError::RateLimited {
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(RetryAfter::parse),
        }),
        code => match parse_domain_error(body) {
            Some(error) => Err(ApiError::Business { status: code, error }),
            None => Err(ApiError::Status {
                status: code,
                content_type: headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| excerpt(s, 60))
                    .unwrap_or_else(|| "no content type".to_owned()),
                length: body.len(),
            }),
        },
    }
}

/// Reads ERP.net's `{message, code, type, info}` error body.
pub fn parse_domain_error(body: &[u8]) -> Option<DomainApiError> {
    let serde_json::Value::Object(mut map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let message = match map.remove("message") {
        Some(serde_json::Value::String(m)) => m,
        _ => return None,
    };
    Some(DomainApiError {
        message,
        code: map.remove("code").filter(|v| !v.is_null()),
        kind: match map.remove("type") {
            Some(serde_json::Value::String(t)) => Some(t),
            _ => None,
        },
        info: map.remove("info").filter(|v| !v.is_null()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(body.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn business_error() {
        let e = check_api_response(&resp(
            500,
            &[],
            r#"{"message":"Entity not found","code":12,"type":"X","info":null}"#,
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), "the API reported an error (HTTP 500): Entity not found");
    }

    #[test]
    fn rate_limit() {
        let e = check_api_response(&resp(429, &[("retry-after", "7")], "")).unwrap_err();
        assert_eq!(e, ApiError::RateLimited { retry_after: Some(RetryAfter::Delay(Duration::from_secs(7))) });
        let at = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at.delay(SystemTime::UNIX_EPOCH + Duration::from_secs(784111770)), Duration::from_secs(7));
    }

    #[test]
    fn forbidden_names_the_scope() {
        let e = check_api_response(&resp(
            403,
            &[("www-authenticate", r#"Bearer error="insufficient_scope", scope="DomainApi""#)],
            "",
        ))
        .unwrap_err();
        assert!(matches!(&e, ApiError::Forbidden { scope: Some(s), .. } if s == "DomainApi"));
        assert!(e.to_string().contains("needs the scope `DomainApi`"));
    }
}
