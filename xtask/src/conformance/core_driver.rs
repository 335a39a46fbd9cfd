//! The core, fed directly: the core's own lifecycle operations ([`erpnet_oauth_core::lifecycle`]), the
//! ones both adapters' sessions drive, carried out here with no I/O at all. Requests go to the [`Wire`] as
//! the core builds them and the wire's canned answers come straight back; the store is a value in memory
//! that other processes may write (`shared_store` steps); the clock and the random bytes are the case's.
//!
//! This driver plays the adapter's part as the lifecycle's contract describes it, and nothing more:
//! - [`Step::Send`]: the wire's answer, or for a scripted transport failure the error an adapter's HTTP
//!   client reports for it (`Timeout` for a `timeout`, `Io` otherwise). The body limits of the core's
//!   [`HttpOptions`] (the adapters' defaults) are applied as an adapter applies them (catalogue H3): an
//!   answer beyond the limit for its [`Target`] is `BodyTooLarge`.
//! - The store steps: lock, read, write, delete the in-memory store; [`StoreEvent`]s record the writes.
//! - [`Step::Renew`]: the renewal runs as a task of its own, owned by the caller that took it.
//! - Concurrent callers (`count`) are tasks stepped round-robin, one step each per round, in order: the
//!   first caller takes the renewal, the others wait for it ([`Step::Wait`]) and step again once it ended.
//!
//! A `listen` step (catalogue B9) feeds each raw request to the pending login's `CallbackFilter`, its head
//! read with the core's `listener::parse_head`, as the adapters' listeners read and judge theirs.
//!
//! A login is one [`FinishLogin`], started by the `callback` step with the browser's callback and carried
//! through the `verify_front_channel` and `exchange` steps: the steps before the exchange stop at a request
//! their wire has no exchange left for (it belongs to the next step). A standalone `verify_id_token` is a
//! login of its own on a second manager (the verifier, with its own keys), whose token endpoint answers
//! with the ID token to verify: ID tokens are verified by logins and refreshes only, in the core as in the
//! adapters.

use super::case::{RandomSpec, StoredTokens};
use super::driver::{
    AuthorizeParams, CallOutcome, Driver, Harness, Listened, Reply, Setup, StoreEvent, TokensView, Wire,
};
use super::message::Message;
use super::outcome::{call_outcome, describe, transport_error};
use erpnet_oauth_core::lifecycle::{
    FinishLogin, HandleTimeout, Input, LoggedIn, Operation, Renewal as RenewalOp, SendRequest, Step, Target,
};
use erpnet_oauth_core::listener::{self, ReceivedCallback};
use erpnet_oauth_core::{
    AccessToken, AuthMethod, AuthorizationRequest, Callback, CallbackFilter, ClientConfig, ClientSecret,
    Error, HttpOptions, IdToken, ListenerRequest, ManagerOptions, PendingLogin, RandomError, RandomSource,
    RefreshToken, Renewal, ResponseMode, ResponseType, Scopes, SeededRandom, TokenManager, TokenSet,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod oidc;

/// Runs cases against `erpnet-oauth-core` with no I/O at all.
#[derive(Debug, Default)]
pub struct CoreDriver {
    run: Option<Run>,
}

#[derive(Debug)]
struct Run {
    rng: Random,
    /// The login's manager, its store, the transport.
    core: Core,
    /// Standalone ID token verification (see the module docs).
    verifier: Core,
    logins: BTreeMap<String, LoginSlot>,
    /// The last finished login, for `verify_id_token` without a token.
    last_login: Option<LoggedIn>,
}

/// A login in progress.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few per case
enum LoginSlot {
    /// Built, waiting for its callback.
    Pending(PendingLogin),
    /// Its callback was accepted: the operation, and the number of POSTs sent before it started (its code
    /// is sent with the first POST after).
    Finishing { task: Task<FinishLogin>, posts_at: usize },
    /// Ended before its `exchange` step: the result, and whether the code was sent.
    Ended { result: Result<LoggedIn, Error>, code_sent: bool },
}

/// The case's random bytes: a seeded stream, or fixed bytes that run out.
#[derive(Debug)]
pub(super) enum Random {
    Seeded(SeededRandom),
    Fixed(Vec<u8>),
}

impl RandomSource for Random {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        match self {
            Random::Seeded(s) => s.fill_bytes(dest),
            Random::Fixed(bytes) if bytes.len() >= dest.len() => {
                let rest = bytes.split_off(dest.len());
                dest.copy_from_slice(bytes);
                *bytes = rest;
                Ok(())
            }
            Random::Fixed(_) => Err(RandomError("the case's random bytes are used up".to_owned())),
        }
    }
}

