//! A login's whole lifecycle as operations that an adapter drives: the login, API calls with their
//! renewals and 401s, userinfo and logout. Every protocol decision is taken here (or in the
//! [`TokenManager`] these operations share); an adapter only carries out the [`Step`]s.
//!
//! # The contract with the adapter
//!
//! One [`TokenManager`] per login, behind the adapter's mutex, shared by every caller. Each public
//! operation of an adapter's session is one [`Operation`] of this module, driven by one loop:
//!
//! ```text
//! let mut input = None;
//! loop {
//!     let step = { lock the manager; op.step(&mut manager, input.take(), now) };   // never across I/O
//!     wake the callers waiting on the manager (unless the step is Wait)
//!     match step {
//!         Send { request, target }  => input = Some(Input::Response(..) or Input::Failed(..)),
//!         LockStore                 => input = Some(Input::Locked(..)),     // hold the guard
//!         LoadStore                 => input = Some(Input::Loaded(..)),
//!         SaveStore(tokens)         => input = Some(Input::Saved(..)),
//!         ClearStore                => input = Some(Input::Cleared(..)),
//!         UnlockStore               => input = Some(Input::Unlocked),       // drop the guard
//!         Renew(renewal)            => input = Some(Input::Renewed(drive(renewal))),
//!         Wait                      => wait until the manager changes (no input),
//!         Done(result)              => return result,
//!     }
//! }
//! ```
//!
//! If the driver gives up on an operation before `Done` (a panic unwinding, a dropped future), it calls
//! [`Operation::abandon`] so that other callers are not left waiting for it. An async driver runs each
//! [`Renewal`] as a task of its own: once a refresh request is sent, its answer must be taken in and its
//! tokens stored, whatever happens to the caller that started it.
//!
//! # What the operations guarantee
//!
//! - A renewal always runs under the store's lock, after re-reading the store: another process may have
//!   renewed meanwhile, and a request whose answer was lost may have rotated the refresh token at the
//!   server (catalogue E7, E14).
//! - New tokens are stored before they are used, and a refresh answered 200 is never replayed
//!   ([`TokenManager`]'s invariants, catalogue E10).
//! - A login hands out tokens only once its ID tokens passed verification ([`crate::Login::verify`]).
//! - A logout waits for the renewal in flight, locks the store, re-reads it, and revokes the latest
//!   refresh token (catalogue G4), then deletes the stored tokens whatever the revocation's outcome (G2).

use crate::authorize::{Callback, CallbackError, CodeExchange, Login, PendingLogin, TokenExchange};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::id_token::IdTokenClaims;
use crate::id_token::IdTokenError;
use crate::manager::{Access, ApiCall, ApiOutcome, Keys, LoginRequired, Output, RefreshError, RefreshId};
use crate::manager::{PersistFailure, Reloaded, TokenManager};
use crate::revocation::parse_revocation_response;
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::store::StoreError;
use crate::token::TokenSet;
use crate::userinfo::{UserInfo, parse_userinfo_response};
use std::fmt;
use std::time::SystemTime;

/// Where a request goes, which sets the limit on its answer's body ([`crate::HttpOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The identity server (token, JWKS, revocation, userinfo, discovery): `token_body_limit`.
    IdentityServer,
    /// The Domain API: `api_body_limit`.
    Api,
}

/// What the adapter does next for an operation. See the [module docs](self).
#[must_use]
pub enum Step<T> {
    /// Send `request` as it is (no redirect followed, bounded body), then feed [`Input::Response`], or
    /// [`Input::Failed`] with the transport error when no answer came.
    Send {
        /// The request.
        request: http::Request<Vec<u8>>,
        /// Where it goes.
        target: Target,
    },
    /// Take the store's cross-process lock (blocking until it is free), then feed [`Input::Locked`].
    LockStore,
    /// Read the store, then feed [`Input::Loaded`].
    LoadStore,
    /// Write these tokens atomically, then feed [`Input::Saved`].
    SaveStore(TokenSet),
    /// Delete the stored tokens, then feed [`Input::Cleared`].
    ClearStore,
    /// Release the lock taken at [`Step::LockStore`], then feed [`Input::Unlocked`].
    UnlockStore,
    /// Drive this renewal to its end as an operation of its own, then feed [`Input::Renewed`] with its
    /// result.
    Renew(Renewal),
    /// Another caller's renewal, key fetch or logout is under way: wait until the manager changes, then
    /// step again with no input.
    Wait,
    /// The operation is over.
    Done(Result<T, Error>),
}

