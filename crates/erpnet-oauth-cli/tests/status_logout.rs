//! `status` (the stored login, never a token value) and `logout` (revocation at the server, then local
//! deletion; the profile's settings kept unless `--forget`).

mod common;

use common::*;
use erpnet_oauth_mock::{Counters, Endpoint, Fault};

/// Whether `s` is an RFC 3339 UTC time as `status` writes it: `YYYY-MM-DDTHH:MM:SSZ`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

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
        format!("client secret: saved in {}", h.secret_file().display()),
        "logged in:     yes".to_owned(),
    ] {
        assert!(o.stdout.lines().any(|l| l == needle), "no line {needle:?} in {o:#?}");
    }
    let scopes = o.stdout.lines().find(|l| l.starts_with("scopes:")).unwrap();
    for s in ["openid", "profile", "offline_access", "DomainApi"] {
        assert!(scopes.split_whitespace().any(|w| w == s), "{scopes}");
    }
    let expiry = o.stdout.lines().find(|l| l.starts_with("access token:  expires at ")).unwrap();
    assert!(expiry.contains("Z), in "), "the time in RFC 3339 too: {expiry}");
    assert!(!o.stdout.contains("mismatch"), "{o:#?}");
}

#[test]
fn status_json_when_logged_in() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    assert_eq!(o.stdout_lines().len(), 1, "one object on one line");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["profile"], "default");
    assert_eq!(v["logged_in"], true);
    assert_eq!(v["instance"], h.instance());
    assert_eq!(v["client_id"], CLIENT_ID);
    assert_eq!(v["subject"], "admin");
    let scopes: Vec<&str> = v["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for s in ["openid", "profile", "offline_access", "DomainApi"] {
        assert!(scopes.contains(&s), "{scopes:?}");
    }
    let exp = v["access_token_expires_at"].as_u64().unwrap();
    let now = now_unix();
    assert!(exp > now && exp <= now + 3600, "{exp} vs now {now}");
    let rfc = v["access_token_expires_at_rfc3339"].as_str().unwrap();
    assert!(is_rfc3339(rfc), "{rfc}");
    assert_eq!(v["has_refresh_token"], true);
    assert_eq!(v["secret"], "file");
    assert_eq!(v["mismatches"], serde_json::json!([]));
    // No value anywhere is a token or the secret (the harness checks every stream for them too).
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
    // Nothing is stored: the flags are not shown as a login.
    assert!(o.stdout.lines().any(|l| l == "instance:      (none stored)"), "{o:#?}");

    let o = h.run(h.cli(&["status", "--json"]));
    o.assert_only_error(3, &["not logged in"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["logged_in"], false);
    assert_eq!(v["profile"], "default");
    assert!(v["instance"].is_null() && v["client_id"].is_null(), "{v}");
    assert!(v["subject"].is_null());
    assert_eq!(v["scopes"], serde_json::json!([]));
    assert!(v["access_token_expires_at"].is_null() && v["access_token_expires_at_rfc3339"].is_null());
    assert_eq!(v["has_refresh_token"], false);
    assert!(v["secret"].is_null());
    assert_eq!(v["mismatches"], serde_json::json!([]));
}

