//! `status` (never a token value) and `logout` (revocation at the server, then local deletion).

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault};

#[test]
fn status_when_logged_in() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["status"]));
    o.assert_success();
    assert!(o.stderr.is_empty(), "{o:#?}");
    for needle in [
        "profile:       default".to_owned(),
        format!("instance:      {}", h.instance()),
        format!("client id:     {CLIENT_ID}"),
        "subject:       admin".to_owned(),
        "refresh token: held".to_owned(),
    ] {
        assert!(o.stdout.lines().any(|l| l == needle), "no line {needle:?} in {o:#?}");
    }
    let scopes = o.stdout.lines().find(|l| l.starts_with("scopes:")).unwrap();
    for s in ["openid", "profile", "offline_access", "DomainApi"] {
        assert!(scopes.split_whitespace().any(|w| w == s), "{scopes}");
    }
    assert!(o.stdout.lines().any(|l| l.starts_with("access token:  expires at ")), "{o:#?}");
}

#[test]
fn status_json_when_logged_in() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    assert_eq!(o.stdout_lines().len(), 1, "one object on one line");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["instance"], h.instance());
    assert_eq!(v["client_id"], CLIENT_ID);
    assert_eq!(v["subject"], "admin");
    let scopes: Vec<&str> = v["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for s in ["openid", "profile", "offline_access", "DomainApi"] {
        assert!(scopes.contains(&s), "{scopes:?}");
    }
    let exp = v["access_token_expires_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(exp > now && exp <= now + 3600, "{exp} vs now {now}");
    assert_eq!(v["has_refresh_token"], true);
    // No value anywhere is a token.
    for t in h.stored() {
        assert!(!o.stdout.contains(&t));
    }
    assert_eq!(h.mock().counters().token_requests, 1, "status asks the server nothing");
}

#[test]
fn status_when_not_logged_in_is_exit_3() {
    let h = Harness::new();
    let o = h.run(h.cli(&["status"]));
    o.assert_only_error(3, &["not logged in", "erpnet-oauth login"]);
    assert!(o.stdout.lines().any(|l| l.starts_with("logged in:     no")), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l == format!("instance:      {}", h.instance())), "{o:#?}");

    let o = h.run(h.cli(&["status", "--json"]));
    o.assert_only_error(3, &["not logged in"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["logged_in"], false);
    assert_eq!(v["instance"], h.instance());
    assert_eq!(v["client_id"], CLIENT_ID);
    assert!(v["subject"].is_null());
    assert_eq!(v["scopes"], serde_json::json!([]));
    assert!(v["access_token_expires_at"].is_null());
    assert_eq!(v["has_refresh_token"], false);
}

#[test]
fn logout_revokes_at_the_server_and_deletes_the_tokens() {
    let h = Harness::new();
    h.login();
    let rt = h.refresh_token().unwrap();
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("Revoked the refresh token at the server"), "{o:#?}");
    assert!(o.stderr.lines().last().unwrap().starts_with("Logged out"), "{o:#?}");
    let c = h.mock().counters();
    assert_eq!((c.revocations, c.invalid_client_errors), (1, 0), "{c:#?}");
    assert!(!h.token_file().exists() && !h.profile_file().exists(), "the store files are gone");

    // The refresh token is dead at the server.
    let mut answer = browser()
        .post(&format!("{}/id/connect/token", h.instance()))
        .send_form([
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
        ])
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.body_mut().read_to_string().unwrap().contains("invalid_grant"));

    // Afterwards: login required.
    let o = h.run(h.store_only(&["token"]));
    o.assert_only_error(3, &["erpnet-oauth login"]);
    let o = h.run(h.cli(&["token"]));
    o.assert_only_error(3, &["erpnet-oauth login"]);
    // A second logout has nothing to do.
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stderr.contains("nothing to do"), "{o:#?}");
}

#[test]
fn logout_when_revocation_fails_still_deletes_locally() {
    let h = Harness::new();
    h.login();
    h.mock().inject_fault(Endpoint::Revocation, Fault::Status(503), None);
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stderr.lines().any(|l| l.starts_with("warning: ") && l.contains("503")), "{o:#?}");
    assert!(o.stderr.lines().last().unwrap().starts_with("Logged out"), "{o:#?}");
    assert!(!h.token_file().exists() && !h.profile_file().exists());
    assert_eq!(h.mock().counters().revocations, 0);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
}

#[test]
fn logout_when_the_server_is_unreachable_still_deletes_locally() {
    let h = Harness::new();
    h.login();
    h.mock().inject_fault(Endpoint::Revocation, Fault::Hang, None);
    let o = h.run(h.store_only(&["--timeout", "1", "logout"]));
    o.assert_success();
    assert!(o.stderr.lines().any(|l| l.starts_with("warning: ")), "{o:#?}");
    assert!(!h.token_file().exists());
}

#[test]
fn public_client_logout_revokes_without_a_secret() {
    let h = Harness::new();
    h.login_with(h.public_cli(&["login", "--no-browser"]));
    let mut cmd = h.bare();
    cmd.arg("--store").arg(h.store()).arg("logout");
    let o = h.run(cmd);
    o.assert_success();
    assert_eq!(h.mock().counters().revocations, 1, "{o:#?}");
}
