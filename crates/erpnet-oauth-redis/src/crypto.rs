//! Encryption at rest: AES-256-GCM (ring) with a key the application provides, in one format for
//! everything this crate (and the CLI) keeps encrypted.
//!
//! A sealed value is `0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`: version byte 1, a fresh
//! random 96-bit nonce per seal, and the value's name (for the token store, the Redis key name) as the
//! associated data, so a ciphertext copied under another name (to another user's login) does not
//! decrypt. The token store keeps either the plain JSON of the store file (it starts with `{`) or such a
//! sealed value.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::fmt;
use std::sync::Arc;

/// The version byte of a sealed value.
pub(crate) const VERSION: u8 = 1;

/// A 256-bit key for AES-256-GCM, given by the application (from its secret manager, never from Redis).
/// Cloning shares it. `Debug` shows `[redacted]`.
///
/// Besides encrypting a store's tokens ([`crate::RedisStore::encryption_key`]), it seals and opens
/// values of the application's own in the same format ([`Self::seal`], [`Self::open`]).
#[derive(Clone)]
pub struct EncryptionKey(Arc<LessSafeKey>);

/// A key of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an encryption key has 32 bytes, not {0}")]
pub struct InvalidKeyLength(pub usize);

/// Why [`EncryptionKey::seal`] failed: the OS random source (for the nonce) failed, or the value is
/// too long for AES-GCM (about 64 GiB). The text shows no key and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encryption failed: {reason}")]
pub struct SealError {
    reason: String,
}

/// Why [`EncryptionKey::open`] refused a value. Never garbage: a value that was not sealed by this key
/// for this name is one of these. The texts show no key and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// Too short to be a sealed value (shorter than its version byte, nonce and tag).
    #[error("the ciphertext is truncated")]
    Short,
    /// The first byte is not the format's version (1): not a sealed value, or a format this version
    /// does not know.
    #[error("not a value sealed in the known format (version byte {0}, expected 1)")]
    Version(u8),
    /// The tag did not verify: the key is wrong, or the ciphertext was changed, or it was sealed for
    /// another name (moved from another key).
    #[error("the key is wrong, or the ciphertext was changed or moved from another name")]
    Tag,
}

impl EncryptionKey {
    /// The key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self::from_slice(&bytes).unwrap_or_else(|_| unreachable!("32 bytes is AES-256's key length"))
    }

    /// The key from a slice, which must hold 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidKeyLength> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| InvalidKeyLength(bytes.len()))?;
        Ok(EncryptionKey(Arc::new(LessSafeKey::new(key))))
    }

    /// `plain` encrypted for the name `name`: `0x01 ‖ nonce ‖ ciphertext ‖ tag`, with a fresh random
    /// nonce (so sealing the same value twice gives two different results) and `name` as the
    /// associated data: it is not stored, not secret, and must be given again to [`Self::open`], which
    /// refuses the value under any other name. Use the name the value is stored under (a Redis key
    /// name), so that a value copied elsewhere does not decrypt there.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| SealError { reason: format!("the OS random source failed: {e}") })?;
        let mut in_out = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError { reason: "the value is too long for AES-GCM".to_owned() })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// The plain bytes of `stored`, a value [`Self::seal`] made with this key for the same `name` (the
    /// associated data). Anything else (another key, another name, a changed or truncated value, a
    /// value that was never sealed) is a [`DecryptError`], never garbage.
    pub fn open(&self, name: &str, stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let (&version, rest) = stored.split_first().ok_or(DecryptError::Short)?;
        if version != VERSION {
            return Err(DecryptError::Version(version));
        }
        if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(DecryptError::Short);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError::Short)?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| DecryptError::Tag)?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Why a stored token value could not be read as this store expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// The value is not encrypted but the store has a key.
    Plain,
    /// The value is encrypted but the store has no key.
    NoKey,
    /// The key refused it.
    Sealed(DecryptError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Plain => f.write_str(
                "they are stored unencrypted and this store requires encryption (log in again to replace them)",
            ),
            OpenError::NoKey => f.write_str("they are encrypted and this store has no encryption key"),
            OpenError::Sealed(DecryptError::Tag) => f.write_str(
                "the key is wrong, or the ciphertext was changed or moved from another login's key",
            ),
            OpenError::Sealed(DecryptError::Version(v)) => write!(f, "unknown encryption format version {v}"),
            OpenError::Sealed(e) => e.fmt(f),
        }
    }
}

