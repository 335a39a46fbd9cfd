//! The ERP.net OAuth 2.0 / OpenID Connect client protocol, as data.
//!
//! **This crate does no I/O.** It opens no socket and no file, starts no thread, never reads a clock
//! (the time is always a `now` parameter) and never reads the OS random source (random bytes come through
//! [`RandomSource`]). For the same inputs it produces the same outputs. It turns the flow into
//! [`http::Request`]s for an adapter to send, and parses the [`http::Response`]s the adapter brings back.
//! The adapters (`erpnet-oauth-ureq`, `erpnet-oauth-async`) own the sockets, the clock, the random source
//! and the token store.
//!
//! # In scope
//! - Client configuration with ERP.net's defaults (issuer `{instance}/id`, `/id/connect/...` endpoints),
//!   confidential and public clients, `client_secret_post` (ERP.net's way) and `client_secret_basic`.
//! - The login as a typestate ([`AuthorizationRequest`] → [`PendingLogin`] → [`CodeExchange`] →
//!   [`TokenExchange`] → [`Login`]): PKCE S256, state, nonce, `code` and `code id_token`, `query` and
//!   `form_post` callbacks, RFC 9207 `iss`.
//! - Token requests for `authorization_code`, `refresh_token` and `client_credentials`, and strict parsing
//!   of their answers into a [`TokenSet`].
//! - The [`TokenManager`]: when to refresh (the margin adapts to short-lived tokens), one refresh at a time,
//!   rotation, `invalid_grant`, a refreshed ID token verified, 401 → one refresh and one retry, one call
//!   causing at most one renewal.
//! - A login's whole lifecycle as operations an adapter drives step by step ([`lifecycle`]: the login,
//!   access tokens, API calls, a forced refresh, userinfo, logout, the timer), with one [`Error`] type:
//!   both adapters are drivers of these operations, so that no protocol decision is taken twice.
//! - Typed errors for every phase, `WWW-Authenticate` parsing, ERP.net's Domain API error bodies,
//!   `Retry-After`.
//! - OpenID Connect: discovery with the issuer check ([`ProviderMetadata`]), the JWKS ([`JwkSet`], RSA and
//!   EC P-256 keys) and when to refetch it ([`KeyCache`]: once, rate-limited, for an unknown `kid`), ID
//!   token verification per OpenID Connect Core §3.1.3.7 ([`verify_id_token`], [`Login::verify`],
//!   RS256, PS256 and ES256 through `ring`, `at_hash`/`c_hash`), the hybrid flow's front-channel ID token
//!   ([`CodeExchange::verify_front_channel`]), refreshed ID tokens ([`IdTokenClaims::verify_refreshed`]),
//!   UserInfo with the `sub` check ([`parse_userinfo_response`]).
//! - Logout: RFC 7009 revocation ([`ClientConfig::revocation_request`], [`parse_revocation_response`]) and
//!   the end-session URL ([`ClientConfig::end_session_url`]); ERP.net reference tokens (`enrt_...`) as a
//!   static bearer credential ([`ReferenceToken::authorize`]).
//! - What the adapters' token stores share: the store file format ([`StoreFile`]: the tokens and whom
//!   they were issued to, [`IssuedTo`], checked by [`StoreFile::tokens_for`]), the error a store reports
//!   ([`StoreError`]) and the cross-process lock it hands out ([`StoreLock`]).
//! - What the adapters' loopback redirect listeners share (catalogue B9): which request is the login's
//!   callback ([`CallbackFilter`]), and, in [`listener`], the limits, the reading of a request's head and
//!   the pages the browser gets.
//!
//! # Out of scope
//! - Sending anything, storing anything, waiting for anything: the adapters do that, as the operations'
//!   [`Step`]s ask.
//! - Reading access tokens: they are opaque to the client (catalogue C7).
//!
//! # Text from servers
//!
//! Errors show what a server sent (an `error_description`, an issuer, a `kid`) escaped by [`escape`]: no
//! control character or bidi override reaches a terminal or a log line through their `Display`. Claims
//! handed out as data ([`IdTokenClaims::sub`], ...) are as received: escape them before printing them.
//!
//! # Features
//!
//! - `test-util` (off by default): `random::SeededRandom`, a deterministic
//!   [`RandomSource`] for tests and fixtures. **Never in production**: the states, nonces and PKCE
//!   verifiers it gives are predictable. Enable it in `[dev-dependencies]` only.
//!
//! # The whole flow
//!
//! ```
//! use erpnet_oauth_core::*;
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
//!     .client_secret(ClientSecret::new("my-secret"))
//!     .redirect_uri("http://localhost/signin-callback")
//!     .build()?;
//! let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
//!
//! // 1. Send the browser to the authorize URL. State, nonce and PKCE verifier come from the caller's random
//! //    source: the adapters use the OS one. (Fixed bytes are for this example only.)
//! struct Fixed;
//! impl RandomSource for Fixed {
//!     fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
//!         dest.fill(7);
//!         Ok(())
//!     }
//! }
//! let pending = AuthorizationRequest::new().scope("offline_access DomainApi").build(&client, &mut Fixed)?;
//! assert!(pending.authorize_url().starts_with(
//!     "https://demodb.my.erp.net/id/connect/authorize?client_id=my.trusted.app%2Ffirst&"));
//!
//! // 2. The browser comes back to the redirect URI with the code and the state.
//! let callback = format!("code=g0ZGZmNjVmOWI&state={}", pending.state());
//! let exchange = pending.handle_callback(&client, Callback::Query(&callback))?;
//!
//! // 3. Exchange the code: the request goes out once; its answer is parsed.
//! let (request, waiting) = exchange.into_request(&client);
//! assert_eq!(request.uri(), "https://demodb.my.erp.net/id/connect/token");
//! let answer = http::Response::new(br#"{"access_token":"at1","token_type":"Bearer","expires_in":3600,
//!     "refresh_token":"rt1","scope":"DomainApi offline_access"}"#.to_vec());
//! let login = waiting.handle_response(&answer, now)?;
//! // The tokens come out only once the ID token is verified against the issuer's keys (here none was
//! // asked for: no `openid`).
//! let login = login.verify(&client, &JwkSet::default(), now)?;
//!
//! // 4. The manager keeps the tokens usable: bearer on each call, refresh when needed.
//! let mut manager = TokenManager::new(client, Some(login.tokens), ManagerOptions::default());
//! let mut call = manager.begin_call();
//! let mut api = http::Request::get("https://demodb.my.erp.net/api/domain/odata/Crm_Customers?$top=10")
//!     .body(())?;
//! assert!(matches!(manager.authorize(&mut call, &mut api, now), Access::Ready(())));
//! assert_eq!(api.headers()["authorization"], "Bearer at1");
//!
//! // An hour later the API answers 401: one refresh, then one retry.
//! let later = now + Duration::from_secs(3600);
//! let unauthorized = http::Response::builder().status(401)
//!     .header("www-authenticate", r#"Bearer error="invalid_token""#).body(Vec::new())?;
//! assert_eq!(manager.handle_api_response(&mut call, &unauthorized), ApiOutcome::Retry);
//! assert!(matches!(manager.authorize(&mut call, &mut api, later), Access::Wait));
//! let Some(Output::Refresh { id, request }) = manager.poll_output() else { unreachable!() };
//! assert_eq!(request.body(), b"client_id=my.trusted.app%2Ffirst&client_secret=my-secret&grant_type=refresh_token&refresh_token=rt1");
//! let renewed = http::Response::new(br#"{"access_token":"at2","token_type":"Bearer","expires_in":3600,
//!     "refresh_token":"rt2"}"#.to_vec());
//! manager.handle_refresh_response(id, &renewed, later);
//! // The rotated refresh token is stored before it is used.
//! let Some(Output::Persist { id, tokens }) = manager.poll_output() else { unreachable!() };
//! assert_eq!(tokens.refresh_token.as_ref().map(|t| t.secret()), Some("rt2"));
//! manager.handle_persisted(id, Ok(()), later);
//! assert!(matches!(manager.authorize(&mut call, &mut api, later), Access::Ready(())));
//! assert_eq!(api.headers()["authorization"], "Bearer at2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Driving an operation
//!
//! Adapters do not call the manager by hand: each of their methods is one [`Operation`], stepped until it
//! is done. Here an access token is asked for when the one held has expired: the operation locks the
//! store, re-reads it, sends the refresh, stores the rotated tokens, unlocks, and hands out the new token.
//!
//! ```
//! use erpnet_oauth_core::*;
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
//!     .client_secret(ClientSecret::new("my-secret"))
//!     .build()?;
//! let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
//! let expired = TokenSet {
//!     access_token: AccessToken::new("at1"),
//!     expires_at: Some(now),
//!     issued_at: None,
//!     refresh_token: Some(RefreshToken::new("rt1")),
//!     id_token: None,
//!     scopes: Scopes::parse("DomainApi offline_access"),
//! };
//! let mut manager = TokenManager::new(client, Some(expired.clone()), ManagerOptions::default());
//! let mut store = Some(expired); // the adapter's store
//! let mut steps = Vec::new();
//!
//! // The driver: an adapter's loop, with canned answers instead of a network.
//! let mut op = GetAccessToken::new();
//! let mut input = None;
//! let token = loop {
//!     let step = op.step(&mut manager, input.take(), now);
//!     steps.push(format!("{step:?}").split('(').next().unwrap_or_default().to_owned());
//!     input = Some(match step {
//!         Step::Renew(mut renewal) => {
//!             // A renewal is an operation of its own (an async adapter spawns it).
//!             let mut r_input = None;
//!             loop {
//!                 let r_step = renewal.step(&mut manager, r_input.take(), now);
//!                 steps.push(format!("{r_step:?}").split('(').next().unwrap_or_default().to_owned());
//!                 r_input = Some(match r_step {
//!                     Step::LockStore => Input::Locked(Ok(())),
//!                     Step::LoadStore => Input::Loaded(Ok(store.clone())),
//!                     Step::Send { request, .. } => {
//!                         assert!(request.body().ends_with(b"grant_type=refresh_token&refresh_token=rt1"));
//!                         Input::Response(http::Response::new(br#"{"access_token":"at2",
//!                             "token_type":"Bearer","expires_in":3600,"refresh_token":"rt2"}"#.to_vec()))
//!                     }
//!                     Step::SaveStore(tokens) => {
//!                         store = Some(tokens);
//!                         Input::Saved(Ok(()))
//!                     }
//!                     Step::UnlockStore => Input::Unlocked,
//!                     Step::Done(result) => break Input::Renewed(result),
//!                     other => unreachable!("{other:?}"),
//!                 });
//!             }
//!         }
//!         Step::Done(result) => break result?,
//!         other => unreachable!("{other:?}"),
//!     });
//! };
//! assert_eq!(token.secret(), "at2");
//! assert_eq!(store.and_then(|t| t.refresh_token).map(|t| t.secret().to_owned()).as_deref(), Some("rt2"));
//! assert_eq!(steps, ["Renew", "LockStore", "LoadStore", "Send", "SaveStore", "UnlockStore", "Done", "Done"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
// The error wraps the phase errors unboxed so that callers can match on them, and a step carries its
// request by value: both live for one step of an operation, and boxing them would only add allocations.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod api;
pub mod authorize;
pub mod challenge;
pub mod config;
pub mod discovery;
mod encode;
pub mod error;
pub mod id_token;
pub mod jwks;
pub mod lifecycle;
pub mod listener;
pub mod manager;
mod pkce;
pub mod random;
pub mod revocation;
pub mod safe_text;
pub mod scope;
pub mod secret;
pub mod store;
pub mod token;
pub mod transport;
pub mod userinfo;

