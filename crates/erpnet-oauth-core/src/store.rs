//! What the adapters' token stores share: the error a store reports, the cross-process lock it hands
//! out, and the store file format ([`StoreFile`]: the tokens and whom they were issued to, [`IssuedTo`]).
//! The store traits themselves are the adapters' (one blocking, one async). Plain types: the core reads
//! and writes no file.

use crate::config::ClientConfig;
use crate::id_token::UnverifiedClaims;
use crate::token::{StoreFormatError, TokenSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, syncing, renaming or deleting failed.
    #[error("the token store {path} could not be {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`read`, `written`, `locked`, `deleted`, `created`).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but does not hold tokens. It is left as it is: the next successful login
    /// replaces it, or delete it (the store's `clear`).
    #[error("the token store {path} is corrupt ({reason}); log in again to replace it, or delete it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong (no token appears here).
        reason: String,
    },
    /// A file of the store (the token file, its lock file, or another file kept next to them) is a
    /// symbolic link. A store never follows one: a link planted in the store directory would send the
    /// tokens, or a write, wherever it points. Nothing was read or written through it.
    #[error("{path} is a symbolic link, which a token store never follows; remove it")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The store directory can be changed by other users (group- or world-writable): they could replace
    /// the token file, or plant a link in it. Refused, as ssh refuses such a `~/.ssh`.
    #[error("the store directory {path} is writable by others (mode {mode:04o}): chmod 700 {path}")]
    DirectoryWritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The store directory belongs to another user, who could replace the token file. Refused.
    #[error(
        "the store directory {path} belongs to another user (uid {owner}; this process runs as uid {user}): \
         use a directory of your own"
    )]
    DirectoryOwnedByOther {
        /// The directory.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The effective user id of this process.
        user: u32,
    },
    /// The store directory is not a directory.
    #[error("the store directory {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The stored tokens were issued to another instance or client than the one asking for them. They
    /// are not handed out: an access token is never sent to another instance. The file is left as it is
    /// (a login for the client asking replaces it).
    #[error(
        "the token store {path} holds tokens issued to {stored}, not to {expected}; log in again, or use \
         the store of that login"
    )]
    IssuedToAnother {
        /// The file.
        path: PathBuf,
        /// Whom the stored tokens were issued to.
        stored: IssuedTo,
        /// Whom the store was asked for.
        expected: IssuedTo,
    },
    /// A store of your own failed (or an async file store's task did not complete).
    #[error("the token store failed: {0}")]
    Other(String),
    /// A shared store (a server such as Redis) could not be reached, or did not answer in time. Nothing
    /// was changed by this call as far as the store knows; retry later ([`Self::is_retryable`]).
    /// `store` names it without any password; `reason` never holds a token.
    #[error("the token store {store} is unavailable ({reason}); try again later")]
    Unavailable {
        /// The store (for Redis: the URL with its password redacted, and the key).
        store: String,
        /// What failed.
        reason: String,
    },
    /// The store's lock stayed held by another holder (another process or instance refreshing the same
    /// login) for longer than this store waits. Nothing was changed; retry later.
    #[error("the token store {store} stayed locked by another holder for {waited:?}; try again later")]
    LockTimeout {
        /// The store.
        store: String,
        /// How long this call waited.
        waited: std::time::Duration,
    },
    /// A save or delete under the store's lock was refused because the store changed after the lock
    /// was taken: the lock's lease ran out while this holder was slow, and another holder stored newer
    /// tokens (or a new login did). The newer tokens are kept; this holder's are not written. The next
    /// renewal re-reads the store and uses them; retry ([`Self::is_retryable`]).
    #[error(
        "the token store {store} was changed by another holder after this one's lock expired; its newer \
         tokens were kept and this write was refused"
    )]
    Fenced {
        /// The store.
        store: String,
    },
    /// The stored tokens are encrypted and could not be decrypted: the key is wrong, the ciphertext was
    /// changed or moved from another key, or the store holds plain tokens where encrypted ones are
    /// expected (or the reverse). Never garbage: nothing is handed out. Log in again to replace them,
    /// or configure the right key.
    #[error("the tokens in {store} could not be decrypted: {reason}")]
    Decrypt {
        /// The store.
        store: String,
        /// Why (no key material appears here).
        reason: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed without anyone changing anything: the store was
    /// unreachable ([`Self::Unavailable`]), busy ([`Self::LockTimeout`]), or had newer tokens
    /// ([`Self::Fenced`]). File errors, corrupt or foreign tokens and decryption failures are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::LockTimeout { .. } | StoreError::Fenced { .. }
        )
    }
}

