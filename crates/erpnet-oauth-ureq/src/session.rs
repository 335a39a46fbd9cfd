//! The session: one login's tokens, kept usable for many threads (and processes) at once.

use crate::Error;
use crate::clock::{Clock, OsRandom, SystemClock};
use crate::store::{MemoryStore, StoreLock, TokenStore};
use crate::transport::HttpClient;
use erpnet_oauth_core::HttpOptions;
use erpnet_oauth_core::{
    Access, AccessToken, ApiCall, ApiOutcome, AuthorizationRequest, Callback, ClientConfig, IdToken,
    IdTokenClaims, IdTokenError, JwkSet, KeyCache, LoginRequired, ManagerOptions, Output, PendingLogin,
    ReferenceToken, RefreshError, RefreshId, Reloaded, Renewal, Scopes, TokenManager, TokenSet, UserInfo,
    id_token::UnverifiedClaims, parse_revocation_response, parse_userinfo_response,
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
            keys: Mutex::new(KeyCache::new()),
            manager: Mutex::new(manager),
            changed: Condvar::new(),
            http: self.http_client.unwrap_or_else(|| HttpClient::new(self.http)),
            client: self.client,
            store: self.store,
            clock: self.clock,
        })
    }
}

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

/// One login's tokens, kept usable: `Send + Sync`, share it with an `Arc`.
///
/// - [`Session::access_token`] returns a valid access token, refreshing it when it is expired or expires
///   within the skew.
/// - [`Session::send`] attaches `Authorization: Bearer`, and on a 401 refreshes once and retries once.
/// - **Single flight**: however many threads find the token expired at once, one refresh request goes
///   out; the thread that picked it up sends it without holding the session's lock, the others wait for
///   its result. With a shared store ([`crate::FileStore`]) the refresh runs under the store's
///   cross-process lock after re-reading the store, so processes sharing it refresh once, not once each.
/// - **A rotated refresh token is stored before it is used**: new tokens are saved, then handed out. A
///   failed save is reported to the callers (`RefreshError::Persist`); the tokens stay in memory.
/// - When the server rejects the refresh token (`invalid_grant`), the store is cleared and callers get
///   an error for which [`Error::is_login_required`] is true.
///
/// Errors: the thread that sent a refresh that got no answer gets the transport error itself
/// ([`Error::Timeout`], [`Error::Connect`], ...); threads that waited for it get
/// `Error::Refresh(RefreshError::Transport(..))`. Both are [`Error::is_retryable`], and the tokens are
/// kept.
pub struct Session {
    keys: Mutex<KeyCache>,
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

/// Hands a renewal back to the manager as failed if the thread sending it unwinds (a panic), so that
/// waiting threads are woken instead of waiting forever.
struct InFlight<'a> {
    session: &'a Session,
    id: RefreshId,
    armed: bool,
}