impl Random {
    /// The case's random source.
    pub(super) fn from_spec(spec: &RandomSpec) -> Harness<Random> {
        Ok(match (&spec.hex, spec.seed) {
            (Some(h), _) => Random::Fixed(hex(h)?),
            (None, seed) => Random::Seeded(SeededRandom::new(seed.unwrap_or(0))),
        })
    }
}

impl CoreDriver {
    /// A driver with no case started.
    pub fn new() -> Self {
        CoreDriver::default()
    }

    fn run(&mut self) -> Harness<&mut Run> {
        self.run.as_mut().ok_or_else(|| "no case started".to_owned())
    }
}

pub(super) fn unix(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

pub(super) fn view(t: &TokenSet) -> TokensView {
    TokensView {
        access_token: t.access_token.secret().to_owned(),
        refresh_token: t.refresh_token.as_ref().map(|r| r.secret().to_owned()),
        id_token: t.id_token.as_ref().map(|i| i.secret().to_owned()),
        expires_at: t.expires_at.and_then(unix),
        scopes: t.scopes.iter().map(str::to_owned).collect(),
    }
}

pub(super) fn hex(s: &str) -> Harness<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err("random.hex has an odd number of digits".to_owned());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("xx"), 16).map_err(|e| format!("random.hex: {e}"))
        })
        .collect()
}

/// The case's client configuration as the core builds it.
pub(super) fn build_client(setup: &Setup) -> Harness<Result<ClientConfig, String>> {
    build_client_at(setup, &setup.client.instance)
}

/// The case's client configuration with another instance URL (an adapter's driver points it at a
/// local server).
pub(super) fn build_client_at(setup: &Setup, instance: &str) -> Harness<Result<ClientConfig, String>> {
    let spec = &setup.client;
    let mut b = ClientConfig::builder(instance, &spec.client_id);
    if let Some(s) = &spec.client_secret {
        b = b.client_secret(ClientSecret::new(s.as_str()));
    }
    if let Some(m) = &spec.auth_method {
        b = b.auth_method(match m.as_str() {
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "none" => AuthMethod::None,
            other => return Err(format!("unknown auth_method `{other}`")),
        });
    }
    if let Some(r) = &spec.redirect_uri {
        b = b.redirect_uri(r);
    }
    if let Some(i) = &spec.issuer {
        b = b.issuer(i);
    }
    b = b.iss_parameter_supported(spec.iss_parameter_supported);
    // The inner `Err`: the core refuses the configuration (catalogue H4...), the error's `Debug`.
    Ok(b.build().map_err(|e| format!("{e:?}")))
}

/// Tokens as a case writes them, at `now` (`expires_in` is relative to it).
pub(super) fn token_set(t: &StoredTokens, now: SystemTime) -> TokenSet {
    let expires_at = match (t.expires_at, t.expires_in) {
        (Some(at), _) => UNIX_EPOCH.checked_add(Duration::from_secs(at)),
        (None, Some(d)) if d >= 0 => now.checked_add(Duration::from_secs(d.unsigned_abs())),
        (None, Some(d)) => now.checked_sub(Duration::from_secs(d.unsigned_abs())),
        (None, None) => None,
    };
    TokenSet {
        access_token: AccessToken::new(t.access_token.as_str()),
        expires_at,
        issued_at: t.issued_at.and_then(|at| UNIX_EPOCH.checked_add(Duration::from_secs(at))),
        refresh_token: t.refresh_token.as_deref().map(RefreshToken::new),
        id_token: t.id_token.as_deref().map(IdToken::new),
        scopes: t.scopes.as_deref().map(Scopes::parse).unwrap_or_default(),
    }
}

