//! The session: one login's tokens, kept usable for many threads (and processes) at once.

//!
//! Every protocol decision is the core's ([`erpnet_oauth_core::lifecycle`]): each method here hands one of
//! its operations to [`Session::drive`], which carries out the steps it asks for (send a request, lock,
//! read, write or clear the store, run a renewal, wait for another thread's) and feeds back the results.

use crate::Error;
use crate::clock::{Clock, OsRandom, SystemClock};
use crate::store::{MemoryStore, StoreLock, TokenStore};
use crate::transport::HttpClient;
use erpnet_oauth_core::lifecycle::{
    FinishLogin, ForceRefresh, GetAccessToken, GetUserInfo, HandleTimeout, Input, LogOut, LoggedIn, Logout,
    Operation, SendRequest, Step,
};
use erpnet_oauth_core::{
    AccessToken, AuthorizationRequest, Callback, ClientConfig, HttpOptions, ManagerOptions, PendingLogin,
    ReferenceToken, Renewal, Scopes, TokenManager, TokenSet, UserInfo,
};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// Builds a [`Session`]. Start with [`Session::builder`].
pub struct SessionBuilder {
    client: Arc<ClientConfig>,
    store: Box<dyn TokenStore>,
    clock: Box<dyn Clock>,
    options: ManagerOptions,
    http: HttpOptions,
    http_client: Option<HttpClient>,
}

impl fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("client", &self.client)
            .field("options", &self.options)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    /// Where the tokens are kept. Default: a [`MemoryStore`].
    pub fn store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Box::new(store);
        self
    }

    /// Where the time comes from. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The token manager's settings (skew, renewal, backoff).
    pub fn manager_options(mut self, options: ManagerOptions) -> Self {
        self.options = options;
        self
    }

    /// A token expiring within `skew` is refreshed before use. Default 60 s.
    pub fn skew(mut self, skew: Duration) -> Self {
        self.options.skew = skew;
        self
    }

    /// The HTTP client's settings (timeouts, body limits).
    pub fn http_options(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Shares `client` (its connection pool and settings) instead of creating one for this session: a server
    /// with a session per user gives them all the same client. Replaces [`Self::http_options`].
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Sends through your own ureq `agent` (a proxy, a company CA, your TLS settings) with the timeouts and
    /// body limits of [`Self::http_options`] (set them first). The protocol's own rules are applied to each
    /// request whatever the agent's configuration: no redirect followed, error statuses read as responses,
    /// the timeouts. See [`HttpClient::with_agent`].
    pub fn agent(mut self, agent: ureq::Agent) -> Self {
        self.http_client = Some(HttpClient::with_agent(agent, self.http.clone()));
        self
    }

    /// Renew with `client_credentials` (ERP.net service applications, catalogue I1) asking for `scopes`
    /// (space-separated), instead of with a user's refresh token. No login is needed.
    pub fn client_credentials(mut self, scopes: &str) -> Self {
        self.options.renewal = Renewal::ClientCredentials { scopes: Scopes::parse(scopes) };
        self
    }

    /// Uses a static ERP.net reference token (`enrt_...`, a personal or service access token) as the bearer
    /// credential, in place of a login: it is sent as `Authorization: Bearer` on every call, never
    /// refreshed, and a 401 is returned to the caller. Replaces the store with a memory store holding it.
    pub fn reference_token(mut self, token: ReferenceToken) -> Self {
        self.store = Box::new(MemoryStore::with_tokens(TokenSet {
            access_token: AccessToken::new(token.secret()),
            expires_at: None,
            refresh_token: None,
            id_token: None,
            issued_at: None,
            scopes: Scopes::default(),
        }));
        self.options.renewal = Renewal::RefreshToken;
        self
    }

    /// Loads the stored tokens and builds the session. A store that cannot be read (e.g. a corrupt file)
    /// is an error: nothing is overwritten before the caller knows.
    pub fn build(self) -> Result<Session, Error> {
        let tokens = self.store.load()?;
        let manager = TokenManager::new(self.client.clone(), tokens, self.options);
        Ok(Session {
            manager: Mutex::new(manager),
            changed: Condvar::new(),
            http: self.http_client.unwrap_or_else(|| HttpClient::new(self.http)),
            client: self.client,
            store: self.store,
            clock: self.clock,
        })
    }
}

