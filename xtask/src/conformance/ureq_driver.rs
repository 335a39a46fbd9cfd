//! The blocking adapter `erpnet-oauth-ureq`, over real HTTP against the mock ERP.net in scripted mode.
//!
//! Each case gets its own scripted mock ([`super::adapter`]: the interceptor, the mapping of requests
//! back to the case's instance, the late callers' gate, and how each step maps onto the session). The
//! adapter's [`Session`] is built as a user would build it, with the mock's URL as the instance, a store
//! that records what it is asked, a clock reading the case's time, and the case's skew, renewal and
//! timeout.
//!
//! What the mapping adds, and what it leaves out of comparisons:
//! - ureq's own headers ([`super::adapter::TRANSPORT_HEADERS`]), and ureq's default `Accept: */*`, which
//!   it adds only to requests that have no `Accept` (the adapter's Domain API calls): it is dropped before
//!   the comparison, so an `Accept` the adapter sets is still compared.
//! - Errors are reported as every driver reports them ([`super::outcome::describe`]).
//! - `count` concurrent callers are real threads, ordered by the shared gate (see
//!   [`super::adapter::Gate`]): the late callers find the renewal in flight and wait for it. A login
//!   runs on a thread of its own from its `callback` step on.

use super::adapter::{
    self, Action, Adapter, AdapterDriver, LISTEN_TIMEOUT, ScriptedMock, browse, listened, lock,
};
use super::core_driver::{options, stored_tokens, view};
use super::driver::{CallOutcome, Harness, Listened, Setup, StoreEvent};
use super::outcome::call_outcome;
use erpnet_oauth_ureq::erpnet_oauth_core::lifecycle::{LoggedIn, Logout};
use erpnet_oauth_ureq::erpnet_oauth_core::{ProviderMetadata, TokenSet};
use erpnet_oauth_ureq::{
    AuthorizationRequest, Callback, ClientConfig, Error, HttpOptions, LoginOutcome, ManagerOptions,
    MemoryStore, PendingLogin, RedirectListener, Session, StoreError, StoreLock, TokenStore,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Runs cases through `erpnet-oauth-ureq` against `erpnet-oauth-mock` over loopback HTTP.
#[derive(Debug)]
pub struct UreqDriver(AdapterDriver);

impl UreqDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        UreqDriver(AdapterDriver::new("ureq", start))
    }
}

impl Default for UreqDriver {
    fn default() -> Self {
        Self::new()
    }
}

adapter::adapter_driver!(UreqDriver);

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

/// A case's session, and what it was built with (to build it again).
#[derive(Debug)]
struct Ureq {
    session: Session,
    store: Arc<RecordingStore>,
    now: Arc<Mutex<SystemTime>>,
    options: ManagerOptions,
    http: HttpOptions,
}

fn start(setup: &Setup, mock: &ScriptedMock, now: Arc<Mutex<SystemTime>>) -> Harness<Arc<dyn Adapter>> {
    let store = Arc::new(RecordingStore::default());
    if let Some(tokens) = stored_tokens(setup) {
        store.inner.save(&tokens).map_err(|e| format!("the store: {e}"))?;
    }
    let http = HttpOptions::default().timeout(mock.timeout).connect_timeout(mock.timeout);
    Ureq::build(mock.client.clone(), store, now, options(setup)?, http)
}

impl Ureq {
    fn build(
        client: ClientConfig,
        store: Arc<RecordingStore>,
        now: Arc<Mutex<SystemTime>>,
        options: ManagerOptions,
        http: HttpOptions,
    ) -> Harness<Arc<dyn Adapter>> {
        let clock = {
            let now = now.clone();
            move || *lock(&now)
        };
        let session = Session::builder(client)
            .store(store.clone())
            .clock(clock)
            .manager_options(options.clone())
            .http_options(http.clone())
            .build()
            .map_err(|e| format!("the session does not build: {e}"))?;
        Ok(Arc::new(Ureq { session, store, now, options, http }))
    }
}

impl Adapter for Ureq {
    fn client(&self) -> ClientConfig {
        self.session.client().clone()
    }

    fn start_login(&self, request: AuthorizationRequest) -> Result<PendingLogin, Error> {
        self.session.start_login(request)
    }

    fn finish_login(&self, pending: PendingLogin, callback: Callback<'_>) -> Result<LoggedIn, Error> {
        self.session.finish_login(pending, callback)
    }

    fn logout(&self) -> Result<Logout, Error> {
        self.session.logout()
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        self.session.poll_timeout()
    }

    fn handle_timeout(&self) -> Result<(), Error> {
        self.session.handle_timeout()
    }

    fn tokens(&self) -> Option<TokenSet> {
        self.session.tokens()
    }

    fn discover(&self, request: http::Request<Vec<u8>>) -> Result<ProviderMetadata, Error> {
        let response = self.session.http().send_token_request(&request)?;
        Ok(ProviderMetadata::parse(&response, self.session.client().issuer())?)
    }

    fn rebuild(&self, client: ClientConfig) -> Harness<Arc<dyn Adapter>> {
        Ureq::build(client, self.store.clone(), self.now.clone(), self.options.clone(), self.http.clone())
    }

    fn verifier(&self) -> Harness<Arc<dyn Adapter>> {
        let store = Arc::new(RecordingStore::default());
        Ureq::build(self.client(), store, self.now.clone(), ManagerOptions::default(), self.http.clone())
    }

    fn api_calls(
        &self,
        req: http::Request<Vec<u8>>,
        count: usize,
        action: &Action,
    ) -> Harness<Vec<CallOutcome>> {
        let session = &self.session;
        // Each caller judges its own result: a failure it sees was injected (and recorded) before.
        let call = |req: http::Request<Vec<u8>>| call_outcome(&session.send(req), &action.injected());
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
        results.into_iter().map(|r| r.ok_or_else(|| "a calling thread panicked".to_owned())).collect()
    }

    fn write_store(&self, tokens: Option<&TokenSet>) -> Harness<()> {
        match tokens {
            Some(t) => self.store.inner.save(t),
            None => self.store.inner.clear(),
        }
        .map_err(|e| format!("the store: {e}"))
    }

    fn take_store_events(&self) -> Vec<StoreEvent> {
        std::mem::take(&mut *lock(&self.store.events))
    }

    fn listen(&self, redirect_uri: &str, pending: &PendingLogin, requests: &[Vec<u8>]) -> Harness<Listened> {
        let listener = RedirectListener::bind(redirect_uri)
            .map_err(|e| format!("the listener does not bind: {e}"))?
            .timeout(LISTEN_TIMEOUT);
        let addr = listener.local_addr().map_err(|e| format!("the listener's address: {e}"))?;
        let cancel = listener.cancel_handle();
        let ended = AtomicBool::new(false);
        std::thread::scope(|s| {
            let browser = s.spawn(|| {
                let browsed = browse(addr, requests, &ended);
                // Every request was answered: a wait still going is ended.
                cancel.cancel();
                browsed
            });
            let waited = listener.wait(pending);
            ended.store(true, Ordering::SeqCst);
            if waited.is_ok() {
                listener.reply(LoginOutcome::LoggedIn { user: None });
            }
            let browsed = browser.join().map_err(|_| "the browser's thread panicked".to_owned())?;
            listened(browsed, Some(waited))
        })
    }
}
