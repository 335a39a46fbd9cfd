//! Reading ID tokens (compact JWS). Only ID tokens are read: access tokens are opaque (catalogue C7).

use base64::Engine as _;

/// Why a JWT could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtFormatError {
    /// Not three dot-separated segments.
    #[error("a JWT has three dot-separated parts, this one has {0}")]
    Segments(usize),
    /// A segment is not base64url.
    #[error("the JWT {0} is not base64url")]
    Base64(&'static str),
    /// A segment is not a JSON object.
    #[error("the JWT {0} is not a JSON object")]
    Json(&'static str),
}

/// The header and claims of a JWT, decoded but not verified: only for comparisons whose outcome
/// does not grant anything (catalogue E4), or as the first step of verification.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedClaims {
    /// The JOSE header.
    pub header: serde_json::Value,
    /// The claims.
    pub value: serde_json::Value,
}

impl UnverifiedClaims {
    /// Decodes `jwt`'s header and payload.
    pub fn decode(jwt: &crate::secret::IdToken) -> Result<Self, JwtFormatError> {
        let parts = split(jwt.secret())?;
        Ok(UnverifiedClaims {
            header: json_segment(parts.0, "header")?,
            value: json_segment(parts.1, "payload")?,
        })
    }
}

/// Splits a compact JWS into header, payload and signature.
pub(crate) fn split(jwt: &str) -> Result<(&str, &str, &str), JwtFormatError> {
    let mut it = jwt.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwtFormatError::Segments(jwt.split('.').count())),
    }
}

pub(crate) fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, JwtFormatError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| JwtFormatError::Base64(what))
}

fn json_segment(segment: &str, what: &'static str) -> Result<serde_json::Value, JwtFormatError> {
    match serde_json::from_slice(&b64(segment, what)?) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(JwtFormatError::Json(what)),
    }
}
