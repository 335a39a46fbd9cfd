//! State-machine property tests of [`TokenManager`].
//!
//! Each case is a random sequence of [`Step`]s: API calls in several phases, API answers, draining the
//! manager's outputs (sometimes late, so they pile up; sometimes split with `poll_follow_up` and
//! `take_refresh`), answers to the refresh and key requests the adapter holds, store re-reads, persistence
//! acks, logins, logouts (started while a renewal is in flight, finished or aborted), forced refreshes and
//! clock ticks. Every step is applied to the manager (the system under test) and to a small reference
//! [`Model`] that says what the manager must do; after every step the two are compared and the invariants
//! of the module docs are asserted on their own, with messages naming them. Steps refer to calls and
//! requests by an index taken modulo the ones that exist, so every sequence is valid and shrinks well; a
//! step with nothing to act on does nothing.
//!
//! The server's answers cover the rules of catalogue E9-E14: access-token lifetimes from 0 s to 2 h
//! (weighted around the skew, where the margin stops being half the lifetime) or none at all, a server
//! clock up to ten minutes off the client's (its ID tokens' `iat` and `exp` are on its clock), refreshed
//! ID tokens really signed with the test-only keys of `tests/keys/` that pass or fail each check, and 200
//! answers whose body cannot be used, with and without a readable `refresh_token`.
//!
//! Besides the comparison with the model, after every step:
//! - (a) one API call causes at most one renewal: the renewals each call triggered or was told to wait
//!   for are counted (catalogue E9);
//! - (b) a refresh token sent in a request answered 200 that spent it is never sent again: every
//!   `Output::Refresh` body is checked against the spent ones (a well-formed answer without a new
//!   refresh token keeps the old one, catalogue E3; an unusable 200 spends it, E10);
//! - (c) tokens refused by a security check (catalogue E4, E11) are never handed out by `access_token` or
//!   `authorize`, never in a `Persist`, never in use;
//! - and the earlier ones: a token within the margin (or expired) is handed out only to a call that
//!   waited for a renewal; a new token is not handed out before it is stored; the refresh request carries
//!   the latest refresh token, and no two requests the same one; tokens are dropped only on
//!   `invalid_grant`, a refused ID token, an empty store or a logout; a call is retried at most once;
//!   `Wait` only while a renewal or a logout is under way, and every waiting call is answered once the
//!   server answers well (liveness, at the end of each case).
//!
//! The adapter simulated here writes the store when it drains a `Persist` (and deletes it on `Clear`),
//! and may deliver the ack much later.

use base64::Engine as _;
use erpnet_oauth_core::{
    Access, AccessToken, ApiCall, ApiError, ApiOutcome, ClientConfig, ClientSecret, IdToken, LoginRequired,
    ManagerOptions, Output, RefreshError, RefreshId, RefreshToken, Reloaded, RetryAfter, Scopes,
    TokenManager, TokenSet, half_hash, http,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ring::signature as sig;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_655_057_724;
const SKEW: Duration = Duration::from_secs(60);
const BACKOFF: Duration = Duration::from_secs(10);
/// The lifetime given to an access token whose answer has no `expires_in` (catalogue E12).
const FALLBACK: Duration = Duration::from_secs(300);
/// The key cache's minimum time between two fetches (`KeyCache::DEFAULT_REFETCH_INTERVAL`).
const REFETCH: Duration = Duration::from_secs(60);
const ISS: &str = "https://demodb.my.erp.net/id";
const AUD: &str = "my.trusted.app/first";
const TOKEN_URI: &str = "https://demodb.my.erp.net/id/connect/token";
const JWKS_URI: &str = "https://demodb.my.erp.net/id/.well-known/openid-configuration/jwks";
/// The lifetime of the ID tokens the server issues, on its own clock.
const ID_LIFETIME: u64 = 300;
/// The `auth_time` of every ID token: the same login session throughout.
const AUTH_TIME: u64 = T0 - 30;
const MAX_CALLS: usize = 8;
const MAX_STEPS: usize = 150;

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
    ManagerOptions::new(renewal).skew(SKEW).retry_backoff(BACKOFF).fallback_lifetime(FALLBACK)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------------
// The issuer's keys and ID tokens
// ---------------------------------------------------------------------------------------------------

const RSA_A: &[u8] = include_bytes!("keys/test-only-rsa-2048-a.pk8.der");
const RSA_B: &[u8] = include_bytes!("keys/test-only-rsa-2048-b.pk8.der");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The test-only signing keys: `a` is the issuer's current key (kid `a`), `b` a second one (kid `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Signer {
    A,
    B,
}

fn key_pair(signer: Signer) -> &'static sig::RsaKeyPair {
    static KEYS: OnceLock<[sig::RsaKeyPair; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [sig::RsaKeyPair::from_pkcs8(RSA_A).unwrap(), sig::RsaKeyPair::from_pkcs8(RSA_B).unwrap()]
    });
    match signer {
        Signer::A => &keys[0],
        Signer::B => &keys[1],
    }
}

/// The public half of `signer` as a JWK.
fn jwk(signer: Signer) -> Value {
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(key_pair(signer).public());
    let kid = match signer {
        Signer::A => "a",
        Signer::B => "b",
    };
    json!({"kty": "RSA", "use": "sig", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)})
}

thread_local! {
    /// RS256 signatures already computed (shrinking replays the same cases).
    static SIGNATURES: std::cell::RefCell<HashMap<(Signer, String), String>> =
        std::cell::RefCell::new(HashMap::new());
}

/// A compact JWS of `claims` under `header`, signed RS256 with `signer`.
fn sign(signer: Signer, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = SIGNATURES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() > 20_000 {
            cache.clear();
        }
        cache
            .entry((signer, input.clone()))
            .or_insert_with(|| {
                let k = key_pair(signer);
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut out)
                    .unwrap();
                b64(&out)
            })
            .clone()
    });
    format!("{input}.{signature}")
}

/// What an ID token the test minted is, for the model's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IdKind {
    /// Signed by key `a` with kid `a`, every claim right.
    Good,
    /// Signed by key `b` with kid `b` (a key rotation): verifies once the JWKS holds `b`.
    OtherKey,
    /// Names kid `a` but is signed by key `b`.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// Another `iss`.
    ChangedIss,
    /// `azp` names another client.
    OtherAzp,
    /// `at_hash` of another access token.
    AtHashWrong,
    /// `exp` equal to `iat`: expired when issued, at the server's own time.
    Expired,
    /// Not a JWT at all.
    Malformed,
}

#[derive(Debug, Clone)]
struct IdInfo {
    kind: IdKind,
    sub: String,
    /// `aud` as `["x"]` instead of `"x"` (RFC 7519 §4.1.3: the same audience).
    aud_array: bool,
    /// `azp` (the client id) present.
    azp: bool,
}

impl IdInfo {
    /// The header is readable and names an algorithm the client accepts: the keys can be looked up (and
    /// the claims read again as the original of a later refresh).
    fn signed(&self) -> bool {
        !matches!(self.kind, IdKind::AlgNone | IdKind::Malformed)
    }

    /// The key the header names.
    fn kid(&self) -> Signer {
        if self.kind == IdKind::OtherKey { Signer::B } else { Signer::A }
    }
}

// ---------------------------------------------------------------------------------------------------
// The model's view of a token set
// ---------------------------------------------------------------------------------------------------

/// The model's view of a token set: plain values.
#[derive(Debug, Clone, PartialEq)]
struct Tok {
    at: String,
    rt: Option<String>,
    exp: Option<SystemTime>,
    iat: Option<SystemTime>,
    id: Option<String>,
    scopes: Scopes,
}

impl Tok {
    fn of(t: &TokenSet) -> Tok {
        Tok {
            at: t.access_token.secret().to_owned(),
            rt: t.refresh_token.as_ref().map(|r| r.secret().to_owned()),
            exp: t.expires_at,
            iat: t.issued_at,
            id: t.id_token.as_ref().map(|i| i.secret().to_owned()),
            scopes: t.scopes.clone(),
        }
    }