impl InFlight<'_> {
    fn fail(mut self, reason: &str) {
        self.armed = false;
        let now = self.session.clock.now();
        self.session.lock().handle_refresh_failure(self.id, reason, now);
        self.session.changed.notify_all();
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            let now = self.session.clock.now();
            self.session.lock().handle_refresh_failure(self.id, "the refreshing thread panicked", now);
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
    ///
    /// In order: checks the callback (state, `iss`, errors); verifies a front-channel ID token of the
    /// hybrid flow (signature, nonce, `c_hash`) before the code is exchanged (catalogue B7); exchanges the
    /// code (one request: a network failure is not retried with the same code); verifies the ID token
    /// (signature against the JWKS, issuer, audience, expiry, nonce, `at_hash`: catalogue D), fetching the
    /// signing keys when needed (once more for an unknown `kid`, at most once a minute); then stores the
    /// tokens and makes them the session's. Nothing is stored when a check fails.
    ///
    /// If the tokens cannot be stored they are still used in memory, and the store error is returned.
    pub fn finish_login(&self, pending: PendingLogin, callback: Callback<'_>) -> Result<LoggedIn, Error> {
        let exchange = pending.handle_callback(&self.client, callback)?;
        if let Some(token) = exchange.front_channel_id_token() {
            self.with_keys(token, |keys, now| exchange.verify_front_channel(&self.client, keys, now))?;
        }
        let (request, waiting) = exchange.into_request(&self.client);
        let response = self.http.send_token_request(&request)?;
        drop(request);
        let login = waiting.handle_response(&response, self.clock.now())?;
        let claims = match &login.tokens.id_token {
            Some(token) => {
                Some(self.with_keys(token, |keys, now| login.verify_id_token(&self.client, keys, now))?)
            }
            None => None,
        };
        let tokens = login.tokens;
        let saved = self.store.lock().and_then(|_lock| self.store.save(&tokens));
        self.lock().handle_login(tokens.clone());
        self.changed.notify_all();
        saved?;
        Ok(LoggedIn { tokens, claims })
    }

    /// Verifies with the signing keys, fetching them first when the cache has none or lacks the token's
    /// `kid` (rate-limited by the core's [`KeyCache`]).
    fn with_keys<T>(
        &self,
        token: &IdToken,
        verify: impl FnOnce(&JwkSet, SystemTime) -> Result<T, IdTokenError>,
    ) -> Result<T, Error> {
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        if let Some(request) = cache.poll_fetch(&self.client, token, now) {
            let response = self.http.send_token_request(&request)?;
            cache.handle_jwks_response(&response)?;
        }
        Ok(verify(cache.keys(), self.clock.now())?)
    }

    /// A valid access token, refreshed first when it is expired or expires within the skew (catalogue
    /// E8). With client credentials, a new token is requested when needed.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        let mut call = self.lock().begin_call();
        self.acquire(&mut call, |m, call, now| m.access_token(call, now))
    }

    /// Sends `request` with `Authorization: Bearer <token>` (catalogue F1). The request must go to the
    /// instance (same scheme, host and port): the token is never sent elsewhere ([`Error::Config`] with
    /// `ConfigError::ForeignOrigin`). A 401 refusing the token
    /// leads to one refresh and one retry (F2); other error statuses are returned as [`Error::Api`]
    /// (403 with the missing scope, 429 with `Retry-After`, ERP.net business errors). The body is read up
    /// to [`HttpOptions::api_body_limit`]; redirects are returned, not followed.
    pub fn send(&self, mut request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        let limit = self.http.options().api_body_limit;
        // The access token goes to the instance only (a request elsewhere would leak it).
        self.client.check_api_target(request.uri())?;
        let mut call = self.lock().begin_call();
        loop {
            self.acquire(&mut call, |m, call, now| m.authorize(call, &mut request, now))?;
            let response = self.http.send(&request, limit)?;
            match self.lock().handle_api_response(&mut call, &response) {
                ApiOutcome::Retry => continue,
                ApiOutcome::Done(Ok(())) => return Ok(response),
                ApiOutcome::Done(Err(e)) => return Err(Error::Api(e)),
            }
        }
    }

    /// `GET` of `path_or_url`: a path such as `/api/domain/odata/Crm_Customers?$top=10` is resolved
    /// against the instance; an absolute URL is used as is (plain http only to loopback hosts, unless
    /// allowed in the configuration). See [`Self::send`].
    pub fn get(&self, path_or_url: &str) -> Result<http::Response<Vec<u8>>, Error> {
        let request = http::Request::get(self.request_uri(path_or_url)?)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| Error::Http(e.to_string()))?;
        self.send(request)
    }

    /// Renews the access token now, whether or not it is expired (the CLI's `refresh`). When a renewal
    /// is already under way, waits for it instead.
    pub fn refresh(&self) -> Result<(), Error> {
        let mut manager = self.lock();
        let mut call = manager.begin_call();
        if !manager.force_refresh() && !manager.is_renewing() {
            let reason = match manager.tokens() {
                None => LoginRequired::NoTokens,
                Some(_) => LoginRequired::NoRefreshToken,
            };
            return Err(Error::Refresh(RefreshError::LoginRequired(reason)));
        }
        drop(manager);
        self.acquire(&mut call, |m, call, now| m.access_token(call, now)).map(|_| ())
    }

    /// The signed-in user's claims from the UserInfo endpoint, with the current access token; their `sub`
    /// must be the ID token's (OpenID Connect Core §5.3.2); without an ID token (no `openid` scope) the
    /// answer cannot be checked and [`IdTokenError::Missing`] is returned.
    pub fn userinfo(&self) -> Result<UserInfo, Error> {
        let token = self.access_token()?;
        let expected = self
            .tokens()
            .and_then(|t| t.id_token)
            .and_then(|t| UnverifiedClaims::decode(&t).ok())
            .and_then(|c| c.value.get("sub").and_then(|s| s.as_str()).map(str::to_owned))
            .ok_or(Error::IdToken(IdTokenError::Missing))?;
        let request = self.client.userinfo_request(&token)?;
        let response = self.http.send_token_request(&request)?;
        Ok(parse_userinfo_response(&response, &expected)?)
    }

    /// Logs out: revokes the refresh token at the server when it offers revocation (RFC 7009, with the
    /// same client authentication as the token endpoint: catalogue G1), then forgets the tokens and deletes
    /// them from the store, whatever the revocation's outcome (G2). The outcome of the revocation is in the
    /// returned [`Logout`]; an error is returned only when the store could not be cleared.
    pub fn logout(&self) -> Result<Logout, Error> {
        let _lock = self.store.lock()?;
        let previous = {
            let mut manager = self.lock();
            let previous = manager.tokens().cloned();
            manager.handle_logout();
            previous
        };
        self.changed.notify_all();
        let revocation = match previous.as_ref().and_then(|t| t.refresh_token.as_ref()) {
            None => Revocation::NothingToRevoke,
            Some(rt) => match self.client.revocation_request(rt) {
                Err(_) => Revocation::NotOffered,
                Ok(request) => match self.http.send_token_request(&request) {
                    Ok(response) => match parse_revocation_response(&response) {
                        Ok(()) => Revocation::Revoked,
                        Err(e) => Revocation::Failed(e.into()),
                    },
                    Err(e) => Revocation::Failed(e),
                },
            },
        };
        self.store.clear()?;
        Ok(Logout { had_tokens: previous.is_some(), revocation })
    }

    /// `path_or_url` as a request URI. A plain path (`/api/...`) is appended to the instance URL, which
    /// was checked when the configuration was built; anything else goes through
    /// [`ClientConfig::resolve`] (joining, encoding, the plain-http rule).
    fn request_uri(&self, path_or_url: &str) -> Result<http::Uri, Error> {
        if path_or_url.starts_with('/') && !path_or_url.starts_with("//") {
            let base = self.client.instance().as_str().trim_end_matches('/');
            if let Ok(uri) = http::Uri::try_from(format!("{base}{path_or_url}")) {
                return Ok(uri);
            }
        }
        let url = self.client.resolve(path_or_url)?;
        http::Uri::try_from(url.as_str()).map_err(|e| Error::Http(e.to_string()))
    }

    fn lock(&self) -> MutexGuard<'_, TokenManager> {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks `ask` until it answers `Ready` or `Failed`. On `Wait`, this thread either sends the renewal
    /// it found queued, or waits for the thread that does.
    fn acquire<T>(
        &self,
        call: &mut ApiCall,
        mut ask: impl FnMut(&mut TokenManager, &mut ApiCall, SystemTime) -> Access<T>,
    ) -> Result<T, Error> {
        let mut manager = self.lock();
        loop {
            let now = self.clock.now();
            match ask(&mut manager, call, now) {
                Access::Ready(t) => return Ok(t),
                Access::Failed(e) => return Err(Error::Refresh(e)),
                Access::Wait => {}
            }
            match Self::take_refresh(&mut manager) {
                Some((id, request)) => {
                    drop(manager);
                    self.run_refresh(id, request)?;
                    manager = self.lock();
                }
                None => manager = self.changed.wait(manager).unwrap_or_else(PoisonError::into_inner),
            }
        }
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

    /// Sends renewal `id` (outside the session's lock), under the store's cross-process lock, then stores
    /// its result before anyone uses it.
    fn run_refresh(&self, id: RefreshId, request: http::Request<Vec<u8>>) -> Result<(), Error> {
        let in_flight = InFlight { session: self, id, armed: true };
        let store_lock: StoreLock = match self.store.lock() {
            Ok(l) => l,
            Err(e) => {
                in_flight.fail(&e.to_string());
                return Err(e.into());
            }
        };
        if self.store.is_shared() {
            let stored = match self.store.load() {
                Ok(s) => s,
                Err(e) => {
                    in_flight.fail(&e.to_string());
                    return Err(e.into());
                }
            };
            let reloaded = self.lock().handle_reloaded(id, stored);
            if reloaded != Reloaded::Send {
                // Another process renewed the tokens (now adopted): its refresh token may have revoked ours.
                in_flight.disarm();
                self.changed.notify_all();
                return Ok(());
            }
        }
        let response = self.http.send_token_request(&request);
        drop(request);
        let mut manager = self.lock();
        let now = self.clock.now();
        match &response {
            Ok(r) => manager.handle_refresh_response(id, r, now),
            Err(e) => manager.handle_refresh_failure(id, &e.transport_reason(), now),
        }
        in_flight.disarm();
        let mut result = response.map(|_| ());
        while let Some(output) = manager.poll_output() {
            match output {
                Output::Persist { id, tokens } => {
                    drop(manager);
                    let saved = self.store.save(&tokens);
                    manager = self.lock();
                    let now = self.clock.now();
                    manager.handle_persisted(id, saved.map_err(|e| e.to_string()), now);
                }
                Output::Clear => {
                    drop(manager);
                    let cleared = self.store.clear();
                    manager = self.lock();
                    if let Err(e) = cleared {
                        result = Err(e.into());
                    }
                }
                Output::Refresh { id, .. } => {
                    // Cannot happen (a renewal was just answered); never leave it pending.
                    let now = self.clock.now();
                    manager.handle_refresh_failure(id, "an unexpected second renewal was dropped", now);
                }
                _ => {}
            }
        }
        drop(manager);
        self.changed.notify_all();
        drop(store_lock);
        result
    }
}
