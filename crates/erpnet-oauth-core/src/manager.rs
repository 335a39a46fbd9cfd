//! The long-lived token manager: an input/output machine that keeps one login's tokens usable for weeks.
//!
//! Adapters normally do not drive it by hand: the operations of [`crate::lifecycle`] do, and an adapter
//! only carries out their steps. This page documents the machine itself, for those operations, for the
//! property tests and for anyone writing a driver of their own.
//!
//! # Call order
//!
//! The adapter owns the clock, the sockets and the store, and drives the machine:
//!
//! 1. For each API call, [`TokenManager::begin_call`], then [`TokenManager::authorize`] (or
//!    [`TokenManager::access_token`]): `Ready` means send; `Wait` means a renewal is under way.
//! 2. After every input, drain [`TokenManager::poll_output`] until `None`:
//!    - [`Output::Refresh`]: the renewal's request. Lock the store, re-read it and report what it holds
//!      with [`TokenManager::handle_reloaded`], which says whether to send at all (another process may
//!      have renewed meanwhile, or a request whose answer was lost may have rotated the refresh token:
//!      catalogue E14). Send it and feed the answer to [`TokenManager::handle_refresh_response`] (or the
//!      transport failure to [`TokenManager::handle_refresh_failure`]).
//!    - [`Output::FetchKeys`]: a refreshed ID token needs the issuer's keys: send the JWKS request and
//!      feed the answer to [`TokenManager::handle_keys_response`].
//!    - [`Output::Persist`]: write these tokens to the store, then call [`TokenManager::handle_persisted`].
//!      New tokens are not handed out before that: a rotated refresh token is stored before it is used.
//!    - [`Output::Clear`]: the login is over (`invalid_grant`, or a refreshed ID token failed a security
//!      check): delete the stored tokens.
//! 3. Feed each API response to [`TokenManager::handle_api_response`]: `Retry` means authorize and send
//!    again (once, after a 401); `Done` carries the result.
//! 4. [`TokenManager::poll_timeout`] says when to call [`TokenManager::handle_timeout`] for a proactive
//!    refresh.
//!
//! # Invariants
//!
//! - At most one renewal request is in flight.
//! - **A renewal never leads straight to another** (catalogue E9): a token is refreshed when it expires
//!   within the margin ([`TokenSet::margin`]: the skew, but at most half the token's own lifetime), and a
//!   call that waited for a renewal uses what the renewal brought, fresh or not. **One API call causes at
//!   most one renewal**: a 401 to a call that already waited for one is returned, not renewed again, and
//!   once that renewal is over the call does not wait for another.
//! - A token known to be expired (or within the margin) is never handed out, except to a call that has
//!   just waited for the renewal that brought it.
//! - **Once a refresh grant is answered 200, the refresh token that was sent is never sent again**
//!   (catalogue E10). An answer that fails a later check is not replayed: a refresh token that can be read
//!   from it is kept; a security failure of its ID token (catalogue E4, E11) ends the login.
//! - **Tokens refused by a security check are never handed out.**
//! - Tokens are dropped only when the server answers `invalid_grant` (with a 4xx status; a 5xx keeps
//!   them), a refreshed ID token fails a security check, the adapter finds the shared store empty, or the
//!   user logs out.
//! - A login or logout drops the outputs not yet polled (they belong to the abandoned renewal). A logout
//!   waits for the renewal in flight ([`TokenManager::begin_logout`]), so that it revokes the latest
//!   refresh token (catalogue G4).
//! - A renewal failure is reported once to each call that began before it, unless newer tokens came
//!   in the meantime.
//! - A call is retried at most once.
//! - A token response without `expires_in` gets [`ManagerOptions::fallback_lifetime`] (catalogue E12).

use crate::api::{ApiError, check_api_response};
use crate::challenge::bearer_challenge;
use crate::config::ClientConfig;
use crate::error::OAuthError;
use crate::id_token::{IdTokenClaims, IdTokenError, IdTokenExpectations, verify_id_token};
use crate::jwks::KeyCache;
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken};
use crate::token::{Grant, TokenError, TokenSet, parse_token_response, salvage_refresh_token};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How the manager gets a new access token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// With the refresh token of a user's login (the seed's subject).
    RefreshToken,
    /// With `client_credentials`, for service applications: a new token is simply requested.
    ClientCredentials {
        /// The scopes to ask for.
        scopes: Scopes,
    },
}

/// The manager's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagerOptions {
    /// A token expiring within this margin is refreshed before use (catalogue E8). Default 60 s. For a
    /// token whose lifetime is short, the margin is at most half its lifetime ([`TokenSet::margin`]).
    pub skew: Duration,
    /// How tokens are renewed. Default: with the refresh token.
    pub renewal: Renewal,
    /// After a failed timer-driven refresh, the next timer-driven attempt waits this long. Default 10 s.
    pub retry_backoff: Duration,
    /// The lifetime given to an access token whose token response has no `expires_in` (catalogue E12):
    /// it is then refreshed like any other, instead of being used until the API refuses it. Default
    /// 300 s ([`Self::DEFAULT_FALLBACK_LIFETIME`]).
    pub fallback_lifetime: Duration,
}

impl ManagerOptions {
    /// The default [`Self::fallback_lifetime`]: 5 minutes. Short enough that a dead token is not used for
    /// long, long enough that a server which never says (RFC 6749 §5.1 only recommends `expires_in`) is
    /// not asked for a new token at every call.
    pub const DEFAULT_FALLBACK_LIFETIME: Duration = Duration::from_secs(300);

    /// The defaults with `renewal`.
    pub fn new(renewal: Renewal) -> Self {
        ManagerOptions { renewal, ..Self::default() }
    }

    /// Sets [`Self::skew`].
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Sets [`Self::retry_backoff`].
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Sets [`Self::fallback_lifetime`].
    pub fn fallback_lifetime(mut self, lifetime: Duration) -> Self {
        self.fallback_lifetime = lifetime;
        self
    }

