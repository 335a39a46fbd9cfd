//! What the adapter drivers ([`super::UreqDriver`], [`super::AsyncDriver`]) share: the mock ERP.net in
//! scripted mode and its interceptor, and the driver itself, written once over the [`Adapter`] trait that
//! each adapter's session implements through its public API only.
//!
//! Each case gets its own mock (a loopback port chosen by the OS) whose interceptor answers every request
//! from the case's script: the request is mapped back from the mock's origin to the case's instance
//! (`http://127.0.0.1:PORT/...` → `https://demodb.my.erp.net/...`, `Host` likewise) so the script's
//! expectations hold unchanged, then goes through the [`Wire`] of the action in progress, whose reply the
//! mock sends (a transport error: the connection is closed without an answer, or for `timeout` never
//! answered, so that the adapter's own timeout fires). The other way, the URLs the client builds from
//! the mock's origin (the authorization and end-session URLs) are shown with the case's, and the
//! endpoints of a discovery document the script answers with are pointed at the mock (all but `issuer`),
//! so that the client sends them there.
//!
//! How the steps map onto an adapter's session:
//! - `authorize`: `Session::start_login` (the OS random source); a case that pins its random bytes
//!   (`random = { hex }`) builds the pending login with them instead, with the core's
//!   `AuthorizationRequest::build` and the session's client, as an application with its own random source
//!   would.
//! - `callback`, `verify_front_channel`, `exchange`: one `Session::finish_login`, which runs in the
//!   background from the `callback` step on. A request it sends when no step's script can answer it (after
//!   the callback was accepted; the token request after the front channel was verified) waits at the mock
//!   for the next step's script, and the step ends there: so each step answers its part of the login, and
//!   its outcome is the login's end if it ended within it (a callback or front-channel rejection).
//! - `verify_id_token` with a token: a login of a second session (the verifier, with its own key cache,
//!   kept across steps) whose token endpoint the driver answers with the token: the adapters verify ID
//!   tokens when a login or a refresh receives them, and nowhere else. Without a token: the last login's
//!   claims, verified by its `exchange`.
//! - `discovery`: the client's discovery request (sent to the mock: it goes to the issuer, which is the
//!   case's) through the adapter's HTTP client, read with the core's `ProviderMetadata::parse` (what the
//!   blocking adapter's `HttpClient::discover` does), and applied as an application applies it: the
//!   session is built again with `ClientConfig::with_provider`'s configuration, over the same store.
//! - `revoke`: `Session::logout`; `end_session`: `ClientConfig::end_session_url` with the session's ID
//!   token; `timeout`: `Session::poll_timeout` / `Session::handle_timeout`; `api_call`: `Session::send`.
//! - `listen` (catalogue B9): the adapter's `RedirectListener`, bound on `http://127.0.0.1:0` with the
//!   login's redirect path, waits for the pending login's callback while a browser thread sends the raw
//!   requests over TCP one by one and reads each answer's status ([`browse`]); the callback's page comes
//!   once the driver replied (`LoginOutcome::LoggedIn`). A wait still going after the last request is
//!   ended: the blocking listener's `Cancel`, the async one's future dropped (`tokio::select!`).

use super::case::StoredTokens;
use super::core_driver::{
    CallbackData, Random, authorization_request, build_client, build_client_at, token_set,
    verification_answer, verification_callback, verification_request, view,
};
use super::driver::{
    AuthorizeParams, CallOutcome, Harness, Listened, Reply, Setup, StoreEvent, TokensView, Wire,
};
use super::message::Message;
use super::oidc::{Expect, OidcDriver};
use super::outcome::{describe, is_timeout, revocation};
use erpnet_oauth_core::lifecycle::{LoggedIn, Logout};
use erpnet_oauth_core::listener::ReceivedCallback;
use erpnet_oauth_core::{
    AuthorizationRequest, Callback, ClientConfig, EndSession, Error, IdTokenError, PendingLogin,
    ProviderMetadata, TokenSet,
};
use erpnet_oauth_mock::{Intercepted, MockConfig, MockErpNet};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The adapter's HTTP timeout when the case sets none: long enough never to fire on loopback.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a step waits for a login running in the background to end or to send a request no script
/// answers, and how long such a request waits for a step's script.
const SETTLE: Duration = Duration::from_secs(30);

/// The headers the HTTP clients (ureq, reqwest) add on their own, left out of comparisons.
pub(super) const TRANSPORT_HEADERS: &[&str] =
    &["user-agent", "content-length", "accept-encoding", "transfer-encoding", "connection"];

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// -------------------------------------------------------------------------------------------------------
// The scripted mock
// -------------------------------------------------------------------------------------------------------

