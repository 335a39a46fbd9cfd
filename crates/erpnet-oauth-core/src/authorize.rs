//! The one-shot login, as a typestate: [`AuthorizationRequest`] → [`PendingLogin`] → [`CodeExchange`] →
//! [`TokenExchange`] → [`Login`]. Each step consumes the previous value, so a callback cannot be handled
//! without the pending login it belongs to, and a code cannot be exchanged twice (catalogue C6).

use crate::config::{AuthMethod, ClientConfig};
use crate::encode::{parse_form, query_string};
use crate::error::OAuthError;
use crate::id_token::{IdTokenClaims, IdTokenError};
use crate::random::{RANDOM_BYTES, RandomError, RandomSource, random_string};
use crate::safe_text::escape;
use crate::scope::Scopes;
use crate::secret::{AuthorizationCode, IdToken, PkceVerifier, constant_time_eq};
use crate::token::{TokenError, TokenSet, parse_token_response};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// The `response_type` of the authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResponseType {
    /// `code`: the authorization code flow (default).
    #[default]
    Code,
    /// `code id_token`: the hybrid flow of the seed; needs a nonce (catalogue A4).
    CodeIdToken,
}

impl ResponseType {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Code => "code",
            ResponseType::CodeIdToken => "code id_token",
        }
    }
}

/// The `response_mode` of the authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResponseMode {
    /// `query`: the callback's parameters in the redirect URI's query (the seed's callback).
    Query,
    /// `form_post`: the parameters POSTed as a form to the redirect URI.
    FormPost,
    /// `fragment`: in the URI fragment; a browser application must pass them on as a query string.
    Fragment,
}

impl ResponseMode {
    fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query",
            ResponseMode::FormPost => "form_post",
            ResponseMode::Fragment => "fragment",
        }
    }
}

/// Errors while building the authorization request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No redirect URI was configured.
    #[error("a login needs the redirect URI registered for the trusted application")]
    MissingRedirectUri,
    /// `code id_token` was asked for without a nonce (catalogue A4).
    #[error("response_type `code id_token` requires a nonce")]
    HybridWithoutNonce,
    /// PKCE was turned off for a public client.
    #[error("a public client (no secret) must use PKCE")]
    PublicClientWithoutPkce,
    /// An extra parameter would replace one the protocol sets.
    #[error("the extra parameter `{0}` is set by the login itself and cannot be overridden")]
    ReservedParameter(String),
    /// A state or nonce given explicitly is empty.
    #[error("an explicit {0} must not be empty")]
    EmptyValue(&'static str),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A choice between a generated value (default) and one given by the caller. `Debug` hides a given
/// value: it is a state or a nonce.
#[derive(Clone, Default)]
enum Value {
    #[default]
    Generate,
    Given(String),
    Omit,
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Value::Generate => "Generate",
            Value::Given(_) => "Given([redacted])",
            Value::Omit => "Omit",
        })
    }
}

const RESERVED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
];

/// Builds the authorization request of a login (catalogue A).
///
/// Defaults: `response_type=code`, the seed's scopes `openid profile offline_access DomainApi`, a fresh
/// state, a fresh nonce (when `openid` is asked for) and PKCE S256, all from 32 random bytes. `Debug`
/// hides a state or nonce given with [`Self::state`] or [`Self::nonce`].
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    response_type: ResponseType,
    response_mode: Option<ResponseMode>,
    scopes: String,
    state: Value,
    nonce: Value,
    pkce: bool,
    prompt: Option<String>,
    extra: Vec<(String, String)>,
}

impl Default for AuthorizationRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorizationRequest {
    /// A request with the defaults above.
    pub fn new() -> Self {
        AuthorizationRequest {
            response_type: ResponseType::Code,
            response_mode: None,
            scopes: "openid profile offline_access DomainApi".to_owned(),
            state: Value::Generate,
            nonce: Value::Generate,
            pkce: true,
            prompt: None,
            extra: Vec::new(),
        }
    }