    /// `tokens` as the manager keeps them: an access token without a known expiry, received at `now`,
    /// gets [`Self::fallback_lifetime`] (catalogue E12).
    pub fn with_expiry(&self, mut tokens: TokenSet, now: SystemTime) -> TokenSet {
        if tokens.expires_at.is_none() {
            let issued = tokens.issued_at.unwrap_or(now);
            tokens.issued_at = Some(issued);
            tokens.expires_at = issued.checked_add(self.fallback_lifetime);
        }
        tokens
    }
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            skew: Duration::from_secs(60),
            renewal: Renewal::RefreshToken,
            retry_backoff: Duration::from_secs(10),
            fallback_lifetime: Self::DEFAULT_FALLBACK_LIFETIME,
        }
    }
}

/// Identifies one renewal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefreshId(u64);

/// Why the user must log in again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginRequired {
    /// No tokens are held (never logged in, logged out, or cleared by another process).
    NoTokens,
    /// The access token is expired or refused and there is no refresh token to renew it.
    NoRefreshToken,
    /// The server rejected the refresh token (`invalid_grant`): it expired, was revoked, or the user
    /// logged out or changed password. The stored tokens were dropped.
    Rejected(OAuthError),
}

/// Why the manager could not provide a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// Log in again.
    #[error("{}", match .0 {
        LoginRequired::NoTokens => "not logged in".to_owned(),
        LoginRequired::NoRefreshToken => "the access token has expired and there is no refresh token".to_owned(),
        LoginRequired::Rejected(e) => format!("the refresh token was rejected ({e})"),
    })]
    LoginRequired(LoginRequired),
    /// The token endpoint answered with an error other than `invalid_grant`, or something malformed. The
    /// tokens are kept (after a malformed 200 answer, with the new refresh token when it could be read:
    /// catalogue E10).
    #[error("the refresh failed: {0}")]
    Token(TokenError),
    /// The refresh request did not get an answer (connection, timeout). The tokens are kept; try again
    /// (the next attempt re-reads the store first: catalogue E14).
    #[error("the refresh request failed: {}", crate::safe_text::escape(.0))]
    Transport(String),
    /// The new tokens could not be stored. They are kept in memory.
    #[error("the new tokens could not be stored: {0}")]
    Persist(PersistFailure),
    /// The ID token of a refresh answer failed a security check (its signature, or a changed `iss`,
    /// `sub` or `aud`: catalogue E4, E11). The tokens of that answer were never used, and the login was
    /// ended: log in again.
    #[error("the refreshed ID token was rejected ({0}); the login was ended")]
    IdTokenRejected(IdTokenError),
}

impl RefreshError {
    /// Whether the user must log in again.
    pub fn is_login_required(&self) -> bool {
        matches!(self, RefreshError::LoginRequired(_) | RefreshError::IdTokenRejected(_))
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RefreshError::Transport(_) => true,
            RefreshError::Token(e) => e.is_retryable(),
            RefreshError::Persist(failure) => failure.retryable,
            _ => false,
        }
    }
}

/// Why renewed tokens could not be stored ([`RefreshError::Persist`]), as the store said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistFailure {
    /// The store's message (escaped when displayed).
    pub reason: String,
    /// Whether trying again may succeed, as the store judged it ([`crate::StoreError::is_retryable`]): a
    /// shared store that was unreachable, or a save fenced because another instance stored newer tokens
    /// (which the next renewal adopts). A failed write to a file is not.
    pub retryable: bool,
}

impl PersistFailure {
    /// A failure the store does not expect to go away by trying again.
    pub fn new(reason: impl Into<String>) -> Self {
        PersistFailure { reason: reason.into(), retryable: false }
    }
}

impl From<&crate::StoreError> for PersistFailure {
    fn from(error: &crate::StoreError) -> Self {
        PersistFailure { reason: error.to_string(), retryable: error.is_retryable() }
    }
}

impl From<&str> for PersistFailure {
    fn from(reason: &str) -> Self {
        PersistFailure::new(reason)
    }
}

impl From<String> for PersistFailure {
    fn from(reason: String) -> Self {
        PersistFailure::new(reason)
    }
}

impl fmt::Display for PersistFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::safe_text::escape(&self.reason))
    }
}

/// What the manager asks of the adapter. Drain with [`TokenManager::poll_output`] after every input.
/// `Debug` shows the requests' method and URI only: their bodies hold the refresh token and the client
/// secret.
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Send this token request and feed back the answer with the same id (after re-reading the store:
    /// see the module docs).
    Refresh {
        /// The renewal.
        id: RefreshId,
        /// The request.
        request: http::Request<Vec<u8>>,
    },
    /// Send this JWKS request and feed back the answer with [`TokenManager::handle_keys_response`].
    FetchKeys {
        /// The renewal.
        id: RefreshId,
        /// The request.
        request: http::Request<Vec<u8>>,
    },
    /// Store these tokens, then call [`TokenManager::handle_persisted`] with the same id.
    Persist {
        /// The renewal that produced them.
        id: RefreshId,
        /// The tokens to store.
        tokens: TokenSet,
    },
    /// Delete the stored tokens: the login is over.
    Clear,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Refresh { id, request } => {
                write!(f, "Refresh({id:?}, {} {})", request.method(), request.uri())
            }
            Output::FetchKeys { id, request } => {
                write!(f, "FetchKeys({id:?}, {} {})", request.method(), request.uri())
            }
            Output::Persist { id, tokens } => {
                f.debug_struct("Persist").field("id", id).field("tokens", tokens).finish()
            }
            Output::Clear => f.write_str("Clear"),
        }
    }
}

/// The answer to [`TokenManager::authorize`] or [`TokenManager::access_token`].
#[derive(Debug)]
#[must_use]
pub enum Access<T> {
    /// Go ahead.
    Ready(T),
    /// A renewal (or a logout) is under way: drain the outputs (this caller may be the one to send it), or
    /// wait for the tokens to change, then ask again.
    Wait,
    /// No token can be had; the error says why.
    Failed(RefreshError),
}

/// What to do with an API response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ApiOutcome {
    /// The call is over; `Err` when the response was an error.
    Done(Result<(), ApiError>),
    /// The access token was refused: authorize the same call again (a renewal may be queued) and resend.
    Retry,
}

/// One API call's progress, created by [`TokenManager::begin_call`].
#[derive(Debug, Clone)]
pub struct ApiCall {
    failures_seen: u64,
    generation: Option<u64>,
    retried: bool,
    /// The renewal this call waited for (its own or another's).
    renewal: Option<RefreshId>,
}

