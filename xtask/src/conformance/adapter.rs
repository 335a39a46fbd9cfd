//! What the adapter drivers ([`super::UreqDriver`], [`super::AsyncDriver`]) share: the mock ERP.net in
//! scripted mode, its interceptor, the mapping of requests between the case's instance and the mock, the
//! late callers' gate, the scripted transport failures, and the steps no adapter session performs.
//!
//! Each case gets its own mock (a loopback port chosen by the OS) whose interceptor answers every request
//! from the case's script: the request is mapped back from the mock's origin to the case's instance
//! (`http://127.0.0.1:PORT/...` → `https://demodb.my.erp.net/...`, `Host` likewise) so the script's
//! expectations hold unchanged, then goes through the [`Wire`] of the action in progress, whose reply the
//! mock sends (a transport error: the connection is closed without an answer, or for `timeout` never
//! answered, so that the adapter's own timeout fires).

use super::core_driver::{build_client, build_client_at};
use super::driver::{Harness, Reply, Setup, Wire};
use super::oidc::{Expect, OidcDriver};
use erpnet_oauth_core::ClientConfig;
use erpnet_oauth_mock::{Intercepted, MockConfig, MockErpNet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The adapter's HTTP timeout when the case sets none: long enough never to fire on loopback.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an adapter session cannot run a step kind.
pub(super) const NO_TIMER: &str = "the Session has no timer entry point (poll_timeout / handle_timeout): it \
                                   renews on use only, which E8-refresh-within-the-skew and E8-custom-skew \
                                   check";
pub(super) const NO_OIDC: &str = "the Session offers no discovery, ID token verification or end session of \
                                  its own (it revokes in logout: the revoke steps run)";
pub(super) const NO_LOGIN: &str = "login steps are not driven through the adapter";

/// The step kinds an adapter session does not perform, and why (see the drivers' module docs).
pub(super) fn unsupported(step: &str) -> Option<&'static str> {
    match step {
        "timeout" => Some(NO_TIMER),
        "discovery" | "verify_id_token" | "verify_front_channel" | "end_session" => Some(NO_OIDC),
        "authorize" | "callback" | "exchange" => Some(NO_LOGIN),
        _ => None,
    }
}

/// The headers the HTTP clients (ureq, reqwest) add on their own, left out of comparisons.
pub(super) const TRANSPORT_HEADERS: &[&str] =
    &["user-agent", "content-length", "accept-encoding", "transfer-encoding", "connection"];

/// The action in progress, read by the mock's interceptor.
pub(super) type Slot = Arc<Mutex<Option<Action>>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One action's server side: its wire, the transport failures injected, and the late callers' gate.
#[derive(Debug, Clone)]
pub(super) struct Action {
    pub(super) wire: Wire,
    pub(super) injected: Arc<Mutex<Vec<String>>>,
    pub(super) gate: Arc<Gate>,
}