impl<T> fmt::Debug for Step<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Requests carry secrets in their bodies and headers: only the method and URI are shown.
        match self {
            Step::Send { request, target } => {
                write!(f, "Send({} {}, {target:?})", request.method(), request.uri())
            }
            Step::LockStore => f.write_str("LockStore"),
            Step::LoadStore => f.write_str("LoadStore"),
            Step::SaveStore(t) => f.debug_tuple("SaveStore").field(t).finish(),
            Step::ClearStore => f.write_str("ClearStore"),
            Step::UnlockStore => f.write_str("UnlockStore"),
            Step::Renew(r) => f.debug_tuple("Renew").field(r).finish(),
            Step::Wait => f.write_str("Wait"),
            Step::Done(Ok(_)) => f.write_str("Done(Ok(..))"),
            Step::Done(Err(e)) => write!(f, "Done(Err({e:?}))"),
        }
    }
}

/// The result of the last [`Step`], fed to [`Operation::step`]. `Debug` shows a response's status and
/// length only: its body may hold tokens.
pub enum Input {
    /// The answer to [`Step::Send`] (any status).
    Response(http::Response<Vec<u8>>),
    /// [`Step::Send`] got no answer: the transport error ([`Error::is_transport`]).
    Failed(Error),
    /// The outcome of [`Step::LockStore`].
    Locked(Result<(), StoreError>),
    /// The outcome of [`Step::LoadStore`].
    Loaded(Result<Option<TokenSet>, StoreError>),
    /// The outcome of [`Step::SaveStore`].
    Saved(Result<(), StoreError>),
    /// The outcome of [`Step::ClearStore`].
    Cleared(Result<(), StoreError>),
    /// [`Step::UnlockStore`] was done.
    Unlocked,
    /// The result of the renewal of [`Step::Renew`].
    Renewed(Result<(), Error>),
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Response(r) => write!(f, "Response({}, {} bytes)", r.status(), r.body().len()),
            Input::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            Input::Locked(r) => f.debug_tuple("Locked").field(r).finish(),
            Input::Loaded(r) => f.debug_tuple("Loaded").field(r).finish(),
            Input::Saved(r) => f.debug_tuple("Saved").field(r).finish(),
            Input::Cleared(r) => f.debug_tuple("Cleared").field(r).finish(),
            Input::Unlocked => f.write_str("Unlocked"),
            Input::Renewed(r) => f.debug_tuple("Renewed").field(r).finish(),
        }
    }
}

/// One operation of a login's lifecycle, as a machine: see the [module docs](self) for the loop that
/// drives it.
pub trait Operation {
    /// What the operation gives when it succeeds.
    type Output;

    /// Takes the result of the last step (`None` at the start and after [`Step::Wait`]) and says what to
    /// do next. Called with the shared manager locked, and never across I/O.
    fn step(
        &mut self,
        manager: &mut TokenManager,
        input: Option<Input>,
        now: SystemTime,
    ) -> Step<Self::Output>;

    /// The driver gives up on the operation before [`Step::Done`]: releases what it holds in the manager
    /// (a renewal, a key fetch, a logout), so that other callers are not left waiting.
    fn abandon(&mut self, manager: &mut TokenManager, now: SystemTime) {
        let _ = (manager, now);
    }
}

fn unexpected<T>(what: &str) -> Step<T> {
    Step::Done(Err(Error::Task(format!("the operation was fed an unexpected input ({what})"))))
}

// ---------------------------------------------------------------------------------------------------------
// Renewal
// ---------------------------------------------------------------------------------------------------------

/// One renewal (refresh token or client credentials), from the store's lock to its release: re-read the
/// store, send the request unless another process renewed meanwhile, verify a new ID token (fetching the
/// keys when needed), store the new tokens or clear the store. Handed out by [`Step::Renew`].
pub struct Renewal {
    id: RefreshId,
    request: Option<http::Request<Vec<u8>>>,
    phase: RenewalPhase,
    error: Option<Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RenewalPhase {
    Start,
    Locking,
    Loading,
    Sending,
    FetchingKeys,
    Saving,
    Clearing,
    Unlocking,
    Done,
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal").field("id", &self.id).field("phase", &self.phase).finish_non_exhaustive()
    }
}

impl Renewal {
    fn new(id: RefreshId, request: http::Request<Vec<u8>>) -> Self {
        Renewal { id, request: Some(request), phase: RenewalPhase::Start, error: None }
    }

    /// The renewal's id.
    pub fn id(&self) -> RefreshId {
        self.id
    }

