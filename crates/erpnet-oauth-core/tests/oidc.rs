//! OpenID Connect in the core, against tokens signed here with the test-only keys in `tests/keys/`:
//! ID token verification (catalogue D1-D9), the hybrid front channel (B7), refresh (E4), discovery (H5),
//! revocation and end session (G).

use base64::Engine as _;
use erpnet_oauth_core::*;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RSA_A: &[u8] = include_bytes!("keys/test-only-rsa-2048-a.pk8.der");
const RSA_B: &[u8] = include_bytes!("keys/test-only-rsa-2048-b.pk8.der");
const EC: &[u8] = include_bytes!("keys/test-only-ec-p256.pk8.der");

const INSTANCE: &str = "https://demodb.my.erp.net";
const ISSUER: &str = "https://demodb.my.erp.net/id";
const CLIENT_ID: &str = "my.trusted.app/first";
const SECRET: &str = "my-secret";
/// The seed's time: its ID token's `iat`.
const T0: u64 = 1_655_057_724;

/// The seed's literal id_token (from the token response of the source document).
const SEED_ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkJEbGhqYjhzOEUySm1tcWg2UDlxZEEiLCJ0eXAiOiJKV1QifQ.eyJuYmYiOjE2NTUwNTc3MjQsImV4cCI6MTY1NTA1ODAyNCwiaXNzIjoiaHR0cHM6Ly9lMS1kZXYubG9jYWwvaWQiLCJhdWQiOiJwayIsIm5vbmNlIjoiYWJjIiwiaWF0IjoxNjU1MDU3NzI0LCJhdF9oYXNoIjoibUhfSUZEUVppRHdZb2h5a0FZR2NJZyIsInNfaGFzaCI6IlRjMWtiNVB1U2lheEN2NXVJZHZ6ZlEiLCJzaWQiOiJ1Q3FiZkI4OHpYMXUzOW40NERwVjFRIiwic3ViIjoiYWRtaW4iLCJhdXRoX3RpbWUiOjE2NTUwMjc3MTksImlkcCI6ImxvY2FsIiwiYW1yIjpbInB3ZCJdfQ.CzTk7SXiqcgpjVXCvdgDKJ92bt2a93R76l5WmCIZ6hMG6VDYHXlkBlqmG15l8Zsc1SpLn949f-OQn4nK1LaLkOA1rrMfT6lhMdrdBkQED7mYrjTyRqUJHnkriYpLsbL4Ze5gOP1M0HlDi6ZWjhZyzJgEyqi_T44lmlyZc0ujQ0Zba-_afXV7VpmgL9dIPwSmhuP14x2UJIGziBE8m23DL4GqTMQYgX0HNGLa2Tgiztp4h9ABBWWhj_iEKJ3ZoZ3CfMVMn53fqDaf9fuIrgYrOOTKqE7UrxH2bhdLUlaqka7KeGIsRd7f6wV2XqFDfY3vtW85CzQnjuGhj-qAJoZjCw";
const SEED_KID: &str = "BDlhjb8s8E2Jmmqh6P9qdA";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn client() -> ClientConfig {
    ClientConfig::builder(INSTANCE, CLIENT_ID)
        .client_secret(ClientSecret::new(SECRET))
        .redirect_uri("http://localhost/signin-callback")
        .build()
        .unwrap()
}

/// A test-only signing key.
enum Key {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
}

impl Key {
    fn rsa(der: &[u8]) -> Key {
        Key::Rsa(sig::RsaKeyPair::from_pkcs8(der).unwrap())
    }

    fn ec() -> Key {
        let rng = ring::rand::SystemRandom::new();
        Key::Ec(sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, EC, &rng).unwrap())
    }

    /// The public half as a JWK.
    fn jwk(&self, kid: Option<&str>) -> Value {
        let mut v = match self {
            Key::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
        };
        if let Some(kid) = kid {
            v["kid"] = kid.into();
        }
        v
    }

    /// A compact JWS of `claims` with `header`.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = ring::rand::SystemRandom::new();
        let signature = match (self, header["alg"].as_str().unwrap()) {
            (Key::Rsa(k), alg) => {
                let scheme: &dyn sig::RsaEncoding =
                    if alg == "PS256" { &sig::RSA_PSS_SHA256 } else { &sig::RSA_PKCS1_SHA256 };
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(scheme, &rng, input.as_bytes(), &mut out).unwrap();
                out
            }
            (Key::Ec(k), _) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn jwks(keys: &[Value]) -> JwkSet {
    JwkSet::from_json(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// Valid claims at T0 for this client, with nonce `n1`.
fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "admin", "iat": T0, "nbf": T0, "exp": T0 + 300,
        "nonce": "n1", "auth_time": T0 - 30, "sid": "s1", "name": "SPS", "email": "admin@mail.com",
        "idp": "local", "amr": ["pwd"],
    })
}

fn rs256(kid: &str) -> Value {
    json!({"alg": "RS256", "kid": kid, "typ": "JWT"})
}

/// Everything a test needs: key A (kid `a`) in the set.
struct Fixture {
    client: ClientConfig,
    a: Key,
    keys: JwkSet,
}

fn fixture() -> Fixture {
    let a = Key::rsa(RSA_A);
    let keys = jwks(&[a.jwk(Some("a"))]);
    Fixture { client: client(), a, keys }
}

impl Fixture {
    fn token(&self, claims: &Value) -> IdToken {
        IdToken::new(self.a.sign(&rs256("a"), claims))
    }

    fn verify(&self, token: &IdToken, nonce: Option<&str>, now: u64) -> Result<IdTokenClaims, IdTokenError> {
        verify_id_token(token, &self.client, &self.keys, &IdTokenExpectations::new().nonce(nonce), at(now))
    }

    fn check(&self, claims: &Value) -> Result<IdTokenClaims, IdTokenError> {
        self.verify(&self.token(claims), Some("n1"), T0 + 10)
    }
}

fn without(mut v: Value, claim: &str) -> Value {
    v.as_object_mut().unwrap().remove(claim);
    v
}

fn with(mut v: Value, claim: &str, value: Value) -> Value {
    v[claim] = value;
    v
}

