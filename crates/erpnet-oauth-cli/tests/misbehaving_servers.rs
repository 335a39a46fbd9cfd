//! The built binary against servers that misbehave the ways `../shared/CONFORMANCE.md` lists, one row per
//! misbehaviour, named by its catalogue id. The mock answers normally (a real login first), then its
//! interceptor answers the endpoint under test with the scripted response (ID tokens signed with the
//! mock's own key, [`erpnet_oauth_mock::MockErpNet::sign_jwt`], so that only the claim under test is
//! wrong). Each row checks the exit code,
//! the one error line, and what became of the stored tokens: kept untouched on a server's fault, replaced
//! on a success, deleted only on `invalid_grant`.
//!
//! The conformance suite (`cargo xtask conformance`) holds every case through the core and both adapters;
//! these rows show the same reactions at the command line, on the CLI's own streams and exit codes.

mod common;

use common::*;
use erpnet_oauth_mock::Intercepted;
use std::sync::{Arc, Mutex};

const TOKEN_PATH: &str = "/id/connect/token";
const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=2";

/// A scripted response.
fn response(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.as_bytes().to_vec()).unwrap()
}

fn json(status: u16, body: &str) -> http::Response<Vec<u8>> {
    response(status, &[("content-type", "application/json"), ("cache-control", "no-store")], body)
}

/// The paths and queries of the requests the server saw, and their `Authorization` headers.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Answers the first `times` requests to `path` with what `script` makes (every later one, and every other
/// request, goes to the mock as usual); records every request seen.
fn script(
    h: &Harness,
    path: &'static str,
    times: usize,
    script: impl Fn() -> http::Response<Vec<u8>> + Send + Sync + 'static,
) -> Seen {
    let seen: Seen = Arc::default();
    let left = Mutex::new(times);
    let record = Arc::clone(&seen);
    h.mock().set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        record.lock().unwrap().push((target, auth));
        let mut left = left.lock().unwrap();
        if req.uri().path() == path && *left > 0 {
            *left -= 1;
            Intercepted::Respond(script())
        } else {
            Intercepted::Pass
        }
    })));
    seen
}

/// What a row expects of the stored tokens afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Store {
    /// Byte for byte what was there before.
    Kept,
    /// A new access token; the refresh token as given.
    Renewed { refresh_token: &'static str },
    /// Answered 200 but unusable (catalogue E10): the refresh token sent is spent. The access token is
    /// kept; the refresh token is the answer's when it can be read, else none.
    Spent { refresh_token: Option<&'static str> },
}

/// One misbehaviour of the token endpoint, met by `erpnet-oauth refresh`.
struct Refresh {
    id: &'static str,
    answer: fn() -> http::Response<Vec<u8>>,
    exit: i32,
    /// Words of the error line (exit ≠ 0).
    says: &'static [&'static str],
    store: Store,
}

