//! The session: one login's tokens, kept usable for many tasks at once without blocking the runtime.

//!
//! Every protocol decision is the core's ([`erpnet_oauth_core::lifecycle`]): each method here hands one of
//! its operations to `drive`, which carries out the steps it asks for (send a request, lock, read, write
//! or clear the store, run a renewal as a task of its own, wait for another task's) and feeds back the
//! results. The same operations drive the blocking adapter's session.

use crate::Error;
use crate::clock::{Clock, OsRandom, SystemClock};
use crate::store::{MemoryStore, StoreLock, TokenStore};
use crate::transport::{BoxFuture, HttpOptions, HttpSend};
use erpnet_oauth_core::lifecycle::{
    FinishLogin, ForceRefresh, GetAccessToken, GetUserInfo, HandleTimeout, Input, LogOut, LoggedIn, Logout,
    Operation, Renewal as RenewalOp, SendRequest, Step, Target,
};
use erpnet_oauth_core::{
    AccessToken, AuthorizationRequest, Callback, ClientConfig, ManagerOptions, PendingLogin, ReferenceToken,
    Renewal, Scopes, TokenManager, TokenSet, UserInfo,
};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Builds a [`Session`]. Start with [`Session::builder`].
pub struct SessionBuilder {
    client: Arc<ClientConfig>,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    options: ManagerOptions,
    http_options: HttpOptions,
    http: Option<Arc<dyn HttpSend>>,
}

