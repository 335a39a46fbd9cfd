//! The authorize endpoint, the login form, sessions and end session.

mod common;

use common::*;
use erpnet_oauth_mock::{
    ClientType, DEMO_CLIENT_ID, DEMO_LOCALHOST_REDIRECT_URI, DEMO_LOOPBACK_REDIRECT_URI,
    DEMO_POST_LOGOUT_REDIRECT_URI, DEMO_PUBLIC_CLIENT_ID, DEMO_REDIRECT_URI, DEMO_REDIRECT_URIS, MockConfig,
    TrustedApp,
};

fn code_url(mock: &erpnet_oauth_mock::MockErpNet, extra: &[(&str, &str)]) -> String {
    let mut p = vec![
        ("client_id", DEMO_CLIENT_ID),
        ("redirect_uri", DEMO_REDIRECT_URI),
        ("response_type", "code"),
        ("scope", SEED_SCOPE),
        ("state", "st"),
    ];
    for (k, v) in extra {
        p.retain(|(pk, _)| pk != k);
        p.push((k, v));
    }
    p.retain(|(_, v)| !v.is_empty());
    authorize_url(mock, &p)
}

#[test]
fn code_flow_redirects_with_code_state_and_iss_in_the_query() {
    let mock = start();
    let agent = agent();
    let r = login_with(&agent, &mock, &code_url(&mock, &[]), "admin", "admin-password");
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("http://localhost/signin-callback?code="), "{loc}");
    let p = r.location_params();
    assert_eq!(p["state"], "st");
    assert_eq!(p["iss"], mock.issuer());
    assert!(!p.contains_key("id_token"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("idsrv.session=") && cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(exchange(&agent, &mock, &p["code"]).status, 200);
}

#[test]
fn errors_before_the_redirect_uri_is_trusted_are_pages() {
    let mock = start_with(|c| {
        c.apps.push(TrustedApp {
            application_uri: "disabled/app".into(),
            is_enabled: false,
            ..TrustedApp::demo()
        })
    });
    let agent = agent();
    for url in [
        code_url(&mock, &[("client_id", "")]),
        code_url(&mock, &[("client_id", "no.such/app")]),
        code_url(&mock, &[("client_id", "disabled/app")]),
        code_url(&mock, &[("redirect_uri", "")]),
        code_url(&mock, &[("redirect_uri", "http://localhost/Signin-Callback")]),
        code_url(&mock, &[("redirect_uri", "http://localhost/signin-callback/")]),
        format!("{}&state=again", code_url(&mock, &[])),
        format!("{}/connect/authorize?client_id=%FF", mock.issuer()),
    ] {
        let r = get(&agent, &url, &[]);
        assert_eq!(r.status, 400, "{url}");
        assert!(r.header("location").is_none());
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
}

#[test]
fn the_demo_apps_accept_the_guides_loopback_redirect_uris_exactly() {
    // Every demo app registers the seed's URI and the CLI guide's two on port 8400, and no other.
    for app in &MockConfig::default().apps {
        assert_eq!(app.impersonate_login_urls, DEMO_REDIRECT_URIS, "{}", app.application_uri);
    }
    let mock = start();
    let agent = agent();
    for uri in [DEMO_LOOPBACK_REDIRECT_URI, DEMO_LOCALHOST_REDIRECT_URI] {
        let r =
            login_with(&agent, &mock, &code_url(&mock, &[("redirect_uri", uri)]), "admin", "admin-password");
        assert_eq!(r.status, 302, "{uri}: {}", r.body);
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with(&format!("{uri}?code=")), "{loc}");
        // The code is bound to the redirect URI it was issued for.
        let code = r.location_params()["code"].clone();
        let exchanged = post_form(
            &agent,
            &token_url(&mock),
            &[],
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", uri),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", erpnet_oauth_mock::DEMO_CLIENT_SECRET),
            ],
        );
        assert_eq!(exchanged.status, 200, "{uri}: {}", exchanged.body);
    }
    // Exact matching: another port, another path, a trailing slash, another case, https: refused (400 page).
    for uri in [
        "http://127.0.0.1:8401/signin-callback",
        "http://127.0.0.1/signin-callback",
        "http://127.0.0.1:8400/signin-callback/",
        "http://127.0.0.1:8400/Signin-Callback",
        "https://127.0.0.1:8400/signin-callback",
        "http://[::1]:8400/signin-callback",
        "http://localhost:8400/other",
    ] {
        let r = get(&agent, &code_url(&mock, &[("redirect_uri", uri)]), &[]);
        assert_eq!(r.status, 400, "{uri}");
        assert!(r.header("location").is_none(), "{uri}");
    }
}