/// The tokens stored when the case starts.
pub(super) fn stored_tokens(setup: &Setup) -> Option<TokenSet> {
    setup.tokens.as_ref().map(|t| token_set(t, setup.now))
}

/// The case's token manager settings.
pub(super) fn options(setup: &Setup) -> Harness<ManagerOptions> {
    let mut o = ManagerOptions::default();
    if let Some(s) = setup.manager.skew {
        o.skew = Duration::from_secs(s);
    }
    if let Some(f) = setup.manager.fallback_lifetime {
        o.fallback_lifetime = Duration::from_secs(f);
    }
    match setup.manager.renewal.as_deref() {
        None | Some("refresh_token") => {}
        Some("client_credentials") => {
            let scopes = Scopes::parse(setup.manager.scopes.as_deref().unwrap_or_default());
            o.renewal = Renewal::ClientCredentials { scopes };
        }
        Some(other) => return Err(format!("unknown renewal `{other}`")),
    }
    Ok(o)
}

/// The authorization request of an `authorize` step.
pub(super) fn authorization_request(p: &AuthorizeParams) -> Harness<AuthorizationRequest> {
    let mut req = AuthorizationRequest::new();
    match p.response_type.as_deref() {
        None => {}
        Some("code") => req = req.response_type(ResponseType::Code),
        Some("code id_token") => req = req.response_type(ResponseType::CodeIdToken),
        Some(other) => return Err(format!("unknown response_type `{other}`")),
    }
    match p.response_mode.as_deref() {
        None => {}
        Some("query") => req = req.response_mode(ResponseMode::Query),
        Some("form_post") => req = req.response_mode(ResponseMode::FormPost),
        Some("fragment") => req = req.response_mode(ResponseMode::Fragment),
        Some(other) => return Err(format!("unknown response_mode `{other}`")),
    }
    if let Some(s) = &p.scope {
        req = req.scope(s);
    }
    if let Some(s) = &p.state {
        req = req.state(s);
    }
    if let Some(n) = &p.nonce {
        req = req.nonce(n);
    }
    if p.without_nonce {
        req = req.without_nonce();
    }
    if !p.pkce {
        req = req.without_pkce();
    }
    if let Some(pr) = &p.prompt {
        req = req.prompt(pr);
    }
    for (k, v) in &p.extra {
        req = req.extra(k, v);
    }
    Ok(req)
}

/// The browser's request to the redirect URI, as the callback the login is finished with.
#[derive(Debug, Clone)]
pub(super) enum CallbackData {
    /// A GET's query string.
    Query(String),
    /// A `form_post` body.
    FormPost(Vec<u8>),
}

impl CallbackData {
    /// The callback of `request` (a GET with a query, or a form_post POST).
    pub(super) fn of(request: &Message) -> Harness<CallbackData> {
        match request.method.as_str() {
            "GET" => Ok(CallbackData::Query(request.query_string().unwrap_or_default())),
            "POST" => Ok(CallbackData::FormPost(request.body_bytes())),
            other => Err(format!("a callback is a GET or a POST, not {other}")),
        }
    }

    /// As the core takes it.
    pub(super) fn as_callback(&self) -> Callback<'_> {
        match self {
            CallbackData::Query(q) => Callback::Query(q),
            CallbackData::FormPost(b) => Callback::FormPost(b),
        }
    }
}

/// What a loopback listener does with `requests`, each the whole of what a connection sent, judged by
/// the core alone: its head read with the core's `listener::parse_head` (a head or body cut short is a
/// 400, as a listener answers a connection that closed or ran out of time), then `filter`'s judgement.
/// The callback is answered 200 (the logged-in page) and ends the wait.
pub(super) fn listen(filter: &CallbackFilter, requests: &[Vec<u8>]) -> Listened {
    let mut statuses = Vec::with_capacity(requests.len());
    for (i, raw) in requests.iter().enumerate() {
        let head = match listener::parse_head(raw) {
            Ok(Some(head)) => head,
            Ok(None) => {
                statuses.push(400);
                continue;
            }
            Err(status) => {
                statuses.push(status);
                continue;
            }
        };
        let Some(body) = raw.get(head.head_len..head.head_len + head.content_length) else {
            statuses.push(400);
            continue;
        };
        match filter.judge(&head.method, &head.target, body) {
            ListenerRequest::Ignore { status, .. } => statuses.push(status),
            ListenerRequest::Callback(callback) => {
                statuses.push(200);
                return Listened { statuses, callback: Some((i, ReceivedCallback::from(callback))) };
            }
        }
    }
    Listened { statuses, callback: None }
}

