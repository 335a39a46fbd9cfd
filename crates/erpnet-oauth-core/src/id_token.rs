//! ID tokens (compact JWS): reading them, and verifying them per OpenID Connect Core §3.1.3.7 and
//! catalogue D ([`verify_id_token`], [`crate::Login::verify`], [`CodeExchange::verify_front_channel`],
//! [`IdTokenClaims::verify_refreshed`]). Only ID tokens are read: access tokens are opaque (catalogue C7).
//!
//! Verification is pure: the keys come in as a [`JwkSet`] (see [`crate::jwks::KeyCache`] for when to fetch
//! them) and the time as `now`.

use crate::authorize::CodeExchange;
use crate::config::ClientConfig;
use crate::error::excerpt;
use crate::jwks::{JwkSet, Selection, SigningAlg};
use crate::safe_text::escape;
use crate::secret::{AccessToken, AuthorizationCode, IdToken, constant_time_eq};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a JWT could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtFormatError {
    /// Not three dot-separated segments.
    #[error("a JWT has three dot-separated parts, this one has {0}")]
    Segments(usize),
    /// A segment is not base64url.
    #[error("the JWT {0} is not base64url")]
    Base64(&'static str),
    /// A segment is not a JSON object.
    #[error("the JWT {0} is not a JSON object")]
    Json(&'static str),
}

/// The header and claims of a JWT, decoded but not verified: only for comparisons whose outcome
/// does not grant anything (catalogue E4), or as the first step of verification. `Debug` hides the
/// `nonce`.
#[derive(Clone, PartialEq)]
pub struct UnverifiedClaims {
    /// The JOSE header.
    pub header: serde_json::Value,
    /// The claims.
    pub value: serde_json::Value,
}

impl std::fmt::Debug for UnverifiedClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            Value::Object(claims) => Value::Object(without_nonce(claims)),
            other => other.clone(),
        };
        f.debug_struct("UnverifiedClaims").field("header", &self.header).field("value", &value).finish()
    }
}

/// `claims` with the value of `nonce` replaced, for `Debug`: the nonce is the login's secret.
fn without_nonce(claims: &Map<String, Value>) -> Map<String, Value> {
    let mut shown = claims.clone();
    if let Some(nonce) = shown.get_mut("nonce") {
        *nonce = Value::String(REDACTED.to_owned());
    }
    shown
}

const REDACTED: &str = "[redacted]";

impl UnverifiedClaims {
    /// Decodes `jwt`'s header and payload.
    pub fn decode(jwt: &IdToken) -> Result<Self, JwtFormatError> {
        let parts = split(jwt.secret())?;
        Ok(UnverifiedClaims {
            header: json_segment(parts.0, "header")?,
            value: json_segment(parts.1, "payload")?,
        })
    }
}

/// Splits a compact JWS into header, payload and signature.
pub(crate) fn split(jwt: &str) -> Result<(&str, &str, &str), JwtFormatError> {
    let mut it = jwt.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwtFormatError::Segments(jwt.split('.').count())),
    }
}

pub(crate) fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, JwtFormatError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| JwtFormatError::Base64(what))
}