    /// The next output of this renewal (never a caller's queued [`Output::Refresh`]).
    fn follow_up(&mut self, manager: &mut TokenManager) -> Step<()> {
        match manager.poll_follow_up() {
            Some(Output::FetchKeys { request, .. }) => {
                self.phase = RenewalPhase::FetchingKeys;
                Step::Send { request, target: Target::IdentityServer }
            }
            Some(Output::Persist { tokens, .. }) => {
                self.phase = RenewalPhase::Saving;
                Step::SaveStore(tokens)
            }
            Some(Output::Clear) => {
                self.phase = RenewalPhase::Clearing;
                Step::ClearStore
            }
            _ => {
                self.phase = RenewalPhase::Unlocking;
                Step::UnlockStore
            }
        }
    }
}

impl Operation for Renewal {
    type Output = ();

    fn step(&mut self, manager: &mut TokenManager, input: Option<Input>, now: SystemTime) -> Step<()> {
        use RenewalPhase as P;
        match (self.phase, input) {
            (P::Start, None) => {
                self.phase = P::Locking;
                Step::LockStore
            }
            (P::Locking, Some(Input::Locked(Ok(())))) => {
                self.phase = P::Loading;
                Step::LoadStore
            }
            (P::Locking, Some(Input::Locked(Err(e)))) => {
                manager.handle_refresh_failure(self.id, &e.to_string(), now);
                self.phase = P::Done;
                Step::Done(Err(e.into()))
            }
            (P::Loading, Some(Input::Loaded(Ok(stored)))) => match manager.handle_reloaded(self.id, stored) {
                Reloaded::Send => match self.request.take() {
                    Some(request) => {
                        self.phase = P::Sending;
                        Step::Send { request, target: Target::IdentityServer }
                    }
                    None => unexpected("a renewal sent twice"),
                },
                // Another process renewed meanwhile (adopted), or a login or logout replaced this renewal.
                Reloaded::Adopted | Reloaded::Stale => {
                    self.phase = P::Unlocking;
                    Step::UnlockStore
                }
            },
            (P::Loading, Some(Input::Loaded(Err(e)))) => {
                manager.handle_refresh_failure(self.id, &e.to_string(), now);
                self.error = Some(e.into());
                self.phase = P::Unlocking;
                Step::UnlockStore
            }
            (P::Sending, Some(Input::Response(response))) => {
                manager.handle_refresh_response(self.id, &response, now);
                self.follow_up(manager)
            }
            (P::Sending, Some(Input::Failed(e))) => {
                manager.handle_refresh_failure(self.id, &e.to_string(), now);
                self.error = Some(e);
                self.follow_up(manager)
            }
            (P::FetchingKeys, Some(Input::Response(response))) => {
                manager.handle_keys_response(self.id, Ok(&response), now);
                self.follow_up(manager)
            }
            (P::FetchingKeys, Some(Input::Failed(e))) => {
                manager.handle_keys_response::<Vec<u8>>(self.id, Err(&e.to_string()), now);
                self.follow_up(manager)
            }
            (P::Saving, Some(Input::Saved(result))) => {
                // A failed write is reported to every caller by the manager (`RefreshError::Persist`),
                // retryable when the store says so.
                manager.handle_persisted(
                    self.id,
                    result.as_ref().map_err(PersistFailure::from).copied(),
                    now,
                );
                self.follow_up(manager)
            }
            (P::Clearing, Some(Input::Cleared(result))) => {
                if let Err(e) = result {
                    self.error = Some(e.into());
                }
                self.follow_up(manager)
            }
            (P::Unlocking, Some(Input::Unlocked)) => {
                self.phase = P::Done;
                Step::Done(self.error.take().map_or(Ok(()), Err))
            }
            (phase, input) => unexpected(&format!("{input:?} in {phase:?}")),
        }
    }

    fn abandon(&mut self, manager: &mut TokenManager, now: SystemTime) {
        if self.phase != RenewalPhase::Done {
            manager.handle_refresh_failure(self.id, "the renewal was abandoned before it finished", now);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Calls: an access token, an API request, a forced refresh, userinfo
// ---------------------------------------------------------------------------------------------------------

/// The part every call shares: ask the manager until a token is ready, running or waiting for the
/// renewal it needs.
#[derive(Debug, Default)]
struct TokenWait {
    call: Option<ApiCall>,
}

// Short-lived, on the stack of one step: boxing the step would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Asked<T, U> {
    /// The token (or `()` once the header is set).
    Ready(T),
    /// What the operation does next.
    Next(Step<U>),
}

impl TokenWait {
    fn call<'a>(&'a mut self, manager: &TokenManager) -> &'a mut ApiCall {
        self.call.get_or_insert_with(|| manager.begin_call())
    }

