//! A web application that signs users in through ERP.net and calls the Domain API on their behalf, on
//! axum and [`erpnet_oauth_async`].
//!
//! | Route | What |
//! | --- | --- |
//! | `GET /` | a sign-in link, or the signed-in user's name |
//! | `GET /login` | redirects to ERP.net's login with PKCE; state, nonce and verifier stay on the server |
//! | `GET, POST /signin-callback` | finishes the login (query or `form_post`); the pending login is used once |
//! | `GET /customers` | an HTML table of `Crm_Customers?$top=10`, with the user's token, refreshed as needed |
//! | `POST /logout` | revokes the refresh token, forgets the tokens, clears the cookie |
//!
//! Sessions are server-side: the browser holds only an opaque random id in a cookie (`HttpOnly`,
//! `SameSite=Lax`, and `Secure` when the redirect URI is `https`); each signed-in user has their own
//! [`Session`] (single-flight refresh per user).
//!
//! Against hostile browsers:
//!
//! - session ids are 256 random bits, issued by the server only: `/login` always issues a fresh one
//!   (an id the browser brings is never adopted), and a finished login gets another, so neither an id
//!   an attacker planted nor the one that carried the pending login becomes the signed-in session's;
//! - logins under way are bounded ([`Options::max_pending_logins`], the oldest dropped first) and expire
//!   ([`Options::pending_login_lifetime`], timed with [`Options::clock`]);
//! - everything that came from ERP.net, a token or the callback is HTML-escaped before it goes into a page.
//!
//! # Several instances
//!
//! By default ([`SessionBackend::Memory`]) everything lives in the process: one instance. With
//! [`SessionBackend::Redis`] (`REDIS_URL` in `main`), the sessions, the pending logins and each signed-in
//! session's tokens live in Redis (keys and expiries: [`RedisBackend`]), so that several instances serve
//! the same users:
//!
//! - a pending login is taken once (`GETDEL`) by whichever instance gets its callback, and the pending
//!   logins' bound and lifetime hold across instances;
//! - every request reads its session from Redis (an instance may keep users' [`Session`]s in memory, as
//!   a cache it never trusts for who is signed in), so a sign-out on one instance is seen by all;
//! - tokens go through [`erpnet_oauth_redis::AsyncRedisStore`] with one login id per signed-in session:
//!   a renewal takes the store's lock and re-reads it first, so the instances refresh a user's tokens once
//!   between them; they are encrypted at rest with [`RedisBackend::encryption_key`];
//! - Redis unreachable: a 503 page (no detail from Redis on it), never a panic; nothing is lost.
//!
//! ```no_run
//! use erpnet_oauth_web_example::{AppConfig, Options, RedisBackend, SessionBackend, WebApp};
//!
//! # async fn run(config: AppConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisBackend::open("redis://127.0.0.1:6379/")?;
//! let options = Options { backend: SessionBackend::Redis(redis), ..Options::default() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, WebApp::new(&config, options)?.router()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! use erpnet_oauth_web_example::{AppConfig, router};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AppConfig {
//!     instance: "https://demodb.my.erp.net".to_owned(),
//!     client_id: "my.trusted.app/first".to_owned(),
//!     client_secret: Some("my_plain_app_secret".to_owned()),
//!     redirect_uri: "http://localhost:8080/signin-callback".to_owned(),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(&config)?).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use erpnet_oauth_async::{
    AuthorizationRequest, Callback, ClientConfig, ClientSecret, Clock, Error, HttpOptions, OsRandom,
    PendingLogin, ReqwestClient, Session, StoreError, SystemClock,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod shared;

pub use erpnet_oauth_redis::{ConfigError as RedisConfigError, EncryptionKey, InvalidKeyLength};
pub use shared::{REDIS_PREFIX, RedisBackend, SESSION_TTL};

/// At most this many users' [`Session`]s are kept in one instance's memory with the Redis backend (a
/// cache: when it is full one is dropped, and built again from Redis when needed).
pub const MAX_CACHED_SESSIONS: usize = 10_000;

