//! The seam between the cases and the client under test.
//!
//! A case is a script of client actions (log in, call the API, let time pass) and, for each action, the
//! exchanges the client must have on the wire. A [`Driver`] performs the actions with some client (the
//! core fed directly, or an adapter over real HTTP) and sends every request through the [`Wire`], which
//! checks it against the script and answers with the script's canned response. The driver never sees
//! what is expected; the runner never sees the client's types.

use super::case::{ClientSpec, ManagerSpec, RandomSpec, StoredTokens};
use super::message::{self, Message};
use erpnet_oauth_core::listener::ReceivedCallback;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a case starts from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The client configuration.
    pub client: ClientSpec,
    /// The clock.
    pub now: SystemTime,
    /// The random bytes.
    pub random: RandomSpec,
    /// Tokens already stored.
    pub tokens: Option<StoredTokens>,
    /// The token manager's settings.
    pub manager: ManagerSpec,
}

/// The parameters of an authorization request.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    /// `code` or `code id_token`.
    pub response_type: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// An explicit state.
    pub state: Option<String>,
    /// An explicit nonce.
    pub nonce: Option<String>,
    /// Send no nonce.
    pub without_nonce: bool,
    /// PKCE on.
    pub pkce: bool,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
    /// Extra parameters.
    pub extra: Vec<(String, String)>,
}

/// The tokens a client holds, as plain values for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensView {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// The ID token.
    pub id_token: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<u64>,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
}

/// How one API call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The API answered with a success status.
    Ok,
    /// The call failed.
    Failed {
        /// The error, as the client's `Debug` prints it.
        error: String,
        /// Whether trying again later may succeed.
        retryable: bool,
        /// Whether the user must log in again.
        login_required: bool,
    },
}

/// What the client asked its token store to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Save these tokens.
    Save(TokensView),
    /// Delete the stored tokens.
    Clear,
}

/// How a loopback listener dealt with a listen step's requests (catalogue B9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listened {
    /// The status each request sent was answered with, in order (0: no answer could be read). Requests
    /// after the one that ended the wait are not sent.
    pub statuses: Vec<u16>,
    /// The request (its index) that ended the wait, and the callback the wait returned; `None`: the
    /// listener was still waiting after the last request.
    pub callback: Option<(usize, ReceivedCallback)>,
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with this response.
    Response(http::Response<Vec<u8>>),
    /// No answer: the transport fails with this reason.
    TransportError(String),
}

/// The action failed to produce a result the case can judge (a driver or script problem, not a
/// behaviour of the client).
pub type Harness<T> = Result<T, String>;

/// A client under test.
pub trait Driver {
    /// The driver's short name, shown in the report (`core`, `ureq`, `async`).
    fn name(&self) -> &'static str;

    /// Headers the transport adds to requests (`User-Agent`, `Content-Length`...), left out of comparisons.
    fn transport_headers(&self) -> &[&'static str] {
        &[]
    }

    /// Starts a case: a fresh client with this configuration, clock, random source and store. The inner
    /// `Err` is the client refusing the configuration (its error's `Debug`).
    fn start(&mut self, setup: &Setup) -> Harness<Result<(), String>>;

    /// Builds the authorization request of login `login`: the URL to send the browser to, or the
    /// build error.
    fn authorize(&mut self, login: &str, params: &AuthorizeParams) -> Harness<Result<String, String>>;

    /// The browser came back to the redirect URI with `request` (a GET with a query, or a form_post POST).
    fn callback(&mut self, login: &str, request: &Message) -> Harness<Result<(), String>>;

    /// A loopback listener waits for login `login`'s callback (its redirect URI's path, its state) while
    /// `requests` (raw HTTP/1.1, each on a connection of its own) come one after the other, each sent once
    /// the previous one was answered; the wait's end is answered as a logged-in login.
    fn listen(&mut self, login: &str, requests: &[Vec<u8>]) -> Harness<Listened>;

    /// Finishes login `login` over `wire`: exchanges its code, verifies the ID token (fetching the keys
    /// when needed), stores and holds the tokens; the new tokens, or the error.
    fn exchange(&mut self, login: &str, wire: &Wire) -> Harness<Result<TokensView, String>>;