/// A standalone ID token verification as a login (see the module docs): its state and code.
pub(super) const VERIFY_STATE: &str = "verify-id-token";
pub(super) const VERIFY_CODE: &str = "verify-id-token-code";

/// The request of the login that verifies a standalone ID token: the nonce the case sent, or none.
pub(super) fn verification_request(nonce: Option<&str>) -> AuthorizationRequest {
    let req = AuthorizationRequest::new().state(VERIFY_STATE);
    match nonce {
        Some(n) => req.nonce(n),
        None => req.without_nonce(),
    }
}

/// Its callback, from `issuer` (RFC 9207's `iss`, which a client whose discovery advertises it requires).
pub(super) fn verification_callback(issuer: &str) -> String {
    let iss: String = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect();
    format!("code={VERIFY_CODE}&state={VERIFY_STATE}&iss={iss}")
}

/// The token endpoint's answer to that login: `id_token`, with `access_token` (for `at_hash`).
pub(super) fn verification_answer(id_token: &str, access_token: Option<&str>) -> http::Response<Vec<u8>> {
    let body = serde_json::json!({
        "access_token": access_token.unwrap_or("at-verify-id-token"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    });
    let mut r = http::Response::new(body.to_string().into_bytes());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

// -------------------------------------------------------------------------------------------------------
// Carrying out the operations' steps
// -------------------------------------------------------------------------------------------------------

/// A token manager and what an adapter would own around it: the store, the transport's settings and the
/// record of what went over the wire.
#[derive(Debug)]
struct Core {
    manager: TokenManager,
    options: ManagerOptions,
    now: SystemTime,
    /// The store's content, its lock's holder (a task id), and what it was asked to do.
    stored: Option<TokenSet>,
    holder: Option<usize>,
    events: Vec<StoreEvent>,
    http: HttpOptions,
    /// The transport failures the script injected in the current action.
    injected: Vec<String>,
    /// POSTs sent so far (a login's code goes with its first).
    posts: usize,
    /// The answer to the next POST, instead of the wire's (a standalone verification's token endpoint).
    canned: Option<http::Response<Vec<u8>>>,
    next_task: usize,
}

impl Core {
    fn new(client: ClientConfig, tokens: Option<TokenSet>, options: ManagerOptions, now: SystemTime) -> Self {
        Core {
            manager: TokenManager::new(client, tokens.clone(), options.clone()),
            options,
            now,
            stored: tokens,
            holder: None,
            events: Vec::new(),
            http: HttpOptions::default(),
            injected: Vec::new(),
            posts: 0,
            canned: None,
            next_task: 0,
        }
    }

    fn task<O: Operation>(&mut self, op: O) -> Task<O> {
        self.next_task += 1;
        Task { id: self.next_task, op, pending: None, input: None, renewal: None }
    }

    /// Sends `request` over `wire` as an adapter would, with the body limit of its target.
    fn send(&mut self, request: &http::Request<Vec<u8>>, target: Target, wire: &Wire) -> Input {
        if request.method() == http::Method::POST {
            self.posts += 1;
            if let Some(answer) = self.canned.take() {
                return Input::Response(answer);
            }
        }
        match wire.send(request) {
            Reply::Response(r) => {
                let limit = match target {
                    Target::IdentityServer => self.http.token_body_limit,
                    Target::Api => self.http.api_body_limit,
                };
                if u64::try_from(r.body().len()).unwrap_or(u64::MAX) > limit {
                    Input::Failed(Error::BodyTooLarge { limit })
                } else {
                    Input::Response(r)
                }
            }
            Reply::TransportError(reason) => {
                let error = transport_error(&reason);
                self.injected.push(reason);
                Input::Failed(error)
            }
        }
    }

    /// Drives one operation alone to its end (`open`: or to a request `wire` has no exchange left for).
    fn drive<O: Operation>(
        &mut self,
        task: &mut Task<O>,
        wire: &Wire,
        open: bool,
    ) -> Harness<Ran<O::Output>> {
        for _ in 0..256 {
            match task.turn(self, wire, open)? {
                Turn::Progress => {}
                Turn::Done(result) => return Ok(Ran::Done(result)),
                Turn::Parked => return Ok(Ran::Parked),
                Turn::Waiting => {
                    return Err(
                        "the operation waits for another caller's work, and no other caller runs".to_owned()
                    );
                }
            }
        }
        Err("the operation did not end after 256 steps".to_owned())
    }
}

/// How a driven operation stopped.
enum Ran<T> {
    Done(Result<T, Error>),
    /// At a request the wire has no exchange left for: the next step carries it out.
    Parked,
}

/// What one turn of a task did.
enum Turn<T> {
    /// Something happened (a request, a store operation, a renewal's step).
    Progress,
    /// Nothing: it waits for another task.
    Waiting,
    /// At a request the wire has no exchange left for (open-ended steps only).
    Parked,
    Done(Result<T, Error>),
}

/// One operation being carried out.
struct Task<O: Operation> {
    id: usize,
    op: O,
    /// A step asked for and not carried out yet (the store's lock is another task's, or the request is
    /// the next step's).
    pending: Option<Step<O::Output>>,
    input: Option<Input>,
    /// The renewal this task took and runs.
    renewal: Option<Box<Task<RenewalOp>>>,
}

impl<O: Operation> std::fmt::Debug for Task<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("id", &self.id).field("pending", &self.pending).finish_non_exhaustive()
    }
}