    /// The response type.
    pub fn response_type(mut self, rt: ResponseType) -> Self {
        self.response_type = rt;
        self
    }

    /// The response mode (omitted by default: the server's default for the response type).
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = Some(mode);
        self
    }

    /// The scopes, space-separated, sent in the order given.
    pub fn scope(mut self, scopes: &str) -> Self {
        self.scopes = scopes.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        self
    }

    /// An explicit state instead of a generated one. Only for reproducing a known exchange: a state must
    /// be unguessable and single-use (catalogue A3).
    pub fn state(mut self, state: &str) -> Self {
        self.state = Value::Given(state.to_owned());
        self
    }

    /// An explicit nonce instead of a generated one (same caution as [`Self::state`]).
    pub fn nonce(mut self, nonce: &str) -> Self {
        self.nonce = Value::Given(nonce.to_owned());
        self
    }

    /// Sends no nonce. Refused when building a `code id_token` request (catalogue A4).
    pub fn without_nonce(mut self) -> Self {
        self.nonce = Value::Omit;
        self
    }

    /// Turns PKCE off (only to reproduce the seed's request exactly; refused for public clients).
    /// Confidential clients should keep it on.
    pub fn without_pkce(mut self) -> Self {
        self.pkce = false;
        self
    }

    /// `prompt`, e.g. `login` to force the login form.
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.prompt = Some(prompt.to_owned());
        self
    }

    /// Another parameter, passed through as given (catalogue A5). Parameters the login sets itself are
    /// refused when building.
    pub fn extra(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Builds the URL to send the browser to and the pending login that alone can handle its callback.
    pub fn build(
        self,
        client: &ClientConfig,
        rng: &mut dyn RandomSource,
    ) -> Result<PendingLogin, BuildError> {
        let redirect_uri = client.redirect_uri().ok_or(BuildError::MissingRedirectUri)?.to_owned();
        if let Some((name, _)) = self.extra.iter().find(|(n, _)| RESERVED.contains(&n.as_str())) {
            return Err(BuildError::ReservedParameter(name.clone()));
        }
        if !self.pkce && client.auth_method() == AuthMethod::None {
            return Err(BuildError::PublicClientWithoutPkce);
        }
        let wants_openid = self.scopes.split(' ').any(|s| s == "openid");
        let nonce_generated = matches!(self.nonce, Value::Generate)
            && (wants_openid || self.response_type == ResponseType::CodeIdToken);
        let empty_state = matches!(&self.state, Value::Given(s) if s.is_empty());
        let empty_nonce = matches!(&self.nonce, Value::Given(s) if s.is_empty());
        // `code id_token` without a nonce (a generated one always exists for it).
        let hybrid_without_nonce =
            self.response_type == ResponseType::CodeIdToken && matches!(self.nonce, Value::Omit);
        let checks_pass = !(empty_state || empty_nonce || hybrid_without_nonce);
        // One read of the random source for the state, nonce and verifier (one system call instead of three
        // with the OS source); the values are taken from it in the same order as before. Only when every other
        // check passes, so that the errors and their order are unchanged.
        let mut rng = Prefetched::new(rng);
        if checks_pass {
            let values = usize::from(matches!(self.state, Value::Generate | Value::Omit))
                + usize::from(nonce_generated)
                + usize::from(self.pkce);
            rng.prefetch(values * RANDOM_BYTES)?;
        }
        let rng: &mut dyn RandomSource = &mut rng;
        let state = match self.state {
            Value::Given(s) if s.is_empty() => return Err(BuildError::EmptyValue("state")),
            Value::Given(s) => s,
            Value::Generate | Value::Omit => random_string(rng)?,
        };
        let nonce = match self.nonce {
            Value::Given(s) if s.is_empty() => return Err(BuildError::EmptyValue("nonce")),
            Value::Given(s) => Some(s),
            Value::Generate if wants_openid || self.response_type == ResponseType::CodeIdToken => {
                Some(random_string(rng)?)
            }
            Value::Generate | Value::Omit => None,
        };
        if self.response_type == ResponseType::CodeIdToken && nonce.is_none() {
            return Err(BuildError::HybridWithoutNonce);
        }
        let verifier = if self.pkce { Some(PkceVerifier::generate(rng)?) } else { None };
        let challenge = verifier.as_ref().map(PkceVerifier::s256_challenge);

        let mut pairs: Vec<(&str, &str)> = vec![
            ("client_id", client.client_id()),
            ("redirect_uri", &redirect_uri),
            ("response_type", self.response_type.as_str()),
            ("scope", &self.scopes),
        ];
        if let Some(n) = &nonce {
            pairs.push(("nonce", n));
        }
        pairs.push(("state", &state));
        if let Some(c) = &challenge {
            pairs.push(("code_challenge", c));
            pairs.push(("code_challenge_method", "S256"));
        }
        if let Some(m) = self.response_mode {
            pairs.push(("response_mode", m.as_str()));
        }
        if let Some(p) = &self.prompt {
            pairs.push(("prompt", p));
        }
        pairs.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));

        let url = authorize_url(&client.endpoints().authorization, &query_string(pairs));
        Ok(PendingLogin {
            url,
            state,
            nonce,
            verifier,
            redirect_uri,
            response_type: self.response_type,
            scopes: Scopes::parse(&self.scopes),
        })
    }
}