/// A login not finished within this time is forgotten (the default of
/// [`Options::pending_login_lifetime`]): time to fill in ERP.net's login form, then the authorization code's
/// own lifetime (5 minutes at ERP.net).
pub const PENDING_LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// At most this many logins wait for their callback at once (the default of
/// [`Options::max_pending_logins`]); beyond it the oldest is dropped.
pub const MAX_PENDING_LOGINS: usize = 10_000;

/// The cookie holding the opaque session id.
pub const COOKIE: &str = "erpnet_example_sid";

/// What the application needs to know about the ERP.net instance and its trusted application.
#[derive(Clone)]
pub struct AppConfig {
    /// The instance URL, e.g. `https://demodb.my.erp.net`.
    pub instance: String,
    /// The trusted application's `ApplicationUri` (the client id).
    pub client_id: String,
    /// The application secret (confidential clients); `None` for a public client.
    pub client_secret: Option<String>,
    /// This server's public `/signin-callback` URL, registered as the application's `ImpersonateLoginUrl`.
    /// Its scheme says how the site is served: with `https` the session cookie is `Secure`.
    pub redirect_uri: String,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("instance", &self.instance)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl AppConfig {
    /// The OAuth client configuration.
    pub fn client(&self) -> Result<ClientConfig, erpnet_oauth_async::Error> {
        let mut builder =
            ClientConfig::builder(&self.instance, &self.client_id).redirect_uri(&self.redirect_uri);
        if let Some(secret) = &self.client_secret {
            builder = builder.client_secret(ClientSecret::new(secret));
        }
        Ok(builder.build()?)
    }

    /// Whether the site is served over HTTPS: the redirect URI's scheme is `https` (in any case).
    pub fn served_over_https(&self) -> bool {
        self.redirect_uri.split_once("://").is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"))
    }
}

/// The limits on logins under way, and the clock they are timed with.
#[derive(Clone)]
pub struct Options {
    /// At most this many logins wait for their callback; when another one starts, the oldest is dropped
    /// (its callback is then refused). At least 1.
    pub max_pending_logins: usize,
    /// A login whose callback has not arrived within this time is dropped.
    pub pending_login_lifetime: Duration,
    /// The clock the pending logins are timed with (the system clock by default; tests pass their own to
    /// move time without sleeping). The users' sessions keep the system clock.
    pub clock: Arc<dyn Clock>,
    /// Where the sessions, the pending logins and the users' tokens are kept: in this process's memory
    /// (the default), or in Redis, shared by several instances.
    pub backend: SessionBackend,
}

/// Where the application keeps its state.
// One value per application, made once at start: the size of the Redis variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
pub enum SessionBackend {
    /// In this process's memory (the default): one instance; a restart signs everyone out.
    #[default]
    Memory,
    /// In Redis: sessions, pending logins and tokens, so that several instances serve the same users
    /// (see [`RedisBackend`] for the keys). Each instance may keep users' [`Session`]s in memory as a
    /// cache, but reads the session from Redis on every request: a sign-out or a refresh on another
    /// instance is seen at once.
    Redis(RedisBackend),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_pending_logins: MAX_PENDING_LOGINS,
            pending_login_lifetime: PENDING_LOGIN_LIFETIME,
            clock: Arc::new(SystemClock),
            backend: SessionBackend::Memory,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("max_pending_logins", &self.max_pending_logins)
            .field("pending_login_lifetime", &self.pending_login_lifetime)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A login waiting for its callback.
struct Pending {
    /// Its place in [`Users::order`].
    seq: u64,
    started: SystemTime,
    /// State, nonce and PKCE verifier: never sent to the browser.
    login: PendingLogin,
}

/// A signed-in user.
struct SignedIn {
    /// The user's own session (single-flight refresh per user).
    session: Session,
    /// The user's display name (from UserInfo).
    name: Option<String>,
}

/// Every browser's server-side state, by session id. Only ids this server issued are ever looked up in
/// it: a login gets a fresh id, and a finished login another one, so no id a browser brought (or was
/// given by someone else) becomes a signed-in session.
#[derive(Default)]
struct Users {
    pending: HashMap<String, Pending>,
    /// The pending logins' ids, oldest first.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    signed_in: HashMap<String, SignedIn>,
}

impl Users {
    fn take_pending(&mut self, sid: &str) -> Option<Pending> {
        let pending = self.pending.remove(sid)?;
        self.order.remove(&pending.seq);
        Some(pending)
    }

