//! OpenID Connect steps (catalogue B7, D, G, H5): signing test ID tokens, publishing test keys, discovery,
//! ID token verification with JWKS fetches on the wire, revocation and the end-session URL.
//!
//! The cases stay data: a `sign` step names its claims and a test-only key of `fixtures/keys/`, and the
//! harness signs; a `jwk` step binds a key's public half as JSON for the JWKS answers the cases script.

use super::driver::{Driver, Harness, Wire};
use super::{TokensExpect, check_store, check_tokens, make_wire, outcome_error, parse_request};
use base64::Engine as _;
use ring::signature::{self as sig, KeyPair as _};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The OpenID Connect steps, `do = ...` like the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum OidcStep {
    /// Signs a JWT and binds it to `${name}`.
    Sign {
        /// The name to bind.
        name: String,
        /// A test key of `fixtures/keys/` (`rsa-a`, `rsa-b`, `ec-p256`); absent with `alg = "none"` or
        /// `hmac_secret`.
        key: Option<String>,
        /// The header's `kid`; absent means no `kid`.
        kid: Option<String>,
        /// The header's `alg`: RS256 (default for RSA keys), PS256, ES256 (default for EC), HS256 (with
        /// `hmac_secret`), or `none` (an empty signature).
        alg: Option<String>,
        /// HS256's key.
        hmac_secret: Option<String>,
        /// More header members.
        #[serde(default)]
        header: toml::Table,
        /// The claims.
        claims: toml::Table,
        /// Adds `at_hash` of this access token.
        at_hash_of: Option<String>,
        /// Adds `c_hash` of this code.
        c_hash_of: Option<String>,
    },
    /// Binds `${name}` to a test key's public JWK (JSON).
    Jwk {
        /// The name to bind.
        name: String,
        /// The test key.
        key: String,
        /// Its `kid`, if any.
        kid: Option<String>,
        /// More members (`use`, `alg`...).
        #[serde(default)]
        extra: toml::Table,
    },
    /// Fetches the discovery document; on success the client uses its endpoints and issuer.
    Discovery {
        /// The exchange on the wire.
        #[serde(default)]
        wire: Vec<super::case::Wire>,
        /// The expected error (Debug).
        error: Option<String>,
        /// After success: whether the client now requires RFC 9207 `iss` in callbacks.
        iss_parameter_supported: Option<bool>,
    },
    /// Verifies an ID token (`token`): the token endpoint answers a login with it, and the login verifies
    /// it, fetching the JWKS as the key cache asks (the cache lives across steps). Absent: the last
    /// login's ID token, verified by its `exchange` step (nothing is sent).
    VerifyIdToken {
        /// The token; absent: the last login's ID token, with its nonce and access token.
        token: Option<String>,
        /// The nonce sent.
        nonce: Option<String>,
        /// The access token issued with it (`at_hash`).
        access_token: Option<String>,
        /// JWKS fetches on the wire.
        #[serde(default)]
        wire: Vec<super::case::Wire>,
        /// The expected error (Debug).
        error: Option<String>,
        /// After success: the `sub`.
        sub: Option<String>,
    },
    /// Verifies the hybrid callback's front-channel ID token before the exchange (catalogue B7); a
    /// rejected token ends the login: its code is never exchanged.
    VerifyFrontChannel {
        /// Which login.
        #[serde(default = "main")]
        login: String,
        /// JWKS fetches on the wire.
        #[serde(default)]
        wire: Vec<super::case::Wire>,
        /// The expected error (Debug).
        error: Option<String>,
    },
    /// Logout: revokes the held refresh token (catalogue G1/G2), then forgets the tokens whatever the
    /// answer.
    Revoke {
        /// The exchange on the wire.
        #[serde(default)]
        wire: Vec<super::case::Wire>,
        /// The expected error (Debug).
        error: Option<String>,
        /// Whether that error is retryable.
        retryable: Option<bool>,
        /// What the store was asked to do.
        store: Option<Vec<String>>,
        /// The tokens after the step.
        tokens: Option<TokensExpect>,
    },
    /// The end-session URL with the held ID token as `id_token_hint` (catalogue G3).
    EndSession {
        /// `post_logout_redirect_uri`.
        post_logout_redirect_uri: Option<String>,
        /// `state`.
        state: Option<String>,
        /// The browser's request (method, path, decoded query).
        request: Option<String>,
        /// The expected error (Debug).
        error: Option<String>,
    },
}

fn main() -> String {
    "main".to_owned()
}