/// The authorization endpoint with `query` appended to its own query, if any.
fn authorize_url(endpoint: &url::Url, query: &str) -> String {
    if endpoint.fragment().is_some() {
        return authorize_url_reparsed(endpoint, query);
    }
    // `query` is percent-encoded already (only unreserved characters, `%XX`, `=` and `&`), so the URL parser
    // would leave it as it is: appending it gives the same string without parsing it again.
    let mut url = String::with_capacity(endpoint.as_str().len() + 1 + query.len());
    url.push_str(endpoint.as_str());
    match endpoint.query() {
        Some("") => {}
        Some(_) => url.push('&'),
        None => url.push('?'),
    }
    url.push_str(query);
    url
}

/// [`authorize_url`] through the URL parser (for an endpoint with a fragment, which stays last).
fn authorize_url_reparsed(endpoint: &url::Url, query: &str) -> String {
    let mut url = endpoint.clone();
    let existing = url.query().map(str::to_owned);
    url.set_query(Some(&match existing {
        Some(q) if !q.is_empty() => format!("{q}&{query}"),
        _ => query.to_owned(),
    }));
    url.into()
}

/// A random source read once up front for all the values of a login, then served in order.
struct Prefetched<'a> {
    inner: &'a mut dyn RandomSource,
    buffer: [u8; 3 * RANDOM_BYTES],
    filled: usize,
    taken: usize,
}

impl<'a> Prefetched<'a> {
    fn new(inner: &'a mut dyn RandomSource) -> Self {
        Prefetched { inner, buffer: [0; 3 * RANDOM_BYTES], filled: 0, taken: 0 }
    }

    fn prefetch(&mut self, len: usize) -> Result<(), RandomError> {
        let len = len.min(self.buffer.len());
        if let Some(dest) = self.buffer.get_mut(..len) {
            self.inner.fill_bytes(dest)?;
            self.filled = len;
        }
        Ok(())
    }
}

impl RandomSource for Prefetched<'_> {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        match self.buffer.get(self.taken..self.filled).and_then(|rest| rest.get(..dest.len())) {
            Some(bytes) => {
                dest.copy_from_slice(bytes);
                self.taken += dest.len();
                Ok(())
            }
            None => self.inner.fill_bytes(dest),
        }
    }
}

impl std::fmt::Debug for Prefetched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetched").finish_non_exhaustive()
    }
}