/// The plain bytes of a stored token value: opened with `key` for the key name `name`, or as they are
/// when the store has no key. Never garbage: a value that does not match the store's setting is an error.
pub(crate) fn open_tokens(
    key: Option<&EncryptionKey>,
    name: &str,
    stored: &[u8],
) -> Result<Vec<u8>, OpenError> {
    match key {
        None => match stored.first() {
            Some(&VERSION) => Err(OpenError::NoKey),
            _ => Ok(stored.to_vec()),
        },
        Some(_) if stored.first() == Some(&b'{') => Err(OpenError::Plain),
        Some(key) => key.open(name, stored).map_err(OpenError::Sealed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_key_tamper_move_and_format() {
        let key = EncryptionKey::new([7; 32]);
        let plain = br#"{"version":1}"#;
        let a = key.seal("p:alice", plain).unwrap();
        let b = key.seal("p:alice", plain).unwrap();
        assert_eq!(a[0], VERSION);
        assert_eq!(a.len(), 1 + 12 + plain.len() + 16);
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!a.windows(7).any(|w| w == b"version"), "no plaintext in the ciphertext");
        assert_eq!(key.open("p:alice", &a).unwrap(), plain);
        assert_eq!(key.open("p:alice", &b).unwrap(), plain);
        assert_eq!(EncryptionKey::new([8; 32]).open("p:alice", &a), Err(DecryptError::Tag), "another key");
        assert_eq!(key.open("p:bob", &a), Err(DecryptError::Tag), "moved to another name");
        assert_eq!(key.open("", &a), Err(DecryptError::Tag));
        let mut tampered = a.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(key.open("p:alice", &tampered), Err(DecryptError::Tag), "a changed tag");
        let mut tampered = a.clone();
        tampered[20] ^= 0x80;
        assert_eq!(key.open("p:alice", &tampered), Err(DecryptError::Tag), "a changed ciphertext");
        let mut tampered = a.clone();
        tampered[3] ^= 1;
        assert_eq!(key.open("p:alice", &tampered), Err(DecryptError::Tag), "a changed nonce");
        assert_eq!(key.open("p:alice", &a[..20]), Err(DecryptError::Short));
        assert_eq!(key.open("p:alice", &a[..1 + 12 + 15]), Err(DecryptError::Short));
        assert_eq!(key.open("p:alice", &[]), Err(DecryptError::Short));
        let mut v2 = a.clone();
        v2[0] = 2;
        assert_eq!(key.open("p:alice", &v2), Err(DecryptError::Version(2)));
        assert_eq!(key.open("p:alice", plain), Err(DecryptError::Version(b'{')), "plain text is refused");
        // An empty value seals and opens too.
        assert_eq!(key.open("n", &key.seal("n", b"").unwrap()).unwrap(), b"");
        assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
        assert_eq!(EncryptionKey::from_slice(&[0; 16]).err(), Some(InvalidKeyLength(16)));
        assert!(EncryptionKey::from_slice(&[0; 32]).is_ok());
    }

    /// The CLI's saved client secret: sealed under its Redis key name, opened by that key and name only.
    #[test]
    fn a_sealed_secret_opens_with_its_key_and_name_only() {
        let key = EncryptionKey::from_slice(&[7; 32]).unwrap();
        let sealed = key.seal("erpnet-oauth:cli:secret:a", b"s3cret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open("erpnet-oauth:cli:secret:a", &sealed).as_deref(), Ok(&b"s3cret"[..]));
        assert_eq!(key.open("erpnet-oauth:cli:secret:b", &sealed), Err(DecryptError::Tag), "another profile");
        let other = EncryptionKey::from_slice(&[8; 32]).unwrap();
        assert_eq!(other.open("erpnet-oauth:cli:secret:a", &sealed), Err(DecryptError::Tag));
        assert_eq!(key.open("erpnet-oauth:cli:secret:a", b"s3cret"), Err(DecryptError::Version(b's')));
        for e in [DecryptError::Tag, DecryptError::Short, DecryptError::Version(b's')] {
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn the_token_store_tells_plain_from_sealed_values() {
        let key = EncryptionKey::new([7; 32]);
        let plain = br#"{"version":1}"#;
        let sealed = key.seal("p:alice", plain).unwrap();
        assert_eq!(open_tokens(Some(&key), "p:alice", &sealed).unwrap(), plain);
        assert_eq!(open_tokens(Some(&key), "p:alice", plain), Err(OpenError::Plain));
        assert_eq!(open_tokens(None, "p:alice", &sealed), Err(OpenError::NoKey));
        assert_eq!(open_tokens(None, "p:alice", plain).unwrap(), plain);
        assert_eq!(
            open_tokens(Some(&key), "p:bob", &sealed),
            Err(OpenError::Sealed(DecryptError::Tag)),
            "moved to another login's key"
        );
        assert!(OpenError::Sealed(DecryptError::Tag).to_string().contains("key is wrong"));
        assert_eq!(
            OpenError::Sealed(DecryptError::Version(2)).to_string(),
            "unknown encryption format version 2"
        );
    }
}