    fn drop_oldest_pending(&mut self) {
        if let Some((_, sid)) = self.order.pop_first() {
            self.pending.remove(&sid);
        }
    }

    /// Drops the pending logins older than `lifetime`, oldest first.
    fn drop_expired(&mut self, now: SystemTime, lifetime: Duration) {
        while let Some((_, sid)) = self.order.first_key_value() {
            if self.pending.get(sid).is_some_and(|p| !expired(p.started, now, lifetime)) {
                break;
            }
            self.drop_oldest_pending();
        }
    }

    fn add_pending(&mut self, sid: String, login: PendingLogin, now: SystemTime, max: usize) {
        while self.pending.len() >= max.max(1) {
            self.drop_oldest_pending();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, sid.clone());
        self.pending.insert(sid, Pending { seq, started: now, login });
    }
}

/// A signed-in session as kept in Redis: its login id (naming its tokens) and the user's name.
struct SessionRecord {
    login: String,
    name: Option<String>,
}

impl SessionRecord {
    /// The record, or `None` (logged) when Redis holds something else under its key.
    fn parse(bytes: &[u8]) -> Option<SessionRecord> {
        let parsed = serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| {
            let login = v.get("login")?.as_str()?.to_owned();
            let name = v.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            Some(SessionRecord { login, name })
        });
        if parsed.is_none() {
            tracing::warn!("a session in Redis could not be read; it is taken as signed out");
        }
        parsed
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn expired(started: SystemTime, now: SystemTime, lifetime: Duration) -> bool {
    // A clock set back makes a login younger, never older than it is.
    now.duration_since(started).unwrap_or(Duration::ZERO) >= lifetime
}

struct App {
    client: ClientConfig,
    /// The cookie is `Secure` (the application is served over HTTPS: its redirect URI says so).
    secure: bool,
    options: Options,
    /// One HTTP client (connection pool) shared by every user's session.
    http: Arc<ReqwestClient>,
    /// The memory backend's state.
    users: Mutex<Users>,
    /// The Redis backend's cache of users' sessions, by login id (never trusted for who is signed in).
    cache: Mutex<HashMap<String, Session>>,
}

/// A signed-in user, as a request finds them.
struct User {
    session: Session,
    /// The display name (from UserInfo).
    name: Option<String>,
}

/// A signed-in session taken out of the backend, for its tokens to be revoked and forgotten.
struct Taken {
    /// Its `Session`, if this instance holds it.
    session: Option<Session>,
    /// Its login id (Redis), to build the `Session` from the stored tokens when not held.
    login: Option<String>,
}

impl App {
    fn users(&self) -> std::sync::MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn redis(&self) -> Option<&RedisBackend> {
        match &self.options.backend {
            SessionBackend::Memory => None,
            SessionBackend::Redis(redis) => Some(redis),
        }
    }

    /// A new session for a login: its tokens in memory, or in Redis under `login` (read from there; the
    /// store's first call after a Redis restart makes a new connection by itself).
    async fn new_session(&self, login: Option<&str>) -> Result<Session, Error> {
        let builder = Session::builder(self.client.clone()).http_client(self.http.clone());
        match (self.redis(), login) {
            (Some(redis), Some(login)) => builder.store(redis.tokens(login, &self.client)?).build().await,
            _ => builder.build().await,
        }
    }

    /// The Redis backend's session of `login`: this instance's, or one built from the stored tokens
    /// (the store's lock and reload keep it right when another instance refreshes them).
    async fn session_of(&self, login: &str) -> Result<Session, Error> {
        if let Some(session) = self.cache().get(login) {
            return Ok(session.clone());
        }
        let session = self.new_session(Some(login)).await?;
        Ok(self.remember(login, session))
    }

    /// Keeps `session` in the cache (bounded: one is dropped when it is full); returns the cached one.
    fn remember(&self, login: &str, session: Session) -> Session {
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED_SESSIONS && !cache.contains_key(login) {
            let victim = cache.keys().next().cloned();
            if let Some(victim) = victim {
                cache.remove(&victim);
            }
        }
        cache.entry(login.to_owned()).or_insert(session).clone()
    }

