//! Fault injection (handle and admin path), counters, concurrency, shutdown.

mod common;

use std::time::Duration;

use common::*;
use erpnet_oauth_mock::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SERVICE_CLIENT_ID, Endpoint, Fault, MockConfig, MockErpNet,
};

fn discovery_url(mock: &MockErpNet) -> String {
    format!("{}/.well-known/openid-configuration", mock.issuer())
}

fn cc_token(agent: &ureq::Agent, mock: &MockErpNet) -> Resp {
    post_form(
        agent,
        &token_url(mock),
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_SERVICE_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
        ],
    )
}

#[test]
fn each_fault_kind() {
    let mock = start();
    let agent = agent();

    mock.inject_fault(Endpoint::Token, Fault::Status(503), Some(2));
    for _ in 0..2 {
        let r = cc_token(&agent, &mock);
        assert_eq!(r.status, 503);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.body.contains("503"));
    }
    assert_eq!(cc_token(&agent, &mock).status, 200);
    assert_eq!(mock.counters().token_requests, 1);

    mock.inject_fault(Endpoint::Token, Fault::Status(42), Some(1));
    assert_eq!(cc_token(&agent, &mock).status, 500);

    mock.inject_fault(Endpoint::Token, Fault::MalformedBody, Some(1));
    let r = cc_token(&agent, &mock);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert!(serde_json::from_str::<serde_json::Value>(&r.body).is_err());

    mock.inject_fault(Endpoint::DomainApi, Fault::RateLimited { retry_after_secs: 7 }, Some(1));
    let token = mock.mint_access_token(None, DEMO_SERVICE_CLIENT_ID, &["DomainApi"]).unwrap();
    let auth = bearer(&token);
    let r = get(&agent, &customers_url(&mock, ""), &[("Authorization", &auth)]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));

    mock.inject_fault(Endpoint::DomainApi, Fault::DropConnection, Some(1));
    let dropped = agent.get(&customers_url(&mock, "")).header("Authorization", &auth).call();
    assert!(dropped.is_err(), "a dropped connection is a transport error");
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &auth)]).status, 200);

    mock.inject_fault(Endpoint::Discovery, Fault::Delay(Duration::from_millis(20)), Some(1));
    assert_eq!(get(&agent, &discovery_url(&mock), &[]).status, 200);

    // Hang: the client's timeout ends it; the server keeps serving other requests meanwhile.
    mock.inject_fault(Endpoint::Jwks, Fault::Hang, None);
    let jwks = format!("{}/.well-known/openid-configuration/jwks", mock.issuer());
    let hung = agent.get(&jwks).config().timeout_global(Some(Duration::from_millis(300))).build().call();
    assert!(hung.is_err());
    assert_eq!(get(&agent, &discovery_url(&mock), &[]).status, 200);
    let hung_again =
        agent.get(&jwks).config().timeout_global(Some(Duration::from_millis(100))).build().call();
    assert!(hung_again.is_err());
    mock.clear_faults();
    assert_eq!(get(&agent, &jwks, &[]).status, 200);

    let n = mock.counters();
    assert_eq!(n.faults_applied, 9);
    assert_eq!(n.jwks_fetches, 1);
    assert_eq!(n.discovery_fetches, 2);
    assert_eq!(n.api_calls, 1);
    // Start a hang and stop the mock while it is pending: drop must not block on it.
    mock.inject_fault(Endpoint::Jwks, Fault::Hang, None);
    let t = std::thread::spawn(move || {
        let _ =
            common::agent().get(&jwks).config().timeout_global(Some(Duration::from_secs(5))).build().call();
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(mock);
    t.join().unwrap();
}

#[test]
fn faults_until_cleared_and_per_endpoint() {
    let mock = start();
    let agent = agent();
    mock.inject_fault(Endpoint::Discovery, Fault::Status(502), None);
    for _ in 0..5 {
        assert_eq!(get(&agent, &discovery_url(&mock), &[]).status, 502);
    }
    // Other endpoints are unaffected.
    assert_eq!(cc_token(&agent, &mock).status, 200);
    // A new fault replaces the old one; Some(0) removes it.
    mock.inject_fault(Endpoint::Discovery, Fault::Status(504), None);
    assert_eq!(get(&agent, &discovery_url(&mock), &[]).status, 504);
    mock.inject_fault(Endpoint::Discovery, Fault::Status(504), Some(0));
    assert_eq!(get(&agent, &discovery_url(&mock), &[]).status, 200);
    // Login, authorize, userinfo, revocation, endsession are targets too.
    for (endpoint, url) in [
        (Endpoint::Authorize, seed_authorize_url(&mock)),
        (Endpoint::UserInfo, format!("{}/connect/userinfo", mock.issuer())),
        (Endpoint::EndSession, format!("{}/connect/endsession", mock.issuer())),
        (Endpoint::Login, format!("{}/id/account/login?request_id=x", mock.base_url())),
    ] {
        mock.inject_fault(endpoint, Fault::Status(503), Some(1));
        assert_eq!(get(&agent, &url, &[]).status, 503, "{endpoint:?}");
    }
    mock.inject_fault(Endpoint::Revocation, Fault::Status(503), Some(1));
    let r = post_form(&agent, &format!("{}/connect/revocation", mock.issuer()), &[], &[("token", "x")]);
    assert_eq!(r.status, 503);
}

#[test]
fn admin_path() {
    let mock = start();
    let agent = agent();
    let admin = |p: &str| format!("{}/_mock/{p}", mock.base_url());
    let post_json = |p: &str, body: &str| {
        read(agent.post(&admin(p)).header("Content-Type", "application/json").send(body))
    };

    let r = post_json(
        "faults",
        r#"{"endpoint": "token", "fault": {"kind": "status", "status": 503}, "times": 1}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cc_token(&agent, &mock).status, 503);
    assert_eq!(cc_token(&agent, &mock).status, 200);
    let r = post_json(
        "faults",
        r#"{"endpoint": "domain_api", "fault": {"kind": "rate_limited", "retry_after_secs": 3}}"#,
    );
    assert_eq!(r.status, 204);
    let r = get(&agent, &customers_url(&mock, ""), &[]);
    assert_eq!((r.status, r.header("retry-after")), (429, Some("3")));
    let r = read(agent.delete(&admin("faults")).call());
    assert_eq!(r.status, 204);
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[]).status, 401);
    for kind in [
        r#"{"kind": "delay", "ms": 1}"#,
        r#"{"kind": "malformed_body"}"#,
        r#"{"kind": "drop_connection"}"#,
        r#"{"kind": "hang"}"#,
    ] {
        let r = post_json("faults", &format!(r#"{{"endpoint": "jwks", "fault": {kind}, "times": 1}}"#));
        assert_eq!(r.status, 204, "{kind}");
    }
    mock.clear_faults();
    for bad in
        [r#"{"endpoint": "nowhere", "fault": {"kind": "hang"}}"#, r#"{"fault": {"kind": "x"}}"#, "junk"]
    {
        assert_eq!(post_json("faults", bad).status, 400, "{bad}");
    }

    // Counters as JSON, and reset.
    let r = get(&agent, &admin("counters"), &[]);
    assert_eq!(r.status, 200);
    let n: erpnet_oauth_mock::Counters = serde_json::from_str(&r.body).unwrap();
    assert_eq!(n, mock.counters());
    assert_eq!(n.client_credentials_grants, 1);
    assert_eq!(n.api_unauthorized, 1);
    assert_eq!(n.faults_applied, 2);
    assert_eq!(read(agent.post(&admin("reset-counters")).send_empty()).status, 204);
    assert_eq!(mock.counters(), erpnet_oauth_mock::Counters::default());

    // Clock.
    let t = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let r = read(agent.post(&admin("clock/advance?seconds=3600")).send_empty());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["now_unix"], erpnet_oauth_mock::MANUAL_CLOCK_START_UNIX + 3600);
    assert_eq!(
        get(&agent, &admin("clock"), &[]).json()["now_unix"],
        erpnet_oauth_mock::MANUAL_CLOCK_START_UNIX + 3600
    );
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(&t))]).status, 401);
    assert_eq!(read(agent.post(&admin("clock/advance?seconds=-1")).send_empty()).status, 400);
    assert_eq!(read(agent.post(&admin("clock/advance")).send_empty()).status, 400);

    // Revoke a user.
    let tokens = seed_tokens(&agent, &mock);
    assert_eq!(read(agent.post(&admin("revoke-user?username=admin")).send_empty()).status, 204);
    refresh(&agent, &mock, tokens["refresh_token"].as_str().unwrap())
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(read(agent.post(&admin("revoke-user")).send_empty()).status, 400);

    // Unknown paths.
    assert_eq!(get(&agent, &admin("nothing"), &[]).status, 404);
    assert_eq!(get(&agent, &format!("{}/elsewhere", mock.base_url()), &[]).status, 404);

    // Shutdown: wait() returns.
    assert_eq!(read(agent.post(&admin("shutdown")).send_empty()).status, 204);
    mock.wait();
}