impl<O: Operation> Task<O> {
    /// One turn: the task's steps until it has sent one request and taken in its answer (a renewal it runs
    /// counts as the task), waits, takes a renewal (run from its next turn on, so that the other callers
    /// find it in flight), or is done.
    fn turn(&mut self, core: &mut Core, wire: &Wire, open: bool) -> Harness<Turn<O::Output>> {
        self.turn_sending(core, wire, open, &mut false)
    }

    fn turn_sending(
        &mut self,
        core: &mut Core,
        wire: &Wire,
        open: bool,
        sent: &mut bool,
    ) -> Harness<Turn<O::Output>> {
        let mut progress = false;
        loop {
            if let Some(renewal) = self.renewal.as_mut() {
                match renewal.turn_sending(core, wire, false, sent)? {
                    Turn::Done(result) => {
                        self.renewal = None;
                        self.input = Some(Input::Renewed(result));
                        progress = true;
                    }
                    Turn::Parked => return Err("a renewal stopped at a request".to_owned()),
                    Turn::Waiting if !progress => return Ok(Turn::Waiting),
                    Turn::Waiting | Turn::Progress => return Ok(Turn::Progress),
                }
            }
            let step = match self.pending.take() {
                Some(step) => step,
                None => self.op.step(&mut core.manager, self.input.take(), core.now),
            };
            match self.carry(step, core, wire, open, sent)? {
                None => progress = true,
                Some(Turn::Waiting) if progress => return Ok(Turn::Progress),
                Some(turn) => return Ok(turn),
            }
        }
    }