    /// The signed-in session under `sid`, with the user's name. With Redis, the session is read there on
    /// every call (its expiry pushed back): one signed out on another instance is signed out here.
    async fn signed_in(&self, sid: Option<&str>) -> Result<Option<User>, Error> {
        let Some(sid) = sid else { return Ok(None) };
        let Some(redis) = self.redis() else {
            let users = self.users();
            return Ok(users
                .signed_in
                .get(sid)
                .map(|u| User { session: u.session.clone(), name: u.name.clone() }));
        };
        let Some(record) = redis.read_session(sid).await?.and_then(|bytes| SessionRecord::parse(&bytes))
        else {
            return Ok(None);
        };
        let session = self.session_of(&record.login).await?;
        Ok(Some(User { session, name: record.name }))
    }

    /// Records a finished login under `sid`.
    async fn add_signed_in(
        &self,
        sid: &str,
        session: Session,
        login: &str,
        name: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(redis) = self.redis() else {
            self.users().signed_in.insert(sid.to_owned(), SignedIn { session, name });
            return Ok(());
        };
        let record = serde_json::json!({ "login": login, "name": name });
        redis.write_session(sid, record.to_string().as_bytes()).await?;
        self.remember(login, session);
        Ok(())
    }

    /// Takes the signed-in session under `sid` out of the backend (deleted in Redis), and the pending
    /// login under it.
    async fn take_signed_in(&self, sid: &str) -> Result<Option<Taken>, StoreError> {
        let Some(redis) = self.redis() else {
            let mut users = self.users();
            users.take_pending(sid);
            return Ok(users.signed_in.remove(sid).map(|u| Taken { session: Some(u.session), login: None }));
        };
        redis.take_pending(sid).await?;
        let Some(record) = redis.take_session(sid).await?.and_then(|bytes| SessionRecord::parse(&bytes))
        else {
            return Ok(None);
        };
        let session = self.cache().remove(&record.login);
        Ok(Some(Taken { session, login: Some(record.login) }))
    }

    /// The `Session` of a taken signed-in session (to log it out).
    async fn session_of_taken(&self, taken: Taken) -> Result<Option<Session>, Error> {
        match taken {
            Taken { session: Some(session), .. } => Ok(Some(session)),
            Taken { session: None, login: Some(login) } => Ok(Some(self.new_session(Some(&login)).await?)),
            Taken { session: None, login: None } => Ok(None),
        }
    }

    /// Stores a pending login under `sid` (the expired and the oldest beyond the bound dropped).
    async fn add_pending(&self, sid: &str, login: PendingLogin) -> Result<(), Error> {
        let now = self.now();
        let Some(redis) = self.redis() else {
            let mut users = self.users();
            users.drop_expired(now, self.options.pending_login_lifetime);
            users.add_pending(sid.to_owned(), login, now, self.options.max_pending_logins);
            return Ok(());
        };
        let started = millis(now);
        let value =
            serde_json::to_vec(&serde_json::json!({ "started": started, "login": login })).map_err(|e| {
                Error::Store(StoreError::Other(format!("a pending login could not be encoded: {e}")))
            })?;
        redis
            .put_pending(
                sid,
                &value,
                self.options.pending_login_lifetime,
                started,
                self.options.max_pending_logins,
            )
            .await?;
        Ok(())
    }

    /// Takes the pending login under `sid` (used once, on any instance): when it started, and the login.
    async fn take_pending(&self, sid: &str) -> Result<Option<(SystemTime, PendingLogin)>, StoreError> {
        let Some(redis) = self.redis() else {
            return Ok(self.users().take_pending(sid).map(|p| (p.started, p.login)));
        };
        let Some(bytes) = redis.take_pending(sid).await? else { return Ok(None) };
        let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|mut v| {
            let started = UNIX_EPOCH + Duration::from_millis(v.get("started")?.as_u64()?);
            let login = serde_json::from_value::<PendingLogin>(v.get_mut("login")?.take()).ok()?;
            Some((started, login))
        });
        if parsed.is_none() {
            tracing::warn!("a pending login in Redis could not be read; it is dropped");
        }
        Ok(parsed)
    }

