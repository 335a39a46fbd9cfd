//! State-machine property tests of [`TokenManager`].
//!
//! Each case is a random sequence of [`Step`]s: API calls in several phases, API answers, draining the
//! manager's outputs (sometimes late, so they pile up), answers to the refresh requests the adapter holds,
//! store re-reads, persistence acks, logins, logouts, forced refreshes and clock ticks. Every step is
//! applied to the manager (the system under test) and to a small reference [`Model`] that says what the
//! manager must do; after every step the two are compared and the invariants of the module docs are
//! asserted on their own, with messages naming them. Steps refer to calls and requests by an index taken
//! modulo the ones that exist, so every sequence is valid and shrinks well; a step with nothing to act on
//! does nothing.
//!
//! The adapter simulated here writes the store when it drains a `Persist` (and deletes it on `Clear`),
//! and may deliver the ack much later.

use erpnet_oauth_core::{
    Access, AccessToken, ApiCall, ApiError, ApiOutcome, ClientConfig, ClientSecret, IdToken, LoginRequired,
    ManagerOptions, Output, RefreshError, RefreshId, RefreshToken, Reloaded, RetryAfter, Scopes,
    TokenManager, TokenSet, http,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_655_057_724;
const SKEW: Duration = Duration::from_secs(60);
const BACKOFF: Duration = Duration::from_secs(10);
const ISS: &str = "https://demodb.my.erp.net/id";
const AUD: &str = "my.trusted.app/first";
const MAX_CALLS: usize = 8;
const MAX_STEPS: usize = 100;

fn client() -> ClientConfig {
    ClientConfig::builder("https://demodb.my.erp.net", AUD)
        .client_secret(ClientSecret::new("my-secret"))
        .redirect_uri("http://localhost/signin-callback")
        .build()
        .unwrap()
}

/// The scopes a client-credentials manager asks for.
const CC_SCOPES: &str = "DomainApi";

fn options(client_credentials: bool) -> ManagerOptions {
    let renewal = if client_credentials {
        erpnet_oauth_core::Renewal::ClientCredentials { scopes: Scopes::parse(CC_SCOPES) }
    } else {
        erpnet_oauth_core::Renewal::RefreshToken
    };
    ManagerOptions::new(renewal).skew(SKEW).retry_backoff(BACKOFF)
}

/// An unsigned ID token with the given subject (the manager only compares iss, sub and aud).
fn jwt(sub: &str, iat: u64) -> String {
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": iat})),
    )
}

/// `(iss, sub, aud)` of an ID token, or `None` when it cannot be decoded.
fn claims(id: &str) -> Option<(serde_json::Value, serde_json::Value, serde_json::Value)> {
    let c = erpnet_oauth_core::id_token::UnverifiedClaims::decode(&IdToken::new(id)).ok()?;
    Some((c.value["iss"].clone(), c.value["sub"].clone(), c.value["aud"].clone()))
}

/// The model's view of a token set: plain values.
#[derive(Debug, Clone, PartialEq)]
struct Tok {
    at: String,
    rt: Option<String>,
    exp: Option<SystemTime>,
    id: Option<String>,
    scopes: Scopes,
}

impl Tok {
    fn of(t: &TokenSet) -> Tok {
        Tok {
            at: t.access_token.secret().to_owned(),
            rt: t.refresh_token.as_ref().map(|r| r.secret().to_owned()),
            exp: t.expires_at,
            id: t.id_token.as_ref().map(|i| i.secret().to_owned()),
            scopes: t.scopes.clone(),
        }
    }

    fn set(&self) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(&self.at),
            expires_at: self.exp,
            issued_at: None,
            refresh_token: self.rt.as_deref().map(RefreshToken::new),
            id_token: self.id.as_deref().map(IdToken::new),
            scopes: self.scopes.clone(),
        }
    }

    fn pair(&self) -> (String, Option<String>) {
        (self.at.clone(), self.rt.clone())
    }

    fn fresh(&self, now: SystemTime) -> bool {
        self.exp.is_none_or(|e| now + SKEW < e)
    }
}

// ---------------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ApiAnswer {
    Ok,
    /// 401 `Bearer error="invalid_token"`.
    InvalidToken,
    /// 401 without a challenge.
    Bare401,
    /// 401 with a Basic challenge only (no Bearer challenge: counts as "token refused").
    Basic401,
    /// 401 with another Bearer error: not a token problem.
    Other401,
    Forbidden,
    TooMany,
    Business500,
    Html502,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum IdAnswer {
    None,
    /// Same iss/sub/aud as the current ID token (another `iat`).
    Same,
    /// Another subject (catalogue E4: rejected when there was one).
    Changed,
    /// Not a decodable JWT.
    Malformed,
}

#[derive(Debug, Clone)]
enum RefreshAnswer {
    Success { rotate: bool, expires_in: Option<u64>, id: IdAnswer, scope: bool },
    InvalidGrant,
    OtherOAuth { status: u16 },
    ServerError { status: u16, json: bool },
    Html { status: u16 },
    MalformedJson,
    Bytes { status: u16, body: Vec<u8> },
    WrongTokenType,
    Redirect,
    Transport,
}

#[derive(Debug, Clone, Copy)]
enum Stored {
    /// What the store holds (an adapter re-reading its own store).
    FromStore,
    /// Another process renewed the tokens and stored new ones.
    Other,
    /// Another process logged out: the store is empty.
    Gone,
}