impl ApiCall {
    /// Whether this call has already been retried once.
    pub fn retried(&self) -> bool {
        self.retried
    }

    /// Whether this call has waited for a renewal (its own or another's): it causes no other.
    pub fn renewed(&self) -> bool {
        self.renewal.is_some()
    }
}

#[derive(Debug)]
enum State {
    Idle,
    InFlight(RefreshId),
    /// The refresh was answered 200 with a new ID token, which is being verified (the keys may be
    /// fetched): `fetched` when a key fetch for it was answered.
    Verifying {
        id: RefreshId,
        tokens: TokenSet,
        fetch: KeyFetch,
    },
    Persisting(RefreshId, TokenSet, Option<RefreshError>),
    LoggingOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFetch {
    None,
    Sent,
    Answered,
    Failed,
}

/// Whether the adapter should send a renewal after re-reading a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Reloaded {
    /// The store holds the same tokens: send the request.
    Send,
    /// The store held newer tokens (another process renewed them), now adopted: do not send.
    Adopted,
    /// The id is not the renewal in flight: do not send.
    Stale,
}

/// Keeps one login's tokens usable: refreshes when needed, once at a time, and never loses a rotated
/// refresh token. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct TokenManager {
    client: Arc<ClientConfig>,
    options: ManagerOptions,
    tokens: Option<TokenSet>,
    generation: u64,
    rejected: bool,
    state: State,
    next_id: u64,
    failures: u64,
    last_failure: Option<RefreshError>,
    login_required: LoginRequired,
    retry_not_before: Option<SystemTime>,
    outputs: VecDeque<Output>,
    /// The access and refresh token the store holds as far as the manager knows: behind `tokens` after
    /// a failed `Persist`, so that re-reading them is not mistaken for another process's renewal.
    stored: Option<StoredPair>,
    /// Pairs whose write was abandoned before its outcome was known, since the last confirmed write: the
    /// store may hold any of them, and they are this manager's, not another process's.
    unconfirmed: Vec<StoredPair>,
    /// The issuer's signing keys, for the ID tokens of logins and refreshes.
    keys: KeyCache,
    /// A key fetch handed out by [`Self::poll_keys`] is under way.
    keys_fetching: bool,
}

type StoredPair = (AccessToken, Option<RefreshToken>);

fn pair(tokens: &TokenSet) -> StoredPair {
    (tokens.access_token.clone(), tokens.refresh_token.clone())
}

/// The answer to [`TokenManager::poll_keys`]. `Debug` shows a request's method and URI only.
#[must_use]
#[allow(clippy::large_enum_variant)] // returned and matched at once, like `Output`
pub enum Keys {
    /// Verify with [`TokenManager::keys`] now.
    Ready,
    /// Send this JWKS request, then feed the answer to [`TokenManager::handle_fetched_keys`].
    Fetch(http::Request<Vec<u8>>),
    /// Another caller's fetch is under way: wait for the manager to change, then ask again.
    Wait,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Ready => f.write_str("Ready"),
            Keys::Fetch(request) => write!(f, "Fetch({} {})", request.method(), request.uri()),
            Keys::Wait => f.write_str("Wait"),
        }
    }
}

impl TokenManager {
    /// A manager for `tokens` (already stored), or for none (login required, or client credentials).
    ///
    /// `client` may be shared (`Arc<ClientConfig>`) by the managers of many users.
    pub fn new(
        client: impl Into<Arc<ClientConfig>>,
        tokens: Option<TokenSet>,
        options: ManagerOptions,
    ) -> Self {
        TokenManager {
            client: client.into(),
            options,
            stored: tokens.as_ref().map(pair),
            unconfirmed: Vec::new(),
            tokens,
            generation: 0,
            rejected: false,
            state: State::Idle,
            next_id: 0,
            failures: 0,
            last_failure: None,
            login_required: LoginRequired::NoTokens,
            retry_not_before: None,
            outputs: VecDeque::new(),
            keys: KeyCache::new(),
            keys_fetching: false,
        }
    }

    /// The client configuration.
    pub fn client(&self) -> &ClientConfig {
        &self.client
    }