    fn now(&self) -> SystemTime {
        self.options.clock.now()
    }

    /// `Set-Cookie` for the session id `sid`, or (`None`) one that makes the browser forget it.
    fn cookie(&self, sid: Option<&str>) -> HeaderValue {
        let value = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{}{}",
            sid.unwrap_or(""),
            if sid.is_none() { "; Max-Age=0" } else { "" },
            if self.secure { "; Secure" } else { "" },
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn set_cookie(&self, mut response: Response, sid: Option<&str>) -> Response {
        response.headers_mut().insert(header::SET_COOKIE, self.cookie(sid));
        response
    }
}

/// The application: its routes, and what tests may observe of its state.
pub struct WebApp {
    app: Arc<App>,
}

impl fmt::Debug for WebApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.app.users();
        f.debug_struct("WebApp")
            .field("pending_logins", &users.pending.len())
            .field("signed_in_users", &users.signed_in.len())
            .finish_non_exhaustive()
    }
}

impl WebApp {
    /// The application for `config`, with `options`.
    pub fn new(config: &AppConfig, options: Options) -> Result<WebApp, erpnet_oauth_async::Error> {
        Ok(WebApp {
            app: Arc::new(App {
                client: config.client()?,
                secure: config.served_over_https(),
                options,
                http: Arc::new(ReqwestClient::new(&HttpOptions::default())?),
                users: Mutex::new(Users::default()),
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The application's routes (each call gives a router over the same state).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(home))
            .route("/login", get(login))
            .route("/signin-callback", get(callback_query).post(callback_form_post))
            .route("/customers", get(customers))
            .route("/logout", axum::routing::post(logout))
            .with_state(self.app.clone())
    }

    /// How many logins wait for their callback in this instance's memory (those expired by now are
    /// dropped first). With [`SessionBackend::Redis`] they are in Redis, not counted here (0).
    pub fn pending_logins(&self) -> usize {
        let now = self.app.now();
        let mut users = self.app.users();
        users.drop_expired(now, self.app.options.pending_login_lifetime);
        users.pending.len()
    }

    /// How many users are signed in, in this instance's memory. With [`SessionBackend::Redis`] they are
    /// in Redis, not counted here (0).
    pub fn signed_in_users(&self) -> usize {
        self.app.users().signed_in.len()
    }
}

/// The application's routes, with the default [`Options`].
pub fn router(config: &AppConfig) -> Result<Router, erpnet_oauth_async::Error> {
    Ok(WebApp::new(config, Options::default())?.router())
}

/// The session id in the request's cookie, if it has the form of one this server issues (whether it did
/// issue it is for [`Users`] to say).
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| value.to_owned())
        })
}

/// A fresh, unguessable session id: 256 bits from the OS random source, in hex.
fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Escapes text for HTML (markup characters escaped, control characters dropped): the core's function, the
/// one the loopback listeners' pages use.
fn esc(text: &str) -> String {
    erpnet_oauth_async::erpnet_oauth_core::listener::html_escape(text)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #999;padding:4px 8px}} th{{background:#eee}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (status, page("Error", &format!("<p id=\"error\">{}</p><p><a href=\"/\">Home</a></p>", esc(message))))
        .into_response()
}

/// The page for a failed session store: 503 when it is unreachable or busy (try again), else 500. The
/// details go to the log (no password: the store's messages redact it), not to the page.
fn store_failure(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "the session store failed");
    let (status, message) = if e.is_retryable() {
        (StatusCode::SERVICE_UNAVAILABLE, "The session store is unavailable. Please try again in a moment.")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "The session store failed.")
    };
    let mut response = error_page(status, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// The page for an error of a user's session: the session store's own page, else `status` with the
/// message.
fn failure(e: &Error, status: StatusCode, context: &str) -> Response {
    match e {
        Error::Store(e) => store_failure(e),
        _ => error_page(status, &format!("{context}: {e}")),
    }
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let signed_in = match app.signed_in(session_id(&headers).as_deref()).await {
        Ok(signed_in) => signed_in.map(|user| user.name),
        Err(e) => return failure(&e, StatusCode::INTERNAL_SERVER_ERROR, "The session could not be read"),
    };
    match signed_in {
        Some(name) => page(
            "ERP.net example",
            &format!(
                "<p id=\"user\">Signed in as {}</p><p><a id=\"customers\" href=\"/customers\">Customers</a></p>\
                 <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
                esc(name.as_deref().unwrap_or("an ERP.net user"))
            ),
        ),
        None => page(
            "ERP.net example",
            "<p id=\"signed-out\">You are not signed in.</p><p><a id=\"sign-in\" href=\"/login\">Sign in with ERP.net</a></p>",
        ),
    }
    .into_response()
}

/// Starts a login under a fresh session id. Whatever id the browser brought is not reused: an unknown one
/// is ignored, a pending login under it is replaced, and a signed-in session under it is signed out (its
/// refresh token revoked in the background), so that nobody who knew the old id shares the new login.
async fn login(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let sid = match new_session_id() {
        Ok(sid) => sid,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("no random source: {e}")),
    };
    let pending = match AuthorizationRequest::new().build(&app.client, &mut OsRandom) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let target = pending.authorize_url().to_owned();
    let previous = match session_id(&headers) {
        Some(old) => match app.take_signed_in(&old).await {
            Ok(previous) => previous,
            Err(e) => return store_failure(&e),
        },
        None => None,
    };
    // The session under the old id is gone: its refresh token is revoked (in the background) whatever
    // becomes of this login.
    if let Some(previous) = previous {
        let app = app.clone();
        tokio::spawn(async move {
            let out = match app.session_of_taken(previous).await {
                Ok(Some(session)) => session.logout().await.map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = out {
                tracing::warn!(error = %e, "signing the previous session out failed");
            }
        });
    }
    if let Err(e) = app.add_pending(&sid, pending).await {
        return failure(&e, StatusCode::INTERNAL_SERVER_ERROR, "The login could not be started");
    }
    let mut response = app.set_cookie(Redirect::to(&target).into_response(), Some(&sid));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn callback_query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    finish(app, headers, Callback::Query(&query)).await
}

async fn callback_form_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    finish(app, headers, Callback::FormPost(&body)).await
}

