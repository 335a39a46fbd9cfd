//! The identity server's signing keys: the JWKS request, parsing a JSON Web Key Set (RFC 7517) into the
//! keys this client can verify with, and [`KeyCache`], a small sans-IO cache that asks for one refetch
//! when an ID token names a key it does not know (catalogue D7).
//!
//! Keys this client cannot use are set aside, not errors (catalogue D8): another `kty` (`oct`, `OKP`),
//! another curve than P-256, `use: enc`, `key_ops` without `verify`, an algorithm other than RS256, PS256
//! or ES256, RSA moduli under 2048 bits, and malformed members. [`JwkSet::ignored`] says which and why.
//!
//! Signatures are checked by `ring` (no hand-written cryptography).

use crate::config::{ClientConfig, ConfigError, get_json};
use crate::error::excerpt;
use crate::safe_text::escape;
use crate::secret::IdToken;
use base64::Engine as _;
use std::fmt;
use std::time::{Duration, SystemTime};

/// An ID token signing algorithm this client verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256: OpenID Connect's mandatory algorithm, ERP.net's.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl SigningAlg {
    /// Every algorithm supported, the default accepted set.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Ps256, SigningAlg::Es256];

    /// The JOSE name (`RS256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Ps256 => "PS256",
            SigningAlg::Es256 => "ES256",
        }
    }

    /// The algorithm named `name` (case-sensitive, as JOSE names are), if supported.
    pub fn from_name(name: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// `kty: RSA` (RS256, PS256).
    Rsa,
    /// `kty: EC`, `crv: P-256` (ES256).
    EcP256,
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Big-endian modulus and exponent, leading zeros stripped.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    EcP256 { point: Vec<u8> },
}

/// One public key from a JWKS that this client can verify signatures with.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<SigningAlg>,
    material: Material,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Jwk");
        d.field("kid", &self.kid).field("alg", &self.alg).field("type", &self.key_type());
        if let Material::Rsa { n, .. } = &self.material {
            d.field("bits", &modulus_bits(n));
        }
        d.finish()
    }
}

/// A key of a JWKS that was set aside, and why (catalogue D8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Its `kid`, if it had one, as received: escape it ([`crate::escape`]) before showing it.
    pub kid: Option<String>,
    /// Why it cannot be used (the server's text in it is shortened and escaped).
    pub reason: String,
}

