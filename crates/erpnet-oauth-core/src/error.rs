//! Error types shared by several phases.

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

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        if let Some(u) = &self.uri {
            write!(f, " (see {u})")?;
        }
        Ok(())
    }
}

/// Shortens text that came off the wire before it goes into an error message.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}