    /// Handles a renewal's result, then asks `ask` (`manager.access_token` or `manager.authorize`).
    fn ask<T, U>(
        &mut self,
        manager: &mut TokenManager,
        input: &mut Option<Input>,
        now: SystemTime,
        ask: impl FnOnce(&mut TokenManager, &mut ApiCall, SystemTime) -> Access<T>,
    ) -> Asked<T, U> {
        let call = self.call.get_or_insert_with(|| manager.begin_call());
        if let Some(Input::Renewed(Err(e))) = input.take() {
            // This caller ran the renewal: it gets the renewal's own error (a transport error, say), and
            // is not told of the same failure again.
            manager.mark_failures_seen(call);
            return Asked::Next(Step::Done(Err(e)));
        }
        match ask(manager, call, now) {
            Access::Ready(t) => Asked::Ready(t),
            Access::Failed(e) => Asked::Next(Step::Done(Err(Error::Refresh(e)))),
            Access::Wait => Asked::Next(match manager.take_refresh() {
                Some((id, request)) => Step::Renew(Renewal::new(id, request)),
                None => Step::Wait,
            }),
        }
    }
}

/// A valid access token, renewed first when it is expired or within the margin (catalogue E8, E9).
#[derive(Debug, Default)]
pub struct GetAccessToken {
    wait: TokenWait,
}

impl GetAccessToken {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for GetAccessToken {
    type Output = AccessToken;

    fn step(
        &mut self,
        manager: &mut TokenManager,
        mut input: Option<Input>,
        now: SystemTime,
    ) -> Step<AccessToken> {
        match self.wait.ask(manager, &mut input, now, |m, c, now| m.access_token(c, now)) {
            Asked::Ready(token) => Step::Done(Ok(token)),
            Asked::Next(step) => step,
        }
    }
}

/// A forced renewal (the CLI's `refresh`): renews now, or waits for the renewal under way.
#[derive(Debug, Default)]
pub struct ForceRefresh {
    wait: TokenWait,
    started: bool,
}

impl ForceRefresh {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for ForceRefresh {
    type Output = ();

    fn step(&mut self, manager: &mut TokenManager, mut input: Option<Input>, now: SystemTime) -> Step<()> {
        if !self.started {
            self.started = true;
            let call = self.wait.call(manager);
            let queued = manager.force_refresh_for(call);
            if !queued && !manager.is_renewing() {
                let reason = match manager.tokens() {
                    None => LoginRequired::NoTokens,
                    Some(_) => LoginRequired::NoRefreshToken,
                };
                return Step::Done(Err(Error::Refresh(RefreshError::LoginRequired(reason))));
            }
        }
        match self.wait.ask(manager, &mut input, now, |m, c, now| m.access_token(c, now)) {
            Asked::Ready(_) => Step::Done(Ok(())),
            Asked::Next(step) => step,
        }
    }
}

/// An API request sent with `Authorization: Bearer` (catalogue F1): a 401 refusing the token leads to one
/// renewal and one retry (F2), and one call causes at most one renewal (E9). The request must go to the
/// instance: the token is never sent elsewhere.
pub struct SendRequest {
    request: http::Request<Vec<u8>>,
    wait: TokenWait,
    sent: bool,
    checked: bool,
    any_status: bool,
}

impl fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .field("sent", &self.sent)
            .field("any_status", &self.any_status)
            .finish_non_exhaustive()
    }
}

impl SendRequest {
    /// The operation for `request`.
    pub fn new(request: http::Request<Vec<u8>>) -> Self {
        SendRequest { request, wait: TokenWait::default(), sent: false, checked: false, any_status: false }
    }

    /// Hands back the final response whatever its status, body included, instead of
    /// [`Error::Api`]: for a caller that shows the server's error body (the CLI's `call`). The 401 still
    /// leads to one renewal and one retry first, exactly as without it; classify the response with
    /// [`crate::check_api_response`], which gives the error [`Self::new`] would have returned.
    pub fn any_status(mut self) -> Self {
        self.any_status = true;
        self
    }
}

impl Operation for SendRequest {
    type Output = http::Response<Vec<u8>>;