#[test]
fn errors_after_the_redirect_uri_is_trusted_are_redirects() {
    let mock = start();
    let agent = agent();
    let (_, challenge) = pkce("x");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("response_type", "")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("response_type", "id_token")], "unsupported_response_type"),
        (vec![("scope", "")], "invalid_request"),
        (vec![("scope", "openid DomainApi admin")], "invalid_scope"),
        (vec![("response_type", "code id_token"), ("nonce", "")], "invalid_request"),
        (vec![("response_type", "code id_token"), ("nonce", "n"), ("scope", "DomainApi")], "invalid_request"),
        (vec![("code_challenge", &challenge), ("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", &challenge)], "invalid_request"),
        (vec![("code_challenge", "short"), ("code_challenge_method", "S256")], "invalid_request"),
        (vec![("response_mode", "jwt")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
    ];
    for (extra, error) in cases {
        let r = get(&agent, &code_url(&mock, &extra), &[]);
        assert_eq!(r.status, 302, "{extra:?}: {}", r.body);
        let p = r.location_params();
        assert_eq!(p["error"], error, "{extra:?}");
        assert!(!p["error_description"].is_empty());
        assert_eq!(p["state"], "st");
        assert_eq!(p["iss"], mock.issuer());
    }
}

#[test]
fn wrong_password_shows_the_form_again_and_cancel_denies() {
    let mock = start();
    let agent = agent();
    let r = login_with(&agent, &mock, &code_url(&mock, &[]), "admin", "wrong");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Invalid username or password"));
    assert!(r.header("set-cookie").is_none());
    // The same pending request can be retried.
    let rid = form_value(&r.body, "request_id").unwrap();
    let login = format!("{}/id/account/login", mock.base_url());
    let r2 =
        post_form(&agent, &login, &[], &[("request_id", &rid), ("username", "nobody"), ("password", "x")]);
    assert_eq!(r2.status, 200);
    let r3 = post_form(&agent, &login, &[], &[("request_id", &rid), ("button", "cancel")]);
    assert_eq!(r3.status, 302);
    assert_eq!(r3.location_params()["error"], "access_denied");
    // Consumed: a second submission is an error page.
    let r4 = post_form(
        &agent,
        &login,
        &[],
        &[("request_id", &rid), ("username", "admin"), ("password", "admin-password")],
    );
    assert_eq!(r4.status, 400);
    let r5 = post_form(&agent, &login, &[], &[("request_id", "forged"), ("username", "admin")]);
    assert_eq!(r5.status, 400);
    let r6 = post_raw(&agent, &login, "application/json", b"{}");
    assert_eq!(r6.status, 400);
    let n = mock.counters();
    assert_eq!((n.failed_logins, n.logins), (2, 0));
}

