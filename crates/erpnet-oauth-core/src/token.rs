//! Token endpoint requests (`authorization_code`, `refresh_token`, `client_credentials`) and the parsing of
//! their responses into a [`TokenSet`].

use crate::config::{AuthMethod, ClientConfig};
use crate::error::{OAuthError, excerpt};
use crate::safe_text::escape;
use crate::scope::Scopes;
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::store::StoreFile;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What went wrong at the token endpoint. `Display` shows the server's text escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The server answered with an RFC 6749 §5.2 error.
    #[error("the token endpoint answered {status} {error}")]
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The error.
        error: OAuthError,
    },
    /// The server answered with an error status and a body that is not an OAuth error (HTML, empty...).
    #[error(
        "the token endpoint answered HTTP {status} ({}, {length} bytes) without an OAuth error",
        escape(.content_type)
    )]
    Http {
        /// The HTTP status.
        status: u16,
        /// The Content-Type, or `no content type`.
        content_type: String,
        /// The body's length.
        length: usize,
    },
    /// The token endpoint answered with a redirect; it is not followed (catalogue C5).
    #[error(
        "the token endpoint answered with a redirect (HTTP {status}); credentials are never re-sent to it"
    )]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// A success status with a body that is not a token response.
    #[error("the token response is malformed: {}", escape(.reason))]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// `token_type` is not `Bearer`.
    #[error("the token type `{}` is not supported (only Bearer is)", escape(.0))]
    UnsupportedTokenType(String),
    /// `expires_in` is not a positive whole number of seconds.
    #[error("expires_in must be a positive number of seconds, got {}", escape(.0))]
    InvalidExpiresIn(String),
    /// `openid` was requested but no `id_token` came back (catalogue C3).
    #[error("the scope `openid` was requested but the token response has no id_token")]
    MissingIdToken,
    /// The ID token could not be read.
    #[error("the ID token is malformed: {}", escape(.0))]
    MalformedIdToken(String),
}

impl TokenError {
    /// Whether the server rejected the grant (`invalid_grant`): the refresh token or code is dead and
    /// the user must log in again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, TokenError::OAuth { error, .. } if error.is("invalid_grant"))
    }

    /// Whether trying again later may succeed: 5xx and 429 answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            TokenError::OAuth { status, error } => {
                *status >= 500 || *status == 429 || error.is("temporarily_unavailable")
            }
            TokenError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The tokens of one login: what a store keeps.
///
/// `Debug` shows no token (the token newtypes redact themselves). Serialization writes the real values,
/// for stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token (opaque).
    pub access_token: AccessToken,
    /// When the access token expires, from `expires_in` and the `now` given; `None` when unknown.
    #[serde(with = "unix_time_opt", default)]
    pub expires_at: Option<SystemTime>,
    /// When the access token was received, on the client's own clock (the `now` given to
    /// [`parse_token_response`]); `None` when unknown. With [`Self::expires_at`] it gives the token's
    /// lifetime, which bounds the refresh margin (see [`Self::is_fresh`]). Both are read on the client's
    /// clock, so a server clock minutes off does not matter (catalogue E13).
    #[serde(with = "unix_time_opt", default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<SystemTime>,
    /// The refresh token, when one was issued (needs `offline_access`).
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    /// The latest ID token.
    #[serde(default)]
    pub id_token: Option<IdToken>,
    /// The granted scopes.
    #[serde(default)]
    pub scopes: Scopes,
}

impl TokenSet {
    /// The refresh margin for these tokens: `skew`, but never more than half the token's lifetime (when
    /// [`Self::issued_at`] and [`Self::expires_at`] give it), so that a token whose whole lifetime is
    /// shorter than the skew (servers may issue 1 s or 5 s tokens) is still fresh for a while after it
    /// arrives (catalogue E9).
    pub fn margin(&self, skew: Duration) -> Duration {
        match (self.issued_at, self.expires_at) {
            (Some(issued), Some(expires)) => {
                skew.min(expires.duration_since(issued).unwrap_or(Duration::ZERO) / 2)
            }
            _ => skew,
        }
    }

    /// Whether the access token is still good at `now` with [`Self::margin`]`(skew)` to spare: `now` is
    /// before [`Self::fresh_until`]. Unknown expiry counts as good (a static reference token; tokens from a
    /// token endpoint without `expires_in` get a fallback lifetime, catalogue E12): the API's 401 will say
    /// otherwise.
    pub fn is_fresh(&self, now: SystemTime, skew: Duration) -> bool {
        self.fresh_until(skew).is_none_or(|until| now < until)
    }

