//! The token endpoint: client authentication, the three grants, refresh policy, malformed requests.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use erpnet_oauth_mock::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PUBLIC_CLIENT_ID, DEMO_REDIRECT_URI, DEMO_SERVICE_CLIENT_ID,
    MockErpNet, RefreshPolicy, TrustedApp, secret_hash,
};

fn code(agent: &ureq::Agent, mock: &MockErpNet) -> String {
    login(agent, mock, &seed_authorize_url(mock))["code"].clone()
}

type Pairs<'a> = Vec<(&'a str, &'a str)>;

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

#[test]
fn client_secret_basic_form_encodes_id_and_secret() {
    let secret = "s3cr:et /+&%";
    let mock = start_with(|c| {
        c.apps.push(TrustedApp {
            application_uri: "odd:client id/1".into(),
            application_secret_hash: Some(secret_hash(secret)),
            ..TrustedApp::demo_service()
        })
    });
    let agent = agent();
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[("Authorization", &basic("odd:client id/1", secret))],
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["scope"], "DomainApi");
    assert!(t.get("refresh_token").is_none());
    assert!(t.get("id_token").is_none());
    let c = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["client_id"], "odd:client id/1");
    assert!(c.get("sub").is_none());
    // The seed's app with Basic for the code exchange.
    let code = code(&agent, &mock);
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[("Authorization", &basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))],
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", DEMO_REDIRECT_URI)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Not form-encoded before base64: the '/' is fine, but a raw secret with '%' is not decodable the same way.
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[("Authorization", &format!("Basic {}", STANDARD.encode(format!("odd:client id/1:{secret}"))))],
        &[("grant_type", "client_credentials")],
    );
    r.assert_oauth_error(401, "invalid_client");
}