impl Jwk {
    /// An RSA key from its big-endian modulus and exponent. Fails (with the reason) for a modulus under
    /// 2048 bits or an empty exponent.
    pub fn rsa(kid: Option<&str>, alg: Option<SigningAlg>, n: &[u8], e: &[u8]) -> Result<Jwk, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if modulus_bits(&n) < 2048 {
            return Err(format!("the RSA modulus has {} bits; at least 2048 are required", modulus_bits(&n)));
        }
        if e.is_empty() {
            return Err("the RSA exponent is zero".to_owned());
        }
        if matches!(alg, Some(SigningAlg::Es256)) {
            return Err("an RSA key cannot be used with ES256".to_owned());
        }
        Ok(Jwk { kid: kid.map(str::to_owned), alg, material: Material::Rsa { n, e } })
    }

    /// A P-256 key from its 32-byte coordinates.
    pub fn ec_p256(kid: Option<&str>, x: &[u8], y: &[u8]) -> Result<Jwk, String> {
        if x.len() != 32 || y.len() != 32 {
            return Err("a P-256 coordinate must be 32 bytes".to_owned());
        }
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(Jwk {
            kid: kid.map(str::to_owned),
            alg: Some(SigningAlg::Es256),
            material: Material::EcP256 { point },
        })
    }

    /// Reads one member of a JWKS's `keys` array. `Err` says why the key cannot be used.
    pub fn from_json(value: &serde_json::Value) -> Result<Jwk, IgnoredKey> {
        // The kid is kept whole: a token names its key by the exact string (shortened, it would never
        // match). Messages shorten and escape it.
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let ignore = |reason: String| IgnoredKey { kid: kid.clone(), reason };
        let Some(obj) = value.as_object() else {
            return Err(ignore("a key must be a JSON object".to_owned()));
        };
        if obj.get("kid").is_some_and(|k| !k.is_string()) {
            return Err(ignore("`kid` is not a string".to_owned()));
        }
        let text = |name: &str| obj.get(name).and_then(|v| v.as_str());
        match obj.get("use") {
            None => {}
            Some(serde_json::Value::String(u)) if u == "sig" => {}
            Some(other) => {
                return Err(ignore(format!("`use` is {}, not `sig`", excerpt(&other.to_string(), 40))));
            }
        }
        if let Some(ops) = obj.get("key_ops") {
            let verifies = ops.as_array().is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
            if !verifies {
                return Err(ignore("`key_ops` does not allow `verify`".to_owned()));
            }
        }
        let alg = match obj.get("alg") {
            None => None,
            Some(serde_json::Value::String(a)) => match SigningAlg::from_name(a) {
                Some(alg) => Some(alg),
                None => return Err(ignore(format!("the algorithm `{}` is not supported", excerpt(a, 40)))),
            },
            Some(_) => return Err(ignore("`alg` is not a string".to_owned())),
        };
        let coord = |name: &'static str| -> Result<Vec<u8>, IgnoredKey> {
            let v = text(name).ok_or_else(|| ignore(format!("`{name}` is missing or not a string")))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| ignore(format!("`{name}` is not base64url")))
        };
        match text("kty") {
            Some("RSA") => Jwk::rsa(kid.as_deref(), alg, &coord("n")?, &coord("e")?).map_err(ignore),
            Some("EC") => {
                match text("crv") {
                    Some("P-256") => {}
                    Some(crv) => {
                        return Err(ignore(format!("the curve `{}` is not supported", excerpt(crv, 40))));
                    }
                    None => return Err(ignore("`crv` is missing".to_owned())),
                }
                if matches!(alg, Some(a) if a != SigningAlg::Es256) {
                    return Err(ignore("a P-256 key can only be used with ES256".to_owned()));
                }
                Jwk::ec_p256(kid.as_deref(), &coord("x")?, &coord("y")?).map_err(ignore)
            }
            Some(kty) => Err(ignore(format!("the key type `{}` is not supported", excerpt(kty, 40)))),
            None => Err(ignore("`kty` is missing".to_owned())),
        }
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the key is restricted to by its `alg` member, if any.
    pub fn alg(&self) -> Option<SigningAlg> {
        self.alg
    }

    /// RSA or EC P-256.
    pub fn key_type(&self) -> KeyType {
        match self.material {
            Material::Rsa { .. } => KeyType::Rsa,
            Material::EcP256 { .. } => KeyType::EcP256,
        }
    }

    /// Whether this key can check a signature made with `alg`: the right key type, and the same `alg`
    /// when the key names one.
    pub fn fits(&self, alg: SigningAlg) -> bool {
        let kind = matches!(
            (&self.material, alg),
            (Material::Rsa { .. }, SigningAlg::Rs256 | SigningAlg::Ps256)
                | (Material::EcP256 { .. }, SigningAlg::Es256)
        );
        kind && self.alg.is_none_or(|a| a == alg)
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this key.
    pub fn verify(&self, alg: SigningAlg, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        if !self.fits(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa { n, e }, SigningAlg::Rs256) => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Material::Rsa { n, e }, SigningAlg::Ps256) => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PSS_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Material::EcP256 { point }, SigningAlg::Es256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default().to_vec()
}

fn modulus_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// Why a JWKS response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWKS URI answered with a redirect; it is not followed (catalogue H1).
    #[error("the JWKS URI answered with a redirect (HTTP {status}); it is not followed")]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// An error status.
    #[error("the JWKS URI answered HTTP {status} ({length} bytes)")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The body's length.
        length: usize,
    },
    /// Not a JSON object with a `keys` array.
    #[error("the JWKS is malformed: {}", escape(.reason))]
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

impl JwksError {
    /// Whether trying again later may succeed (5xx, 429).
    pub fn is_retryable(&self) -> bool {
        matches!(self, JwksError::Http { status, .. } if *status >= 500 || *status == 429)
    }
}