#[test]
fn valid_token_yields_typed_claims() {
    let f = fixture();
    let c = f.check(&claims()).unwrap();
    assert_eq!((c.iss.as_str(), c.sub.as_str()), (ISSUER, "admin"));
    assert_eq!(c.aud, vec![CLIENT_ID.to_owned()]);
    assert_eq!((c.exp, c.iat, c.auth_time), (at(T0 + 300), at(T0), Some(at(T0 - 30))));
    assert_eq!((c.nonce.as_deref(), c.sid.as_deref()), (Some("n1"), Some("s1")));
    assert_eq!((c.name.as_deref(), c.email.as_deref()), (Some("SPS"), Some("admin@mail.com")));
    assert_eq!(c.alg, SigningAlg::Rs256);
    assert_eq!(c.raw["idp"], "local");
}

#[test]
fn d1_signature_is_verified() {
    let f = fixture();
    // Signed by key B while claiming key A's kid.
    let forged = IdToken::new(Key::rsa(RSA_B).sign(&rs256("a"), &claims()));
    assert_eq!(f.verify(&forged, Some("n1"), T0), Err(IdTokenError::BadSignature { kid: Some("a".into()) }));
    // A payload changed after signing.
    let good = f.token(&claims()).secret().to_owned();
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = with(claims(), "sub", "root".into());
    let tampered = format!("{}.{}.{}", parts[0], b64(tampered.to_string().as_bytes()), parts[2]);
    assert_eq!(
        f.verify(&IdToken::new(tampered), Some("n1"), T0),
        Err(IdTokenError::BadSignature { kid: Some("a".into()) })
    );
    // A truncated signature.
    let short = IdToken::new(format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]));
    assert!(matches!(f.verify(&short, Some("n1"), T0), Err(IdTokenError::BadSignature { .. })));
}

#[test]
fn ps256_and_es256_verify() {
    let f = fixture();
    let ps = IdToken::new(f.a.sign(&json!({"alg": "PS256", "kid": "a"}), &claims()));
    assert_eq!(f.verify(&ps, Some("n1"), T0).unwrap().alg, SigningAlg::Ps256);
    let ec = Key::ec();
    let keys = jwks(&[f.a.jwk(Some("a")), ec.jwk(Some("e"))]);
    let es = IdToken::new(ec.sign(&json!({"alg": "ES256", "kid": "e"}), &claims()));
    let got = verify_id_token(&es, &f.client, &keys, &IdTokenExpectations::new(), at(T0)).unwrap();
    assert_eq!(got.alg, SigningAlg::Es256);
    // An ES256 header naming the RSA key.
    let wrong = IdToken::new(ec.sign(&json!({"alg": "ES256", "kid": "a"}), &claims()));
    assert_eq!(
        verify_id_token(&wrong, &f.client, &keys, &IdTokenExpectations::new(), at(T0)),
        Err(IdTokenError::KeyMismatch { kid: "a".into(), alg: SigningAlg::Es256 })
    );
}