    /// The client configuration, to share.
    pub fn client_arc(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// The settings.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// The tokens in use (not those of a renewal still being verified or stored).
    pub fn tokens(&self) -> Option<&TokenSet> {
        self.tokens.as_ref()
    }

    /// Bumped whenever the tokens in use change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a renewal is in flight, being verified or being stored.
    pub fn is_renewing(&self) -> bool {
        matches!(self.state, State::InFlight(_) | State::Verifying { .. } | State::Persisting(..))
    }

    /// Whether a logout holds the manager ([`Self::begin_logout`]).
    pub fn is_logging_out(&self) -> bool {
        matches!(self.state, State::LoggingOut)
    }

    /// The issuer's signing keys held.
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Starts an API call.
    pub fn begin_call(&self) -> ApiCall {
        ApiCall { failures_seen: self.failures, generation: None, retried: false, renewal: None }
    }

    /// Marks every renewal failure so far as seen by `call` (it got the failure another way).
    pub fn mark_failures_seen(&self, call: &mut ApiCall) {
        call.failures_seen = self.failures;
    }

    /// A valid access token for `call` at `now`, queueing a renewal when it is missing, expired, within
    /// the margin, or was refused by the API, unless `call` has already waited for a renewal: then it
    /// gets what that renewal brought, and once it is over does not wait for another (catalogue E9).
    pub fn access_token(&mut self, call: &mut ApiCall, now: SystemTime) -> Access<AccessToken> {
        if self.failures > call.failures_seen {
            call.failures_seen = self.failures;
            if let Some(e) = &self.last_failure {
                return Access::Failed(e.clone());
            }
        }
        if matches!(self.state, State::LoggingOut) {
            // Waiting for a logout is not waiting for a renewal.
            return Access::Wait;
        }
        if let Some(id) = self.renewal_id() {
            // A call waits for one renewal only: once the one it waited for is over, it gets the tokens
            // in use even while another is under way.
            if call.renewal.is_none_or(|waited| waited == id) {
                call.renewal = Some(id);
                return Access::Wait;
            }
        }
        let renewed = call.renewal.is_some();
        let renewal_possible = self.can_renew();
        match &self.tokens {
            None if !renewal_possible || renewed => {
                Access::Failed(RefreshError::LoginRequired(self.login_required.clone()))
            }
            Some(t) if renewed || (!self.rejected && t.is_fresh(now, self.options.skew)) => {
                call.generation = Some(self.generation);
                Access::Ready(t.access_token.clone())
            }
            _ if renewal_possible => {
                self.queue_renewal();
                call.renewal = self.renewal_id();
                Access::Wait
            }
            _ => Access::Failed(RefreshError::LoginRequired(LoginRequired::NoRefreshToken)),
        }
    }

    /// Sets `Authorization: Bearer` on `request` when a valid token is at hand (catalogue F1: the token
    /// goes in this header only). Same answers as [`Self::access_token`].
    pub fn authorize<B>(
        &mut self,
        call: &mut ApiCall,
        request: &mut http::Request<B>,
        now: SystemTime,
    ) -> Access<()> {
        match self.access_token(call, now) {
            Access::Ready(token) => match http::HeaderValue::try_from(format!("Bearer {}", token.secret())) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    request.headers_mut().insert(http::header::AUTHORIZATION, v);
                    Access::Ready(())
                }
                Err(_) => Access::Failed(RefreshError::Token(TokenError::Malformed {
                    reason: "the access token has characters not allowed in a header".to_owned(),
                })),
            },
            Access::Wait => Access::Wait,
            Access::Failed(e) => Access::Failed(e),
        }
    }

    /// Judges an API response to `call` (catalogue F2): a 401 whose challenge is `invalid_token` (or that
    /// has none) asks for one retry, after a renewal when the refused token is still the one in use; a
    /// second 401, or a 401 to a call that already waited for a renewal (catalogue E9), is returned.
    pub fn handle_api_response<B: AsRef<[u8]>>(
        &mut self,
        call: &mut ApiCall,
        response: &http::Response<B>,
    ) -> ApiOutcome {
        if response.status() == http::StatusCode::UNAUTHORIZED && !call.retried && call.renewal.is_none() {
            let challenge = bearer_challenge(response.headers());
            let token_refused = match challenge.as_ref().and_then(|c| c.error.as_deref()) {
                None | Some("invalid_token") => true,
                Some(_) => false,
            };
            if token_refused && (self.tokens.is_some() || self.can_renew()) {
                call.retried = true;
                if call.generation == Some(self.generation) {
                    self.rejected = true;
                }
                return ApiOutcome::Retry;
            }
        }
        ApiOutcome::Done(check_api_response(response))
    }

    /// Forces a renewal now (the CLI's `refresh`). Returns false when one is already under way, a logout
    /// holds the manager, or none is possible.
    pub fn force_refresh(&mut self) -> bool {
        if !matches!(self.state, State::Idle) || !self.can_renew() {
            return false;
        }
        self.queue_renewal();
        true
    }

    /// Forces a renewal for `call` (which then counts as renewed): the CLI's `refresh`.
    pub fn force_refresh_for(&mut self, call: &mut ApiCall) -> bool {
        let queued = self.force_refresh();
        if queued || self.is_renewing() {
            call.renewal = self.renewal_id();
        }
        queued
    }

    /// When to call [`Self::handle_timeout`] to refresh before the token expires (catalogue E8): when it
    /// stops being fresh ([`TokenSet::fresh_until`]), or after the backoff of a failed attempt.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        if !matches!(self.state, State::Idle) || !self.can_renew() {
            return None;
        }
        let due = self.tokens.as_ref()?.fresh_until(self.options.skew)?;
        Some(match self.retry_not_before {
            Some(t) if t > due => t,
            _ => due,
        })
    }

    /// The clock reached `now`: refresh proactively when the token is within the margin.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        if self.poll_timeout().is_some_and(|due| due <= now) {
            self.queue_renewal();
        }
    }

    /// The next thing for the adapter to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Takes the queued renewal request, if there is one, leaving the other outputs queued: the caller
    /// that takes it runs the renewal ([`crate::lifecycle::Renewal`]).
    pub fn take_refresh(&mut self) -> Option<(RefreshId, http::Request<Vec<u8>>)> {
        let at = self.outputs.iter().position(|o| matches!(o, Output::Refresh { .. }))?;
        match self.outputs.remove(at) {
            Some(Output::Refresh { id, request }) => Some((id, request)),
            _ => None,
        }
    }

    /// Takes the next output that belongs to the renewal under way (a key fetch, the tokens to store, the
    /// store to clear), leaving a caller's queued [`Output::Refresh`] where it is.
    pub fn poll_follow_up(&mut self) -> Option<Output> {
        let at = self.outputs.iter().position(|o| !matches!(o, Output::Refresh { .. }))?;
        self.outputs.remove(at)
    }

    /// The token endpoint answered renewal `id`.
    ///
    /// A 200 answer spends the refresh token that was sent (catalogue E10): the tokens it brings are
    /// verified (a new ID token against the keys, which may need [`Output::FetchKeys`]) and stored; if the
    /// answer cannot be used, the refresh token it carries is kept when it can be read, and the one sent is
    /// never sent again.
    pub fn handle_refresh_response<B: AsRef<[u8]>>(
        &mut self,
        id: RefreshId,
        response: &http::Response<B>,
        now: SystemTime,
    ) {
        if !matches!(self.state, State::InFlight(current) if current == id) {
            return;
        }
        let parsed = match (&self.options.renewal, &self.tokens) {
            (Renewal::RefreshToken, Some(old)) => {
                parse_token_response(response, now, &old.scopes).map(|new| old.refreshed(new))
            }
            (Renewal::ClientCredentials { scopes }, _) => parse_token_response(response, now, scopes),
            (Renewal::RefreshToken, None) => return,
        };
        match parsed {
            Ok(tokens) => {
                let tokens = self.options.with_expiry(tokens, now);
                let new_id_token = match &self.tokens {
                    Some(old) => tokens.id_token.is_some() && tokens.id_token != old.id_token,
                    None => tokens.id_token.is_some(),
                };
                if new_id_token && self.options.renewal == Renewal::RefreshToken {
                    self.state = State::Verifying { id, tokens, fetch: KeyFetch::None };
                    self.verify_refreshed(now);
                } else {
                    self.persist(id, tokens, None);
                }
            }
            // `invalid_grant` comes with a 400 (RFC 6749 §5.2); on a 5xx the server is failing, and the
            // tokens are kept like on any other 5xx (catalogue E6).
            Err(TokenError::OAuth { status, error })
                if error.is("invalid_grant")
                    && status < 500
                    && self.options.renewal == Renewal::RefreshToken =>
            {
                self.end_login(LoginRequired::Rejected(error.clone()));
                self.fail(RefreshError::LoginRequired(LoginRequired::Rejected(error)), now);
            }
            Err(e) if response.status().is_success() && self.options.renewal == Renewal::RefreshToken => {
                // Answered 200: the refresh token sent is spent (catalogue E10). Keep the new one if it can
                // be read, with the access token in use; otherwise keep no refresh token at all.
                let Some(mut kept) = self.tokens.clone() else { return };
                kept.refresh_token = salvage_refresh_token(response);
                self.persist(id, kept, Some(RefreshError::Token(e)));
            }
            Err(e) => {
                self.state = State::Idle;
                self.fail(RefreshError::Token(e), now);
            }
        }
    }

    /// The JWKS request of renewal `id` ([`Output::FetchKeys`]) was answered (`Ok`) or got no answer
    /// (`Err` with the reason).
    pub fn handle_keys_response<B: AsRef<[u8]>>(
        &mut self,
        id: RefreshId,
        response: Result<&http::Response<B>, &str>,
        now: SystemTime,
    ) {
        let State::Verifying { id: current, fetch, .. } = &mut self.state else { return };
        if *current != id || *fetch != KeyFetch::Sent {
            return;
        }
        *fetch = match response.map(|r| self.keys.handle_jwks_response(r)) {
            Ok(Ok(())) => KeyFetch::Answered,
            _ => KeyFetch::Failed,
        };
        self.verify_refreshed(now);
    }

    /// Verifies the new ID token of the renewal in `State::Verifying`, asking for the keys first when
    /// they are needed.
    fn verify_refreshed(&mut self, now: SystemTime) {
        let State::Verifying { id, tokens, fetch } = &mut self.state else { return };
        let id = *id;
        let Some(new) = tokens.id_token.clone() else { return };
        if *fetch == KeyFetch::None
            && let Some(request) = self.keys.poll_fetch(&self.client, &new, now)
        {
            *fetch = KeyFetch::Sent;
            self.outputs.push_back(Output::FetchKeys { id, request });
            return;
        }
        // No answered fetch for this token: either it failed, or the cache may not fetch again yet (the
        // last fetch, less than the refetch interval ago, failed or was abandoned).
        let keys_unavailable = *fetch != KeyFetch::Answered;
        let original =
            self.tokens.as_ref().and_then(|t| t.id_token.as_ref()).map(IdTokenClaims::from_verified);
        let result = match original {
            Some(Ok(original)) => original
                .verify_refreshed(&new, &self.client, self.keys.keys(), Some(&tokens.access_token), now)
                .map(|_| ()),
            // The stored ID token cannot be read again: nothing to compare with, so the new one is verified
            // on its own.
            Some(Err(_)) | None => {
                let expect = IdTokenExpectations::new().at_server_time().access_token(&tokens.access_token);
                verify_id_token(&new, &self.client, self.keys.keys(), &expect, now).map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                let State::Verifying { tokens, .. } = std::mem::replace(&mut self.state, State::Idle) else {
                    return;
                };
                self.persist(id, tokens, None);
            }
            // The keys could not be had: not a security failure. The new refresh and access tokens are
            // kept (catalogue E10); the new ID token, unverified, is not: the old one stays.
            Err(IdTokenError::UnknownKey { .. } | IdTokenError::NoKey { .. }) if keys_unavailable => {
                let State::Verifying { mut tokens, .. } = std::mem::replace(&mut self.state, State::Idle)
                else {
                    return;
                };
                tokens.id_token = self.tokens.as_ref().and_then(|t| t.id_token.clone());
                self.persist(id, tokens, None);
            }
            Err(e) => {
                self.end_login(LoginRequired::NoTokens);
                self.fail(RefreshError::IdTokenRejected(e), now);
            }
        }
    }

    /// Renewal `id` got no answer (`reason` says why, for the callers). The tokens are kept.
    pub fn handle_refresh_failure(&mut self, id: RefreshId, reason: &str, now: SystemTime) {
        match &self.state {
            State::InFlight(current) if *current == id => {
                self.state = State::Idle;
                self.fail(RefreshError::Transport(reason.to_owned()), now);
            }
            // Abandoned while the keys for its new ID token were being fetched: the keys could not be
            // had, not a security failure. The refresh was answered 200, so its tokens are kept, with the
            // old ID token (catalogue E10), in memory: nobody is left to store them.
            State::Verifying { id: current, .. } if *current == id => {
                if let State::Verifying { mut tokens, .. } = std::mem::replace(&mut self.state, State::Idle) {
                    tokens.id_token = self.tokens.as_ref().and_then(|t| t.id_token.clone());
                    self.adopt(Some(tokens));
                }
                self.fail(RefreshError::Transport(reason.to_owned()), now);
            }
            // Abandoned while its tokens were being stored: they are the tokens in use (the old refresh
            // token is spent), kept in memory. Whether they reached the store is unknown.
            State::Persisting(current, tokens, _) if *current == id => {
                self.unconfirmed.push(pair(tokens));
                self.handle_persisted(id, Err(PersistFailure::new(reason)), now);
            }
            _ => {}
        }
    }

    /// The tokens of renewal `id` were written to the store (`Ok`), or could not be (`Err` with the
    /// reason). Either way they are now the tokens in use: the server has already revoked the old ones.
    pub fn handle_persisted(&mut self, id: RefreshId, result: Result<(), PersistFailure>, now: SystemTime) {
        if !matches!(&self.state, State::Persisting(current, ..) if *current == id) {
            return;
        }
        let mut pending = None;
        if let State::Persisting(_, tokens, failure) = std::mem::replace(&mut self.state, State::Idle) {
            if result.is_ok() {
                self.stored = Some(pair(&tokens));
                self.unconfirmed.clear();
            }
            pending = failure;
            self.adopt(Some(tokens));
        }
        match result {
            Ok(()) => self.retry_not_before = None,
            Err(reason) => self.fail(RefreshError::Persist(reason), now),
        }
        if let Some(failure) = pending {
            self.fail(failure, now);
        }
    }

    /// Before sending renewal `id`, the store is locked and re-read, and what it holds reported here: if
    /// another process renewed the tokens meanwhile, they are adopted and the request must not be sent
    /// (its refresh token may already be revoked).
    ///
    /// A store still holding what this manager last stored, because writing newer tokens failed
    /// ([`Self::handle_persisted`] with `Err`), or tokens whose write was abandoned
    /// ([`Self::handle_refresh_failure`] while they were being stored), is behind, not newer: the request
    /// is sent, with the newer refresh token held in memory.
    pub fn handle_reloaded(&mut self, id: RefreshId, stored: Option<TokenSet>) -> Reloaded {
        if !matches!(self.state, State::InFlight(current) if current == id) {
            return Reloaded::Stale;
        }
        let found = stored.as_ref().map(pair);
        if found == self.tokens.as_ref().map(pair)
            || found == self.stored
            || found.as_ref().is_some_and(|f| self.unconfirmed.contains(f))
        {
            return Reloaded::Send;
        }
        self.state = State::Idle;
        if stored.is_none() {
            self.login_required = LoginRequired::NoTokens;
        }
        self.stored = found;
        self.unconfirmed.clear();
        self.adopt(stored);
        Reloaded::Adopted
    }

    /// Replaces the tokens after a new login (already stored). A renewal in flight is abandoned, and
    /// outputs not yet polled are dropped: a queued `Refresh` would send the old refresh token, a queued
    /// `Persist` or `Clear` would overwrite or delete the new login's stored tokens.
    pub fn handle_login(&mut self, tokens: TokenSet) {
        self.state = State::Idle;
        self.outputs.clear();
        self.retry_not_before = None;
        self.stored = Some(pair(&tokens));
        self.unconfirmed.clear();
        self.adopt(Some(tokens));
    }

    /// Starts a logout: `false` while a renewal is under way (wait for it: its answer may carry the
    /// refresh token to revoke, catalogue G4). Once started, no renewal is queued and calls wait until
    /// [`Self::handle_logout`] or [`Self::abort_logout`].
    pub fn begin_logout(&mut self) -> bool {
        // Idle: no renewal under way and no other logout. Outputs still queued (a `Clear` of a login that
        // just ended) stay: if this logout is abandoned, the store must still be cleared.
        if !matches!(self.state, State::Idle) {
            return false;
        }
        self.state = State::LoggingOut;
        true
    }

    /// A logout started with [`Self::begin_logout`] was abandoned before it finished.
    pub fn abort_logout(&mut self) {
        if matches!(self.state, State::LoggingOut) {
            self.state = State::Idle;
        }
    }

    /// Forgets the tokens (local logout). The adapter deletes the store itself. A renewal in flight is
    /// abandoned and outputs not yet polled are dropped (a queued `Persist` would store the tokens again).
    pub fn handle_logout(&mut self) {
        self.state = State::Idle;
        self.outputs.clear();
        self.stored = None;
        self.unconfirmed.clear();
        self.login_required = LoginRequired::NoTokens;
        self.adopt(None);
    }

    /// Whether the issuer's keys can verify `token` now, must be fetched, or are being fetched by another
    /// caller (a login's ID token: catalogue D7).
    pub fn poll_keys(&mut self, token: &crate::IdToken, now: SystemTime) -> Keys {
        if self.keys_fetching {
            return Keys::Wait;
        }
        match self.keys.poll_fetch(&self.client, token, now) {
            Some(request) => {
                self.keys_fetching = true;
                Keys::Fetch(request)
            }
            None => Keys::Ready,
        }
    }

    /// The answer to the fetch from [`Self::poll_keys`] (`None`: it got no answer).
    pub fn handle_fetched_keys<B: AsRef<[u8]>>(
        &mut self,
        response: Option<&http::Response<B>>,
    ) -> Result<(), crate::JwksError> {
        self.keys_fetching = false;
        match response {
            Some(r) => self.keys.handle_jwks_response(r),
            None => Ok(()),
        }
    }

    /// The renewal in flight, being verified or being stored.
    fn renewal_id(&self) -> Option<RefreshId> {
        match &self.state {
            State::InFlight(id) | State::Verifying { id, .. } | State::Persisting(id, ..) => Some(*id),
            State::Idle | State::LoggingOut => None,
        }
    }

    fn can_renew(&self) -> bool {
        match self.options.renewal {
            Renewal::RefreshToken => self.tokens.as_ref().is_some_and(|t| t.refresh_token.is_some()),
            Renewal::ClientCredentials { .. } => true,
        }
    }

    fn persist(&mut self, id: RefreshId, tokens: TokenSet, failure: Option<RefreshError>) {
        self.state = State::Persisting(id, tokens.clone(), failure);
        self.outputs.push_back(Output::Persist { id, tokens });
    }

    /// The login is over: the tokens are dropped and the store is to be cleared.
    fn end_login(&mut self, why: LoginRequired) {
        self.state = State::Idle;
        self.tokens = None;
        self.generation += 1;
        self.rejected = false;
        self.login_required = why;
        self.stored = None;
        self.unconfirmed.clear();
        self.outputs.push_back(Output::Clear);
    }

    /// New tokens are in use: an earlier renewal failure is over, and calls that have not yet been told
    /// of it are not (a failed `Persist` reports its own failure after this).
    fn adopt(&mut self, tokens: Option<TokenSet>) {
        self.tokens = tokens;
        self.generation += 1;
        self.rejected = false;
        self.last_failure = None;
    }

    fn fail(&mut self, error: RefreshError, now: SystemTime) {
        self.failures += 1;
        self.last_failure = Some(error);
        self.retry_not_before = now.checked_add(self.options.retry_backoff);
    }

    fn queue_renewal(&mut self) {
        let request = match (&self.options.renewal, &self.tokens) {
            (Renewal::RefreshToken, Some(TokenSet { refresh_token: Some(rt), .. })) => {
                self.client.token_request(Grant::RefreshToken(rt))
            }
            (Renewal::ClientCredentials { scopes }, _) => {
                self.client.token_request(Grant::ClientCredentials { scopes })
            }
            _ => return,
        };
        let id = RefreshId(self.next_id);
        self.next_id += 1;
        self.state = State::InFlight(id);
        self.outputs.push_back(Output::Refresh { id, request });
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a test fails by panicking
mod tests {
    use super::*;
    use crate::secret::ClientSecret;
    use std::time::UNIX_EPOCH;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_655_057_724)
    }

    fn tokens(n: u32, expires_at: SystemTime) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(format!("at-{n}")),
            expires_at: Some(expires_at),
            issued_at: None,
            refresh_token: Some(RefreshToken::new(format!("rt-{n}"))),
            id_token: None,
            scopes: Scopes::erpnet_default(),
        }
    }

    fn manager(initial: TokenSet) -> TokenManager {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
            .client_secret(ClientSecret::new("my-secret"))
            .build()
            .unwrap();
        TokenManager::new(client, Some(initial), ManagerOptions::default())
    }

    fn refresh_token_sent(request: &http::Request<Vec<u8>>) -> Option<String> {
        url::form_urlencoded::parse(request.body())
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned())
    }

    fn renewed(n: u32) -> http::Response<Vec<u8>> {
        http::Response::new(
            format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-{n}"}}"#)
                .into_bytes(),
        )
    }

    /// Runs one renewal to its Persist output and returns its id.
    fn renew_to_persist(m: &mut TokenManager, n: u32) -> RefreshId {
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_response(id, &renewed(n), now());
        let Some(Output::Persist { id, .. }) = m.poll_output() else { panic!("no persist") };
        id
    }

    // Found by tests/manager_props.rs: outputs queued for a renewal that a login or logout abandoned
    // were still handed out, so the adapter sent the old refresh token (a second refresh on the wire),
    // stored the old lineage's tokens over the new login's, or deleted the new login's tokens.
    #[test]
    fn login_and_logout_drop_outputs_not_yet_polled() {
        let mut m = manager(tokens(0, now()));
        assert!(m.force_refresh());
        m.handle_login(tokens(1, now() + Duration::from_secs(3600)));
        assert!(m.poll_output().is_none(), "no Refresh with rt-0 after the login");

        let mut m2 = manager(tokens(0, now()));
        assert!(m2.force_refresh());
        let Some(Output::Refresh { id, .. }) = m2.poll_output() else { panic!("no refresh") };
        m2.handle_refresh_response(id, &renewed(1), now());
        m2.handle_logout();
        assert!(m2.poll_output().is_none(), "no Persist of the tokens after the logout");

        let mut m3 = manager(tokens(0, now()));
        assert!(m3.force_refresh());
        let Some(Output::Refresh { id, .. }) = m3.poll_output() else { panic!("no refresh") };
        let rejected =
            http::Response::builder().status(400).body(br#"{"error":"invalid_grant"}"#.to_vec()).unwrap();
        m3.handle_refresh_response(id, &rejected, now());
        m3.handle_login(tokens(2, now() + Duration::from_secs(3600)));
        assert!(m3.poll_output().is_none(), "no Clear of the new login's stored tokens");
    }

    // Found by tests/manager_props.rs: after a failed Persist the store still holds the previous pair;
    // re-reading it before the next renewal adopted that older pair (under rotation, a revoked refresh
    // token) as if another process had renewed.
    #[test]
    fn a_store_behind_after_a_failed_write_is_not_adopted() {
        let mut m = manager(tokens(0, now()));
        let id = renew_to_persist(&mut m, 1);
        m.handle_persisted(id, Err("disk full".into()), now());
        assert_eq!(m.tokens().and_then(|t| t.refresh_token.as_ref()).map(|r| r.secret()), Some("rt-1"));
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, request }) = m.poll_output() else { panic!("no refresh") };
        assert_eq!(refresh_token_sent(&request).as_deref(), Some("rt-1"));
        assert_eq!(m.handle_reloaded(id, Some(tokens(0, now()))), Reloaded::Send);
        assert_eq!(m.tokens().and_then(|t| t.refresh_token.as_ref()).map(|r| r.secret()), Some("rt-1"));
        // Tokens another process stored are still adopted.
        assert_eq!(m.handle_reloaded(id, Some(tokens(9, now()))), Reloaded::Adopted);
        assert_eq!(m.tokens().map(|t| t.access_token.secret()), Some("at-9"));
    }

    // Found by tests/manager_props.rs: a call that began before a failed renewal was told of that
    // failure even after a later renewal had succeeded and a valid token was at hand.
    #[test]
    fn a_failure_is_not_reported_after_a_later_success() {
        let mut m = manager(tokens(0, now()));
        let mut call = m.begin_call();
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_failure(id, "connection reset", now());
        let id = renew_to_persist(&mut m, 1);
        m.handle_persisted(id, Ok(()), now());
        let Access::Ready(t) = m.access_token(&mut call, now()) else { panic!("not ready") };
        assert_eq!(t.secret(), "at-1");

        // Without a later success, the failure is reported once.
        let mut call = m.begin_call();
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_failure(id, "connection reset", now());
        assert!(matches!(m.access_token(&mut call, now()), Access::Failed(RefreshError::Transport(_))));
        assert!(matches!(m.access_token(&mut call, now()), Access::Ready(_)));
    }

    // Found by tests/manager_props.rs: a call told to wait while a logout was under way counted as having
    // waited for a renewal, so once the logout was aborted it was handed the expired token (and the 401
    // that followed was returned instead of renewed).
    #[test]
    fn waiting_for_a_logout_is_not_waiting_for_a_renewal() {
        let mut m = manager(tokens(0, now()));
        let mut call = m.begin_call();
        assert!(m.begin_logout());
        assert!(matches!(m.access_token(&mut call, now()), Access::Wait));
        assert!(!call.renewed());
        m.abort_logout();
        assert!(
            matches!(m.access_token(&mut call, now()), Access::Wait),
            "the expired token is renewed first"
        );
        assert!(matches!(m.poll_output(), Some(Output::Refresh { .. })));
    }

    // Found by tests/manager_props.rs: a call that had waited for one renewal was told to wait again when
    // another caller started a second one (the first one's tokens were already within the margin when
    // they came into use), so one call could wait for renewal after renewal.
    #[test]
    fn a_call_waits_for_one_renewal_only() {
        let mut m = manager(tokens(0, now()));
        let mut first = m.begin_call();
        assert!(matches!(m.access_token(&mut first, now()), Access::Wait));
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        let one_second =
            br#"{"access_token":"at-1","token_type":"Bearer","expires_in":1,"refresh_token":"rt-1"}"#;
        m.handle_refresh_response(id, &http::Response::new(one_second.to_vec()), now());
        let Some(Output::Persist { id, .. }) = m.poll_output() else { panic!("no persist") };
        // Stored a second later: the 1 s token is already expired.
        let later = now() + Duration::from_secs(1);
        m.handle_persisted(id, Ok(()), later);
        let mut second = m.begin_call();
        assert!(matches!(m.access_token(&mut second, later), Access::Wait), "a new call renews it");
        let Access::Ready(t) = m.access_token(&mut first, later) else {
            panic!("the first call waits again")
        };
        assert_eq!(t.secret(), "at-1");
        assert!(matches!(m.access_token(&mut second, later), Access::Wait), "the second waits for its own");
    }

    // Found by tests/manager_props.rs: when the last key fetch, less than a minute before, got no usable
    // answer (it failed, or its renewal was abandoned), the key cache would not fetch again so soon, and
    // the next refreshed ID token's unknown key was taken for a security failure: the login was ended
    // instead of keeping the new tokens with the old ID token.
    #[test]
    fn keys_that_cannot_be_fetched_yet_do_not_end_the_login() {
        let answer = |n: u32, id_token: &str| {
            http::Response::new(
                format!(
                    r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-{n}","id_token":"{id_token}"}}"#
                )
                .into_bytes(),
            )
        };
        // Header {"alg":"RS256","kid":"a"}: the keys are needed to verify them.
        let id_1 = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEifQ.eyJuIjoxfQ.c2ln";
        let id_2 = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEifQ.eyJuIjoyfQ.c2ln";
        let mut m = manager(tokens(0, now()));
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_response(id, &answer(1, id_1), now());
        let Some(Output::FetchKeys { id, .. }) = m.poll_output() else { panic!("no key fetch") };
        m.handle_keys_response::<Vec<u8>>(id, Err("connection reset"), now());
        let Some(Output::Persist { id, tokens }) = m.poll_output() else { panic!("no persist") };
        assert_eq!(tokens.id_token, None, "the unverified ID token is not kept");
        m.handle_persisted(id, Ok(()), now());
        // Seconds later: the keys may not be fetched again yet.
        let later = now() + Duration::from_secs(5);
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_response(id, &answer(2, id_2), later);
        let Some(Output::Persist { tokens, .. }) = m.poll_output() else { panic!("the login was ended") };
        assert_eq!(tokens.access_token.secret(), "at-2");
        assert_eq!(tokens.refresh_token.as_ref().map(|r| r.secret()), Some("rt-2"));
        assert_eq!(tokens.id_token, None);
    }

    // Found by tests/manager_props.rs: a renewal abandoned while its tokens were being stored may have
    // written them; once a later renewal had spent their refresh token and failed to store its own, the
    // next re-read found them and adopted them as another process's, so the spent refresh token was sent
    // again (catalogue E10).
    #[test]
    fn tokens_whose_write_was_abandoned_are_not_adopted_from_the_store() {
        let mut m = manager(tokens(0, now()));
        let id = renew_to_persist(&mut m, 1);
        // The store gets tokens 1, but the driver gives up before it says so.
        m.handle_refresh_failure(id, "abandoned", now());
        let id = renew_to_persist(&mut m, 2);
        m.handle_persisted(id, Err("disk full".into()), now());
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, request }) = m.poll_output() else { panic!("no refresh") };
        assert_eq!(refresh_token_sent(&request).as_deref(), Some("rt-2"));
        assert_eq!(m.handle_reloaded(id, Some(tokens(1, now()))), Reloaded::Send, "tokens 1 are its own");
        assert_eq!(m.tokens().and_then(|t| t.refresh_token.as_ref()).map(|r| r.secret()), Some("rt-2"));
        // Tokens another process stored are still adopted.
        assert_eq!(m.handle_reloaded(id, Some(tokens(9, now()))), Reloaded::Adopted);
    }

    // Found by tests/manager_props.rs: a renewal abandoned while the keys for its new ID token were
    // being fetched ended the login, losing the answer's new refresh token, although keys that cannot be
    // had are not a security failure (catalogue E10: the new tokens are kept, with the old ID token).
    #[test]
    fn an_abandoned_key_fetch_keeps_the_new_tokens() {
        let body = br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","id_token":"eyJhbGciOiJSUzI1NiIsImtpZCI6ImEifQ.eyJuIjoxfQ.c2ln"}"#;
        let mut m = manager(tokens(0, now()));
        assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_response(id, &http::Response::new(body.to_vec()), now());
        let Some(Output::FetchKeys { .. }) = m.poll_output() else { panic!("no key fetch") };
        m.handle_refresh_failure(id, "the renewal was abandoned", now());
        let t = m.tokens().expect("the login goes on");
        assert_eq!(t.access_token.secret(), "at-1");
        assert_eq!(t.refresh_token.as_ref().map(|r| r.secret()), Some("rt-1"));
        assert_eq!(t.id_token, None, "the unverified ID token is not kept");
        assert!(!m.is_renewing());
        assert!(m.poll_output().is_none(), "no Clear");
    }

    // Found by tests/no_panic.rs: an `invalid_grant` body on a 5xx answer dropped the tokens.
    #[test]
    fn invalid_grant_on_a_5xx_keeps_the_tokens() {
        for (status, kept) in [(500, true), (503, true), (400, false), (401, false)] {
            let mut m = manager(tokens(0, now()));
            assert!(m.force_refresh());
            let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
            let answer = http::Response::builder()
                .status(status)
                .body(br#"{"error":"invalid_grant"}"#.to_vec())
                .unwrap();
            m.handle_refresh_response(id, &answer, now());
            assert_eq!(m.tokens().is_some(), kept, "HTTP {status}");
            assert_eq!(matches!(m.poll_output(), Some(Output::Clear)), !kept, "HTTP {status}");
        }
    }
}
