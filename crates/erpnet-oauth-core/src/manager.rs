//! The long-lived token manager: an input/output machine that keeps one login's tokens usable for weeks.
//!
//! # Call order
//!
//! The adapter owns the clock, the sockets and the store, and drives the machine:
//!
//! 1. For each API call, [`TokenManager::begin_call`], then [`TokenManager::authorize`] (or
//!    [`TokenManager::access_token`]): `Ready` means send; `Wait` means a renewal is under way.
//! 2. After every input, drain [`TokenManager::poll_output`] until `None`:
//!    - [`Output::Refresh`]: send this token request, then feed the answer to
//!      [`TokenManager::handle_refresh_response`] (or the transport failure to
//!      [`TokenManager::handle_refresh_failure`]). An adapter whose store is shared with other processes
//!      first locks the store, re-reads it and calls [`TokenManager::handle_reloaded`], which says whether
//!      to send at all.
//!    - [`Output::Persist`]: write these tokens to the store, then call [`TokenManager::handle_persisted`].
//!      New tokens are not handed out before that: a rotated refresh token is stored before it is used.
//!    - [`Output::Clear`]: the server rejected the refresh token (`invalid_grant`): delete the stored tokens.
//! 3. Feed each API response to [`TokenManager::handle_api_response`]: `Retry` means authorize and send
//!    again (once, after a 401); `Done` carries the result.
//! 4. [`TokenManager::poll_timeout`] says when to call [`TokenManager::handle_timeout`] for a proactive
//!    refresh.
//!
//! # Invariants
//!
//! - At most one renewal request is in flight.
//! - A token known to be expired (or expiring within the skew) is never handed out.
//! - After a rotation the old refresh token is never sent again.
//! - Tokens are dropped only when the server answers `invalid_grant` (with a 4xx status; a 5xx keeps
//!   them), the adapter finds the shared store empty, or the user logs out.
//! - A login or logout drops the outputs not yet polled (they belong to the abandoned renewal).
//! - A renewal failure is reported once to each call that began before it, unless newer tokens came
//!   in the meantime.
//! - A call is retried at most once.

use crate::api::{ApiError, check_api_response};
use crate::challenge::bearer_challenge;
use crate::config::ClientConfig;
use crate::error::OAuthError;
use crate::scope::Scopes;
use crate::secret::{AccessToken, RefreshToken};
use crate::token::{Grant, TokenError, TokenSet, parse_token_response};
use std::collections::VecDeque;
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
pub struct ManagerOptions {
    /// A token expiring within this margin is refreshed before use (catalogue E8). Default 60 s.
    pub skew: Duration,
    /// How tokens are renewed. Default: with the refresh token.
    pub renewal: Renewal,
    /// After a failed timer-driven refresh, the next timer-driven attempt waits this long. Default 10 s.
    pub retry_backoff: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            skew: Duration::from_secs(60),
            renewal: Renewal::RefreshToken,
            retry_backoff: Duration::from_secs(10),
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
    /// tokens are kept.
    #[error("the refresh failed: {0}")]
    Token(TokenError),
    /// The refresh request did not get an answer (connection, timeout). The tokens are kept; try again.
    #[error("the refresh request failed: {0}")]
    Transport(String),
    /// The new tokens could not be stored. They are kept in memory.
    #[error("the new tokens could not be stored: {0}")]
    Persist(String),
}

