//! RS256 signing keys, the JWKS, and JWT encoding/verification.
//!
//! RSA key generation takes a few hundred milliseconds, so keys come from a process-wide pool: every mock in
//! a process starts with pool key 0 and a rotation takes the next pool key not used by that mock yet. Keys are
//! generated on first use only.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaKeyPair, RsaPublicKeyComponents};
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest, Sha256};

pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pair: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn rng() -> &'static ring::rand::SystemRandom {
    static RNG: OnceLock<ring::rand::SystemRandom> = OnceLock::new();
    RNG.get_or_init(ring::rand::SystemRandom::new)
}

fn generate() -> io::Result<SigningKey> {
    let other = |e: &dyn std::fmt::Display| io::Error::other(format!("RSA key generation failed: {e}"));
    let mut os = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut os, 2048).map_err(|e| other(&e))?;
    let der = key.to_pkcs8_der().map_err(|e| other(&e))?;
    let pair = RsaKeyPair::from_pkcs8(der.as_bytes()).map_err(|e| other(&e))?;
    let n = key.n().to_bytes_be();
    let e = key.e().to_bytes_be();
    let digest = Sha256::digest(&n);
    let kid = URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&digest));
    Ok(SigningKey { kid, pair, n, e })
}

/// Pool key number `index`, generated on first use.
pub(crate) fn pool_key(index: usize) -> io::Result<Arc<SigningKey>> {
    static POOL: Mutex<Vec<Arc<SigningKey>>> = Mutex::new(Vec::new());
    // Holding the lock while generating makes concurrent starters wait for one key instead of each
    // generating its own.
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    while pool.len() <= index {
        pool.push(Arc::new(generate()?));
    }
    pool.get(index).cloned().ok_or_else(|| io::Error::other("key pool index out of range"))
}

impl SigningKey {
    pub(crate) fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "alg": "RS256",
            "e": URL_SAFE_NO_PAD.encode(&self.e),
            "n": URL_SAFE_NO_PAD.encode(&self.n),
        })
    }

    /// An RS256 JWS in compact form, with `kid` and the given `typ` in the header.
    pub(crate) fn sign_jwt(&self, typ: &str, claims: &serde_json::Value) -> io::Result<String> {
        self.sign_jwt_as(&self.kid, typ, claims)
    }

    /// [`Self::sign_jwt`] with another `kid` in the header (the signature is still this key's).
    pub(crate) fn sign_jwt_as(&self, kid: &str, typ: &str, claims: &serde_json::Value) -> io::Result<String> {
        let header = serde_json::json!({ "alg": "RS256", "kid": kid, "typ": typ });
        let mut out = String::with_capacity(1024);
        out.push_str(&URL_SAFE_NO_PAD.encode(header.to_string()));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, rng(), out.as_bytes(), &mut sig)
            .map_err(|_| io::Error::other("RSA signing failed"))?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(&sig));
        Ok(out)
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        RsaPublicKeyComponents { n: &self.n, e: &self.e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
            .is_ok()
    }
}

/// Verifies an RS256 JWT against `keys` (by `kid`, else each key) and returns its claims.
pub(crate) fn verify_jwt(token: &str, keys: &[Arc<SigningKey>]) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let signed = token.get(..h.len() + 1 + p.len())?.as_bytes();
    let kid = header.get("kid").and_then(|k| k.as_str());
    let ok = keys.iter().filter(|k| kid.is_none_or(|kid| kid == k.kid)).any(|k| k.verify(signed, &sig));
    if !ok {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

/// Left half of SHA-256, base64url: `at_hash`, `c_hash`, `s_hash`.
pub(crate) fn half_hash(value: &str) -> String {
    let d = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(d.get(..16).unwrap_or(&d))
}

/// `n` random bytes, base64url without padding (32 bytes give 43 characters, like ERP.net's refresh tokens).
pub(crate) fn random_token(n: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; n];
    if rng().fill(&mut buf).is_err() {
        // The OS random source failing is not recoverable in any meaningful way for a mock; fall back to a
        // hash of the time and a counter so the server keeps answering.
        static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let c = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d = Sha256::digest(format!("{c}:{t}").as_bytes());
        for (b, x) in buf.iter_mut().zip(d.iter().cycle()) {
            *b = *x;
        }
    }
    URL_SAFE_NO_PAD.encode(&buf)
}