const TOKEN_ROWS: &[Refresh] = &[
    Refresh {
        id: "C2 token_type missing",
        answer: || json(200, r#"{"access_token":"AT-new-1","expires_in":3600,"refresh_token":"RT-new-1"}"#),
        exit: 4,
        says: &["token_type"],
        store: Store::Spent { refresh_token: Some("RT-new-1") },
    },
    Refresh {
        id: "C2 token_type mac",
        answer: || json(200, r#"{"access_token":"AT-new-2","token_type":"mac","expires_in":3600}"#),
        exit: 4,
        says: &["token type `mac`"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C2 token_type in lower case",
        answer: || {
            json(
                200,
                r#"{"access_token":"AT-new-3","token_type":"bearer","expires_in":3600,"refresh_token":"RT-3"}"#,
            )
        },
        exit: 0,
        says: &[],
        store: Store::Renewed { refresh_token: "RT-3" },
    },
    Refresh {
        id: "C2 expires_in as a string, unknown members",
        answer: || {
            json(
                200,
                r#"{"access_token":"AT-new-4","token_type":"Bearer","expires_in":"3600","refresh_token":"RT-4",
                    "x-unknown":{"nested":[1,2]}}"#,
            )
        },
        exit: 0,
        says: &[],
        store: Store::Renewed { refresh_token: "RT-4" },
    },
    Refresh {
        id: "C2 expires_in zero",
        answer: || json(200, r#"{"access_token":"AT-new-5","token_type":"Bearer","expires_in":0}"#),
        exit: 4,
        says: &["expires_in"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C2 expires_in negative",
        answer: || json(200, r#"{"access_token":"AT-new-6","token_type":"Bearer","expires_in":-5}"#),
        exit: 4,
        says: &["expires_in"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C2 expires_in not a number",
        answer: || json(200, r#"{"access_token":"AT-new-7","token_type":"Bearer","expires_in":"soon"}"#),
        exit: 4,
        says: &["expires_in"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C4 OAuth error with description and uri",
        answer: || {
            json(
                400,
                r#"{"error":"invalid_request","error_description":"the request is malformed in some way",
                    "error_uri":"https://docs.erp.net/errors/1"}"#,
            )
        },
        exit: 4,
        says: &["invalid_request", "the request is malformed in some way"],
        store: Store::Kept,
    },
    Refresh {
        id: "C4 empty 502",
        answer: || response(502, &[], ""),
        exit: 4,
        says: &["502"],
        store: Store::Kept,
    },
    Refresh {
        id: "C4 200 with null",
        answer: || json(200, "null"),
        exit: 4,
        says: &["token response is malformed"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C4 200 with []",
        answer: || json(200, "[]"),
        exit: 4,
        says: &["token response is malformed"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C4 200 with a truncated object",
        answer: || json(200, "{\""),
        exit: 4,
        says: &["token response is malformed"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C4 200 with HTML",
        answer: || response(200, &[("content-type", "text/html")], "<html><body>Sign in</body></html>"),
        exit: 4,
        says: &["token response is malformed"],
        store: Store::Spent { refresh_token: None },
    },
    Refresh {
        id: "C5/H1 a redirect from the token endpoint",
        answer: || response(302, &[("location", "/elsewhere/token")], ""),
        exit: 4,
        says: &["302"],
        store: Store::Kept,
    },
    Refresh {
        id: "E3 no refresh_token in the response keeps the old one",
        answer: || json(200, r#"{"access_token":"AT-new-8","token_type":"Bearer","expires_in":3600}"#),
        exit: 0,
        says: &[],
        store: Store::Renewed { refresh_token: "" },
    },
];

#[test]
fn token_endpoint_misbehaviours_on_refresh() {
    for row in TOKEN_ROWS {
        let h = Harness::new();
        h.login();
        let before = std::fs::read(h.token_file()).unwrap();
        let rt0 = h.refresh_token().unwrap();
        let at0 = h.access_token().unwrap();
        let seen = script(&h, TOKEN_PATH, 1, row.answer);
        let o = h.run(h.store_only(&["refresh"]));
        let id = row.id;
        if row.exit == 0 {
            o.assert_success();
        } else {
            o.assert_only_error(row.exit, row.says);
        }
        match row.store {
            Store::Kept => {
                assert_eq!(std::fs::read(h.token_file()).unwrap(), before, "{id}: the tokens are kept")
            }
            Store::Spent { refresh_token } => {
                assert_eq!(h.access_token(), Some(at0.clone()), "{id}: the access token is kept");
                assert_eq!(h.refresh_token().as_deref(), refresh_token, "{id}: the spent one is gone");
            }
            Store::Renewed { refresh_token } => {
                assert!(
                    h.access_token().unwrap().starts_with("AT-new-"),
                    "{id}: the new access token is stored"
                );
                let expected = if refresh_token.is_empty() { rt0.as_str() } else { refresh_token };
                assert_eq!(h.refresh_token().as_deref(), Some(expected), "{id}");
            }
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{id}: one request, never a retry or a followed redirect: {seen:?}");
        assert_eq!(h.mock().counters().invalid_grant_errors, 0, "{id}");
    }
}

#[test]
fn e5_invalid_grant_is_the_only_answer_that_deletes_the_tokens() {
    let h = Harness::new();
    h.login();
    script(&h, TOKEN_PATH, 1, || json(400, r#"{"error":"invalid_grant","error_description":"revoked"}"#));
    h.run(h.store_only(&["refresh"])).assert_only_error(3, &["invalid_grant", "erpnet-oauth login"]);
    assert!(h.stored().is_empty());
}

#[test]
fn h3_a_huge_token_response_is_refused_and_the_tokens_are_kept() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    script(&h, TOKEN_PATH, 1, || {
        let padding = "x".repeat(8 * 1024 * 1024);
        json(200, &format!(r#"{{"access_token":"AT","token_type":"Bearer","padding":"{padding}"}}"#))
    });
    let o = h.run(h.store_only(&["refresh"]));
    o.assert_only_error(4, &["exceeds the limit of 1048576 bytes"]);
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before);
}

/// A 401 with `challenge` from the Domain API, once; the CLI refreshes once and retries once.
fn api_401_once(challenge: &'static str) -> (Harness, Seen, Outcome) {
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    let seen = script(&h, "/api/domain/odata/Crm_Customers", 1, move || {
        response(401, &[("www-authenticate", challenge)], "")
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    assert_ne!(h.access_token().unwrap(), at0, "{challenge}: refreshed");
    (h, seen, o)
}

#[test]
fn f4_the_challenge_is_understood_however_it_is_written() {
    for challenge in [
        r#"Bearer error="invalid_token", error_description="The access token expired""#,
        r#"bearer error="invalid_token""#,
        r#"BEARER error=invalid_token"#,
        r#"Basic realm="erp", Bearer realm="api", error="invalid_token""#,
        r#"Bearer"#,
        "%%% not a challenge ,,, \"",
    ] {
        let (h, seen, o) = api_401_once(challenge);
        o.assert_success();
        let c = h.mock().counters();
        assert_eq!((c.refresh_token_grants, c.api_ok), (1, 1), "{challenge}: one refresh, one retry");
        let api: Vec<_> =
            seen.lock().unwrap().iter().filter(|(p, _)| p.starts_with("/api/")).cloned().collect();
        assert_eq!(api.len(), 2, "{challenge}: {api:?}");
        // F1: the token only in the Authorization header, never in the URL.
        for (path, auth) in &api {
            assert!(auth.as_deref().is_some_and(|a| a.starts_with("Bearer ")), "{path}");
            let token = &auth.as_deref().unwrap_or_default()["Bearer ".len()..];
            assert!(!path.contains(token), "the token is not in the URL");
        }
    }
}

#[test]
fn f2_a_second_401_is_returned_never_a_loop() {
    let h = Harness::new();
    h.login();
    let seen = script(&h, "/api/domain/odata/Crm_Customers", usize::MAX, || {
        response(401, &[("www-authenticate", r#"Bearer error="invalid_token""#)], "")
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(4, &["401"]);
    let api = seen.lock().unwrap().iter().filter(|(p, _)| p.starts_with("/api/")).count();
    assert_eq!(api, 2, "one call, one retry");
    assert_eq!(h.mock().counters().refresh_token_grants, 1, "one refresh");
    assert!(h.refresh_token().is_some(), "a 401 never deletes the tokens");
}

#[test]
fn g2_revocation_answering_200_with_any_body_is_success() {
    let h = Harness::new();
    h.login();
    script(&h, "/id/connect/revocation", 1, || response(200, &[("content-type", "text/html")], "<p>ok?</p>"));
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stderr.contains("Revoked the refresh token at the server"), "{o:#?}");
    assert!(h.stored().is_empty());
}

#[test]
fn h5_a_discovery_document_naming_another_issuer_is_refused() {
    let h = Harness::new();
    let instance = h.instance();
    script(&h, "/id/.well-known/openid-configuration", usize::MAX, move || {
        let doc = serde_json::json!({
            "issuer": "https://attacker.example/id",
            "authorization_endpoint": "https://attacker.example/id/connect/authorize",
            "token_endpoint": format!("{instance}/id/connect/token"),
            "jwks_uri": format!("{instance}/id/.well-known/openid-configuration/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        json(200, &doc.to_string())
    });
    let o = h.run(h.cli(&["login", "--no-browser"]));
    o.assert_failure(4, &["issuer"]);
    assert!(!o.stderr.contains("attacker.example/id/connect/authorize?"), "no authorize URL from it: {o:#?}");
    assert!(!h.token_file().exists());
}

/// Sends `query` to the CLI's listener as the login callback, with the login's real state where the
/// query says `{state}` and the mock's issuer where it says `{iss}`.
fn forged_callback(query: &str) -> (Harness, Outcome, String) {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let state = query_of(&run.authorize_url)
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let iss = url::form_urlencoded::byte_serialize(h.mock().issuer().as_bytes()).collect::<String>();
    let url = format!("{}?{}", h.redirect_uri, query.replace("{state}", &state).replace("{iss}", &iss));
    let mut page = browser().get(&url).call().unwrap();
    let status = page.status().as_u16();
    let body = page.body_mut().read_to_string().unwrap_or_default();
    if status == 400 {
        // Not this login's callback (catalogue B9): ignored, the login still waits. Ctrl-C ends it.
        run.interrupt();
    }
    let o = run.finish();
    h.check_streams(&o, true);
    (h, o, format!("{status} {body}"))
}

#[test]
fn b_callbacks_that_break_the_rules_are_refused_before_any_token_request() {
    // (id, query, the page's status, the exit code, words of the error line). A callback without exactly one
    // `state` of this login's is not this login's: the listener answers 400 and waits on (catalogue B9), so
    // the test ends the login with Ctrl-C (exit 3). The others are this login's, refused (exit 4).
    for (id, query, page_status, exit, says) in [
        ("B2 state missing", "code=c1", "400", 3, "cancelled"),
        ("B5 code repeated", "code=c1&code=c2&state={state}", "200", 4, "code"),
        ("B5 state repeated", "code=c1&state={state}&state={state}", "400", 3, "cancelled"),
        ("B4 iss missing although advertised", "code=c1&state={state}", "200", 4, "iss"),
        (
            "B4 iss of another issuer",
            "code=c1&state={state}&iss=https%3A%2F%2Fattacker.example%2Fid",
            "200",
            4,
            "issuer",
        ),
        (
            "B3 access_denied",
            "error=access_denied&error_description=the+user+said+no&state={state}&iss={iss}",
            "200",
            4,
            "access_denied",
        ),
    ] {
        let (h, o, page) = forged_callback(query);
        assert!(page.starts_with(page_status), "{id}: the browser gets a page: {page}");
        o.assert_failure(exit, &[says]);
        assert!(!h.token_file().exists(), "{id}");
        assert_eq!(h.mock().counters().token_requests, 0, "{id}: nothing is sent to the token endpoint");
    }
}

/// The claims of a correct ID token for the login whose authorize URL is `authorize_url`.
fn good_claims(h: &Harness, authorize_url: &str) -> serde_json::Value {
    let nonce = query_of(authorize_url).into_iter().find(|(k, _)| k == "nonce").map(|(_, v)| v).unwrap();
    let now = now_unix();
    serde_json::json!({
        "iss": h.mock().issuer(), "aud": CLIENT_ID, "sub": "admin", "nonce": nonce,
        "iat": now, "nbf": now, "exp": now + 300, "auth_time": now,
    })
}

/// A token response carrying `id_token` (and no `at_hash` to match).
fn with_id_token(id_token: &str) -> http::Response<Vec<u8>> {
    json(
        200,
        &serde_json::json!({
            "access_token": "AT-crafted-1", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "RT-crafted-1", "scope": "openid profile offline_access DomainApi",
            "id_token": id_token,
        })
        .to_string(),
    )
}

/// How a row spoils a correct ID token.
enum Spoil {
    /// Nothing: the control row, which must log in.
    None,
    /// Edit the claims, then sign.
    Claims(fn(&mut serde_json::Value)),
    /// Sign with the mock's key under another `kid`.
    Kid(&'static str),
    /// Sign, then put another token's signature on it.
    Signature,
    /// `alg: none`, no signature.
    Unsigned,
}

fn set(claims: &mut serde_json::Value, name: &str, value: serde_json::Value) {
    claims.as_object_mut().unwrap().insert(name.to_owned(), value);
}

fn remove(claims: &mut serde_json::Value, name: &str) {
    claims.as_object_mut().unwrap().remove(name);
}

#[test]
fn d_id_tokens_that_fail_validation_refuse_the_login_and_store_nothing() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let rows: [(&str, Spoil, &[&str]); 14] = [
        ("control: a correct ID token", Spoil::None, &[]),
        ("D1 a signature that is not the token's", Spoil::Signature, &["signature"]),
        ("D2 alg none", Spoil::Unsigned, &["none"]),
        (
            "D3 another issuer",
            Spoil::Claims(|c| set(c, "iss", "https://attacker.example/id".into())),
            &["iss"],
        ),
        ("D3 another audience", Spoil::Claims(|c| set(c, "aud", "another.app".into())), &["aud"]),
        (
            "D3 several audiences without azp",
            Spoil::Claims(|c| set(c, "aud", serde_json::json!([CLIENT_ID, "another.app"]))),
            &["azp"],
        ),
        (
            "D3 azp naming another client",
            Spoil::Claims(|c| {
                set(c, "aud", serde_json::json!([CLIENT_ID, "another.app"]));
                set(c, "azp", "another.app".into());
            }),
            &["azp"],
        ),
        ("D4 no sub", Spoil::Claims(|c| remove(c, "sub")), &["sub"]),
        ("D4 no exp", Spoil::Claims(|c| remove(c, "exp")), &["exp"]),
        ("D4 no iat", Spoil::Claims(|c| remove(c, "iat")), &["iat"]),
        (
            "D4 expired beyond the skew",
            Spoil::Claims(|c| set(c, "exp", (now_unix() - 600).into())),
            &["expired"],
        ),
        ("D5 another nonce", Spoil::Claims(|c| set(c, "nonce", "not-this-login".into())), &["nonce"]),
        ("D5 no nonce", Spoil::Claims(|c| remove(c, "nonce")), &["nonce"]),
        ("D7 an unknown kid", Spoil::Kid("unknown-kid-1"), &["kid"]),
    ];
    for (id, spoil, says) in rows {
        let h = Harness::new();
        let run = h.start_login(h.cli(&["login", "--no-browser"]));
        let mut claims = good_claims(&h, &run.authorize_url);
        let mock = h.mock();
        let id_token = match spoil {
            Spoil::None => mock.sign_jwt(&claims, None).unwrap(),
            Spoil::Claims(edit) => {
                edit(&mut claims);
                mock.sign_jwt(&claims, None).unwrap()
            }
            Spoil::Kid(kid) => mock.sign_jwt(&claims, Some(kid)).unwrap(),
            Spoil::Signature => {
                let token = mock.sign_jwt(&claims, None).unwrap();
                set(&mut claims, "sub", "someone-else".into());
                let other = mock.sign_jwt(&claims, None).unwrap();
                let (signed, _) = token.rsplit_once('.').unwrap();
                format!("{signed}.{}", other.rsplit_once('.').unwrap().1)
            }
            Spoil::Unsigned => {
                let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
                format!("{header}.{}.", b64(claims.to_string().as_bytes()))
            }
        };
        h.secret(&id_token);
        let jwks_before = mock.counters().jwks_fetches;
        script(&h, TOKEN_PATH, 1, move || with_id_token(&id_token));
        run.browse(&h);
        let o = run.finish();
        h.check_streams(&o, true);
        if says.is_empty() {
            // The control row: the crafted token is right in every claim, so the login succeeds.
            o.assert_success();
            assert_eq!(h.access_token().as_deref(), Some("AT-crafted-1"), "{id}");
        } else {
            o.assert_failure(4, says);
            assert!(o.error_line().contains("ID token"), "{id}: {}", o.error_line());
            assert!(!h.token_file().exists(), "{id}: nothing is stored");
        }
        if id.starts_with("D7") {
            // The keys were fetched for this very login (each `login` is a new process with no cached
            // keys), so the unknown kid gets no second fetch within the refetch interval (60 s): the answer
            // would be the same document. The refetch after a key rotation is the adapters' test
            // (`a_login_succeeds_across_a_rotation_of_the_signing_key`) and case D7's.
            assert_eq!(mock.counters().jwks_fetches - jwks_before, 1, "{id}: the JWKS fetched once");
        }
    }
}

#[test]
fn e4_a_refreshed_id_token_for_another_subject_ends_the_login() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    let now = now_unix();
    let claims = serde_json::json!({
        "iss": h.mock().issuer(), "aud": CLIENT_ID, "sub": "someone-else", "iat": now, "exp": now + 300,
    });
    let id_token = h.mock().sign_jwt(&claims, None).unwrap();
    h.secret(&id_token);
    script(&h, TOKEN_PATH, 1, move || with_id_token(&id_token));
    let o = h.run(h.store_only(&["refresh"]));
    // A security failure (catalogue E4, E11): the answer's tokens are never used, the refresh token sent is
    // spent (answered 200), so the login is ended and the user told to log in again.
    o.assert_only_error(4, &["sub", "the login was ended", "erpnet-oauth login"]);
    assert!(h.stored().is_empty(), "the login was ended: no tokens are left");
    assert_ne!(before.len(), 0);
    // The next command needs a login, and sends nothing.
    let grants = h.mock().counters().refresh_token_grants;
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
    assert_eq!(h.mock().counters().refresh_token_grants, grants);
}

#[test]
fn an_authorize_endpoint_from_discovery_that_is_not_https_is_never_opened() {
    // The discovery document names a plain-http authorization endpoint on another host, with a `&` that a
    // shell would take for a command separator: the URL is printed for the user to judge, never handed to
    // the platform's opener (a stand-in for xdg-open records whether it ran).
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::new();
    let instance = h.instance();
    let issuer = h.mock().issuer().to_owned();
    script(&h, "/id/.well-known/openid-configuration", usize::MAX, move || {
        let doc = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "http://attacker.example/authorize?x&calc.exe",
            "token_endpoint": format!("{instance}/id/connect/token"),
            "jwks_uri": format!("{instance}/id/.well-known/openid-configuration/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        json(200, &doc.to_string())
    });
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("opened");
    let opener = bin.path().join("xdg-open");
    std::fs::write(&opener, format!("#!/bin/sh\ntouch '{}'\n", record.display())).unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = h.cli(&["--allow-insecure-http", "login", "--wait", "1"]);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", bin.path().display()));
    let o = h.run(cmd);
    assert!(o.stderr.contains("http://attacker.example/authorize?x&calc.exe"), "{o:#?}");
    assert!(o.stderr.contains("not opening a `http:` URL"), "{o:#?}");
    o.assert_failure(3, &["no login callback arrived"]);
    assert!(!record.exists(), "the opener was never started");
}
