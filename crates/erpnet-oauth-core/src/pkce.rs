//! PKCE (RFC 7636) with S256 only: `plain` is never sent.

use crate::random::{RandomError, RandomSource, random_string};
use crate::secret::PkceVerifier;
use base64::Engine as _;
use sha2::Digest as _;

impl PkceVerifier {
    /// A fresh verifier: 43 characters from 32 random bytes.
    pub fn generate(rng: &mut dyn RandomSource) -> Result<Self, RandomError> {
        random_string(rng).map(PkceVerifier::new)
    }

    /// The S256 challenge: BASE64URL-no-padding(SHA256(verifier)).
    pub fn s256_challenge(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(self.secret().as_bytes()))
    }

    /// Whether the verifier has RFC 7636 §4.1's form: 43 to 128 of `[A-Za-z0-9-._~]`.
    pub fn is_well_formed(&self) -> bool {
        let v = self.secret();
        (43..=128).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(v.s256_challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(v.is_well_formed());
    }

    #[test]
    fn generated_verifiers_are_well_formed_and_fresh() {
        let mut rng = crate::random::SeededRandom::new(7);
        let a = PkceVerifier::generate(&mut rng).unwrap();
        let b = PkceVerifier::generate(&mut rng).unwrap();
        assert!(a.is_well_formed());
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a, b);
    }
}
