//! Server input never panics: every parser that takes bytes, strings, headers or statuses off the wire is
//! fed arbitrary ones (and JSON-shaped ones that reach deeper) and must return a typed result. A few
//! structural properties pin what the results mean.

use erpnet_oauth_core::id_token::UnverifiedClaims;
use erpnet_oauth_core::{
    Access, ApiError, ApiOutcome, AuthorizationRequest, Callback, CallbackError, ClientConfig, ClientSecret,
    IdToken, IdTokenExpectations, Jwk, JwkSet, KeyCache, ManagerOptions, Output, PendingLogin,
    ProviderMetadata, RefreshToken, RetryAfter, Scopes, SeededRandom, SigningAlg, TokenError, TokenManager,
    TokenSet, bearer_challenge, check_api_response, parse_challenges, parse_revocation_response,
    parse_token_response, parse_userinfo_response, salvage_refresh_token, verify_id_token,
};
use erpnet_oauth_core::{AccessToken, api::parse_domain_error, http};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_655_057_724;
const ISS: &str = "https://demodb.my.erp.net/id";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn client() -> ClientConfig {
    ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
        .client_secret(ClientSecret::new("my-secret"))
        .redirect_uri("http://localhost/signin-callback")
        .build()
        .unwrap()
}

fn pending() -> PendingLogin {
    AuthorizationRequest::new().build(&client(), &mut SeededRandom::new(7)).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Strategies for server input
// ---------------------------------------------------------------------------------------------------

/// Member names the parsers look for, and some they do not.
const NAMES: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "id_token",
    "scope",
    "error",
    "error_description",
    "error_uri",
    "message",
    "code",
    "type",
    "info",
    "keys",
    "kty",
    "kid",
    "alg",
    "use",
    "n",
    "e",
    "crv",
    "x",
    "y",
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "userinfo_endpoint",
    "end_session_endpoint",
    "revocation_endpoint",
    "authorization_response_iss_parameter_supported",
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "at_hash",
    "c_hash",
    "auth_time",
    "name",
    "email",
    "x-other",
];

/// Strings that mean something to some parser, and arbitrary ones.
fn wire_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "Bearer", "bearer", "BEARER", "mac", "", "invalid_grant", "invalid_token", "3600", "-1", "0",
            "RSA", "EC", "P-256", "RS256", "PS256", "ES256", "none", "HS256", "sig", "enc", "AQAB",
            ISS, "https://demodb.my.erp.net/id/connect/token", "my.trusted.app/first", "admin",
            "openid profile DomainApi offline_access", "\u{0}", "\u{ffff}", "é",
        ])
        .prop_map(str::to_owned),
        3 => any::<String>(),
        1 => "[A-Za-z0-9_\\-]{0,64}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        wire_string().prop_map(Value::String),
    ]
}

/// JSON values whose objects use the members the parsers read.
fn json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 8, |inner| {
        let key = prop_oneof![4 => prop::sample::select(NAMES).prop_map(str::to_owned), 1 => any::<String>()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..10).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A body: arbitrary bytes, arbitrary text, or JSON-shaped.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => any::<String>().prop_map(String::into_bytes),
        4 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => json().prop_map(|v| {
            // Truncated JSON.
            let s = v.to_string().into_bytes();
            let cut = s.len() / 2;
            s[..cut].to_vec()
        }),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![200u16, 201, 204, 301, 302, 303, 307, 400, 401, 403, 404, 429, 500, 502, 503]),
        1 => 100u16..=999,
    ]
}

/// A header value: any bytes `http` accepts in one.
fn header_value() -> impl Strategy<Value = http::HeaderValue> {
    let bytes = prop_oneof![
        2 => wire_string().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        2 => challenge_text().prop_map(String::into_bytes),
    ];
    bytes.prop_filter_map("not a header value", |b| http::HeaderValue::from_bytes(&b).ok())
}

/// Text shaped like `WWW-Authenticate` values, with junk mixed in.
fn challenge_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "Bearer",
            "bearer",
            "Basic",
            "Negotiate",
            " ",
            ",",
            "=",
            "\"",
            "\\",
            "error",
            "error_description",
            "scope",
            "realm",
            "invalid_token",
            "insufficient_scope",
            "abc+/==",
            "\t",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,8}",
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

fn headers() -> impl Strategy<Value = Vec<(http::HeaderName, http::HeaderValue)>> {
    let name = prop::sample::select(vec![
        http::header::CONTENT_TYPE,
        http::header::WWW_AUTHENTICATE,
        http::header::RETRY_AFTER,
        http::header::LOCATION,
        http::header::CONTENT_LENGTH,
        http::HeaderName::from_static("x-other"),
    ]);
    prop::collection::vec((name, header_value()), 0..5)
}

