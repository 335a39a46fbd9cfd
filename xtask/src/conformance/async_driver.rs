//! The async adapter `erpnet-oauth-async` (its default HTTP client, reqwest), over real HTTP against the
//! mock ERP.net in scripted mode: the same cases as the [`super::UreqDriver`], the same way.
//!
//! Each case gets its own scripted mock ([`super::adapter`]: the interceptor, the mapping of requests
//! back to the case's instance, the late callers' gate, and how each step maps onto the session) and its
//! own tokio multi-thread runtime, owned by the driver. The adapter's [`Session`] is built in it as a user
//! would build it: the mock's URL as the instance, a store that records what it is asked, a clock reading
//! the case's time, the case's skew and renewal, and the case's timeout.
//!
//! What the mapping adds, and what it leaves out of comparisons:
//! - reqwest's own headers ([`super::adapter::TRANSPORT_HEADERS`]) and its default `Accept: */*`, added
//!   only to requests that have no `Accept` (dropped before the comparison, like ureq's).
//! - Errors are reported as every driver reports them ([`super::outcome::describe`]).
//! - `count` concurrent callers are tokio tasks on the driver's runtime, sharing one `Session` (clones),
//!   ordered by the shared gate (a late task waits for it on the blocking pool, never on a runtime
//!   thread): the late callers find the renewal in flight and wait for it on the session's `Notify`.
//! - The other steps call the session's async methods from the driver's thread, or for a login running
//!   in the background from a thread of its own (`Runtime::block_on`).
//! - Discovery: the client's discovery request through the session's `HttpSend`, read with the core's
//!   `ProviderMetadata::parse` (see [`super::adapter`]).

use super::adapter::{
    self, Action, Adapter, AdapterDriver, LISTEN_TIMEOUT, ScriptedMock, browse, listened, lock,
};
use super::core_driver::{options, stored_tokens, view};
use super::driver::{CallOutcome, Harness, Listened, Setup, StoreEvent};
use super::outcome::call_outcome;
use erpnet_oauth_async::erpnet_oauth_core::ProviderMetadata;
use erpnet_oauth_async::erpnet_oauth_core::lifecycle::{LoggedIn, Logout};
use erpnet_oauth_async::{
    AuthorizationRequest, BoxFuture, Callback, ClientConfig, Error, HttpOptions, LoginOutcome,
    ManagerOptions, MemoryStore, PendingLogin, RedirectListener, Session, StoreError, StoreLock, TokenSet,
    TokenStore,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Runs cases through `erpnet-oauth-async` against `erpnet-oauth-mock` over loopback HTTP.
#[derive(Debug)]
pub struct AsyncDriver(AdapterDriver);

impl AsyncDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        AsyncDriver(AdapterDriver::new("async", start))
    }
}

impl Default for AsyncDriver {
    fn default() -> Self {
        Self::new()
    }
}

adapter::adapter_driver!(AsyncDriver);

/// The session's store: a [`MemoryStore`] that records what it is asked.
#[derive(Debug, Default)]
struct RecordingStore {
    inner: MemoryStore,
    events: Mutex<Vec<StoreEvent>>,
}

impl TokenStore for RecordingStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        TokenStore::load(&self.inner)
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        lock(&self.events).push(StoreEvent::Save(view(tokens)));
        TokenStore::save(&self.inner, tokens)
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        lock(&self.events).push(StoreEvent::Clear);
        TokenStore::clear(&self.inner)
    }
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        TokenStore::lock(&self.inner)
    }
}

/// A case's session on the driver's runtime, and what it was built with (to build it again).
#[derive(Debug)]
struct Async {
    session: Session,
    store: Arc<RecordingStore>,
    now: Arc<Mutex<SystemTime>>,
    options: ManagerOptions,
    http: HttpOptions,
    runtime: Arc<tokio::runtime::Runtime>,
}

fn start(setup: &Setup, mock: &ScriptedMock, now: Arc<Mutex<SystemTime>>) -> Harness<Arc<dyn Adapter>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("the tokio runtime does not start: {e}"))?;
    let store = Arc::new(RecordingStore::default());
    if let Some(tokens) = stored_tokens(setup) {
        runtime.block_on(TokenStore::save(&store.inner, &tokens)).map_err(|e| format!("the store: {e}"))?;
    }
    let http = HttpOptions::default().timeout(mock.timeout).connect_timeout(mock.timeout);
    Async::build(mock.client.clone(), store, now, options(setup)?, http, Arc::new(runtime))
}