/// A login waiting for its callback. Holds the state, nonce and PKCE verifier, so it is as secret as a
/// password until the login ends; it serializes (for web applications that keep it in a server-side
/// session) and its `Debug` shows nothing secret. It is not `Clone`: handling its callback consumes it, so
/// a login is finished at most once.
#[derive(Serialize, Deserialize)]
pub struct PendingLogin {
    url: String,
    state: String,
    nonce: Option<String>,
    verifier: Option<PkceVerifier>,
    redirect_uri: String,
    response_type: ResponseType,
    scopes: Scopes,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("redirect_uri", &self.redirect_uri)
            .field("response_type", &self.response_type)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The callback as the redirect URI received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback<'a> {
    /// The query string of a GET to the redirect URI (with or without the leading `?`), as in the seed.
    Query(&'a str),
    /// The full URL the browser was redirected to.
    Url(&'a str),
    /// The `application/x-www-form-urlencoded` body of a `form_post` callback.
    FormPost(&'a [u8]),
}

/// Tells a login's callback from the other requests a loopback listener receives (catalogue B9). Holds the
/// login's state: its `Debug` does not show it.
#[derive(Clone)]
pub struct CallbackFilter {
    path: String,
    state: String,
}

impl std::fmt::Debug for CallbackFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackFilter").field("path", &self.path).finish_non_exhaustive()
    }
}

impl CallbackFilter {
    /// What to do with a request: `method`, the request `target` (path and query) and the body. Only a
    /// `GET` with a query, or a `POST` with a form body (`form_post`), to the redirect URI's path,
    /// carrying exactly one `state` equal to the login's, is the callback; anything else (another path, a
    /// favicon, a page that embeds the callback address, a stale callback of another login) is answered
    /// with the status given and the listener keeps waiting. The callback may carry an `error`: it is the
    /// login's answer all the same, and [`PendingLogin::handle_callback`] says what it means.
    pub fn judge<'a>(&self, method: &str, target: &'a str, body: &'a [u8]) -> ListenerRequest<'a> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        if path != self.path {
            return ListenerRequest::Ignore {
                status: 404,
                reason: "This address is not the login's callback.",
            };
        }
        let (callback, params) = match (method, query) {
            ("GET", Some(q)) if !q.is_empty() => (Callback::Query(q), q.as_bytes()),
            ("POST", _) if !body.is_empty() => (Callback::FormPost(body), body),
            ("GET" | "POST", _) => {
                return ListenerRequest::Ignore {
                    status: 400,
                    reason: "This address expects the login callback's parameters.",
                };
            }
            _ => return ListenerRequest::Ignore { status: 405, reason: "Method not allowed." },
        };
        let mut states = parse_form(params).into_iter().filter(|(k, _)| k == "state");
        match (states.next(), states.next()) {
            (Some((_, state)), None) if constant_time_eq(state.as_bytes(), self.state.as_bytes()) => {
                ListenerRequest::Callback(callback)
            }
            _ => ListenerRequest::Ignore {
                status: 400,
                reason: "This is not the callback of the login in progress.",
            },
        }
    }
}

/// What a loopback listener does with a request ([`CallbackFilter::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRequest<'a> {
    /// This login's callback: stop listening and finish the login with it.
    Callback(Callback<'a>),
    /// Not this login's callback: answer with `status` and a page saying `reason`, and keep waiting.
    Ignore {
        /// The HTTP status to answer with.
        status: u16,
        /// A sentence for the page.
        reason: &'static str,
    },
}