fn json_segment(segment: &str, what: &'static str) -> Result<serde_json::Value, JwtFormatError> {
    match serde_json::from_slice(&b64(segment, what)?) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(JwtFormatError::Json(what)),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Verification (OpenID Connect Core §3.1.3.7, catalogue D)
// ---------------------------------------------------------------------------------------------------------

/// Why an ID token was rejected. Names the claim or header member at fault; never contains the token,
/// and never the nonce. `Display` shows the token's text (`alg`, `kid`, `iss`, `aud`, `azp`) shortened and
/// escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// An ID token was expected and there is none.
    #[error("no ID token was received")]
    Missing,
    /// Not a compact JWS with a JSON header and payload.
    #[error("the ID token is malformed: {0}")]
    Malformed(JwtFormatError),
    /// A header member is missing or of the wrong type.
    #[error("the ID token's header member `{0}` is missing or not a string")]
    InvalidHeader(&'static str),
    /// `alg: none`: an unsigned token (catalogue D2).
    #[error("the ID token is unsigned (`alg: none`)")]
    Unsigned,
    /// An algorithm other than those accepted, e.g. `HS256` signed with the client secret (catalogue D2).
    #[error("the ID token is signed with `{}`, which is not accepted (accepted: {accepted})", escape(.alg))]
    UnexpectedAlgorithm {
        /// The header's `alg`.
        alg: String,
        /// The algorithms accepted, comma-separated.
        accepted: String,
    },
    /// The header has `crit` extensions, none of which this client understands.
    #[error("the ID token's header has critical extensions (`crit`) this client does not understand")]
    CriticalHeader,
    /// No key in the JWKS has the token's `kid`, after the one allowed refetch (catalogue D7).
    #[error("no key in the issuer's key set has the ID token's kid `{}`", escape(.kid))]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The key named by `kid` cannot verify the token's algorithm.
    #[error("the key `{}` cannot verify an ID token signed with {alg}", escape(.kid))]
    KeyMismatch {
        /// The header's `kid`.
        kid: String,
        /// The header's `alg`.
        alg: SigningAlg,
    },
    /// The token has no `kid` and no key in the set fits its algorithm (catalogue D6).
    #[error("no key in the issuer's key set can verify an ID token signed with {alg}")]
    NoKey {
        /// The header's `alg`.
        alg: SigningAlg,
    },
    /// The signature does not verify (catalogue D1).
    #[error("the ID token's signature is invalid{}", .kid.as_ref().map(|k| format!(" (key `{}`)", escape(k))).unwrap_or_default())]
    BadSignature {
        /// The header's `kid`, when present.
        kid: Option<String>,
    },
    /// A required claim is missing (catalogue D4).
    #[error("the ID token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an impossible value.
    #[error("the ID token's `{claim}` claim is invalid: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `iss` is not the expected issuer (catalogue D3).
    #[error("the ID token's `iss` is `{}`, expected `{}`", escape(.found), escape(.expected))]
    IssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// The `iss` found.
        found: String,
    },
    /// `aud` does not contain the client id (catalogue D3).
    #[error("the ID token's `aud` ({}) does not contain the client id `{}`", escape(&.found.join(", ")), escape(.client_id))]
    AudienceMismatch {
        /// This client's id.
        client_id: String,
        /// The audiences found.
        found: Vec<String>,
    },
    /// Several audiences and no `azp` (catalogue D3).
    #[error("the ID token has several audiences and no `azp` claim")]
    AzpMissing,
    /// `azp` is not the client id (catalogue D3).
    #[error("the ID token's `azp` is `{}`, not this client's id", escape(.found))]
    AzpMismatch {
        /// The `azp` found.
        found: String,
    },
    /// `exp` is in the past by more than the clock skew (catalogue D4).
    #[error("the ID token expired at {exp} (Unix seconds); it is now {now}, beyond the allowed skew")]
    Expired {
        /// The `exp` claim.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `iat` is in the future by more than the clock skew.
    #[error("the ID token was issued at {iat} (Unix seconds), in the future (it is now {now})")]
    IssuedInFuture {
        /// The `iat` claim.
        iat: u64,
        /// The time of the check.
        now: u64,
    },
    /// `nbf` is in the future by more than the clock skew.
    #[error("the ID token is not valid before {nbf} (Unix seconds); it is now {now}")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
        /// The time of the check.
        now: u64,
    },
    /// A nonce was sent and the token has none (catalogue D5).
    #[error("the login sent a nonce and the ID token has no `nonce` claim")]
    NonceMissing,
    /// The token's nonce is not the one sent (catalogue D5): possibly a replayed token.
    #[error("the ID token's `nonce` is not the one this login sent")]
    NonceMismatch,
    /// `at_hash` does not match the access token.
    #[error("the ID token's `at_hash` does not match the access token")]
    AtHashMismatch,
    /// `c_hash` does not match the authorization code (catalogue B7).
    #[error("the ID token's `c_hash` does not match the authorization code")]
    CHashMismatch,
    /// A refreshed ID token changed a claim that must stay (catalogue E4).
    #[error("the refreshed ID token changed its `{claim}` claim")]
    Changed {
        /// The claim.
        claim: &'static str,
    },
    /// The hybrid flow's front-channel ID token and the token endpoint's name another `iss` or `sub`
    /// (catalogue B8).
    #[error("the ID token from the token endpoint has another `{claim}` than the callback's")]
    FrontChannelMismatch {
        /// The claim.
        claim: &'static str,
    },
    /// A hybrid login's front-channel ID token was not verified before its tokens were asked for.
    #[error("the callback's ID token was not verified")]
    FrontChannelUnverified,
}

