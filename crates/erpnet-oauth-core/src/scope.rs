//! Scopes as a set: servers may return them in another order (the seed does).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens. Order is not significant; `Display` joins them with spaces, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a space-separated scope string (RFC 6749 §3.3); repeated or extra spaces are ignored.
    pub fn parse(s: &str) -> Self {
        Scopes(s.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect())
    }

    /// ERP.net's usual scopes for a user login, the seed's: `openid profile offline_access DomainApi`.
    pub fn erpnet_default() -> Self {
        Scopes::parse("openid profile offline_access DomainApi")
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scope tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl From<String> for Scopes {
    fn from(s: String) -> Self {
        Scopes::parse(&s)
    }
}

impl From<Scopes> for String {
    fn from(s: Scopes) -> Self {
        s.to_string()
    }
}

impl<'a> FromIterator<&'a str> for Scopes {
    fn from_iter<T: IntoIterator<Item = &'a str>>(iter: T) -> Self {
        Scopes(iter.into_iter().filter(|t| !t.is_empty()).map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_as_sets() {
        assert_eq!(
            Scopes::parse("openid profile DomainApi offline_access"),
            Scopes::parse("openid  profile offline_access DomainApi")
        );
        assert_eq!(Scopes::erpnet_default().to_string(), "DomainApi offline_access openid profile");
    }
}