/// The instance (its issuer) and the client a token set was issued to. A file store records it next to
/// the tokens ([`StoreFile`]), so that tokens are only ever used by the client of the instance that
/// issued them, whatever a later configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTo {
    /// The issuer (for ERP.net `{instance}/id`).
    pub issuer: String,
    /// The client id.
    pub client_id: String,
}

impl IssuedTo {
    /// Tokens issued by `issuer` to `client_id`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        IssuedTo { issuer: issuer.into(), client_id: client_id.into() }
    }

    /// Tokens issued to `client`: its issuer and client id.
    pub fn of(client: &ClientConfig) -> Self {
        IssuedTo::new(client.issuer(), client.client_id())
    }

    /// What an ID token says, unverified: its `iss` and its one audience. `None` when it cannot be read,
    /// or has several audiences. Used for store files written before the record existed; an ID token
    /// in a store was verified when it was received.
    pub fn from_id_token(id_token: &crate::IdToken) -> Option<Self> {
        let claims = UnverifiedClaims::decode(id_token).ok()?;
        let issuer = claims.value.get("iss")?.as_str()?;
        let client_id = match claims.value.get("aud")? {
            serde_json::Value::String(aud) => aud.as_str(),
            serde_json::Value::Array(auds) => match auds.as_slice() {
                [serde_json::Value::String(aud)] => aud.as_str(),
                _ => return None,
            },
            _ => return None,
        };
        Some(IssuedTo::new(issuer, client_id))
    }
}

impl IssuedTo {
    /// The same issuer (a trailing `/` aside) and client id.
    pub fn same_as(&self, other: &IssuedTo) -> bool {
        self.issuer.trim_end_matches('/') == other.issuer.trim_end_matches('/')
            && self.client_id == other.client_id
    }
}

impl fmt::Display for IssuedTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client `{}` of {}", self.client_id, self.issuer)
    }
}

/// A token store file: the tokens, and whom they were issued to. Serialized as
/// `{"version": 1, "issued_to": {"issuer": ..., "client_id": ...}, "tokens": {...}}` (pretty JSON);
/// `issued_to` is optional, so files written before it existed still load. Pure: the stores read and
/// write the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFile {
    /// Whom the tokens were issued to, when recorded.
    pub issued_to: Option<IssuedTo>,
    /// The tokens.
    pub tokens: TokenSet,
}

/// The serialized form of [`StoreFile`]: versioned so that a later format can be told apart, and shared
/// so that the blocking and the async adapter read each other's files.
#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_to: Option<IssuedTo>,
    tokens: TokenSet,
}

const STORE_FILE_VERSION: u32 = 1;

impl StoreFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StoreFormatError> {
        let envelope = Envelope {
            version: STORE_FILE_VERSION,
            issued_to: self.issued_to.clone(),
            tokens: self.tokens.clone(),
        };
        serde_json::to_vec_pretty(&envelope).map_err(|e| StoreFormatError::Serialize(e.to_string()))
    }

    /// Reads a file written by [`Self::to_bytes`] (or [`TokenSet::to_store_file`]). An error never
    /// quotes the content, which holds tokens.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoreFile, StoreFormatError> {
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(f) if f.version == STORE_FILE_VERSION => {
                Ok(StoreFile { issued_to: f.issued_to, tokens: f.tokens })
            }
            Ok(f) => Err(StoreFormatError::Version(f.version)),
            Err(e) => Err(StoreFormatError::Malformed {
                length: bytes.len(),
                kind: format!("{:?}", e.classify()),
                line: e.line(),
                column: e.column(),
            }),
        }
    }

    /// The tokens, when they were issued to `expected`: then `Ok`. `Err` with whom they were issued to
    /// otherwise. Whom is the record, or for a file without one (written before it existed) what the
    /// stored ID token says; tokens of which neither says anything are handed out.
    pub fn tokens_for(self, expected: &IssuedTo) -> Result<TokenSet, IssuedTo> {
        let stored = self
            .issued_to
            .clone()
            .or_else(|| self.tokens.id_token.as_ref().and_then(IssuedTo::from_id_token));
        match stored {
            Some(stored) if !stored.same_as(expected) => Err(stored),
            _ => Ok(self.tokens),
        }
    }
}

/// A held cross-process lock of a store; released when dropped.
pub struct StoreLock {
    guard: Option<Box<dyn Send>>,
}

impl StoreLock {
    /// A lock that holds nothing (stores used by one process only).
    pub fn unlocked() -> Self {
        StoreLock { guard: None }
    }

    /// A lock released when `guard` is dropped (e.g. a file holding an advisory lock).
    pub fn new(guard: impl Send + 'static) -> Self {
        StoreLock { guard: Some(Box::new(guard)) }
    }

    /// Whether something is actually locked.
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock").field("held", &self.is_held()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessToken, IdToken, Scopes};
    use base64::Engine as _;