    /// Carries out `step`: `None` when the task goes on in this turn.
    fn carry(
        &mut self,
        step: Step<O::Output>,
        core: &mut Core,
        wire: &Wire,
        open: bool,
        sent: &mut bool,
    ) -> Harness<Option<Turn<O::Output>>> {
        let input = match step {
            Step::Send { request, target } => {
                if open && core.canned.is_none() && wire.exhausted() {
                    self.pending = Some(Step::Send { request, target });
                    return Ok(Some(Turn::Parked));
                }
                if *sent {
                    self.pending = Some(Step::Send { request, target });
                    return Ok(Some(Turn::Progress));
                }
                *sent = true;
                core.send(&request, target, wire)
            }
            Step::LockStore => match core.holder {
                Some(holder) if holder != self.id => {
                    self.pending = Some(Step::LockStore);
                    return Ok(Some(Turn::Waiting));
                }
                _ => {
                    core.holder = Some(self.id);
                    Input::Locked(Ok(()))
                }
            },
            Step::LoadStore => Input::Loaded(Ok(core.stored.clone())),
            Step::SaveStore(tokens) => {
                core.events.push(StoreEvent::Save(view(&tokens)));
                core.stored = Some(tokens);
                Input::Saved(Ok(()))
            }
            Step::ClearStore => {
                core.events.push(StoreEvent::Clear);
                core.stored = None;
                Input::Cleared(Ok(()))
            }
            Step::UnlockStore => {
                if core.holder == Some(self.id) {
                    core.holder = None;
                }
                Input::Unlocked
            }
            Step::Renew(renewal) => {
                self.renewal = Some(Box::new(core.task(renewal)));
                return Ok(Some(Turn::Progress));
            }
            Step::Wait => return Ok(Some(Turn::Waiting)),
            Step::Done(result) => return Ok(Some(Turn::Done(result))),
        };
        self.input = Some(input);
        Ok(None)
    }
}

// -------------------------------------------------------------------------------------------------------
// The driver
// -------------------------------------------------------------------------------------------------------