impl RefreshError {
    /// Whether the user must log in again.
    pub fn is_login_required(&self) -> bool {
        matches!(self, RefreshError::LoginRequired(_))
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RefreshError::Transport(_) => true,
            RefreshError::Token(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What the manager asks of the adapter. Drain with [`TokenManager::poll_output`] after every input.
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Send this token request and feed back the answer with the same id.
    Refresh {
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
    /// Delete the stored tokens: the server said `invalid_grant`.
    Clear,
}

/// The answer to [`TokenManager::authorize`] or [`TokenManager::access_token`].
#[derive(Debug)]
#[must_use]
pub enum Access<T> {
    /// Go ahead.
    Ready(T),
    /// A renewal is under way: drain the outputs (this caller may be the one to send it), or wait for
    /// the tokens to change, then ask again.
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
}

impl ApiCall {
    /// Whether this call has already been retried once.
    pub fn retried(&self) -> bool {
        self.retried
    }
}

#[derive(Debug)]
enum State {
    Idle,
    InFlight(RefreshId),
    Persisting(RefreshId, TokenSet),
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
}

type StoredPair = (AccessToken, Option<RefreshToken>);

fn pair(tokens: &TokenSet) -> StoredPair {
    (tokens.access_token.clone(), tokens.refresh_token.clone())
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
        }
    }

    /// The client configuration.
    pub fn client(&self) -> &ClientConfig {
        &self.client
    }

    /// The tokens in use (not those of a renewal still being stored).
    pub fn tokens(&self) -> Option<&TokenSet> {
        self.tokens.as_ref()
    }

    /// Bumped whenever the tokens in use change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a renewal is in flight or being stored.
    pub fn is_renewing(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Starts an API call.
    pub fn begin_call(&self) -> ApiCall {
        ApiCall { failures_seen: self.failures, generation: None, retried: false }
    }

    /// A valid access token for `call` at `now`, queueing a renewal when it is missing, expired, within
    /// the skew, or was refused by the API.
    pub fn access_token(&mut self, call: &mut ApiCall, now: SystemTime) -> Access<AccessToken> {
        if self.failures > call.failures_seen {
            call.failures_seen = self.failures;
            if let Some(e) = &self.last_failure {
                return Access::Failed(e.clone());
            }
        }
        if !matches!(self.state, State::Idle) {
            return Access::Wait;
        }
        let renewal_possible = self.can_renew();
        match &self.tokens {
            None if !renewal_possible => {
                Access::Failed(RefreshError::LoginRequired(self.login_required.clone()))
            }
            Some(t) if !self.rejected && t.is_fresh(now, self.options.skew) => {
                call.generation = Some(self.generation);
                Access::Ready(t.access_token.clone())
            }
            _ if renewal_possible => {
                self.queue_renewal();
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
    /// has none) queues one renewal and asks for one retry; a second 401 is returned.
    pub fn handle_api_response<B: AsRef<[u8]>>(
        &mut self,
        call: &mut ApiCall,
        response: &http::Response<B>,
    ) -> ApiOutcome {
        if response.status() == http::StatusCode::UNAUTHORIZED && !call.retried {
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

    /// Forces a renewal now (the CLI's `refresh`). Returns false when one is already under way or none
    /// is possible.
    pub fn force_refresh(&mut self) -> bool {
        if !matches!(self.state, State::Idle) || !self.can_renew() {
            return false;
        }
        self.queue_renewal();
        true
    }

    /// When to call [`Self::handle_timeout`] to refresh before the token expires (catalogue E8).
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        if !matches!(self.state, State::Idle) || !self.can_renew() {
            return None;
        }
        let due = self.tokens.as_ref()?.expires_at?.checked_sub(self.options.skew)?;
        Some(match self.retry_not_before {
            Some(t) if t > due => t,
            _ => due,
        })
    }

    /// The clock reached `now`: refresh proactively when the token is within the skew.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        if self.poll_timeout().is_some_and(|due| due <= now) {
            self.queue_renewal();
        }
    }

    /// The next thing for the adapter to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The token endpoint answered renewal `id`.
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
                parse_token_response(response, now, &old.scopes).and_then(|new| old.refreshed(new))
            }
            (Renewal::ClientCredentials { scopes }, _) => parse_token_response(response, now, scopes),
            (Renewal::RefreshToken, None) => return,
        };
        match parsed {
            Ok(tokens) => {
                self.state = State::Persisting(id, tokens.clone());
                self.outputs.push_back(Output::Persist { id, tokens });
            }
            // `invalid_grant` comes with a 400 (RFC 6749 §5.2); on a 5xx the server is failing, and the
            // tokens are kept like on any other 5xx (catalogue E6).
            Err(TokenError::OAuth { status, error })
                if error.is("invalid_grant")
                    && status < 500
                    && self.options.renewal == Renewal::RefreshToken =>
            {
                self.state = State::Idle;
                self.tokens = None;
                self.generation += 1;
                self.rejected = false;
                self.login_required = LoginRequired::Rejected(error.clone());
                self.stored = None;
                self.outputs.push_back(Output::Clear);
                self.fail(RefreshError::LoginRequired(LoginRequired::Rejected(error)), now);
            }
            Err(e) => {
                self.state = State::Idle;
                self.fail(RefreshError::Token(e), now);
            }
        }
    }

    /// Renewal `id` got no answer (`reason` says why, for the callers). The tokens are kept.
    pub fn handle_refresh_failure(&mut self, id: RefreshId, reason: &str, now: SystemTime) {
        if matches!(self.state, State::InFlight(current) if current == id) {
            self.state = State::Idle;
            self.fail(RefreshError::Transport(reason.to_owned()), now);
        }
    }

    /// The tokens of renewal `id` were written to the store (`Ok`), or could not be (`Err` with the
    /// reason). Either way they are now the tokens in use: the server has already revoked the old ones.
    pub fn handle_persisted(&mut self, id: RefreshId, result: Result<(), String>, now: SystemTime) {
        if !matches!(&self.state, State::Persisting(current, _) if *current == id) {
            return;
        }
        if let State::Persisting(_, tokens) = std::mem::replace(&mut self.state, State::Idle) {
            if result.is_ok() {
                self.stored = Some(pair(&tokens));
            }
            self.adopt(Some(tokens));
        }
        match result {
            Ok(()) => self.retry_not_before = None,
            Err(reason) => self.fail(RefreshError::Persist(reason), now),
        }
    }

    /// Before sending renewal `id`, an adapter whose store is shared with other processes locks the
    /// store, re-reads it, and reports what it holds: if another process renewed the tokens meanwhile,
    /// they are adopted and the request must not be sent (its refresh token may already be revoked).
    ///
    /// A store still holding what this manager last stored, because writing newer tokens failed
    /// ([`Self::handle_persisted`] with `Err`), is behind, not newer: the request is sent, with the newer
    /// refresh token held in memory.
    pub fn handle_reloaded(&mut self, id: RefreshId, stored: Option<TokenSet>) -> Reloaded {
        if !matches!(self.state, State::InFlight(current) if current == id) {
            return Reloaded::Stale;
        }
        let found = stored.as_ref().map(pair);
        if found == self.tokens.as_ref().map(pair) || found == self.stored {
            return Reloaded::Send;
        }
        self.state = State::Idle;
        if stored.is_none() {
            self.login_required = LoginRequired::NoTokens;
        }
        self.stored = found;
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
        self.adopt(Some(tokens));
    }

    /// Forgets the tokens (local logout). The adapter deletes the store itself. A renewal in flight is
    /// abandoned and outputs not yet polled are dropped (a queued `Persist` would store the tokens again).
    pub fn handle_logout(&mut self) {
        self.state = State::Idle;
        self.outputs.clear();
        self.stored = None;
        self.login_required = LoginRequired::NoTokens;
        self.adopt(None);
    }

    fn can_renew(&self) -> bool {
        match self.options.renewal {
            Renewal::RefreshToken => self.tokens.as_ref().is_some_and(|t| t.refresh_token.is_some()),
            Renewal::ClientCredentials { .. } => true,
        }
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
        m.handle_persisted(id, Err("disk full".to_owned()), now());
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