    /// When these tokens stop being fresh: `expires_at` less the margin, rounded up to a whole second,
    /// since times are kept in whole seconds (a 1 s token received at 12:00:00.7 expires at 12:00:01 and is
    /// fresh until then, not never). Never after `expires_at`. `None` for an unknown expiry.
    pub fn fresh_until(&self, skew: Duration) -> Option<SystemTime> {
        let at = self.expires_at?.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let edge = at.saturating_sub(self.margin(skew));
        let secs = edge.as_secs().saturating_add(u64::from(edge.subsec_nanos() > 0));
        UNIX_EPOCH.checked_add(Duration::from_secs(secs).min(at))
    }

    /// The tokens after a refresh answered with `new`: a rotated refresh token replaces the old one
    /// (catalogue E2), none keeps the old (E3); no new ID token keeps the old one. A new ID token is
    /// checked against the old one by [`crate::IdTokenClaims::verify_refreshed`] (catalogue E4, E11),
    /// which the token manager runs before the tokens are used.
    pub fn refreshed(&self, mut new: TokenSet) -> TokenSet {
        if new.refresh_token.is_none() {
            new.refresh_token = self.refresh_token.clone();
        }
        if new.id_token.is_none() {
            new.id_token = self.id_token.clone();
        }
        new
    }
}

/// Why bytes are not a token store file, or tokens could not be written as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreFormatError {
    /// A version this library does not read.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// Not the format at all. Only the kind and position of the error: the parser's message may quote the
    /// content, which holds tokens.
    #[error("not a token store file ({length} bytes; {kind} error at line {line}, column {column})")]
    Malformed {
        /// The file's length.
        length: usize,
        /// `Syntax`, `Data`, `Eof` or `Io`.
        kind: String,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
    },
    /// The tokens could not be serialized.
    #[error("the tokens could not be serialized: {0}")]
    Serialize(String),
}

impl TokenSet {
    /// These tokens as a token store file, without a record of whom they were issued to:
    /// `{"version": 1, "tokens": {...}}` (pretty JSON; see [`StoreFile`] for the file with the record).
    /// Pure: the adapters write the bytes.
    pub fn to_store_file(&self) -> Result<Vec<u8>, StoreFormatError> {
        StoreFile { issued_to: None, tokens: self.clone() }.to_bytes()
    }

    /// The tokens of a token store file written by [`Self::to_store_file`] or [`StoreFile::to_bytes`],
    /// whomever they were issued to ([`StoreFile::tokens_for`] checks that).
    pub fn from_store_file(bytes: &[u8]) -> Result<TokenSet, StoreFormatError> {
        StoreFile::from_bytes(bytes).map(|f| f.tokens)
    }
}

/// A token request to build: the grant and its parameters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Grant<'a> {
    /// `grant_type=refresh_token` (catalogue E1): no scope, so the original grant is kept.
    RefreshToken(&'a RefreshToken),
    /// `grant_type=client_credentials` for ERP.net service applications (catalogue I1).
    ClientCredentials {
        /// The scopes to ask for; empty omits the parameter.
        scopes: &'a Scopes,
    },
}

impl ClientConfig {
    /// The token request for `grant`, with this client's authentication.
    pub fn token_request(&self, grant: Grant<'_>) -> http::Request<Vec<u8>> {
        match grant {
            Grant::RefreshToken(rt) => self.form_post(
                &self.token_uri(),
                &[("grant_type", "refresh_token"), ("refresh_token", rt.secret())],
            ),
            Grant::ClientCredentials { scopes } => {
                let scope = scopes.to_string();
                let mut params = vec![("grant_type", "client_credentials")];
                if !scope.is_empty() {
                    params.push(("scope", &scope));
                }
                self.form_post(&self.token_uri(), &params)
            }
        }
    }

    /// A form POST to `uri` carrying this client's authentication then `params`, in that order (the seed's
    /// order: `client_id`, `client_secret`, `grant_type`, ...).
    pub(crate) fn form_post(&self, uri: &http::Uri, params: &[(&str, &str)]) -> http::Request<Vec<u8>> {
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 2);
        let mut basic = None;
        match (self.auth_method, &self.secret) {
            (AuthMethod::ClientSecretBasic, Some(secret)) => {
                basic = Some(basic_credentials(&self.client_id, secret.secret()));
            }
            (AuthMethod::ClientSecretPost, Some(secret)) => {
                fields.push(("client_id", &self.client_id));
                fields.push(("client_secret", secret.secret()));
            }
            _ => fields.push(("client_id", &self.client_id)),
        }
        fields.extend_from_slice(params);
        let mut req = http::Request::new(crate::encode::form_body(fields));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri.clone();
        let headers = req.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
        if let Some(value) = basic {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        req
    }
}