/// One action's server side: its wire, the transport failures injected, and the late callers' gate.
#[derive(Debug, Clone)]
pub(super) struct Action {
    pub(super) wire: Wire,
    pub(super) injected: Arc<Mutex<Vec<String>>>,
    pub(super) gate: Arc<Gate>,
    /// Open-ended: a request beyond the script waits for the next action (a login's next step).
    open: bool,
    /// The answer to the next POST, instead of the wire's (a standalone verification's token endpoint).
    canned: Arc<Mutex<Option<http::Response<Vec<u8>>>>>,
}

impl Action {
    /// An action over `wire` with `count` concurrent callers.
    fn new(wire: &Wire, count: usize) -> Self {
        Action {
            wire: wire.clone(),
            injected: Arc::default(),
            gate: Arc::new(Gate::new(count.saturating_sub(1))),
            open: false,
            canned: Arc::default(),
        }
    }

    /// The transport failures injected so far.
    pub(super) fn injected(&self) -> Vec<String> {
        lock(&self.injected).clone()
    }
}

/// Holds the second and later concurrent callers until a renewal is on the wire or the first caller ended.
///
/// The first caller goes first; the others start while a renewal is on the wire (the mock holds the
/// token request's answer until they have entered the session, plus a few milliseconds) or when the first
/// caller ended. That is the order the core driver's round-robin produces, so the same scripts hold, and
/// the single flight is exercised for real: the late callers find the renewal in flight and wait for it.
#[derive(Debug)]
pub(super) struct Gate {
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
    pub(super) fn open(&self) -> bool {
        let was_open = std::mem::replace(&mut *lock(&self.open), true);
        self.opened.notify_all();
        !was_open
    }