/// The claims of a verified ID token. `Debug` hides the `nonce`.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `iss`: the issuer, equal to the client's expected issuer.
    pub iss: String,
    /// `sub`: the user's identifier at the issuer.
    pub sub: String,
    /// `aud`: the audiences, containing the client id.
    pub aud: Vec<String>,
    /// `azp`: the authorized party, when present (equal to the client id).
    pub azp: Option<String>,
    /// `exp`.
    pub exp: SystemTime,
    /// `iat`.
    pub iat: SystemTime,
    /// `nbf`, when present.
    pub nbf: Option<SystemTime>,
    /// `auth_time`: when the user authenticated, when present.
    pub auth_time: Option<SystemTime>,
    /// `nonce`, when present.
    pub nonce: Option<String>,
    /// `sid`: the session id at the issuer, when present.
    pub sid: Option<String>,
    /// `name`, when present.
    pub name: Option<String>,
    /// `email`, when present.
    pub email: Option<String>,
    /// The algorithm the token was signed with.
    pub alg: SigningAlg,
    /// Every claim as received.
    pub raw: Map<String, Value>,
}

impl std::fmt::Debug for IdTokenClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("azp", &self.azp)
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("auth_time", &self.auth_time)
            .field("nonce", &self.nonce.as_ref().map(|_| REDACTED))
            .field("sid", &self.sid)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("alg", &self.alg)
            .field("raw", &without_nonce(&self.raw))
            .finish()
    }
}

/// What a particular ID token must match besides the client's issuer, id and keys. `Debug` hides the
/// nonce (the token and the code redact themselves).
#[derive(Clone, Copy, Default)]
pub struct IdTokenExpectations<'a> {
    nonce: Option<&'a str>,
    access_token: Option<&'a AccessToken>,
    code: Option<&'a AuthorizationCode>,
    require_c_hash: bool,
    server_time: bool,
}

impl std::fmt::Debug for IdTokenExpectations<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenExpectations")
            .field("nonce", &self.nonce.map(|_| REDACTED))
            .field("access_token", &self.access_token)
            .field("code", &self.code)
            .field("require_c_hash", &self.require_c_hash)
            .field("server_time", &self.server_time)
            .finish()
    }
}

impl<'a> IdTokenExpectations<'a> {
    /// No nonce, no access token, no code.
    pub fn new() -> Self {
        Self::default()
    }

    /// The nonce the login sent: the token must carry it (catalogue D5).
    pub fn nonce(mut self, nonce: Option<&'a str>) -> Self {
        self.nonce = nonce;
        self
    }