impl Async {
    fn build(
        client: ClientConfig,
        store: Arc<RecordingStore>,
        now: Arc<Mutex<SystemTime>>,
        options: ManagerOptions,
        http: HttpOptions,
        runtime: Arc<tokio::runtime::Runtime>,
    ) -> Harness<Arc<dyn Adapter>> {
        let clock = {
            let now = now.clone();
            move || *lock(&now)
        };
        let builder = Session::builder(client)
            .store(store.clone())
            .clock(clock)
            .manager_options(options.clone())
            .http_options(http.clone());
        let session =
            runtime.block_on(builder.build()).map_err(|e| format!("the session does not build: {e}"))?;
        Ok(Arc::new(Async { session, store, now, options, http, runtime }))
    }
}

impl Adapter for Async {
    fn client(&self) -> ClientConfig {
        self.session.client().clone()
    }

    fn start_login(&self, request: AuthorizationRequest) -> Result<PendingLogin, Error> {
        self.session.start_login(request)
    }

    fn finish_login(&self, pending: PendingLogin, callback: Callback<'_>) -> Result<LoggedIn, Error> {
        self.runtime.block_on(self.session.finish_login(pending, callback))
    }

    fn logout(&self) -> Result<Logout, Error> {
        self.runtime.block_on(self.session.logout())
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        self.session.poll_timeout()
    }

    fn handle_timeout(&self) -> Result<(), Error> {
        self.runtime.block_on(self.session.handle_timeout())
    }

    fn tokens(&self) -> Option<TokenSet> {
        self.session.tokens()
    }

    fn discover(&self, request: http::Request<Vec<u8>>) -> Result<ProviderMetadata, Error> {
        let limit = self.session.http_options().token_body_limit;
        let response = self.runtime.block_on(self.session.http().send(request, limit))?;
        Ok(ProviderMetadata::parse(&response, self.session.client().issuer())?)
    }

    fn rebuild(&self, client: ClientConfig) -> Harness<Arc<dyn Adapter>> {
        let (store, now, options) = (self.store.clone(), self.now.clone(), self.options.clone());
        Async::build(client, store, now, options, self.http.clone(), self.runtime.clone())
    }

    fn verifier(&self) -> Harness<Arc<dyn Adapter>> {
        let store = Arc::new(RecordingStore::default());
        let (now, http, runtime) = (self.now.clone(), self.http.clone(), self.runtime.clone());
        Async::build(self.client(), store, now, ManagerOptions::default(), http, runtime)
    }

    fn api_calls(
        &self,
        req: http::Request<Vec<u8>>,
        count: usize,
        action: &Action,
    ) -> Harness<Vec<CallOutcome>> {
        let results = self.runtime.block_on(async {
            let mut tasks = Vec::with_capacity(count);
            for i in 0..count {
                let (session, req, action) = (self.session.clone(), req.clone(), action.clone());
                tasks.push(tokio::spawn(async move {
                    if i > 0 {
                        let gate = action.gate.clone();
                        tokio::task::spawn_blocking(move || gate.pass())
                            .await
                            .map_err(|e| format!("a late caller's gate failed: {e}"))?;
                    }
                    // Each caller judges its own result: a failure it sees was injected (and recorded) before.
                    let result = call_outcome(&session.send(req).await, &action.injected());
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
        results.into_iter().collect()
    }

    fn write_store(&self, tokens: Option<&TokenSet>) -> Harness<()> {
        let written = match tokens {
            Some(t) => self.runtime.block_on(TokenStore::save(&self.store.inner, t)),
            None => self.runtime.block_on(TokenStore::clear(&self.store.inner)),
        };
        written.map_err(|e| format!("the store: {e}"))
    }

    fn take_store_events(&self) -> Vec<StoreEvent> {
        std::mem::take(&mut *lock(&self.store.events))
    }

    fn listen(&self, redirect_uri: &str, pending: &PendingLogin, requests: &[Vec<u8>]) -> Harness<Listened> {
        let listener = self
            .runtime
            .block_on(RedirectListener::bind(redirect_uri))
            .map_err(|e| format!("the listener does not bind: {e}"))?
            .timeout(LISTEN_TIMEOUT);
        let addr = listener.local_addr().map_err(|e| format!("the listener's address: {e}"))?;
        let ended = AtomicBool::new(false);
        let (all_answered, done) = tokio::sync::oneshot::channel::<()>();
        std::thread::scope(|s| {
            let browser = s.spawn(|| {
                let browsed = browse(addr, requests, &ended);
                // Every request was answered: a wait still going is ended (its future dropped).
                let _ = all_answered.send(());
                browsed
            });
            let waited = self.runtime.block_on(async {
                tokio::select! {
                    waited = listener.wait(pending) => Some(waited),
                    _ = done => None,
                }
            });
            ended.store(true, Ordering::SeqCst);
            if matches!(waited, Some(Ok(_))) {
                self.runtime.block_on(listener.reply(LoginOutcome::LoggedIn { user: None }));
            }
            let browsed = browser.join().map_err(|_| "the browser's thread panicked".to_owned())?;
            listened(browsed, waited)
        })
    }
}
