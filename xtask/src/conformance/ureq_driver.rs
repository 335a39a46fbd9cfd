//! The blocking adapter `erpnet-oauth-ureq`, over real HTTP against the mock ERP.net in scripted mode.
//!
//! Each case gets its own scripted mock ([`super::adapter`]: the interceptor, the mapping of requests
//! back to the case's instance, the late callers' gate). The adapter's [`Session`] is built as a user
//! would build it, with the mock's URL as the instance, a store that records what it is asked, a clock
//! reading the case's time, and the case's skew and renewal.
//!
//! What the mapping adds, and what it leaves out of comparisons:
//! - ureq's own headers ([`UreqDriver::transport_headers`]), and ureq's default `Accept: */*`, which it
//!   adds only to requests that have no `Accept` (the adapter's Domain API calls): it is dropped before
//!   the comparison, so an `Accept` the adapter sets is still compared.
//! - Errors are reported as the core's errors print (`Api(e)` → `e`, `Refresh(e)` → `e`), so the
//!   cases' expected texts hold. A transport failure the script injected is reported as the core driver
//!   reports it, `Transport("<scripted reason>")`, only when the adapter's error is of the matching kind
//!   (`Timeout` for a `timeout`, `Io`/`Connect` for a dropped connection); otherwise its own `Debug`
//!   shows. Errors of the adapter alone (`BodyTooLarge`, ...) show as the adapter's `Debug`.
//! - `count` concurrent callers are real threads, ordered by the shared gate (see
//!   [`super::adapter::Gate`]): the late callers find the renewal in flight and wait for it.
//!
//! The `revoke` steps run as `Session::logout` (revoke the refresh token, then clear the tokens whatever
//! the server said). Not driven through the adapter (see [`UreqDriver::unsupported`]): the timer steps
//! (the session has no timer; it renews on use), the other OpenID Connect steps (no discovery, ID token
//! verification or end-session API in the session), and the login steps (see `unsupported`).

use super::adapter::{self, NO_LOGIN, NO_TIMER, ScriptedMock, lock, scripted};
use super::core_driver::{options, stored_tokens, view};
use super::driver::{AuthorizeParams, CallOutcome, Driver, Harness, Setup, StoreEvent, TokensView, Wire};
use super::message::Message;
use super::oidc::OidcDriver;
use erpnet_oauth_ureq::erpnet_oauth_core::TokenSet;
use erpnet_oauth_ureq::{
    Error, HttpOptions, MemoryStore, RefreshError, Revocation, Session, StoreError, StoreLock, TokenStore,
};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Runs cases through `erpnet-oauth-ureq` against `erpnet-oauth-mock` over loopback HTTP.
#[derive(Debug, Default)]
pub struct UreqDriver {
    run: Option<Run>,
}

impl UreqDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        UreqDriver::default()
    }

    fn run(&mut self) -> Harness<&mut Run> {
        self.run.as_mut().ok_or_else(|| "no case started".to_owned())
    }
}

#[derive(Debug)]
struct Run {
    session: Session,
    store: Arc<RecordingStore>,
    now: Arc<Mutex<SystemTime>>,
    /// Dropped last: stops the server once the session is gone.
    mock: ScriptedMock,
}

/// The session's store: a [`MemoryStore`] that records what it is asked.
#[derive(Debug, Default)]
struct RecordingStore {
    inner: MemoryStore,
    events: Mutex<Vec<StoreEvent>>,
}

impl TokenStore for RecordingStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.inner.load()
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        lock(&self.events).push(StoreEvent::Save(view(tokens)));
        self.inner.save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        lock(&self.events).push(StoreEvent::Clear);
        self.inner.clear()
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        self.inner.lock()
    }
}

/// The adapter's error as the cases write errors (see the module docs).
fn describe(err: &Error, injected: &[String]) -> String {
    let mapped = match err {
        Error::Api(e) => Some(format!("{e:?}")),
        Error::Revocation(e) => Some(format!("{e:?}")),
        Error::Refresh(RefreshError::Transport(reason)) => scripted(injected, adapter::is_timeout(reason)),
        Error::Refresh(e) => Some(format!("{e:?}")),
        Error::Timeout(_) => scripted(injected, true),
        Error::Io(_) | Error::Connect(_) => scripted(injected, false),
        _ => None,
    };
    mapped.unwrap_or_else(|| format!("{err:?}"))
}

fn outcome(result: Result<http::Response<Vec<u8>>, Error>, injected: &[String]) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(e) => CallOutcome::Failed {
            error: describe(&e, injected),
            retryable: e.is_retryable(),
            login_required: e.is_login_required(),
        },
    }
}