    /// The access token issued with the ID token: `at_hash`, when present, must match it.
    pub fn access_token(mut self, token: &'a AccessToken) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The authorization code issued with the ID token: `c_hash`, when present, must match it.
    pub fn code(mut self, code: &'a AuthorizationCode) -> Self {
        self.code = Some(code);
        self
    }

    /// Requires `c_hash` (the hybrid flow's front-channel ID token, OpenID Connect Core §3.3.2.11).
    pub fn require_c_hash(mut self) -> Self {
        self.require_c_hash = true;
        self
    }

    /// Checks the token's times at the server's time as the token states it, not on the client's clock:
    /// `exp` after `iat`, `nbf` not after `exp`. For an ID token that came straight from the token
    /// endpoint in answer to this client's own refresh request, which cannot be a replay, so that a client
    /// clock minutes off the server's does not end the login (catalogue E13). Logins check times on the
    /// client's clock, with its skew (catalogue D4).
    pub fn at_server_time(mut self) -> Self {
        self.server_time = true;
        self
    }
}

/// The header's `kid` and `alg`, when the token's header is readable and the algorithm supported.
pub(crate) fn header_kid_alg(token: &IdToken) -> Option<(Option<String>, SigningAlg)> {
    let (h, _, _) = split(token.secret()).ok()?;
    let header = json_segment(h, "header").ok()?;
    let alg = SigningAlg::from_name(header.get("alg")?.as_str()?)?;
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Some((kid, alg))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `left half of SHA-256(value)`, base64url without padding: `at_hash` and `c_hash` for RS256, PS256 and
/// ES256 (all SHA-256).
pub fn half_hash(value: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
}

/// Verifies `token` for `client` with `keys` at `now`, and returns its claims.
///
/// The checks, in this order (the first failure is the error):
/// 1. format: three base64url segments, JSON header and payload;
/// 2. header: `alg` is accepted by the client (`none` → [`IdTokenError::Unsigned`], others such as
///    `HS256` → [`IdTokenError::UnexpectedAlgorithm`]), no `crit`;
/// 3. key: by `kid` ([`IdTokenError::UnknownKey`]), or without `kid` each key fitting `alg` in turn
///    (catalogue D6: tried, not rejected);
/// 4. signature ([`IdTokenError::BadSignature`]);
/// 5. required claims present and well-typed: `iss`, `sub`, `aud`, `exp`, `iat`;
/// 6. `iss` equals the client's issuer; `aud` contains the client id; several audiences require `azp`;
///    `azp`, when present, equals the client id;
/// 7. times, each with the client's clock skew: `exp` not past, `iat` and `nbf` not in the future;
/// 8. `nonce` equal to the one sent, when one was sent;
/// 9. `at_hash` against the access token and `c_hash` against the code, when both sides are present.
pub fn verify_id_token(
    token: &IdToken,
    client: &ClientConfig,
    keys: &JwkSet,
    expect: &IdTokenExpectations<'_>,
    now: SystemTime,
) -> Result<IdTokenClaims, IdTokenError> {
    // 1. Format.
    let (h, p, s) = split(token.secret()).map_err(IdTokenError::Malformed)?;
    let header = json_segment(h, "header").map_err(IdTokenError::Malformed)?;
    let signature = b64(s, "signature").map_err(IdTokenError::Malformed)?;
    // 2. Header.
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(IdTokenError::InvalidHeader("alg"))?;
    if alg_name == "none" {
        return Err(IdTokenError::Unsigned);
    }
    let accepted = client.id_token_signing_algs();
    let alg = SigningAlg::from_name(alg_name).filter(|a| accepted.contains(a)).ok_or_else(|| {
        IdTokenError::UnexpectedAlgorithm {
            alg: excerpt(alg_name, 20),
            accepted: accepted.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
        }
    })?;
    if header.get("crit").is_some() {
        return Err(IdTokenError::CriticalHeader);
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(IdTokenError::InvalidHeader("kid")),
    };
    // 3. Key, 4. signature.
    let candidates = match keys.select(kid, alg) {
        Selection::Keys(k) => k,
        Selection::UnknownKid(kid) => return Err(IdTokenError::UnknownKey { kid }),
        Selection::KidWrongType(kid) => return Err(IdTokenError::KeyMismatch { kid, alg }),
        Selection::NoKeyForAlg => return Err(IdTokenError::NoKey { alg }),
    };
    // The signing input is the first two segments exactly as received.
    let signing_input = token.secret().get(..h.len() + 1 + p.len()).unwrap_or_default();
    if !candidates.iter().any(|k| k.verify(alg, signing_input.as_bytes(), &signature)) {
        return Err(IdTokenError::BadSignature { kid: kid.map(|k| excerpt(k, 200)) });
    }
    // The payload is only read once the signature holds.
    let payload = match json_segment(p, "payload").map_err(IdTokenError::Malformed)? {
        Value::Object(m) => m,
        _ => return Err(IdTokenError::Malformed(JwtFormatError::Json("payload"))),
    };
    let claims = read_claims(payload, alg)?;
    check_claims(&claims, client, expect, now)?;
    Ok(claims)
}

/// 5. Required claims present and well-typed.
fn read_claims(raw: Map<String, Value>, alg: SigningAlg) -> Result<IdTokenClaims, IdTokenError> {
    let string = |claim: &'static str, required: bool| -> Result<Option<String>, IdTokenError> {
        match raw.get(claim) {
            None | Some(Value::Null) if required => Err(IdTokenError::MissingClaim(claim)),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if required && s.is_empty() => {
                Err(IdTokenError::InvalidClaim { claim, reason: "it is empty" })
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(IdTokenError::InvalidClaim { claim, reason: "it is not a string" }),
        }
    };
    let time = |claim: &'static str, required: bool| -> Result<Option<SystemTime>, IdTokenError> {
        match raw.get(claim) {
            None | Some(Value::Null) if required => Err(IdTokenError::MissingClaim(claim)),
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                let secs = n.as_u64().or_else(|| {
                    n.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15).map(|f| f as u64)
                });
                match secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))) {
                    Some(t) => Ok(Some(t)),
                    None => Err(IdTokenError::InvalidClaim { claim, reason: "it is not a valid time" }),
                }
            }
            Some(_) => Err(IdTokenError::InvalidClaim { claim, reason: "it is not a number of seconds" }),
        }
    };
    let iss = string("iss", true)?.unwrap_or_default();
    let sub = string("sub", true)?.unwrap_or_default();
    let aud = match raw.get("aud") {
        None | Some(Value::Null) => return Err(IdTokenError::MissingClaim("aud")),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for a in list {
                match a.as_str() {
                    Some(a) => out.push(a.to_owned()),
                    None => {
                        return Err(IdTokenError::InvalidClaim {
                            claim: "aud",
                            reason: "it holds something other than strings",
                        });
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(IdTokenError::InvalidClaim {
                claim: "aud",
                reason: "it is neither a string nor an array",
            });
        }
    };
    let exp = time("exp", true)?.unwrap_or(UNIX_EPOCH);
    let iat = time("iat", true)?.unwrap_or(UNIX_EPOCH);
    Ok(IdTokenClaims {
        iss,
        sub,
        aud,
        azp: string("azp", false)?,
        exp,
        iat,
        nbf: time("nbf", false)?,
        auth_time: time("auth_time", false)?,
        nonce: string("nonce", false)?,
        sid: string("sid", false)?,
        name: string("name", false)?,
        email: string("email", false)?,
        alg,
        raw,
    })
}

/// 6-9: the values.
fn check_claims(
    c: &IdTokenClaims,
    client: &ClientConfig,
    expect: &IdTokenExpectations<'_>,
    now: SystemTime,
) -> Result<(), IdTokenError> {
    if c.iss != client.issuer() {
        return Err(IdTokenError::IssuerMismatch {
            expected: client.issuer().to_owned(),
            found: excerpt(&c.iss, 200),
        });
    }
    if !c.aud.iter().any(|a| a == client.client_id()) {
        return Err(IdTokenError::AudienceMismatch {
            client_id: client.client_id().to_owned(),
            found: c.aud.iter().take(10).map(|a| excerpt(a, 100)).collect(),
        });
    }
    match &c.azp {
        Some(azp) if azp != client.client_id() => {
            return Err(IdTokenError::AzpMismatch { found: excerpt(azp, 200) });
        }
        None if c.aud.len() > 1 => return Err(IdTokenError::AzpMissing),
        _ => {}
    }
    let exp = unix(c.exp);
    let iat = unix(c.iat);
    if expect.server_time {
        // The server's time is the token's `iat`: the token must be valid at it.
        if exp <= iat {
            return Err(IdTokenError::Expired { exp, now: iat });
        }
        if let Some(nbf) = c.nbf.map(unix)
            && nbf >= exp
        {
            return Err(IdTokenError::NotYetValid { nbf, now: iat });
        }
    } else {
        let skew = client.clock_skew();
        let now_s = unix(now);
        let skew_s = skew.as_secs();
        if now_s >= exp.saturating_add(skew_s) {
            return Err(IdTokenError::Expired { exp, now: now_s });
        }
        if iat > now_s.saturating_add(skew_s) {
            return Err(IdTokenError::IssuedInFuture { iat, now: now_s });
        }
        if let Some(nbf) = c.nbf.map(unix)
            && nbf > now_s.saturating_add(skew_s)
        {
            return Err(IdTokenError::NotYetValid { nbf, now: now_s });
        }
    }
    if let Some(sent) = expect.nonce {
        match &c.nonce {
            None => return Err(IdTokenError::NonceMissing),
            Some(got) if !constant_time_eq(got.as_bytes(), sent.as_bytes()) => {
                return Err(IdTokenError::NonceMismatch);
            }
            Some(_) => {}
        }
    }
    let hash = |claim: &'static str| -> Result<Option<&str>, IdTokenError> {
        match c.raw.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(IdTokenError::InvalidClaim { claim, reason: "it is not a string" }),
        }
    };
    if let (Some(at_hash), Some(token)) = (hash("at_hash")?, expect.access_token)
        && !constant_time_eq(at_hash.as_bytes(), half_hash(token.secret()).as_bytes())
    {
        return Err(IdTokenError::AtHashMismatch);
    }
    match (hash("c_hash")?, expect.code) {
        (Some(c_hash), Some(code))
            if !constant_time_eq(c_hash.as_bytes(), half_hash(code.secret()).as_bytes()) =>
        {
            return Err(IdTokenError::CHashMismatch);
        }
        (None, _) if expect.require_c_hash => return Err(IdTokenError::MissingClaim("c_hash")),
        _ => {}
    }
    Ok(())
}