    fn set(&self) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(&self.at),
            expires_at: self.exp,
            issued_at: self.iat,
            refresh_token: self.rt.as_deref().map(RefreshToken::new),
            id_token: self.id.as_deref().map(IdToken::new),
            scopes: self.scopes.clone(),
        }
    }

    fn pair(&self) -> (String, Option<String>) {
        (self.at.clone(), self.rt.clone())
    }

    /// The refresh margin: the skew, but at most half the token's lifetime (catalogue E9).
    fn margin(&self) -> Duration {
        match (self.iat, self.exp) {
            (Some(iat), Some(exp)) => SKEW.min(exp.duration_since(iat).unwrap_or(Duration::ZERO) / 2),
            _ => SKEW,
        }
    }

    /// Fresh while `now` is before [`Self::fresh_until`].
    fn fresh(&self, now: SystemTime) -> bool {
        self.fresh_until().is_none_or(|until| now < until)
    }

    /// The expiry less the margin, rounded up to a whole second (times are kept in whole seconds), never
    /// after the expiry.
    fn fresh_until(&self) -> Option<SystemTime> {
        let exp = self.exp?.duration_since(UNIX_EPOCH).unwrap();
        let edge = exp.saturating_sub(self.margin());
        let secs = edge.as_secs() + u64::from(edge.subsec_nanos() > 0);
        Some(UNIX_EPOCH + Duration::from_secs(secs).min(exp))
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

/// The ID token of a refresh answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IdAnswer {
    None,
    /// The current one's `sub`, `aud` form and `azp`, newly issued.
    Same,
    /// The current ID token again, unchanged (nothing new to verify).
    Repeat,
    /// `aud` as `["x"]` where the original had `"x"`, or the other way round: must be accepted.
    AudForm,
    /// Signed with the second key (kid `b`).
    OtherKey,
    BadSignature,
    AlgNone,
    /// Another subject (catalogue E4: rejected when there is an original to compare with).
    ChangedSub,
    ChangedIss,
    OtherAzp,
    AtHashWrong,
    Expired,
    Malformed,
}

/// The `refresh_token` member of a 200 answer that fails parsing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RtField {
    Absent,
    Readable,
    Number,
    Empty,
}

/// What makes a 200 answer unusable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    NoAccessToken,
    ExpiresInText,
    NoTokenType,
    IdTokenNumber,
    /// The members wrapped in an array: the refresh token is not the answer's.
    NotAnObject,
}

#[derive(Debug, Clone)]
enum RefreshAnswer {
    /// A token response; `expires_in: Some(0)` is invalid, so the answer fails parsing.
    Success {
        rotate: bool,
        expires_in: Option<u64>,
        id: IdAnswer,
        scope: bool,
    },
    Malformed200 {
        rt: RtField,
        flaw: Flaw,
    },
    InvalidGrant,
    OtherOAuth {
        status: u16,
    },
    ServerError {
        status: u16,
        json: bool,
    },
    Html {
        status: u16,
    },
    MalformedJson,
    Bytes {
        status: u16,
        body: Vec<u8>,
    },
    WrongTokenType,
    Redirect,
    Transport,
}

/// The answer to a key fetch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum JwksAnswer {
    /// Key `a`.
    Good,
    /// Keys `a` and `b`.
    Rotated,
    Transport,
    Unavailable,
    Malformed,
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
    /// Drains up to `max` outputs (0: all); with `split`, all of them, the follow-ups with
    /// `poll_follow_up` first, then the refresh request with `take_refresh`. Persist outputs are written
    /// with `persist_ok`.
    Drain {
        max: usize,
        persist_ok: bool,
        split: bool,
    },
    Refresh {
        which: usize,
        answer: RefreshAnswer,
    },
    Keys {
        which: usize,
        answer: JwksAnswer,
    },
    Reload {
        which: usize,
        stored: Stored,
    },
    Ack {
        which: usize,
    },
    /// A quick round trip: drain, answer every held refresh request with new rotated tokens and `id`
    /// (after re-reading the store, when `shared`), drain, answer the key fetches with the keys, drain,
    /// ack.
    Serve {
        expires_in: Option<u64>,
        id: IdAnswer,
        persist_ok: bool,
        shared: bool,
    },
    Force,
    /// `force_refresh_for` a new call (the CLI's `refresh`).
    ForceFor,
    Login {
        rt: bool,
        expires_in: Option<u64>,
        id: bool,
    },
    /// A local logout at once (`handle_logout`).
    Logout,
    /// `begin_logout`: refused while a renewal is under way (catalogue G4).
    BeginLogout,
    /// The logout begun ends: `handle_logout`, or `abort_logout`.
    EndLogout {
        finish: bool,
    },
    /// The driver gives up on the renewal being verified or stored (`handle_refresh_failure`).
    Abandon,
    /// Moves the clock; with `fire`, calls `handle_timeout` when `poll_timeout` is due.
    Tick {
        secs: u64,
        fire: bool,
    },
    Timeout,
}

/// Access-token lifetimes from 0 s (invalid in a token response) to 2 h, weighted below, at and just
/// above the skew and twice the skew (where the margin stops being half the lifetime), and missing.
fn expires_in() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        5 => prop::sample::select(vec![0u64, 1, 2, 5, 29, 30, 31, 59, 60, 61, 119, 120, 121, 3600, 7200])
            .prop_map(Some),
        1 => (0u64..=130).prop_map(Some),
        2 => (0u64..=7200).prop_map(Some),
    ]
}