    fn step(
        &mut self,
        manager: &mut TokenManager,
        mut input: Option<Input>,
        now: SystemTime,
    ) -> Step<http::Response<Vec<u8>>> {
        if !self.checked {
            self.checked = true;
            // The access token goes to the instance only (a request elsewhere would leak it).
            if let Err(e) = manager.client().check_api_target(self.request.uri()) {
                return Step::Done(Err(e.into()));
            }
        }
        if self.sent {
            self.sent = false;
            let call = self.wait.call(manager);
            let step = match input.take() {
                Some(Input::Response(response)) => match manager.handle_api_response(call, &response) {
                    ApiOutcome::Done(Ok(())) => Some(Step::Done(Ok(response))),
                    ApiOutcome::Done(Err(_)) if self.any_status => Some(Step::Done(Ok(response))),
                    ApiOutcome::Done(Err(e)) => Some(Step::Done(Err(Error::Api(e)))),
                    ApiOutcome::Retry => None,
                },
                Some(Input::Failed(e)) => Some(Step::Done(Err(e))),
                other => Some(unexpected(&format!("{other:?} after sending an API request"))),
            };
            if let Some(step) = step {
                return step;
            }
        }
        let request = &mut self.request;
        match self.wait.ask(manager, &mut input, now, |m, c, now| m.authorize(c, request, now)) {
            Asked::Ready(()) => {
                self.sent = true;
                Step::Send { request: clone_request(&self.request), target: Target::Api }
            }
            Asked::Next(step) => step,
        }
    }
}

/// A copy of `request` to send (the original is kept for a retry after a 401).
pub fn clone_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// The signed-in user's claims from the UserInfo endpoint, with the current access token; their `sub`
/// must be the ID token's (OpenID Connect Core §5.3.2). Without an ID token (no `openid` scope) the
/// answer cannot be checked: [`IdTokenError::Missing`].
#[derive(Debug, Default)]
pub struct GetUserInfo {
    wait: TokenWait,
    expected: Option<String>,
}

impl GetUserInfo {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for GetUserInfo {
    type Output = UserInfo;

    fn step(
        &mut self,
        manager: &mut TokenManager,
        mut input: Option<Input>,
        now: SystemTime,
    ) -> Step<UserInfo> {
        if let Some(expected) = &self.expected {
            return match input {
                Some(Input::Response(r)) => {
                    Step::Done(parse_userinfo_response(&r, expected).map_err(Error::from))
                }
                Some(Input::Failed(e)) => Step::Done(Err(e)),
                other => unexpected(&format!("{other:?} after the userinfo request")),
            };
        }
        let token = match self.wait.ask(manager, &mut input, now, |m, c, now| m.access_token(c, now)) {
            Asked::Ready(token) => token,
            Asked::Next(step) => return step,
        };
        let expected = manager
            .tokens()
            .and_then(|t| t.id_token.as_ref())
            .and_then(|t| IdTokenClaims::from_verified(t).ok())
            .map(|c| c.sub);
        let Some(expected) = expected else {
            return Step::Done(Err(Error::IdToken(IdTokenError::Missing)));
        };
        match manager.client().userinfo_request(&token) {
            Ok(request) => {
                self.expected = Some(expected);
                Step::Send { request, target: Target::IdentityServer }
            }
            Err(e) => Step::Done(Err(e.into())),
        }
    }
}

/// Runs a timer-driven renewal when one is due ([`TokenManager::poll_timeout`], catalogue E8).
#[derive(Debug, Default)]
pub struct HandleTimeout {
    started: bool,
}

impl HandleTimeout {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for HandleTimeout {
    type Output = ();

