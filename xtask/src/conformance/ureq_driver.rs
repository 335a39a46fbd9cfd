//! The blocking adapter `erpnet-oauth-ureq`, over real HTTP against the mock ERP.net in scripted mode.
//!
//! Each case gets its own mock (a loopback port chosen by the OS) whose interceptor answers every request
//! from the case's script: the request is mapped back from the mock's origin to the case's instance
//! (`http://127.0.0.1:PORT/...` → `https://demodb.my.erp.net/...`, `Host` likewise) so the script's
//! expectations hold unchanged, then goes through the [`Wire`] of the action in progress, whose reply the
//! mock sends (a transport error: the connection is closed without an answer, or for `timeout` never
//! answered, so that the adapter's own timeout fires). The adapter's [`Session`] is built as a user
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
//! - `count` concurrent callers are real threads. The first caller goes first; the others start while a
//!   renewal is on the wire (the mock holds the token request's answer until they have entered
//!   `Session::send`, plus a few milliseconds) or when the first caller ended. That is the order the
//!   core driver's round-robin produces, so the same scripts hold, and the single flight is exercised
//!   for real: the late callers find the renewal in flight and wait for it.
//!
//! Not driven through the adapter (see [`UreqDriver::unsupported`]): the timer steps (the session has no
//! timer; it renews on use), the OpenID Connect steps (no discovery, ID token verification, revocation
//! or end-session API in the session), and the login steps (see `unsupported`).

use super::core_driver::{build_client, build_client_at, options, stored_tokens, view};
use super::driver::{
    AuthorizeParams, CallOutcome, Driver, Harness, Reply, Setup, StoreEvent, TokensView, Wire,
};
use super::message::Message;
use erpnet_oauth_mock::{Intercepted, MockConfig, MockErpNet};
use erpnet_oauth_ureq::erpnet_oauth_core::TokenSet;
use erpnet_oauth_ureq::{
    Error, HttpOptions, MemoryStore, RefreshError, Session, StoreError, StoreLock, TokenStore,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The adapter's HTTP timeout when the case sets none: long enough never to fire on loopback.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
    slot: Slot,
    /// `https://demodb.my.erp.net`: where the case's API targets point.
    case_origin: String,
    /// `http://127.0.0.1:PORT`: where the session sends them.
    mock_origin: String,
    /// Dropped last: stops the server once the session is gone.
    _mock: MockErpNet,
}

/// The action in progress, read by the mock's interceptor.
type Slot = Arc<Mutex<Option<Action>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One action's server side: its wire, the transport failures injected, and the late callers' gate.
#[derive(Debug, Clone)]
struct Action {
    wire: Wire,
    injected: Arc<Mutex<Vec<String>>>,
    gate: Arc<Gate>,
}

/// Holds the second and later concurrent callers until a renewal is on the wire or the first caller ended.
#[derive(Debug)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// How many late callers there are, and how many have entered the session.
    late: usize,
    entered: AtomicUsize,
}

impl Gate {
    fn new(late: usize) -> Self {
        Gate { open: Mutex::new(false), opened: Condvar::new(), late, entered: AtomicUsize::new(0) }
    }

    /// Opens the gate; returns whether it was closed.
    fn open(&self) -> bool {
        let was_open = std::mem::replace(&mut *lock(&self.open), true);
        self.opened.notify_all();
        !was_open
    }