/// One login's tokens, kept usable: `Send + Sync`, share it with an `Arc`.
///
/// - [`Session::access_token`] returns a valid access token, refreshing it when it is expired or expires
///   within the margin (the skew, at most half the token's lifetime: catalogue E8, E9).
/// - [`Session::send`] attaches `Authorization: Bearer`, and on a 401 refreshes once and retries once; one
///   call causes at most one refresh.
/// - **Single flight**: however many threads find the token expired at once, one refresh request goes
///   out; the thread that picked it up runs it without holding the session's lock, the others wait for
///   its result. The refresh runs under the store's cross-process lock after re-reading the store, so
///   processes sharing a [`crate::FileStore`] refresh once, not once each.
/// - **A rotated refresh token is stored before it is used**: new tokens are saved, then handed out. A
///   failed save is reported to the callers (`RefreshError::Persist`); the tokens stay in memory.
/// - When the server rejects the refresh token (`invalid_grant`), or a refreshed ID token fails a security
///   check, the store is cleared and callers get an error for which [`Error::is_login_required`] is true.
///
/// Errors: the thread that sent a refresh that got no answer gets the transport error itself
/// ([`Error::Timeout`], [`Error::Connect`], ...); threads that waited for it get
/// `Error::Refresh(RefreshError::Transport(..))`. Both are [`Error::is_retryable`], and the tokens are
/// kept.
pub struct Session {
    manager: Mutex<TokenManager>,
    changed: Condvar,
    http: HttpClient,
    client: Arc<ClientConfig>,
    store: Box<dyn TokenStore>,
    clock: Box<dyn Clock>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.client)
            .field("manager", &self.manager)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// An operation being driven: abandoned (so that other threads are not left waiting for what it holds)
/// if its thread unwinds before it is done.
struct Driving<'a, O: Operation> {
    session: &'a Session,
    op: O,
    done: bool,
}

impl<O: Operation> Drop for Driving<'_, O> {
    fn drop(&mut self) {
        if !self.done {
            let now = self.session.clock.now();
            self.op.abandon(&mut self.session.lock(), now);
            self.session.changed.notify_all();
        }
    }
}

impl Session {
    /// Starts building a session for `client`.
    ///
    /// `client` may be an `Arc<ClientConfig>` shared by the sessions of many users.
    pub fn builder(client: impl Into<Arc<ClientConfig>>) -> SessionBuilder {
        SessionBuilder {
            client: client.into(),
            store: Box::new(MemoryStore::new()),
            clock: Box::new(SystemClock),
            options: ManagerOptions::default(),
            http: HttpOptions::default(),
            http_client: None,
        }
    }

    /// A session for `client` with the defaults: tokens in memory, the system clock, 30 s timeouts.
    pub fn new(client: ClientConfig) -> Result<Session, Error> {
        Self::builder(client).build()
    }

    /// The client configuration.
    pub fn client(&self) -> &ClientConfig {
        &self.client
    }

    /// The HTTP client (for requests of your own with the same timeouts and limits).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The HTTP settings (timeouts, body limits).
    pub fn http_options(&self) -> &HttpOptions {
        self.http.options()
    }

    /// The tokens in use, if any (their `Debug` shows no secret).
    pub fn tokens(&self) -> Option<TokenSet> {
        self.lock().tokens().cloned()
    }

    /// Whether tokens are held (a login happened and was not rejected or logged out).
    pub fn is_logged_in(&self) -> bool {
        self.lock().tokens().is_some()
    }

    /// The current time on the session's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Starts a login: the authorization request with a fresh state, nonce and PKCE verifier from the OS
    /// random source. Send the browser to [`PendingLogin::authorize_url`] and keep the pending login
    /// for [`Self::finish_login`] (web applications may serialize it into a server-side session).
    pub fn start_login(&self, request: AuthorizationRequest) -> Result<PendingLogin, Error> {
        Ok(request.build(&self.client, &mut OsRandom)?)
    }

    /// Finishes a login with the callback the redirect URI received: a query string
    /// ([`Callback::Query`], the seed's), a `form_post` body ([`Callback::FormPost`]) or the full URL.
    /// See [`FinishLogin`] for the checks, in order; nothing is stored when one fails. If the tokens cannot
    /// be stored they are still used in memory, and the store error is returned.
    pub fn finish_login(&self, pending: PendingLogin, callback: Callback<'_>) -> Result<LoggedIn, Error> {
        self.drive(FinishLogin::new(&self.client, pending, callback))
    }