impl Driver for UreqDriver {
    fn name(&self) -> &'static str {
        "ureq"
    }

    fn unsupported(&self, step: &str) -> Option<&'static str> {
        adapter::unsupported(step)
    }

    fn transport_headers(&self) -> &[&'static str] {
        adapter::TRANSPORT_HEADERS
    }

    fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>> {
        // The configuration the user would give: refused here exactly as the adapter's user sees it.
        let mock = match ScriptedMock::start(self.name(), setup)? {
            Ok(m) => m,
            Err(refused) => return Ok(Err(refused)),
        };
        let store = Arc::new(RecordingStore::default());
        if let Some(tokens) = stored_tokens(setup) {
            store.inner.save(&tokens).map_err(|e| format!("the store: {e}"))?;
        }
        let now = Arc::new(Mutex::new(setup.now));
        let clock = {
            let now = now.clone();
            move || *lock(&now)
        };
        let session = Session::builder(mock.client.clone())
            .store(store.clone())
            .clock(clock)
            .manager_options(options(setup)?)
            .http_options(HttpOptions::default().timeout(mock.timeout).connect_timeout(mock.timeout))
            .build()
            .map_err(|e| format!("the session does not build: {e}"))?;
        self.run = Some(Run { session, store, now, mock });
        Ok(Ok(()))
    }

    fn authorize(&mut self, _login: &str, _params: &AuthorizeParams) -> Harness<Result<String, String>> {
        Err(NO_LOGIN.to_owned())
    }

    fn callback(&mut self, _login: &str, _request: &Message) -> Harness<Result<(), String>> {
        Err(NO_LOGIN.to_owned())
    }

    fn exchange(&mut self, _login: &str, _wire: &Wire) -> Harness<Result<TokensView, String>> {
        Err(NO_LOGIN.to_owned())
    }

    fn api_calls(
        &mut self,
        request: &http::Request<()>,
        count: usize,
        wire: &Wire,
    ) -> Harness<Vec<CallOutcome>> {
        let run = self.run()?;
        let req = run.mock.to_mock(request)?;
        let action = run.mock.begin(wire, count);
        let session = &run.session;
        // Each caller judges its own result: a failure it sees was injected (and recorded) before.
        let call = |req: http::Request<Vec<u8>>| outcome(session.send(req), &lock(&action.injected));
        let results: Vec<Option<CallOutcome>> = std::thread::scope(|s| {
            let mut handles = Vec::with_capacity(count);
            if count > 0 {
                let (req, gate) = (req.clone(), action.gate.clone());
                handles.push(s.spawn(move || {
                    let result = call(req);
                    gate.open();
                    result
                }));
            }
            for _ in 1..count {
                let (req, gate) = (req.clone(), action.gate.clone());
                handles.push(s.spawn(move || {
                    gate.pass();
                    call(req)
                }));
            }
            handles.into_iter().map(|h| h.join().ok()).collect()
        });
        run.mock.end();
        results.into_iter().map(|r| r.ok_or_else(|| "a calling thread panicked".to_owned())).collect()
    }

    fn tick(&mut self, now: SystemTime) {
        if let Some(run) = self.run.as_ref() {
            *lock(&run.now) = now;
        }
    }

    fn next_timeout(&mut self) -> Option<SystemTime> {
        None
    }

    fn timeout(&mut self, _wire: &Wire) -> Harness<()> {
        Err(NO_TIMER.to_owned())
    }

    fn tokens(&self) -> Option<TokensView> {
        self.run.as_ref().and_then(|r| r.session.tokens()).map(|t| view(&t))
    }

    fn take_store_events(&mut self) -> Vec<StoreEvent> {
        self.run.as_ref().map(|r| std::mem::take(&mut *lock(&r.store.events))).unwrap_or_default()
    }

    fn oidc(&mut self) -> Option<&mut dyn OidcDriver> {
        Some(self)
    }
}

impl adapter::Logout for UreqDriver {
    fn logout(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        let run = self.run()?;
        let action = run.mock.begin(wire, 1);
        let logout = run.session.logout();
        run.mock.end();
        let logout = logout.map_err(|e| format!("the store could not be cleared: {e}"))?;
        Ok(match logout.revocation {
            Revocation::Revoked => Ok(()),
            Revocation::NothingToRevoke => Err(("NoRefreshToken".to_owned(), false)),
            Revocation::NotOffered => Err(("NotOffered".to_owned(), false)),
            Revocation::Failed(e) => Err((describe(&e, &lock(&action.injected)), e.is_retryable())),
            _ => Err(("an unknown revocation outcome".to_owned(), false)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_is_the_scripted_one_only_when_its_kind_matches() {
        let timeout = Error::Timeout("global".to_owned());
        let io = Error::Io("connection reset by peer".to_owned());
        let timed_out = vec!["timeout".to_owned()];
        let dropped = vec!["connection reset".to_owned()];
        assert_eq!(describe(&timeout, &timed_out), r#"Transport("timeout")"#);
        assert_eq!(describe(&io, &dropped), r#"Transport("connection reset")"#);
        // A kind other than the one injected, or nothing injected: the adapter's own Debug.
        assert_eq!(describe(&timeout, &dropped), r#"Timeout("global")"#);
        assert_eq!(describe(&io, &timed_out), r#"Io("connection reset by peer")"#);
        assert_eq!(describe(&io, &[]), r#"Io("connection reset by peer")"#);
        let waited = Error::Refresh(RefreshError::Transport("the request timed out (global)".to_owned()));
        assert_eq!(describe(&waited, &timed_out), r#"Transport("timeout")"#);
        assert!(describe(&waited, &dropped).starts_with("Refresh(Transport("));
        assert_eq!(describe(&Error::BodyTooLarge { limit: 9 }, &[]), "BodyTooLarge { limit: 9 }");
    }
}