    /// A late caller waits for the gate (bounded: a stuck first caller must not hang the run).
    fn pass(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut open = lock(&self.open);
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            open = self.opened.wait_timeout(open, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        drop(open);
        self.entered.fetch_add(1, Ordering::SeqCst);
    }

    /// A renewal is on the wire: let the late callers in, and give them time to reach the session's wait
    /// before the answer goes back.
    fn renewal_on_the_wire(&self) {
        if !self.open() || self.late == 0 {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.entered.load(Ordering::SeqCst) < self.late && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Whether a scripted transport failure is a timeout (the mock then never answers).
fn is_timeout(reason: &str) -> bool {
    reason.contains("timeout") || reason.contains("timed out")
}

/// The request as the case writes it: the mock's origin replaced by the case's, `Host` dropped (the
/// comparison takes it from the URI), and ureq's default `Accept: */*` dropped.
fn as_case_request(
    req: &http::Request<Vec<u8>>,
    case_origin: &str,
    mock_authority: &str,
) -> Result<http::Request<Vec<u8>>, String> {
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri: http::Uri =
        format!("{case_origin}{target}").parse().map_err(|e| format!("`{case_origin}{target}`: {e}"))?;
    let mut out = http::Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = uri;
    for (name, value) in req.headers() {
        let ureq_default_accept = name == http::header::ACCEPT && value == "*/*";
        let own_host = name == http::header::HOST && value == mock_authority;
        if !ureq_default_accept && !own_host {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(out)
}

fn text_response(status: u16, text: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(text.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The mock's interceptor: every request goes through the action's wire.
fn interceptor(slot: Slot, case_origin: String, mock_authority: String) -> erpnet_oauth_mock::Interceptor {
    Arc::new(move |req: &http::Request<Vec<u8>>| {
        let Some(action) = lock(&slot).clone() else {
            return Intercepted::Respond(text_response(599, "the ureq driver has no action in progress"));
        };
        let request = match as_case_request(req, &case_origin, &mock_authority) {
            Ok(r) => r,
            Err(e) => return Intercepted::Respond(text_response(599, &e)),
        };
        if req.method() == http::Method::POST && req.uri().path().ends_with("/connect/token") {
            action.gate.renewal_on_the_wire();
        }
        match action.wire.send(&request) {
            Reply::Response(r) => Intercepted::Respond(r),
            Reply::TransportError(reason) => {
                let timeout = is_timeout(&reason);
                lock(&action.injected).push(reason);
                if timeout { Intercepted::Hang } else { Intercepted::Drop }
            }
        }
    })
}

/// The adapter's error as the cases write errors (see the module docs).
fn describe(err: &Error, injected: &[String]) -> String {
    let last = injected.last();
    let scripted =
        |timeout: bool| last.filter(|r| is_timeout(r) == timeout).map(|r| format!("Transport({r:?})"));
    let mapped = match err {
        Error::Api(e) => Some(format!("{e:?}")),
        Error::Refresh(RefreshError::Transport(reason)) => scripted(is_timeout(reason)),
        Error::Refresh(e) => Some(format!("{e:?}")),
        Error::Timeout(_) => scripted(true),
        Error::Io(_) | Error::Connect(_) => scripted(false),
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

/// Why the adapter cannot run a step kind.
const NO_TIMER: &str = "the Session has no timer entry point (poll_timeout / handle_timeout): it renews \
                        on use only, which E8-refresh-within-the-skew and E8-custom-skew check";
const NO_OIDC: &str = "the Session offers no discovery, ID token verification, revocation or end session";
const NO_LOGIN: &str = "login steps are not driven through the adapter";

impl Driver for UreqDriver {
    fn name(&self) -> &'static str {
        "ureq"
    }

    fn unsupported(&self, step: &str) -> Option<&'static str> {
        match step {
            "timeout" => Some(NO_TIMER),
            "discovery" | "verify_id_token" | "verify_front_channel" | "revoke" | "end_session" => {
                Some(NO_OIDC)
            }
            "authorize" | "callback" | "exchange" => Some(NO_LOGIN),
            _ => None,
        }
    }

    fn transport_headers(&self) -> &[&'static str] {
        &["user-agent", "content-length", "accept-encoding", "transfer-encoding", "connection"]
    }

    fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>> {
        // The configuration the user would give: refused here exactly as the adapter's user sees it.
        let case_client = match build_client(setup)? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        let config = MockConfig { worker_threads: Some(2), ..MockConfig::default() };
        let mock = MockErpNet::start(config).map_err(|e| format!("the mock does not start: {e}"))?;
        let mock_origin = mock.base_url();
        let mock_authority = mock.addr().to_string();
        let case_origin = case_client.instance().origin().ascii_serialization();
        let path = case_client.instance().path().trim_end_matches('/');
        // The same client pointed at the mock; the issuer stays the case's (ID tokens, callbacks).
        let mut at_mock = setup.clone();
        at_mock.client.issuer = Some(case_client.issuer().to_owned());
        let client = build_client_at(&at_mock, &format!("{mock_origin}{path}"))?
            .map_err(|e| format!("the client configuration for the mock is refused: {e}"))?;

        let store = Arc::new(RecordingStore::default());
        if let Some(tokens) = stored_tokens(setup) {
            store.inner.save(&tokens).map_err(|e| format!("the store: {e}"))?;
        }
        let now = Arc::new(Mutex::new(setup.now));
        let clock = {
            let now = now.clone();
            move || *lock(&now)
        };
        let timeout = setup.client.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let session = Session::builder(client)
            .store(store.clone())
            .clock(clock)
            .manager_options(options(setup)?)
            .http_options(HttpOptions::default().timeout(timeout).connect_timeout(timeout))
            .build()
            .map_err(|e| format!("the session does not build: {e}"))?;

        let slot: Slot = Arc::default();
        mock.set_interceptor(Some(interceptor(slot.clone(), case_origin.clone(), mock_authority)));
        self.run = Some(Run { session, store, now, slot, case_origin, mock_origin, _mock: mock });
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
        let target = request.uri().to_string();
        let rest = target.strip_prefix(&run.case_origin).filter(|r| r.starts_with('/')).ok_or_else(|| {
            format!("`{target}` is not on the instance: the ureq driver sends only to the mock")
        })?;
        let mut req = http::Request::new(Vec::new());
        *req.method_mut() = request.method().clone();
        *req.uri_mut() =
            format!("{}{rest}", run.mock_origin).parse().map_err(|e| format!("`{target}`: {e}"))?;
        *req.headers_mut() = request.headers().clone();

        let action = Action {
            wire: wire.clone(),
            injected: Arc::default(),
            gate: Arc::new(Gate::new(count.saturating_sub(1))),
        };
        *lock(&run.slot) = Some(action.clone());
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
        *lock(&run.slot) = None;
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

    #[test]
    fn requests_are_mapped_back_to_the_case_instance() {
        let mut req = http::Request::new(b"a=1".to_vec());
        *req.uri_mut() = "/id/connect/token?x=1".parse().unwrap();
        let h = req.headers_mut();
        h.insert("host", "127.0.0.1:4000".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        let out = as_case_request(&req, "https://demodb.my.erp.net", "127.0.0.1:4000").unwrap();
        assert_eq!(out.uri(), "https://demodb.my.erp.net/id/connect/token?x=1");
        assert_eq!(out.headers().len(), 1);
        assert_eq!(out.body(), b"a=1");
        // Another Host, or an Accept the client chose, stays and is compared.
        req.headers_mut().insert("host", "elsewhere".parse().unwrap());
        req.headers_mut().insert("accept", "application/json".parse().unwrap());
        let out = as_case_request(&req, "https://demodb.my.erp.net", "127.0.0.1:4000").unwrap();
        assert_eq!(out.headers().len(), 3);
    }
}