/// Finishes the login pending under the browser's session id. That id is spent whatever the outcome; a
/// signed-in user gets a new one.
async fn finish(app: Arc<App>, headers: HeaderMap, callback: Callback<'_>) -> Response {
    const NO_LOGIN: &str = "No login is under way in this browser.";
    let Some(pending_sid) = session_id(&headers) else {
        return error_page(StatusCode::BAD_REQUEST, NO_LOGIN);
    };
    // With Redis, the tokens are stored under a login id of their own, drawn afresh. The session is
    // made (its store read) before the pending login is taken, so that a store failure leaves the login
    // to be tried again.
    let login = match new_session_id() {
        Ok(login) => login,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("no random source: {e}")),
    };
    let session = match app.new_session(Some(&login)).await {
        Ok(s) => s,
        Err(e) => return failure(&e, StatusCode::INTERNAL_SERVER_ERROR, "No session"),
    };
    // Taken out: a pending login is used once, whatever the outcome (with Redis: on any instance).
    let pending = match app.take_pending(&pending_sid).await {
        Ok(Some(pending)) => pending,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, NO_LOGIN),
        Err(e) => return store_failure(&e),
    };
    let (started, pending) = pending;
    // From here on the browser's id names nothing: it is told to forget it unless the login succeeds.
    if expired(started, app.now(), app.options.pending_login_lifetime) {
        return app.set_cookie(error_page(StatusCode::BAD_REQUEST, NO_LOGIN), None);
    }
    let failed = |response: Response| app.set_cookie(response, None);
    if let Err(e) = session.finish_login(pending, callback).await {
        return failed(failure(&e, StatusCode::BAD_REQUEST, "The login failed"));
    }
    let sid = match new_session_id() {
        Ok(sid) => sid,
        Err(e) => {
            return failed(error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("no random source: {e}")));
        }
    };
    let name = match session.userinfo().await {
        Ok(info) => info.name,
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            None
        }
    };
    if let Err(e) = app.add_signed_in(&sid, session, &login, name).await {
        return failed(store_failure(&e));
    }
    let mut response = app.set_cookie(Redirect::to("/customers").into_response(), Some(&sid));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn customers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let sid = session_id(&headers);
    let User { session, name } = match app.signed_in(sid.as_deref()).await {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(e) => return failure(&e, StatusCode::INTERNAL_SERVER_ERROR, "The session could not be read"),
    };
    const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=10";
    // (A Redis restart costs nothing here: the token store's first call after it makes a new connection.)
    let response = match session.get(CUSTOMERS).await {
        Ok(r) => r,
        Err(e) if e.is_login_required() => {
            if let Some(sid) = sid
                && let Err(e) = app.take_signed_in(&sid).await
            {
                return store_failure(&e);
            }
            return app.set_cookie(Redirect::to("/").into_response(), None);
        }
        Err(e) => return failure(&e, StatusCode::BAD_GATEWAY, "The Domain API call failed"),
    };
    let rows = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|v| v.get("value").and_then(|v| v.as_array()).cloned())
        .unwrap_or_default();
    let columns = columns(rows.first());
    let mut table = String::from("<table id=\"customers\"><thead><tr>");
    for c in &columns {
        table.push_str(&format!("<th>{}</th>", esc(c)));
    }
    table.push_str("</tr></thead><tbody>");
    for row in &rows {
        table.push_str("<tr class=\"customer\">");
        for c in &columns {
            let cell = match row.get(c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            table.push_str(&format!("<td>{}</td>", esc(&cell)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    page(
        "Customers",
        &format!(
            "<p id=\"user\">Signed in as {}</p><p>{} customers (Crm_Customers?$top=10)</p>{table}\
             <p><a href=\"/\">Home</a></p>\
             <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
            esc(name.as_deref().unwrap_or("an ERP.net user")),
            rows.len()
        ),
    )
    .into_response()
}

/// The table's columns: the usual customer fields first when present, then others, at most [`MAX_COLUMNS`].
fn columns(first: Option<&serde_json::Value>) -> Vec<String> {
    let Some(row) = first.and_then(|r| r.as_object()) else { return Vec::new() };
    let mut columns: Vec<String> =
        PREFERRED_COLUMNS.iter().filter(|c| row.contains_key(**c)).map(|c| (*c).to_owned()).collect();
    for key in row.keys() {
        if columns.len() >= MAX_COLUMNS {
            break;
        }
        if !key.starts_with('@') && !columns.contains(key) && !row.get(key).is_some_and(|v| v.is_object()) {
            columns.push(key.clone());
        }
    }
    columns.truncate(MAX_COLUMNS);
    columns
}

const PREFERRED_COLUMNS: &[&str] =
    &["Number", "PartyName", "Email", "Active", "CreditLimitValue", "CreditLimitCurrency"];
const MAX_COLUMNS: usize = 7;

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let removed = match session_id(&headers) {
        Some(sid) => match app.take_signed_in(&sid).await {
            Ok(removed) => removed,
            Err(e) => return store_failure(&e),
        },
        None => None,
    };
    let session = match removed {
        Some(taken) => match app.session_of_taken(taken).await {
            Ok(session) => session,
            Err(e) => return failure(&e, StatusCode::INTERNAL_SERVER_ERROR, "The sign-out failed"),
        },
        None => None,
    };
    let mut message = "You are signed out.".to_owned();
    if let Some(session) = session {
        match session.logout().await {
            Ok(out) => {
                if let erpnet_oauth_async::Revocation::Failed(e) = out.revocation {
                    message =
                        format!("You are signed out here; the server did not confirm the revocation: {e}");
                }
            }
            Err(e) => message = format!("You are signed out here; the tokens could not be deleted: {e}"),
        }
    }
    let response = page(
        "Signed out",
        &format!(
            "<p id=\"signed-out\">{}</p><p><a id=\"sign-in\" href=\"/login\">Sign in with ERP.net</a></p>",
            esc(&message)
        ),
    )
    .into_response();
    app.set_cookie(response, None)
}