#[test]
fn concurrent_flood_and_refresh_race() {
    let mock = start();
    let token = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let url = customers_url(&mock, "?$top=10");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let agent = agent();
                for _ in 0..100 {
                    let r = get(&agent, &url, &[("Authorization", &bearer(&token))]);
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    assert_eq!(mock.counters().api_ok, 800);

    // Eight clients refresh the same token at once: exactly one wins.
    let agent0 = agent();
    let t = seed_tokens(&agent0, &mock);
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| refresh(&agent(), &mock, &rt).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 400).count(), 7, "{statuses:?}");
    let n = mock.counters();
    // The first loser is a reuse and revokes the grant (the winner's new tokens too); the rest find it revoked.
    assert_eq!((n.refresh_token_grants, n.refresh_token_reuses, n.grants_revoked), (1, 1, 1));

    // Many mocks side by side, started and stopped quickly.
    let mocks: Vec<MockErpNet> =
        (0..20).map(|_| MockErpNet::start(MockConfig::seed_manual_clock()).unwrap()).collect();
    let ports: std::collections::HashSet<u16> = mocks.iter().map(|m| m.addr().port()).collect();
    assert_eq!(ports.len(), 20);
    drop(mocks);
}

#[test]
fn run_foreground_serves_until_shutdown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server =
        std::thread::spawn(move || erpnet_oauth_mock::run_foreground(MockConfig::seed_manual_clock(), addr));
    let agent = agent();
    let url = format!("http://{addr}/id/.well-known/openid-configuration");
    let up = (0..500).any(|_| {
        let ok = agent.get(&url).call().is_ok_and(|r| r.status() == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    });
    assert!(up, "the foreground server answers");
    let r = read(agent.post(&format!("http://{addr}/_mock/shutdown")).send_empty());
    assert_eq!(r.status, 204);
    server.join().unwrap().unwrap();
    assert!(erpnet_oauth_mock::run_foreground(MockConfig::default(), "10.1.2.3:0".parse().unwrap()).is_err());
}
