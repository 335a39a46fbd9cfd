//! Per-application access token lifetimes and token responses without `expires_in`: the response, the JWT's
//! `exp` and the Domain API's / userinfo's expiry check agree, by the manual clock.

mod common;

use std::time::Duration;

use common::*;
use erpnet_oauth_mock::{
    ConfigError, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SERVICE_CLIENT_ID, MANUAL_CLOCK_START_UNIX,
    MockConfig, MockErpNet, TrustedApp,
};
use serde_json::Value;

/// What the Domain API and userinfo answer, in `WWW-Authenticate`, for an expired access token.
const EXPIRED: &str = "Bearer error=\"invalid_token\", error_description=\"The token is expired\"";

fn app<'a>(c: &'a mut MockConfig, client_id: &str) -> &'a mut TrustedApp {
    c.apps.iter_mut().find(|a| a.application_uri == client_id).expect("the app is configured")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `exp - iat` of an access token (and checks `nbf == iat`).
fn jwt_lifetime(token: &str) -> u64 {
    let c = jwt_claims(token);
    let (iat, exp) = (c["iat"].as_u64().expect("iat"), c["exp"].as_u64().expect("exp"));
    assert_eq!(c["nbf"].as_u64(), Some(iat));
    exp - iat
}

fn access_token(t: &Value) -> String {
    t["access_token"].as_str().expect("an access_token").to_owned()
}

fn api(agent: &ureq::Agent, mock: &MockErpNet, token: &str) -> Resp {
    get(agent, &customers_url(mock, "?$top=1"), &[("Authorization", &bearer(token))])
}

fn userinfo(agent: &ureq::Agent, mock: &MockErpNet, token: &str) -> Resp {
    get(agent, &format!("{}/connect/userinfo", mock.issuer()), &[("Authorization", &bearer(token))])
}

fn assert_accepted(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), None);
}

fn assert_expired(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some(EXPIRED));
}