impl Action {
    /// An action over `wire` with `count` concurrent callers.
    pub(super) fn new(wire: &Wire, count: usize) -> Self {
        Action {
            wire: wire.clone(),
            injected: Arc::default(),
            gate: Arc::new(Gate::new(count.saturating_sub(1))),
        }
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

/// Whether a scripted transport failure is a timeout (the mock then never answers).
pub(super) fn is_timeout(reason: &str) -> bool {
    reason.contains("timeout") || reason.contains("timed out")
}

/// The scripted transport failure as the core driver reports it, `Transport("<reason>")`, when the last
/// one injected is of the kind the adapter saw (`timeout`: the adapter timed out; otherwise: the
/// connection failed).
pub(super) fn scripted(injected: &[String], timeout: bool) -> Option<String> {
    injected.last().filter(|r| is_timeout(r) == timeout).map(|r| format!("Transport({r:?})"))
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

fn text_response(status: u16, text: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(text.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The mock's interceptor: every request goes through the action's wire.
fn interceptor(
    driver: &'static str,
    slot: Slot,
    case_origin: String,
    mock_authority: String,
) -> erpnet_oauth_mock::Interceptor {
    Arc::new(move |req: &http::Request<Vec<u8>>| {
        let Some(action) = lock(&slot).clone() else {
            return Intercepted::Respond(text_response(
                599,
                &format!("the {driver} driver has no action in progress"),
            ));
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

/// A case's scripted mock ERP.net, and the client configuration pointed at it.
#[derive(Debug)]
pub(super) struct ScriptedMock {
    /// The case's client, with the mock's URL as the instance (the issuer stays the case's).
    pub(super) client: ClientConfig,
    /// The adapter's HTTP timeout: the case's, or [`DEFAULT_TIMEOUT`].
    pub(super) timeout: Duration,
    slot: Slot,
    /// `https://demodb.my.erp.net`: where the case's API targets point.
    case_origin: String,
    /// `http://127.0.0.1:PORT`: where the session sends them.
    mock_origin: String,
    /// Drop it after the session: it stops the server.
    _mock: MockErpNet,
}

impl ScriptedMock {
    /// Starts the mock for `setup`, answering for driver `driver`. The inner `Err` is the case's client
    /// configuration refused, as the adapter's user would see it.
    pub(super) fn start(driver: &'static str, setup: &Setup) -> Harness<Result<ScriptedMock, String>> {
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
        let slot: Slot = Arc::default();
        mock.set_interceptor(Some(interceptor(driver, slot.clone(), case_origin.clone(), mock_authority)));
        Ok(Ok(ScriptedMock { client, timeout, slot, case_origin, mock_origin, _mock: mock }))
    }

    /// The case's API call `request`, sent to the mock instead of the case's instance.
    pub(super) fn to_mock(&self, request: &http::Request<()>) -> Harness<http::Request<Vec<u8>>> {
        let target = request.uri().to_string();
        let rest =
            target.strip_prefix(&self.case_origin).filter(|r| r.starts_with('/')).ok_or_else(|| {
                format!("`{target}` is not on the instance: the adapter drivers send only to the mock")
            })?;
        let mut req = http::Request::new(Vec::new());
        *req.method_mut() = request.method().clone();
        *req.uri_mut() =
            format!("{}{rest}", self.mock_origin).parse().map_err(|e| format!("`{target}`: {e}"))?;
        *req.headers_mut() = request.headers().clone();
        Ok(req)
    }

    /// Starts an action: the mock answers from `wire` until [`Self::end`].
    pub(super) fn begin(&self, wire: &Wire, count: usize) -> Action {
        let action = Action::new(wire, count);
        *lock(&self.slot) = Some(action.clone());
        action
    }

    /// Ends the action in progress: the mock answers 599 until the next.
    pub(super) fn end(&self) {
        *lock(&self.slot) = None;
    }
}

/// An adapter driver's one OpenID Connect step: `revoke`, run as the session's logout (revoke the refresh
/// token, then forget the tokens and clear the store whatever the server said).
pub(super) trait Logout {
    /// Logs out over `wire`: the revocation's error (as the cases write errors) and whether it is
    /// retryable.
    fn logout(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>>;
}

/// The other OpenID Connect steps are [`unsupported`]: the runner skips their cases before any runs.
impl<T: Logout> OidcDriver for T {
    fn discovery(&mut self, _wire: &Wire) -> Harness<Result<(), String>> {
        Err(NO_OIDC.to_owned())
    }
    fn iss_parameter_supported(&self) -> Harness<bool> {
        Err(NO_OIDC.to_owned())
    }
    fn verify_id_token(
        &mut self,
        _token: Option<&str>,
        _expect: &Expect,
        _wire: &Wire,
    ) -> Harness<Result<String, String>> {
        Err(NO_OIDC.to_owned())
    }
    fn verify_front_channel(&mut self, _login: &str, _wire: &Wire) -> Harness<Result<(), String>> {
        Err(NO_OIDC.to_owned())
    }
    fn revoke(&mut self, wire: &Wire) -> Harness<Result<(), (String, bool)>> {
        self.logout(wire)
    }
    fn end_session(
        &mut self,
        _post_logout_redirect_uri: Option<&str>,
        _state: Option<&str>,
    ) -> Harness<Result<String, String>> {
        Err(NO_OIDC.to_owned())
    }
}

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
    fn a_scripted_failure_is_reported_only_for_its_kind() {
        let timed_out = vec!["connection reset".to_owned(), "timeout".to_owned()];
        assert_eq!(scripted(&timed_out, true).as_deref(), Some(r#"Transport("timeout")"#));
        assert_eq!(scripted(&timed_out, false), None);
        assert_eq!(scripted(&[], true), None);
        let dropped = vec!["connection reset".to_owned()];
        assert_eq!(scripted(&dropped, false).as_deref(), Some(r#"Transport("connection reset")"#));
    }
}
