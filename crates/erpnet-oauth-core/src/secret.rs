//! Newtypes for secrets and tokens: their `Debug` and `Display` never show the value.
//!
//! The value is reachable only through an explicit `secret()` call, so that every place where a token
//! leaves the program (a request header, a form body, a store) is visible in the code. `Serialize` writes
//! the real value: it exists for token stores, which must keep the tokens.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        // Shared, not copied, by `clone` (a session keeps its tokens in several places: the manager, the
        // copy it compares the store with, the store).
        #[derive(Clone, PartialEq, Eq, Hash)]
        // `Arc<String>`, not `Arc<str>`: wrapping a received `String` does not copy it.
        pub struct $name(Arc<String>);

        impl $name {
            /// Wraps a value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Arc::new(value.into()))
            }

            /// The value itself. Every call site is a place where the secret leaves the type: keep them few.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// The last `n` characters, for showing which token is which without revealing it (`…abc123`).
            pub fn tail(&self, n: usize) -> String {
                let count = self.0.chars().count();
                let tail: String = self.0.chars().skip(count.saturating_sub(n)).collect();
                format!("…{tail}")
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::new)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

secret_type!(
    /// The trusted application's plain secret (ERP.net stores only `base64(sha256(secret))`).
    ClientSecret
);
secret_type!(
    /// An access token. Opaque: the core never looks inside it.
    AccessToken
);
secret_type!(
    /// A refresh token. ERP.net rotates them: each refresh returns a new one and revokes the old.
    RefreshToken
);
secret_type!(
    /// An ID token as received (a compact JWS). Its claims are read by [`crate::id_token`].
    IdToken
);
secret_type!(
    /// An authorization code from the callback. Sent once, to the token endpoint.
    AuthorizationCode
);
secret_type!(
    /// A PKCE code verifier (RFC 7636): 43 to 128 characters of `[A-Za-z0-9-._~]`.
    PkceVerifier
);
secret_type!(
    /// A static ERP.net reference token (`enrt_...`): a personal or service access token used as a
    /// bearer credential in place of a login.
    ReferenceToken
);

impl ClientSecret {
    /// The trusted application's `ApplicationSecretHash` for this secret: `base64(sha256(secret))`,
    /// the value ERP.net stores.
    pub fn erpnet_hash(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(self.0.as_bytes()))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let t = RefreshToken::new("6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw");
        assert_eq!(format!("{t:?}"), "RefreshToken([redacted])");
        assert_eq!(format!("{t}"), "[redacted]");
        assert_eq!(t.tail(6), "…wEJMnw");
        let s = ClientSecret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn clones_share_the_value_and_serde_is_the_plain_string() {
        let t = AccessToken::new("at1");
        let u = t.clone();
        assert!(std::ptr::eq(t.secret(), u.secret()));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"at1\"");
        assert_eq!(serde_json::from_str::<AccessToken>("\"at1\"").unwrap(), t);
        assert!(serde_json::from_str::<AccessToken>("1").is_err());
    }

    #[test]
    fn erpnet_hash_is_base64_sha256() {
        // echo -n 'secret' | sha256sum | xxd -r -p | base64
        assert_eq!(ClientSecret::new("secret").erpnet_hash(), "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