#[test]
fn the_session_cookie_skips_the_form_unless_prompt_login() {
    let mock = start();
    let agent = agent();
    let r = login_with(&agent, &mock, &code_url(&mock, &[]), "admin", "admin-password");
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let r = get(&agent, &code_url(&mock, &[("state", "second")]), &[("Cookie", &cookie)]);
    assert_eq!(r.status, 302);
    let p = r.location_params();
    assert_eq!(p["state"], "second");
    let t = exchange(&agent, &mock, &p["code"]).json();
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["sub"], "admin");
    let r = get(&agent, &code_url(&mock, &[("prompt", "login")]), &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    assert!(form_value(&r.body, "request_id").is_some());
    let r = get(&agent, &code_url(&mock, &[("prompt", "none")]), &[("Cookie", &cookie)]);
    assert_eq!(r.status, 302);
    assert!(r.location_params().contains_key("code"));
    // End session: cookie cleared, redirect to the registered post-logout URI with the state.
    let id_token = t["id_token"].as_str().unwrap();
    let url = format!(
        "{}/connect/endsession?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        mock.issuer(),
        enc(id_token),
        enc(DEMO_POST_LOGOUT_REDIRECT_URI)
    );
    let r = get(&agent, &url, &[("Cookie", &cookie)]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location").unwrap(), format!("{DEMO_POST_LOGOUT_REDIRECT_URI}?state=bye"));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    // The session is gone.
    let r = get(&agent, &code_url(&mock, &[]), &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    // Unregistered post-logout URI or no hint: a logged-out page, no redirect.
    for url in [
        format!(
            "{}/connect/endsession?id_token_hint={}&post_logout_redirect_uri={}",
            mock.issuer(),
            enc(id_token),
            enc("http://evil.example/")
        ),
        format!(
            "{}/connect/endsession?post_logout_redirect_uri={}",
            mock.issuer(),
            enc(DEMO_POST_LOGOUT_REDIRECT_URI)
        ),
        format!("{}/connect/endsession?id_token_hint=garbage", mock.issuer()),
    ] {
        let r = get(&agent, &url, &[]);
        assert_eq!(r.status, 200, "{url}");
        assert!(r.body.contains("logged out"));
    }
    assert_eq!(mock.counters().end_sessions, 4);
}

#[test]
fn public_client_needs_pkce_s256_and_the_right_verifier() {
    let mock = start();
    let agent = agent();
    let (verifier, challenge) = pkce("public");
    let url = code_url(
        &mock,
        &[
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let token = |code: &str, verifier: Option<&str>| {
        let mut f = vec![
            ("client_id", DEMO_PUBLIC_CLIENT_ID),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", DEMO_REDIRECT_URI),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v));
        }
        post_form(&agent, &token_url(&mock), &[], &f)
    };
    // Missing verifier, wrong verifier, malformed verifier: invalid_grant (and the code is spent).
    let code = login(&agent, &mock, &url)["code"].clone();
    token(&code, None).assert_oauth_error(400, "invalid_grant");
    let code = login(&agent, &mock, &url)["code"].clone();
    token(&code, Some(&pkce("other").0)).assert_oauth_error(400, "invalid_grant");
    let code = login(&agent, &mock, &url)["code"].clone();
    token(&code, Some("too-short")).assert_oauth_error(400, "invalid_grant");
    token(&code, Some(&verifier)).assert_oauth_error(400, "invalid_grant");
    // The right one works; no secret needed; refresh token for 24 h.
    let code = login(&agent, &mock, &url)["code"].clone();
    let r = token(&code, Some(&verifier));
    assert_eq!(r.status, 200, "{}", r.body);
    let rt = r.json()["refresh_token"].as_str().unwrap().to_owned();
    mock.advance_clock(std::time::Duration::from_secs(24 * 3600));
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[],
        &[("client_id", DEMO_PUBLIC_CLIENT_ID), ("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    r.assert_oauth_error(400, "invalid_grant");
    // Without PKCE the public client is refused at authorize.
    let r = get(&agent, &code_url(&mock, &[("client_id", DEMO_PUBLIC_CLIENT_ID)]), &[]);
    assert_eq!(r.location_params()["error"], "invalid_request");
    // A confidential client sending a verifier without having sent a challenge: invalid_grant.
    let code = login(&agent, &mock, &code_url(&mock, &[]))["code"].clone();
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[],
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", erpnet_oauth_mock::DEMO_CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("code_verifier", &verifier),
        ],
    );
    r.assert_oauth_error(400, "invalid_grant");
}

#[test]
fn hybrid_form_post_and_fragment_response_modes() {
    let mock = start();
    let agent = agent();
    let url = code_url(
        &mock,
        &[("response_type", "code id_token"), ("nonce", "n-1"), ("response_mode", "form_post")],
    );
    let r = login_with(&agent, &mock, &url, "admin", "admin-password");
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("action=\"{DEMO_REDIRECT_URI}\"")));
    assert!(r.body.contains("method=\"post\""));
    let code = form_value(&r.body, "code").unwrap();
    let id_token = form_value(&r.body, "id_token").unwrap();
    assert_eq!(form_value(&r.body, "state").unwrap(), "st");
    assert_eq!(form_value(&r.body, "iss").unwrap(), mock.issuer());
    let c = jwt_claims(&id_token);
    assert_eq!(c["nonce"], "n-1");
    assert!(c["c_hash"].is_string());
    let t = exchange(&agent, &mock, &code).json();
    assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["nonce"], "n-1");

    let url = code_url(&mock, &[("response_mode", "fragment"), ("prompt", "login")]);
    let r = login_with(&agent, &mock, &url, "admin", "admin-password");
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("http://localhost/signin-callback#code="), "{loc}");
}

#[test]
fn an_app_without_internal_users_denies_and_disabled_users_cannot_log_in() {
    let mock = start_with(|c| {
        c.apps[0].impersonate_as_internal_user_allowed = false;
        c.apps.push(TrustedApp { client_type: ClientType::Confidential, ..TrustedApp::demo_service() });
        c.users[0].is_enabled = true;
        let mut u = erpnet_oauth_mock::MockUser::demo();
        u.username = "off".into();
        u.is_enabled = false;
        c.users.push(u);
        c.apps.truncate(1);
    });
    let agent = agent();
    let r = login_with(&agent, &mock, &code_url(&mock, &[]), "admin", "admin-password");
    assert_eq!(r.status, 302);
    assert_eq!(r.location_params()["error"], "access_denied");
    let r = login_with(&agent, &mock, &code_url(&mock, &[]), "off", "admin-password");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Invalid username or password"));
}