    /// A late caller waits for the gate (bounded: a stuck first caller must not hang the run). Blocks the
    /// calling thread.
    pub(super) fn pass(&self) {
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

/// The action in progress and the requests waiting for one.
#[derive(Debug, Default)]
struct SlotState {
    action: Option<Action>,
    /// Requests waiting for an action that can answer them.
    parked: usize,
    /// The case is over: waiting requests are dropped.
    closing: bool,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

impl Slot {
    /// The action that answers the next request: the one in progress unless it is open-ended and its
    /// script is used up; otherwise the request waits for the next one.
    fn action_for_a_request(&self) -> Result<Action, Intercepted> {
        let deadline = Instant::now() + SETTLE;
        let mut state = lock(&self.state);
        loop {
            if state.closing {
                return Err(Intercepted::Drop);
            }
            if let Some(action) = &state.action
                && !(action.open && action.wire.exhausted())
            {
                return Ok(action.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Intercepted::Respond(text_response(
                    599,
                    "no step's script answered this request",
                )));
            }
            state.parked += 1;
            state = self.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
            state.parked -= 1;
        }
    }

    fn set(&self, action: Option<Action>) {
        lock(&self.state).action = action;
        self.changed.notify_all();
    }
}

/// The request as the case writes it: the mock's origin replaced by the case's, `Host` dropped (the
/// comparison takes it from the URI), and the HTTP client's default `Accept: */*` (ureq and reqwest add
/// it only to requests that have none: the adapters' Domain API calls) dropped, so that an `Accept` the
/// adapter sets is still compared.
pub(super) fn as_case_request(
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
        let default_accept = name == http::header::ACCEPT && value == "*/*";
        let own_host = name == http::header::HOST && value == mock_authority;
        if !default_accept && !own_host {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// A discovery document's endpoints pointed at the mock: every string member but `issuer` that starts
/// with the case's origin. Other answers are returned as they are.
fn discovery_at_the_mock(
    response: http::Response<Vec<u8>>,
    case_origin: &str,
    mock_origin: &str,
) -> http::Response<Vec<u8>> {
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice::<serde_json::Value>(response.body())
    else {
        return response;
    };
    for (name, value) in &mut doc {
        if let serde_json::Value::String(url) = value
            && name != "issuer"
            && let Some(rest) = url.strip_prefix(case_origin)
        {
            *url = format!("{mock_origin}{rest}");
        }
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    http::Response::from_parts(parts, serde_json::Value::Object(doc).to_string().into_bytes())
}

fn text_response(status: u16, text: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(text.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The mock's interceptor: every request goes through the wire of the action that answers it.
fn interceptor(
    slot: Arc<Slot>,
    posts: Arc<AtomicUsize>,
    case_origin: String,
    mock_origin: String,
    mock_authority: String,
) -> erpnet_oauth_mock::Interceptor {
    Arc::new(move |req: &http::Request<Vec<u8>>| {
        let action = match slot.action_for_a_request() {
            Ok(a) => a,
            Err(answer) => return answer,
        };
        let request = match as_case_request(req, &case_origin, &mock_authority) {
            Ok(r) => r,
            Err(e) => return Intercepted::Respond(text_response(599, &e)),
        };
        if req.method() == http::Method::POST {
            posts.fetch_add(1, Ordering::SeqCst);
            if let Some(answer) = lock(&action.canned).take() {
                return Intercepted::Respond(answer);
            }
            if req.uri().path().ends_with("/connect/token") {
                action.gate.renewal_on_the_wire();
            }
        }
        match action.wire.send(&request) {
            Reply::Response(r) if req.uri().path().ends_with("/.well-known/openid-configuration") => {
                Intercepted::Respond(discovery_at_the_mock(r, &case_origin, &mock_origin))
            }
            Reply::Response(r) => Intercepted::Respond(r),
            Reply::TransportError(reason) => {
                let timeout = is_timeout(&reason);
                lock(&action.injected).push(reason);
                if timeout { Intercepted::Hang } else { Intercepted::Drop }
            }
        }
    })
}

/// A case's scripted mock ERP.net, and the client configuration pointed at it.
#[derive(Debug)]
pub(super) struct ScriptedMock {
    /// The case's client, with the mock's URL as the instance (the issuer stays the case's).
    pub(super) client: ClientConfig,
    /// The adapter's HTTP timeout: the case's, or [`DEFAULT_TIMEOUT`].
    pub(super) timeout: Duration,
    slot: Arc<Slot>,
    /// POSTs answered so far (a login's code goes with its first).
    posts: Arc<AtomicUsize>,
    /// `https://demodb.my.erp.net`: where the case's API targets point.
    case_origin: String,
    /// `http://127.0.0.1:PORT`: where the session sends them.
    mock_origin: String,
    /// Dropped last: it stops the server.
    _mock: MockErpNet,
}

impl ScriptedMock {
    /// Starts the mock for `setup`. The inner `Err` is the case's client configuration refused, as the
    /// adapter's user would see it.
    pub(super) fn start(setup: &Setup) -> Harness<Result<ScriptedMock, String>> {
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
        let mut at_mock = setup.clone();
        at_mock.client.issuer = Some(case_client.issuer().to_owned());
        let client = build_client_at(&at_mock, &format!("{mock_origin}{path}"))?
            .map_err(|e| format!("the client configuration for the mock is refused: {e}"))?;
        let timeout = setup.client.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let slot = Arc::new(Slot::default());
        let posts = Arc::new(AtomicUsize::new(0));
        mock.set_interceptor(Some(interceptor(
            slot.clone(),
            posts.clone(),
            case_origin.clone(),
            mock_origin.clone(),
            mock_authority,
        )));
        Ok(Ok(ScriptedMock { client, timeout, slot, posts, case_origin, mock_origin, _mock: mock }))
    }

    /// The case's `request` (an API call, the discovery request), sent to the mock instead of the case's
    /// instance.
    fn to_mock<B: Clone>(&self, request: &http::Request<B>) -> Harness<http::Request<B>> {
        let target = request.uri().to_string();
        let rest =
            target.strip_prefix(&self.case_origin).filter(|r| r.starts_with('/')).ok_or_else(|| {
                format!("`{target}` is not on the instance: the adapter drivers send only to the mock")
            })?;
        let mut req = http::Request::new(request.body().clone());
        *req.method_mut() = request.method().clone();
        *req.uri_mut() =
            format!("{}{rest}", self.mock_origin).parse().map_err(|e| format!("`{target}`: {e}"))?;
        *req.headers_mut() = request.headers().clone();
        Ok(req)
    }

    /// A URL the client built on the mock's origin, on the case's.
    fn to_case_url(&self, url: &str) -> String {
        match url.strip_prefix(&self.mock_origin) {
            Some(rest) => format!("{}{rest}", self.case_origin),
            None => url.to_owned(),
        }
    }

    /// Starts an action with `count` callers: the mock answers from `wire` until [`Self::end`]; a request
    /// beyond the script is one the script did not expect.
    fn begin(&self, wire: &Wire, count: usize) -> Action {
        let action = Action::new(wire, count);
        self.slot.set(Some(action.clone()));
        action
    }

    /// Starts an open-ended action: a request beyond the script waits for the next action.
    fn begin_open(&self, wire: &Wire) -> Action {
        let action = Action { open: true, ..Action::new(wire, 1) };
        self.slot.set(Some(action.clone()));
        action
    }

    /// Starts an action whose first POST is answered with `answer`, the rest from `wire`.
    fn begin_canned(&self, wire: &Wire, answer: http::Response<Vec<u8>>) -> Action {
        let action = Action { canned: Arc::new(Mutex::new(Some(answer))), ..Action::new(wire, 1) };
        self.slot.set(Some(action.clone()));
        action
    }

    /// Ends the action in progress: requests wait for the next.
    fn end(&self) {
        self.slot.set(None);
    }

    /// POSTs answered so far.
    fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    /// Whether a request is waiting that the action in progress (if any) cannot answer.
    fn request_waiting(&self) -> bool {
        let state = lock(&self.slot.state);
        state.parked > 0 && state.action.as_ref().is_none_or(|a| a.wire.exhausted())
    }

    /// The case is over: waiting requests are dropped, and later ones too.
    fn close(&self) {
        lock(&self.slot.state).closing = true;
        self.slot.changed.notify_all();
    }
}

// -------------------------------------------------------------------------------------------------------
// The adapter's session, and the driver over it
// -------------------------------------------------------------------------------------------------------

/// An adapter's session, through its public API, with blocking calls (see the drivers).
pub(super) trait Adapter: Send + Sync + 'static {
    /// The session's client configuration.
    fn client(&self) -> ClientConfig;
    /// `Session::start_login`.
    fn start_login(&self, request: AuthorizationRequest) -> Result<PendingLogin, Error>;
    /// `Session::finish_login`.
    fn finish_login(&self, pending: PendingLogin, callback: Callback<'_>) -> Result<LoggedIn, Error>;
    /// `Session::logout`.
    fn logout(&self) -> Result<Logout, Error>;
    /// `Session::poll_timeout`.
    fn poll_timeout(&self) -> Option<SystemTime>;
    /// `Session::handle_timeout`.
    fn handle_timeout(&self) -> Result<(), Error>;
    /// `Session::tokens`.
    fn tokens(&self) -> Option<TokenSet>;
    /// The adapter's discovery: sends `request` (the client's discovery request, sent to the mock) and
    /// reads the document for the client's issuer.
    fn discover(&self, request: http::Request<Vec<u8>>) -> Result<ProviderMetadata, Error>;
    /// The session built again for `client`, over the same store, clock and settings.
    fn rebuild(&self, client: ClientConfig) -> Harness<Arc<dyn Adapter>>;
    /// Another session for the same client and clock, with a store and settings of its own.
    fn verifier(&self) -> Harness<Arc<dyn Adapter>>;
    /// `count` concurrent `Session::send`s of `request` while `action` answers.
    fn api_calls(
        &self,
        request: http::Request<Vec<u8>>,
        count: usize,
        action: &Action,
    ) -> Harness<Vec<CallOutcome>>;
    /// Another process writes the store (`None`: deletes it), bypassing the session.
    fn write_store(&self, tokens: Option<&TokenSet>) -> Harness<()>;
    /// What the session asked its store to do since the last call.
    fn take_store_events(&self) -> Vec<StoreEvent>;
    /// The adapter's `RedirectListener` bound on `redirect_uri` waits for `pending`'s callback while
    /// [`browse`] sends `requests` to it; the wait's callback is answered as a logged-in login, and a wait
    /// still going after the last request is ended (cancelled).
    fn listen(&self, redirect_uri: &str, pending: &PendingLogin, requests: &[Vec<u8>]) -> Harness<Listened>;
}

/// How long the browser waits for the listener's answer to one request (longer than a listener's
/// deadline for a connection), and how long a listen step's wait may last.
pub(super) const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser's side of a listen step: each request on a connection of its own to `addr`, sent once the
/// previous one was answered, and its answer's status read (0: none). It stops after the answer that came
/// once the wait had ended (`ended`, set by the waiting side before it answers the callback): that
/// request brought the callback. Returns the statuses and the index of that request.
pub(super) fn browse(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    ended: &AtomicBool,
) -> (Vec<u16>, Option<usize>) {
    let mut statuses = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        if ended.load(Ordering::SeqCst) {
            break;
        }
        statuses.push(answer_status(addr, request));
        if ended.load(Ordering::SeqCst) {
            return (statuses, Some(i));
        }
    }
    (statuses, None)
}

/// Sends `request` on a new connection and reads the status of the answer (0: none came).
fn answer_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, LISTEN_TIMEOUT) else { return 0 };
    let _ = stream.set_read_timeout(Some(LISTEN_TIMEOUT));
    let _ = stream.set_write_timeout(Some(LISTEN_TIMEOUT));
    // A listener may answer (and close) before the whole request is written: the answer still counts.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    match line.split(' ').collect::<Vec<_>>().as_slice() {
        ["HTTP/1.1", status, ..] => status.parse().unwrap_or(0),
        _ => 0,
    }
}

/// What a listen step found, from the browser's statuses, the request that ended the wait, and the wait's
/// end (`None`: the driver ended it after the last request).
pub(super) fn listened(
    (statuses, ended_at): (Vec<u16>, Option<usize>),
    waited: Option<Result<ReceivedCallback, Error>>,
) -> Harness<Listened> {
    match (waited, ended_at) {
        (Some(Ok(callback)), Some(at)) => Ok(Listened { statuses, callback: Some((at, callback)) }),
        (None | Some(Err(Error::Cancelled)), _) => Ok(Listened { statuses, callback: None }),
        (Some(Ok(callback)), None) => Err(format!("the wait returned {callback:?}, but no request ended it")),
        (Some(Err(e)), _) => Err(format!("the wait ended with {e:?}")),
    }
}

/// How an adapter driver starts a case's session: the setup, the mock and the case's clock.
pub(super) type Start = fn(&Setup, &ScriptedMock, Arc<Mutex<SystemTime>>) -> Harness<Arc<dyn Adapter>>;

/// A login in progress through the adapter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few per case
enum LoginSlot {
    /// Built, waiting for its callback.
    Pending(PendingLogin),
    /// `finish_login` running in the background, and the POSTs answered before it started.
    Running { job: JoinHandle<Result<LoggedIn, Error>>, posts_at: usize },
    /// Ended before its `exchange` step: the result, and whether the code was sent.
    Ended { result: Result<LoggedIn, Error>, code_sent: bool },
}

/// A login with no accepted callback, or whose code was already sent: nothing to exchange.
const NO_CODE: &str = "NoCodeToExchange";

/// One case's session through an adapter.
struct AdapterRun {
    session: Arc<dyn Adapter>,
    verifier: Arc<dyn Adapter>,
    now: Arc<Mutex<SystemTime>>,
    /// The case's random bytes, when it pins them (`random = { hex }`).
    random: Option<Random>,
    logins: BTreeMap<String, LoginSlot>,
    last_login: Option<LoggedIn>,
    mock: ScriptedMock,
}

impl std::fmt::Debug for AdapterRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterRun")
            .field("logins", &self.logins)
            .field("mock", &self.mock)
            .finish_non_exhaustive()
    }
}

impl Drop for AdapterRun {
    fn drop(&mut self) {
        // A login still waiting for a step (the case ended after its callback) ends: its request is dropped.
        self.mock.close();
        for (_, slot) in std::mem::take(&mut self.logins) {
            if let LoginSlot::Running { job, .. } = slot {
                let _ended = job.join();
            }
        }
    }
}

impl AdapterRun {
    /// Waits until the background login `job` ended, or sent a request no script in progress answers.
    fn settle(&self, job: &JoinHandle<Result<LoggedIn, Error>>) -> Harness<()> {
        let deadline = Instant::now() + SETTLE;
        while !job.is_finished() && !self.mock.request_waiting() {
            if Instant::now() > deadline {
                return Err("the login neither ended nor sent a request".to_owned());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Waits for the background login `job` to end.
    fn join(job: JoinHandle<Result<LoggedIn, Error>>) -> Harness<Result<LoggedIn, Error>> {
        let deadline = Instant::now() + SETTLE;
        while !job.is_finished() {
            if Instant::now() > deadline {
                return Err("the login did not end".to_owned());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        job.join().map_err(|_| "the login's thread panicked".to_owned())
    }

    /// Carries login `login` on while `action` answers; `open`: until it ends or sends a request beyond
    /// the script. Returns its end, if it ended.
    fn carry_login(&mut self, login: &str, open: bool) -> Harness<Option<(Result<LoggedIn, Error>, bool)>> {
        match self.logins.remove(login) {
            Some(LoginSlot::Running { job, posts_at }) => {
                if open {
                    self.settle(&job)?;
                    if !job.is_finished() {
                        self.logins.insert(login.to_owned(), LoginSlot::Running { job, posts_at });
                        return Ok(None);
                    }
                }
                let result = Self::join(job)?;
                Ok(Some((result, self.mock.posts() > posts_at)))
            }
            Some(LoginSlot::Ended { result, code_sent }) => Ok(Some((result, code_sent))),
            Some(pending @ LoginSlot::Pending(_)) => {
                self.logins.insert(login.to_owned(), pending);
                Err(NO_CODE.to_owned())
            }
            None => Err(NO_CODE.to_owned()),
        }
    }
}

/// The driver of an adapter: see the module docs.
pub struct AdapterDriver {
    name: &'static str,
    start: Start,
    run: Option<AdapterRun>,
}

impl std::fmt::Debug for AdapterDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterDriver").field("name", &self.name).field("run", &self.run).finish()
    }
}

impl AdapterDriver {
    /// A driver named `name` whose sessions `start` builds.
    pub(super) fn new(name: &'static str, start: Start) -> Self {
        AdapterDriver { name, start, run: None }
    }

    fn run(&mut self) -> Harness<&mut AdapterRun> {
        self.run.as_mut().ok_or_else(|| "no case started".to_owned())
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    pub(super) fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>> {
        self.run = None;
        // The configuration the user would give: refused here exactly as the adapter's user sees it.
        let mock = match ScriptedMock::start(setup)? {
            Ok(m) => m,
            Err(refused) => return Ok(Err(refused)),
        };
        let now = Arc::new(Mutex::new(setup.now));
        let session = (self.start)(setup, &mock, now.clone())?;
        let verifier = session.verifier()?;
        let random = match &setup.random.hex {
            Some(_) => Some(Random::from_spec(&setup.random)?),
            None => None,
        };
        self.run = Some(AdapterRun {
            session,
            verifier,
            now,
            random,
            logins: BTreeMap::new(),
            last_login: None,
            mock,
        });
        Ok(Ok(()))
    }

    pub(super) fn authorize(&mut self, login: &str, p: &AuthorizeParams) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let req = authorization_request(p)?;
        let built = match run.random.as_mut() {
            Some(bytes) => req.build(&run.session.client(), bytes).map_err(Error::from),
            None => run.session.start_login(req),
        };
        Ok(match built {
            Ok(pending) => {
                let url = run.mock.to_case_url(pending.authorize_url());
                run.logins.insert(login.to_owned(), LoginSlot::Pending(pending));
                Ok(url)
            }
            Err(e) => Err(describe(&e, &[])),
        })
    }

    pub(super) fn callback(&mut self, login: &str, request: &Message) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let data = CallbackData::of(request)?;
        let pending = match run.logins.remove(login) {
            Some(LoginSlot::Pending(p)) => p,
            other => {
                // The pending login was moved into an earlier `finish_login`: nothing to handle a second
                // callback with.
                if let Some(slot) = other {
                    run.logins.insert(login.to_owned(), slot);
                }
                return Ok(Err("NoPendingLogin".to_owned()));
            }
        };
        let session = run.session.clone();
        let posts_at = run.mock.posts();
        let job = std::thread::spawn(move || session.finish_login(pending, data.as_callback()));
        run.settle(&job)?;
        if !job.is_finished() {
            run.logins.insert(login.to_owned(), LoginSlot::Running { job, posts_at });
            return Ok(Ok(()));
        }
        Ok(match AdapterRun::join(job)? {
            Err(Error::Callback(e)) => Err(format!("{e:?}")),
            result => {
                let code_sent = run.mock.posts() > posts_at;
                run.logins.insert(login.to_owned(), LoginSlot::Ended { result, code_sent });
                Ok(())
            }
        })
    }

    pub(super) fn listen(&mut self, login: &str, requests: &[Vec<u8>]) -> Harness<Listened> {
        let run = self.run()?;
        let Some(LoginSlot::Pending(pending)) = run.logins.get(login) else {
            return Err(format!("login `{login}` is not waiting for its callback"));
        };
        // The listener serves the login's redirect path on a loopback port the OS chooses.
        let path = url::Url::parse(pending.redirect_uri())
            .map_err(|e| format!("the redirect URI: {e}"))?
            .path()
            .to_owned();
        run.session.listen(&format!("http://127.0.0.1:0{path}"), pending, requests)
    }

    pub(super) fn exchange(&mut self, login: &str, wire: &Wire) -> Harness<Result<TokensView, String>> {
        let run = self.run()?;
        let action = run.mock.begin(wire, 1);
        let ended = run.carry_login(login, false);
        run.mock.end();
        let result = match ended {
            Err(e) if e == NO_CODE => return Ok(Err(e)),
            Err(e) => return Err(e),
            Ok(None) => return Err("the login stopped before its end".to_owned()),
            Ok(Some((result, _))) => result,
        };
        Ok(match result {
            Ok(done) => {
                let tokens = view(&done.tokens);
                run.last_login = Some(done);
                Ok(tokens)
            }
            Err(e) => Err(describe(&e, &action.injected())),
        })
    }

    pub(super) fn api_calls(
        &mut self,
        request: &http::Request<()>,
        count: usize,
        wire: &Wire,
    ) -> Harness<Vec<CallOutcome>> {
        let run = self.run()?;
        let (parts, ()) = run.mock.to_mock(request)?.into_parts();
        let req = http::Request::from_parts(parts, Vec::new());
        let action = run.mock.begin(wire, count);
        let outcomes = run.session.api_calls(req, count, &action);
        run.mock.end();
        outcomes
    }

    pub(super) fn tick(&mut self, now: SystemTime) {
        if let Some(run) = self.run.as_ref() {
            *lock(&run.now) = now;
        }
    }

    pub(super) fn next_timeout(&mut self) -> Option<SystemTime> {
        self.run.as_ref().and_then(|r| r.session.poll_timeout())
    }

    pub(super) fn timeout(&mut self, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let action = run.mock.begin(wire, 1);
        let result = run.session.handle_timeout();
        run.mock.end();
        Ok(result.map_err(|e| describe(&e, &action.injected())))
    }

    pub(super) fn shared_store(&mut self, tokens: Option<&StoredTokens>, now: SystemTime) -> Harness<()> {
        let run = self.run()?;
        run.session.write_store(tokens.map(|t| token_set(t, now)).as_ref())
    }

    pub(super) fn tokens(&self) -> Option<TokensView> {
        self.run.as_ref().and_then(|r| r.session.tokens()).map(|t| view(&t))
    }

    pub(super) fn take_store_events(&mut self) -> Vec<StoreEvent> {
        self.run.as_ref().map(|r| r.session.take_store_events()).unwrap_or_default()
    }
}

impl OidcDriver for AdapterDriver {
    fn discovery(&mut self, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        // The discovery request goes to the issuer, which is the case's: sent to the mock instead.
        let request = run.mock.to_mock(&run.session.client().discovery_request())?;
        let action = run.mock.begin(wire, 1);
        let found = run.session.discover(request);
        run.mock.end();
        let meta = match found {
            Ok(m) => m,
            Err(e) => return Ok(Err(describe(&e, &action.injected()))),
        };
        match run.session.client().with_provider(&meta) {
            Ok(client) => {
                run.session = run.session.rebuild(client)?;
                run.verifier = run.session.verifier()?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("{e:?}"))),
        }
    }

    fn iss_parameter_supported(&self) -> Harness<bool> {
        self.run
            .as_ref()
            .map(|r| r.session.client().iss_parameter_supported())
            .ok_or_else(|| "no case started".to_owned())
    }

    fn verify_id_token(
        &mut self,
        token: Option<&str>,
        expect: &Expect,
        wire: &Wire,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let Some(token) = token else {
            // The last login's ID token was verified when it finished; nothing is sent.
            let login = run.last_login.as_ref().ok_or_else(|| "no login has finished".to_owned())?;
            return Ok(login
                .claims
                .as_ref()
                .map(|c| c.sub.clone())
                .ok_or_else(|| format!("{:?}", IdTokenError::Missing)));
        };
        let pending = run
            .verifier
            .start_login(verification_request(expect.nonce.as_deref()))
            .map_err(|e| format!("the verifying login: {e}"))?;
        let answer = verification_answer(token, expect.access_token.as_deref());
        let action = run.mock.begin_canned(wire, answer);
        let callback = verification_callback(run.verifier.client().issuer());
        let result = run.verifier.finish_login(pending, Callback::Query(&callback));
        run.mock.end();
        let unused = lock(&action.canned).is_some();
        drop(run.verifier.take_store_events());
        match result {
            Ok(login) => {
                Ok(login.claims.map(|c| c.sub).ok_or_else(|| format!("{:?}", IdTokenError::Missing)))
            }
            Err(e) if !unused => Ok(Err(describe(&e, &action.injected()))),
            Err(e) => Err(format!("the verifying login ended before its token request: {e:?}")),
        }
    }

    fn verify_front_channel(&mut self, login: &str, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let action = run.mock.begin_open(wire);
        let ended = run.carry_login(login, true);
        run.mock.end();
        let ended = match ended {
            Err(e) if e == NO_CODE => return Ok(Err(e)),
            Err(e) => return Err(e),
            Ok(None) => return Ok(Ok(())),
            Ok(Some(ended)) => ended,
        };
        match ended {
            // Rejected before the exchange: the login ends and its code is never sent.
            (Err(e), false) => Ok(Err(describe(&e, &action.injected()))),
            (result, code_sent) => {
                run.logins.insert(login.to_owned(), LoginSlot::Ended { result, code_sent });
                Ok(Ok(()))
            }
        }
    }

    fn revoke(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        let run = self.run()?;
        let action = run.mock.begin(wire, 1);
        let result = run.session.logout();
        run.mock.end();
        run.last_login = None;
        revocation(result, &action.injected())
    }

    fn end_session(
        &mut self,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let hint = run.session.tokens().and_then(|t| t.id_token);
        let logout = EndSession { id_token_hint: hint.as_ref(), post_logout_redirect_uri, state };
        Ok(match run.session.client().end_session_url(&logout) {
            Ok(url) => Ok(run.mock.to_case_url(&url)),
            Err(e) => Err(format!("{e:?}")),
        })
    }
}

/// Implements [`super::Driver`] for a newtype around [`AdapterDriver`].
macro_rules! adapter_driver {
    ($driver:ident) => {
        impl $crate::conformance::Driver for $driver {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn transport_headers(&self) -> &[&'static str] {
                $crate::conformance::adapter::TRANSPORT_HEADERS
            }
            fn start(
                &mut self,
                setup: &$crate::conformance::Setup,
            ) -> $crate::conformance::Harness<Result<(), String>> {
                self.0.start(setup)
            }
            fn authorize(
                &mut self,
                login: &str,
                params: &$crate::conformance::AuthorizeParams,
            ) -> $crate::conformance::Harness<Result<String, String>> {
                self.0.authorize(login, params)
            }
            fn callback(
                &mut self,
                login: &str,
                request: &$crate::conformance::Message,
            ) -> $crate::conformance::Harness<Result<(), String>> {
                self.0.callback(login, request)
            }
            fn listen(
                &mut self,
                login: &str,
                requests: &[Vec<u8>],
            ) -> $crate::conformance::Harness<$crate::conformance::Listened> {
                self.0.listen(login, requests)
            }
            fn exchange(
                &mut self,
                login: &str,
                wire: &$crate::conformance::Wire,
            ) -> $crate::conformance::Harness<Result<$crate::conformance::TokensView, String>> {
                self.0.exchange(login, wire)
            }
            fn api_calls(
                &mut self,
                request: &http::Request<()>,
                count: usize,
                wire: &$crate::conformance::Wire,
            ) -> $crate::conformance::Harness<Vec<$crate::conformance::CallOutcome>> {
                self.0.api_calls(request, count, wire)
            }
            fn tick(&mut self, now: std::time::SystemTime) {
                self.0.tick(now)
            }
            fn next_timeout(&mut self) -> Option<std::time::SystemTime> {
                self.0.next_timeout()
            }
            fn timeout(
                &mut self,
                wire: &$crate::conformance::Wire,
            ) -> $crate::conformance::Harness<Result<(), String>> {
                self.0.timeout(wire)
            }
            fn shared_store(
                &mut self,
                tokens: Option<&$crate::conformance::case::StoredTokens>,
                now: std::time::SystemTime,
            ) -> $crate::conformance::Harness<()> {
                self.0.shared_store(tokens, now)
            }
            fn tokens(&self) -> Option<$crate::conformance::TokensView> {
                self.0.tokens()
            }
            fn take_store_events(&mut self) -> Vec<$crate::conformance::StoreEvent> {
                self.0.take_store_events()
            }
            fn oidc(&mut self) -> Option<&mut dyn $crate::conformance::oidc::OidcDriver> {
                Some(&mut self.0)
            }
        }
    };
}
pub(super) use adapter_driver;

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_discovery_document_points_its_endpoints_at_the_mock_but_not_its_issuer() {
        let doc = r#"{"issuer":"https://demodb.my.erp.net/id","jwks_uri":"https://demodb.my.erp.net/id/keys","token_endpoint":"https://elsewhere.example/token","response_types_supported":["code"]}"#;
        let r = http::Response::new(doc.as_bytes().to_vec());
        let out = discovery_at_the_mock(r, "https://demodb.my.erp.net", "http://127.0.0.1:4000");
        let v: serde_json::Value = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(v["issuer"], "https://demodb.my.erp.net/id");
        assert_eq!(v["jwks_uri"], "http://127.0.0.1:4000/id/keys");
        assert_eq!(v["token_endpoint"], "https://elsewhere.example/token");
        // Not JSON: as it came.
        let r = http::Response::new(b"not found".to_vec());
        assert_eq!(discovery_at_the_mock(r, "https://demodb.my.erp.net", "http://x").body(), b"not found");
    }
}