/// A client_credentials token response for `client_id` (secret [`DEMO_CLIENT_SECRET`], client_secret_post).
fn client_credentials(agent: &ureq::Agent, mock: &MockErpNet, client_id: &str) -> Value {
    let r = post_form(
        agent,
        &token_url(mock),
        &[],
        &[
            ("client_id", client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("grant_type", "client_credentials"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn one_second_lifetime_from_the_code_grant_expires_after_one_second() {
    let mock = start_with(|c| app(c, DEMO_CLIENT_ID).access_token_lifetime = Some(secs(1)));
    let agent = agent();
    let t = seed_tokens(&agent, &mock);
    assert_eq!(t["expires_in"], 1, "{t}");
    let at = access_token(&t);
    assert_eq!(jwt_lifetime(&at), 1);
    assert_eq!(jwt_claims(&at)["iat"], MANUAL_CLOCK_START_UNIX);
    assert_eq!(jwt_claims(&at)["exp"], MANUAL_CLOCK_START_UNIX + 1);
    // The ID token keeps its own lifetime (300 s).
    assert_eq!(jwt_lifetime(t["id_token"].as_str().unwrap()), 300);
    // Another application of the same mock keeps the global lifetime.
    let cc = client_credentials(&agent, &mock, DEMO_SERVICE_CLIENT_ID);
    assert_eq!(cc["expires_in"], 3600);
    assert_eq!(jwt_lifetime(&access_token(&cc)), 3600);

    assert_accepted(&api(&agent, &mock, &at));
    assert_accepted(&userinfo(&agent, &mock, &at));
    // 999 ms later it is still the same second: still valid.
    mock.advance_clock(Duration::from_millis(999));
    assert_accepted(&api(&agent, &mock, &at));
    // At iat + 1 s it has expired, for the Domain API and userinfo alike.
    mock.advance_clock(Duration::from_millis(1));
    assert_expired(&api(&agent, &mock, &at));
    assert_expired(&userinfo(&agent, &mock, &at));
    // The 3600 s token of the other application is still fine.
    assert_accepted(&api(&agent, &mock, &access_token(&cc)));
    let n = mock.counters();
    assert_eq!((n.api_calls, n.api_ok, n.api_unauthorized), (4, 3, 1));
}

#[test]
fn five_second_lifetime_on_the_refresh_grant() {
    let mock = start_with(|c| app(c, DEMO_CLIENT_ID).access_token_lifetime = Some(secs(5)));
    let agent = agent();
    let t = seed_tokens(&agent, &mock);
    assert_eq!(t["expires_in"], 5, "{t}");
    let at1 = access_token(&t);
    assert_eq!(jwt_lifetime(&at1), 5);

    mock.advance_clock(secs(3));
    let r = refresh(&agent, &mock, t["refresh_token"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.body);
    let t2 = r.json();
    assert_eq!(t2["expires_in"], 5, "{t2}");
    assert!(t2["refresh_token"].is_string());
    let at2 = access_token(&t2);
    assert_eq!(jwt_lifetime(&at2), 5);
    assert_eq!(jwt_claims(&at2)["iat"], MANUAL_CLOCK_START_UNIX + 3);
    assert_eq!(jwt_claims(&at2)["exp"], MANUAL_CLOCK_START_UNIX + 8);

    // +5: the first token has expired, the refreshed one has not.
    mock.advance_clock(secs(2));
    assert_expired(&api(&agent, &mock, &at1));
    assert_accepted(&api(&agent, &mock, &at2));
    // +7: still valid; +8 (its iat + 5): expired.
    mock.advance_clock(secs(2));
    assert_accepted(&api(&agent, &mock, &at2));
    assert_accepted(&userinfo(&agent, &mock, &at2));
    mock.advance_clock(secs(1));
    assert_expired(&api(&agent, &mock, &at2));
    assert_expired(&userinfo(&agent, &mock, &at2));
}

#[test]
fn five_second_lifetime_on_the_client_credentials_grant() {
    let mock = start_with(|c| {
        c.access_token_lifetime = secs(600);
        app(c, DEMO_SERVICE_CLIENT_ID).access_token_lifetime = Some(secs(5));
    });
    let agent = agent();
    let t = client_credentials(&agent, &mock, DEMO_SERVICE_CLIENT_ID);
    assert_eq!(t["expires_in"], 5, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    let at = access_token(&t);
    assert_eq!(jwt_lifetime(&at), 5);
    assert_eq!(jwt_claims(&at)["exp"], MANUAL_CLOCK_START_UNIX + 5);
    // A minted token of the same application lives as long; one of an application without its own
    // lifetime takes the global one.
    let minted = mock.mint_access_token(None, DEMO_SERVICE_CLIENT_ID, &["DomainApi"]).unwrap();
    assert_eq!(jwt_lifetime(&minted), 5);
    let other = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    assert_eq!(jwt_lifetime(&other), 600);

    mock.advance_clock(secs(4));
    assert_accepted(&api(&agent, &mock, &at));
    mock.advance_clock(secs(1));
    assert_expired(&api(&agent, &mock, &at));
    assert_expired(&api(&agent, &mock, &minted));
    assert_accepted(&api(&agent, &mock, &other));
}

#[test]
fn omit_expires_in_leaves_the_member_out_but_the_token_still_expires() {
    let mock = start_with(|c| {
        app(c, DEMO_CLIENT_ID).omit_expires_in = true;
        let service = app(c, DEMO_SERVICE_CLIENT_ID);
        service.omit_expires_in = true;
        service.access_token_lifetime = Some(secs(1));
        c.apps.push(TrustedApp { application_uri: "plain/service".into(), ..TrustedApp::demo_service() });
    });
    let agent = agent();

    // authorization_code: everything but expires_in; the token has the global 3600 s.
    let t = seed_tokens(&agent, &mock);
    let members: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(members, ["access_token", "id_token", "refresh_token", "scope", "token_type"], "{t}");
    let at = access_token(&t);
    assert_eq!(jwt_lifetime(&at), 3600);
    mock.advance_clock(secs(3599));
    assert_accepted(&api(&agent, &mock, &at));
    mock.advance_clock(secs(1));
    assert_expired(&api(&agent, &mock, &at));
    assert_expired(&userinfo(&agent, &mock, &at));

    // refresh_token: no expires_in either; the new token expires 3600 s later.
    let r = refresh(&agent, &mock, t["refresh_token"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.body);
    let t2 = r.json();
    assert!(t2.get("expires_in").is_none(), "{t2}");
    assert!(t2["refresh_token"].is_string() && t2["access_token"].is_string());
    let at2 = access_token(&t2);
    assert_eq!(jwt_lifetime(&at2), 3600);
    mock.advance_clock(secs(3600));
    assert_expired(&api(&agent, &mock, &at2));

    // client_credentials with a 1 s lifetime and no expires_in.
    let cc = client_credentials(&agent, &mock, DEMO_SERVICE_CLIENT_ID);
    let members: Vec<&str> = cc.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(members, ["access_token", "scope", "token_type"], "{cc}");
    let cc_at = access_token(&cc);
    assert_eq!(jwt_lifetime(&cc_at), 1);
    assert_accepted(&api(&agent, &mock, &cc_at));
    mock.advance_clock(secs(1));
    assert_expired(&api(&agent, &mock, &cc_at));

    // An application without the option still gets expires_in from the same mock.
    let plain = client_credentials(&agent, &mock, "plain/service");
    assert_eq!(plain["expires_in"], 3600, "{plain}");
}

/// The example of the crate docs ("Access token lifetimes").
const DOC_EXAMPLE: &str = r#"
{"apps": [{"name": "Short", "application_uri": "short/app", "client_type": "Public",
           "impersonate_login_urls": ["http://localhost/signin-callback"],
           "access_token_lifetime": 5, "omit_expires_in": true}]}
"#;

#[test]
fn json_config_with_per_app_lifetimes() {
    // Defaults: no override, expires_in sent.
    for a in [TrustedApp::demo(), TrustedApp::demo_public(), TrustedApp::demo_service()]
        .iter()
        .chain(MockConfig::default().apps.iter())
    {
        assert_eq!((a.access_token_lifetime, a.omit_expires_in), (None, false), "{}", a.application_uri);
    }

    let text = r#"{
        "apps": [
            {"name": "a", "application_uri": "one/second", "client_type": "Public",
             "access_token_lifetime": 1, "omit_expires_in": true},
            {"name": "b", "application_uri": "explicit/null", "client_type": "Public",
             "access_token_lifetime": null, "omit_expires_in": false},
            {"Name": "c", "ApplicationUri": "old/file", "ClientType": "Public"}
        ],
        "access_token_lifetime": 60
    }"#;
    let c = MockConfig::from_json_str(text).unwrap();
    let got: Vec<_> = c.apps.iter().map(|a| (a.access_token_lifetime, a.omit_expires_in)).collect();
    assert_eq!(got, [(Some(secs(1)), true), (None, false), (None, false)]);
    assert_eq!(c.access_token_lifetime, secs(60));
    // Serialized as whole seconds, and back.
    let json: Value = serde_json::to_value(&c).unwrap();
    assert_eq!(json["apps"][0]["access_token_lifetime"], 1);
    assert_eq!(json["apps"][0]["omit_expires_in"], true);
    assert_eq!(json["apps"][1]["access_token_lifetime"], Value::Null);
    assert_eq!(MockConfig::from_json_str(&json.to_string()).unwrap(), c);
    let doc = MockConfig::from_json_str(DOC_EXAMPLE).unwrap();
    assert_eq!((doc.apps[0].access_token_lifetime, doc.apps[0].omit_expires_in), (Some(secs(5)), true));

    // Refused: unknown fields (in an application or at the top), wrong types, a zero lifetime.
    let app_with = |extra: &str| {
        format!(r#"{{"apps": [{{"name": "x", "application_uri": "x", "client_type": "Public", {extra}}}]}}"#)
    };
    for bad in [
        app_with(r#""omit_expiry": true"#),
        app_with(r#""expires_in": 5"#),
        app_with(r#""access_token_lifetime": "5s""#),
        app_with(r#""access_token_lifetime": -1"#),
        app_with(r#""access_token_lifetime": 1.5"#),
        app_with(r#""omit_expires_in": "yes""#),
        app_with(r#""omit_expires_in": null"#),
        r#"{"omit_expires_in": true}"#.to_owned(),
    ] {
        assert!(matches!(MockConfig::from_json_str(&bad), Err(ConfigError::Parse(_))), "{bad}");
    }
    let zero = app_with(r#""access_token_lifetime": 0"#);
    let e = MockConfig::from_json_str(&zero).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("at least 1 second"), "{e}");

    // In code: under a second is refused at start; a fraction is dropped.
    for d in [Duration::ZERO, Duration::from_millis(999)] {
        let mut c = MockConfig::seed_manual_clock();
        app(&mut c, DEMO_CLIENT_ID).access_token_lifetime = Some(d);
        assert_eq!(MockErpNet::start(c).unwrap_err().kind(), std::io::ErrorKind::InvalidInput, "{d:?}");
    }
    let mock =
        start_with(|c| app(c, DEMO_CLIENT_ID).access_token_lifetime = Some(Duration::from_millis(1500)));
    let t = seed_tokens(&agent(), &mock);
    assert_eq!(t["expires_in"], 1);
    assert_eq!(jwt_lifetime(&access_token(&t)), 1);
}
