//! A local, fake ERP.net: the identity server (OAuth 2.0 / OpenID Connect, shaped like ERP.net's
//! IdentityServer-based `/id`) and the Domain API (`/api/domain/odata/Crm_Customers`), over real HTTP on a
//! loopback port, for tests, demos and users' own integration tests.
//!
//! It is written independently of the client crates of this workspace (it depends on none of them), so a
//! misreading of the protocol in a client is caught here instead of being mirrored.
//!
//! ```
//! use erpnet_oauth_mock::{MockConfig, MockErpNet};
//!
//! let mock = MockErpNet::start(MockConfig::seed_manual_clock())?;
//! let url = format!("{}/.well-known/openid-configuration", mock.issuer());
//! let body = ureq::get(&url).call()?.body_mut().read_to_string()?;
//! let discovery: serde_json::Value = serde_json::from_str(&body)?;
//! assert_eq!(discovery["issuer"], mock.issuer().as_str());
//! assert_eq!(mock.counters().discovery_fetches, 1);
//! // Dropping `mock` stops the server.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! From the command line: `erpnet-oauth mock --port 8080` (the CLI calls [`run_foreground`]), or
//! `cargo run -p erpnet-oauth-mock --example serve` from this repository.
//!
//! # Endpoints
//!
//! With `{base}` = [`MockErpNet::base_url`] (`http://127.0.0.1:PORT`, the ERP.net "instance" URL) and the
//! issuer `{base}/id`:
//!
//! | Path | What |
//! | --- | --- |
//! | `GET /id/.well-known/openid-configuration` | discovery (`authorization_response_iss_parameter_supported: true`, S256 only) |
//! | `GET /id/.well-known/openid-configuration/jwks` | RS256 public keys (`kty`, `use`, `kid`, `alg`, `n`, `e`) |
//! | `GET /id/connect/authorize` | `code` and `code id_token`; the login form or, with a session cookie, the redirect |
//! | `POST /id/account/login` | the login form's target |
//! | `POST /id/connect/token` | `authorization_code`, `refresh_token`, `client_credentials` |
//! | `GET, POST /id/connect/userinfo` | claims of the bearer token's user |
//! | `POST /id/connect/revocation` | RFC 7009 |
//! | `GET, POST /id/connect/endsession` | logout, then redirect to an allowed `post_logout_redirect_uri` |
//! | `GET /api/domain/odata/Crm_Customers` | `$top`, `$skip`; deterministic fake customers; `@odata.nextLink` pages with `page_size` |
//!
//! Tokens: access tokens are RS256 JWTs with header `typ: at+jwt` and claims `iss, nbf, iat, exp, aud
//! ("DomainApi"), client_id, sub, auth_time, idp, id, name, email, user_type ("InternalUser"), db, locale, jti,
//! sid, scope` (an array) and `amr`. ID tokens (`typ: JWT`) carry `iss, aud (= client_id), nonce, iat, nbf, exp
//! (= iat + 300), at_hash, sid, sub, auth_time, idp ("local"), amr (["pwd"])`, plus `c_hash` and `s_hash` when
//! sent through the front channel (hybrid flow). Refresh tokens and codes are 43-character opaque base64url
//! strings. The token response's `scope` lists identity scopes, then API scopes, then `offline_access`
//! (the seed's order).
//!
//! Behaviour follows ERP.net / IdentityServer: errors found before the redirect URI is trusted are an HTML
//! page (400), later ones a redirect with `error`, `error_description`, `state` and `iss`; PKCE (S256) is
//! required for public clients; refresh tokens rotate one-time-only and a reused one revokes the whole grant;
//! token errors are RFC 6749 §5.2 JSON with `Cache-Control: no-store`; the Domain API answers 401 with
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (plain `Bearer` without any
//! token), 403 `insufficient_scope` without the `DomainApi` scope, and business errors as HTTP 500 JSON
//! `{"message", "code", "type", "info"}` (unknown entity set, a bad `$top` / `$skip`, or on purpose with
//! `$filter=fail`).
//!
//! Deviation, on purpose: the hybrid flow (`code id_token`) defaults to `response_mode=query` (code, id_token,
//! state and iss in the query), because that is what the seed document's callback shows; IdentityServer
//! defaults it to `fragment`, which is available with `response_mode=fragment`. `form_post` answers with an
//! auto-submitting HTML form.
//!
//! # Playing the browser (the login form contract)
//!
//! 1. `GET {base}/id/connect/authorize?client_id=...&redirect_uri=...&response_type=code&scope=...&state=...`
//!    answers `200` with an HTML page holding one `<form method="post" action="/id/account/login">` with the
//!    fields `request_id` (hidden; its value is also in the response header `X-Mock-Login-Request`),
//!    `username`, `password` and a submit `button` (`login`, or `cancel` to deny).
//! 2. `POST {base}/id/account/login` with `Content-Type: application/x-www-form-urlencoded` and
//!    `request_id=...&username=admin&password=admin-password`:
//!    - success: `302` with `Location: {redirect_uri}?code=...&state=...&iss=...` (with `id_token=...` for
//!      hybrid), or for `form_post` a `200` page whose form posts `code`, `id_token`, `state`, `iss` as hidden
//!      inputs, and a session cookie `idsrv.session` (HttpOnly, `Path=/id`);
//!    - wrong user or password: `200` with the form again and the message "Invalid username or password";
//!    - `button=cancel`: redirect with `error=access_denied`;
//!    - unknown or expired `request_id`: `400` HTML page.
//! 3. A later authorize request carrying the cookie gets the redirect straight away, unless `prompt=login`;
//!    `prompt=none` without a session redirects with `error=login_required`.
//!
//! # Demo credentials (the default configuration)
//!
//! | What | Value |
//! | --- | --- |
//! | seed's confidential app | [`DEMO_CLIENT_ID`] `my.trusted.app/first`, secret [`DEMO_CLIENT_SECRET`] `my_plain_app_secret` |
//! | public app (PKCE) | [`DEMO_PUBLIC_CLIENT_ID`] `my.trusted.app/public` |
//! | service app (client credentials, system user `admin`) | [`DEMO_SERVICE_CLIENT_ID`] `my.trusted.app/service`, same secret |
//! | redirect URIs (all three apps; exact match) | [`DEMO_REDIRECT_URI`] `http://localhost/signin-callback` (the seed's), [`DEMO_LOOPBACK_REDIRECT_URI`] `http://127.0.0.1:8400/signin-callback` and [`DEMO_LOCALHOST_REDIRECT_URI`] `http://localhost:8400/signin-callback` (the CLI guide's) |
//! | post-logout redirect URI | [`DEMO_POST_LOGOUT_REDIRECT_URI`] `http://localhost/signout-callback` |
//! | user | [`DEMO_USER`] `admin`, password [`DEMO_PASSWORD`] `admin-password` |
//! | scopes | `openid profile email offline_access DomainApi` |
//!
//! # Configuration file (JSON)
//!
//! [`MockConfig::from_file`] reads JSON; every field is optional and defaults as in [`MockConfig::default`].
//! Durations are whole seconds. Application fields also accept ERP.net's attribute names (`ApplicationUri`,
//! `ClientType`, `ApplicationSecretHash`, `ImpersonateLoginUrl`, ...).
//!
//! ```json
//! {
//!   "apps": [{
//!     "name": "My first trusted app",
//!     "application_uri": "my.trusted.app/first",
//!     "is_enabled": true,
//!     "client_type": "Confidential",
//!     "application_secret_hash": "<base64(sha256(secret))>",
//!     "impersonate_login_urls": ["http://localhost/signin-callback"],
//!     "impersonate_as_internal_user_allowed": true,
//!     "allowed_scopes": ["openid", "profile", "offline_access", "DomainApi"],
//!     "system_user": null,
//!     "post_logout_redirect_uris": ["http://localhost/signout-callback"],
//!     "access_token_lifetime": null,
//!     "omit_expires_in": false
//!   }],
//!   "users": [{"username": "admin", "password": "admin-password", "id": "9da64839-a8d0-491d-aebb-4d18fa42b014",
//!              "name": "SPS", "email": "admin@mail.com", "locale": "en"}],
//!   "clock": {"mode": "manual", "start_unix": 1655057724},
//!   "access_token_lifetime": 3600, "id_token_lifetime": 300, "code_lifetime": 300,
//!   "refresh": {"absolute_lifetime_confidential": 2592000, "absolute_lifetime_public": 86400,
//!               "sliding_lifetime": null, "one_time_only": true, "reuse_detection": true},
//!   "customers": 50, "page_size": null, "database": "demodb"
//! }
//! ```
//!
//! Access token lifetimes: `access_token_lifetime` (top level) is every application's default; an
//! application's own `access_token_lifetime` (seconds, at least 1; `null` or absent = the default) overrides
//! it for every token issued to that application, whatever the grant. The token response's `expires_in`,
//! the JWT's `exp` (`iat` + lifetime) and the Domain API's and userinfo's expiry check (plus
//! `api_clock_skew`) all use that one figure. An application with `"omit_expires_in": true` gets token
//! responses without any `expires_in` member; its access tokens still expire (their `exp` is unchanged).
//! For a client that must cope with short-lived tokens or a silent server:
//!
//! ```json
//! {"apps": [{"name": "Short", "application_uri": "short/app", "client_type": "Public",
//!            "impersonate_login_urls": ["http://localhost/signin-callback"],
//!            "access_token_lifetime": 5, "omit_expires_in": true}]}
//! ```
//!
//! # Admin path (out-of-process control)
//!
//! The server only listens on loopback addresses ([`MockErpNet::start_on`] refuses others), so these are
//! reachable from the same machine only:
//!
//! | Request | Effect |
//! | --- | --- |
//! | `GET /_mock/counters` | [`Counters`] as JSON |
//! | `POST /_mock/reset-counters` | zero the counters (204) |
//! | `GET /_mock/clock` | `{"now_unix": N}` |
//! | `POST /_mock/clock/advance?seconds=N` | advance the clock, answers `{"now_unix": N}` |
//! | `POST /_mock/faults` | body `{"endpoint": "token", "fault": {"kind": "status", "status": 503}, "times": 2}` (see [`Fault`], [`Endpoint`]; `times` absent or `null` = until cleared) (204) |
//! | `DELETE /_mock/faults` | clear all faults (204) |
//! | `POST /_mock/rotate-key` | new signing key, answers `{"kid": "..."}` |
//! | `POST /_mock/revoke-user?username=NAME` | [`MockErpNet::revoke_all_grants_of`] (204) |
//! | `POST /_mock/shutdown` | stop the server ([`MockErpNet::wait`] returns) (204) |
//!
//! # Faults
//!
//! [`MockErpNet::inject_fault`] sets one [`Fault`] per [`Endpoint`] (a new one replaces the old), applied to
//! the next `times` requests of that endpoint (`None`: until [`MockErpNet::clear_faults`]). A faulted request
//! never reaches the endpoint (except [`Fault::Delay`], which answers normally afterwards), so it changes no
//! state and is counted only in [`Counters::faults_applied`]. The admin path is never faulted. Injected
//! faults are real-time behaviours: [`Fault::Delay`] sleeps on the wall clock, not on the mock clock.
//!
//! # Scripted responses
//!
//! [`MockErpNet::set_interceptor`] installs a hook ([`Interceptor`]) that sees every request except the
//! admin path's (`/_mock/...`) before anything else, injected faults included: method, path and query,
//! headers and the whole body (up to [`MockConfig::max_body_bytes`]; a larger body is answered `413`
//! without asking the hook). It answers with an [`Intercepted`]:
//!
//! | Decision | Effect |
//! | --- | --- |
//! | [`Intercepted::Pass`] | the request goes on to the faults and the normal handlers |
//! | [`Intercepted::Respond`] | this response is sent as is (the server adds `content-length` and `date` if absent) |
//! | [`Intercepted::Drop`] | the connection is closed without an answer |
//! | [`Intercepted::Hang`] | no answer ever; the connection stays open until the client gives up or the mock stops |
//!
//! This turns the mock into a scripted server for conformance runs (`cargo xtask conformance` checks each
//! request a client sends against a case file and answers with the case's response) while the client
//! under test still talks real HTTP. The hook runs on a blocking thread, once per request, possibly
//! concurrently; a hook that panics gets the client a `500`. `set_interceptor(None)` removes it.
//!
//! ```
//! use erpnet_oauth_mock::{Intercepted, MockConfig, MockErpNet};
//! use std::sync::Arc;
//!
//! let mock = MockErpNet::start(MockConfig::default())?;
//! mock.set_interceptor(Some(Arc::new(|req: &http::Request<Vec<u8>>| {
//!     if req.uri().path() == "/api/domain/odata/Crm_Customers" {
//!         Intercepted::Respond(http::Response::builder().status(418).body(b"teapot".to_vec()).unwrap())
//!     } else {
//!         Intercepted::Pass
//!     }
//! })));
//! let r = ureq::get(&format!("{}/api/domain/odata/Crm_Customers", mock.base_url()))
//!     .config().http_status_as_error(false).build().call()?;
//! assert_eq!(r.status(), 418);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Keys
//!
//! RSA key generation is slow, so signing keys come from a process-wide pool generated on first use: every
//! mock in a process starts with the same first key (and `kid`); [`MockErpNet::rotate_signing_key`] takes the
//! next one. Tokens are checked against the mock's own table of issued tokens, so a token from another mock
//! in the same process is still refused.

#![warn(missing_docs)]

mod api;
mod banner;
mod config;
mod faults;
mod intercept;
mod keys;
mod oidc;
mod server;
mod state;
mod token;
mod util;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use config::{
    ClientType, ClockMode, ConfigError, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DATABASE,
    DEMO_LOCALHOST_REDIRECT_URI, DEMO_LOOPBACK_REDIRECT_URI, DEMO_PASSWORD, DEMO_POST_LOGOUT_REDIRECT_URI,
    DEMO_PUBLIC_CLIENT_ID, DEMO_REDIRECT_URI, DEMO_REDIRECT_URIS, DEMO_SCOPES, DEMO_SERVICE_CLIENT_ID,
    DEMO_USER, MANUAL_CLOCK_START_UNIX, MockConfig, MockUser, RefreshPolicy, TrustedApp, secret_hash,
};
pub use faults::{Counters, Endpoint, Fault};
pub use intercept::{Intercepted, Interceptor};

/// The path of the login form's target (`POST`).
pub const LOGIN_PATH: &str = oidc::LOGIN_PATH;
/// The response header of the login page that carries the pending login's `request_id`.
pub const LOGIN_REQUEST_HEADER: &str = "X-Mock-Login-Request";
/// The session cookie set after a successful login.
pub const SESSION_COOKIE: &str = state::SESSION_COOKIE;
/// The `$filter` value that makes the Domain API answer with a business error (HTTP 500), on purpose.
pub const FAIL_FILTER: &str = api::FAIL_FILTER;

/// A running mock ERP.net. Dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct MockErpNet {
    shared: Arc<state::Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MockErpNet {
    /// Starts the mock on `127.0.0.1` with a port chosen by the OS, serving on its own thread (a tokio
    /// runtime). Fails on an invalid configuration ([`io::ErrorKind::InvalidInput`]) or a socket error.
    pub fn start(config: MockConfig) -> io::Result<MockErpNet> {
        Self::start_inner(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), false)
    }

    /// Starts the mock on `addr`, which must be a loopback address (`127.0.0.0/8` or `[::1]`; others are
    /// refused with [`io::ErrorKind::InvalidInput`]). Port 0 lets the OS choose.
    pub fn start_on(config: MockConfig, addr: SocketAddr) -> io::Result<MockErpNet> {
        Self::start_inner(config, addr, false)
    }

    fn start_inner(config: MockConfig, addr: SocketAddr, ctrl_c: bool) -> io::Result<MockErpNet> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the mock listens on loopback addresses only, not {addr}"),
            ));
        }
        let workers = config
            .worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4));
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(state::Shared::new(config, addr)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("erpnet-oauth-mock")
            .enable_all()
            .build()?;
        let shared2 = shared.clone();
        let thread =
            std::thread::Builder::new().name(format!("erpnet-oauth-mock {addr}")).spawn(move || {
                runtime.block_on(server::serve(listener, shared2, ctrl_c));
                // Drops every connection task, including hung ones.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(MockErpNet { shared, addr, thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`: the ERP.net instance URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base_url}/id`: the issuer.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the mock's clock forward. Works with both clock modes: with [`ClockMode::System`] the offset is
    /// added to the system time.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// The mock's current time.
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Sets every counter to zero.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// Makes `endpoint` misbehave for its next `times` requests (`None`: until [`Self::clear_faults`];
    /// `Some(0)` removes the endpoint's fault). Replaces a fault already set on that endpoint.
    pub fn inject_fault(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        self.shared.faults.set(endpoint, fault, times);
    }

    /// Installs (`Some`) or removes (`None`) the hook that sees every request but the admin path's before
    /// the faults and the normal handlers, and may answer it instead (see "Scripted responses" in the
    /// crate docs). Replaces the previous hook; requests already in the hook finish with it.
    pub fn set_interceptor(&self, hook: Option<Interceptor>) {
        self.shared.interceptor.set(hook);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// A new RS256 key with a new `kid` becomes the signing key. The old keys stay in the JWKS unless
    /// [`MockConfig::keep_old_keys_on_rotation`] is false. Returns the new `kid`. May take a few hundred
    /// milliseconds the first time a process needs that many keys. (Should key generation ever fail, the
    /// current key stays, the error is printed to stderr, and its `kid` is returned.)
    pub fn rotate_signing_key(&self) -> String {
        match self.shared.rotate_key() {
            Ok(kid) => kid,
            Err(e) => {
                eprintln!("erpnet-oauth-mock: key rotation failed: {e}");
                self.signing_kid()
            }
        }
    }

    /// Revokes every grant (refresh tokens and the access tokens issued with them) of `username` and ends their
    /// sessions, like a logout everywhere or a password change in ERP.net.
    pub fn revoke_all_grants_of(&self, username: &str) {
        self.shared.revoke_user(username);
    }

    /// A valid access token issued right now without any HTTP exchange: for `username` (a user token, as after
    /// a login) or `None` (a client-credentials token), to `client_id`, with `scopes`. For benchmarks and tests
    /// of API callers. It lives as long as a token of the grants does ([`TrustedApp::access_token_lifetime`]
    /// when `client_id` is an application that sets it, else [`MockConfig::access_token_lifetime`]).
    pub fn mint_access_token(
        &self,
        username: Option<&str>,
        client_id: &str,
        scopes: &[&str],
    ) -> io::Result<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.shared.mint(username, client_id, &scopes)
    }

    /// The current signing key's `kid`.
    pub fn signing_kid(&self) -> String {
        self.shared.signing_key().kid.clone()
    }

    /// A JWT with `claims`, signed RS256 with the current signing key (header `alg`, `kid` and `typ: JWT`),
    /// as the mock signs its ID tokens: for tests that script a misbehaving ID token (another issuer or
    /// audience, a stale `exp`, a foreign nonce) through [`Self::set_interceptor`], signed so that only
    /// the claim under test is wrong. `kid` replaces the key id in the header (an unknown `kid`, catalogue
    /// D7) without changing the key that signs.
    pub fn sign_jwt(&self, claims: &serde_json::Value, kid: Option<&str>) -> io::Result<String> {
        let key = self.shared.signing_key();
        match kid {
            None => key.sign_jwt("JWT", claims),
            Some(kid) => key.sign_jwt_as(kid, "JWT", claims),
        }
    }

    /// Stops the server (as dropping does).
    pub fn stop(self) {}

    /// Blocks until the server stops (`POST /_mock/shutdown`, or Ctrl-C under [`run_foreground`]).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockErpNet {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The README's example, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Serves `config` on `addr` (loopback only) in the foreground: prints on stderr the base URL and what the
/// configuration serves (its applications with their client ids and redirect URIs, its users; the demo
/// secret and password only where the configuration uses them), then serves until Ctrl-C or
/// `POST /_mock/shutdown`. This is what `erpnet-oauth mock` runs.
pub fn run_foreground(config: MockConfig, addr: SocketAddr) -> io::Result<()> {
    let shown = config.clone();
    let mock = MockErpNet::start_inner(config, addr, true)?;
    eprint!("{}", banner::banner(&shown, &mock.base_url(), &mock.issuer()));
    mock.wait();
    Ok(())
}
