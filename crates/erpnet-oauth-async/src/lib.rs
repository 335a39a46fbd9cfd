//! An async ERP.net OAuth 2.0 / OpenID Connect client: log users in, then make authorized Domain API
//! calls from many tasks for weeks, renewing the access token with the refresh token, without ever
//! blocking a runtime thread or burning a rotated refresh token.
//!
//! This crate is a thin adapter over the sans-IO [`erpnet_oauth_core`], like the blocking
//! `erpnet-oauth-ureq`: the two differ only in how bytes move. It owns the sockets (an [`HttpSend`];
//! by default [`ReqwestClient`], behind the default `reqwest` feature: rustls, no redirects, timeouts,
//! bounded bodies), the clock, the OS random source and the token store. Every protocol decision is the
//! core's.
//!
//! - [`Session`]: `Send + Sync`, cheap to clone. [`Session::access_token`], [`Session::send`] and
//!   [`Session::get`] refresh when needed (once, however many tasks ask), retry a 401 once, and store a
//!   rotated refresh token before it is used. Waiting tasks sleep on a `tokio::sync::Notify`.
//! - Login: [`Session::start_login`] → the browser → your web server's redirect URI handler →
//!   [`Session::finish_login`] with [`Callback::Query`] (GET) or [`Callback::FormPost`] (`form_post`).
//!   The [`PendingLogin`] (state, nonce, PKCE verifier) is `Serialize`: keep it server-side in the
//!   user's session. Console and native applications receive the callback with a [`RedirectListener`]
//!   on a loopback address instead (the blocking adapter's, as async fns; cancel its `wait` by dropping
//!   it, e.g. in `tokio::select!`), and answer the browser with [`RedirectListener::reply`].
//! - Stores (async, usable as `dyn TokenStore`): [`MemoryStore`], [`FileStore`] (atomic JSON, mode 0600,
//!   cross-process lock, blocking calls on `spawn_blocking`), or your own [`TokenStore`]. The two stores
//!   are `erpnet-oauth-store`'s, re-exported (the blocking adapter uses the same ones, so both read and
//!   write the same files). Their inherent `load`, `save`, `clear` (and the file store's `lock`) are
//!   blocking calls that a method call on the value picks first: in async code, go through
//!   [`TokenStore`] (`TokenStore::load(&store).await`).
//! - Service apps: [`SessionBuilder::client_credentials`]. Logout with revocation: [`Session::logout`].
//! - Errors: [`Error`] is the core's, the same as the blocking adapter's: its typed errors, transport and
//!   store failures, and what is retryable or needs a new login, decided once.
//!
//! # A web server's login, then API calls
//!
//! ```no_run
//! use erpnet_oauth_async::{AuthorizationRequest, Callback, ClientConfig, ClientSecret, Session};
//!
//! # async fn run(callback_query_from_your_server: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
//!     .client_secret(ClientSecret::new("my_plain_app_secret"))
//!     .redirect_uri("https://my.app.example/signin-callback")
//!     .build()?;
//! let session = Session::new(client).await?;
//!
//! // GET /login: keep `pending` in the user's server-side session, redirect the browser.
//! let pending = session.start_login(AuthorizationRequest::new())?;
//! let redirect_to = pending.authorize_url().to_owned();
//! # let _ = redirect_to;
//!
//! // GET /signin-callback?code=...&state=...: the query string your server received.
//! let logged_in = session.finish_login(pending, Callback::Query(callback_query_from_your_server)).await?;
//! println!("signed in: {:?}", logged_in.claims.map(|c| c.sub));
//!
//! // Any task, any time: the token is renewed with the refresh token when it expires.
//! let response = session.get("/api/domain/odata/Crm_Customers?$top=10").await?;
//! println!("{}", String::from_utf8_lossy(response.body()));
//! # Ok(())
//! # }
//! ```
//!
//! # Plugging your own HTTP client
//!
//! Implement [`HttpSend`] (send as is, follow no redirect, return error statuses as responses, bound the
//! body, time out) and pass it to [`SessionBuilder::http_client`]; build without default features to
//! leave reqwest out.

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
// The error wraps the core's typed errors unboxed so that callers can match on them; errors are the cold path.
#![allow(clippy::result_large_err)]

mod clock;
mod listener;
mod session;
mod store;
mod transport;

pub use clock::{Clock, OsRandom, SystemClock};
pub use erpnet_oauth_core::Error;
pub use erpnet_oauth_core::lifecycle::{LoggedIn, Logout, Revocation};
pub use listener::{LoginOutcome, ReceivedCallback, RedirectListener};
pub use session::{Session, SessionBuilder};
pub use store::{FileStore, MemoryStore, StoreError, StoreLock, TokenStore};
#[cfg(feature = "reqwest")]
pub use transport::ReqwestClient;
pub use transport::{BoxFuture, HttpOptions, HttpSend};

pub use erpnet_oauth_core;
pub use erpnet_oauth_core::{
    AccessToken, ApiError, AuthorizationRequest, Callback, ClientConfig, ClientSecret, ManagerOptions,
    PendingLogin, RefreshError, ResponseMode, ResponseType, RetryAfter, TokenSet,
};
#[cfg(feature = "reqwest")]
pub use reqwest;