/// Why a callback was rejected. No token request is produced for a rejected callback. `Display` shows the
/// callback's text escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The server (or the user) refused: `error=access_denied&error_description=...` (catalogue B3).
    #[error("the authorization was refused: {0}")]
    Authorization(OAuthError),
    /// The callback's state is not the one sent (catalogue B1): possibly a forged callback.
    #[error("the callback's state does not match the login's; the callback is not this login's")]
    StateMismatch,
    /// The callback has no state (catalogue B2).
    #[error("the callback has no state")]
    StateMissing,
    /// `iss` names another issuer (catalogue B4, RFC 9207): a mix-up attack.
    #[error("the callback's issuer `{}` is not `{}`", escape(.found), escape(.expected))]
    IssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// The issuer received.
        found: String,
    },
    /// `iss` is missing although the server advertises it (catalogue B4).
    #[error("the callback has no `iss` although the server advertises RFC 9207 issuer identification")]
    IssuerMissing,
    /// A parameter is repeated (catalogue B5).
    #[error("the callback repeats the parameter `{}`", escape(.0))]
    Repeated(String),
    /// Neither `code` nor `error` (catalogue B5).
    #[error("the callback has neither `code` nor `error`")]
    NoCodeOrError,
    /// The hybrid flow (`code id_token`) was asked for and the callback has no `id_token` (catalogue B8).
    #[error("the login asked for `code id_token` and the callback has no `id_token`")]
    IdTokenMissing,
    /// The callback URL could not be read.
    #[error("the callback URL is malformed: {}", escape(.0))]
    MalformedUrl(String),
}

impl PendingLogin {
    /// The URL to send the user's browser to.
    pub fn authorize_url(&self) -> &str {
        &self.url
    }

    /// The state sent; web applications may key their server-side sessions by it.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The nonce sent, if any.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// The response type asked for.
    pub fn response_type(&self) -> ResponseType {
        self.response_type
    }

    /// The redirect URI this login sends the browser back to.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// What a loopback listener waiting for this login's callback does with a request it received
    /// (catalogue B9): see [`CallbackFilter::judge`].
    pub fn judge_request<'a>(&self, method: &str, target: &'a str, body: &'a [u8]) -> ListenerRequest<'a> {
        self.callback_filter().judge(method, target, body)
    }

    /// What tells this login's callback from other requests, for a listener to keep (and share between
    /// the threads serving its connections) while the pending login waits for the callback.
    pub fn callback_filter(&self) -> CallbackFilter {
        let path = url::Url::parse(&self.redirect_uri).map(|u| u.path().to_owned()).unwrap_or_default();
        CallbackFilter { path, state: self.state.clone() }
    }

    /// Checks the callback (catalogue B): no repeated parameter, the state, then `iss`, then `error` or
    /// `code`. Consumes the pending login either way: a callback is handled once.
    pub fn handle_callback(
        self,
        client: &ClientConfig,
        callback: Callback<'_>,
    ) -> Result<CodeExchange, CallbackError> {
        let params = match callback {
            Callback::Query(q) => parse_form(q.strip_prefix('?').unwrap_or(q).as_bytes()),
            Callback::FormPost(body) => parse_form(body),
            Callback::Url(u) => {
                let url = url::Url::parse(u).map_err(|e| CallbackError::MalformedUrl(e.to_string()))?;
                parse_form(url.query().unwrap_or("").as_bytes())
            }
        };
        let mut seen: Vec<&str> = Vec::with_capacity(params.len());
        for (k, _) in &params {
            if seen.contains(&k.as_str()) {
                return Err(CallbackError::Repeated(crate::error::excerpt(k, 60)));
            }
            seen.push(k);
        }
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match get("state") {
            None => return Err(CallbackError::StateMissing),
            Some(s) if !constant_time_eq(s.as_bytes(), self.state.as_bytes()) => {
                return Err(CallbackError::StateMismatch);
            }
            Some(_) => {}
        }
        match get("iss") {
            Some(iss) if iss != client.issuer() => {
                return Err(CallbackError::IssuerMismatch {
                    expected: client.issuer().to_owned(),
                    found: crate::error::excerpt(iss, 200),
                });
            }
            None if client.iss_parameter_supported() => return Err(CallbackError::IssuerMissing),
            _ => {}
        }
        if let Some(error) = get("error") {
            return Err(CallbackError::Authorization(OAuthError {
                error: error.to_owned(),
                description: get("error_description").map(str::to_owned),
                uri: get("error_uri").map(str::to_owned),
            }));
        }
        let code = match get("code") {
            Some(c) if !c.is_empty() => AuthorizationCode::new(c),
            _ => return Err(CallbackError::NoCodeOrError),
        };
        let front = match (get("id_token"), self.response_type) {
            (Some(t), _) => FrontChannel::Unverified(IdToken::new(t)),
            (None, ResponseType::CodeIdToken) => return Err(CallbackError::IdTokenMissing),
            (None, _) => FrontChannel::None,
        };
        Ok(CodeExchange {
            code,
            front,
            verifier: self.verifier,
            redirect_uri: self.redirect_uri,
            nonce: self.nonce,
            scopes: self.scopes,
        })
    }
}

