//! Tokens at rest: AES-256-GCM (ring) with a key the application provides.
//!
//! A stored value is either the plain JSON of the store file (it starts with `{`) or
//! `0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`: version byte 1, a fresh random 96-bit nonce
//! per write, and the Redis key name as the associated data, so a ciphertext copied under another key (to
//! another user's login) does not decrypt.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::fmt;
use std::sync::Arc;

/// The version byte of an encrypted value.
pub(crate) const VERSION: u8 = 1;

/// A 256-bit key for AES-256-GCM, given by the application (from its secret manager, never from Redis).
/// Cloning shares it. `Debug` shows `[redacted]`.
#[derive(Clone)]
pub struct EncryptionKey(Arc<LessSafeKey>);

/// A key of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an encryption key has 32 bytes, not {0}")]
pub struct InvalidKeyLength(pub usize);

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
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Encrypts `plain` for the key name `aad`.
pub(crate) fn seal(key: &EncryptionKey, aad: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| format!("the OS random source failed: {e}"))?;
    let mut in_out = plain.to_vec();
    key.0
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut in_out)
        .map_err(|_| "encryption failed".to_owned())?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&in_out);
    Ok(out)
}

/// Why a stored value could not be read as this store expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// The value is not encrypted but the store has a key.
    Plain,
    /// The value is encrypted but the store has no key.
    NoKey,
    /// An unknown version byte.
    Version(u8),
    /// The tag did not verify: wrong key, changed ciphertext, or moved from another key.
    Tag,
    /// Too short to be a ciphertext.
    Short,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Plain => f.write_str(
                "they are stored unencrypted and this store requires encryption (log in again to replace them)",
            ),
            OpenError::NoKey => f.write_str("they are encrypted and this store has no encryption key"),
            OpenError::Version(v) => write!(f, "unknown encryption format version {v}"),
            OpenError::Tag => f.write_str(
                "the key is wrong, or the ciphertext was changed or moved from another login's key",
            ),
            OpenError::Short => f.write_str("the ciphertext is truncated"),
        }
    }
}

/// The plain bytes of a stored value: decrypted with `key` for the key name `aad`, or as they are when
/// the store has no key. Never garbage: a value that does not match the store's setting is an error.
pub(crate) fn open(key: Option<&EncryptionKey>, aad: &str, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
    let Some(key) = key else {
        return match stored.first() {
            Some(&VERSION) => Err(OpenError::NoKey),
            _ => Ok(stored.to_vec()),
        };
    };
    let (&version, rest) = stored.split_first().ok_or(OpenError::Short)?;
    if version == b'{' {
        return Err(OpenError::Plain);
    }
    if version != VERSION {
        return Err(OpenError::Version(version));
    }
    if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(OpenError::Short);
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Short)?;
    let mut in_out = sealed.to_vec();
    let plain =
        key.0.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out).map_err(|_| OpenError::Tag)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_key_tamper_move_and_format() {
        let key = EncryptionKey::new([7; 32]);
        let plain = br#"{"version":1}"#;
        let a = seal(&key, "p:alice", plain).unwrap();
        let b = seal(&key, "p:alice", plain).unwrap();
        assert_eq!(a[0], VERSION);
        assert_eq!(a.len(), 1 + 12 + plain.len() + 16);
        assert_ne!(a, b, "a fresh nonce per write");
        assert!(!a.windows(7).any(|w| w == b"version"), "no plaintext in the ciphertext");
        assert_eq!(open(Some(&key), "p:alice", &a).unwrap(), plain);
        assert_eq!(open(Some(&EncryptionKey::new([8; 32])), "p:alice", &a), Err(OpenError::Tag));
        assert_eq!(open(Some(&key), "p:bob", &a), Err(OpenError::Tag), "moved to another key");
        let mut tampered = a.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(open(Some(&key), "p:alice", &tampered), Err(OpenError::Tag));
        let mut tampered = a.clone();
        tampered[20] ^= 0x80;
        assert_eq!(open(Some(&key), "p:alice", &tampered), Err(OpenError::Tag));
        assert_eq!(open(Some(&key), "p:alice", &a[..20]), Err(OpenError::Short));
        assert_eq!(open(Some(&key), "p:alice", &[]), Err(OpenError::Short));
        let mut v2 = a.clone();
        v2[0] = 2;
        assert_eq!(open(Some(&key), "p:alice", &v2), Err(OpenError::Version(2)));
        assert_eq!(open(Some(&key), "p:alice", plain), Err(OpenError::Plain));
        assert_eq!(open(None, "p:alice", &a), Err(OpenError::NoKey));
        assert_eq!(open(None, "p:alice", plain).unwrap(), plain);
        assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
        assert_eq!(EncryptionKey::from_slice(&[0; 16]).err(), Some(InvalidKeyLength(16)));
    }
}
