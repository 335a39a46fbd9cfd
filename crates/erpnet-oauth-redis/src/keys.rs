//! Key names: `{prefix}{login_id}` for the tokens, `{prefix}{login_id}:lock` for the lock.

use std::fmt;

/// The longest login id accepted (bytes).
pub const MAX_LOGIN_ID_LEN: usize = 200;
/// The longest key prefix accepted (bytes).
pub const MAX_PREFIX_LEN: usize = 100;
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "erpnet-oauth:tokens:";

/// The application's own id for one login (a user, a session, a profile): the part of the key that
/// tells logins apart.
///
/// The rule: 1 to 200 characters from `A-Z a-z 0-9 . _ - @ + =` (an e-mail address, a UUID, a base64url
/// or hex digest fit). Anything else is refused ([`InvalidLoginId`]), never escaped or cut: in
/// particular no `:`, so that no login id can name another login's lock key (`alice:lock`), no
/// `{` or `}` (cluster hash tags), no space, control character, byte outside ASCII or `*`/`?`/`[`
/// (patterns). An id of your own that does not fit (free text, binary) goes through
/// [`LoginId::digest`], which names it by its SHA-256.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LoginId(String);

/// A login id that breaks the rule of [`LoginId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidLoginId {
    /// It is empty.
    #[error("a login id cannot be empty")]
    Empty,
    /// It is longer than [`MAX_LOGIN_ID_LEN`] bytes.
    #[error("a login id has at most {MAX_LOGIN_ID_LEN} bytes, not {0}")]
    TooLong(usize),
    /// It holds a character outside `A-Z a-z 0-9 . _ - @ + =` (at this byte offset).
    #[error(
        "a login id may hold only A-Z a-z 0-9 . _ - @ + = (byte {offset} is not one); use LoginId::digest for \
         other ids"
    )]
    Character {
        /// The byte offset of the first character refused.
        offset: usize,
    },
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+' | b'=')
}

impl LoginId {
    /// `id`, when it follows the rule (see [`LoginId`]).
    pub fn new(id: impl Into<String>) -> Result<LoginId, InvalidLoginId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidLoginId::Empty);
        }
        if id.len() > MAX_LOGIN_ID_LEN {
            return Err(InvalidLoginId::TooLong(id.len()));
        }
        if let Some(offset) = id.bytes().position(|b| !allowed(b)) {
            return Err(InvalidLoginId::Character { offset });
        }
        Ok(LoginId(id))
    }

    /// Any id, named by its SHA-256: `sha256-` and 64 hex digits. The same bytes always give the same
    /// id; the id itself is not readable from the key.
    pub fn digest(id: impl AsRef<[u8]>) -> LoginId {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_ref());
        let mut s = String::with_capacity(7 + 64);
        s.push_str("sha256-");
        for b in digest.as_ref() {
            s.push_str(&format!("{b:02x}"));
        }
        LoginId(s)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoginId").field(&self.0).finish()
    }
}

impl fmt::Display for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a key prefix: at most [`MAX_PREFIX_LEN`] bytes of printable ASCII without space, `{`, `}`,
/// `*`, `?`, `[` or `]`. It may be empty. End it with a separator (`:`) so that it reads apart from the
/// login id.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!("a key prefix has at most {MAX_PREFIX_LEN} bytes, not {}", prefix.len()));
    }
    if let Some(offset) = prefix
        .bytes()
        .position(|b| !b.is_ascii_graphic() || matches!(b, b'{' | b'}' | b'*' | b'?' | b'[' | b']'))
    {
        return Err(format!(
            "a key prefix may hold printable ASCII other than space {{ }} * ? [ ] only (byte {offset} is not)"
        ));
    }
    Ok(())
}

/// The two keys of one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) tokens: String,
    pub(crate) lock: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, login: &LoginId) -> Keys {
        let tokens = format!("{prefix}{}", login.as_str());
        let lock = format!("{tokens}:lock");
        Keys { tokens, lock }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_for_login_ids() {
        for ok in ["alice", "alice@example.com", "a.b_c-d+e=", "0f1e2d3c-1111-2222-3333-444455556666", "Z"] {
            assert_eq!(LoginId::new(ok).map(|l| l.as_str().to_owned()), Ok(ok.to_owned()));
        }
        assert_eq!(LoginId::new(""), Err(InvalidLoginId::Empty));
        assert_eq!(LoginId::new("a".repeat(201)), Err(InvalidLoginId::TooLong(201)));
        assert!(LoginId::new("a".repeat(200)).is_ok());
        for (bad, offset) in [
            ("alice:lock", 5),
            ("a b", 1),
            ("{tag}", 0),
            ("x*", 1),
            ("é", 0),
            ("a\nb", 1),
            ("a\0", 1),
            ("a/b", 1),
            ("a?", 1),
            ("[a]", 0),
        ] {
            assert_eq!(LoginId::new(bad), Err(InvalidLoginId::Character { offset }), "{bad:?}");
        }
    }

    #[test]
    fn a_digest_names_any_id_and_no_id_reaches_another_logins_lock() {
        let d = LoginId::digest("alice:lock\0\u{1b}");
        assert!(d.as_str().starts_with("sha256-") && d.as_str().len() == 71, "{d}");
        assert_eq!(LoginId::new(d.as_str()).as_ref(), Ok(&d), "a digest follows the rule");
        assert_eq!(LoginId::digest("x"), LoginId::digest("x"));
        assert_ne!(LoginId::digest("x"), LoginId::digest("y"));
        let alice = Keys::new(DEFAULT_PREFIX, &LoginId::new("alice").unwrap());
        assert_eq!(alice.tokens, "erpnet-oauth:tokens:alice");
        assert_eq!(alice.lock, "erpnet-oauth:tokens:alice:lock");
        // The lock key of one login is never the token key of another: ids hold no `:`.
        assert!(LoginId::new("alice:lock").is_err());
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("app:tokens:").is_ok());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("{x}").is_err());
        assert!(check_prefix("x\n").is_err());
        assert!(check_prefix(&"p".repeat(101)).is_err());
    }
}