/// The ID token of a hybrid (`code id_token`) callback, and whether it was verified. `Debug` shows no
/// secret (the token redacts itself, the claims hide the nonce).
#[derive(Debug, Clone)]
pub(crate) enum FrontChannel {
    /// A `code` callback: none.
    None,
    /// Received, not yet verified.
    Unverified(IdToken),
    /// Verified (catalogue B7): its claims.
    Verified(Box<IdTokenClaims>),
}

/// An authorization code ready to be exchanged, once. `Debug` shows neither the code, the PKCE verifier
/// nor the nonce.
pub struct CodeExchange {
    code: AuthorizationCode,
    pub(crate) front: FrontChannel,
    verifier: Option<PkceVerifier>,
    redirect_uri: String,
    nonce: Option<String>,
    scopes: Scopes,
}

impl std::fmt::Debug for CodeExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeExchange")
            .field("front", &self.front)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl CodeExchange {
    /// The ID token that came with the callback in the hybrid flow and is not verified yet, if any. It must
    /// be verified ([`Self::verify_front_channel`]: signature, `c_hash`, nonce) before the code is
    /// exchanged (catalogue B7); a login whose front-channel ID token was not verified yields no tokens
    /// ([`Login::verify`]).
    pub fn front_channel_id_token(&self) -> Option<&IdToken> {
        match &self.front {
            FrontChannel::Unverified(t) => Some(t),
            _ => None,
        }
    }

    /// The code, for checking a front-channel ID token's `c_hash`.
    pub fn code(&self) -> &AuthorizationCode {
        &self.code
    }

    /// The nonce the login sent.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The token request (catalogue C1): `grant_type=authorization_code`, the code, the redirect URI
    /// byte-identical to the authorization request's, the PKCE verifier, and the client's authentication.
    /// Consumes the exchange: the code cannot be sent twice, even after a failure (catalogue C6).
    pub fn into_request(self, client: &ClientConfig) -> (http::Request<Vec<u8>>, TokenExchange) {
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", self.code.secret()),
            ("redirect_uri", self.redirect_uri.as_str()),
        ];
        if let Some(v) = &self.verifier {
            params.push(("code_verifier", v.secret()));
        }
        let request = client.form_post(&client.token_uri(), &params);
        (request, TokenExchange { nonce: self.nonce, scopes: self.scopes, front: self.front })
    }
}

/// A code exchange whose request went out, waiting for its response. `Debug` hides the nonce.
pub struct TokenExchange {
    nonce: Option<String>,
    scopes: Scopes,
    front: FrontChannel,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("scopes", &self.scopes)
            .field("front", &self.front)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// Parses the token response received at `now` (catalogue C2-C4).
    pub fn handle_response<B: AsRef<[u8]>>(
        self,
        response: &http::Response<B>,
        now: SystemTime,
    ) -> Result<Login, TokenError> {
        let tokens = parse_token_response(response, now, &self.scopes)?;
        if self.scopes.contains("openid") && tokens.id_token.is_none() {
            return Err(TokenError::MissingIdToken);
        }
        Ok(Login { tokens, nonce: self.nonce, front: self.front })
    }
}

/// The token endpoint's answer to a login, not yet checked: its tokens come out only through
/// [`Login::verify`], once its ID token (and the hybrid flow's front-channel one) passed every check.
/// `Debug` hides the nonce (the tokens redact themselves).
pub struct Login {
    tokens: TokenSet,
    nonce: Option<String>,
    front: FrontChannel,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("tokens", &self.tokens)
            .field("front", &self.front)
            .finish_non_exhaustive()
    }
}