impl CodeExchange {
    /// Verifies the ID token that came with a hybrid (`code id_token`) callback, before the code is
    /// exchanged (catalogue B7): signature, issuer, audience, times, the nonce, and `c_hash`, which is
    /// required and must match the code. `Ok(None)` when the callback carried no ID token. Once verified,
    /// its claims are kept: the token endpoint's ID token must name the same `iss` and `sub`
    /// ([`crate::Login::verify`]).
    pub fn verify_front_channel(
        &mut self,
        client: &ClientConfig,
        keys: &JwkSet,
        now: SystemTime,
    ) -> Result<Option<IdTokenClaims>, IdTokenError> {
        let Some(token) = self.front_channel_id_token() else {
            return Ok(match &self.front {
                crate::authorize::FrontChannel::Verified(c) => Some((**c).clone()),
                _ => None,
            });
        };
        let expect = IdTokenExpectations::new().nonce(self.nonce()).code(self.code()).require_c_hash();
        let claims = verify_id_token(token, client, keys, &expect, now)?;
        self.front = crate::authorize::FrontChannel::Verified(Box::new(claims.clone()));
        Ok(Some(claims))
    }
}

impl IdTokenClaims {
    /// The claims of an ID token that was verified when it was stored (a login's, or an earlier refresh's),
    /// read again without checking its signature or times: the original that a refreshed ID token is
    /// compared with. Never use it for a token that did not pass [`verify_id_token`].
    pub fn from_verified(token: &IdToken) -> Result<IdTokenClaims, IdTokenError> {
        let (h, p, _) = split(token.secret()).map_err(IdTokenError::Malformed)?;
        let header = json_segment(h, "header").map_err(IdTokenError::Malformed)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(SigningAlg::from_name)
            .ok_or(IdTokenError::InvalidHeader("alg"))?;
        match json_segment(p, "payload").map_err(IdTokenError::Malformed)? {
            Value::Object(m) => read_claims(m, alg),
            _ => Err(IdTokenError::Malformed(JwtFormatError::Json("payload"))),
        }
    }

