//! Randomness comes in from the caller: the core never reads the OS random source.

use base64::Engine as _;

/// A source of cryptographically secure random bytes, implemented by the adapters (with the OS
/// source) and by tests (with fixed bytes).
pub trait RandomSource {
    /// Fills `dest` with random bytes.
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError>;
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        (**self).fill_bytes(dest)
    }
}

/// The random source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the random source failed: {0}")]
pub struct RandomError(pub String);

/// Bytes behind every generated state, nonce and PKCE verifier: 256 bits (RFC 7636 §7.1 asks for 256).
pub(crate) const RANDOM_BYTES: usize = 32;

/// A URL-safe random string of 43 characters from 32 random bytes.
pub(crate) fn random_string(rng: &mut dyn RandomSource) -> Result<String, RandomError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    rng.fill_bytes(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A deterministic [`RandomSource`] for tests and fixtures: a counter-driven SHA-256 stream from a seed.
///
/// **Never in production**: every state, nonce and PKCE verifier it gives is predictable by anyone who
/// knows the seed. It exists only with the `test-util` feature, which is off by default and meant for
/// `[dev-dependencies]`.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone)]
pub struct SeededRandom {
    seed: [u8; 32],
    counter: u64,
}

#[cfg(any(test, feature = "test-util"))]
impl SeededRandom {
    /// A stream determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        SeededRandom { seed: s, counter: 0 }
    }
}

#[cfg(any(test, feature = "test-util"))]
impl RandomSource for SeededRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        use sha2::Digest as _;
        for chunk in dest.chunks_mut(32) {
            let mut h = sha2::Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            let block = h.finalize();
            for (d, s) in chunk.iter_mut().zip(block.iter()) {
                *d = *s;
            }
        }
        Ok(())
    }
}
