//! The async adapter `erpnet-oauth-async` (its default HTTP client, reqwest), over real HTTP against the
//! mock ERP.net in scripted mode: the same cases as the [`super::UreqDriver`], the same way.
//!
//! Each case gets its own scripted mock ([`super::adapter`]: the interceptor, the mapping of requests
//! back to the case's instance, the late callers' gate) and its own tokio multi-thread runtime, owned by
//! the driver. The adapter's [`Session`] is built in it as a user would build it: the mock's URL as the
//! instance, a store that records what it is asked, a clock reading the case's time, the case's skew and
//! renewal, and the case's timeout.
//!
//! What the mapping adds, and what it leaves out of comparisons:
//! - reqwest's own headers ([`AsyncDriver::transport_headers`]) and its default `Accept: */*`, added only
//!   to requests that have no `Accept` (dropped before the comparison, like ureq's).
//! - Errors are reported as the core's errors print (`Api(e)` → `e`, `Refresh(e)` → `e`), so the
//!   cases' expected texts hold. A transport failure the script injected is reported as the core driver
//!   reports it, `Transport("<scripted reason>")`, only when the adapter's error is of the matching kind
//!   (`Timeout` for a `timeout`; `Http`/`Connect` for a dropped connection: reqwest reports a connection
//!   closed without an answer as `Http`); otherwise its own `Debug` shows. Errors of the adapter alone
//!   (`BodyTooLarge`, ...) show as the adapter's `Debug`.
//! - `count` concurrent callers are tokio tasks on the driver's runtime, sharing one `Session` (clones),
//!   ordered by the shared gate (a late task waits for it on the blocking pool, never on a runtime
//!   thread): the late callers find the renewal in flight and wait for it on the session's `Notify`.
//!
//! The `revoke` steps run as `Session::logout`. Not driven through the adapter (see
//! [`AsyncDriver::unsupported`]): the same steps as the ureq driver, for the same reasons (the session has
//! no timer, no discovery / ID token verification / end-session step of its own, and logins are not
//! driven).

use super::adapter::{self, NO_LOGIN, NO_TIMER, ScriptedMock, lock, scripted};
use super::core_driver::{options, stored_tokens, view};
use super::driver::{AuthorizeParams, CallOutcome, Driver, Harness, Setup, StoreEvent, TokensView, Wire};
use super::message::Message;
use super::oidc::OidcDriver;
use erpnet_oauth_async::{
    BoxFuture, Error, HttpOptions, MemoryStore, RefreshError, Revocation, Session, StoreError, StoreLock,
    TokenSet, TokenStore,
};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Runs cases through `erpnet-oauth-async` against `erpnet-oauth-mock` over loopback HTTP.
#[derive(Debug, Default)]
pub struct AsyncDriver {
    run: Option<Run>,
}

impl AsyncDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        AsyncDriver::default()
    }

    fn run(&mut self) -> Harness<&mut Run> {
        self.run.as_mut().ok_or_else(|| "no case started".to_owned())
    }
}

/// One case's session. Fields drop in order: the session, then the runtime, then the mock.
#[derive(Debug)]
struct Run {
    session: Session,
    store: Arc<RecordingStore>,
    now: Arc<Mutex<SystemTime>>,
    runtime: tokio::runtime::Runtime,
    mock: ScriptedMock,
}

/// The session's store: a [`MemoryStore`] that records what it is asked.
#[derive(Debug, Default)]
struct RecordingStore {
    inner: MemoryStore,
    events: Mutex<Vec<StoreEvent>>,
}

impl TokenStore for RecordingStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        self.inner.load()
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        lock(&self.events).push(StoreEvent::Save(view(tokens)));
        self.inner.save(tokens)
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        lock(&self.events).push(StoreEvent::Clear);
        self.inner.clear()
    }
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
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
        Error::Http(_) | Error::Connect(_) | Error::Io(_) => scripted(injected, false),
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

impl Driver for AsyncDriver {
    fn name(&self) -> &'static str {
        "async"
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("the tokio runtime does not start: {e}"))?;
        let store = Arc::new(RecordingStore::default());
        let now = Arc::new(Mutex::new(setup.now));
        let clock = {
            let now = now.clone();
            move || *lock(&now)
        };
        let builder = Session::builder(mock.client.clone())
            .store(store.clone())
            .clock(clock)
            .manager_options(options(setup)?)
            .http_options(HttpOptions::default().timeout(mock.timeout).connect_timeout(mock.timeout));
        let session = runtime.block_on(async {
            if let Some(tokens) = stored_tokens(setup) {
                store.inner.save(&tokens).await.map_err(|e| format!("the store: {e}"))?;
            }
            builder.build().await.map_err(|e| format!("the session does not build: {e}"))
        })?;
        self.run = Some(Run { session, store, now, runtime, mock });
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
        let results = run.runtime.block_on(async {
            let mut tasks = Vec::with_capacity(count);
            for i in 0..count {
                let (session, req, action) = (run.session.clone(), req.clone(), action.clone());
                tasks.push(tokio::spawn(async move {
                    if i > 0 {
                        let gate = action.gate.clone();
                        tokio::task::spawn_blocking(move || gate.pass())
                            .await
                            .map_err(|e| format!("a late caller's gate failed: {e}"))?;
                    }
                    // Each caller judges its own result: a failure it sees was injected (and recorded) before.
                    let result = outcome(session.send(req).await, &lock(&action.injected));
                    if i == 0 {
                        action.gate.open();
                    }
                    Ok::<_, String>(result)
                }));
            }
            let mut results = Vec::with_capacity(count);
            for task in tasks {
                results.push(task.await.map_err(|e| format!("a calling task failed: {e}")).and_then(|r| r));
            }
            results
        });
        run.mock.end();
        results.into_iter().collect()
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

impl adapter::Logout for AsyncDriver {
    fn logout(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        let run = self.run()?;
        let action = run.mock.begin(wire, 1);
        let logout = run.runtime.block_on(run.session.logout());
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
        let timeout = Error::Timeout("operation timed out".to_owned());
        let closed = Error::Http("connection closed before message completed".to_owned());
        let timed_out = vec!["timeout".to_owned()];
        let dropped = vec!["connection reset".to_owned()];
        assert_eq!(describe(&timeout, &timed_out), r#"Transport("timeout")"#);
        assert_eq!(describe(&closed, &dropped), r#"Transport("connection reset")"#);
        assert_eq!(
            describe(&Error::Connect("refused".to_owned()), &dropped),
            r#"Transport("connection reset")"#
        );
        // A kind other than the one injected, or nothing injected: the adapter's own Debug.
        assert_eq!(describe(&timeout, &dropped), r#"Timeout("operation timed out")"#);
        assert!(describe(&closed, &timed_out).starts_with("Http("));
        assert!(describe(&closed, &[]).starts_with("Http("));
        let waited = Error::Refresh(RefreshError::Transport("the request timed out (x)".to_owned()));
        assert_eq!(describe(&waited, &timed_out), r#"Transport("timeout")"#);
        assert!(describe(&waited, &dropped).starts_with("Refresh(Transport("));
        assert_eq!(describe(&Error::BodyTooLarge { limit: 9 }, &[]), "BodyTooLarge { limit: 9 }");
    }
}