#[derive(Debug, Clone)]
enum Step {
    Begin,
    Authorize {
        call: usize,
        header: bool,
    },
    Api {
        call: usize,
        answer: ApiAnswer,
    },
    /// Drains up to `max` outputs (0: all). Persist outputs are written with `persist_ok`.
    Drain {
        max: usize,
        persist_ok: bool,
    },
    Refresh {
        which: usize,
        answer: RefreshAnswer,
    },
    Reload {
        which: usize,
        stored: Stored,
    },
    Ack {
        which: usize,
    },
    /// A quick round trip: drain, answer every held refresh request with new rotated tokens (after
    /// re-reading the store, when `shared`), drain, ack.
    Serve {
        expires_in: Option<u64>,
        persist_ok: bool,
        shared: bool,
    },
    Force,
    Login {
        rt: bool,
        expires_in: Option<u64>,
    },
    Logout,
    /// Moves the clock; with `fire`, calls `handle_timeout` when `poll_timeout` is due.
    Tick {
        secs: u64,
        fire: bool,
    },
    Timeout,
}

fn expires_in() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(vec![1u64, 59, 60, 61, 3600]).prop_map(Some),
        6 => (1u64..=7200).prop_map(Some),
    ]
}

fn api_answer() -> impl Strategy<Value = ApiAnswer> {
    use ApiAnswer::*;
    prop_oneof![
        4 => Just(Ok),
        6 => Just(InvalidToken),
        1 => Just(Bare401),
        1 => Just(Basic401),
        1 => Just(Other401),
        1 => Just(Forbidden),
        1 => Just(TooMany),
        1 => Just(Business500),
        1 => Just(Html502),
    ]
}

fn refresh_answer() -> impl Strategy<Value = RefreshAnswer> {
    use RefreshAnswer::*;
    let id = prop_oneof![
        4 => Just(IdAnswer::None),
        4 => Just(IdAnswer::Same),
        1 => Just(IdAnswer::Changed),
        1 => Just(IdAnswer::Malformed),
    ];
    prop_oneof![
        8 => (prop::bool::weighted(0.8), expires_in(), id, any::<bool>())
            .prop_map(|(rotate, expires_in, id, scope)| Success { rotate, expires_in, id, scope }),
        2 => Just(InvalidGrant),
        1 => prop::sample::select(vec![400u16, 401]).prop_map(|status| OtherOAuth { status }),
        2 => (500u16..600, any::<bool>()).prop_map(|(status, json)| ServerError { status, json }),
        1 => prop::sample::select(vec![200u16, 500, 503]).prop_map(|status| Html { status }),
        1 => Just(MalformedJson),
        1 => (prop::sample::select(vec![200u16, 400, 401, 500]), prop::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(status, body)| Bytes { status, body }),
        1 => Just(WrongTokenType),
        1 => Just(Redirect),
        2 => Just(Transport),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let idx = 0usize..16;
    let stored = prop_oneof![4 => Just(Stored::FromStore), 1 => Just(Stored::Other), 1 => Just(Stored::Gone)];
    prop_oneof![
        6 => Just(Step::Begin),
        16 => (idx.clone(), any::<bool>()).prop_map(|(call, header)| Step::Authorize { call, header }),
        12 => (idx.clone(), api_answer()).prop_map(|(call, answer)| Step::Api { call, answer }),
        12 => (prop_oneof![2 => Just(0usize), 1 => 1usize..3], prop::bool::weighted(0.6))
            .prop_map(|(max, persist_ok)| Step::Drain { max, persist_ok }),
        12 => (idx.clone(), refresh_answer()).prop_map(|(which, answer)| Step::Refresh { which, answer }),
        6 => (idx.clone(), stored).prop_map(|(which, stored)| Step::Reload { which, stored }),
        8 => idx.prop_map(|which| Step::Ack { which }),
        3 => (expires_in(), prop::bool::weighted(0.7), any::<bool>())
            .prop_map(|(expires_in, persist_ok, shared)| Step::Serve { expires_in, persist_ok, shared }),
        3 => Just(Step::Force),
        3 => (prop::bool::weighted(0.9), expires_in()).prop_map(|(rt, expires_in)| Step::Login { rt, expires_in }),
        1 => Just(Step::Logout),
        8 => (prop_oneof![1 => 0u64..=120, 1 => 0u64..=7200], prop::bool::weighted(0.7))
            .prop_map(|(secs, fire)| Step::Tick { secs, fire }),
        2 => Just(Step::Timeout),
    ]
}

/// The tokens the manager starts with: none, or a login's (maybe already expired, maybe without a
/// refresh token or ID token).
fn initial() -> impl Strategy<Value = Option<Tok>> {
    let offset = prop_oneof![-200i64..200, 0i64..7200];
    let tok = (offset, prop::bool::weighted(0.9), any::<bool>()).prop_map(|(offset, rt, id)| {
        Some(Tok {
            at: "at-0".to_owned(),
            rt: rt.then(|| "rt-0".to_owned()),
            exp: Some(UNIX_EPOCH + Duration::from_secs(T0.saturating_add_signed(offset))),
            id: id.then(|| jwt("admin", T0)),
            scopes: Scopes::erpnet_default(),
        })
    });
    prop_oneof![1 => Just(None), 15 => tok]
}

// ---------------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------------

/// Why a call fails, as the model predicts it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Why {
    NoTokens,
    NoRefreshToken,
    Rejected,
    Token,
    Transport,
    Persist,
}