    fn tokens(id_token: Option<IdToken>) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("at-secret"),
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            id_token,
            scopes: Scopes::default(),
        }
    }

    fn jwt(claims: serde_json::Value) -> IdToken {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        IdToken::new(format!("{}.{}.sig", b64(&serde_json::json!({"alg": "RS256"})), b64(&claims)))
    }

    fn a() -> IssuedTo {
        IssuedTo::new("https://a.example/id", "app")
    }

    fn b() -> IssuedTo {
        IssuedTo::new("https://b.example/id", "app")
    }

    #[test]
    fn the_record_round_trips_and_is_checked() {
        let file = StoreFile { issued_to: Some(a()), tokens: tokens(None) };
        let bytes = file.to_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(
            json["issued_to"],
            serde_json::json!({"issuer": "https://a.example/id", "client_id": "app"})
        );
        let read = StoreFile::from_bytes(&bytes).unwrap();
        assert_eq!(read, file);
        assert_eq!(read.clone().tokens_for(&a()), Ok(tokens(None)));
        assert_eq!(read.clone().tokens_for(&IssuedTo::new("https://a.example/id/", "app")), Ok(tokens(None)));
        assert_eq!(read.clone().tokens_for(&b()), Err(a()), "another instance");
        assert_eq!(
            read.tokens_for(&IssuedTo::new("https://a.example/id", "other")),
            Err(a()),
            "another client"
        );
        assert_eq!(
            TokenSet::from_store_file(&bytes),
            Ok(tokens(None)),
            "the plain reader ignores the record"
        );
    }

    #[test]
    fn files_without_a_record_still_load_and_their_id_token_speaks_for_them() {
        let old = tokens(None).to_store_file().unwrap();
        assert!(!String::from_utf8(old.clone()).unwrap().contains("issued_to"), "no record written");
        let read = StoreFile::from_bytes(&old).unwrap();
        assert_eq!(read.issued_to, None);
        assert_eq!(read.tokens_for(&b()), Ok(tokens(None)), "nothing says whom: handed out");

        let id = jwt(serde_json::json!({"iss": "https://a.example/id", "aud": "app", "sub": "u"}));
        let old = tokens(Some(id.clone())).to_store_file().unwrap();
        let read = StoreFile::from_bytes(&old).unwrap();
        assert_eq!(read.clone().tokens_for(&a()), Ok(tokens(Some(id))));
        assert_eq!(read.tokens_for(&b()), Err(a()), "the ID token's iss and aud");

        let several = jwt(serde_json::json!({"iss": "https://a.example/id", "aud": ["app", "x"]}));
        assert_eq!(IssuedTo::from_id_token(&several), None);
        let one = jwt(serde_json::json!({"iss": "https://a.example/id", "aud": ["app"]}));
        assert_eq!(IssuedTo::from_id_token(&one), Some(a()));
        assert_eq!(IssuedTo::from_id_token(&IdToken::new("not a jwt")), None);
    }

    #[test]
    fn only_a_shared_stores_passing_troubles_are_retryable() {
        let store = "redis://:[redacted]@h:6379/ key p:alice".to_owned();
        let retryable = [
            StoreError::Unavailable { store: store.clone(), reason: "connection refused".to_owned() },
            StoreError::LockTimeout { store: store.clone(), waited: std::time::Duration::from_secs(75) },
            StoreError::Fenced { store: store.clone() },
        ];
        for e in retryable {
            assert!(e.is_retryable(), "{e}");
            assert!(crate::Error::from(e).is_retryable());
        }
        let not = [
            StoreError::Decrypt { store: store.clone(), reason: "wrong key".to_owned() },
            StoreError::Other("disk full".to_owned()),
            StoreError::Corrupt { path: PathBuf::from("/s/t.json"), reason: "x".to_owned() },
            StoreError::Io {
                path: PathBuf::from("/s/t.json"),
                action: "read",
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
        ];
        for e in not {
            assert!(!e.is_retryable(), "{e}");
            assert!(!crate::Error::from(e).is_retryable());
        }
    }

    #[test]
    fn errors_name_the_paths_and_both_clients_but_no_token() {
        let e = StoreError::IssuedToAnother { path: PathBuf::from("/s/t.json"), stored: a(), expected: b() };
        let text = e.to_string();
        for needle in ["/s/t.json", "https://a.example/id", "https://b.example/id", "`app`"] {
            assert!(text.contains(needle), "{text}");
        }
        let e = StoreError::DirectoryWritableByOthers { path: PathBuf::from("/s"), mode: 0o777 };
        assert_eq!(e.to_string(), "the store directory /s is writable by others (mode 0777): chmod 700 /s");
        let e = StoreError::Symlink { path: PathBuf::from("/s/t.json") };
        assert!(e.to_string().starts_with("/s/t.json is a symbolic link"), "{e}");
    }
}