/// Any response a server (or something in between) could send.
fn response() -> impl Strategy<Value = http::Response<Vec<u8>>> {
    (status(), headers(), body()).prop_map(|(status, headers, body)| {
        let mut r = http::Response::new(body);
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(k, v);
        }
        r
    })
}

/// A JWT-shaped string whose segments are arbitrary JSON or arbitrary text.
fn jwt_like() -> impl Strategy<Value = String> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let segment = prop_oneof![
        3 => json().prop_map(move |v| b64(v.to_string().as_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(move |b| b64(&b)),
        1 => "[A-Za-z0-9_\\-=+/.]{0,40}",
    ];
    prop_oneof![
        4 => prop::collection::vec(segment, 3).prop_map(|s| s.join(".")),
        1 => prop::collection::vec("[A-Za-z0-9_\\-]{0,10}", 0..6).prop_map(|s| s.join(".")),
        1 => any::<String>(),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/no_panic.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn token_body(fields: Value) -> http::Response<Vec<u8>> {
    http::Response::new(fields.to_string().into_bytes())
}

fn manager_with(tokens: Option<TokenSet>) -> TokenManager {
    TokenManager::new(client(), tokens, ManagerOptions::default())
}

fn initial_tokens() -> TokenSet {
    TokenSet {
        access_token: AccessToken::new("at-0"),
        expires_at: Some(now()),
        issued_at: None,
        refresh_token: Some(RefreshToken::new("rt-0")),
        id_token: None,
        scopes: Scopes::erpnet_default(),
    }
}

proptest! {
    #![proptest_config(config())]

    // ---------------------------------------------------------------------------------------------
    // Token endpoint
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn token_responses_never_panic(r in response(), scope in wire_string()) {
        match parse_token_response(&r, now(), &Scopes::parse(&scope)) {
            Ok(t) => {
                prop_assert!(r.status().is_success(), "accepted with status {}", r.status());
                prop_assert!(!t.access_token.secret().is_empty());
            }
            Err(e) => {
                let _ = (e.to_string(), e.is_retryable(), e.is_invalid_grant());
                if r.status().is_redirection() {
                    prop_assert!(matches!(e, TokenError::Redirect { .. }), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn a_token_type_other_than_bearer_is_rejected(tt in wire_string()) {
        prop_assume!(!tt.eq_ignore_ascii_case("bearer") && !tt.is_empty());
        let r = token_body(serde_json::json!({"access_token": "at", "token_type": tt, "expires_in": 3600}));
        let e = parse_token_response(&r, now(), &Scopes::default()).unwrap_err();
        prop_assert!(matches!(e, TokenError::UnsupportedTokenType(_)), "{e:?}");
    }

    #[test]
    fn bearer_in_any_case_is_accepted(tt in "[bB][eE][aA][rR][eE][rR]") {
        let r = token_body(serde_json::json!({"access_token": "at", "token_type": tt}));
        prop_assert!(parse_token_response(&r, now(), &Scopes::default()).is_ok());
    }

    #[test]
    fn expires_in_gives_an_absolute_expiry(secs in 1u32.., as_string in any::<bool>()) {
        let expires_in = if as_string { Value::from(secs.to_string()) } else { Value::from(secs) };
        let r = token_body(serde_json::json!({"access_token": "at", "token_type": "Bearer", "expires_in": expires_in}));
        let t = parse_token_response(&r, now(), &Scopes::default()).unwrap();
        prop_assert_eq!(t.expires_at, Some(now() + Duration::from_secs(u64::from(secs))));
    }

    #[test]
    fn a_bad_expires_in_is_rejected(v in prop_oneof![
        (i64::MIN..=0).prop_map(Value::from),
        any::<f64>().prop_filter("whole", |f| f.fract() != 0.0 || *f <= 0.0).prop_map(Value::from),
        "[^0-9]{1,8}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        json().prop_filter("composite", |v| v.is_array() || v.is_object()),
    ]) {
        let r = token_body(serde_json::json!({"access_token": "at", "token_type": "Bearer", "expires_in": v}));
        let e = parse_token_response(&r, now(), &Scopes::default()).unwrap_err();
        prop_assert!(matches!(e, TokenError::InvalidExpiresIn(_)), "{e:?}");
    }

    /// Tokens in a rejected answer never show up in the error.
    #[test]
    fn tokens_never_appear_in_token_errors(
        at in "SECRET[A-Za-z0-9]{16}",
        rt in "SECRET[A-Za-z0-9]{16}",
        broken in prop_oneof![
            Just(("token_type", Value::from("mac"))),
            Just(("token_type", Value::from(7))),
            Just(("expires_in", Value::from(-1))),
            Just(("scope", Value::from(false))),
            Just(("refresh_token", Value::from(1))),
            Just(("id_token", serde_json::json!({"a": 1}))),
        ],
        status in prop::sample::select(vec![200u16, 400, 500]),
    ) {
        let mut body = serde_json::json!({"access_token": at, "refresh_token": rt, "token_type": "Bearer"});
        body[broken.0] = broken.1;
        if status != 200 {
            body["error"] = Value::from("invalid_request");
        }
        let mut r = token_body(body);
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        let e = parse_token_response(&r, now(), &Scopes::default()).unwrap_err();
        let shown = format!("{e} {e:?}");
        prop_assert!(!shown.contains(&at) && !shown.contains(&rt), "{shown}");
    }

    #[test]
    fn code_exchange_responses_never_panic(r in response()) {
        let p = pending();
        let state = p.state().to_owned();
        let exchange = p.handle_callback(&client(), Callback::Query(&format!("code=abc&state={state}"))).unwrap();
        let (_, waiting) = exchange.into_request(&client());
        match waiting.handle_response(&r, now()) {
            Ok(login) => prop_assert!(login.id_token().is_some(), "openid was asked for"),
            Err(e) => { let _ = e.to_string(); }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Callbacks
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn callbacks_never_panic(s in any::<String>(), b in prop::collection::vec(any::<u8>(), 0..256)) {
        for cb in [Callback::Query(&s), Callback::Url(&s), Callback::FormPost(&b), Callback::FormPost(s.as_bytes())] {
            match pending().handle_callback(&client(), cb) {
                Ok(_) => {}
                Err(e) => { let _ = e.to_string(); }
            }
        }
    }

    #[test]
    fn callbacks_shaped_like_callbacks_never_panic(
        pairs in prop::collection::vec(
            (prop_oneof![4 => prop::sample::select(vec!["code", "state", "iss", "error", "error_description",
                "error_uri", "id_token", "session_state", "scope"]).prop_map(str::to_owned), 1 => any::<String>()],
             wire_string()),
            0..8),
        real_state in any::<bool>(),
        form in any::<bool>(),
    ) {
        let p = pending();
        let state = p.state().to_owned();
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, if real_state && k == "state" { &state } else { v });
        }
        let q = ser.finish();
        let result = if form {
            p.handle_callback(&client(), Callback::FormPost(q.as_bytes()))
        } else {
            p.handle_callback(&client(), Callback::Url(&format!("http://localhost/signin-callback?{q}")))
        };
        if let Ok(exchange) = &result {
            let code = pairs.iter().find(|(k, _)| k == "code").map(|(_, v)| v.as_str());
            prop_assert_eq!(Some(exchange.code().secret()), code);
        }
        if !pairs.iter().any(|(k, _)| k == "state") {
            prop_assert!(matches!(result, Err(CallbackError::StateMissing | CallbackError::Repeated(_))), "{result:?}");
        }
    }

    #[test]
    fn a_foreign_state_is_rejected(state in any::<String>(), code in "[A-Za-z0-9]{1,20}") {
        let p = pending();
        prop_assume!(state != p.state());
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &state)
            .finish();
        let r = p.handle_callback(&client(), Callback::Query(&q));
        prop_assert!(matches!(r, Err(CallbackError::StateMismatch)), "{r:?}");
    }

    #[test]
    fn the_right_state_yields_the_code(code in any::<String>()) {
        prop_assume!(!code.is_empty());
        let p = pending();
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", p.state())
            .finish();
        let exchange = p.handle_callback(&client(), Callback::Query(&q)).unwrap();
        prop_assert_eq!(exchange.code().secret(), code.as_str());
    }

    // ---------------------------------------------------------------------------------------------
    // WWW-Authenticate, Domain API answers, Retry-After
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn challenges_never_panic(values in prop::collection::vec(prop_oneof![challenge_text(), any::<String>()], 0..4)) {
        for c in parse_challenges(values.iter().map(String::as_str)) {
            prop_assert!(!c.scheme.is_empty());
            let _ = c.param("error");
        }
    }

    #[test]
    fn bearer_challenges_never_panic(values in prop::collection::vec(header_value(), 0..4)) {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::WWW_AUTHENTICATE, v);
        }
        let _ = bearer_challenge(&h);
    }

    #[test]
    fn a_quoted_error_is_read_back(
        scheme in "[bB][eE][aA][rR][eE][rR]",
        before in prop::sample::select(vec!["", "Basic realm=\"x\", ", "Negotiate abc+/==, "]),
        error in "[ !#-\\[\\]-~]{0,20}",
        description in "[ -~]{0,30}",
    ) {
        let escaped = description.replace('\\', "\\\\").replace('"', "\\\"");
        let v = format!(r#"{before}{scheme} error="{error}", error_description="{escaped}""#);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_str(&v).unwrap());
        let c = bearer_challenge(&h).unwrap();
        prop_assert_eq!(c.error.as_deref(), Some(error.as_str()));
        prop_assert_eq!(c.error_description.as_deref(), Some(description.as_str()));
    }

    #[test]
    fn api_responses_never_panic(r in response()) {
        let result = check_api_response(&r);
        let status = r.status().as_u16();
        match &result {
            Ok(()) => prop_assert!(status < 400),
            Err(e) => {
                let _ = e.to_string();
                prop_assert!(status >= 400);
                match e {
                    ApiError::Unauthorized { .. } => prop_assert_eq!(status, 401),
                    ApiError::Forbidden { .. } => prop_assert_eq!(status, 403),
                    ApiError::RateLimited { .. } => prop_assert_eq!(status, 429),
                    ApiError::Business { status: s, .. } | ApiError::Status { status: s, .. } => {
                        prop_assert_eq!(*s, status);
                        prop_assert!(![401, 403, 429].contains(&status));
                    }
                    other => prop_assert!(false, "unknown error {:?}", other),
                }
            }
        }
        let _ = parse_domain_error(r.body());
    }

    #[test]
    fn domain_errors_keep_the_message(message in any::<String>(), extra in json()) {
        let mut body = serde_json::json!({"message": message, "code": extra.clone(), "type": "X", "info": extra});
        if let Value::Object(m) = &mut body {
            m.insert("x-other".to_owned(), Value::Null);
        }
        let e = parse_domain_error(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(e.message, message);
    }

    #[test]
    fn retry_after_never_panics(s in prop_oneof![any::<String>(), "[0-9 ]{0,30}", "[A-Za-z0-9 ,:]{0,40}"]) {
        if let Some(r) = RetryAfter::parse(&s) {
            let _ = r.delay(now());
            let _ = r.delay(UNIX_EPOCH);
        }
    }

    #[test]
    fn retry_after_reads_delays_and_dates(secs in any::<u64>(), at in 0u64..253_402_300_799) {
        prop_assert_eq!(RetryAfter::parse(&format!(" {secs} ")), Some(RetryAfter::Delay(Duration::from_secs(secs))));
        let t = UNIX_EPOCH + Duration::from_secs(at);
        prop_assert_eq!(RetryAfter::parse(&httpdate::fmt_http_date(t)), Some(RetryAfter::At(t)));
    }

    // ---------------------------------------------------------------------------------------------
    // The token manager
    // ---------------------------------------------------------------------------------------------

    /// Any refresh answer: never a panic, the tokens dropped only for an `invalid_grant` error answer,
    /// never for a 5xx, and new tokens only from a success.
    #[test]
    fn refresh_answers_never_panic(r in response()) {
        let mut m = manager_with(Some(initial_tokens()));
        prop_assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        m.handle_refresh_response(id, &r, now());
        match m.poll_output() {
            Some(Output::Persist { tokens, .. }) => {
                prop_assert!(r.status().is_success());
                prop_assert!(m.tokens().is_some());
                match parse_token_response(&r, now(), &Scopes::erpnet_default()) {
                    // A usable answer without a refresh token keeps the old one (catalogue E3).
                    Ok(_) => prop_assert!(tokens.refresh_token.is_some()),
                    // An unusable 200 spends the one sent (E10): the answer's, if readable, or none.
                    Err(_) => {
                        prop_assert_eq!(tokens.refresh_token.as_ref().map(|t| t.secret().to_owned()),
                            salvage_refresh_token(&r).map(|t| t.secret().to_owned()));
                        prop_assert_eq!(&tokens.access_token, &initial_tokens().access_token);
                    }
                }
            }
            Some(Output::Clear) => {
                prop_assert!(m.tokens().is_none());
                prop_assert!(r.status().is_client_error(), "tokens dropped on HTTP {}", r.status());
                let body: Value = serde_json::from_slice(r.body()).unwrap();
                prop_assert_eq!(&body["error"], "invalid_grant");
            }
            None => {
                prop_assert_eq!(m.tokens().map(|t| t.access_token.secret()), Some("at-0"));
                prop_assert!(!m.is_renewing());
            }
            Some(other) => prop_assert!(false, "unexpected output {:?}", other),
        }
        prop_assert!(m.poll_output().is_none());
    }

    #[test]
    fn invalid_grant_on_a_5xx_keeps_the_tokens(status in 500u16..600) {
        let mut m = manager_with(Some(initial_tokens()));
        prop_assert!(m.force_refresh());
        let Some(Output::Refresh { id, .. }) = m.poll_output() else { panic!("no refresh") };
        let mut r = token_body(serde_json::json!({"error": "invalid_grant"}));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        m.handle_refresh_response(id, &r, now());
        prop_assert!(m.tokens().is_some(), "tokens dropped on HTTP {}", status);
    }

    /// Any API answer: never a panic, `Retry` only for a 401, and at most once per call.
    #[test]
    fn api_answers_never_panic(answers in prop::collection::vec(response(), 1..4)) {
        let mut tokens = initial_tokens();
        tokens.expires_at = Some(now() + Duration::from_secs(3600));
        let mut m = manager_with(Some(tokens));
        let mut call = m.begin_call();
        let mut retries = 0;
        for r in &answers {
            let mut req = http::Request::new(());
            prop_assert!(matches!(m.authorize(&mut call, &mut req, now()), Access::Ready(()) | Access::Wait));
            match m.handle_api_response(&mut call, r) {
                ApiOutcome::Retry => {
                    retries += 1;
                    prop_assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
                    prop_assert!(retries <= 1, "retried twice");
                    prop_assert!(call.retried());
                }
                ApiOutcome::Done(result) => prop_assert_eq!(result, check_api_response(r)),
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // ID tokens, JWKS, discovery, revocation, UserInfo
    // ---------------------------------------------------------------------------------------------

    #[test]
    fn id_tokens_never_panic(token in jwt_like(), keys in prop::collection::vec(json(), 0..3), nonce in any::<bool>()) {
        let id = IdToken::new(&token);
        let _ = UnverifiedClaims::decode(&id);
        let doc = serde_json::json!({"keys": keys});
        let mut set = JwkSet::from_json(doc.to_string().as_bytes()).unwrap_or_else(|_| JwkSet::new(Vec::new()));
        if set.is_empty() {
            let rsa = Jwk::rsa(Some("k1"), Some(SigningAlg::Rs256), &[0xC5; 256], &[1, 0, 1]).unwrap();
            set = JwkSet::new(vec![rsa]);
        }
        let at = AccessToken::new("at");
        let mut expect = IdTokenExpectations::new().access_token(&at);
        if nonce {
            expect = expect.nonce(Some("n-0"));
        }
        match verify_id_token(&id, &client(), &set, &expect, now()) {
            Ok(_) => prop_assert!(false, "an unsigned token was accepted"),
            Err(e) => { let _ = e.to_string(); }
        }
        let mut cache = KeyCache::new();
        let _ = cache.poll_fetch(&client(), &id, now());
    }

    #[test]
    fn jwks_never_panic(r in response(), key in json()) {
        let _ = JwkSet::parse(&r).map(|s| s.keys().len());
        let _ = JwkSet::from_json(r.body());
        let _ = Jwk::from_json(&key);
        let _ = Jwk::from_json(&serde_json::json!({"kty": "RSA", "n": key.clone(), "e": key.clone()}));
        let _ = Jwk::from_json(&serde_json::json!({"kty": "EC", "crv": "P-256", "x": key.clone(), "y": key}));
        let mut cache = KeyCache::new();
        if cache.handle_jwks_response(&r).is_err() {
            prop_assert!(cache.keys().is_empty(), "a failed fetch keeps the (empty) old set");
        }
    }

    #[test]
    fn discovery_never_panics(r in response()) {
        if let Ok(m) = ProviderMetadata::parse(&r, ISS) {
            prop_assert!(r.status().is_success());
            prop_assert_eq!(m.issuer.as_str(), ISS);
        }
        let _ = ProviderMetadata::from_json(r.body(), ISS);
    }

    #[test]
    fn revocation_and_userinfo_never_panic(r in response()) {
        if parse_revocation_response(&r).is_ok() {
            prop_assert!(r.status().is_success());
        }
        if let Err(e) = parse_userinfo_response(&r, "admin") {
            let _ = e.to_string();
        }
    }
}