impl fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("client", &self.client)
            .field("options", &self.options)
            .field("http_options", &self.http_options)
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    /// Where the tokens are kept. Default: a [`MemoryStore`].
    pub fn store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Where the time comes from. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
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

    /// The HTTP settings: body limits, and the timeouts and pool of the default client.
    pub fn http_options(mut self, http: HttpOptions) -> Self {
        self.http_options = http;
        self
    }

    /// Sends through `http` instead of the default client (reqwest). Its body limits come from
    /// [`Self::http_options`]; its timeouts and redirect policy are its own (see [`HttpSend`]).
    pub fn http_client(mut self, http: impl HttpSend + 'static) -> Self {
        self.http = Some(Arc::new(http));
        self
    }

    /// Renew with `client_credentials` (ERP.net service applications, catalogue I1) asking for `scopes`
    /// (space-separated), instead of with a user's refresh token. No login is needed.
    pub fn client_credentials(mut self, scopes: &str) -> Self {
        self.options.renewal = Renewal::ClientCredentials { scopes: Scopes::parse(scopes) };
        self
    }

    /// Uses a static ERP.net reference token (`enrt_...`) as the bearer credential, in place of a login:
    /// sent on every call, never refreshed, a 401 returned to the caller. Replaces the store with a memory
    /// store holding it.
    pub fn reference_token(mut self, token: ReferenceToken) -> Self {
        self.store = Arc::new(MemoryStore::with_tokens(TokenSet {
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
    pub async fn build(self) -> Result<Session, Error> {
        let http: Arc<dyn HttpSend> = match self.http {
            Some(h) => h,
            #[cfg(feature = "reqwest")]
            None => Arc::new(crate::ReqwestClient::new(&self.http_options)?),
            #[cfg(not(feature = "reqwest"))]
            None => {
                return Err(Error::Http(
                    "no HTTP client: enable the `reqwest` feature or call SessionBuilder::http_client"
                        .to_owned(),
                ));
            }
        };
        let tokens = self.store.load().await?;
        let manager = TokenManager::new(self.client.clone(), tokens, self.options);
        Ok(Session {
            inner: Arc::new(Inner {
                manager: Mutex::new(manager),
                changed: Notify::new(),
                http,
                limits: self.http_options,
                client: self.client,
                store: self.store,
                clock: self.clock,
            }),
        })
    }
}

/// One login's tokens, kept usable by many tasks: `Send + Sync`, and cheap to clone (clones share the
/// same tokens, like an `Arc`). The same operations, names and meanings as the blocking adapter's
/// `Session`, as `async fn`s.
///
/// - [`Session::access_token`] returns a valid access token, refreshing it when it is expired or expires
///   within the margin (the skew, at most half the token's lifetime: catalogue E8, E9).
/// - [`Session::send`] attaches `Authorization: Bearer`, and on a 401 refreshes once and retries once; one
///   call causes at most one refresh.
/// - **Single flight without blocking**: however many tasks find the token expired at once, one refresh
///   request goes out. The session's mutex guards only the core's [`TokenManager`] and is never held
///   across an `.await`; waiting tasks sleep on a [`tokio::sync::Notify`]. The refresh itself runs in a
///   spawned task, so a caller that is cancelled (a dropped request future) does not leave it half done.
///   It runs under the store's cross-process lock after re-reading the store.
/// - **A rotated refresh token is stored before it is used**.
/// - When the server rejects the refresh token (`invalid_grant`), or a refreshed ID token fails a security
///   check, the store is cleared and callers get an error for which [`Error::is_login_required`] is true.
///   A 5xx keeps the tokens ([`Error::is_retryable`]).
///
/// Needs a tokio runtime (refreshes are spawned; the file store uses `spawn_blocking`).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Mutex<TokenManager>,
    changed: Notify,
    http: Arc<dyn HttpSend>,
    limits: HttpOptions,
    client: Arc<ClientConfig>,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.inner.client)
            .field("manager", &self.inner.manager)
            .field("http_options", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// An operation being driven: abandoned (so that other tasks are not left waiting for what it holds) if
/// its future is dropped, or its task unwinds, before it is done.
struct Driving<O: Operation> {
    inner: Arc<Inner>,
    op: O,
    done: bool,
}

impl<O: Operation> Drop for Driving<O> {
    fn drop(&mut self) {
        if !self.done {
            let now = self.inner.clock.now();
            self.op.abandon(&mut self.inner.lock(), now);
            self.inner.changed.notify_waiters();
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
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            options: ManagerOptions::default(),
            http_options: HttpOptions::default(),
            http: None,
        }
    }

    /// A session for `client` with the defaults: tokens in memory, the system clock, 30 s timeouts.
    pub async fn new(client: ClientConfig) -> Result<Session, Error> {
        Self::builder(client).build().await
    }

    /// The client configuration.
    pub fn client(&self) -> &ClientConfig {
        &self.inner.client
    }

    /// The HTTP client (for requests of your own, with [`HttpSend::send`]).
    pub fn http(&self) -> &dyn HttpSend {
        &*self.inner.http
    }

    /// The HTTP settings.
    pub fn http_options(&self) -> &HttpOptions {
        &self.inner.limits
    }

    /// The tokens in use, if any (their `Debug` shows no secret).
    pub fn tokens(&self) -> Option<TokenSet> {
        self.inner.lock().tokens().cloned()
    }

    /// Whether tokens are held (a login happened and was not rejected or logged out).
    pub fn is_logged_in(&self) -> bool {
        self.inner.lock().tokens().is_some()
    }

    /// The current time on the session's clock.
    pub fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// Starts a login: the authorization request with a fresh state, nonce and PKCE verifier from the OS
    /// random source. Send the browser to [`PendingLogin::authorize_url`] and keep the pending login for
    /// [`Self::finish_login`]: a web application keeps it server-side in the user's session (it is
    /// `Serialize`), never in the browser.
    pub fn start_login(&self, request: AuthorizationRequest) -> Result<PendingLogin, Error> {
        Ok(request.build(&self.inner.client, &mut OsRandom)?)
    }

    /// Finishes a login with the callback the redirect URI received: a query string
    /// ([`Callback::Query`]), a `form_post` body ([`Callback::FormPost`]) or the full URL. See
    /// [`FinishLogin`] for the checks, in order; nothing is stored when one fails.
    pub async fn finish_login(
        &self,
        pending: PendingLogin,
        callback: Callback<'_>,
    ) -> Result<LoggedIn, Error> {
        let op = FinishLogin::new(&self.inner.client, pending, callback);
        drive(self.inner.clone(), op).await
    }

    /// A valid access token, refreshed first when it is expired or expires within the margin (catalogue
    /// E8). With client credentials, a new token is requested when needed.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        drive(self.inner.clone(), GetAccessToken::new()).await
    }

    /// Sends `request` with `Authorization: Bearer <token>` (catalogue F1). A 401 refusing the token leads
    /// to one refresh and one retry (F2); other error statuses are returned as [`Error::Api`]. The body is
    /// read up to [`HttpOptions::api_body_limit`]; redirects are returned, not followed. A request to
    /// another origin than the instance is refused before any token is attached (`ConfigError::ForeignOrigin`).
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        drive(self.inner.clone(), SendRequest::new(request)).await
    }

    /// [`Self::send`], except that the final response comes back whatever its status, body included,
    /// instead of [`Error::Api`]: the 401 still leads to one refresh and one retry first. For showing the
    /// server's error body; [`erpnet_oauth_core::check_api_response`] gives the error `send` would have
    /// returned.
    pub async fn send_any_status(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Error> {
        drive(self.inner.clone(), SendRequest::new(request).any_status()).await
    }

    /// `GET` of `path_or_url`: a path such as `/api/domain/odata/Crm_Customers?$top=10` is resolved against
    /// the instance; an absolute URL is used as is (plain http only to loopback hosts, unless allowed in the
    /// configuration). See [`Self::send`].
    pub async fn get(&self, path_or_url: &str) -> Result<http::Response<Vec<u8>>, Error> {
        let request = self.inner.client.get_request(path_or_url)?;
        self.send(request).await
    }

    /// Renews the access token now, whether or not it is expired. When a renewal is already under way,
    /// waits for it instead.
    pub async fn refresh(&self) -> Result<(), Error> {
        drive(self.inner.clone(), ForceRefresh::new()).await
    }

    /// The signed-in user's claims from the UserInfo endpoint ([`GetUserInfo`]).
    pub async fn userinfo(&self) -> Result<UserInfo, Error> {
        drive(self.inner.clone(), GetUserInfo::new()).await
    }

    /// Logs out ([`LogOut`]): waits for a refresh under way, locks the store, re-reads it, revokes the
    /// latest refresh token where the server offers revocation, then forgets the tokens and deletes them
    /// from the store whatever the revocation's outcome. An error is returned only when the store could
    /// not be locked or cleared.
    pub async fn logout(&self) -> Result<Logout, Error> {
        drive(self.inner.clone(), LogOut::new()).await
    }

    /// When a proactive refresh is due (before the token expires, catalogue E8), for an application that
    /// keeps its session warm with a timer of its own; `None` when none is planned. Then call
    /// [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.inner.lock().poll_timeout()
    }

    /// Refreshes now if [`Self::poll_timeout`] is due.
    pub async fn handle_timeout(&self) -> Result<(), Error> {
        drive(self.inner.clone(), HandleTimeout::new()).await
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, TokenManager> {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit(&self, target: Target) -> u64 {
        match target {
            Target::IdentityServer => self.limits.token_body_limit,
            Target::Api => self.limits.api_body_limit,
        }
    }
}

/// A renewal runs as a task of its own: once its request is sent, its answer is taken in and its tokens
/// stored even if the caller that started it is cancelled.
fn spawn_renewal(inner: Arc<Inner>, renewal: RenewalOp) -> BoxFuture<'static, Result<(), Error>> {
    Box::pin(async move {
        tokio::spawn(drive(inner, renewal))
            .await
            .unwrap_or_else(|e| Err(Error::Task(format!("the refresh task failed: {e}"))))
    })
}

/// Carries out `op`'s steps until it is done. The manager's mutex is held only while the operation
/// decides, never across an `.await`; the store's lock is held from `LockStore` to `UnlockStore`.
async fn drive<O: Operation>(inner: Arc<Inner>, op: O) -> Result<O::Output, Error> {
    let mut driving = Driving { inner: inner.clone(), op, done: false };
    let mut held: Option<StoreLock> = None;
    let mut input = None;
    loop {
        // Registered before the manager is read, so that a change made after the step wakes it.
        let changed = inner.changed.notified();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let step = {
            let mut manager = inner.lock();
            driving.op.step(&mut manager, input.take(), inner.clock.now())
        };
        if let Step::Wait = step {
            changed.await;
            continue;
        }
        inner.changed.notify_waiters();
        input = Some(match step {
            Step::Send { request, target } => match inner.http.send(request, inner.limit(target)).await {
                Ok(response) => Input::Response(response),
                Err(e) => Input::Failed(e),
            },
            Step::LockStore => match inner.store.lock().await {
                Ok(lock) => {
                    held = Some(lock);
                    Input::Locked(Ok(()))
                }
                Err(e) => Input::Locked(Err(e)),
            },
            Step::LoadStore => Input::Loaded(inner.store.load().await),
            Step::SaveStore(tokens) => Input::Saved(inner.store.save(&tokens).await),
            Step::ClearStore => Input::Cleared(inner.store.clear().await),
            Step::UnlockStore => {
                held = None;
                Input::Unlocked
            }
            Step::Renew(renewal) => Input::Renewed(spawn_renewal(inner.clone(), renewal).await),
            Step::Wait => continue,
            Step::Done(result) => {
                driving.done = true;
                drop(held);
                return result;
            }
        });
    }
}