fn why(e: &RefreshError) -> Why {
    match e {
        RefreshError::LoginRequired(LoginRequired::NoTokens) => Why::NoTokens,
        RefreshError::LoginRequired(LoginRequired::NoRefreshToken) => Why::NoRefreshToken,
        RefreshError::LoginRequired(LoginRequired::Rejected(_)) => Why::Rejected,
        RefreshError::Token(_) => Why::Token,
        RefreshError::Transport(_) => Why::Transport,
        RefreshError::Persist(_) => Why::Persist,
        other => panic!("unknown refresh error {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Needs a token: new, told to wait, or after a retry.
    Need,
    /// Sent with a token handed out at this generation.
    Sent {
        generation: u64,
        at: String,
    },
    Done,
}

#[derive(Debug, Clone)]
struct Call {
    phase: Phase,
    retried: bool,
    retries: u32,
    /// A renewal failed since this call last asked: it is told once, with the latest failure.
    owed: Option<Why>,
}

#[derive(Debug, Clone, PartialEq)]
enum Renewal {
    Idle,
    /// A Refresh output for `rt` is queued, not yet drained.
    Queued {
        rt: Option<String>,
    },
    /// The adapter holds the Refresh request.
    InFlight {
        id: RefreshId,
        rt: Option<String>,
    },
    /// The answer was accepted; the Persist output is queued or being written.
    Persisting {
        id: RefreshId,
        tok: Tok,
    },
}

/// An output the model expects, in order.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Refresh { rt: Option<String> },
    Persist { tok: Tok },
    Clear,
}

/// A refresh request the adapter drained and has not answered.
#[derive(Debug, Clone)]
struct Outstanding {
    id: RefreshId,
    rt: Option<String>,
    sent: bool,
}

#[derive(Debug)]
struct Model {
    /// Renewal with `client_credentials` instead of the refresh token.
    cc: bool,
    now: SystemTime,
    cur: Option<Tok>,
    generation: u64,
    rejected: bool,
    renewal: Renewal,
    expected: VecDeque<Expected>,
    login_required: Why,
    retry_not_before: Option<SystemTime>,
    store: Option<Tok>,
    /// The access and refresh token the manager knows to be in the store: what it was created with,
    /// last stored successfully, logged in with or adopted from the store.
    believed: Option<(String, Option<String>)>,
    /// Set by the steps that may drop the tokens: an `invalid_grant` answer, a re-read store found
    /// empty, a logout.
    may_drop: bool,
    calls: Vec<Call>,
    outstanding: Vec<Outstanding>,
    acks: Vec<(RefreshId, bool)>,
    counter: u64,
    seen_ids: Vec<RefreshId>,
}

impl Model {
    fn new(cc: bool, initial: Option<Tok>) -> Model {
        Model {
            cc,
            now: UNIX_EPOCH + Duration::from_secs(T0),
            cur: initial.clone(),
            generation: 0,
            rejected: false,
            renewal: Renewal::Idle,
            expected: VecDeque::new(),
            login_required: Why::NoTokens,
            retry_not_before: None,
            believed: initial.as_ref().map(Tok::pair),
            may_drop: false,
            store: initial,
            calls: Vec::new(),
            outstanding: Vec::new(),
            acks: Vec::new(),
            counter: 0,
            seen_ids: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// New tokens are in use. A failure reported before is over: calls it was owed to are not told.
    fn adopt(&mut self, tok: Option<Tok>) {
        self.cur = tok;
        self.generation += 1;
        self.rejected = false;
        for c in &mut self.calls {
            c.owed = None;
        }
    }

    fn fail(&mut self, why: Why) {
        for c in &mut self.calls {
            if c.phase != Phase::Done {
                c.owed = Some(why);
            }
        }
        self.retry_not_before = Some(self.now + BACKOFF);
    }

    fn queue_renewal(&mut self) {
        assert!(self.can_renew(), "model: renewal impossible");
        let rt = if self.cc { None } else { self.cur.as_ref().and_then(|t| t.rt.clone()) };
        self.renewal = Renewal::Queued { rt: rt.clone() };
        self.expected.push_back(Expected::Refresh { rt });
    }

    fn can_renew(&self) -> bool {
        self.cc || self.cur.as_ref().is_some_and(|t| t.rt.is_some())
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        if self.renewal != Renewal::Idle || !self.can_renew() {
            return None;
        }
        let due = self.cur.as_ref()?.exp?.checked_sub(SKEW)?;
        Some(match self.retry_not_before {
            Some(t) if t > due => t,
            _ => due,
        })
    }

    fn timeout(&mut self) {
        if self.poll_timeout().is_some_and(|due| due <= self.now) {
            note("timer: renewal");
            self.queue_renewal();
        }
    }

    /// `access_token` / `authorize` for call `i`: `Ok(at)` for Ready, `Err(None)` for Wait,
    /// `Err(Some(why))` for Failed.
    fn access(&mut self, i: usize) -> Result<String, Option<Why>> {
        if let Some(w) = self.calls[i].owed.take() {
            self.calls[i].phase = Phase::Done;
            return Err(Some(w));
        }
        if self.renewal != Renewal::Idle {
            return Err(None);
        }
        match &self.cur {
            None if self.cc => {
                self.queue_renewal();
                Err(None)
            }
            None => {
                self.calls[i].phase = Phase::Done;
                Err(Some(self.login_required))
            }
            Some(t) if !self.rejected && t.fresh(self.now) => {
                let at = t.at.clone();
                self.calls[i].phase = Phase::Sent { generation: self.generation, at: at.clone() };
                Ok(at)
            }
            Some(_) if self.can_renew() => {
                self.queue_renewal();
                Err(None)
            }
            Some(_) => {
                self.calls[i].phase = Phase::Done;
                Err(Some(Why::NoRefreshToken))
            }
        }
    }

    /// Fresh tokens as another login or another process would have them.
    fn new_tokens(&mut self, rt: bool, expires_in: Option<u64>) -> Tok {
        let n = self.next();
        Tok {
            at: format!("at-{n}"),
            rt: rt.then(|| format!("rt-{n}")),
            exp: expires_in.map(|s| self.now + Duration::from_secs(s)),
            id: Some(jwt("admin", T0 + n)),
            scopes: Scopes::erpnet_default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Building server answers
// ---------------------------------------------------------------------------------------------------

fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> http::Response<Vec<u8>> {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn api_response(a: ApiAnswer) -> http::Response<Vec<u8>> {
    const WWW: &str = "www-authenticate";
    match a {
        ApiAnswer::Ok => response(200, &[JSON], r#"{"value":[]}"#),
        ApiAnswer::InvalidToken => response(
            401,
            &[(WWW, r#"Bearer error="invalid_token", error_description="The access token expired""#)],
            "",
        ),
        ApiAnswer::Bare401 => response(401, &[], ""),
        ApiAnswer::Basic401 => response(401, &[(WWW, r#"Basic realm="erp""#)], ""),
        ApiAnswer::Other401 => response(401, &[(WWW, r#"Bearer error="invalid_request""#)], ""),
        ApiAnswer::Forbidden => {
            response(403, &[(WWW, r#"Bearer error="insufficient_scope", scope="DomainApi""#)], "")
        }
        ApiAnswer::TooMany => response(429, &[("retry-after", "7")], ""),
        ApiAnswer::Business500 => {
            response(500, &[JSON], r#"{"message":"Entity not found","code":12,"type":"X","info":null}"#)
        }
        ApiAnswer::Html502 => response(502, &[("content-type", "text/html")], "<html>bad gateway</html>"),
    }
}

/// What the manager must do with a refresh answer.
enum Verdict {
    Accept(Tok),
    InvalidGrant,
    Reject(Why),
}

/// Builds the answer to a refresh of `old` at `now` and says what the manager must make of it.
fn refresh_response(
    answer: &RefreshAnswer,
    old: &Tok,
    cc: bool,
    n: u64,
    now: SystemTime,
) -> (Option<http::Response<Vec<u8>>>, Verdict) {
    let oauth = |status: u16, error: &str| {
        response(
            status,
            &[JSON],
            serde_json::json!({"error": error, "error_description": "described"}).to_string(),
        )
    };
    match answer {
        RefreshAnswer::Success { rotate, expires_in, id, scope } => {
            let mut body = serde_json::json!({"access_token": format!("at-{n}"), "token_type": "Bearer"});
            let mut tok = old.clone();
            if cc {
                // A client-credentials answer stands alone: nothing is carried over from the old tokens.
                tok = Tok {
                    at: String::new(),
                    rt: None,
                    exp: None,
                    id: None,
                    scopes: Scopes::parse(CC_SCOPES),
                };
            }
            tok.at = format!("at-{n}");
            tok.exp = expires_in.map(|s| now + Duration::from_secs(s));
            if let Some(s) = expires_in {
                body["expires_in"] = (*s).into();
            }
            if *rotate {
                body["refresh_token"] = format!("rt-{n}").into();
                tok.rt = Some(format!("rt-{n}"));
            }
            if *scope {
                body["scope"] = "openid profile DomainApi".into();
                tok.scopes = Scopes::parse("openid profile DomainApi");
            }
            let old_sub = old.id.as_deref().and_then(claims).map(|c| c.1);
            let new_id = match id {
                IdAnswer::None => None,
                IdAnswer::Same => {
                    Some(jwt(old_sub.as_ref().and_then(|s| s.as_str()).unwrap_or("admin"), T0 + n))
                }
                IdAnswer::Changed => Some(jwt("someone-else", T0 + n)),
                IdAnswer::Malformed => Some("h.p.s".to_owned()),
            };
            let mut verdict = None;
            if let Some(new_id) = new_id {
                body["id_token"] = new_id.clone().into();
                match &old.id {
                    _ if cc => tok.id = Some(new_id),
                    // E4: a new ID token must keep iss, sub and aud; one that cannot be compared is refused.
                    Some(old_id) => match (claims(old_id), claims(&new_id)) {
                        (Some(a), Some(b)) if a == b => tok.id = Some(new_id),
                        _ => verdict = Some(Verdict::Reject(Why::Token)),
                    },
                    None => tok.id = Some(new_id),
                }
            }
            (Some(response(200, &[JSON], body.to_string())), verdict.unwrap_or(Verdict::Accept(tok)))
        }
        RefreshAnswer::InvalidGrant if cc => (Some(oauth(400, "invalid_grant")), Verdict::Reject(Why::Token)),
        RefreshAnswer::InvalidGrant => (Some(oauth(400, "invalid_grant")), Verdict::InvalidGrant),
        RefreshAnswer::OtherOAuth { status } => {
            (Some(oauth(*status, "invalid_client")), Verdict::Reject(Why::Token))
        }
        RefreshAnswer::ServerError { status, json } => {
            // An `invalid_grant` body on a 5xx is a failing server, not a rejected grant: tokens kept.
            let error = if status % 2 == 0 { "server_error" } else { "invalid_grant" };
            let r = if *json { oauth(*status, error) } else { response(*status, &[], "") };
            (Some(r), Verdict::Reject(Why::Token))
        }
        RefreshAnswer::Html { status } => (
            Some(response(*status, &[("content-type", "text/html")], "<html><body>Error</body></html>")),
            Verdict::Reject(Why::Token),
        ),
        RefreshAnswer::MalformedJson => (
            Some(response(200, &[JSON], format!(r#"{{"access_token":"at-{n}","token_type":"#))),
            Verdict::Reject(Why::Token),
        ),
        RefreshAnswer::Bytes { status, body } => {
            (Some(response(*status, &[], body.clone())), Verdict::Reject(Why::Token))
        }
        RefreshAnswer::WrongTokenType => (
            Some(response(
                200,
                &[JSON],
                serde_json::json!({"access_token": format!("at-{n}"), "token_type": "mac",
                    "refresh_token": format!("rt-{n}"), "expires_in": 3600})
                .to_string(),
            )),
            Verdict::Reject(Why::Token),
        ),
        RefreshAnswer::Redirect => (
            Some(response(302, &[("location", "https://demodb.my.erp.net/elsewhere")], "")),
            Verdict::Reject(Why::Token),
        ),
        RefreshAnswer::Transport => (None, Verdict::Reject(Why::Transport)),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

// ---------------------------------------------------------------------------------------------------
// The harness: the manager and the model side by side
// ---------------------------------------------------------------------------------------------------

struct Harness {
    sut: TokenManager,
    calls: Vec<ApiCall>,
    m: Model,
}

impl Harness {
    fn new(cc: bool, initial: Option<Tok>) -> Harness {
        Harness {
            sut: TokenManager::new(client(), initial.as_ref().map(Tok::set), options(cc)),
            calls: Vec::new(),
            m: Model::new(cc, initial),
        }
    }

    /// The index of the `k`-th (modulo) call in a phase matching `f`.
    fn pick_call(&self, k: usize, f: impl Fn(&Phase) -> bool) -> Option<usize> {
        let idx: Vec<usize> = (0..self.m.calls.len()).filter(|&i| f(&self.m.calls[i].phase)).collect();
        (!idx.is_empty()).then(|| idx[k % idx.len()])
    }

    fn step(&mut self, step: &Step) {
        let had_tokens = self.m.cur.is_some();
        if !self.m.expected.is_empty() && !matches!(step, Step::Drain { .. } | Step::Serve { .. }) {
            note("an input while an output waits to be drained");
        }
        self.m.may_drop = false;
        match step {
            Step::Begin => {
                if self.m.calls.iter().filter(|c| c.phase != Phase::Done).count() < MAX_CALLS {
                    self.calls.push(self.sut.begin_call());
                    self.m.calls.push(Call { phase: Phase::Need, retried: false, retries: 0, owed: None });
                }
            }
            Step::Authorize { call, header } => {
                if let Some(i) = self.pick_call(*call, |p| *p == Phase::Need) {
                    self.authorize(i, *header);
                }
            }
            Step::Api { call, answer } => {
                if let Some(i) = self.pick_call(*call, |p| matches!(p, Phase::Sent { .. })) {
                    self.api(i, *answer);
                }
            }
            Step::Drain { max, persist_ok } => self.drain(*max, *persist_ok),
            Step::Refresh { which, answer } => {
                if !self.m.outstanding.is_empty() {
                    let o = self.m.outstanding.remove(which % self.m.outstanding.len());
                    self.refresh(o, answer);
                }
            }
            Step::Reload { which, stored } => {
                let unsent: Vec<usize> =
                    (0..self.m.outstanding.len()).filter(|&i| !self.m.outstanding[i].sent).collect();
                if !unsent.is_empty() {
                    self.reload(unsent[which % unsent.len()], *stored);
                }
            }
            Step::Ack { which } => {
                if !self.m.acks.is_empty() {
                    let (id, ok) = self.m.acks.remove(which % self.m.acks.len());
                    self.ack(id, ok);
                }
            }
            Step::Serve { expires_in, persist_ok, shared } => {
                self.drain(0, *persist_ok);
                self.check();
                if *shared {
                    // A shared store: re-read it before sending each request.
                    let unsent: Vec<RefreshId> =
                        self.m.outstanding.iter().filter(|o| !o.sent).map(|o| o.id).collect();
                    for id in unsent {
                        if let Some(k) = self.m.outstanding.iter().position(|o| o.id == id) {
                            self.reload(k, Stored::FromStore);
                            self.check();
                        }
                    }
                }
                while !self.m.outstanding.is_empty() {
                    let answer = RefreshAnswer::Success {
                        rotate: true,
                        expires_in: *expires_in,
                        id: IdAnswer::Same,
                        scope: false,
                    };
                    let o = self.m.outstanding.remove(0);
                    self.refresh(o, &answer);
                    self.check();
                }
                self.drain(0, *persist_ok);
                self.check();
                while !self.m.acks.is_empty() {
                    let (id, ok) = self.m.acks.remove(0);
                    self.ack(id, ok);
                    self.check();
                }
            }
            Step::Force => {
                let expected = self.m.renewal == Renewal::Idle && self.m.can_renew();
                assert_eq!(self.sut.force_refresh(), expected, "force_refresh");
                if expected {
                    note("force: renewal");
                    self.m.queue_renewal();
                }
            }
            Step::Login { rt, expires_in } => {
                let tok = self.m.new_tokens(*rt, *expires_in);
                self.sut.handle_login(tok.set());
                self.m.renewal = Renewal::Idle;
                self.m.retry_not_before = None;
                self.m.store = Some(tok.clone());
                self.m.believed = Some(tok.pair());
                self.m.adopt(Some(tok));
                // Outputs of the abandoned renewal (or a Clear) must not reach the adapter: they would
                // overwrite or delete the new login's tokens, or send a second refresh.
                self.m.expected.clear();
            }
            Step::Logout => {
                self.sut.handle_logout();
                self.m.renewal = Renewal::Idle;
                self.m.login_required = Why::NoTokens;
                self.m.store = None;
                self.m.believed = None;
                self.m.may_drop = true;
                self.m.adopt(None);
                self.m.expected.clear();
            }
            Step::Tick { secs, fire } => {
                self.m.now += Duration::from_secs(*secs);
                if *fire && self.sut.poll_timeout().is_some_and(|due| due <= self.m.now) {
                    self.sut.handle_timeout(self.m.now);
                    self.m.timeout();
                }
            }
            Step::Timeout => {
                self.sut.handle_timeout(self.m.now);
                self.m.timeout();
            }
        }
        // Tokens are dropped only on invalid_grant, a store found empty, or a logout.
        if had_tokens && self.sut.tokens().is_none() {
            note("tokens dropped");
            assert!(self.m.may_drop, "invariant: tokens dropped by {step:?}");
        }
        self.check();
    }

    fn authorize(&mut self, i: usize, header: bool) {
        let now = self.m.now;
        let pending_persist = match &self.m.renewal {
            Renewal::Persisting { tok, .. } => Some(tok.at.clone()),
            _ => None,
        };
        let expected = self.m.access(i);
        let actual: Result<String, Option<Why>> = if header {
            let mut req =
                http::Request::get("https://demodb.my.erp.net/api/domain/odata/Crm_Customers?$top=10")
                    .body(())
                    .unwrap();
            match self.sut.authorize(&mut self.calls[i], &mut req, now) {
                Access::Ready(()) => {
                    let v = &req.headers()[http::header::AUTHORIZATION];
                    assert!(v.is_sensitive(), "the Authorization header is marked sensitive");
                    let v = v.to_str().unwrap();
                    Ok(v.strip_prefix("Bearer ").expect("a Bearer header").to_owned())
                }
                Access::Wait => Err(None),
                Access::Failed(e) => Err(Some(why(&e))),
            }
        } else {
            match self.sut.access_token(&mut self.calls[i], now) {
                Access::Ready(t) => Ok(t.secret().to_owned()),
                Access::Wait => Err(None),
                Access::Failed(e) => Err(Some(why(&e))),
            }
        };
        if let Ok(at) = &actual {
            let t = self.m.cur.as_ref().expect("invariant: a token handed out while none is held");
            assert_eq!(at, &t.at, "invariant: the token handed out is the one in use");
            assert!(
                t.exp.is_none_or(|e| now + SKEW < e),
                "invariant: token {at} handed out at {now:?} expires at {:?} (skew {SKEW:?})",
                t.exp
            );
            assert_ne!(
                Some(at),
                pending_persist.as_ref(),
                "invariant: a token handed out before it was stored"
            );
        }
        note(match actual {
            Ok(_) => "ready",
            Err(None) => "wait",
            Err(Some(Why::NoTokens)) => "failed: no tokens",
            Err(Some(Why::NoRefreshToken)) => "failed: no refresh token",
            Err(Some(Why::Rejected)) => "failed: rejected",
            Err(Some(Why::Token)) => "failed: token error",
            Err(Some(Why::Transport)) => "failed: transport",
            Err(Some(Why::Persist)) => "failed: persist",
        });
        if actual == Err(None) {
            assert!(self.sut.is_renewing(), "liveness: Wait while no renewal is under way");
        }
        assert_eq!(actual, expected, "authorize (header: {header})");
    }

    fn api(&mut self, i: usize, answer: ApiAnswer) {
        let resp = api_response(answer);
        let outcome = self.sut.handle_api_response(&mut self.calls[i], &resp);
        let c = &self.m.calls[i];
        let retries = c.retries;
        let was_retried = c.retried;
        let refused = matches!(answer, ApiAnswer::InvalidToken | ApiAnswer::Bare401 | ApiAnswer::Basic401);
        if refused && !c.retried && (self.m.cur.is_some() || self.m.cc) {
            assert_eq!(outcome, ApiOutcome::Retry, "a refused token is renewed and the call retried once");
            note("api: retry");
            let Phase::Sent { generation, .. } = c.phase else { unreachable!() };
            if generation == self.m.generation {
                self.m.rejected = true;
            }
            let c = &mut self.m.calls[i];
            c.retried = true;
            c.retries += 1;
            c.phase = Phase::Need;
            assert!(self.calls[i].retried());
            return;
        }
        self.m.calls[i].phase = Phase::Done;
        if was_retried && refused {
            note("api: second 401 returned");
        }
        let ApiOutcome::Done(result) = outcome else {
            panic!("invariant: retry loop: {answer:?} to a call retried {retries} time(s)")
        };
        let ok = match answer {
            ApiAnswer::Ok => result.is_ok(),
            ApiAnswer::InvalidToken => {
                matches!(result, Err(ApiError::Unauthorized { challenge: Some(ref c) }) if c.error.as_deref() == Some("invalid_token"))
            }
            ApiAnswer::Bare401 | ApiAnswer::Basic401 => {
                matches!(result, Err(ApiError::Unauthorized { challenge: None }))
            }
            ApiAnswer::Other401 => matches!(result, Err(ApiError::Unauthorized { challenge: Some(_) })),
            ApiAnswer::Forbidden => {
                matches!(result, Err(ApiError::Forbidden { scope: Some(ref s), .. }) if s == "DomainApi")
            }
            ApiAnswer::TooMany => {
                result
                    == Err(ApiError::RateLimited {
                        retry_after: Some(RetryAfter::Delay(Duration::from_secs(7))),
                    })
            }
            ApiAnswer::Business500 => {
                matches!(result, Err(ApiError::Business { status: 500, ref error }) if error.message == "Entity not found")
            }
            ApiAnswer::Html502 => matches!(result, Err(ApiError::Status { status: 502, .. })),
        };
        assert!(ok, "API answer {answer:?} gave {result:?}");
    }

    fn drain(&mut self, max: usize, persist_ok: bool) {
        let mut n = 0;
        while max == 0 || n < max {
            n += 1;
            let Some(out) = self.sut.poll_output() else {
                assert!(self.m.expected.is_empty(), "missing outputs: {:?}", self.m.expected);
                return;
            };
            let exp = self.m.expected.pop_front();
            match out {
                Output::Refresh { id, request } => {
                    let Some(Expected::Refresh { rt }) = exp else {
                        panic!("unexpected Refresh output (expected {exp:?})")
                    };
                    assert_eq!(request.method(), http::Method::POST);
                    assert_eq!(request.uri(), "https://demodb.my.erp.net/id/connect/token");
                    let grant = form_field(request.body(), "grant_type");
                    let sent = form_field(request.body(), "refresh_token");
                    if self.m.cc {
                        assert_eq!(grant.as_deref(), Some("client_credentials"));
                        assert_eq!(form_field(request.body(), "scope").as_deref(), Some(CC_SCOPES));
                        assert_eq!(sent, None);
                        note("client credentials: renewal");
                    } else {
                        assert_eq!(grant.as_deref(), Some("refresh_token"));
                        let latest = self.m.cur.as_ref().and_then(|t| t.rt.clone());
                        assert_eq!(
                            sent, latest,
                            "invariant: the refresh request carries the latest refresh token"
                        );
                    }
                    assert_eq!(sent, rt);
                    assert!(!self.m.seen_ids.contains(&id), "a renewal id is used once");
                    self.m.seen_ids.push(id);
                    assert_eq!(self.m.renewal, Renewal::Queued { rt: rt.clone() });
                    // At most one refresh in flight: any request still unanswered was abandoned (login,
                    // logout, adopted store) and carries another refresh token.
                    note("drain: refresh");
                    if !self.m.outstanding.is_empty() {
                        note("drain: refresh while an abandoned one is unanswered");
                    }
                    for o in &self.m.outstanding {
                        if rt.is_some() {
                            assert_ne!(
                                o.rt, rt,
                                "invariant: two refresh requests with the same refresh token"
                            );
                        }
                    }
                    self.m.renewal = Renewal::InFlight { id, rt: rt.clone() };
                    self.m.outstanding.push(Outstanding { id, rt, sent: false });
                }
                Output::Persist { id, tokens } => {
                    let Some(Expected::Persist { tok }) = exp else {
                        panic!("unexpected Persist output (expected {exp:?})")
                    };
                    assert_eq!(Tok::of(&tokens), tok, "the tokens to persist");
                    assert!(
                        matches!(&self.m.renewal, Renewal::Persisting { id: cur, .. } if *cur == id),
                        "Persist for a renewal that is not being persisted"
                    );
                    note("drain: persist");
                    if persist_ok {
                        self.m.store = Some(tok);
                    }
                    self.m.acks.push((id, persist_ok));
                }
                Output::Clear => {
                    assert_eq!(exp, Some(Expected::Clear), "unexpected Clear output");
                    note("drain: clear");
                    self.m.store = None;
                }
                other => panic!("unknown output {other:?}"),
            }
        }
    }

    fn refresh(&mut self, o: Outstanding, answer: &RefreshAnswer) {
        let now = self.m.now;
        let n = self.m.next();
        let live = matches!(&self.m.renewal, Renewal::InFlight { id, .. } if *id == o.id);
        let old = self.m.cur.clone();
        let cc = self.m.cc;
        let (resp, verdict) = match &old {
            Some(old) => refresh_response(answer, old, cc, n, now),
            // No tokens: the answer is stale anyway; any valid-looking answer will do.
            None => refresh_response(
                answer,
                &Tok { at: String::new(), rt: None, exp: None, id: None, scopes: Scopes::default() },
                cc,
                n,
                now,
            ),
        };
        match &resp {
            Some(r) => self.sut.handle_refresh_response(o.id, r, now),
            None => self.sut.handle_refresh_failure(o.id, "connection reset", now),
        }
        if !live {
            note("refresh: stale answer");
            return; // no effect, checked by `check`
        }
        match verdict {
            Verdict::Accept(tok) => {
                note(if tok.rt.as_ref() == old.as_ref().and_then(|t| t.rt.as_ref()) {
                    "refresh: accepted, refresh token kept"
                } else {
                    "refresh: accepted, rotated"
                });
                self.m.renewal = Renewal::Persisting { id: o.id, tok: tok.clone() };
                self.m.expected.push_back(Expected::Persist { tok });
            }
            Verdict::InvalidGrant => {
                note("refresh: invalid_grant");
                self.m.renewal = Renewal::Idle;
                self.m.adopt(None);
                self.m.login_required = Why::Rejected;
                self.m.believed = None;
                self.m.may_drop = true;
                self.m.expected.push_back(Expected::Clear);
                self.m.fail(Why::Rejected);
            }
            Verdict::Reject(why) => {
                note(if why == Why::Transport {
                    "refresh: transport failure"
                } else {
                    "refresh: rejected answer"
                });
                self.m.renewal = Renewal::Idle;
                self.m.fail(why);
            }
        }
    }

    fn reload(&mut self, k: usize, stored: Stored) {
        let id = self.m.outstanding[k].id;
        let tok = match stored {
            Stored::FromStore => self.m.store.clone(),
            Stored::Other => {
                let t = self.m.new_tokens(true, Some(3600));
                self.m.store = Some(t.clone());
                Some(t)
            }
            Stored::Gone => {
                self.m.store = None;
                None
            }
        };
        let answer = self.sut.handle_reloaded(id, tok.as_ref().map(Tok::set));
        self.m.may_drop = tok.is_none();
        let live = matches!(&self.m.renewal, Renewal::InFlight { id: cur, .. } if *cur == id);
        if !live {
            note("reload: stale");
            assert_eq!(answer, Reloaded::Stale);
            return;
        }
        // The store holds the tokens in use, or what the manager itself last stored (behind them after a
        // failed write): send. Tokens someone else stored are adopted.
        let found = tok.as_ref().map(Tok::pair);
        if found == self.m.cur.as_ref().map(Tok::pair) || found == self.m.believed {
            note("reload: send");
            if found != self.m.cur.as_ref().map(Tok::pair) {
                note("reload: send, the store is behind after a failed write");
            }
            assert_eq!(answer, Reloaded::Send, "re-reading a store holding {tok:?}");
            self.m.outstanding[k].sent = true;
        } else {
            note("reload: adopted");
            assert_eq!(answer, Reloaded::Adopted, "re-reading a store holding {tok:?}");
            self.m.outstanding.remove(k);
            self.m.renewal = Renewal::Idle;
            if tok.is_none() {
                self.m.login_required = Why::NoTokens;
            }
            self.m.believed = found;
            self.m.adopt(tok);
        }
    }

    fn ack(&mut self, id: RefreshId, ok: bool) {
        let now = self.m.now;
        self.sut.handle_persisted(id, if ok { Ok(()) } else { Err("disk full".to_owned()) }, now);
        let Renewal::Persisting { id: cur, tok } = &self.m.renewal else { return };
        if *cur != id {
            return;
        }
        note(if ok { "ack: ok" } else { "ack: failed" });
        let tok = tok.clone();
        self.m.renewal = Renewal::Idle;
        self.m.adopt(Some(tok));
        if ok {
            self.m.believed = self.m.cur.as_ref().map(Tok::pair);
            self.m.retry_not_before = None;
        } else {
            self.m.fail(Why::Persist);
        }
    }

    fn check(&self) {
        assert_eq!(self.sut.tokens().map(Tok::of), self.m.cur, "the tokens in use");
        assert_eq!(self.sut.generation(), self.m.generation, "generation");
        assert_eq!(
            self.sut.is_renewing(),
            self.m.renewal != Renewal::Idle,
            "is_renewing ({:?})",
            self.m.renewal
        );
        assert_eq!(self.sut.poll_timeout(), self.m.poll_timeout(), "poll_timeout");
        for (i, c) in self.m.calls.iter().enumerate() {
            assert!(c.retries <= 1, "invariant: call {i} retried {} times", c.retries);
        }
    }

    /// Liveness at the end: with the server answering well and the store working, every call still
    /// waiting gets a token or an error within a few rounds.
    fn settle(&mut self) {
        for _ in 0..4 {
            self.step(&Step::Serve { expires_in: Some(3600), persist_ok: true, shared: false });
            let waiting: Vec<usize> =
                (0..self.m.calls.len()).filter(|&i| self.m.calls[i].phase == Phase::Need).collect();
            if waiting.is_empty() {
                return;
            }
            for i in waiting {
                self.authorize(i, false);
                self.check();
            }
        }
        let waiting = self.m.calls.iter().filter(|c| c.phase == Phase::Need).count();
        assert_eq!(waiting, 0, "liveness: {waiting} call(s) still waiting after the renewals were answered");
    }
}

thread_local! {
    /// How often each interesting event happened, for the coverage test.
    static EVENTS: std::cell::RefCell<std::collections::BTreeMap<&'static str, usize>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

fn note(event: &'static str) {
    EVENTS.with(|e| *e.borrow_mut().entry(event).or_default() += 1);
}

fn run_case(cc: bool, initial: Option<Tok>, steps: &[Step]) {
    let mut h = Harness::new(cc, initial);
    h.check();
    for s in steps {
        h.step(s);
    }
    h.settle();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        max_shrink_iters: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/manager_props.txt"))),
        ..ProptestConfig::default()
    })]

    /// Random interleavings keep the manager in step with the model and every invariant holds.
    #[test]
    fn token_manager_state_machine(
        cc in prop::bool::weighted(0.2),
        initial in initial(),
        steps in prop::collection::vec(step(), 1..MAX_STEPS),
    ) {
        run_case(cc, initial, &steps);
    }
}

/// A fixed run through the common path, so a model bug that made every case vacuous would show here.
#[test]
fn the_common_path_is_exercised() {
    let initial = Tok {
        at: "at-0".to_owned(),
        rt: Some("rt-0".to_owned()),
        exp: Some(UNIX_EPOCH + Duration::from_secs(T0 + 30)),
        id: Some(jwt("admin", T0)),
        scopes: Scopes::erpnet_default(),
    };
    let mut h = Harness::new(false, Some(initial));
    h.step(&Step::Begin);
    h.step(&Step::Begin);
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Authorize { call: 1, header: false });
    assert_eq!(h.m.expected.len(), 1, "one refresh for two callers (E7)");
    h.step(&Step::Drain { max: 0, persist_ok: true });
    let answer =
        RefreshAnswer::Success { rotate: true, expires_in: Some(3600), id: IdAnswer::Same, scope: false };
    h.step(&Step::Refresh { which: 0, answer });
    h.step(&Step::Drain { max: 0, persist_ok: true });
    h.step(&Step::Ack { which: 0 });
    assert_eq!(h.sut.tokens().and_then(|t| t.refresh_token.as_ref()).map(|r| r.secret()), Some("rt-1"));
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Api { call: 0, answer: ApiAnswer::InvalidToken });
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Drain { max: 0, persist_ok: true });
    h.step(&Step::Refresh { which: 0, answer: RefreshAnswer::InvalidGrant });
    h.step(&Step::Drain { max: 0, persist_ok: true });
    assert!(h.sut.tokens().is_none());
    assert_eq!(h.m.store, None, "the store was cleared");
    h.settle();
}

/// The generated cases reach every interesting situation, so the properties above are not vacuous.
#[test]
fn the_cases_cover_every_situation() {
    EVENTS.with(|e| e.borrow_mut().clear());
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    runner
        .run(
            &(prop::bool::weighted(0.2), initial(), prop::collection::vec(step(), 1..MAX_STEPS)),
            |(cc, initial, steps)| {
                run_case(cc, initial, &steps);
                Ok(())
            },
        )
        .unwrap();
    let events = EVENTS.with(|e| e.borrow().clone());
    eprintln!("{events:#?}");
    for event in [
        "ready",
        "wait",
        "failed: no tokens",
        "failed: no refresh token",
        "failed: rejected",
        "failed: token error",
        "failed: transport",
        "failed: persist",
        "api: retry",
        "api: second 401 returned",
        "drain: refresh",
        "drain: refresh while an abandoned one is unanswered",
        "drain: persist",
        "drain: clear",
        "an input while an output waits to be drained",
        "refresh: stale answer",
        "refresh: accepted, rotated",
        "refresh: accepted, refresh token kept",
        "refresh: invalid_grant",
        "refresh: transport failure",
        "refresh: rejected answer",
        "reload: stale",
        "reload: send",
        "reload: adopted",
        "reload: send, the store is behind after a failed write",
        "ack: ok",
        "ack: failed",
        "timer: renewal",
        "force: renewal",
        "tokens dropped",
        "client credentials: renewal",
    ] {
        assert!(
            events.get(event).copied().unwrap_or(0) >= 3,
            "`{event}` happened fewer than 3 times: {events:#?}"
        );
    }
}
