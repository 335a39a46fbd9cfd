//! The session: one login's tokens, kept usable for many tasks at once without blocking the runtime.

use crate::Error;
use crate::clock::{Clock, OsRandom, SystemClock};
use crate::store::{MemoryStore, TokenStore};
use crate::transport::{HttpOptions, HttpSend};
use erpnet_oauth_core::{
    Access, AccessToken, ApiCall, ApiOutcome, AuthorizationRequest, Callback, ClientConfig, IdToken,
    IdTokenClaims, IdTokenError, JwkSet, KeyCache, LoginRequired, ManagerOptions, Output, PendingLogin,
    ReferenceToken, RefreshError, RefreshId, Reloaded, Renewal, Scopes, TokenManager, TokenSet, UserInfo,
    id_token::UnverifiedClaims, parse_revocation_response, parse_userinfo_response,
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
                keys: tokio::sync::Mutex::new(KeyCache::new()),
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

/// A finished login: the stored tokens and the verified ID token's claims.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoggedIn {
    /// The tokens, stored and in use.
    pub tokens: TokenSet,
    /// The verified ID token's claims (`sub` is the user); `None` when no ID token was issued.
    pub claims: Option<IdTokenClaims>,
}

/// What [`Session::logout`] did at the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Revocation {
    /// The refresh token was revoked.
    Revoked,
    /// No refresh token was held.
    NothingToRevoke,
    /// The server has no revocation endpoint.
    NotOffered,
    /// The revocation failed; the tokens were deleted locally all the same.
    Failed(Error),
}

/// The outcome of [`Session::logout`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Logout {
    /// Whether tokens were held.
    pub had_tokens: bool,
    /// What happened at the server.
    pub revocation: Revocation,
}

/// One login's tokens, kept usable by many tasks: `Send + Sync`, and cheap to clone (clones share the
/// same tokens, like an `Arc`).
///
/// - [`Session::access_token`] returns a valid access token, refreshing it when it is expired or expires
///   within the skew.
/// - [`Session::send`] attaches `Authorization: Bearer`, and on a 401 refreshes once and retries once.
/// - **Single flight without blocking**: however many tasks find the token expired at once, one refresh
///   request goes out. The session's mutex guards only the core's [`TokenManager`] and is never held
///   across an `.await`; waiting tasks sleep on a [`tokio::sync::Notify`]. The refresh itself runs in a
///   spawned task, so a caller that is cancelled (a dropped request future) does not leave it half done.
///   With a shared store ([`crate::FileStore`]) the refresh runs under the store's cross-process lock
///   after re-reading the store.
/// - **A rotated refresh token is stored before it is used**.
/// - When the server rejects the refresh token (`invalid_grant`), the store is cleared and callers get an
///   error for which [`Error::is_login_required`] is true. A 5xx keeps the tokens ([`Error::is_retryable`]).
///
/// Needs a tokio runtime (refreshes are spawned; the file store uses `spawn_blocking`).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    keys: tokio::sync::Mutex<KeyCache>,
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

/// Hands a renewal back to the manager as failed if the task running it ends without finishing it (a
/// panic, a dropped runtime), so that waiting tasks are woken instead of waiting forever.
struct InFlight {
    inner: Arc<Inner>,
    id: RefreshId,
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.armed {
            let now = self.inner.clock.now();
            let mut manager = self.inner.lock();
            manager.handle_refresh_failure(self.id, "the refresh task ended early", now);
            manager.handle_persisted(self.id, Err("the refresh task ended early".to_owned()), now);
            drop(manager);
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
    /// ([`Callback::Query`]), a `form_post` body ([`Callback::FormPost`]) or the full URL.
    ///
    /// In order: checks the callback (state, `iss`, errors); verifies a front-channel ID token of the
    /// hybrid flow before the code is exchanged; exchanges the code (once); verifies the ID token against
    /// the JWKS (fetched when needed, rate-limited by the core's [`KeyCache`]); then stores the tokens and
    /// makes them the session's. Nothing is stored when a check fails.
    pub async fn finish_login(
        &self,
        pending: PendingLogin,
        callback: Callback<'_>,
    ) -> Result<LoggedIn, Error> {
        let inner = &self.inner;
        let exchange = pending.handle_callback(&inner.client, callback)?;
        if let Some(token) = exchange.front_channel_id_token() {
            let token = token.clone();
            self.with_keys(&token, |keys, now| exchange.verify_front_channel(&inner.client, keys, now))
                .await?;
        }
        let (request, waiting) = exchange.into_request(&inner.client);
        let response = inner.http.send(request, inner.limits.token_body_limit).await?;
        let login = waiting.handle_response(&response, inner.clock.now())?;
        let claims = match &login.tokens.id_token {
            Some(token) => Some(
                self.with_keys(token, |keys, now| login.verify_id_token(&inner.client, keys, now)).await?,
            ),
            None => None,
        };
        let tokens = login.tokens;
        let saved = match inner.store.lock().await {
            Ok(_lock) => inner.store.save(&tokens).await,
            Err(e) => Err(e),
        };
        inner.lock().handle_login(tokens.clone());
        inner.changed.notify_waiters();
        saved?;
        Ok(LoggedIn { tokens, claims })
    }

    /// Verifies with the signing keys, fetching them first when the cache has none or lacks the token's
    /// `kid`. The key cache's async mutex makes concurrent logins fetch once.
    async fn with_keys<T>(
        &self,
        token: &IdToken,
        verify: impl FnOnce(&JwkSet, SystemTime) -> Result<T, IdTokenError>,
    ) -> Result<T, Error> {
        let inner = &self.inner;
        let mut cache = inner.keys.lock().await;
        let now = inner.clock.now();
        if let Some(request) = cache.poll_fetch(&inner.client, token, now) {
            let response = inner.http.send(request, inner.limits.token_body_limit).await?;
            cache.handle_jwks_response(&response)?;
        }
        Ok(verify(cache.keys(), inner.clock.now())?)
    }

    /// A valid access token, refreshed first when it is expired or expires within the skew (catalogue
    /// E8). With client credentials, a new token is requested when needed.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        let mut call = self.inner.lock().begin_call();
        self.acquire(&mut call, |m, call, now| m.access_token(call, now)).await
    }