    /// A valid access token, refreshed first when it is expired or expires within the margin (catalogue
    /// E8). With client credentials, a new token is requested when needed.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        self.drive(GetAccessToken::new())
    }

    /// Sends `request` with `Authorization: Bearer <token>` (catalogue F1). The request must go to the
    /// instance (same scheme, host and port): the token is never sent elsewhere ([`Error::Config`] with
    /// `ConfigError::ForeignOrigin`). A 401 refusing the token leads to one refresh and one retry (F2);
    /// other error statuses are returned as [`Error::Api`] (403 with the missing scope, 429 with
    /// `Retry-After`, ERP.net business errors). The body is read up to [`HttpOptions::api_body_limit`];
    /// redirects are returned, not followed.
    pub fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        self.drive(SendRequest::new(request))
    }

    /// [`Self::send`], except that the final response comes back whatever its status, body included,
    /// instead of [`Error::Api`]: the 401 still leads to one refresh and one retry first. For showing the
    /// server's error body; [`erpnet_oauth_core::check_api_response`] gives the error `send` would have
    /// returned.
    pub fn send_any_status(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        self.drive(SendRequest::new(request).any_status())
    }

    /// `GET` of `path_or_url`: a path such as `/api/domain/odata/Crm_Customers?$top=10` is resolved
    /// against the instance; an absolute URL is used as is (plain http only to loopback hosts, unless
    /// allowed in the configuration). See [`Self::send`].
    pub fn get(&self, path_or_url: &str) -> Result<http::Response<Vec<u8>>, Error> {
        self.send(self.client.get_request(path_or_url)?)
    }

    /// Renews the access token now, whether or not it is expired (the CLI's `refresh`). When a renewal
    /// is already under way, waits for it instead.
    pub fn refresh(&self) -> Result<(), Error> {
        self.drive(ForceRefresh::new())
    }

    /// The signed-in user's claims from the UserInfo endpoint ([`GetUserInfo`]).
    pub fn userinfo(&self) -> Result<UserInfo, Error> {
        self.drive(GetUserInfo::new())
    }

    /// Logs out ([`LogOut`]): waits for a refresh under way, locks the store, re-reads it, revokes the
    /// latest refresh token where the server offers revocation, then forgets the tokens and deletes them
    /// from the store whatever the revocation's outcome. The outcome of the revocation is in the returned
    /// [`Logout`]; an error is returned only when the store could not be locked or cleared.
    pub fn logout(&self) -> Result<Logout, Error> {
        self.drive(LogOut::new())
    }

    /// When a proactive refresh is due (before the token expires, catalogue E8), for an application that
    /// keeps its session warm with a timer of its own; `None` when none is planned. Then call
    /// [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.lock().poll_timeout()
    }

    /// Refreshes now if [`Self::poll_timeout`] is due.
    pub fn handle_timeout(&self) -> Result<(), Error> {
        self.drive(HandleTimeout::new())
    }

    fn lock(&self) -> MutexGuard<'_, TokenManager> {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out `op`'s steps until it is done. The session's lock is held only while the operation
    /// decides, never across I/O; the store's lock is held from `LockStore` to `UnlockStore`.
    fn drive<O: Operation>(&self, op: O) -> Result<O::Output, Error> {
        let mut driving = Driving { session: self, op, done: false };
        let mut held: Option<StoreLock> = None;
        let mut input = None;
        loop {
            let mut manager = self.lock();
            let step = driving.op.step(&mut manager, input.take(), self.clock.now());
            if let Step::Wait = step {
                // Still holding the lock: a change made after the step cannot be missed.
                drop(self.changed.wait(manager).unwrap_or_else(PoisonError::into_inner));
                continue;
            }
            drop(manager);
            self.changed.notify_all();
            input = Some(match step {
                Step::Send { request, target } => match self.http.send(&request, self.http.limit(target)) {
                    Ok(response) => Input::Response(response),
                    Err(e) => Input::Failed(e),
                },
                Step::LockStore => match self.store.lock() {
                    Ok(lock) => {
                        held = Some(lock);
                        Input::Locked(Ok(()))
                    }
                    Err(e) => Input::Locked(Err(e)),
                },
                Step::LoadStore => Input::Loaded(self.store.load()),
                Step::SaveStore(tokens) => Input::Saved(self.store.save(&tokens)),
                Step::ClearStore => Input::Cleared(self.store.clear()),
                Step::UnlockStore => {
                    held = None;
                    Input::Unlocked
                }
                Step::Renew(renewal) => Input::Renewed(self.drive(renewal)),
                Step::Wait => continue,
                Step::Done(result) => {
                    driving.done = true;
                    drop(held);
                    return result;
                }
            });
        }
    }
}