impl Run {
    /// Finishes login `login`: carries its operation on over `wire`; `open` stops it at a request the wire
    /// has no exchange left for. Returns the slot back, or the login's end.
    fn carry_login(
        &mut self,
        login: &str,
        wire: &Wire,
        open: bool,
    ) -> Harness<Option<(Result<LoggedIn, Error>, bool)>> {
        match self.logins.remove(login) {
            Some(LoginSlot::Finishing { mut task, posts_at }) => {
                match self.core.drive(&mut task, wire, open)? {
                    Ran::Parked => {
                        self.logins.insert(login.to_owned(), LoginSlot::Finishing { task, posts_at });
                        Ok(None)
                    }
                    Ran::Done(result) => Ok(Some((result, self.core.posts > posts_at))),
                }
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

/// A login with no accepted callback, or whose code was already sent: nothing to exchange (the typestate
/// consumed it).
const NO_CODE: &str = "NoCodeToExchange";

impl Driver for CoreDriver {
    fn name(&self) -> &'static str {
        "core"
    }

    fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>> {
        let client = match build_client(setup)? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        let rng = Random::from_spec(&setup.random)?;
        let options = options(setup)?;
        self.run = Some(Run {
            rng,
            core: Core::new(client.clone(), stored_tokens(setup), options, setup.now),
            verifier: Core::new(client, None, ManagerOptions::default(), setup.now),
            logins: BTreeMap::new(),
            last_login: None,
        });
        Ok(Ok(()))
    }

    fn authorize(&mut self, login: &str, p: &AuthorizeParams) -> Harness<Result<String, String>> {
        let run = self.run()?;
        let req = authorization_request(p)?;
        Ok(match req.build(run.core.manager.client(), &mut run.rng) {
            Ok(pending) => {
                let url = pending.authorize_url().to_owned();
                run.logins.insert(login.to_owned(), LoginSlot::Pending(pending));
                Ok(url)
            }
            Err(e) => Err(format!("{e:?}")),
        })
    }

    fn listen(&mut self, login: &str, requests: &[Vec<u8>]) -> Harness<Listened> {
        let run = self.run()?;
        let Some(LoginSlot::Pending(pending)) = run.logins.get(login) else {
            return Err(format!("login `{login}` is not waiting for its callback"));
        };
        Ok(listen(&pending.callback_filter(), requests))
    }

    fn callback(&mut self, login: &str, request: &Message) -> Harness<Result<(), String>> {
        let run = self.run()?;
        let data = CallbackData::of(request)?;
        let pending = match run.logins.remove(login) {
            Some(LoginSlot::Pending(p)) => p,
            other => {
                // The pending login was consumed by an earlier callback (or never built): the typestate
                // leaves nothing to handle a second callback with.
                if let Some(slot) = other {
                    run.logins.insert(login.to_owned(), slot);
                }
                return Ok(Err("NoPendingLogin".to_owned()));
            }
        };
        run.core.injected.clear();
        let op = FinishLogin::new(run.core.manager.client(), pending, data.as_callback());
        let mut task = run.core.task(op);
        let posts_at = run.core.posts;
        // No wire: the login stops at its first request, which the next step answers.
        let none = Wire::new(Vec::new(), BTreeMap::new(), &[]);
        Ok(match run.core.drive(&mut task, &none, true)? {
            Ran::Parked => {
                run.logins.insert(login.to_owned(), LoginSlot::Finishing { task, posts_at });
                Ok(())
            }
            Ran::Done(Err(Error::Callback(e))) => Err(format!("{e:?}")),
            Ran::Done(result) => {
                let code_sent = run.core.posts > posts_at;
                run.logins.insert(login.to_owned(), LoginSlot::Ended { result, code_sent });
                Ok(())
            }
        })
    }

    fn exchange(&mut self, login: &str, wire: &Wire) -> Harness<Result<TokensView, String>> {
        let run = self.run()?;
        run.core.injected.clear();
        let result = match run.carry_login(login, wire, false) {
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
            Err(e) => Err(describe(&e, &run.core.injected)),
        })
    }

    fn api_calls(
        &mut self,
        request: &http::Request<()>,
        count: usize,
        wire: &Wire,
    ) -> Harness<Vec<CallOutcome>> {
        let run = self.run()?;
        let core = &mut run.core;
        core.injected.clear();
        let mut calls: Vec<(Task<SendRequest>, Option<CallOutcome>)> = (0..count)
            .map(|_| {
                let mut req = http::Request::new(Vec::new());
                *req.method_mut() = request.method().clone();
                *req.uri_mut() = request.uri().clone();
                *req.headers_mut() = request.headers().clone();
                (core.task(SendRequest::new(req)), None)
            })
            .collect();
        for _round in 0..256 {
            let mut progress = false;
            for (task, outcome) in calls.iter_mut().filter(|(_, o)| o.is_none()) {
                match task.turn(core, wire, false)? {
                    Turn::Progress => progress = true,
                    Turn::Waiting => {}
                    Turn::Parked => return Err("an API call stopped at a request".to_owned()),
                    Turn::Done(result) => {
                        progress = true;
                        *outcome = Some(call_outcome(&result, &core.injected));
                    }
                }
            }
            if calls.iter().all(|(_, o)| o.is_some()) {
                return Ok(calls.into_iter().filter_map(|(_, o)| o).collect());
            }
            if !progress {
                return Err("the calls wait and nothing runs".to_owned());
            }
        }
        Err("the calls did not end after 256 rounds".to_owned())
    }

    fn tick(&mut self, now: SystemTime) {
        if let Some(run) = self.run.as_mut() {
            run.core.now = now;
            run.verifier.now = now;
        }
    }

    fn next_timeout(&mut self) -> Option<SystemTime> {
        self.run.as_ref().and_then(|r| r.core.manager.poll_timeout())
    }

    fn timeout(&mut self, wire: &Wire) -> Harness<Result<(), String>> {
        let run = self.run()?;
        run.core.injected.clear();
        let mut task = run.core.task(HandleTimeout::new());
        match run.core.drive(&mut task, wire, false)? {
            Ran::Done(Ok(())) => Ok(Ok(())),
            Ran::Done(Err(e)) => Ok(Err(describe(&e, &run.core.injected))),
            Ran::Parked => Err("the timer's renewal stopped at a request".to_owned()),
        }
    }

    fn shared_store(&mut self, tokens: Option<&StoredTokens>, now: SystemTime) -> Harness<()> {
        let run = self.run()?;
        run.core.stored = tokens.map(|t| token_set(t, now));
        Ok(())
    }

    fn tokens(&self) -> Option<TokensView> {
        self.run.as_ref().and_then(|r| r.core.manager.tokens()).map(view)
    }

    fn take_store_events(&mut self) -> Vec<StoreEvent> {
        self.run.as_mut().map(|r| std::mem::take(&mut r.core.events)).unwrap_or_default()
    }

    fn oidc(&mut self) -> Option<&mut dyn super::oidc::OidcDriver> {
        Some(self)
    }
}