    /// Sends `request` with `Authorization: Bearer <token>` (catalogue F1). A 401 refusing the token leads
    /// to one refresh and one retry (F2); other error statuses are returned as [`Error::Api`]. The body is
    /// read up to [`HttpOptions::api_body_limit`]; redirects are returned, not followed. A request to
    /// another origin than the instance is refused before any token is attached (`ConfigError::ForeignOrigin`).
    pub async fn send(&self, mut request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        let limit = self.inner.limits.api_body_limit;
        // The access token goes to the instance only (a request elsewhere would leak it).
        self.inner.client.check_api_target(request.uri())?;
        let mut call = self.inner.lock().begin_call();
        loop {
            self.acquire(&mut call, |m, call, now| m.authorize(call, &mut request, now)).await?;
            let response = self.inner.http.send(clone_request(&request), limit).await?;
            let outcome = self.inner.lock().handle_api_response(&mut call, &response);
            match outcome {
                ApiOutcome::Retry => continue,
                ApiOutcome::Done(Ok(())) => return Ok(response),
                ApiOutcome::Done(Err(e)) => return Err(Error::Api(e)),
            }
        }
    }

    /// `GET` of `path_or_url`: a path such as `/api/domain/odata/Crm_Customers?$top=10` is resolved against
    /// the instance; an absolute URL is used as is (plain http only to loopback hosts, unless allowed in the
    /// configuration). See [`Self::send`].
    pub async fn get(&self, path_or_url: &str) -> Result<http::Response<Vec<u8>>, Error> {
        let request = http::Request::get(self.request_uri(path_or_url)?)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| Error::Http(e.to_string()))?;
        self.send(request).await
    }

    /// Renews the access token now, whether or not it is expired. When a renewal is already under way,
    /// waits for it instead.
    pub async fn refresh(&self) -> Result<(), Error> {
        let mut call = {
            let mut manager = self.inner.lock();
            let call = manager.begin_call();
            if !manager.force_refresh() && !manager.is_renewing() {
                let reason = match manager.tokens() {
                    None => LoginRequired::NoTokens,
                    Some(_) => LoginRequired::NoRefreshToken,
                };
                return Err(Error::Refresh(RefreshError::LoginRequired(reason)));
            }
            call
        };
        self.acquire(&mut call, |m, call, now| m.access_token(call, now)).await.map(|_| ())
    }

    /// The signed-in user's claims from the UserInfo endpoint, with the current access token; their `sub`
    /// must be the ID token's (OpenID Connect Core §5.3.2).
    pub async fn userinfo(&self) -> Result<UserInfo, Error> {
        let token = self.access_token().await?;
        let expected = self
            .tokens()
            .and_then(|t| t.id_token)
            .and_then(|t| UnverifiedClaims::decode(&t).ok())
            .and_then(|c| c.value.get("sub").and_then(|s| s.as_str()).map(str::to_owned))
            .ok_or(Error::IdToken(IdTokenError::Missing))?;
        let request = self.inner.client.userinfo_request(&token)?;
        let response = self.inner.http.send(request, self.inner.limits.token_body_limit).await?;
        Ok(parse_userinfo_response(&response, &expected)?)
    }

    /// Logs out: revokes the refresh token at the server when it offers revocation (RFC 7009, catalogue
    /// G1), then forgets the tokens and deletes them from the store whatever the revocation's outcome
    /// (G2). An error is returned only when the store could not be cleared.
    pub async fn logout(&self) -> Result<Logout, Error> {
        let inner = &self.inner;
        let _lock = inner.store.lock().await?;
        let previous = {
            let mut manager = inner.lock();
            let previous = manager.tokens().cloned();
            manager.handle_logout();
            previous
        };
        inner.changed.notify_waiters();
        let revocation = match previous.as_ref().and_then(|t| t.refresh_token.as_ref()) {
            None => Revocation::NothingToRevoke,
            Some(rt) => match inner.client.revocation_request(rt) {
                Err(_) => Revocation::NotOffered,
                Ok(request) => match inner.http.send(request, inner.limits.token_body_limit).await {
                    Ok(response) => match parse_revocation_response(&response) {
                        Ok(()) => Revocation::Revoked,
                        Err(e) => Revocation::Failed(e.into()),
                    },
                    Err(e) => Revocation::Failed(e),
                },
            },
        };
        inner.store.clear().await?;
        Ok(Logout { had_tokens: previous.is_some(), revocation })
    }

    /// `path_or_url` as a request URI (a plain path is appended to the instance URL).
    fn request_uri(&self, path_or_url: &str) -> Result<http::Uri, Error> {
        if path_or_url.starts_with('/') && !path_or_url.starts_with("//") {
            let base = self.inner.client.instance().as_str().trim_end_matches('/');
            if let Ok(uri) = http::Uri::try_from(format!("{base}{path_or_url}")) {
                return Ok(uri);
            }
        }
        let url = self.inner.client.resolve(path_or_url)?;
        http::Uri::try_from(url.as_str()).map_err(|e| Error::Http(e.to_string()))
    }

    /// Asks `ask` until it answers `Ready` or `Failed`. On `Wait`, this task either starts the renewal it
    /// found queued and awaits it, or sleeps until the tokens change. The manager's mutex is held only
    /// inside the inner block, never across an `.await`.
    async fn acquire<T>(
        &self,
        call: &mut ApiCall,
        mut ask: impl FnMut(&mut TokenManager, &mut ApiCall, SystemTime) -> Access<T>,
    ) -> Result<T, Error> {
        loop {
            // Registered before the state is read, so that a change made after the read wakes it.
            let changed = self.inner.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let refresh = {
                let mut manager = self.inner.lock();
                let now = self.inner.clock.now();
                match ask(&mut manager, call, now) {
                    Access::Ready(t) => return Ok(t),
                    Access::Failed(e) => return Err(Error::Refresh(e)),
                    Access::Wait => take_refresh(&mut manager),
                }
            };
            match refresh {
                Some((id, request)) => {
                    let guard = InFlight { inner: self.inner.clone(), id, armed: true };
                    let task = tokio::spawn(run_refresh(guard, request));
                    task.await.map_err(|e| Error::Task(format!("the refresh task failed: {e}")))??;
                }
                None => changed.await,
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, TokenManager> {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A copy of `request` to send (the original is kept for a retry after a 401).
fn clone_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Drains the outputs queued by an `authorize`/`access_token`: only a renewal can be there.
fn take_refresh(manager: &mut TokenManager) -> Option<(RefreshId, http::Request<Vec<u8>>)> {
    let mut found = None;
    while let Some(output) = manager.poll_output() {
        if let Output::Refresh { id, request } = output {
            found = Some((id, request));
        }
    }
    found
}

/// Sends renewal `id` under the store's cross-process lock (re-reading a shared store first), then stores
/// its result before anyone uses it. Runs as its own task; `guard` fails the renewal if it ends early.
async fn run_refresh(mut guard: InFlight, request: http::Request<Vec<u8>>) -> Result<(), Error> {
    let inner = guard.inner.clone();
    let id = guard.id;
    let fail = |reason: &str| {
        let now = inner.clock.now();
        inner.lock().handle_refresh_failure(id, reason, now);
    };
    let store_lock = match inner.store.lock().await {
        Ok(l) => l,
        Err(e) => {
            fail(&e.to_string());
            return Err(e.into());
        }
    };
    if inner.store.is_shared() {
        let stored = match inner.store.load().await {
            Ok(s) => s,
            Err(e) => {
                fail(&e.to_string());
                return Err(e.into());
            }
        };
        let reloaded = inner.lock().handle_reloaded(id, stored);
        if reloaded != Reloaded::Send {
            // Another process renewed the tokens (now adopted): its refresh token may have revoked ours.
            guard.armed = false;
            inner.changed.notify_waiters();
            return Ok(());
        }
    }
    let response = inner.http.send(request, inner.limits.token_body_limit).await;
    let mut outputs = Vec::new();
    {
        let mut manager = inner.lock();
        let now = inner.clock.now();
        match &response {
            Ok(r) => manager.handle_refresh_response(id, r, now),
            Err(e) => manager.handle_refresh_failure(id, &e.to_string(), now),
        }
        while let Some(output) = manager.poll_output() {
            outputs.push(output);
        }
    }
    let mut result = response.map(|_| ());
    for output in outputs {
        match output {
            Output::Persist { id, tokens } => {
                let saved = inner.store.save(&tokens).await;
                let now = inner.clock.now();
                inner.lock().handle_persisted(id, saved.map_err(|e| e.to_string()), now);
            }
            Output::Clear => {
                if let Err(e) = inner.store.clear().await {
                    result = Err(e.into());
                }
            }
            Output::Refresh { id, .. } => {
                // Cannot happen (a renewal was just answered); never leave it pending.
                let now = inner.clock.now();
                inner.lock().handle_refresh_failure(id, "an unexpected second renewal was dropped", now);
            }
            _ => {}
        }
    }
    guard.armed = false;
    inner.changed.notify_waiters();
    drop(store_lock);
    result
}