pub use api::{ApiError, DomainApiError, RetryAfter, check_api_response};
pub use authorize::{
    AuthorizationRequest, BuildError, Callback, CallbackError, CallbackFilter, CodeExchange, ListenerRequest,
    Login, PendingLogin, ResponseMode, ResponseType, TokenExchange, VerifiedLogin,
};
pub use challenge::{BearerChallenge, Challenge, bearer_challenge, parse_challenges};
pub use config::{
    AuthMethod, ClientConfig, ClientConfigBuilder, ConfigError, DEFAULT_CLOCK_SKEW, Endpoints, is_loopback,
};
pub use discovery::{DiscoveryError, ProviderMetadata};
pub use error::{Error, OAuthError};
pub use id_token::{IdTokenClaims, IdTokenError, IdTokenExpectations, half_hash, verify_id_token};
pub use jwks::{IgnoredKey, Jwk, JwkSet, JwksError, KeyCache, KeyType, SigningAlg};
pub use lifecycle::{
    FinishLogin, ForceRefresh, GetAccessToken, GetUserInfo, HandleTimeout, Input, LogOut, LoggedIn, Logout,
    Operation, Renewal as RenewalOp, Revocation, SendRequest, Step, Target,
};
pub use manager::{
    Access, ApiCall, ApiOutcome, Keys, LoginRequired, ManagerOptions, Output, PersistFailure, RefreshError,
    RefreshId, Reloaded, Renewal, TokenManager,
};
#[cfg(any(test, feature = "test-util"))]
pub use random::SeededRandom;
pub use random::{RandomError, RandomSource};
pub use revocation::{EndSession, RevocationError, parse_revocation_response};
pub use safe_text::{escape, needs_escape};
pub use scope::Scopes;
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, IdToken, PkceVerifier, ReferenceToken, RefreshToken,
};
pub use store::{IssuedTo, StoreError, StoreFile, StoreLock};
pub use token::{Grant, StoreFormatError, TokenError, TokenSet, parse_token_response, salvage_refresh_token};
pub use transport::HttpOptions;
pub use userinfo::{InvalidBearer, UserInfo, UserInfoError, parse_userinfo_response};

pub use http;