    /// Verifies an ID token received from a refresh (catalogue E4, E11, OpenID Connect Core §12.2) against
    /// these claims of the original one: verified like a login's (signature with `keys`, issuer, audience
    /// and `azp`, `exp` and `iat`, `at_hash` against the new access token when given), its times at the
    /// server's time ([`IdTokenExpectations::at_server_time`]: it answers this client's own request, and
    /// the client's clock may be minutes off); then `iss`, `sub` and `azp` must be unchanged, `aud` the
    /// same set of audiences (RFC 7519 §4.1.3: `"x"` and `["x"]` are the same), `auth_time` when present
    /// the original's, and a `nonce`, when present, the original's.
    pub fn verify_refreshed(
        &self,
        new: &IdToken,
        client: &ClientConfig,
        keys: &JwkSet,
        access_token: Option<&AccessToken>,
        now: SystemTime,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let mut expect = IdTokenExpectations::new().at_server_time();
        if let Some(at) = access_token {
            expect = expect.access_token(at);
        }
        let fresh = verify_id_token(new, client, keys, &expect, now)?;
        if fresh.iss != self.iss {
            return Err(IdTokenError::Changed { claim: "iss" });
        }
        if fresh.sub != self.sub {
            return Err(IdTokenError::Changed { claim: "sub" });
        }
        let same_audiences =
            fresh.aud.iter().all(|a| self.aud.contains(a)) && self.aud.iter().all(|a| fresh.aud.contains(a));
        if !same_audiences {
            return Err(IdTokenError::Changed { claim: "aud" });
        }
        if fresh.azp != self.azp {
            return Err(IdTokenError::Changed { claim: "azp" });
        }
        if fresh.auth_time.is_some() && self.auth_time.is_some() && fresh.auth_time != self.auth_time {
            return Err(IdTokenError::Changed { claim: "auth_time" });
        }
        if let (Some(got), Some(original)) = (&fresh.nonce, &self.nonce)
            && got != original
        {
            return Err(IdTokenError::NonceMismatch);
        }
        Ok(fresh)
    }
}