/// `Authorization: Basic` with RFC 6749 §2.3.1's form-encoding of id and secret before base64.
fn basic_credentials(id: &str, secret: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
    // Base64 output is always a valid header value.
    let mut v =
        http::HeaderValue::from_str(&value).unwrap_or_else(|_| http::HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

/// The fields of a token response the client reads, each as the JSON value it was (checked afterwards, so
/// that every error names the field). Read straight from the body in one pass: unknown members are skipped
/// without being built, and a repeated member keeps its last value (as a JSON object map would).
#[derive(Default)]
struct RawTokenResponse {
    access_token: Option<serde_json::Value>,
    token_type: Option<serde_json::Value>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<serde_json::Value>,
    id_token: Option<serde_json::Value>,
    scope: Option<serde_json::Value>,
}

/// What the body's top-level JSON value was: the object's fields, or the kind of anything else.
enum RawBody {
    Object(RawTokenResponse),
    Other(&'static str),
}

/// A member name of the token response, matched without allocating.
enum RawKey {
    AccessToken,
    TokenType,
    ExpiresIn,
    RefreshToken,
    IdToken,
    Scope,
    Other,
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = RawKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawKey, E> {
                Ok(match v {
                    "access_token" => RawKey::AccessToken,
                    "token_type" => RawKey::TokenType,
                    "expires_in" => RawKey::ExpiresIn,
                    "refresh_token" => RawKey::RefreshToken,
                    "id_token" => RawKey::IdToken,
                    "scope" => RawKey::Scope,
                    _ => RawKey::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A JSON value read and validated exactly as `serde_json::Value` would read it (strings are UTF-8 checked
/// and unescaped, numbers parsed), then dropped without being built.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct SkipVisitor;
        impl<'de> Visitor<'de> for SkipVisitor {
            type Value = Skip;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_unit<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
        }
        d.deserialize_any(SkipVisitor)
    }
}

impl<'de> Deserialize<'de> for RawBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = RawBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBody, A::Error> {
                let mut raw = RawTokenResponse::default();
                while let Some(key) = map.next_key::<RawKey>()? {
                    let slot = match key {
                        RawKey::AccessToken => &mut raw.access_token,
                        RawKey::TokenType => &mut raw.token_type,
                        RawKey::ExpiresIn => &mut raw.expires_in,
                        RawKey::RefreshToken => &mut raw.refresh_token,
                        RawKey::IdToken => &mut raw.id_token,
                        RawKey::Scope => &mut raw.scope,
                        RawKey::Other => {
                            map.next_value::<Skip>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(RawBody::Object(raw))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBody, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(RawBody::Other("an array"))
            }
            fn visit_unit<E>(self) -> Result<RawBody, E> {
                Ok(RawBody::Other("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawBody, E> {
                Ok(RawBody::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawBody, E> {
                Ok(RawBody::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawBody, E> {
                Ok(RawBody::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawBody, E> {
                Ok(RawBody::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<RawBody, E> {
                Ok(RawBody::Other("a string"))
            }
        }
        d.deserialize_any(BodyVisitor)
    }
}

/// Parses a token endpoint response (success or error) received at `now`. `requested` is what the
/// request asked for, used when the response has no `scope` (RFC 6749 §5.1).
pub fn parse_token_response<B: AsRef<[u8]>>(
    response: &http::Response<B>,
    now: SystemTime,
    requested: &Scopes,
) -> Result<TokenSet, TokenError> {
    let status = response.status();
    let body = response.body().as_ref();
    if status.is_redirection() {
        return Err(TokenError::Redirect { status: status.as_u16() });
    }
    if !status.is_success() {
        return Err(error_response(status.as_u16(), response.headers(), body));
    }
    let raw = match serde_json::from_slice::<RawBody>(body) {
        Ok(RawBody::Object(raw)) => raw,
        Ok(RawBody::Other(kind)) => {
            return Err(TokenError::Malformed { reason: format!("expected a JSON object, got {kind}") });
        }
        Err(e) => return Err(TokenError::Malformed { reason: format!("not JSON ({e})") }),
    };
    token_set(raw, now, requested)
}

/// Checks the fields of a successful token response and builds the [`TokenSet`].
fn token_set(raw: RawTokenResponse, now: SystemTime, requested: &Scopes) -> Result<TokenSet, TokenError> {
    let access_token = required_string(raw.access_token, "access_token")?;
    let token_type = required_string(raw.token_type, "token_type")?;
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::UnsupportedTokenType(excerpt(&token_type, 40)));
    }
    let expires_at = match raw.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let secs = parse_expires_in(&v)?;
            // Whole seconds, as stores keep them: the expiry in memory and the stored one are the same.
            let base = whole_seconds(now);
            let at = base.checked_add(secs).and_then(|t| UNIX_EPOCH.checked_add(Duration::from_secs(t)));
            Some(at.ok_or_else(|| TokenError::InvalidExpiresIn(secs.to_string()))?)
        }
    };
    let refresh_token = optional_string(raw.refresh_token, "refresh_token")?.map(RefreshToken::new);
    let id_token = optional_string(raw.id_token, "id_token")?.map(IdToken::new);
    let scopes = match optional_string(raw.scope, "scope")? {
        Some(s) => Scopes::parse(&s),
        None => requested.clone(),
    };
    let issued_at = UNIX_EPOCH.checked_add(Duration::from_secs(whole_seconds(now)));
    Ok(TokenSet {
        access_token: AccessToken::new(access_token),
        expires_at,
        issued_at,
        refresh_token,
        id_token,
        scopes,
    })
}

/// `now` in whole Unix seconds, as stores keep times.
fn whole_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The `refresh_token` member of a 200 answer that [`parse_token_response`] refused for another reason
/// (a bad `token_type`, `expires_in`, ...). Once a refresh grant is answered 200, a rotating server has
/// revoked the refresh token that was sent; the new one, when it can be read, must be kept (catalogue
/// E10). `None` when the body is not a JSON object or has no non-empty string `refresh_token`.
pub fn salvage_refresh_token<B: AsRef<[u8]>>(response: &http::Response<B>) -> Option<RefreshToken> {
    if !response.status().is_success() {
        return None;
    }
    match serde_json::from_slice::<RawBody>(response.body().as_ref()) {
        Ok(RawBody::Object(raw)) => match raw.refresh_token {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(RefreshToken::new(s)),
            _ => None,
        },
        _ => None,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn required_string(v: Option<serde_json::Value>, field: &str) -> Result<String, TokenError> {
    match optional_string(v, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(TokenError::Malformed { reason: format!("`{field}` is empty") }),
        None => Err(TokenError::Malformed { reason: format!("`{field}` is missing") }),
    }
}

fn optional_string(v: Option<serde_json::Value>, field: &str) -> Result<Option<String>, TokenError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => {
            Err(TokenError::Malformed { reason: format!("`{field}` is {}, not a string", json_kind(&other)) })
        }
    }
}

/// `expires_in`: a positive whole number, or a string of digits (seen in the wild: `"3600"`).
fn parse_expires_in(v: &serde_json::Value) -> Result<u64, TokenError> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    match secs {
        Some(s) if s > 0 => Ok(s),
        _ => Err(TokenError::InvalidExpiresIn(excerpt(&v.to_string(), 40))),
    }
}

/// An error answer from the token (or revocation) endpoint: a §5.2 JSON error when there is one,
/// else the bare HTTP status.
pub(crate) fn error_response(status: u16, headers: &http::HeaderMap, body: &[u8]) -> TokenError {
    match parse_oauth_error(body) {
        Some(error) => TokenError::OAuth { status, error },
        None => TokenError::Http {
            status,
            content_type: headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|s| excerpt(s, 60))
                .unwrap_or_else(|| "no content type".to_owned()),
            length: body.len(),
        },
    }
}

/// Reads an RFC 6749 §5.2 JSON error body, if that is what `body` is.
pub(crate) fn parse_oauth_error(body: &[u8]) -> Option<OAuthError> {
    #[derive(Deserialize)]
    struct Raw {
        error: String,
        error_description: Option<String>,
        error_uri: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body).ok()?;
    Some(OAuthError { error: raw.error, description: raw.error_description, uri: raw.error_uri })
}

/// `Option<SystemTime>` as whole Unix seconds in stores.
mod unix_time_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let secs: Option<u64> = Option::deserialize(d)?;
        Ok(secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> http::Response<Vec<u8>> {
        let mut r = http::Response::new(body.as_bytes().to_vec());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    }

    const NOW: u64 = 1_655_057_724;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn seed_response() {
        let body = r#"{"access_token":"a.b.c","expires_in":3600,"token_type":"Bearer","refresh_token":"r","scope":"openid profile DomainApi offline_access","id_token":"x.y.z"}"#;
        let t = parse_token_response(&resp(200, body), now(), &Scopes::default()).unwrap();
        assert_eq!(t.expires_at, Some(now() + Duration::from_secs(3600)));
        assert_eq!(t.scopes, Scopes::erpnet_default());
        assert_eq!(t.refresh_token, Some(RefreshToken::new("r")));
    }

    #[test]
    fn expiry_is_in_whole_seconds_like_the_stores() {
        let body = r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#;
        let t =
            parse_token_response(&resp(200, body), now() + Duration::from_millis(999), &Scopes::default())
                .unwrap();
        assert_eq!(t.expires_at, Some(now() + Duration::from_secs(60)));
    }

    #[test]
    fn expires_in_forms() {
        let p = |e: &str| {
            parse_token_response(
                &resp(200, &format!(r#"{{"access_token":"a","token_type":"bearer"{e}}}"#)),
                now(),
                &Scopes::default(),
            )
        };
        assert_eq!(p("").unwrap().expires_at, None);
        assert!(p(r#","expires_in":"3600""#).unwrap().expires_at.is_some());
        for bad in ["0", "-5", "\"soon\"", "1.5", "\"\"", "true"] {
            assert!(
                matches!(p(&format!(r#","expires_in":{bad}"#)), Err(TokenError::InvalidExpiresIn(_))),
                "{bad}"
            );
        }
        assert!(matches!(p(r#","expires_in":18446744073709551615"#), Err(TokenError::InvalidExpiresIn(_))));
    }

    #[test]
    fn errors() {
        let e = parse_token_response(
            &resp(400, r#"{"error":"invalid_grant","error_description":"gone"}"#),
            now(),
            &Scopes::default(),
        )
        .unwrap_err();
        assert!(e.is_invalid_grant());
        assert!(!e.is_retryable());
        let e = parse_token_response(&resp(503, "<html>"), now(), &Scopes::default()).unwrap_err();
        assert!(matches!(e, TokenError::Http { status: 503, length: 6, .. }));
        assert!(e.is_retryable());
        for body in ["{\"", "null", "[]", "<html></html>", ""] {
            assert!(matches!(
                parse_token_response(&resp(200, body), now(), &Scopes::default()),
                Err(TokenError::Malformed { .. })
            ));
        }
        assert!(matches!(
            parse_token_response(&resp(302, ""), now(), &Scopes::default()),
            Err(TokenError::Redirect { status: 302 })
        ));
    }

    #[test]
    fn store_files_round_trip_and_never_quote_their_content() {
        let t = TokenSet {
            access_token: AccessToken::new("at"),
            expires_at: Some(now()),
            issued_at: None,
            refresh_token: Some(RefreshToken::new("rt-secret")),
            id_token: None,
            scopes: Scopes::parse("openid DomainApi"),
        };
        let bytes = t.to_store_file().unwrap();
        assert_eq!(TokenSet::from_store_file(&bytes).unwrap(), t);
        let v2 = String::from_utf8(bytes).unwrap().replace("\"version\": 1", "\"version\": 2");
        assert_eq!(TokenSet::from_store_file(v2.as_bytes()), Err(StoreFormatError::Version(2)));
        let e = TokenSet::from_store_file(br#"{"version": 1, "tokens": {"refresh_token": "rt-secret"}}"#)
            .unwrap_err();
        assert!(matches!(e, StoreFormatError::Malformed { .. }), "{e:?}");
        assert!(!e.to_string().contains("rt-secret"), "{e}");
    }

    #[test]
    fn token_set_serializes_for_stores() {
        let t = TokenSet {
            access_token: AccessToken::new("at"),
            expires_at: Some(now()),
            issued_at: None,
            refresh_token: Some(RefreshToken::new("rt")),
            id_token: None,
            scopes: Scopes::parse("openid DomainApi"),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"access_token":"at","expires_at":1655057724,"refresh_token":"rt","id_token":null,"scopes":"DomainApi openid"}"#
        );
        assert_eq!(serde_json::from_str::<TokenSet>(&json).unwrap(), t);
        assert!(!format!("{t:?}").contains("\"at\""));
    }

    /// The parser before the one-pass reading (JSON → `serde_json::Value` → fields), kept as the reference.
    fn reference_parse(body: &[u8], now: SystemTime, requested: &Scopes) -> Result<TokenSet, TokenError> {
        #[derive(Deserialize)]
        struct Reference {
            access_token: Option<serde_json::Value>,
            token_type: Option<serde_json::Value>,
            expires_in: Option<serde_json::Value>,
            refresh_token: Option<serde_json::Value>,
            id_token: Option<serde_json::Value>,
            scope: Option<serde_json::Value>,
        }
        let r: Reference = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v @ serde_json::Value::Object(_)) => {
                serde_json::from_value(v).map_err(|e| TokenError::Malformed { reason: e.to_string() })?
            }
            Ok(other) => {
                return Err(TokenError::Malformed {
                    reason: format!("expected a JSON object, got {}", json_kind(&other)),
                });
            }
            Err(e) => return Err(TokenError::Malformed { reason: format!("not JSON ({e})") }),
        };
        let raw = RawTokenResponse {
            access_token: r.access_token,
            token_type: r.token_type,
            expires_in: r.expires_in,
            refresh_token: r.refresh_token,
            id_token: r.id_token,
            scope: r.scope,
        };
        token_set(raw, now, requested)
    }

    fn same_as_reference(body: &[u8]) {
        let requested = Scopes::parse("openid profile");
        let mut r = http::Response::new(body.to_vec());
        *r.status_mut() = http::StatusCode::OK;
        assert_eq!(
            parse_token_response(&r, now(), &requested),
            reference_parse(body, now(), &requested),
            "body: {:?}",
            String::from_utf8_lossy(body)
        );
    }

    #[test]
    fn one_pass_parsing_matches_the_reference_on_edge_cases() {
        for body in [
            &br#"{"access_token":"a","token_type":"Bearer"}"#[..],
            br#"{"access_token":"a","access_token":"b","token_type":"bearer","expires_in":"60"}"#,
            br#"{"access_token":"a","token_type":"Bearer","access_token":5}"#,
            br#"{"acc\u0065ss_token":"a","token_type":"Bearer","scope":null,"id_token":null}"#,
            br#"{"access_token":"a","token_type":"Bearer","x":{"y":[1,2,{"z":"\ud800"}]}}"#,
            br#"{"access_token":"a","token_type":"Bearer","x":"\u00e9"}"#,
            b"{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"x\":\"\xff\"}",
            br#"{"access_token":"a","token_type":"Bearer","x":1e400}"#,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":1.5}"#,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":[1]}"#,
            br#"{"access_token":"a","token_type":"Bearer"} x"#,
            br#"{"access_token":"a","token_type":"Bearer",}"#,
            br#"[{"access_token":"a"}]"#,
            br#"[1,"\ud800"]"#,
            b"null",
            b"true",
            b"-1",
            b"1.5",
            br#""s""#,
            b"",
            b"{",
            b"{}",
            br#"{"scope":"openid","scope":7,"access_token":"a","token_type":"Bearer"}"#,
        ] {
            same_as_reference(body);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn one_pass_parsing_matches_the_reference(
            members in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "access_token", "token_type", "expires_in", "refresh_token", "id_token", "scope",
                        "error", "x", "acc\\u0065ss_token",
                    ]),
                    proptest::sample::select(vec![
                        "\"a\"", "\"Bearer\"", "\"\"", "null", "true", "0", "3600", "\"3600\"", "-1", "1e3",
                        "1e400", "[1,{\"a\":null}]", "{\"b\":[]}", "\"\\ud800\"", "\"\\u00e9 \\n\"",
                        "\"openid profile\"", "18446744073709551616",
                    ]),
                ),
                0..8,
            ),
            tail in proptest::sample::select(vec!["", " ", "x", ",", "}"]),
            cut in proptest::option::of(0usize..200),
        ) {
            let mut body = String::from("{");
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!("\"{k}\":{v}"));
            }
            body.push('}');
            body.push_str(tail);
            let mut bytes = body.into_bytes();
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            same_as_reference(&bytes);
        }

        #[test]
        fn one_pass_parsing_matches_the_reference_on_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)
        ) {
            same_as_reference(&bytes);
        }
    }
}