    fn step(&mut self, manager: &mut TokenManager, input: Option<Input>, now: SystemTime) -> Step<()> {
        match input {
            Some(Input::Renewed(result)) => Step::Done(result),
            None if !self.started => {
                self.started = true;
                manager.handle_timeout(now);
                match manager.take_refresh() {
                    Some((id, request)) => Step::Renew(Renewal::new(id, request)),
                    None => Step::Done(Ok(())),
                }
            }
            other => unexpected(&format!("{other:?} after a timer renewal")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------------------

/// A finished login: the stored tokens and the verified ID token's claims.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoggedIn {
    /// The tokens, stored and in use.
    pub tokens: TokenSet,
    /// The verified ID token's claims (`sub` is the user); `None` when no ID token was issued (no
    /// `openid` scope).
    pub claims: Option<IdTokenClaims>,
}

/// Finishes a login with the callback the redirect URI received. In order: checks the callback (state,
/// `iss`, errors, a hybrid callback's `id_token`: catalogue B); verifies a front-channel ID token before
/// the code is exchanged (B7); exchanges the code (one request: a network failure is not retried with the
/// same code, C6); verifies the ID token (catalogue D), fetching the signing keys when needed (once more
/// for an unknown `kid`, rate-limited: D7); then stores the tokens under the store's lock and makes them
/// the manager's. Nothing is stored when a check fails. If the tokens cannot be stored they are still
/// used in memory, and the store error is returned.
pub struct FinishLogin {
    phase: LoginPhase,
    callback_error: Option<CallbackError>,
    exchange: Option<CodeExchange>,
    waiting: Option<TokenExchange>,
    login: Option<Login>,
    done: Option<LoggedIn>,
    saved: Option<Result<(), StoreError>>,
    fetching: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginPhase {
    FrontChannel,
    Exchanging,
    BackChannel,
    Locking,
    Saving,
    Unlocking,
    Finished,
}

impl fmt::Debug for FinishLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishLogin").field("phase", &self.phase).finish_non_exhaustive()
    }
}

/// What the keys say about an ID token to verify.
#[allow(clippy::large_enum_variant)] // short-lived, like `Asked`
enum KeysFor {
    Ready,
    Next(Step<LoggedIn>),
}

impl FinishLogin {
    /// The operation for `pending` and the `callback` its redirect URI received. The callback is checked
    /// here, at once (it may borrow the adapter's buffer); a rejection is the first step's result.
    pub fn new(client: &ClientConfig, pending: PendingLogin, callback: Callback<'_>) -> Self {
        let (exchange, callback_error) = match pending.handle_callback(client, callback) {
            Ok(exchange) => (Some(exchange), None),
            Err(e) => (None, Some(e)),
        };
        FinishLogin {
            phase: LoginPhase::FrontChannel,
            callback_error,
            exchange,
            waiting: None,
            login: None,
            done: None,
            saved: None,
            fetching: false,
        }
    }

    /// Whether the keys can verify `token` now: takes the answer of a fetch this login sent, or sends one.
    fn keys_for(
        &mut self,
        manager: &mut TokenManager,
        token: &IdToken,
        input: Option<Input>,
        now: SystemTime,
    ) -> KeysFor {
        if self.fetching {
            self.fetching = false;
            match input {
                Some(Input::Response(r)) => {
                    if let Err(e) = manager.handle_fetched_keys(Some(&r)) {
                        return KeysFor::Next(Step::Done(Err(e.into())));
                    }
                    // Fetched: verify with what came, even if the key is still unknown (no second fetch).
                    return KeysFor::Ready;
                }
                Some(Input::Failed(e)) => {
                    let _ = manager.handle_fetched_keys::<Vec<u8>>(None);
                    return KeysFor::Next(Step::Done(Err(e)));
                }
                other => return KeysFor::Next(unexpected(&format!("{other:?} after a key fetch"))),
            }
        }
        match manager.poll_keys(token, now) {
            Keys::Ready => KeysFor::Ready,
            Keys::Fetch(request) => {
                self.fetching = true;
                KeysFor::Next(Step::Send { request, target: Target::IdentityServer })
            }
            Keys::Wait => KeysFor::Next(Step::Wait),
        }
    }
}

impl Operation for FinishLogin {
    type Output = LoggedIn;

    fn step(&mut self, manager: &mut TokenManager, input: Option<Input>, now: SystemTime) -> Step<LoggedIn> {
        use LoginPhase as P;
        if let Some(e) = self.callback_error.take() {
            self.phase = P::Finished;
            return Step::Done(Err(e.into()));
        }
        let mut input = input;
        loop {
            match self.phase {
                P::FrontChannel => {
                    let Some(exchange) = self.exchange.as_mut() else { return unexpected("no code") };
                    if let Some(token) = exchange.front_channel_id_token().cloned() {
                        match self.keys_for(manager, &token, input.take(), now) {
                            KeysFor::Ready => {}
                            KeysFor::Next(step) => return step,
                        }
                        let Some(exchange) = self.exchange.as_mut() else { return unexpected("no code") };
                        let client = manager.client_arc().clone();
                        if let Err(e) = exchange.verify_front_channel(&client, manager.keys().keys(), now) {
                            self.phase = P::Finished;
                            return Step::Done(Err(e.into()));
                        }
                    }
                    let Some(exchange) = self.exchange.take() else { return unexpected("no code") };
                    let (request, waiting) = exchange.into_request(manager.client());
                    self.waiting = Some(waiting);
                    self.phase = P::Exchanging;
                    return Step::Send { request, target: Target::IdentityServer };
                }
                P::Exchanging => {
                    let Some(waiting) = self.waiting.take() else { return unexpected("no exchange") };
                    match input.take() {
                        Some(Input::Response(r)) => match waiting.handle_response(&r, now) {
                            Ok(login) => {
                                self.login = Some(login);
                                self.phase = P::BackChannel;
                            }
                            Err(e) => {
                                self.phase = P::Finished;
                                return Step::Done(Err(e.into()));
                            }
                        },
                        // The code is never sent again (catalogue C6).
                        Some(Input::Failed(e)) => {
                            self.phase = P::Finished;
                            return Step::Done(Err(e));
                        }
                        other => return unexpected(&format!("{other:?} after the code exchange")),
                    }
                }
                P::BackChannel => {
                    let Some(login) = self.login.as_ref() else { return unexpected("no login") };
                    if let Some(token) = login.id_token().cloned() {
                        match self.keys_for(manager, &token, input.take(), now) {
                            KeysFor::Ready => {}
                            KeysFor::Next(step) => return step,
                        }
                    }
                    let Some(login) = self.login.take() else { return unexpected("no login") };
                    match login.verify(manager.client(), manager.keys().keys(), now) {
                        Ok(verified) => {
                            let tokens = manager.options().with_expiry(verified.tokens, now);
                            self.done = Some(LoggedIn { tokens, claims: verified.claims });
                            self.phase = P::Locking;
                            return Step::LockStore;
                        }
                        Err(e) => {
                            self.phase = P::Finished;
                            return Step::Done(Err(e.into()));
                        }
                    }
                }
                P::Locking => {
                    let Some(done) = &self.done else { return unexpected("no tokens") };
                    return match input.take() {
                        Some(Input::Locked(Ok(()))) => {
                            self.phase = P::Saving;
                            Step::SaveStore(done.tokens.clone())
                        }
                        Some(Input::Locked(Err(e))) => {
                            // Not stored, but used in memory: the code is spent and the tokens are valid.
                            manager.handle_login(done.tokens.clone());
                            self.phase = P::Finished;
                            Step::Done(Err(e.into()))
                        }
                        other => unexpected(&format!("{other:?} while locking the store")),
                    };
                }
                P::Saving => {
                    return match input.take() {
                        Some(Input::Saved(result)) => {
                            self.saved = Some(result);
                            self.phase = P::Unlocking;
                            Step::UnlockStore
                        }
                        other => unexpected(&format!("{other:?} while saving the tokens")),
                    };
                }
                P::Unlocking => {
                    let Some(done) = self.done.take() else { return unexpected("no tokens") };
                    self.phase = P::Finished;
                    manager.handle_login(done.tokens.clone());
                    return match self.saved.take() {
                        Some(Err(e)) => Step::Done(Err(e.into())),
                        _ => Step::Done(Ok(done)),
                    };
                }
                P::Finished => return unexpected("a finished login"),
            }
        }
    }

    fn abandon(&mut self, manager: &mut TokenManager, _now: SystemTime) {
        if self.fetching {
            self.fetching = false;
            let _ = manager.handle_fetched_keys::<Vec<u8>>(None);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------------------------------

/// What a logout did at the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Revocation {
    /// The refresh token was revoked.
    Revoked,
    /// No refresh token was held.
    NothingToRevoke,
    /// The server has no revocation endpoint.
    NotOffered,
    /// The revocation failed; the tokens were deleted locally all the same. The refresh token may still be
    /// live at the server.
    Failed(Error),
}

/// The outcome of a logout.
#[derive(Debug)]
#[non_exhaustive]
pub struct Logout {
    /// Whether tokens were held (in memory or in the store).
    pub had_tokens: bool,
    /// What happened at the server.
    pub revocation: Revocation,
}

/// Logs out: waits for a renewal in flight, locks the store, re-reads it and revokes the latest refresh
/// token where the server offers revocation (RFC 7009 with the token endpoint's client authentication:
/// catalogue G1, G4), then forgets the tokens and deletes them from the store whatever the revocation's
/// outcome (G2). A store that cannot be read (a corrupt file) is deleted too. An error is returned only
/// when the store could not be locked or cleared.
#[derive(Debug, Default)]
pub struct LogOut {
    phase: LogoutPhase,
    had_tokens: bool,
    held: Option<RefreshToken>,
    revocation: Option<Revocation>,
    cleared: Option<Result<(), StoreError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LogoutPhase {
    #[default]
    Start,
    Locking,
    Loading,
    Revoking,
    Clearing,
    Unlocking,
    Finished,
}

impl LogOut {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }

    fn clear(&mut self, revocation: Revocation) -> Step<Logout> {
        self.revocation = Some(revocation);
        self.phase = LogoutPhase::Clearing;
        Step::ClearStore
    }
}

impl Operation for LogOut {
    type Output = Logout;

    fn step(&mut self, manager: &mut TokenManager, input: Option<Input>, _now: SystemTime) -> Step<Logout> {
        use LogoutPhase as P;
        match (self.phase, input) {
            (P::Start, None) => {
                if !manager.begin_logout() {
                    return Step::Wait;
                }
                self.had_tokens = manager.tokens().is_some();
                self.held = manager.tokens().and_then(|t| t.refresh_token.clone());
                self.phase = P::Locking;
                Step::LockStore
            }
            (P::Locking, Some(Input::Locked(Ok(())))) => {
                self.phase = P::Loading;
                Step::LoadStore
            }
            (P::Locking, Some(Input::Locked(Err(e)))) => {
                manager.abort_logout();
                self.phase = P::Finished;
                Step::Done(Err(e.into()))
            }
            (P::Loading, Some(Input::Loaded(stored))) => {
                // The latest refresh token is the store's: another process may have rotated it (G4).
                let stored = stored.ok().flatten();
                self.had_tokens |= stored.is_some();
                let latest = stored.and_then(|t| t.refresh_token).or_else(|| self.held.take());
                let Some(rt) = latest else { return self.clear(Revocation::NothingToRevoke) };
                match manager.client().revocation_request(&rt) {
                    Ok(request) => {
                        self.phase = P::Revoking;
                        Step::Send { request, target: Target::IdentityServer }
                    }
                    Err(_) => self.clear(Revocation::NotOffered),
                }
            }
            (P::Revoking, Some(Input::Response(r))) => match parse_revocation_response(&r) {
                Ok(()) => self.clear(Revocation::Revoked),
                Err(e) => self.clear(Revocation::Failed(e.into())),
            },
            (P::Revoking, Some(Input::Failed(e))) => self.clear(Revocation::Failed(e)),
            (P::Clearing, Some(Input::Cleared(result))) => {
                manager.handle_logout();
                self.cleared = Some(result);
                self.phase = P::Unlocking;
                Step::UnlockStore
            }
            (P::Unlocking, Some(Input::Unlocked)) => {
                self.phase = P::Finished;
                match self.cleared.take() {
                    Some(Err(e)) => Step::Done(Err(e.into())),
                    _ => Step::Done(Ok(Logout {
                        had_tokens: self.had_tokens,
                        revocation: self.revocation.take().unwrap_or(Revocation::NothingToRevoke),
                    })),
                }
            }
            (phase, input) => unexpected(&format!("{input:?} in the logout's {phase:?}")),
        }
    }

    fn abandon(&mut self, manager: &mut TokenManager, _now: SystemTime) {
        if matches!(
            self.phase,
            LogoutPhase::Locking | LogoutPhase::Loading | LogoutPhase::Revoking | LogoutPhase::Clearing
        ) {
            manager.abort_logout();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// API request URIs
// ---------------------------------------------------------------------------------------------------------

impl ClientConfig {
    /// `path_or_url` as a request URI: a plain path (`/api/domain/odata/Crm_Customers?$top=10`) is
    /// appended to the instance URL, which was checked when the configuration was built; anything else
    /// goes through [`ClientConfig::resolve`] (joining, encoding, the plain-http rule).
    pub fn request_uri(&self, path_or_url: &str) -> Result<http::Uri, Error> {
        if path_or_url.starts_with('/') && !path_or_url.starts_with("//") {
            let base = self.instance().as_str().trim_end_matches('/');
            if let Ok(uri) = http::Uri::try_from(format!("{base}{path_or_url}")) {
                return Ok(uri);
            }
        }
        let url = self.resolve(path_or_url)?;
        http::Uri::try_from(url.as_str()).map_err(|e| Error::Http(e.to_string()))
    }

    /// A `GET` of `path_or_url` ([`Self::request_uri`]) asking for JSON, for [`SendRequest`].
    pub fn get_request(&self, path_or_url: &str) -> Result<http::Request<Vec<u8>>, Error> {
        http::Request::get(self.request_uri(path_or_url)?)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| Error::Http(e.to_string()))
    }
}