#[test]
fn client_authentication_failures() {
    let mock = start_with(|c| {
        c.apps.push(TrustedApp {
            application_uri: "disabled/app".into(),
            is_enabled: false,
            ..TrustedApp::demo()
        })
    });
    let agent = agent();
    let url = token_url(&mock);
    let cc = ("grant_type", "client_credentials");
    let service_basic = basic(DEMO_SERVICE_CLIENT_ID, DEMO_CLIENT_SECRET);
    let cases: Vec<(Pairs<'_>, Pairs<'_>, u16, &str)> = vec![
        (vec![], vec![cc], 401, "invalid_client"),
        (vec![], vec![cc, ("client_id", "nobody"), ("client_secret", "x")], 401, "invalid_client"),
        (
            vec![],
            vec![cc, ("client_id", "disabled/app"), ("client_secret", DEMO_CLIENT_SECRET)],
            401,
            "invalid_client",
        ),
        (vec![], vec![cc, ("client_id", DEMO_SERVICE_CLIENT_ID)], 401, "invalid_client"),
        (
            vec![],
            vec![cc, ("client_id", DEMO_SERVICE_CLIENT_ID), ("client_secret", "wrong")],
            401,
            "invalid_client",
        ),
        (vec![("Authorization", "Basic !!!")], vec![cc], 401, "invalid_client"),
        (
            vec![],
            vec![
                cc,
                ("client_id", DEMO_SERVICE_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("scope", "Nope"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![],
            vec![
                cc,
                ("client_id", DEMO_SERVICE_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("scope", "openid"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![],
            vec![cc, ("client_id", DEMO_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET)],
            400,
            "unauthorized_client",
        ),
        (vec![], vec![cc, ("client_id", DEMO_PUBLIC_CLIENT_ID)], 400, "unauthorized_client"),
        (
            vec![],
            vec![("client_id", DEMO_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET)],
            400,
            "invalid_request",
        ),
        (
            vec![],
            vec![
                ("grant_type", "password"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("Authorization", "Basic bXkudHJ1c3RlZC5hcHAvZmlyc3Q6eA==")],
            vec![cc, ("client_secret", DEMO_CLIENT_SECRET)],
            400,
            "invalid_request",
        ),
        (
            vec![("Authorization", service_basic.as_str())],
            vec![cc, ("client_id", DEMO_CLIENT_ID)],
            400,
            "invalid_request",
        ),
    ];
    for (headers, form, status, error) in &cases {
        let r = post_form(&agent, &url, headers, form);
        assert_eq!(r.status, *status, "{form:?}: {}", r.body);
        r.assert_oauth_error(*status, error);
    }
    // Basic with the same client_id in the body is fine.
    let r = post_form(
        &agent,
        &url,
        &[("Authorization", &basic(DEMO_SERVICE_CLIENT_ID, DEMO_CLIENT_SECRET))],
        &[cc, ("client_id", DEMO_SERVICE_CLIENT_ID), ("scope", "DomainApi")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_form(&agent, &url, &[("Authorization", &basic(DEMO_SERVICE_CLIENT_ID, "wrong"))], &[cc]);
    r.assert_oauth_error(401, "invalid_client");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let n = mock.counters();
    assert_eq!(n.client_credentials_grants, 1);
    assert_eq!(n.invalid_client_errors, 7);
    assert_eq!(n.token_requests, cases.len() as u64 + 2);
    assert_eq!(n.token_errors, cases.len() as u64 + 1);
}

#[test]
fn authorization_code_is_single_use_bound_and_short_lived() {
    let mock =
        start_with(|c| c.apps.push(TrustedApp { application_uri: "other/app".into(), ..TrustedApp::demo() }));
    let agent = agent();
    let url = token_url(&mock);

    // Reuse: invalid_grant, and the tokens of the first exchange are revoked.
    let c = code(&agent, &mock);
    let t = exchange(&agent, &mock, &c).json();
    exchange(&agent, &mock, &c).assert_oauth_error(400, "invalid_grant");
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(access))]).status, 401);
    refresh(&agent, &mock, t["refresh_token"].as_str().unwrap()).assert_oauth_error(400, "invalid_grant");

    // Another client cannot redeem it (and does not spend it).
    let c = code(&agent, &mock);
    post_form(
        &agent,
        &url,
        &[],
        &[
            ("client_id", "other/app"),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", DEMO_REDIRECT_URI),
        ],
    )
    .assert_oauth_error(400, "invalid_grant");
    assert_eq!(exchange(&agent, &mock, &c).status, 200);

    // redirect_uri must be byte-identical.
    let c = code(&agent, &mock);
    post_form(
        &agent,
        &url,
        &[],
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", "http://localhost/signin-callback/"),
        ],
    )
    .assert_oauth_error(400, "invalid_grant");

    // Missing pieces.
    let c = code(&agent, &mock);
    let base = [
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", DEMO_CLIENT_SECRET),
        ("grant_type", "authorization_code"),
    ];
    let mut no_code = base.to_vec();
    no_code.push(("redirect_uri", DEMO_REDIRECT_URI));
    post_form(&agent, &url, &[], &no_code).assert_oauth_error(400, "invalid_request");
    let mut no_redirect = base.to_vec();
    no_redirect.push(("code", &c));
    post_form(&agent, &url, &[], &no_redirect).assert_oauth_error(400, "invalid_request");
    exchange(&agent, &mock, "no-such-code").assert_oauth_error(400, "invalid_grant");

    // Expiry: 300 s by the mock's clock.
    let c1 = code(&agent, &mock);
    let c2 = code(&agent, &mock);
    mock.advance_clock(Duration::from_secs(299));
    assert_eq!(exchange(&agent, &mock, &c1).status, 200);
    mock.advance_clock(Duration::from_secs(1));
    exchange(&agent, &mock, &c2).assert_oauth_error(400, "invalid_grant");

    assert_eq!(mock.counters().authorization_code_grants, 3);
}

#[test]
fn no_offline_access_means_no_refresh_token_and_openid_means_an_id_token() {
    let mock = start();
    let agent = agent();
    let url = authorize_url(
        &mock,
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "DomainApi"),
        ],
    );
    let c = login(&agent, &mock, &url);
    assert!(!c.contains_key("state"));
    let t = exchange(&agent, &mock, &c["code"]).json();
    assert!(t.get("refresh_token").is_none());
    assert!(t.get("id_token").is_none());
    assert_eq!(t["scope"], "DomainApi");
}

#[test]
fn refresh_rotation_reuse_and_lifetimes() {
    // Reuse detection off: the old token is refused but the grant survives.
    let mock = start_with(|c| c.refresh.reuse_detection = false);
    let agent = agent();
    let t = seed_tokens(&agent, &mock);
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let rt2 = refresh(&agent, &mock, &rt1).json()["refresh_token"].as_str().unwrap().to_owned();
    refresh(&agent, &mock, &rt1).assert_oauth_error(400, "invalid_grant");
    assert_eq!(refresh(&agent, &mock, &rt2).status, 200);
    assert_eq!(mock.counters().grants_revoked, 0);

    // Reuse mode (no rotation): the same refresh token comes back and stays valid.
    let mock = start_with(|c| c.refresh.one_time_only = false);
    let t = seed_tokens(&agent, &mock);
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = refresh(&agent, &mock, &rt);
        assert_eq!(r.json()["refresh_token"], rt.as_str());
    }

    // Absolute lifetime (confidential: 30 days by default).
    let mock = start();
    let t = seed_tokens(&agent, &mock);
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        mock.advance_clock(Duration::from_secs(14 * 24 * 3600));
        rt = refresh(&agent, &mock, &rt).json()["refresh_token"].as_str().unwrap().to_owned();
    }
    mock.advance_clock(Duration::from_secs(2 * 24 * 3600));
    refresh(&agent, &mock, &rt).assert_oauth_error(400, "invalid_grant");

    // Sliding lifetime.
    let mock = start_with(|c| {
        c.refresh =
            RefreshPolicy { sliding_lifetime: Some(Duration::from_secs(3600)), ..RefreshPolicy::default() }
    });
    let t = seed_tokens(&agent, &mock);
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        mock.advance_clock(Duration::from_secs(3599));
        rt = refresh(&agent, &mock, &rt).json()["refresh_token"].as_str().unwrap().to_owned();
    }
    mock.advance_clock(Duration::from_secs(3600));
    refresh(&agent, &mock, &rt).assert_oauth_error(400, "invalid_grant");

    // Down-scoping on refresh; widening is refused; other clients cannot use it; unknown tokens.
    let mock = start();
    let t = seed_tokens(&agent, &mock);
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let form = |scope: &str, client: &str| {
        post_form(
            &agent,
            &token_url(&mock),
            &[],
            &[
                ("client_id", client),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("scope", scope),
            ],
        )
    };
    form("openid DomainApi email", DEMO_CLIENT_ID).assert_oauth_error(400, "invalid_scope");
    form("DomainApi", DEMO_SERVICE_CLIENT_ID).assert_oauth_error(400, "invalid_grant");
    let r = form("DomainApi offline_access", DEMO_CLIENT_ID);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["scope"], "DomainApi offline_access");
    assert!(r.json().get("id_token").is_none());
    refresh(&agent, &mock, "unknown").assert_oauth_error(400, "invalid_grant");
    let mut missing = vec![("client_id", DEMO_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET)];
    missing.push(("grant_type", "refresh_token"));
    post_form(&agent, &token_url(&mock), &[], &missing).assert_oauth_error(400, "invalid_request");
}