/// The keys of a JWKS that this client can use, and those it set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<Jwk>,
    ignored: Vec<IgnoredKey>,
}

/// Which keys may have signed a token, by its header's `kid` and `alg`.
#[derive(Debug)]
pub(crate) enum Selection<'a> {
    /// These keys, to try in order (one when a `kid` matched).
    Keys(Vec<&'a Jwk>),
    /// No key has this `kid`.
    UnknownKid(String),
    /// The `kid` names a key of another type or algorithm.
    KidWrongType(String),
    /// No `kid`, and no key fits the algorithm.
    NoKeyForAlg,
}

impl JwkSet {
    /// A set of the given keys.
    pub fn new(keys: Vec<Jwk>) -> Self {
        JwkSet { keys, ignored: Vec::new() }
    }

    /// Parses the JWKS URI's response. A redirect or error status is an error; keys that cannot be used
    /// are set aside ([`Self::ignored`]), not errors (catalogue D8).
    pub fn parse<B: AsRef<[u8]>>(response: &http::Response<B>) -> Result<JwkSet, JwksError> {
        let status = response.status();
        let body = response.body().as_ref();
        if status.is_redirection() {
            return Err(JwksError::Redirect { status: status.as_u16() });
        }
        if !status.is_success() {
            return Err(JwksError::Http { status: status.as_u16(), length: body.len() });
        }
        JwkSet::from_json(body)
    }

    /// Parses a JWKS document.
    pub fn from_json(body: &[u8]) -> Result<JwkSet, JwksError> {
        let malformed = |reason: &str| JwksError::Malformed { reason: reason.to_owned() };
        let doc: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| JwksError::Malformed { reason: format!("not JSON ({e})") })?;
        let Some(obj) = doc.as_object() else {
            return Err(malformed("expected a JSON object"));
        };
        let Some(list) = obj.get("keys") else {
            return Err(malformed("`keys` is missing"));
        };
        let Some(list) = list.as_array() else {
            return Err(malformed("`keys` is not an array"));
        };
        let mut set = JwkSet::default();
        for value in list {
            match Jwk::from_json(value) {
                Ok(key) => set.keys.push(key),
                Err(ignored) => set.ignored.push(ignored),
            }
        }
        Ok(set)
    }

    /// The usable keys, in the document's order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The keys set aside, and why.
    pub fn ignored(&self) -> &[IgnoredKey] {
        &self.ignored
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// The keys that may have signed a token whose header has `kid` and `alg`.
    ///
    /// With a `kid`, only the keys with that `kid` (catalogue D7). Without one (catalogue D6), every key
    /// that fits the algorithm, to be tried in turn: with a single key that is the key; with several (as
    /// during a rotation) each is tried, which is safe because every key in the issuer's JWKS is the
    /// issuer's, and bounded by the size of the set.
    pub(crate) fn select(&self, kid: Option<&str>, alg: SigningAlg) -> Selection<'_> {
        match kid {
            Some(kid) => {
                let named: Vec<&Jwk> = self.keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if named.is_empty() {
                    return Selection::UnknownKid(excerpt(kid, 200));
                }
                let fit: Vec<&Jwk> = named.into_iter().filter(|k| k.fits(alg)).collect();
                if fit.is_empty() { Selection::KidWrongType(excerpt(kid, 200)) } else { Selection::Keys(fit) }
            }
            None => {
                let fit: Vec<&Jwk> = self.keys.iter().filter(|k| k.fits(alg)).collect();
                if fit.is_empty() { Selection::NoKeyForAlg } else { Selection::Keys(fit) }
            }
        }
    }
}

impl ClientConfig {
    /// The GET for the JWKS (`{instance}/id/.well-known/openid-configuration/jwks` unless discovery gave
    /// another URI). The adapter must not follow redirects (catalogue H1).
    pub fn jwks_request(&self) -> Result<http::Request<Vec<u8>>, ConfigError> {
        let uri = self.uris.jwks.as_ref().ok_or(ConfigError::NoEndpoint { what: "the JWKS URI" })?;
        Ok(get_json(uri))
    }
}