/// What an ID token must match besides the client.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The nonce sent.
    pub nonce: Option<String>,
    /// The access token (`at_hash`).
    pub access_token: Option<String>,
}

/// The OpenID Connect operations a client under test offers.
pub trait OidcDriver {
    /// Fetches and applies the discovery document over `wire`.
    fn discovery(&mut self, wire: &Wire) -> Harness<Result<(), String>>;
    /// Whether the client requires RFC 9207 `iss` in callbacks.
    fn iss_parameter_supported(&self) -> Harness<bool>;
    /// Verifies `token` (or the last login's) at the current time; the `sub`, or the error.
    fn verify_id_token(
        &mut self,
        token: Option<&str>,
        expect: &Expect,
        wire: &Wire,
    ) -> Harness<Result<String, String>>;
    /// Verifies login `login`'s front-channel ID token; a rejection ends the login.
    fn verify_front_channel(&mut self, login: &str, wire: &Wire) -> Harness<Result<(), String>>;
    /// Revokes the held refresh token, then forgets the tokens; the error and whether it is retryable.
    fn revoke(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>>;
    /// The end-session URL.
    fn end_session(
        &mut self,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Harness<Result<String, String>>;
}

/// Runs one OpenID Connect step.
pub fn run_step(
    step: OidcStep,
    driver: &mut dyn Driver,
    vars: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    match step {
        OidcStep::Sign { name, key, kid, alg, hmac_secret, header, claims, at_hash_of, c_hash_of } => {
            let mut claims = serde_json::to_value(claims).map_err(|e| format!("claims: {e}"))?;
            if let Some(at) = at_hash_of {
                claims["at_hash"] = half_hash(&at).into();
            }
            if let Some(c) = c_hash_of {
                claims["c_hash"] = half_hash(&c).into();
            }
            let token = sign(
                key.as_deref(),
                kid.as_deref(),
                alg.as_deref(),
                hmac_secret.as_deref(),
                &header,
                &claims,
            )?;
            vars.insert(name, token);
            Ok(())
        }
        OidcStep::Jwk { name, key, kid, extra } => {
            let mut jwk = TestKey::load(&key)?.jwk();
            if let Some(kid) = kid {
                jwk["kid"] = kid.into();
            }
            for (k, v) in extra {
                jwk[k] = serde_json::to_value(v).map_err(|e| format!("extra: {e}"))?;
            }
            vars.insert(name, jwk.to_string());
            Ok(())
        }
        OidcStep::Discovery { wire, error, iss_parameter_supported } => {
            let wire = make_wire(&wire, vars, driver)?;
            let d = oidc(driver)?;
            let result = d.discovery(&wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(()), None) => {}
                (Ok(()), Some(e)) => return Err(format!("expected the error {e}, discovery succeeded")),
                (Err(actual), expected) => return outcome_error(&actual, expected.as_deref()),
            }
            if let Some(want) = iss_parameter_supported {
                let got = oidc(driver)?.iss_parameter_supported()?;
                if got != want {
                    return Err(format!("iss_parameter_supported is {got}, expected {want}"));
                }
            }
            Ok(())
        }
        OidcStep::VerifyIdToken { token, nonce, access_token, wire, error, sub } => {
            let wire = make_wire(&wire, vars, driver)?;
            let d = oidc(driver)?;
            let result = d.verify_id_token(token.as_deref(), &Expect { nonce, access_token }, &wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(got), None) => match sub {
                    Some(want) if want != got => {
                        Err(format!("the verified sub is `{got}`, expected `{want}`"))
                    }
                    _ => Ok(()),
                },
                (Ok(_), Some(e)) => Err(format!("expected the error {e}, the ID token was accepted")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref()),
            }
        }
        OidcStep::VerifyFrontChannel { login, wire, error } => {
            let wire = make_wire(&wire, vars, driver)?;
            let d = oidc(driver)?;
            let result = d.verify_front_channel(&login, &wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(e)) => Err(format!("expected the error {e}, the ID token was accepted")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref()),
            }
        }
        OidcStep::Revoke { wire, error, retryable, store, tokens } => {
            let wire = make_wire(&wire, vars, driver)?;
            let d = oidc(driver)?;
            let result = d.revoke(&wire)?;
            *vars = wire.finish()?;
            match (result, error) {
                (Ok(()), None) => {}
                (Ok(()), Some(e)) => return Err(format!("expected the error {e}, the revocation succeeded")),
                (Err((actual, r)), expected) => {
                    outcome_error(&actual, expected.as_deref())?;
                    if retryable.is_some_and(|want| want != r) {
                        return Err(format!("retryable is {r}"));
                    }
                }
            }
            check_store(driver, store.as_deref())?;
            check_tokens(driver, tokens.as_ref())
        }
        OidcStep::EndSession { post_logout_redirect_uri, state, request, error } => {
            let d = oidc(driver)?;
            match (d.end_session(post_logout_redirect_uri.as_deref(), state.as_deref())?, error) {
                (Ok(url), None) => {
                    let Some(expected) = request else {
                        return Err("an end_session step checks a request or an error".to_owned());
                    };
                    let expected = parse_request(&expected)?;
                    let actual = super::message::from_url(&url)?;
                    super::message::compare(&expected, &actual, &[], vars)
                }
                (Ok(_), Some(e)) => Err(format!("expected the error {e}, the URL was built")),
                (Err(actual), expected) => outcome_error(&actual, expected.as_deref()),
            }
        }
    }
}