/// A login whose ID token passed verification: the tokens to store, and the user's claims.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedLogin {
    /// The tokens. Store them before using them.
    pub tokens: TokenSet,
    /// The verified ID token's claims (`sub` is the user); `None` when no ID token was issued (no
    /// `openid` scope).
    pub claims: Option<IdTokenClaims>,
}

impl Login {
    /// The ID token to verify, if any: the JWKS must hold its key ([`crate::KeyCache::poll_fetch`]).
    pub fn id_token(&self) -> Option<&IdToken> {
        self.tokens.id_token.as_ref()
    }

    /// The nonce the login sent, which the ID token must carry.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The tokens as the token endpoint sent them, **not verified**: to look at (a test, a trace), never to
    /// use or store. [`Self::verify`] is the way to have them.
    pub fn unverified_tokens(&self) -> &TokenSet {
        &self.tokens
    }

    /// Verifies the login's ID token (catalogue D: signature with `keys`, issuer, audience, times on the
    /// client's clock with its skew, the nonce, `at_hash` against the access token) and hands out the
    /// tokens. A hybrid login's front-channel ID token must have been verified
    /// ([`CodeExchange::verify_front_channel`]) and name the same `iss` and `sub` (catalogue B8). Without
    /// an ID token (no `openid` scope: the token endpoint's answer was already refused when `openid` was
    /// asked for and none came) there is nothing to verify.
    pub fn verify(
        self,
        client: &ClientConfig,
        keys: &crate::JwkSet,
        now: SystemTime,
    ) -> Result<VerifiedLogin, IdTokenError> {
        let front = match self.front {
            FrontChannel::Unverified(_) => return Err(IdTokenError::FrontChannelUnverified),
            FrontChannel::Verified(claims) => Some(claims),
            FrontChannel::None => None,
        };
        let claims = match &self.tokens.id_token {
            Some(token) => {
                let expect = crate::IdTokenExpectations::new()
                    .nonce(self.nonce.as_deref())
                    .access_token(&self.tokens.access_token);
                Some(crate::verify_id_token(token, client, keys, &expect, now)?)
            }
            None => None,
        };
        if let Some(front) = &front {
            let back = claims.as_ref().ok_or(IdTokenError::Missing)?;
            if back.iss != front.iss {
                return Err(IdTokenError::FrontChannelMismatch { claim: "iss" });
            }
            if back.sub != front.sub {
                return Err(IdTokenError::FrontChannelMismatch { claim: "sub" });
            }
        }
        Ok(VerifiedLogin { tokens: self.tokens, claims })
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a test fails by panicking
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use crate::random::SeededRandom;

    // Catalogue B9: only this login's callback ends the wait.
    #[test]
    fn a_listener_takes_only_this_logins_callback() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app")
            .redirect_uri("http://127.0.0.1:8400/signin-callback")
            .build()
            .unwrap();
        let pending =
            AuthorizationRequest::new().state("s-1").build(&client, &mut SeededRandom::new(1)).unwrap();
        let ignored =
            |method: &str, target: &str, body: &[u8]| match pending.judge_request(method, target, body) {
                ListenerRequest::Ignore { status, .. } => status,
                ListenerRequest::Callback(c) => panic!("{method} {target} was taken as the callback: {c:?}"),
            };
        assert_eq!(ignored("GET", "/favicon.ico", b""), 404);
        assert_eq!(ignored("GET", "/signin-callback/x?state=s-1&code=c", b""), 404);
        assert_eq!(ignored("GET", "/signin-callback", b""), 400);
        assert_eq!(ignored("GET", "/signin-callback?x=1", b""), 400, "an embedded <img src=...?x=1>");
        assert_eq!(ignored("GET", "/signin-callback?code=c&state=other", b""), 400, "another login's");
        assert_eq!(ignored("GET", "/signin-callback?code=c&state=s-1&state=s-1", b""), 400, "state repeated");
        assert_eq!(ignored("GET", "/signin-callback?code=c&state=s-1x", b""), 400);
        assert_eq!(ignored("POST", "/signin-callback", b"code=c&state=s-2"), 400);
        assert_eq!(ignored("PUT", "/signin-callback?code=c&state=s-1", b""), 405);
        assert_eq!(
            pending.judge_request("GET", "/signin-callback?code=c&state=s-1", b""),
            ListenerRequest::Callback(Callback::Query("code=c&state=s-1"))
        );
        assert_eq!(
            pending.judge_request("GET", "/signin-callback?error=access_denied&state=s-1", b""),
            ListenerRequest::Callback(Callback::Query("error=access_denied&state=s-1")),
            "a refusal is this login's answer too"
        );
        assert_eq!(
            pending.judge_request("POST", "/signin-callback", b"code=c&state=s-1"),
            ListenerRequest::Callback(Callback::FormPost(b"code=c&state=s-1"))
        );
    }