#[test]
fn d2_unsigned_and_unexpected_algorithms_are_rejected() {
    let f = fixture();
    let payload = b64(claims().to_string().as_bytes());
    let none = IdToken::new(format!("{}.{payload}.", b64(br#"{"alg":"none"}"#)));
    assert_eq!(f.verify(&none, Some("n1"), T0), Err(IdTokenError::Unsigned));
    // HS256 with the client secret as the MAC key: the classic algorithm confusion.
    let header = b64(br#"{"alg":"HS256","kid":"a"}"#);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mac = ring::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    let hs = IdToken::new(format!("{header}.{payload}.{}", b64(mac.as_ref())));
    assert_eq!(
        f.verify(&hs, Some("n1"), T0),
        Err(IdTokenError::UnexpectedAlgorithm {
            alg: "HS256".into(),
            accepted: "RS256, PS256, ES256".into()
        })
    );
    // RS256 when the client accepts ES256 only.
    let strict = client().to_builder().id_token_signing_algs(&[SigningAlg::Es256]).build().unwrap();
    assert!(matches!(
        verify_id_token(&f.token(&claims()), &strict, &f.keys, &IdTokenExpectations::new(), at(T0)),
        Err(IdTokenError::UnexpectedAlgorithm { alg, .. }) if alg == "RS256"
    ));
    let no_alg = IdToken::new(format!("{}.{payload}.AA", b64(br#"{"kid":"a"}"#)));
    assert_eq!(f.verify(&no_alg, Some("n1"), T0), Err(IdTokenError::InvalidHeader("alg")));
    let numeric_alg = IdToken::new(format!("{}.{payload}.AA", b64(br#"{"alg":256}"#)));
    assert_eq!(f.verify(&numeric_alg, Some("n1"), T0), Err(IdTokenError::InvalidHeader("alg")));
    let crit = IdToken::new(f.a.sign(&json!({"alg": "RS256", "kid": "a", "crit": ["exp"]}), &claims()));
    assert_eq!(f.verify(&crit, Some("n1"), T0), Err(IdTokenError::CriticalHeader));
}

/// The signing helper the other tests rely on produces signatures `ring` accepts, for that algorithm only.
#[test]
fn helper_signatures_verify_with_ring_directly() {
    let a = Key::rsa(RSA_A);
    let t = a.sign(&rs256("a"), &claims());
    let (input, s) = t.rsplit_once('.').unwrap();
    let key = jwks(&[a.jwk(Some("a"))]);
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
    assert!(key.keys()[0].verify(SigningAlg::Rs256, input.as_bytes(), &sig));
    assert!(!key.keys()[0].verify(SigningAlg::Ps256, input.as_bytes(), &sig));
}

#[test]
fn d3_issuer_audience_and_azp() {
    let f = fixture();
    assert_eq!(
        f.check(&with(claims(), "iss", "https://e1-dev.local/id".into())),
        Err(IdTokenError::IssuerMismatch {
            expected: ISSUER.into(),
            found: "https://e1-dev.local/id".into()
        })
    );
    assert_eq!(
        f.check(&with(claims(), "aud", "pk".into())),
        Err(IdTokenError::AudienceMismatch { client_id: CLIENT_ID.into(), found: vec!["pk".into()] })
    );
    assert!(matches!(f.check(&with(claims(), "aud", json!([]))), Err(IdTokenError::AudienceMismatch { .. })));
    let two = with(claims(), "aud", json!([CLIENT_ID, "DomainApi"]));
    assert_eq!(f.check(&two), Err(IdTokenError::AzpMissing));
    assert_eq!(
        f.check(&with(two.clone(), "azp", "other".into())),
        Err(IdTokenError::AzpMismatch { found: "other".into() })
    );
    assert_eq!(f.check(&with(two, "azp", CLIENT_ID.into())).unwrap().aud.len(), 2);
    assert_eq!(
        f.check(&with(claims(), "azp", "other".into())),
        Err(IdTokenError::AzpMismatch { found: "other".into() })
    );
    assert!(matches!(
        f.check(&with(claims(), "aud", json!([CLIENT_ID, 7]))),
        Err(IdTokenError::InvalidClaim { claim: "aud", .. })
    ));
}

#[test]
fn d4_required_claims_and_expiry() {
    let f = fixture();
    for claim in ["sub", "iat", "exp", "iss", "aud"] {
        assert_eq!(f.check(&without(claims(), claim)), Err(IdTokenError::MissingClaim(claim)), "{claim}");
    }
    assert!(matches!(
        f.check(&with(claims(), "sub", "".into())),
        Err(IdTokenError::InvalidClaim { claim: "sub", .. })
    ));
    assert!(matches!(
        f.check(&with(claims(), "exp", "soon".into())),
        Err(IdTokenError::InvalidClaim { claim: "exp", .. })
    ));
    let t = f.token(&claims());
    // exp = T0 + 300; default skew 60 s.
    assert!(f.verify(&t, Some("n1"), T0 + 359).is_ok());
    assert_eq!(
        f.verify(&t, Some("n1"), T0 + 360),
        Err(IdTokenError::Expired { exp: T0 + 300, now: T0 + 360 })
    );
    let no_skew = client().to_builder().clock_skew(Duration::ZERO).build().unwrap();
    assert_eq!(
        verify_id_token(&t, &no_skew, &f.keys, &IdTokenExpectations::new(), at(T0 + 300)),
        Err(IdTokenError::Expired { exp: T0 + 300, now: T0 + 300 })
    );
    // Issued (or valid from) beyond the skew in the future.
    assert_eq!(
        f.verify(&t, Some("n1"), T0 - 61),
        Err(IdTokenError::IssuedInFuture { iat: T0, now: T0 - 61 })
    );
    assert!(f.verify(&t, Some("n1"), T0 - 60).is_ok());
    let late = f.token(&with(claims(), "nbf", (T0 + 100).into()));
    assert_eq!(f.verify(&late, Some("n1"), T0), Err(IdTokenError::NotYetValid { nbf: T0 + 100, now: T0 }));
    // Fractional NumericDate values are accepted.
    assert!(f.check(&with(claims(), "exp", json!((T0 + 300) as f64 + 0.5))).is_ok());
}

#[test]
fn d5_nonce() {
    let f = fixture();
    assert_eq!(f.verify(&f.token(&claims()), Some("other"), T0), Err(IdTokenError::NonceMismatch));
    assert_eq!(
        f.verify(&f.token(&without(claims(), "nonce")), Some("n1"), T0),
        Err(IdTokenError::NonceMissing)
    );
    // No nonce sent: none required.
    assert!(f.verify(&f.token(&without(claims(), "nonce")), None, T0).is_ok());
}

#[test]
fn d6_no_kid() {
    let f = fixture();
    let b = Key::rsa(RSA_B);
    let by_b = IdToken::new(b.sign(&json!({"alg": "RS256"}), &claims()));
    // One key: used.
    let only_b = jwks(&[b.jwk(None)]);
    assert!(verify_id_token(&by_b, &f.client, &only_b, &IdTokenExpectations::new(), at(T0)).is_ok());
    // Several keys: each key of the right type is tried (the documented choice).
    let both = jwks(&[f.a.jwk(Some("a")), Key::ec().jwk(Some("e")), b.jwk(Some("b"))]);
    assert!(verify_id_token(&by_b, &f.client, &both, &IdTokenExpectations::new(), at(T0)).is_ok());
    // None of them signed it.
    let by_a_only = jwks(&[f.a.jwk(Some("a"))]);
    assert_eq!(
        verify_id_token(&by_b, &f.client, &by_a_only, &IdTokenExpectations::new(), at(T0)),
        Err(IdTokenError::BadSignature { kid: None })
    );
    // No key of the type at all.
    let ec_only = jwks(&[Key::ec().jwk(None)]);
    assert_eq!(
        verify_id_token(&by_b, &f.client, &ec_only, &IdTokenExpectations::new(), at(T0)),
        Err(IdTokenError::NoKey { alg: SigningAlg::Rs256 })
    );
}

#[test]
fn d7_unknown_kid_refetches_once_rate_limited() {
    let f = fixture();
    let b = Key::rsa(RSA_B);
    let rotated = IdToken::new(b.sign(&rs256("b"), &claims()));
    let mut cache = KeyCache::with_keys(jwks(&[f.a.jwk(Some("a"))]), at(T0 - 3600));
    // A known kid: no fetch.
    assert!(cache.poll_fetch(&f.client, &f.token(&claims()), at(T0)).is_none());
    // An unknown kid: one fetch.
    let request = cache.poll_fetch(&f.client, &rotated, at(T0)).expect("a refetch");
    assert_eq!(request.uri(), "https://demodb.my.erp.net/id/.well-known/openid-configuration/jwks");
    assert!(cache.poll_fetch(&f.client, &rotated, at(T0)).is_none(), "asked again before the answer");
    let rotated_set = json!({"keys": [f.a.jwk(Some("a")), b.jwk(Some("b"))]}).to_string();
    cache.handle_jwks_response(&http::Response::new(rotated_set)).unwrap();
    assert!(cache.poll_fetch(&f.client, &rotated, at(T0)).is_none());
    let expect = IdTokenExpectations::new().nonce(Some("n1"));
    assert!(verify_id_token(&rotated, &f.client, cache.keys(), &expect, at(T0)).is_ok());
    assert_eq!(cache.fetches(), 1);

    // Still unknown after the refetch: rejected, and no second fetch within the interval.
    let stranger = IdToken::new(b.sign(&rs256("c"), &claims()));
    assert!(cache.poll_fetch(&f.client, &stranger, at(T0 + 30)).is_none());
    assert_eq!(
        verify_id_token(&stranger, &f.client, cache.keys(), &expect, at(T0 + 30)),
        Err(IdTokenError::UnknownKey { kid: "c".into() })
    );
    assert!(cache.poll_fetch(&f.client, &stranger, at(T0 + 61)).is_some());
    assert_eq!(cache.fetches(), 2);
    // A failed fetch keeps the old keys and still counts for the rate limit.
    let mut down = http::Response::new(Vec::new());
    *down.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    assert!(cache.handle_jwks_response(&down).unwrap_err().is_retryable());
    assert!(cache.keys().find("b").is_some());
    assert!(cache.poll_fetch(&f.client, &stranger, at(T0 + 62)).is_none());
}

#[test]
fn d7_empty_cache_fetches_first() {
    let f = fixture();
    let mut cache = KeyCache::new();
    let t = f.token(&claims());
    assert!(cache.poll_fetch(&f.client, &t, at(T0)).is_some());
    // The adapter's request failed outright (no answer): no loop.
    assert!(cache.poll_fetch(&f.client, &t, at(T0)).is_none());
    assert_eq!(
        verify_id_token(&t, &f.client, cache.keys(), &IdTokenExpectations::new(), at(T0)),
        Err(IdTokenError::UnknownKey { kid: "a".into() })
    );
}

#[test]
fn d8_unusable_keys_are_ignored() {
    let f = fixture();
    let keys = jwks(&[
        json!({"kty": "oct", "kid": "a", "k": b64(SECRET.as_bytes())}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "x", "x": b64(&[0; 32])}),
        json!({"kty": "EC", "crv": "P-521", "kid": "y", "x": "AA", "y": "AA"}),
        with(Key::rsa(RSA_B).jwk(Some("a")), "use", "enc".into()),
        f.a.jwk(Some("a")),
    ]);
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.ignored().len(), 4);
    let expect = IdTokenExpectations::new().nonce(Some("n1"));
    assert!(verify_id_token(&f.token(&claims()), &f.client, &keys, &expect, at(T0)).is_ok());
}

/// The seed's claims, re-signed with test key A under the seed's kid.
fn seed_claims() -> Value {
    let payload = SEED_ID_TOKEN.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

#[test]
fn d9_the_seed_id_token_is_rejected_for_the_precise_reason() {
    let f = fixture();
    let seed = IdToken::new(SEED_ID_TOKEN);
    let expect = IdTokenExpectations::new().nonce(Some("abc"));
    // Checks run in the documented order: the key comes before any claim. ERP.net's key is not ours.
    assert_eq!(
        verify_id_token(&seed, &f.client, &f.keys, &expect, at(T0)),
        Err(IdTokenError::UnknownKey { kid: SEED_KID.into() })
    );
    // Even a set that has a key under the seed's kid does not make the seed's signature valid.
    let impostor = jwks(&[f.a.jwk(Some(SEED_KID))]);
    assert_eq!(
        verify_id_token(&seed, &f.client, &impostor, &expect, at(T0)),
        Err(IdTokenError::BadSignature { kid: Some(SEED_KID.into()) })
    );
    // The same claims with a valid signature: each illustrative value is rejected in turn.
    let sign = |c: &Value| IdToken::new(f.a.sign(&rs256(SEED_KID), c));
    let verify = |c: &Value, now: u64| verify_id_token(&sign(c), &f.client, &impostor, &expect, at(now));
    assert_eq!(
        verify(&seed_claims(), T0),
        Err(IdTokenError::IssuerMismatch {
            expected: ISSUER.into(),
            found: "https://e1-dev.local/id".into()
        })
    );
    let c = with(seed_claims(), "iss", ISSUER.into());
    assert_eq!(
        verify(&c, T0),
        Err(IdTokenError::AudienceMismatch { client_id: CLIENT_ID.into(), found: vec!["pk".into()] })
    );
    let c = with(c, "aud", CLIENT_ID.into());
    // Long expired by now (2026): exp was T0 + 300.
    let now_2026 = 1_780_000_000;
    assert_eq!(verify(&c, now_2026), Err(IdTokenError::Expired { exp: T0 + 300, now: now_2026 }));
    // The seed's at_hash does not match the seed's access token either (the document is illustrative).
    let seed_access_token = AccessToken::new(SEED_ACCESS_TOKEN);
    let with_at = IdTokenExpectations::new().nonce(Some("abc")).access_token(&seed_access_token);
    assert_eq!(
        verify_id_token(&sign(&c), &f.client, &impostor, &with_at, at(T0)),
        Err(IdTokenError::AtHashMismatch)
    );
    // Re-signed with iss, aud, exp (and at_hash) fixed: it passes.
    let fixed = with(with(c, "exp", (now_2026 + 300).into()), "at_hash", half_hash(SEED_ACCESS_TOKEN).into());
    let claims = verify_id_token(&sign(&fixed), &f.client, &impostor, &with_at, at(now_2026)).unwrap();
    assert_eq!((claims.sub.as_str(), claims.sid.as_deref()), ("admin", Some("uCqbfB88zX1u39n44DpV1Q")));
    assert_eq!(claims.auth_time, Some(at(1_655_027_719)));
}

/// The seed's first access token (opaque to the client; only its `at_hash` is computed).
const SEED_ACCESS_TOKEN: &str = "eycccGciOiJSUzI1NiIsImtpZCI6IkJEbGhqYjhzOEUySm1tcWg2UDlxZEEiLCJ0eXAiOiJhdCtqd3QifQ.eyJuYmYiOjE2NTUwNTc3MjQsImV4cCI6MTY1NTA2MTMyNCwiaXNzIjoiaHR0cHM6Ly9lMS1kZXYubG9jYWwvaWQiLCJhdWQiOiJEb21haW5BcGkiLCJjbGllbnRfaWQiOiJwayIsInN1YiI6ImFkbWluIiwiYXV0aF90aW1lIjoxNjU1MDI3NzE5LCJpZHAiOiJsb2NhbCIsImlkIjoiOWRhNjQ4MzktYThkMC00OTFkLWFlYmItNGQxOGZhNDJiMDE0IiwibmFtZSI6IlNQUyIsImVtYWlsIjoiYWRtaW5AbWFpbC5jb20iLCJ1c2VyX3R5cGUiOiJJbnRlcm5hbFVzZXIiLCJpc19hZG1pbi1ee6InRydWUiLCJlbWFpbF92ZXJpZmllZCI6ImZhb2NlIiwiZGIiOiJFMV9ERVYiLCJsb2NhbGUiOiJieyIsImp0aSI6Il9sdEJMS3djSlNLbUFhM25mbFpwNFEiLCJzaWQiOiJ1Q3FiZds2898pYMXUzOW40NqRwVjFRIiwic2NvcGUiOlsib3BlbmlkIiwicHJvZmlsZSIsIww1kRvbWFpbkFwaSIsIm9mZmxpbmVfYWNjZXNzIl0sImFtciI6WyJwd2QiXX0.AzHxj_iBM3bfcOtdaSNHNbPUHGCf0JAo7fV1fo9JT-rqCHjc0t8VEa1qO5R2jemvs7vDBf6GARxgul3pAy7YQpmqzzruswoLDkDdUMX1LXzHLgp0ppYoNa1A_M_O4UTXCe7xGBRHSyRRQLGsTTGMkv1pK0E3Xn3rAfOPvo4wfrQ8QabVcdA7mupY4qF01tIHPv_7NGS2SyPfCVdAYcxUy8HpQ-RdoXMaVWVz_JhXgMNZ9_nFTxedPGakZJMDjnvYss_GKjucbeYdZM9jSrqEmXDw6s8A3o1jKOyurzIBzug55Dxee8UBWepcO5S08GPguBFotamUvStMdDY0KkmZYvw";

#[test]
fn at_hash_and_c_hash() {
    let f = fixture();
    let access = AccessToken::new("at-1");
    let code = AuthorizationCode::new("g0ZGZmNjVmOWI");
    let c = with(
        with(claims(), "at_hash", half_hash("at-1").into()),
        "c_hash",
        half_hash("g0ZGZmNjVmOWI").into(),
    );
    let t = f.token(&c);
    let ok = IdTokenExpectations::new().access_token(&access).code(&code);
    assert!(verify_id_token(&t, &f.client, &f.keys, &ok, at(T0)).is_ok());
    let other_at = AccessToken::new("at-2");
    assert_eq!(
        verify_id_token(&t, &f.client, &f.keys, &IdTokenExpectations::new().access_token(&other_at), at(T0)),
        Err(IdTokenError::AtHashMismatch)
    );
    let other_code = AuthorizationCode::new("other");
    assert_eq!(
        verify_id_token(&t, &f.client, &f.keys, &IdTokenExpectations::new().code(&other_code), at(T0)),
        Err(IdTokenError::CHashMismatch)
    );
    // RFC-style vector: OpenID Connect Core's example access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
    // has at_hash "77QmUPtjPfzWtF2AnpK9RQ".
    assert_eq!(half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
}

/// A hybrid login's callback carrying `id_token`.
fn hybrid_exchange(f: &Fixture, id_token: Option<&str>) -> CodeExchange {
    let mut rng = SeededRandom::new(7);
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .response_mode(ResponseMode::FormPost)
        .nonce("n1")
        .state("xyz")
        .build(&f.client, &mut rng)
        .unwrap();
    let mut body = "code=g0ZGZmNjVmOWI&state=xyz".to_owned();
    if let Some(t) = id_token {
        body.push_str("&id_token=");
        body.push_str(t);
    }
    pending.handle_callback(&f.client, Callback::FormPost(body.as_bytes())).unwrap()
}

fn exchange_again(f: &Fixture, t: &IdToken) -> Option<IdTokenClaims> {
    let mut exchange = hybrid_exchange(f, Some(t.secret()));
    exchange.verify_front_channel(&f.client, &f.keys, at(T0)).unwrap();
    assert!(exchange.front_channel_id_token().is_none(), "no longer waiting for a check");
    exchange.verify_front_channel(&f.client, &f.keys, at(T0)).unwrap()
}

#[test]
fn b8_a_hybrid_callback_without_id_token_is_refused() {
    let f = fixture();
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .nonce("n1")
        .state("xyz")
        .build(&f.client, &mut SeededRandom::new(7))
        .unwrap();
    let e = pending.handle_callback(&f.client, Callback::Query("code=g0ZGZmNjVmOWI&state=xyz")).unwrap_err();
    assert_eq!(e, CallbackError::IdTokenMissing);
}

#[test]
fn b7_front_channel_id_token_is_verified_before_the_exchange() {
    let f = fixture();
    let good = with(claims(), "c_hash", half_hash("g0ZGZmNjVmOWI").into());
    let t = f.token(&good);
    let mut exchange = hybrid_exchange(&f, Some(t.secret()));
    let claims_ok = exchange.verify_front_channel(&f.client, &f.keys, at(T0)).unwrap().unwrap();
    assert_eq!(claims_ok.sub, "admin");
    // Only now is the code exchanged.
    let (request, _) = exchange.into_request(&f.client);
    assert_eq!(request.uri(), "https://demodb.my.erp.net/id/connect/token");

    let reject = |c: &Value| {
        let t = f.token(c);
        hybrid_exchange(&f, Some(t.secret())).verify_front_channel(&f.client, &f.keys, at(T0)).unwrap_err()
    };
    assert_eq!(
        reject(&with(claims(), "c_hash", half_hash("another-code").into())),
        IdTokenError::CHashMismatch
    );
    assert_eq!(reject(&claims()), IdTokenError::MissingClaim("c_hash"));
    assert_eq!(reject(&with(good.clone(), "nonce", "replayed".into())), IdTokenError::NonceMismatch);
    let forged = Key::rsa(RSA_B).sign(&rs256("a"), &good);
    assert_eq!(
        hybrid_exchange(&f, Some(&forged)).verify_front_channel(&f.client, &f.keys, at(T0)),
        Err(IdTokenError::BadSignature { kid: Some("a".into()) })
    );
    // A verified front-channel token stays verified: asking again gives its claims, no second check.
    assert_eq!(exchange_again(&f, &t).map(|c| c.sub), Some("admin".to_owned()));
}

fn login(f: &Fixture, token_response: Value, scope: &str) -> Result<Login, TokenError> {
    let mut rng = SeededRandom::new(3);
    let pending =
        AuthorizationRequest::new().scope(scope).nonce("n1").state("s").build(&f.client, &mut rng).unwrap();
    let exchange = pending.handle_callback(&f.client, Callback::Query("code=c1&state=s")).unwrap();
    let (_, waiting) = exchange.into_request(&f.client);
    waiting.handle_response(&http::Response::new(token_response.to_string().into_bytes()), at(T0))
}

#[test]
fn login_verifies_its_id_token_with_nonce_and_at_hash() {
    let f = fixture();
    let c = with(claims(), "at_hash", half_hash("at1").into());
    let body = |id: &IdToken| json!({"access_token": "at1", "token_type": "Bearer", "expires_in": 3600, "id_token": id.secret()});
    let l = login(&f, body(&f.token(&c)), "openid profile").unwrap();
    let verified = l.verify(&f.client, &f.keys, at(T0)).unwrap();
    assert_eq!(verified.claims.map(|c| c.sub).as_deref(), Some("admin"));
    assert_eq!(verified.tokens.access_token.secret(), "at1");
    let l = login(&f, body(&f.token(&with(c.clone(), "nonce", "n2".into()))), "openid").unwrap();
    assert_eq!(l.verify(&f.client, &f.keys, at(T0)).map(|_| ()), Err(IdTokenError::NonceMismatch));
    let l = login(&f, body(&f.token(&with(c, "at_hash", half_hash("at9").into()))), "openid").unwrap();
    assert_eq!(l.verify(&f.client, &f.keys, at(T0)).map(|_| ()), Err(IdTokenError::AtHashMismatch));
    // No `openid`, no ID token: nothing to verify, the tokens come out without claims.
    let l = login(&f, json!({"access_token": "at1", "token_type": "Bearer"}), "DomainApi").unwrap();
    assert!(l.verify(&f.client, &f.keys, at(T0)).unwrap().claims.is_none());
}

#[test]
fn e4_refreshed_id_token_is_verified_and_keeps_iss_sub_aud() {
    let f = fixture();
    let original = f.check(&claims()).unwrap();
    let later = T0 + 3600;
    let renewed = with(with(without(claims(), "nonce"), "iat", later.into()), "exp", (later + 300).into());
    let renewed = with(renewed, "nbf", later.into());
    let got = original.verify_refreshed(&f.token(&renewed), &f.client, &f.keys, None, at(later)).unwrap();
    assert_eq!(got.iat, at(later));
    let changed = |claim: &str, v: Value| {
        original.verify_refreshed(
            &f.token(&with(renewed.clone(), claim, v)),
            &f.client,
            &f.keys,
            None,
            at(later),
        )
    };
    assert_eq!(changed("sub", "root".into()), Err(IdTokenError::Changed { claim: "sub" }));
    assert_eq!(changed("auth_time", (later - 5).into()), Err(IdTokenError::Changed { claim: "auth_time" }));
    // Verified like the first before being compared.
    assert_eq!(changed("aud", json!([CLIENT_ID, "x"])), Err(IdTokenError::AzpMissing));
    let aud2 = with(with(renewed.clone(), "aud", json!([CLIENT_ID, "x"])), "azp", CLIENT_ID.into());
    assert_eq!(
        original.verify_refreshed(&f.token(&aud2), &f.client, &f.keys, None, at(later)),
        Err(IdTokenError::Changed { claim: "aud" })
    );
    let forged = IdToken::new(Key::rsa(RSA_B).sign(&rs256("a"), &renewed));
    assert!(matches!(
        original.verify_refreshed(&forged, &f.client, &f.keys, None, at(later)),
        Err(IdTokenError::BadSignature { .. })
    ));
    let at2 = AccessToken::new("at2");
    let with_hash = with(renewed, "at_hash", half_hash("at2").into());
    assert!(
        original.verify_refreshed(&f.token(&with_hash), &f.client, &f.keys, Some(&at2), at(later)).is_ok()
    );
}

#[test]
fn errors_never_contain_the_token() {
    let f = fixture();
    let t = f.token(&with(claims(), "iss", "https://e1-dev.local/id".into()));
    let signature = t.secret().rsplit('.').next().unwrap().to_owned();
    let payload = t.secret().split('.').nth(1).unwrap().to_owned();
    let cases = [
        f.verify(&t, Some("n1"), T0).unwrap_err(),
        f.verify(&t, Some("secret-nonce"), T0 + 100_000).unwrap_err(),
        f.verify(&IdToken::new(format!("{}.x", t.secret())), None, T0).unwrap_err(),
        verify_id_token(&t, &f.client, &JwkSet::default(), &IdTokenExpectations::new(), at(T0)).unwrap_err(),
        f.verify(&f.token(&with(claims(), "nonce", "theirs".into())), Some("mine"), T0).unwrap_err(),
    ];
    for e in cases {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(&signature) && !shown.contains(&payload), "{shown}");
        assert!(
            !shown.contains("mine") && !shown.contains("theirs") && !shown.contains("secret-nonce"),
            "{shown}"
        );
    }
}

#[test]
fn malformed_tokens_are_typed_errors() {
    let f = fixture();
    for (token, want) in [
        ("a.b", IdTokenError::Malformed(id_token::JwtFormatError::Segments(2))),
        ("a.b.c.d", IdTokenError::Malformed(id_token::JwtFormatError::Segments(4))),
        ("!!.e30.AA", IdTokenError::Malformed(id_token::JwtFormatError::Base64("header"))),
        ("W10.e30.AA", IdTokenError::Malformed(id_token::JwtFormatError::Json("header"))),
        ("", IdTokenError::Malformed(id_token::JwtFormatError::Segments(1))),
    ] {
        assert_eq!(f.verify(&IdToken::new(token), None, T0), Err(want), "{token}");
    }
}

#[test]
fn h5_discovery_with_another_issuer_is_rejected() {
    let c = client();
    let doc = json!({
        "issuer": "https://e1-dev.local/id",
        "authorization_endpoint": "https://e1-dev.local/id/connect/authorize",
        "token_endpoint": "https://e1-dev.local/id/connect/token",
        "jwks_uri": "https://e1-dev.local/id/.well-known/openid-configuration/jwks",
    });
    assert_eq!(
        ProviderMetadata::parse(&http::Response::new(doc.to_string()), c.issuer()),
        Err(DiscoveryError::IssuerMismatch {
            expected: ISSUER.into(),
            found: "https://e1-dev.local/id".into()
        })
    );
    let mut ours = doc.clone();
    for v in ours.as_object_mut().unwrap().values_mut() {
        *v = v.as_str().unwrap().replace("https://e1-dev.local", INSTANCE).into();
    }
    let meta = ProviderMetadata::parse(&http::Response::new(ours.to_string()), c.issuer()).unwrap();
    let configured = c.with_provider(&meta).unwrap();
    assert_eq!(configured.issuer(), ISSUER);
    assert!(!configured.iss_parameter_supported());
    // Optional endpoints the document does not list are absent, not guessed.
    assert!(matches!(
        configured.revocation_request(&RefreshToken::new("r")),
        Err(ConfigError::NoEndpoint { .. })
    ));
}

#[test]
fn discovery_answers_only_with_200() {
    // OpenID Connect Discovery §4.2: a successful answer is `200 OK`. A 404 (a wrong instance URL), a 204
    // or a 201 is an error, never "no document, use the defaults".
    let c = client();
    let doc = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{INSTANCE}/id/connect/authorize"),
        "token_endpoint": format!("{INSTANCE}/id/connect/token"),
        "jwks_uri": format!("{INSTANCE}/id/.well-known/openid-configuration/jwks"),
    })
    .to_string();
    let answer = |status: u16| {
        let mut r = http::Response::new(doc.clone());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        ProviderMetadata::parse(&r, c.issuer())
    };
    assert!(answer(200).is_ok());
    for status in [201, 203, 204, 404, 500] {
        assert_eq!(answer(status), Err(DiscoveryError::Http { status, length: doc.len() }), "{status}");
    }
    assert_eq!(answer(302), Err(DiscoveryError::Redirect { status: 302 }));
}

#[test]
fn g_revocation_and_end_session() {
    let c = client();
    let r = c.revocation_request(&RefreshToken::new("6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw")).unwrap();
    assert_eq!(r.method(), http::Method::POST);
    assert_eq!(r.uri(), "https://demodb.my.erp.net/id/connect/revocation");
    assert_eq!(
        std::str::from_utf8(r.body()).unwrap(),
        "client_id=my.trusted.app%2Ffirst&client_secret=my-secret&token=6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw&token_type_hint=refresh_token"
    );
    assert_eq!(parse_revocation_response(&http::Response::new("anything")), Ok(()));
    let mut busy = http::Response::new("");
    *busy.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    assert!(parse_revocation_response(&busy).unwrap_err().is_retryable());
    let hint = IdToken::new("h.p.s");
    let url = c
        .end_session_url(&EndSession {
            id_token_hint: Some(&hint),
            post_logout_redirect_uri: Some("http://localhost/signout-callback"),
            state: Some("xyz"),
        })
        .unwrap();
    assert_eq!(
        url,
        "https://demodb.my.erp.net/id/connect/endsession?id_token_hint=h.p.s&post_logout_redirect_uri=http%3A%2F%2Flocalhost%2Fsignout-callback&state=xyz"
    );
}

#[test]
fn userinfo_sub_must_match_the_id_token() {
    let f = fixture();
    let claims = f.check(&claims()).unwrap();
    let request = f.client.userinfo_request(&AccessToken::new("at1")).unwrap();
    assert_eq!(request.headers()["authorization"], "Bearer at1");
    let answer = http::Response::new(r#"{"sub":"admin","name":"SPS"}"#);
    assert_eq!(parse_userinfo_response(&answer, &claims.sub).unwrap().name.as_deref(), Some("SPS"));
    let other = http::Response::new(r#"{"sub":"someone-else"}"#);
    assert!(matches!(
        parse_userinfo_response(&other, &claims.sub),
        Err(UserInfoError::SubjectMismatch { .. })
    ));
}

/// Issue 13: a `kid` is compared whole, however long. Shortened when the JWKS was read, a kid over 200
/// characters never matched its token's, and the key could not be used.
#[test]
fn a_kid_of_300_characters_verifies() {
    let f = fixture();
    let kid: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let keys = jwks(&[f.a.jwk(Some(&kid))]);
    assert_eq!(keys.keys()[0].kid(), Some(kid.as_str()), "stored whole");
    assert!(keys.find(&kid).is_some());
    let token = IdToken::new(f.a.sign(&rs256(&kid), &claims()));
    let expect = IdTokenExpectations::new().nonce(Some("n1"));
    let verified = verify_id_token(&token, &f.client, &keys, &expect, at(T0)).unwrap();
    assert_eq!(verified.sub, "admin");
    // Known: the cache asks for no refetch.
    let mut cache = KeyCache::with_keys(keys.clone(), at(T0 - 3600));
    assert!(cache.poll_fetch(&f.client, &token, at(T0)).is_none());

    // Another kid sharing the first 250 characters is another key: unknown, and named shortened.
    let mut other = kid.clone();
    other.replace_range(250..251, "Z");
    let token = IdToken::new(f.a.sign(&rs256(&other), &claims()));
    let e = verify_id_token(&token, &f.client, &keys, &expect, at(T0)).unwrap_err();
    let IdTokenError::UnknownKey { kid: named } = &e else { panic!("{e:?}") };
    assert_eq!(named.chars().count(), 201, "200 characters and an ellipsis");
    assert!(e.to_string().len() < 300, "{e}");
    // A key under a kid with control characters is found by that exact kid.
    let odd = "k\x1b[2J\u{202e}";
    let keys = jwks(&[f.a.jwk(Some(odd))]);
    let token = IdToken::new(f.a.sign(&rs256(odd), &claims()));
    assert!(verify_id_token(&token, &f.client, &keys, &expect, at(T0)).is_ok());
}

/// Issue 13: what an ID token says (`iss`, `aud`, `azp`, `kid`, `alg`) reaches an error message escaped.
#[test]
fn id_token_errors_show_the_tokens_text_escaped() {
    const HOSTILE: &str = "\x1b[2J\x1b[1;1H  Logged in as root\x1b]0;pwned\x07\u{202e}";
    let f = fixture();
    let safe = |e: &IdTokenError| {
        for shown in [e.to_string(), Error::IdToken(e.clone()).to_string()] {
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() || ('\u{2066}'..='\u{2069}').contains(&c) || c == '\u{202e}'),
                "{shown:?}"
            );
            assert!(shown.contains(r"\u{1b}[2J"), "{shown:?}");
        }
    };
    safe(&f.check(&with(claims(), "iss", HOSTILE.into())).unwrap_err());
    safe(&f.check(&with(claims(), "aud", json!([HOSTILE, "x"]))).unwrap_err());
    safe(&f.check(&with(with(claims(), "aud", json!([CLIENT_ID, "x"])), "azp", HOSTILE.into())).unwrap_err());
    let expect = IdTokenExpectations::new();
    let unknown = IdToken::new(f.a.sign(&rs256(HOSTILE), &claims()));
    safe(&verify_id_token(&unknown, &f.client, &f.keys, &expect, at(T0)).unwrap_err());
    let forged = IdToken::new(Key::rsa(RSA_B).sign(&rs256(HOSTILE), &claims()));
    let keys = jwks(&[f.a.jwk(Some(HOSTILE))]);
    let e = verify_id_token(&forged, &f.client, &keys, &expect, at(T0)).unwrap_err();
    assert!(matches!(e, IdTokenError::BadSignature { .. }), "{e:?}");
    safe(&e);
    let payload = b64(claims().to_string().as_bytes());
    let header = b64(json!({"alg": format!("\x1b[2J{HOSTILE}")}).to_string().as_bytes());
    let e = f.verify(&IdToken::new(format!("{header}.{payload}.AA")), None, T0).unwrap_err();
    assert!(matches!(e, IdTokenError::UnexpectedAlgorithm { .. }), "{e:?}");
    safe(&e);
}

/// Issue 13: the `Debug` of every value of a login that holds a secret (the client secret, a state, a
/// nonce, a code, a PKCE verifier, tokens, a request carrying them) shows none of them.
#[test]
fn debug_never_shows_a_secret() {
    let f = fixture();
    let client = f.client.to_builder().client_secret(ClientSecret::new("client-secret-S1")).build().unwrap();
    let request = AuthorizationRequest::new().state("state-S2").nonce("nonce-S3");
    let pending = request.clone().build(&client, &mut SeededRandom::new(5)).unwrap();
    let mut secrets = vec!["client-secret-S1", "state-S2", "nonce-S3", "code-S4"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let mut shown = vec![format!("{request:?}"), format!("{client:?}"), format!("{pending:?}")];
    shown.push(format!("{:?}", IdTokenExpectations::new().nonce(pending.nonce())));

    let exchange = pending.handle_callback(&client, Callback::Query("code=code-S4&state=state-S2")).unwrap();
    shown.push(format!("{exchange:?}"));
    let (token_request, waiting) = exchange.into_request(&client);
    let body = String::from_utf8(token_request.body().clone()).unwrap();
    let verifier = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "code_verifier")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(body.contains("client-secret-S1") && body.contains("code-S4"), "{body}");
    secrets.push(verifier);
    shown.push(format!("{waiting:?}"));
    shown.push(format!("{:?}", Step::<()>::Send { request: token_request, target: Target::IdentityServer }));

    let id_token = f.token(&with(claims(), "nonce", "nonce-S3".into()));
    let answer = http::Response::new(
        json!({"access_token": "access-S5", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "refresh-S6", "id_token": id_token.secret()})
        .to_string()
        .into_bytes(),
    );
    secrets.extend(["access-S5", "refresh-S6"].map(String::from));
    secrets.extend(id_token.secret().split('.').map(String::from));
    let login = waiting.handle_response(&answer, at(T0)).unwrap();
    shown.push(format!("{login:?}"));
    shown.push(format!("{:?}", id_token::UnverifiedClaims::decode(&id_token).unwrap()));
    let verified = login.verify(&client, &f.keys, at(T0)).unwrap();
    assert_eq!(verified.claims.as_ref().and_then(|c| c.nonce.as_deref()), Some("nonce-S3"));
    shown.push(format!("{verified:?}"));
    shown.push(format!("{:?}", Input::Response(answer)));
    shown.push(format!("{:?}", Step::<()>::SaveStore(verified.tokens.clone())));

    let refresh = verified.tokens.refresh_token.clone().unwrap();
    shown.push(format!("{:?}", Grant::RefreshToken(&refresh)));
    shown.push(format!("{:?}", Keys::Fetch(client.token_request(Grant::RefreshToken(&refresh)))));
    let mut manager = TokenManager::new(client.clone(), Some(verified.tokens), ManagerOptions::default());
    let mut call = manager.begin_call();
    assert!(matches!(manager.access_token(&mut call, at(T0 + 7200)), Access::Wait));
    shown.push(format!("{manager:?}"));
    shown.push(format!("{:?}", manager.poll_output()));
    shown.push(format!("{:?}", KeyCache::with_keys(f.keys.clone(), at(T0))));

    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret:?} is shown in {text}");
        }
    }
    assert!(shown.iter().any(|s| s.contains("admin")), "the claims are shown, only not the nonce");
}