fn oidc(driver: &mut dyn Driver) -> Harness<&mut dyn OidcDriver> {
    driver.oidc().ok_or_else(|| "this driver does not run OpenID Connect steps".to_owned())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `at_hash` / `c_hash`: the left half of SHA-256, base64url.
fn half_hash(value: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    b64(digest.as_ref().get(..16).unwrap_or_default())
}

/// A test-only key of `fixtures/keys/`.
enum TestKey {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
}

impl TestKey {
    fn load(name: &str) -> Harness<TestKey> {
        let path = super::fixtures_dir().join("keys").join(format!("{name}.test-only.pk8.der"));
        let der = std::fs::read(&path).map_err(|e| format!("test key `{name}` ({}): {e}", path.display()))?;
        if name.starts_with("ec-") {
            let rng = ring::rand::SystemRandom::new();
            sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map(TestKey::Ec)
                .map_err(|e| format!("test key `{name}`: {e}"))
        } else {
            sig::RsaKeyPair::from_pkcs8(&der).map(TestKey::Rsa).map_err(|e| format!("test key `{name}`: {e}"))
        }
    }

    fn jwk(&self) -> serde_json::Value {
        match self {
            TestKey::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                serde_json::json!({"kty": "RSA", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            TestKey::Ec(k) => {
                let p = k.public_key().as_ref();
                let x = p.get(1..33).unwrap_or_default();
                let y = p.get(33..65).unwrap_or_default();
                serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "x": b64(x), "y": b64(y)})
            }
        }
    }
}

fn sign(
    key: Option<&str>,
    kid: Option<&str>,
    alg: Option<&str>,
    hmac_secret: Option<&str>,
    extra_header: &toml::Table,
    claims: &serde_json::Value,
) -> Harness<String> {
    let key = key.map(TestKey::load).transpose()?;
    let alg = match (alg, &key, hmac_secret) {
        (Some(a), _, _) => a.to_owned(),
        (None, Some(TestKey::Rsa(_)), _) => "RS256".to_owned(),
        (None, Some(TestKey::Ec(_)), _) => "ES256".to_owned(),
        (None, None, Some(_)) => "HS256".to_owned(),
        (None, None, None) => {
            return Err("a sign step needs a key, an hmac_secret or alg = \"none\"".to_owned());
        }
    };
    let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    for (k, v) in extra_header {
        header[k] = serde_json::to_value(v).map_err(|e| format!("header: {e}"))?;
    }
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let rng = ring::rand::SystemRandom::new();
    let signature = match (alg.as_str(), &key, hmac_secret) {
        ("none", _, _) => Vec::new(),
        ("HS256", _, Some(secret)) => {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
            ring::hmac::sign(&k, input.as_bytes()).as_ref().to_vec()
        }
        (a @ ("RS256" | "PS256"), Some(TestKey::Rsa(k)), _) => {
            let scheme: &dyn sig::RsaEncoding =
                if a == "PS256" { &sig::RSA_PSS_SHA256 } else { &sig::RSA_PKCS1_SHA256 };
            let mut out = vec![0; k.public().modulus_len()];
            k.sign(scheme, &rng, input.as_bytes(), &mut out).map_err(|e| format!("signing: {e}"))?;
            out
        }
        ("ES256", Some(TestKey::Ec(k)), _) => {
            k.sign(&rng, input.as_bytes()).map_err(|e| format!("signing: {e}"))?.as_ref().to_vec()
        }
        (a, _, _) => return Err(format!("cannot sign {a} with the key given")),
    };
    Ok(format!("{input}.{}", b64(&signature)))
}