    #[test]
    fn appending_the_query_gives_what_the_url_parser_gives() {
        let query = "client_id=my.trusted.app%2Ffirst&scope=openid%20profile&state=a-b_c~d";
        for endpoint in [
            "https://demodb.my.erp.net/id/connect/authorize",
            "https://demodb.my.erp.net/id/connect/authorize?",
            "https://demodb.my.erp.net/id/connect/authorize?tenant=x%20y&b",
            "https://demodb.my.erp.net:8443/id/connect/authorize?a=%C3%A9",
            "http://127.0.0.1:5000/authorize#frag",
        ] {
            let endpoint = url::Url::parse(endpoint).unwrap();
            assert_eq!(
                authorize_url(&endpoint, query),
                authorize_url_reparsed(&endpoint, query),
                "{endpoint}"
            );
        }
    }

    /// The random values are read in one go, in the order they were read one by one.
    #[test]
    fn one_read_gives_the_values_of_three() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app")
            .redirect_uri("http://localhost/cb")
            .build()
            .unwrap();
        let pending = AuthorizationRequest::new().build(&client, &mut SeededRandom::new(9)).unwrap();
        let mut rng = SeededRandom::new(9);
        let (state, nonce, verifier) = (
            random_string(&mut rng).unwrap(),
            random_string(&mut rng).unwrap(),
            random_string(&mut rng).unwrap(),
        );
        assert_eq!(pending.state(), state);
        assert_eq!(pending.nonce(), Some(nonce.as_str()));
        assert_eq!(pending.verifier.as_ref().map(PkceVerifier::secret), Some(verifier.as_str()));

        /// Counts the reads and serves a fixed number of bytes.
        struct Counting(usize, usize);
        impl RandomSource for Counting {
            fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
                self.0 += 1;
                if dest.len() > self.1 {
                    return Err(RandomError("used up".to_owned()));
                }
                self.1 -= dest.len();
                Ok(())
            }
        }
        let mut rng = Counting(0, 96);
        AuthorizationRequest::new().build(&client, &mut rng).unwrap();
        assert_eq!((rng.0, rng.1), (1, 0));
        // Too few bytes: the random source's error, as before.
        let mut rng = Counting(0, 64);
        assert_eq!(
            AuthorizationRequest::new().build(&client, &mut rng).unwrap_err(),
            BuildError::Random(RandomError("used up".to_owned()))
        );
        // A failed check still comes first, and reads values one at a time.
        let mut rng = Counting(0, 96);
        assert_eq!(
            AuthorizationRequest::new().nonce("").build(&client, &mut rng).unwrap_err(),
            BuildError::EmptyValue("nonce")
        );
        assert_eq!(rng.0, 1);
        let mut rng = Counting(0, 96);
        let pending =
            AuthorizationRequest::new().without_nonce().state("s").build(&client, &mut rng).unwrap();
        assert_eq!((rng.0, rng.1, pending.nonce()), (1, 64, None));
    }
}