/// A cache of the issuer's keys that decides, without I/O, when to fetch them (catalogue D7).
///
/// The rule: the keys are fetched when there are none yet, and fetched again when a token names a `kid`
/// the set lacks (or, without a `kid`, when no key fits its algorithm), never for a token whose algorithm
/// the client does not accept (`none`, `HS256`) or whose header is unreadable, and **at most once per
/// [`refetch interval`](Self::with_refetch_interval)** (default 60 s) measured with the `now` given. A
/// token whose key is still unknown after that is rejected by the verification. A fetch attempt counts
/// when the request is handed out, so an adapter whose request fails cannot loop.
///
/// Use: call [`poll_fetch`](Self::poll_fetch) with the token; while it returns a request, send it and
/// pass the answer to [`handle_jwks_response`](Self::handle_jwks_response); then verify against
/// [`keys`](Self::keys).
///
/// ```
/// # use erpnet_oauth_core::*;
/// # use std::time::{Duration, UNIX_EPOCH};
/// let client = ClientConfig::builder("https://demodb.my.erp.net", "app").build()?;
/// let token = IdToken::new("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5ldyJ9.e30.sig"); // kid "new"
/// let mut cache = KeyCache::new();
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let request = cache.poll_fetch(&client, &token, now).expect("no keys yet: fetch");
/// assert_eq!(request.uri(), "https://demodb.my.erp.net/id/.well-known/openid-configuration/jwks");
/// cache.handle_jwks_response(&http::Response::new(br#"{"keys":[]}"#.to_vec()))?;
/// // The key is still unknown, but the set was fetched just now: no second request.
/// assert!(cache.poll_fetch(&client, &token, now).is_none());
/// // A minute later an unknown kid may trigger one more fetch.
/// assert!(cache.poll_fetch(&client, &token, now + Duration::from_secs(60)).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeyCache {
    keys: JwkSet,
    fetched_at: Option<SystemTime>,
    interval: Duration,
    fetches: u64,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyCache {
    /// The default minimum time between two fetches: 60 s.
    pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

    /// An empty cache with the default refetch interval.
    pub fn new() -> Self {
        KeyCache {
            keys: JwkSet::default(),
            fetched_at: None,
            interval: Self::DEFAULT_REFETCH_INTERVAL,
            fetches: 0,
        }
    }

    /// A cache already holding `keys` (for example persisted ones), fetched at `fetched_at`.
    pub fn with_keys(keys: JwkSet, fetched_at: SystemTime) -> Self {
        KeyCache { keys, fetched_at: Some(fetched_at), ..Self::new() }
    }

    /// Sets the minimum time between two fetches.
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The keys held.
    pub fn keys(&self) -> &JwkSet {
        &self.keys
    }

    /// When the last fetch was handed out.
    pub fn fetched_at(&self) -> Option<SystemTime> {
        self.fetched_at
    }

    /// How many fetches this cache has asked for.
    pub fn fetches(&self) -> u64 {
        self.fetches
    }

    /// Whether a fetch is allowed at `now` by the rate limit.
    fn may_fetch(&self, now: SystemTime) -> bool {
        match self.fetched_at {
            None => true,
            Some(at) => match now.duration_since(at) {
                Ok(elapsed) => elapsed >= self.interval && elapsed > Duration::ZERO,
                // The clock went back: allow, and the fetch resets the mark to the new `now`.
                Err(_) => true,
            },
        }
    }

    /// The JWKS request to send before verifying `token` at `now`, if one is needed and allowed (see the
    /// type's docs); `None` means: verify with [`Self::keys`] now. Also `None` when the configuration has
    /// no JWKS URI.
    #[must_use]
    pub fn poll_fetch(
        &mut self,
        client: &ClientConfig,
        token: &IdToken,
        now: SystemTime,
    ) -> Option<http::Request<Vec<u8>>> {
        let needed = match crate::id_token::header_kid_alg(token) {
            // An algorithm this client does not accept (`none`, `HS256`...) or an unreadable header:
            // no key would help, so nothing is fetched.
            Some((_, alg)) if !client.id_token_signing_algs().contains(&alg) => false,
            None => false,
            Some((kid, alg)) => {
                self.fetched_at.is_none()
                    || !matches!(self.keys.select(kid.as_deref(), alg), Selection::Keys(_))
            }
        };
        if !needed || !self.may_fetch(now) {
            return None;
        }
        let request = client.jwks_request().ok()?;
        self.fetched_at = Some(now);
        self.fetches += 1;
        Some(request)
    }

    /// Takes the answer to the request from [`Self::poll_fetch`]. On success the new set replaces the old;
    /// on failure the old keys are kept (and the rate limit still applies).
    pub fn handle_jwks_response<B: AsRef<[u8]>>(
        &mut self,
        response: &http::Response<B>,
    ) -> Result<(), JwksError> {
        self.keys = JwkSet::parse(response)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn rsa_json(kid: &str, bits: usize) -> serde_json::Value {
        let mut n = vec![0xC5u8; bits / 8];
        n[0] = 0xC5;
        json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    #[test]
    fn unusable_keys_are_set_aside() {
        let doc = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            rsa_json("small", 1024),
            {"kty": "RSA", "kid": "rs384", "alg": "RS384", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"},
            "junk",
            rsa_json("good", 2048),
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
        ]});
        let set = JwkSet::from_json(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys().iter().map(|k| k.kid().unwrap()).collect();
        assert_eq!(kids, ["good", "ec"]);
        assert_eq!(set.ignored().len(), 9);
        assert!(set.ignored()[0].reason.contains("`oct`"));
        assert!(set.ignored()[4].reason.contains("1024 bits"), "{:?}", set.ignored()[4]);
        assert_eq!(set.find("ec").unwrap().key_type(), KeyType::EcP256);
        assert!(set.find("good").unwrap().fits(SigningAlg::Ps256));
        assert!(!set.find("good").unwrap().fits(SigningAlg::Es256));
        assert!(format!("{:?}", set.find("good").unwrap()).contains("bits: 2048"));
    }

    #[test]
    fn malformed_documents() {
        for (body, want) in [
            ("", "not JSON"),
            ("[]", "JSON object"),
            ("{}", "`keys` is missing"),
            (r#"{"keys":{}}"#, "not an array"),
        ] {
            let got = JwkSet::from_json(body.as_bytes());
            assert!(
                matches!(&got, Err(JwksError::Malformed { reason }) if reason.contains(want)),
                "{body}: {got:?}"
            );
        }
        let mut r = http::Response::new(Vec::new());
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(JwkSet::parse(&r), Err(JwksError::Http { status: 503, length: 0 }));
        assert!(JwkSet::parse(&r).unwrap_err().is_retryable());
        *r.status_mut() = http::StatusCode::FOUND;
        assert_eq!(JwkSet::parse(&r), Err(JwksError::Redirect { status: 302 }));
    }

    #[test]
    fn selection_by_kid_and_alg() {
        let doc = json!({"keys": [rsa_json("a", 2048), rsa_json("b", 2048),
            {"kty": "EC", "crv": "P-256", "kid": "e", "x": b64(&[1; 32]), "y": b64(&[2; 32])}]});
        let set = JwkSet::from_json(doc.to_string().as_bytes()).unwrap();
        assert!(matches!(set.select(Some("b"), SigningAlg::Rs256), Selection::Keys(k) if k.len() == 1));
        assert!(matches!(set.select(Some("z"), SigningAlg::Rs256), Selection::UnknownKid(k) if k == "z"));
        assert!(matches!(set.select(Some("e"), SigningAlg::Rs256), Selection::KidWrongType(_)));
        assert!(matches!(set.select(None, SigningAlg::Rs256), Selection::Keys(k) if k.len() == 2));
        assert!(matches!(set.select(None, SigningAlg::Es256), Selection::Keys(k) if k.len() == 1));
        assert!(matches!(JwkSet::default().select(None, SigningAlg::Es256), Selection::NoKeyForAlg));
    }

    #[test]
    fn jwks_request_uses_the_configured_uri() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app").build().unwrap();
        let r = client.jwks_request().unwrap();
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(r.uri(), "https://demodb.my.erp.net/id/.well-known/openid-configuration/jwks");
        assert_eq!(r.headers()["accept"], "application/json");
    }
}
