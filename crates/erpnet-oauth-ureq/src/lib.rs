//! A blocking ERP.net OAuth 2.0 / OpenID Connect client on [ureq]: log the user in once, then make
//! authorized Domain API calls for weeks from many threads and processes, renewing the access token with
//! the refresh token, without ever burning a rotated refresh token.
//!
//! This crate is a thin adapter over the sans-IO [`erpnet_oauth_core`]: it owns the sockets (a ureq 3
//! agent: timeouts, no redirects, error statuses read as responses, bounded bodies; your own agent if
//! you like, [`SessionBuilder::agent`]), the clock, the OS random source and the token store. Every
//! protocol decision is the core's: each [`Session`] method drives one operation of
//! [`erpnet_oauth_core::lifecycle`], carrying out the steps it asks for.
//!
//! - [`Session`]: `Send + Sync`, shared by `Arc`. [`Session::access_token`], [`Session::send`] and
//!   [`Session::get`] refresh when needed (once, however many threads ask), retry a 401 once, and store
//!   a rotated refresh token before it is used.
//! - Login: [`Session::start_login`] → the browser → [`RedirectListener`] (console apps) or your own
//!   web server (web apps) → [`Session::finish_login`].
//! - Stores: [`MemoryStore`], [`FileStore`] (atomic JSON, mode 0600, cross-process lock), or your own
//!   [`TokenStore`]. The two stores are `erpnet-oauth-store`'s, re-exported: the async adapter uses the
//!   same ones, so both read and write the same files.
//! - Service apps: [`SessionBuilder::client_credentials`].
//! - Errors: [`Error`] is the core's: its typed errors, transport and store failures, and what is
//!   retryable or needs a new login, decided once for both adapters.
//!
//! # The seed, end to end
//!
//! ```no_run
//! use erpnet_oauth_ureq::{
//!     AuthorizationRequest, ClientConfig, ClientSecret, FileStore, LoginOutcome, RedirectListener, Session,
//! };
//!
//! let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
//!     .client_secret(ClientSecret::new("my_plain_app_secret"))
//!     .redirect_uri("http://localhost/signin-callback")
//!     .build()?;
//! let session = Session::builder(client).store(FileStore::new("tokens.json")).build()?;
//!
//! if !session.is_logged_in() {
//!     // Listen on the redirect URI before sending the browser to the login form.
//!     let listener = RedirectListener::bind("http://localhost/signin-callback")?;
//!     let pending = session.start_login(AuthorizationRequest::new())?;
//!     println!("Open this URL in your browser: {}", pending.authorize_url());
//!     let callback = listener.wait(&pending)?;
//!     let login = session.finish_login(pending, callback.as_callback());
//!     // The browser's page says how it ended, once the tokens are verified and stored.
//!     listener.reply(match &login {
//!         Ok(_) => LoginOutcome::LoggedIn { user: None },
//!         Err(_) => LoginOutcome::Failed { reason: "see the application" },
//!     });
//!     login?;
//! }
//!
//! // Any thread, any time: the token is renewed with the refresh token when it expires.
//! let response = session.get("/api/domain/odata/Crm_Customers?$top=10")?;
//! println!("{}", String::from_utf8_lossy(response.body()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A web application passes the callback its own server received:
//! `session.finish_login(pending, Callback::Query(query))` or `Callback::FormPost(body)`.
//!
//! # Processes sharing a store
//!
//! Before sending a refresh, the session takes the store's lock ([`TokenStore::lock`]), re-reads it and
//! lets the core decide ([`erpnet_oauth_core::TokenManager::handle_reloaded`]): if another process already
//! renewed the tokens, they are used and nothing is sent. The lock is released after the new tokens are
//! written. So N processes finding the token expired make one refresh request. A logout takes the same
//! lock and revokes the refresh token the store holds, not an older one it loaded earlier.

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
// The error wraps the core's typed errors unboxed so that callers can match on them; errors are the cold path.
#![allow(clippy::result_large_err)]

mod clock;
mod login;
mod session;
mod store;
mod transport;

pub use clock::{Clock, OsRandom, SystemClock};
pub use erpnet_oauth_core::Error;
pub use erpnet_oauth_core::HttpOptions;
pub use erpnet_oauth_core::lifecycle::{LoggedIn, Logout, Revocation};
pub use login::{Cancel, LoginOutcome, ReceivedCallback, RedirectListener};
pub use session::{Session, SessionBuilder};
pub use store::{FileStore, MemoryStore, StoreError, StoreLock, TokenStore};
pub use transport::HttpClient;

pub use erpnet_oauth_core;
pub use erpnet_oauth_core::{
    AccessToken, ApiError, AuthorizationRequest, Callback, ClientConfig, ClientSecret, ManagerOptions,
    PendingLogin, RefreshError, ResponseMode, ResponseType, RetryAfter, TokenSet,
};
pub use ureq;

/// The README's and the guide's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
#[doc = include_str!("../../../docs/GUIDE.md")]
pub struct ReadmeDoctests;