#[test]
fn revoke_all_grants_of_a_user() {
    let mock = start();
    let agent = agent();
    let t = seed_tokens(&agent, &mock);
    mock.revoke_all_grants_of("admin");
    refresh(&agent, &mock, t["refresh_token"].as_str().unwrap()).assert_oauth_error(400, "invalid_grant");
    let r = get(
        &agent,
        &customers_url(&mock, ""),
        &[("Authorization", &bearer(t["access_token"].as_str().unwrap()))],
    );
    assert_eq!(r.status, 401);
}

#[test]
fn malformed_token_requests_get_invalid_request_not_a_hang() {
    let mock = start();
    let agent = agent();
    let url = token_url(&mock);
    let form = "application/x-www-form-urlencoded";
    let auth = format!("client_id={}&client_secret={DEMO_CLIENT_SECRET}", enc(DEMO_SERVICE_CLIENT_ID));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", br#"{"grant_type":"client_credentials"}"#.to_vec(), 400),
        ("text/plain", b"grant_type=client_credentials".to_vec(), 400),
        (form, format!("{auth}&grant_type=client_credentials&grant_type=refresh_token").into_bytes(), 400),
        (form, format!("{auth}&grant_type=client_credentials&scope=%FF%FE").into_bytes(), 400),
        (form, [format!("{auth}&grant_type=").into_bytes(), vec![0xff, 0xfe]].concat(), 400),
        (form, format!("{auth}&grant_type=client_credentials&x={}", "a".repeat(70 * 1024)).into_bytes(), 413),
        (form, b"&&&===&".to_vec(), 401),
        (form, Vec::new(), 401),
    ];
    for (ct, body, status) in cases {
        let r = post_raw(&agent, &url, ct, &body);
        assert_eq!(
            r.status,
            status,
            "{ct} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            r.body
        );
        let error = if status == 401 { "invalid_client" } else { "invalid_request" };
        r.assert_oauth_error(status, error);
    }
    // Wrong method.
    assert_eq!(get(&agent, &url, &[]).status, 405);
    // The server is still fine.
    let r = post_raw(&agent, &url, form, format!("{auth}&grant_type=client_credentials").as_bytes());
    assert_eq!(r.status, 200);
}