#[test]
fn logout_revokes_at_the_server_deletes_the_tokens_and_keeps_the_profile() {
    let h = Harness::new();
    h.login();
    let rt = h.refresh_token().unwrap();
    let profile = std::fs::read(h.profile_file()).unwrap();
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("Revoked the refresh token at the server"), "{o:#?}");
    let last = o.stderr.lines().last().unwrap();
    assert!(last.starts_with("Logged out (profile `default`)") && last.contains("--forget"), "{o:#?}");
    let c = h.mock().counters();
    assert_eq!((c.revocations, c.invalid_client_errors), (1, 0), "{c:#?}");
    assert!(!h.token_file().exists(), "the tokens are gone");
    assert_eq!(std::fs::read(h.profile_file()).unwrap(), profile, "the profile is kept as it was");
    assert!(h.secret_file().exists(), "and so is its saved secret");

    // The refresh token is dead at the server.
    let (status, body) = h.refresh_at_the_mock(&rt);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");

    // Afterwards: login required, the settings still known.
    let o = h.run(h.store_only(&["token"]));
    o.assert_only_error(3, &["erpnet-oauth login"]);
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_only_error(3, &["not logged in"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (v["instance"].as_str(), v["client_id"].as_str()),
        (Some(h.instance().as_str()), Some(CLIENT_ID))
    );
    // A second logout has nothing to do, and says so.
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stderr.contains("Not logged in (profile `default`)"), "{o:#?}");
    assert!(h.profile_file().exists() && h.secret_file().exists());
}

#[test]
fn logout_when_revocation_fails_deletes_locally_and_exits_4() {
    let h = Harness::new();
    h.login();
    let rt = h.refresh_token().unwrap();
    h.mock().inject_fault(Endpoint::Revocation, Fault::Status(503), None);
    let o = h.run(h.store_only(&["logout"]));
    o.assert_failure(4, &["could not be revoked", "503", "may still be live", "deleted locally"]);
    assert!(o.stdout.is_empty());
    assert!(o.stderr.lines().any(|l| l.starts_with("Logged out (profile `default`)")), "{o:#?}");
    assert!(!h.token_file().exists(), "deleted locally all the same");
    assert!(h.profile_file().exists() && h.secret_file().exists(), "the profile is kept");
    assert_eq!(h.mock().counters().revocations, 0);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
    // As the message says: the refresh token is still live at the server.
    h.mock().clear_faults();
    let (status, body) = h.refresh_at_the_mock(&rt);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn logout_when_the_server_is_unreachable_deletes_locally_and_exits_5() {
    let h = Harness::new();
    h.login();
    let rt = h.refresh_token().unwrap();
    h.mock().inject_fault(Endpoint::Revocation, Fault::Hang, None);
    let o = h.run(h.store_only(&["--timeout", "1", "logout"]));
    o.assert_failure(5, &["could not be revoked", "timed out", "may still be live", "deleted locally"]);
    assert!(!h.token_file().exists());
    assert!(h.profile_file().exists());
    h.mock().clear_faults();
    let (status, body) = h.refresh_at_the_mock(&rt);
    assert_eq!(status, 200, "the refresh token is still live: {body}");
}

#[test]
fn logout_without_the_secret_of_a_confidential_profile_deletes_nothing() {
    let h = Harness::new();
    h.login_with(h.cli(&["login", "--no-browser", "--no-save-secret"]));
    let tokens = std::fs::read(h.token_file()).unwrap();
    h.mock().reset_counters();
    let mut cmd = h.store_only(&["logout"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    let o = h.run(cmd);
    o.assert_only_error(
        2,
        &["profile default needs its client secret: pass --client-secret-file PATH or set ERPNET_CLIENT_SECRET \
           (or log in again to save it)"],
    );
    assert_eq!(h.mock().counters(), Counters::default(), "nothing was sent");
    assert_eq!(std::fs::read(h.token_file()).unwrap(), tokens, "nothing was deleted");
    assert!(h.profile_file().exists());
    // With the secret, the logout goes through.
    h.run(h.store_only(&["logout"])).assert_success();
    assert_eq!(h.mock().counters().revocations, 1);
    assert!(!h.token_file().exists());
}

#[test]
fn public_client_logout_revokes_without_a_secret() {
    let h = Harness::new();
    h.login_with(h.public_cli(&["login", "--no-browser"]));
    assert!(!h.secret_file().exists(), "a public client has no secret to save");
    let mut cmd = h.bare();
    cmd.arg("--store").arg(h.store()).arg("logout");
    let o = h.run(cmd);
    o.assert_success();
    assert_eq!(h.mock().counters().revocations, 1, "{o:#?}");
}