/// The server's clock minus the client's, in seconds: up to ten minutes either way.
fn clock_offset() -> impl Strategy<Value = i64> {
    prop_oneof![2 => Just(0i64), 1 => Just(-600i64), 1 => Just(600i64), 3 => -600i64..=600]
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

fn id_answer() -> impl Strategy<Value = IdAnswer> {
    use IdAnswer::*;
    prop_oneof![
        4 => Just(None),
        6 => Just(Same),
        1 => Just(Repeat),
        2 => Just(AudForm),
        1 => Just(OtherKey),
        1 => Just(BadSignature),
        1 => Just(AlgNone),
        1 => Just(ChangedSub),
        1 => Just(ChangedIss),
        1 => Just(OtherAzp),
        1 => Just(AtHashWrong),
        1 => Just(Expired),
        1 => Just(Malformed),
    ]
}

fn refresh_answer() -> impl Strategy<Value = RefreshAnswer> {
    use RefreshAnswer::*;
    let rt = prop_oneof![
        2 => Just(RtField::Absent),
        3 => Just(RtField::Readable),
        1 => Just(RtField::Number),
        1 => Just(RtField::Empty),
    ];
    let flaw = prop::sample::select(vec![
        Flaw::NoAccessToken,
        Flaw::ExpiresInText,
        Flaw::NoTokenType,
        Flaw::IdTokenNumber,
        Flaw::NotAnObject,
    ]);
    prop_oneof![
        10 => (prop::bool::weighted(0.8), expires_in(), id_answer(), any::<bool>())
            .prop_map(|(rotate, expires_in, id, scope)| Success { rotate, expires_in, id, scope }),
        2 => (rt, flaw).prop_map(|(rt, flaw)| Malformed200 { rt, flaw }),
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

fn jwks_answer() -> impl Strategy<Value = JwksAnswer> {
    use JwksAnswer::*;
    prop_oneof![5 => Just(Good), 2 => Just(Rotated), 2 => Just(Transport), 1 => Just(Unavailable), 1 => Just(Malformed)]
}

fn step() -> impl Strategy<Value = Step> {
    let idx = 0usize..16;
    let stored = prop_oneof![4 => Just(Stored::FromStore), 1 => Just(Stored::Other), 1 => Just(Stored::Gone)];
    prop_oneof![
        6 => Just(Step::Begin),
        16 => (idx.clone(), any::<bool>()).prop_map(|(call, header)| Step::Authorize { call, header }),
        12 => (idx.clone(), api_answer()).prop_map(|(call, answer)| Step::Api { call, answer }),
        12 => (prop_oneof![2 => Just(0usize), 1 => 1usize..3], prop::bool::weighted(0.6), prop::bool::weighted(0.2))
            .prop_map(|(max, persist_ok, split)| Step::Drain { max, persist_ok, split }),
        12 => (idx.clone(), refresh_answer()).prop_map(|(which, answer)| Step::Refresh { which, answer }),
        6 => (idx.clone(), jwks_answer()).prop_map(|(which, answer)| Step::Keys { which, answer }),
        6 => (idx.clone(), stored).prop_map(|(which, stored)| Step::Reload { which, stored }),
        8 => idx.prop_map(|which| Step::Ack { which }),
        4 => (expires_in(), id_answer(), prop::bool::weighted(0.7), any::<bool>())
            .prop_map(|(expires_in, id, persist_ok, shared)| Step::Serve { expires_in, id, persist_ok, shared }),
        2 => Just(Step::Force),
        1 => Just(Step::ForceFor),
        3 => (prop::bool::weighted(0.9), expires_in(), prop::bool::weighted(0.8))
            .prop_map(|(rt, expires_in, id)| Step::Login { rt, expires_in, id }),
        1 => Just(Step::Logout),
        1 => Just(Step::BeginLogout),
        // A logout holds the manager: it ends soon, mostly aborted (so that the case goes on).
        8 => prop::bool::weighted(0.3).prop_map(|finish| Step::EndLogout { finish }),
        2 => Just(Step::Abandon),
        8 => (prop_oneof![2 => 0u64..=3, 1 => 0u64..=120, 1 => 0u64..=7200], prop::bool::weighted(0.7))
            .prop_map(|(secs, fire)| Step::Tick { secs, fire }),
        2 => Just(Step::Timeout),
    ]
}

/// The ID token the manager starts with.
#[derive(Debug, Clone, Copy)]
enum InitialId {
    None,
    /// A login's, signed.
    Signed {
        aud_array: bool,
        azp: bool,
    },
    /// One that cannot be read again: a refreshed ID token is then verified on its own.
    Unreadable,
}

/// The tokens the manager starts with: a login's (maybe already expired, maybe issued long ago or at an
/// unknown time, maybe without a refresh token or ID token).
#[derive(Debug, Clone, Copy)]
struct Initial {
    /// `expires_at` relative to T0; `None`: unknown (a static token).
    exp: Option<i64>,
    /// `issued_at` this long before T0; `None`: unknown.
    issued_ago: Option<u64>,
    rt: bool,
    id: InitialId,
}

fn initial() -> impl Strategy<Value = Option<Initial>> {
    let exp = prop_oneof![
        1 => Just(None),
        4 => (-200i64..200).prop_map(Some),
        4 => (0i64..7200).prop_map(Some),
    ];
    let issued = prop_oneof![
        2 => Just(None),
        1 => (0u64..7200).prop_map(Some),
        2 => prop::sample::select(vec![0u64, 1, 5, 30, 60, 61, 120, 300, 3600]).prop_map(Some),
    ];
    let id = prop_oneof![
        1 => Just(InitialId::None),
        4 => (any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(aud_array, azp)| InitialId::Signed { aud_array, azp }),
        1 => Just(InitialId::Unreadable),
    ];
    let tok = (exp, issued, prop::bool::weighted(0.9), id)
        .prop_map(|(exp, issued_ago, rt, id)| Some(Initial { exp, issued_ago, rt, id }));
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
    IdTokenRejected,
}

fn why(e: &RefreshError) -> Why {
    match e {
        RefreshError::LoginRequired(LoginRequired::NoTokens) => Why::NoTokens,
        RefreshError::LoginRequired(LoginRequired::NoRefreshToken) => Why::NoRefreshToken,
        RefreshError::LoginRequired(LoginRequired::Rejected(_)) => Why::Rejected,
        RefreshError::Token(_) => Why::Token,
        RefreshError::Transport(_) => Why::Transport,
        RefreshError::Persist(_) => Why::Persist,
        RefreshError::IdTokenRejected(_) => Why::IdTokenRejected,
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
    /// It waited for a renewal (its own or another's): it gets whatever tokens are there afterwards, and
    /// a 401 to it is returned (catalogue E9).
    renewed: bool,
    /// The serial of the renewal it waited for: once that one is over, it waits for no other.
    waited_for: Option<u64>,
}

/// The state of the key fetch of a renewal being verified.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fetch {
    None,
    Sent,
    Answered,
    Failed,
}

/// The manager's state. Renewals carry a serial number, to count the renewals each call is part of.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    /// A Refresh output for `rt` is queued, not yet drained.
    Queued {
        rt: Option<String>,
        serial: u64,
    },
    /// The adapter holds the Refresh request.
    InFlight {
        id: RefreshId,
        rt: Option<String>,
        serial: u64,
    },
    /// The answer brought a new ID token, being verified (its keys maybe being fetched).
    Verifying {
        id: RefreshId,
        tok: Tok,
        fetch: Fetch,
        serial: u64,
    },
    /// The tokens are to be stored; `failure` is reported after the ack.
    Persisting {
        id: RefreshId,
        tok: Tok,
        failure: Option<Why>,
        serial: u64,
    },
    LoggingOut,
}

impl State {
    fn renewing(&self) -> bool {
        matches!(
            self,
            State::Queued { .. }
                | State::InFlight { .. }
                | State::Verifying { .. }
                | State::Persisting { .. }
        )
    }

    fn serial(&self) -> Option<u64> {
        match self {
            State::Queued { serial, .. }
            | State::InFlight { serial, .. }
            | State::Verifying { serial, .. }
            | State::Persisting { serial, .. } => Some(*serial),
            State::Idle | State::LoggingOut => None,
        }
    }
}

/// An output the model expects, in order.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Refresh { rt: Option<String> },
    FetchKeys,
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

/// What the manager must do with a refresh answer.
#[derive(Debug)]
enum Verdict {
    Accept(Tok),
    InvalidGrant,
    Reject(Why),
    /// A 200 answer that cannot be used: the refresh token sent is spent; the tokens in use are kept
    /// with this refresh token (catalogue E10).
    Salvage(Option<String>),
}

/// Why a refreshed ID token fails verification.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    /// Its key is not among those held.
    UnknownKey,
    /// Any other check: a security failure.
    Check(&'static str),
}

#[derive(Debug)]
struct Model {
    /// Renewal with `client_credentials` instead of the refresh token.
    cc: bool,
    now: SystemTime,
    /// The server's clock minus the client's, in seconds.
    offset: i64,
    cur: Option<Tok>,
    generation: u64,
    rejected: bool,
    state: State,
    expected: VecDeque<Expected>,
    login_required: Why,
    retry_not_before: Option<SystemTime>,
    store: Option<Tok>,
    /// The access and refresh token the manager knows to be in the store: what it was created with,
    /// last stored successfully, logged in with or adopted from the store.
    believed: Option<(String, Option<String>)>,
    /// Pairs whose write was abandoned (the adapter may or may not have stored them) since the last
    /// confirmed write: the store may hold them, and they are the manager's own.
    unconfirmed: Vec<(String, Option<String>)>,
    /// Set by the steps that may drop the tokens: an `invalid_grant` answer, a refreshed ID token
    /// refused, a re-read store found empty, a logout.
    may_drop: bool,
    calls: Vec<Call>,
    outstanding: Vec<Outstanding>,
    /// Key fetches the adapter drained and has not answered.
    key_fetches: Vec<RefreshId>,
    acks: Vec<(RefreshId, bool)>,
    counter: u64,
    serial: u64,
    seen_ids: Vec<RefreshId>,
    /// Every ID token the test minted.
    ids: HashMap<String, IdInfo>,
    /// The keys the manager's cache holds (`a`, `b`), and when it last asked for them.
    keys: (bool, bool),
    keys_fetched_at: Option<SystemTime>,
    /// Refresh tokens sent in a request answered 200 that spent them (invariant (b)).
    spent: HashSet<String>,
    /// Access tokens of answers refused by a security check (invariant (c)).
    refused: HashSet<String>,
}

impl Model {
    fn new(cc: bool, offset: i64, initial: Option<Initial>) -> Model {
        let mut m = Model {
            cc,
            now: at(T0),
            offset,
            cur: None,
            generation: 0,
            rejected: false,
            state: State::Idle,
            expected: VecDeque::new(),
            login_required: Why::NoTokens,
            retry_not_before: None,
            store: None,
            believed: None,
            unconfirmed: Vec::new(),
            may_drop: false,
            calls: Vec::new(),
            outstanding: Vec::new(),
            key_fetches: Vec::new(),
            acks: Vec::new(),
            counter: 0,
            serial: 0,
            seen_ids: Vec::new(),
            ids: HashMap::new(),
            keys: (false, false),
            keys_fetched_at: None,
            spent: HashSet::new(),
            refused: HashSet::new(),
        };
        let tok = initial.map(|i| Tok {
            at: "at-0".to_owned(),
            rt: i.rt.then(|| "rt-0".to_owned()),
            exp: i.exp.map(|o| at(T0.saturating_add_signed(o))),
            iat: i.issued_ago.map(|ago| at(T0 - ago)),
            id: match i.id {
                InitialId::None => None,
                InitialId::Signed { aud_array, azp } => {
                    Some(m.mint(IdKind::Good, "admin", aud_array, azp, "at-0"))
                }
                InitialId::Unreadable => Some(m.mint(IdKind::Malformed, "admin", false, false, "at-0")),
            },
            scopes: Scopes::erpnet_default(),
        });
        m.believed = tok.as_ref().map(Tok::pair);
        m.store = tok.clone();
        m.cur = tok;
        m
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The server's clock now.
    fn server_now(&self) -> u64 {
        unix(self.now).saturating_add_signed(self.offset)
    }

    /// An ID token issued now (on the server's clock) for access token `at`.
    fn mint(&mut self, kind: IdKind, sub: &str, aud_array: bool, azp: bool, at: &str) -> String {
        let n = self.next();
        let iat = self.server_now();
        let mut claims = json!({
            "iss": ISS, "sub": sub, "aud": if aud_array { json!([AUD]) } else { json!(AUD) },
            "iat": iat, "exp": iat + ID_LIFETIME, "auth_time": AUTH_TIME, "at_hash": half_hash(at),
            "jti": format!("id-{n}"),
        });
        if azp {
            claims["azp"] = AUD.into();
        }
        let rs256 = |kid: &str| json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
        let jwt = match kind {
            IdKind::Good => sign(Signer::A, &rs256("a"), &claims),
            IdKind::OtherKey => sign(Signer::B, &rs256("b"), &claims),
            IdKind::BadSignature => sign(Signer::B, &rs256("a"), &claims),
            IdKind::AlgNone => format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            ),
            IdKind::ChangedIss => {
                claims["iss"] = "https://evil.example/id".into();
                sign(Signer::A, &rs256("a"), &claims)
            }
            IdKind::OtherAzp => {
                claims["azp"] = "someone.else/app".into();
                sign(Signer::A, &rs256("a"), &claims)
            }
            IdKind::AtHashWrong => {
                claims["at_hash"] = half_hash("another access token").into();
                sign(Signer::A, &rs256("a"), &claims)
            }
            IdKind::Expired => {
                claims["exp"] = iat.into();
                sign(Signer::A, &rs256("a"), &claims)
            }
            IdKind::Malformed => format!("h{n}.p.s"),
        };
        self.ids.insert(jwt.clone(), IdInfo { kind, sub: sub.to_owned(), aud_array, azp });
        jwt
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

    /// The login is over: the tokens are dropped and the store is to be cleared.
    fn end_login(&mut self, why: Why) {
        self.state = State::Idle;
        self.adopt(None);
        self.login_required = why;
        self.believed = None;
        self.unconfirmed.clear();
        self.may_drop = true;
        self.expected.push_back(Expected::Clear);
    }

    fn queue_renewal(&mut self) {
        assert!(self.can_renew(), "model: renewal impossible");
        let rt = if self.cc { None } else { self.cur.as_ref().and_then(|t| t.rt.clone()) };
        self.serial += 1;
        self.state = State::Queued { rt: rt.clone(), serial: self.serial };
        self.expected.push_back(Expected::Refresh { rt });
    }

    fn can_renew(&self) -> bool {
        self.cc || self.cur.as_ref().is_some_and(|t| t.rt.is_some())
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        if self.state != State::Idle || !self.can_renew() {
            return None;
        }
        let due = self.cur.as_ref()?.fresh_until()?;
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
        if self.state == State::LoggingOut {
            // Waiting for a logout is not waiting for a renewal.
            note("wait: logging out");
            return Err(None);
        }
        if let Some(serial) = self.state.serial() {
            let c = &mut self.calls[i];
            if c.waited_for.is_none_or(|s| s == serial) {
                c.renewed = true;
                c.waited_for = Some(serial);
                return Err(None);
            }
            note("ready or failed: a call whose renewal is over does not wait for another");
        }
        let renewed = self.calls[i].renewed;
        match &self.cur {
            None if !self.can_renew() || renewed => {
                self.calls[i].phase = Phase::Done;
                Err(Some(self.login_required))
            }
            Some(t) if renewed || (!self.rejected && t.fresh(self.now)) => {
                let at = t.at.clone();
                if !t.fresh(self.now) || self.rejected {
                    note("ready: a stale or refused token to a call that waited for a renewal");
                } else if t.margin() < SKEW {
                    note("ready: a short-lived token within its reduced margin");
                }
                self.calls[i].phase = Phase::Sent { generation: self.generation, at: at.clone() };
                Ok(at)
            }
            _ if self.can_renew() => {
                self.queue_renewal();
                self.calls[i].renewed = true;
                self.calls[i].waited_for = Some(self.serial);
                Err(None)
            }
            _ => {
                self.calls[i].phase = Phase::Done;
                Err(Some(Why::NoRefreshToken))
            }
        }
    }

    /// Fresh tokens as another process would have them after renewing (same ID token).
    fn other_process_tokens(&mut self) -> Tok {
        let n = self.next();
        Tok {
            at: format!("at-{n}"),
            rt: Some(format!("rt-{n}")),
            exp: Some(self.now + Duration::from_secs(3600)),
            iat: Some(self.now),
            id: self.cur.as_ref().and_then(|t| t.id.clone()),
            scopes: Scopes::erpnet_default(),
        }
    }

    /// A login's tokens: issued now, with the fallback lifetime when the answer had no `expires_in`.
    fn login_tokens(&mut self, rt: bool, expires_in: Option<u64>, id: bool) -> Tok {
        let n = self.next();
        let at = format!("at-{n}");
        let id = id.then(|| self.mint(IdKind::Good, "admin", false, false, &at));
        Tok {
            rt: rt.then(|| format!("rt-{n}")),
            exp: Some(self.now + expires_in.map_or(FALLBACK, Duration::from_secs)),
            iat: Some(self.now),
            id,
            scopes: Scopes::erpnet_default(),
            at,
        }
    }

    fn persist(&mut self, id: RefreshId, serial: u64, tok: Tok, failure: Option<Why>) {
        self.expected.push_back(Expected::Persist { tok: tok.clone() });
        self.state = State::Persisting { id, tok, failure, serial };
    }

    /// The verdict on a live refresh answer.
    fn answered(&mut self, id: RefreshId, serial: u64, verdict: Verdict) {
        match verdict {
            Verdict::Accept(tok) => {
                let old_id = self.cur.as_ref().and_then(|t| t.id.clone());
                note(if tok.rt.is_some() && tok.rt == self.cur.as_ref().and_then(|t| t.rt.clone()) {
                    "refresh: accepted, refresh token kept"
                } else {
                    "refresh: accepted, rotated"
                });
                if !self.cc && tok.id.is_some() && tok.id != old_id {
                    self.state = State::Verifying { id, tok, fetch: Fetch::None, serial };
                    self.verify();
                } else {
                    self.persist(id, serial, tok, None);
                }
            }
            Verdict::Salvage(rt) => {
                note(if rt.is_some() {
                    "refresh: unusable 200, refresh token salvaged"
                } else {
                    "refresh: unusable 200, no refresh token left"
                });
                let mut kept = self.cur.clone().expect("a live renewal without tokens");
                kept.rt = rt;
                self.persist(id, serial, kept, Some(Why::Token));
            }
            Verdict::InvalidGrant => {
                note("refresh: invalid_grant");
                self.end_login(Why::Rejected);
                self.fail(Why::Rejected);
            }
            Verdict::Reject(why) => {
                note(if why == Why::Transport {
                    "refresh: transport failure"
                } else {
                    "refresh: rejected answer"
                });
                self.state = State::Idle;
                self.fail(why);
            }
        }
    }

    fn key_known(&self, kid: Signer) -> bool {
        match kid {
            Signer::A => self.keys.0,
            Signer::B => self.keys.1,
        }
    }

    /// Verifies the new ID token of the renewal being verified (catalogue E11), after asking for the keys
    /// when they are needed and may be fetched.
    fn verify(&mut self) {
        let State::Verifying { id, tok, fetch, serial } = self.state.clone() else { return };
        let new = self.ids[tok.id.as_deref().expect("verifying without an ID token")].clone();
        if fetch == Fetch::None
            && new.signed()
            && (self.keys_fetched_at.is_none() || !self.key_known(new.kid()))
        {
            let may_fetch =
                self.keys_fetched_at.is_none_or(|t| self.now.duration_since(t).is_ok_and(|d| d >= REFETCH));
            if may_fetch {
                note("keys: fetch");
                self.keys_fetched_at = Some(self.now);
                self.state = State::Verifying { id, tok, fetch: Fetch::Sent, serial };
                self.expected.push_back(Expected::FetchKeys);
                return;
            }
            note("keys: needed, but fetched less than a minute ago");
        }
        let original = self
            .cur
            .as_ref()
            .and_then(|t| t.id.as_deref())
            .and_then(|j| self.ids.get(j))
            .filter(|i| i.signed())
            .cloned();
        let refusal = match new.kind {
            IdKind::Malformed => Some(Refusal::Check("malformed")),
            IdKind::AlgNone => Some(Refusal::Check("alg none")),
            _ if !self.key_known(new.kid()) => Some(Refusal::UnknownKey),
            IdKind::BadSignature => Some(Refusal::Check("bad signature")),
            IdKind::ChangedIss => Some(Refusal::Check("changed iss")),
            IdKind::OtherAzp => Some(Refusal::Check("another azp")),
            IdKind::AtHashWrong => Some(Refusal::Check("wrong at_hash")),
            IdKind::Expired => Some(Refusal::Check("expired at issue")),
            IdKind::Good | IdKind::OtherKey => match &original {
                Some(o) if o.sub != new.sub => Some(Refusal::Check("changed sub")),
                Some(o) if o.azp != new.azp => Some(Refusal::Check("changed azp")),
                _ => None,
            },
        };
        match refusal {
            None => {
                note(match &original {
                    Some(o) if o.aud_array != new.aud_array => "id token: accepted, aud \"x\" vs [\"x\"]",
                    Some(o) if o.sub != new.sub => unreachable!(),
                    None if new.sub != "admin" => "id token: changed sub accepted, no original to compare",
                    _ if new.kind == IdKind::OtherKey => "id token: accepted, signed with the rotated key",
                    _ => "id token: accepted",
                });
                if self.offset.abs() >= 300 {
                    note("id token: accepted, server clock minutes off");
                }
                self.persist(id, serial, tok, None);
            }
            // The keys could not be had (the fetch failed, or may not be repeated yet): not a security
            // failure. The new tokens are kept, with the old ID token (catalogue E10).
            Some(Refusal::UnknownKey) if fetch != Fetch::Answered => {
                note("id token: keys unavailable, old ID token kept");
                let mut tok = tok;
                tok.id = self.cur.as_ref().and_then(|t| t.id.clone());
                self.persist(id, serial, tok, None);
            }
            Some(refusal) => {
                note(match refusal {
                    Refusal::UnknownKey => "id token rejected: unknown key",
                    Refusal::Check("malformed") => "id token rejected: malformed",
                    Refusal::Check("alg none") => "id token rejected: alg none",
                    Refusal::Check("bad signature") => "id token rejected: bad signature",
                    Refusal::Check("changed iss") => "id token rejected: changed iss",
                    Refusal::Check("another azp") => "id token rejected: another azp",
                    Refusal::Check("changed sub") => "id token rejected: changed sub",
                    Refusal::Check(_) => "id token rejected: other check",
                });
                self.refused.insert(tok.at.clone());
                self.end_login(Why::NoTokens);
                self.fail(Why::IdTokenRejected);
            }
        }
    }

    /// Renewal `id`'s tokens were stored (`ok`) or not.
    fn persisted(&mut self, id: RefreshId, ok: bool) {
        let State::Persisting { id: cur, tok, failure, .. } = self.state.clone() else { return };
        if cur != id {
            return;
        }
        note(if ok { "ack: ok" } else { "ack: failed" });
        self.state = State::Idle;
        self.adopt(Some(tok));
        if ok {
            self.believed = self.cur.as_ref().map(Tok::pair);
            self.unconfirmed.clear();
            self.retry_not_before = None;
        } else {
            self.fail(Why::Persist);
        }
        if let Some(why) = failure {
            self.fail(why);
        }
    }

    fn logout(&mut self) {
        self.state = State::Idle;
        self.login_required = Why::NoTokens;
        self.store = None;
        self.believed = None;
        self.unconfirmed.clear();
        self.may_drop = true;
        self.adopt(None);
        self.expected.clear();
    }

    /// Builds the answer to a refresh of `old` and says what the manager must make of it, and whether
    /// the refresh token sent is spent (answered 200, unless a well-formed answer kept it: catalogue E3).
    fn refresh_response(
        &mut self,
        answer: &RefreshAnswer,
        old: &Tok,
    ) -> (Option<http::Response<Vec<u8>>>, Verdict, bool) {
        let n = self.next();
        let now = self.now;
        let cc = self.cc;
        let unusable = |salvaged: Option<String>| {
            if cc { Verdict::Reject(Why::Token) } else { Verdict::Salvage(salvaged) }
        };
        let oauth = |status: u16, error: &str| {
            response(status, &[JSON], json!({"error": error, "error_description": "described"}).to_string())
        };
        match answer {
            RefreshAnswer::Success { rotate, expires_in, id, scope } => {
                let at = format!("at-{n}");
                let mut body = json!({"access_token": at, "token_type": "Bearer"});
                let mut tok = if cc {
                    // A client-credentials answer stands alone: nothing is carried over from the old tokens.
                    Tok {
                        at: String::new(),
                        rt: None,
                        exp: None,
                        iat: None,
                        id: None,
                        scopes: Scopes::parse(CC_SCOPES),
                    }
                } else {
                    old.clone()
                };
                tok.at = at.clone();
                tok.iat = Some(now);
                tok.exp = Some(now + expires_in.map_or(FALLBACK, Duration::from_secs));
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
                let original =
                    old.id.as_deref().and_then(|j| self.ids.get(j)).filter(|i| i.signed()).cloned();
                let (sub, aud_array, azp) =
                    original.map_or(("admin".to_owned(), false, false), |o| (o.sub, o.aud_array, o.azp));
                let new_id = match id {
                    IdAnswer::None => None,
                    IdAnswer::Repeat => old.id.clone(),
                    IdAnswer::Same => Some(self.mint(IdKind::Good, &sub, aud_array, azp, &at)),
                    IdAnswer::AudForm => Some(self.mint(IdKind::Good, &sub, !aud_array, azp, &at)),
                    IdAnswer::ChangedSub => {
                        Some(self.mint(IdKind::Good, "someone-else", aud_array, azp, &at))
                    }
                    IdAnswer::OtherKey => Some(self.mint(IdKind::OtherKey, &sub, aud_array, azp, &at)),
                    IdAnswer::BadSignature => {
                        Some(self.mint(IdKind::BadSignature, &sub, aud_array, azp, &at))
                    }
                    IdAnswer::AlgNone => Some(self.mint(IdKind::AlgNone, &sub, aud_array, azp, &at)),
                    IdAnswer::ChangedIss => Some(self.mint(IdKind::ChangedIss, &sub, aud_array, azp, &at)),
                    IdAnswer::OtherAzp => Some(self.mint(IdKind::OtherAzp, &sub, aud_array, azp, &at)),
                    IdAnswer::AtHashWrong => Some(self.mint(IdKind::AtHashWrong, &sub, aud_array, azp, &at)),
                    IdAnswer::Expired => Some(self.mint(IdKind::Expired, &sub, aud_array, azp, &at)),
                    IdAnswer::Malformed => Some(self.mint(IdKind::Malformed, &sub, aud_array, azp, &at)),
                };
                if let Some(new_id) = new_id {
                    body["id_token"] = new_id.clone().into();
                    tok.id = Some(new_id);
                }
                let r = Some(response(200, &[JSON], body.to_string()));
                if *expires_in == Some(0) {
                    // `expires_in` 0 is invalid: the answer fails parsing, the refresh token sent is spent.
                    return (r, unusable(rotate.then(|| format!("rt-{n}"))), true);
                }
                (r, Verdict::Accept(tok), *rotate)
            }
            RefreshAnswer::Malformed200 { rt, flaw } => {
                let mut body =
                    json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600});
                match rt {
                    RtField::Absent => {}
                    RtField::Readable => body["refresh_token"] = format!("rt-{n}").into(),
                    RtField::Number => body["refresh_token"] = 42.into(),
                    RtField::Empty => body["refresh_token"] = "".into(),
                }
                match flaw {
                    Flaw::NoAccessToken => {
                        body.as_object_mut().unwrap().remove("access_token");
                    }
                    Flaw::ExpiresInText => body["expires_in"] = "soon".into(),
                    Flaw::NoTokenType => {
                        body.as_object_mut().unwrap().remove("token_type");
                    }
                    Flaw::IdTokenNumber => body["id_token"] = 7.into(),
                    Flaw::NotAnObject => body = json!([body]),
                }
                let salvaged =
                    (*rt == RtField::Readable && *flaw != Flaw::NotAnObject).then(|| format!("rt-{n}"));
                (Some(response(200, &[JSON], body.to_string())), unusable(salvaged), true)
            }
            RefreshAnswer::InvalidGrant if cc => {
                (Some(oauth(400, "invalid_grant")), Verdict::Reject(Why::Token), false)
            }
            RefreshAnswer::InvalidGrant => (Some(oauth(400, "invalid_grant")), Verdict::InvalidGrant, false),
            RefreshAnswer::OtherOAuth { status } => {
                (Some(oauth(*status, "invalid_client")), Verdict::Reject(Why::Token), false)
            }
            RefreshAnswer::ServerError { status, json } => {
                // An `invalid_grant` body on a 5xx is a failing server, not a rejected grant: tokens kept.
                let error = if status % 2 == 0 { "server_error" } else { "invalid_grant" };
                let r = if *json { oauth(*status, error) } else { response(*status, &[], "") };
                (Some(r), Verdict::Reject(Why::Token), false)
            }
            RefreshAnswer::Html { status } => {
                let r =
                    response(*status, &[("content-type", "text/html")], "<html><body>Error</body></html>");
                if *status == 200 {
                    (Some(r), unusable(None), true)
                } else {
                    (Some(r), Verdict::Reject(Why::Token), false)
                }
            }
            RefreshAnswer::MalformedJson => (
                Some(response(200, &[JSON], format!(r#"{{"access_token":"at-{n}","token_type":"#))),
                unusable(None),
                true,
            ),
            RefreshAnswer::Bytes { status, body } => {
                let r = Some(response(*status, &[], body.clone()));
                if *status == 200 {
                    (r, unusable(readable_refresh_token(body)), true)
                } else {
                    (r, Verdict::Reject(Why::Token), false)
                }
            }
            RefreshAnswer::WrongTokenType => (
                Some(response(
                    200,
                    &[JSON],
                    json!({"access_token": format!("at-{n}"), "token_type": "mac",
                        "refresh_token": format!("rt-{n}"), "expires_in": 3600})
                    .to_string(),
                )),
                unusable(Some(format!("rt-{n}"))),
                true,
            ),
            RefreshAnswer::Redirect => (
                Some(response(302, &[("location", "https://demodb.my.erp.net/elsewhere")], "")),
                Verdict::Reject(Why::Token),
                false,
            ),
            RefreshAnswer::Transport => (None, Verdict::Reject(Why::Transport), false),
        }
    }
}

/// The `refresh_token` of a body, when it is a JSON object with a non-empty string there.
fn readable_refresh_token(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => match m.get("refresh_token") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
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

/// The answer to a key fetch; `None`: it got none.
fn jwks_response(a: JwksAnswer) -> Option<http::Response<Vec<u8>>> {
    match a {
        JwksAnswer::Good => Some(response(200, &[JSON], json!({"keys": [jwk(Signer::A)]}).to_string())),
        JwksAnswer::Rotated => {
            Some(response(200, &[JSON], json!({"keys": [jwk(Signer::A), jwk(Signer::B)]}).to_string()))
        }
        JwksAnswer::Transport => None,
        JwksAnswer::Unavailable => Some(response(503, &[], "")),
        JwksAnswer::Malformed => Some(response(200, &[JSON], "{\"keys\":")),
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
    /// Per call, the renewals it triggered or waited for, as the manager showed them (invariant (a)).
    renewals: Vec<BTreeSet<u64>>,
    /// Per call, whether the manager told it to wait while a renewal was under way.
    waited: Vec<bool>,
    m: Model,
}

impl Harness {
    fn new(cc: bool, offset: i64, initial: Option<Initial>) -> Harness {
        let m = Model::new(cc, offset, initial);
        Harness {
            sut: TokenManager::new(client(), m.cur.as_ref().map(Tok::set), options(cc)),
            calls: Vec::new(),
            renewals: Vec::new(),
            waited: Vec::new(),
            m,
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
        let now = self.m.now;
        match step {
            Step::Begin => {
                if self.m.calls.iter().filter(|c| c.phase != Phase::Done).count() < MAX_CALLS {
                    self.calls.push(self.sut.begin_call());
                    self.renewals.push(BTreeSet::new());
                    self.waited.push(false);
                    self.m.calls.push(Call {
                        phase: Phase::Need,
                        retried: false,
                        retries: 0,
                        owed: None,
                        renewed: false,
                        waited_for: None,
                    });
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
            Step::Drain { max, persist_ok, split } => {
                if *split {
                    self.drain_split(*persist_ok);
                } else {
                    self.drain(*max, *persist_ok);
                }
            }
            Step::Refresh { which, answer } => {
                if !self.m.outstanding.is_empty() {
                    let o = self.m.outstanding.remove(which % self.m.outstanding.len());
                    self.refresh(o, answer);
                }
            }
            Step::Keys { which, answer } => {
                if !self.m.key_fetches.is_empty() {
                    let id = self.m.key_fetches.remove(which % self.m.key_fetches.len());
                    self.keys(id, *answer);
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
            Step::Serve { expires_in, id, persist_ok, shared } => {
                self.serve(*expires_in, *id, *persist_ok, *shared)
            }
            Step::Force => {
                let expected = self.m.state == State::Idle && self.m.can_renew();
                assert_eq!(self.sut.force_refresh(), expected, "force_refresh");
                if expected {
                    note("force: renewal");
                    self.m.queue_renewal();
                }
            }
            Step::ForceFor => {
                // As the `ForceRefresh` operation does: a new call, forced once, then asking as usual.
                let i = self.m.calls.len();
                self.step(&Step::Begin);
                if self.m.calls.len() > i {
                    let expected = self.m.state == State::Idle && self.m.can_renew();
                    assert_eq!(self.sut.force_refresh_for(&mut self.calls[i]), expected, "force_refresh_for");
                    if expected {
                        note("force: renewal for a call");
                        self.m.queue_renewal();
                    }
                    if let Some(serial) = self.m.state.serial() {
                        self.m.calls[i].renewed = true;
                        self.m.calls[i].waited_for = Some(serial);
                        self.count_renewal(i);
                    }
                    assert_eq!(self.calls[i].renewed(), self.m.calls[i].renewed, "ApiCall::renewed");
                }
            }
            Step::Login { rt, expires_in, id } => {
                let tok = self.m.login_tokens(*rt, *expires_in, *id);
                // As the login operation hands them over: an answer without `expires_in` gets the fallback.
                let mut set = tok.set();
                if expires_in.is_none() {
                    set.expires_at = None;
                }
                let set = self.sut.options().with_expiry(set, now);
                assert_eq!(Tok::of(&set), tok, "with_expiry gives the fallback lifetime (E12)");
                self.sut.handle_login(set);
                self.m.state = State::Idle;
                self.m.retry_not_before = None;
                self.m.store = Some(tok.clone());
                self.m.believed = Some(tok.pair());
                self.m.unconfirmed.clear();
                self.m.adopt(Some(tok));
                // Outputs of the abandoned renewal (or a Clear) must not reach the adapter: they would
                // overwrite or delete the new login's tokens, or send a second refresh.
                self.m.expected.clear();
            }
            Step::Logout => {
                self.sut.handle_logout();
                self.m.logout();
            }
            Step::BeginLogout => {
                let expected = !self.m.state.renewing() && self.m.state != State::LoggingOut;
                assert_eq!(self.sut.begin_logout(), expected, "begin_logout in {:?}", self.m.state);
                if expected {
                    note("logout: begun");
                    // A `Clear` still queued stays queued: an aborted logout must not keep tokens whose
                    // login is over.
                    self.m.state = State::LoggingOut;
                } else if self.m.state.renewing() {
                    note("logout: waits for the renewal under way");
                }
            }
            Step::EndLogout { finish } => {
                if self.m.state == State::LoggingOut {
                    if *finish {
                        note("logout: finished");
                        self.sut.handle_logout();
                        self.m.logout();
                    } else {
                        note("logout: aborted");
                        self.sut.abort_logout();
                        self.m.state = State::Idle;
                    }
                } else if !finish {
                    // Nothing to abort: no effect.
                    self.sut.abort_logout();
                }
            }
            Step::Abandon => {
                // Only once the adapter has taken the renewal's outputs.
                if self.m.expected.is_empty() {
                    match self.m.state.clone() {
                        State::Verifying { id, mut tok, .. } => {
                            // Its key fetch gets no answer: the keys could not be had, not a security
                            // failure. The new tokens are kept, with the old ID token (catalogue E10), in
                            // memory: nobody is left to store them.
                            note("abandon: while verifying");
                            self.sut.handle_refresh_failure(id, "abandoned", now);
                            tok.id = self.m.cur.as_ref().and_then(|t| t.id.clone());
                            self.m.state = State::Idle;
                            self.m.adopt(Some(tok));
                            self.m.fail(Why::Transport);
                        }
                        State::Persisting { id, tok, .. } => {
                            note("abandon: while storing");
                            self.sut.handle_refresh_failure(id, "abandoned", now);
                            // Whether the adapter stored them is unknown to the manager.
                            self.m.unconfirmed.push(tok.pair());
                            self.m.persisted(id, false);
                        }
                        _ => {}
                    }
                }
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
        // Tokens are dropped only on invalid_grant, a refused ID token, a store found empty, or a logout.
        if had_tokens && self.sut.tokens().is_none() {
            note("tokens dropped");
            assert!(self.m.may_drop, "invariant: tokens dropped by {step:?}");
        }
        self.check();
    }

    /// Invariant (a): the renewal under way counts for call `i`.
    fn count_renewal(&mut self, i: usize) {
        self.waited[i] = true;
        if let Some(s) = self.m.state.serial() {
            self.renewals[i].insert(s);
        }
        assert!(
            self.renewals[i].len() <= 1,
            "invariant (a): call {i} caused or waited for {} renewals ({:?})",
            self.renewals[i].len(),
            self.renewals[i]
        );
    }

    fn serve(&mut self, expires_in: Option<u64>, id_answer: IdAnswer, persist_ok: bool, shared: bool) {
        for _ in 0..3 {
            self.drain(0, persist_ok);
            self.check();
            if shared {
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
                let answer = RefreshAnswer::Success { rotate: true, expires_in, id: id_answer, scope: false };
                let o = self.m.outstanding.remove(0);
                self.refresh(o, &answer);
                self.check();
            }
            self.drain(0, persist_ok);
            self.check();
            while !self.m.key_fetches.is_empty() {
                let id = self.m.key_fetches.remove(0);
                // A server signing with its new key publishes it.
                self.keys(
                    id,
                    if id_answer == IdAnswer::OtherKey { JwksAnswer::Rotated } else { JwksAnswer::Good },
                );
                self.check();
            }
            self.drain(0, persist_ok);
            self.check();
            while !self.m.acks.is_empty() {
                let (id, ok) = self.m.acks.remove(0);
                self.ack(id, ok);
                self.check();
            }
            if self.m.expected.is_empty() && self.m.outstanding.is_empty() && self.m.key_fetches.is_empty() {
                return;
            }
        }
    }

    fn authorize(&mut self, i: usize, header: bool) {
        let now = self.m.now;
        // A new access token being stored (a salvaged answer stores the one in use again).
        let pending_persist = match &self.m.state {
            State::Persisting { tok, .. } if self.m.cur.as_ref().is_none_or(|t| t.at != tok.at) => {
                Some(tok.at.clone())
            }
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
        if actual == Err(None) && self.sut.is_renewing() {
            self.count_renewal(i);
        }
        if let Ok(at) = &actual {
            let t = self.m.cur.as_ref().expect("invariant: a token handed out while none is held");
            assert_eq!(at, &t.at, "invariant: the token handed out is the one in use");
            assert!(
                t.fresh(now) || self.waited[i],
                "invariant: token {at} handed out at {now:?} expires at {:?} (margin {:?}) to call {i}, which \
                 has not waited for a renewal",
                t.exp,
                t.margin()
            );
            assert_ne!(
                Some(at),
                pending_persist.as_ref(),
                "invariant: a token handed out before it was stored"
            );
            assert!(
                !self.m.refused.contains(at),
                "invariant (c): token {at}, refused by a security check, handed out"
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
            Err(Some(Why::IdTokenRejected)) => "failed: id token rejected",
        });
        if actual == Err(None) {
            assert!(
                self.sut.is_renewing() || self.sut.is_logging_out(),
                "liveness: Wait while no renewal or logout is under way"
            );
        }
        assert_eq!(actual, expected, "authorize (header: {header})");
        assert_eq!(self.calls[i].renewed(), self.m.calls[i].renewed, "ApiCall::renewed of call {i}");
    }

    fn api(&mut self, i: usize, answer: ApiAnswer) {
        let resp = api_response(answer);
        let outcome = self.sut.handle_api_response(&mut self.calls[i], &resp);
        let c = &self.m.calls[i];
        let retries = c.retries;
        let was_retried = c.retried;
        let refused = matches!(answer, ApiAnswer::InvalidToken | ApiAnswer::Bare401 | ApiAnswer::Basic401);
        if refused && !c.retried && !c.renewed && (self.m.cur.is_some() || self.m.cc) {
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
        if refused && c.renewed && !c.retried {
            note("api: 401 to a call that waited for a renewal returned");
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
            self.output(out, exp, persist_ok);
        }
    }

    /// Drains with `poll_follow_up` (every output but a refresh request, in order), then `take_refresh`.
    fn drain_split(&mut self, persist_ok: bool) {
        while let Some(out) = self.sut.poll_follow_up() {
            assert!(!matches!(out, Output::Refresh { .. }), "poll_follow_up gave a refresh request");
            let k = self.m.expected.iter().position(|e| !matches!(e, Expected::Refresh { .. }));
            let exp = k.and_then(|k| self.m.expected.remove(k));
            note("drain: follow-up");
            self.output(out, exp, persist_ok);
        }
        if let Some((id, request)) = self.sut.take_refresh() {
            let k = self.m.expected.iter().position(|e| matches!(e, Expected::Refresh { .. }));
            let exp = k.and_then(|k| self.m.expected.remove(k));
            note("drain: take_refresh");
            self.output(Output::Refresh { id, request }, exp, persist_ok);
        }
        assert!(self.m.expected.is_empty(), "missing outputs: {:?}", self.m.expected);
        assert!(self.sut.poll_output().is_none(), "an output neither a follow-up nor a refresh request");
    }

    fn output(&mut self, out: Output, exp: Option<Expected>, persist_ok: bool) {
        match out {
            Output::Refresh { id, request } => {
                let Some(Expected::Refresh { rt }) = exp else {
                    panic!("unexpected Refresh output (expected {exp:?})")
                };
                assert_eq!(request.method(), http::Method::POST);
                assert_eq!(request.uri(), TOKEN_URI);
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
                if let Some(rt) = &sent {
                    assert!(
                        !self.m.spent.contains(rt),
                        "invariant (b): refresh token {rt} sent again after a request carrying it was answered 200"
                    );
                }
                assert_eq!(sent, rt);
                assert!(!self.m.seen_ids.contains(&id), "a renewal id is used once");
                self.m.seen_ids.push(id);
                let State::Queued { rt: queued, serial } = self.m.state.clone() else {
                    panic!("a Refresh output while {:?}", self.m.state)
                };
                assert_eq!(queued, rt);
                // At most one refresh in flight: any request still unanswered was abandoned (login,
                // logout, adopted store) and carries another refresh token.
                note("drain: refresh");
                if !self.m.outstanding.is_empty() {
                    note("drain: refresh while an abandoned one is unanswered");
                }
                for o in &self.m.outstanding {
                    if rt.is_some() {
                        assert_ne!(o.rt, rt, "invariant: two refresh requests with the same refresh token");
                    }
                }
                self.m.state = State::InFlight { id, rt: rt.clone(), serial };
                self.m.outstanding.push(Outstanding { id, rt, sent: false });
            }
            Output::FetchKeys { id, request } => {
                assert_eq!(exp, Some(Expected::FetchKeys), "unexpected FetchKeys output");
                assert_eq!(request.method(), http::Method::GET);
                assert_eq!(request.uri(), JWKS_URI);
                assert!(
                    matches!(&self.m.state, State::Verifying { id: cur, fetch: Fetch::Sent, .. } if *cur == id),
                    "FetchKeys for a renewal that is not being verified ({:?})",
                    self.m.state
                );
                note("drain: fetch keys");
                self.m.key_fetches.push(id);
            }
            Output::Persist { id, tokens } => {
                let Some(Expected::Persist { tok }) = exp else {
                    panic!("unexpected Persist output (expected {exp:?})")
                };
                assert_eq!(Tok::of(&tokens), tok, "the tokens to persist");
                assert!(
                    !self.m.refused.contains(&tok.at),
                    "invariant (c): tokens refused by a security check stored"
                );
                assert!(
                    matches!(&self.m.state, State::Persisting { id: cur, .. } if *cur == id),
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

    fn refresh(&mut self, o: Outstanding, answer: &RefreshAnswer) {
        let now = self.m.now;
        let live = matches!(&self.m.state, State::InFlight { id, .. } if *id == o.id);
        // No tokens: the answer is stale anyway; any valid-looking answer will do.
        let old = self.m.cur.clone().unwrap_or(Tok {
            at: String::new(),
            rt: None,
            exp: None,
            iat: None,
            id: None,
            scopes: Scopes::default(),
        });
        let (resp, verdict, spends) = self.m.refresh_response(answer, &old);
        match &resp {
            Some(r) => self.sut.handle_refresh_response(o.id, r, now),
            None => self.sut.handle_refresh_failure(o.id, "connection reset", now),
        }
        if let (true, Some(rt)) = (spends, &o.rt) {
            self.m.spent.insert(rt.clone());
        }
        if !live {
            note("refresh: stale answer");
            return; // no effect, checked by `check`
        }
        let State::InFlight { serial, .. } = self.m.state else { unreachable!() };
        self.m.answered(o.id, serial, verdict);
    }

    fn keys(&mut self, id: RefreshId, answer: JwksAnswer) {
        let now = self.m.now;
        match jwks_response(answer) {
            Some(r) => self.sut.handle_keys_response(id, Ok(&r), now),
            None => self.sut.handle_keys_response::<Vec<u8>>(id, Err("connection reset"), now),
        }
        let State::Verifying { id: cur, tok, fetch: Fetch::Sent, serial } = self.m.state.clone() else {
            note("keys: stale answer");
            return;
        };
        if cur != id {
            note("keys: stale answer");
            return;
        }
        let fetch = match answer {
            JwksAnswer::Good | JwksAnswer::Rotated => {
                note("keys: answered");
                self.m.keys = (true, answer == JwksAnswer::Rotated);
                Fetch::Answered
            }
            _ => {
                note("keys: fetch failed");
                Fetch::Failed
            }
        };
        self.m.state = State::Verifying { id, tok, fetch, serial };
        self.m.verify();
    }

    fn reload(&mut self, k: usize, stored: Stored) {
        let id = self.m.outstanding[k].id;
        let tok = match stored {
            Stored::FromStore => self.m.store.clone(),
            Stored::Other => {
                let t = self.m.other_process_tokens();
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
        let live = matches!(&self.m.state, State::InFlight { id: cur, .. } if *cur == id);
        if !live {
            note("reload: stale");
            assert_eq!(answer, Reloaded::Stale);
            return;
        }
        // The store holds the tokens in use, or what the manager itself last stored or may have stored
        // (behind them after a failed or abandoned write): send. Tokens someone else stored are adopted.
        let found = tok.as_ref().map(Tok::pair);
        if found == self.m.cur.as_ref().map(Tok::pair)
            || found == self.m.believed
            || found.as_ref().is_some_and(|f| self.m.unconfirmed.contains(f))
        {
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
            self.m.state = State::Idle;
            if tok.is_none() {
                self.m.login_required = Why::NoTokens;
            }
            self.m.believed = found;
            self.m.unconfirmed.clear();
            self.m.adopt(tok);
        }
    }

    fn ack(&mut self, id: RefreshId, ok: bool) {
        let now = self.m.now;
        self.sut.handle_persisted(id, if ok { Ok(()) } else { Err("disk full".into()) }, now);
        self.m.persisted(id, ok);
    }

    fn check(&self) {
        assert_eq!(self.sut.tokens().map(Tok::of), self.m.cur, "the tokens in use");
        assert_eq!(self.sut.generation(), self.m.generation, "generation");
        assert_eq!(self.sut.is_renewing(), self.m.state.renewing(), "is_renewing ({:?})", self.m.state);
        assert_eq!(
            self.sut.is_logging_out(),
            self.m.state == State::LoggingOut,
            "is_logging_out ({:?})",
            self.m.state
        );
        assert_eq!(self.sut.poll_timeout(), self.m.poll_timeout(), "poll_timeout");
        for (i, c) in self.m.calls.iter().enumerate() {
            assert!(c.retries <= 1, "invariant: call {i} retried {} times", c.retries);
        }
        if let Some(t) = &self.m.cur {
            assert!(
                !self.m.refused.contains(&t.at),
                "invariant (c): tokens refused by a security check in use"
            );
        }
    }

    /// Liveness at the end: with the server answering well and the store working, every call still
    /// waiting gets a token or an error within a few rounds.
    fn settle(&mut self) {
        for _ in 0..4 {
            if self.m.state == State::LoggingOut {
                self.step(&Step::EndLogout { finish: false });
            }
            let serve =
                Step::Serve { expires_in: Some(3600), id: IdAnswer::None, persist_ok: true, shared: false };
            self.step(&serve);
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

fn run_case(cc: bool, offset: i64, initial: Option<Initial>, steps: &[Step]) {
    let mut h = Harness::new(cc, offset, initial);
    h.check();
    for s in steps {
        h.step(s);
    }
    h.settle();
}

fn case() -> impl Strategy<Value = (bool, i64, Option<Initial>, Vec<Step>)> {
    (prop::bool::weighted(0.2), clock_offset(), initial(), prop::collection::vec(step(), 1..MAX_STEPS))
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
    fn token_manager_state_machine((cc, offset, initial, steps) in case()) {
        run_case(cc, offset, initial, &steps);
    }
}

/// A fixed run through the common path, so a model bug that made every case vacuous would show here.
#[test]
fn the_common_path_is_exercised() {
    let initial = Initial {
        exp: Some(30),
        issued_ago: Some(3570),
        rt: true,
        id: InitialId::Signed { aud_array: false, azp: false },
    };
    let mut h = Harness::new(false, -600, Some(initial));
    h.step(&Step::Begin);
    h.step(&Step::Begin);
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Authorize { call: 1, header: false });
    assert_eq!(h.m.expected.len(), 1, "one refresh for two callers (E7)");
    h.step(&Step::Drain { max: 0, persist_ok: true, split: false });
    assert!(!h.sut.begin_logout(), "no logout while a renewal is in flight (G4)");
    let answer =
        RefreshAnswer::Success { rotate: true, expires_in: Some(5), id: IdAnswer::AudForm, scope: false };
    h.step(&Step::Refresh { which: 0, answer });
    assert_eq!(h.m.expected, [Expected::FetchKeys], "the keys are fetched to verify the new ID token");
    h.step(&Step::Drain { max: 0, persist_ok: true, split: true });
    h.step(&Step::Keys { which: 0, answer: JwksAnswer::Good });
    h.step(&Step::Drain { max: 0, persist_ok: true, split: false });
    h.step(&Step::Ack { which: 0 });
    let t = h.sut.tokens().unwrap();
    assert_eq!(t.refresh_token.as_ref().map(|r| r.secret()), Some("rt-2"));
    assert_eq!(t.margin(SKEW), Duration::from_millis(2500), "half of a 5 s lifetime (E9)");
    // Both callers waited for the renewal: they get its 5 s token, and a 401 is theirs to keep.
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Tick { secs: 4, fire: false });
    h.step(&Step::Authorize { call: 0, header: true });
    assert_eq!(h.m.calls[1].phase, Phase::Sent { generation: 1, at: "at-2".to_owned() });
    h.step(&Step::Api { call: 1, answer: ApiAnswer::InvalidToken });
    assert_eq!(h.m.calls[1].phase, Phase::Done, "one call causes at most one renewal (E9)");
    // A new call renews the stale token; the server says invalid_grant.
    h.step(&Step::Begin);
    h.step(&Step::Authorize { call: 0, header: true });
    h.step(&Step::Drain { max: 0, persist_ok: true, split: false });
    h.step(&Step::Refresh { which: 0, answer: RefreshAnswer::InvalidGrant });
    h.step(&Step::Drain { max: 0, persist_ok: true, split: false });
    assert!(h.sut.tokens().is_none());
    assert_eq!(h.m.store, None, "the store was cleared");
    assert!(h.m.spent.contains("rt-0"), "rt-0 was spent by the 200 answer");
    h.settle();
}

/// The generated cases reach every interesting situation, so the properties above are not vacuous.
#[test]
fn the_cases_cover_every_situation() {
    EVENTS.with(|e| e.borrow_mut().clear());
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    runner
        .run(&case(), |(cc, offset, initial, steps)| {
            run_case(cc, offset, initial, &steps);
            Ok(())
        })
        .unwrap();
    let events = EVENTS.with(|e| e.borrow().clone());
    eprintln!("{events:#?}");
    for event in [
        "ready",
        "ready: a stale or refused token to a call that waited for a renewal",
        "ready: a short-lived token within its reduced margin",
        "wait",
        "wait: logging out",
        "failed: no tokens",
        "failed: no refresh token",
        "failed: rejected",
        "failed: token error",
        "failed: transport",
        "failed: persist",
        "failed: id token rejected",
        "api: retry",
        "api: second 401 returned",
        "api: 401 to a call that waited for a renewal returned",
        "drain: refresh",
        "drain: refresh while an abandoned one is unanswered",
        "drain: persist",
        "drain: clear",
        "drain: fetch keys",
        "drain: follow-up",
        "drain: take_refresh",
        "an input while an output waits to be drained",
        "refresh: stale answer",
        "refresh: accepted, rotated",
        "refresh: accepted, refresh token kept",
        "refresh: invalid_grant",
        "refresh: transport failure",
        "refresh: rejected answer",
        "refresh: unusable 200, refresh token salvaged",
        "refresh: unusable 200, no refresh token left",
        "keys: fetch",
        "keys: answered",
        "keys: fetch failed",
        "keys: stale answer",
        "id token: accepted",
        "id token: accepted, aud \"x\" vs [\"x\"]",
        "id token: accepted, server clock minutes off",
        "id token: accepted, signed with the rotated key",
        "id token: changed sub accepted, no original to compare",
        "id token: keys unavailable, old ID token kept",
        "keys: needed, but fetched less than a minute ago",
        "id token rejected: bad signature",
        "id token rejected: alg none",
        "id token rejected: changed sub",
        "id token rejected: changed iss",
        "id token rejected: another azp",
        "id token rejected: malformed",
        "id token rejected: unknown key",
        "reload: stale",
        "reload: send",
        "reload: adopted",
        "reload: send, the store is behind after a failed write",
        "ack: ok",
        "ack: failed",
        "timer: renewal",
        "force: renewal",
        "force: renewal for a call",
        "logout: begun",
        "logout: waits for the renewal under way",
        "logout: finished",
        "logout: aborted",
        "abandon: while verifying",
        "abandon: while storing",
        "tokens dropped",
        "client credentials: renewal",
    ] {
        assert!(
            events.get(event).copied().unwrap_or(0) >= 3,
            "`{event}` happened fewer than 3 times: {events:#?}"
        );
    }
}