    /// `count` callers make the call `request` at once (a Domain API call without credentials); each is
    /// driven to its end over `wire`.
    fn api_calls(
        &mut self,
        request: &http::Request<()>,
        count: usize,
        wire: &Wire,
    ) -> Harness<Vec<CallOutcome>>;

    /// The clock moves to `now`.
    fn tick(&mut self, now: SystemTime);

    /// When the client wants to be woken to refresh proactively.
    fn next_timeout(&mut self) -> Option<SystemTime>;

    /// The timer fired at the current time; the client does what is due over `wire`. The inner `Err` is
    /// the error of the renewal it ran.
    fn timeout(&mut self, wire: &Wire) -> Harness<Result<(), String>>;

    /// Another process sharing the client's token store writes `tokens` to it (`None`: deletes them) at
    /// `now`, without telling the client.
    fn shared_store(&mut self, tokens: Option<&StoredTokens>, now: SystemTime) -> Harness<()>;

    /// The tokens the client holds now.
    fn tokens(&self) -> Option<TokensView>;

    /// What the client asked its store to do since the last call.
    fn take_store_events(&mut self) -> Vec<StoreEvent>;

    /// The OpenID Connect operations (discovery, ID tokens, logout), when this driver offers them.
    fn oidc(&mut self) -> Option<&mut dyn super::oidc::OidcDriver> {
        None
    }
}

/// One scripted exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request the client must send.
    pub expected: Message,
    /// The server's answer.
    pub reply: Reply,
}

#[derive(Debug)]
struct WireState {
    script: Vec<Exchange>,
    next: usize,
    vars: BTreeMap<String, String>,
    errors: Vec<String>,
}

/// The server side of one action: checks each request against the script, answers with the script's
/// reply. Shareable between threads: clones share one script (an adapter's server thread may hold one).
#[derive(Debug, Clone)]
pub struct Wire {
    state: Arc<Mutex<WireState>>,
    ignore: Vec<&'static str>,
}

impl Wire {
    /// A wire that expects exactly `script`, in order.
    pub fn new(script: Vec<Exchange>, vars: BTreeMap<String, String>, ignore: &[&'static str]) -> Self {
        Wire {
            state: Arc::new(Mutex::new(WireState { script, next: 0, vars, errors: Vec::new() })),
            ignore: ignore.to_vec(),
        }
    }

    /// The client sends `request`; the server answers.
    pub fn send(&self, request: &http::Request<Vec<u8>>) -> Reply {
        let Ok(mut state) = self.state.lock() else {
            return Reply::TransportError("the wire's lock is poisoned".to_owned());
        };
        let state = &mut *state;
        let n = state.next + 1;
        let Some(exchange) = state.script.get(state.next).cloned() else {
            let line = format!("{} {}", request.method(), request.uri().path());
            state
                .errors
                .push(format!("request {n} ({line}) was not expected: the script has {} request(s)", n - 1));
            return Reply::TransportError("no more scripted exchanges".to_owned());
        };
        state.next += 1;
        let actual = message::from_http(request, message::expects_form(&exchange.expected));
        if let Err(e) = message::compare(&exchange.expected, &actual, &self.ignore, &mut state.vars) {
            state.errors.push(format!("request {n}: {e}"));
        }
        exchange.reply
    }

    /// Whether every scripted exchange has happened (a request now would be one more than the script has).
    pub fn exhausted(&self) -> bool {
        self.state.lock().map_or(true, |s| s.next >= s.script.len())
    }

    /// Ends the action: every scripted exchange must have happened and every request must have matched.
    /// Returns the values captured so far.
    pub fn finish(self) -> Result<BTreeMap<String, String>, String> {
        let mut guard = self.state.lock().map_err(|_| "the wire's lock is poisoned".to_owned())?;
        let state = std::mem::replace(
            &mut *guard,
            WireState { script: Vec::new(), next: 0, vars: BTreeMap::new(), errors: Vec::new() },
        );
        drop(guard);
        if let Some(first) = state.errors.into_iter().next() {
            return Err(first);
        }
        if state.next < state.script.len() {
            let missing =
                state.script.get(state.next).map(|e| format!("{} {}", e.expected.method, e.expected.path));
            return Err(format!(
                "only {} of {} scripted requests were sent; the next expected was `{}`",
                state.next,
                state.script.len(),
                missing.unwrap_or_default()
            ));
        }
        Ok(state.vars)
    }
}
