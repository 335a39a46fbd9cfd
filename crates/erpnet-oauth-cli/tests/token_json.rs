//! `token --json` and `token --min-validity SECONDS` (issue 14).

mod common;

use common::*;
use std::process::Command;

fn stored_json(h: &Harness) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(h.token_file()).unwrap()).unwrap()
}

/// RFC 3339 of `unix` by GNU date, an implementation independent of the CLI's.
fn date_rfc3339(unix: u64) -> String {
    let out =
        Command::new("date").args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[test]
fn token_json_is_one_object_with_the_expiry_and_scopes() {
    let h = Harness::new();
    h.login();
    let o = h.run_token(h.store_only(&["token", "--json"]));
    o.assert_success();
    assert!(o.stderr.is_empty(), "{o:#?}");
    assert_eq!(o.stdout_lines().len(), 1, "one line: {o:#?}");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let stored = stored_json(&h);
    let expires_at = stored["tokens"]["expires_at"].as_u64().unwrap();
    // The granted scopes, as stored (a set: sorted).
    let scopes: Vec<&str> = stored["tokens"]["scopes"].as_str().unwrap().split(' ').collect();
    assert_eq!(scopes, ["DomainApi", "offline_access", "openid", "profile"]);
    assert_eq!(
        json,
        serde_json::json!({
            "access_token": h.access_token().unwrap(),
            "expires_at": expires_at,
            "expires_at_rfc3339": date_rfc3339(expires_at),
            "scopes": scopes,
            "token_type": "Bearer",
        })
    );
    assert!(expires_at > now_unix() + 3000, "one of the mock's one-hour tokens");
    assert_eq!(h.mock().counters().refresh_token_grants, 0);
    // Not logged in: exit 3, nothing on stdout.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = h.bare();
    cmd.arg("--store").arg(empty.path()).args(["token", "--json"]);
    let o = h.run(cmd);
    o.assert_only_error(3, &["erpnet-oauth login"]);
    assert!(o.stdout.is_empty());
}

#[test]
fn token_json_refreshes_like_token() {
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    h.set_expires_at(now_unix() - 5);
    let o = h.run_token(h.store_only(&["token", "--json"]));
    o.assert_success();
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let at1 = h.access_token().unwrap();
    assert_ne!(at1, at0);
    assert_eq!(json["access_token"], at1.as_str());
    assert_eq!(json["expires_at"], stored_json(&h)["tokens"]["expires_at"]);
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
}

#[test]
fn min_validity_refreshes_a_token_valid_for_less() {
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    // 100 s left: the default (60 s) keeps it, --min-validity 120 renews it.
    h.set_expires_at(now_unix() + 100);
    let o = h.run_token(h.store_only(&["token"]));
    assert_eq!(o.stdout, format!("{at0}\n"));
    assert_eq!(h.mock().counters().refresh_token_grants, 0);
    let o = h.run_token(h.store_only(&["token", "--min-validity", "120"]));
    o.assert_success();
    assert!(o.stderr.is_empty(), "{o:#?}");
    let at1 = h.access_token().unwrap();
    assert_ne!(at1, at0);
    assert_eq!(o.stdout, format!("{at1}\n"));
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    // The fresh token is valid for an hour: no second refresh.
    let o = h.run_token(h.store_only(&["token", "--min-validity", "120"]));
    assert_eq!(o.stdout, format!("{at1}\n"));
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    // 0: used until it expires (30 s left is enough).
    h.set_expires_at(now_unix() + 30);
    let o = h.run_token(h.store_only(&["token", "--min-validity", "0"]));
    assert_eq!(o.stdout, format!("{at1}\n"));
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
}

#[test]
fn min_validity_beyond_half_the_lifetime_warns_instead_of_refreshing_forever() {
    // The mock's tokens live 3600 s. A token is renewed once less than half its lifetime remains (the
    // core's margin), so --min-validity 7200 cannot be met: each call warns, and refreshes only a token
    // past its half-life, never one just issued.
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    for _ in 0..2 {
        let o = h.run_token(h.store_only(&["token", "--min-validity", "7200"]));
        assert_eq!(o.code, Some(0), "{o:#?}");
        assert_eq!(o.stdout, format!("{at0}\n"));
        let warnings = o.warnings();
        assert_eq!(warnings.len(), 1, "{o:#?}");
        assert_eq!(o.stderr_lines().len(), 1, "{o:#?}");
        let w = warnings[0];
        assert!(
            w.contains("less than --min-validity 7200 s")
                && w.contains("(the server issues them for 3600 s)"),
            "{w}"
        );
    }
    assert_eq!(h.mock().counters().refresh_token_grants, 0, "a fresh token is not renewed");
    // Past its half-life (1000 s left) it is renewed, once.
    h.set_expires_at(now_unix() + 1000);
    let o = h.run_token(h.store_only(&["token", "--json", "--min-validity", "7200"]));
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert_eq!(o.warnings().len(), 1, "{o:#?}");
    let at1 = h.access_token().unwrap();
    assert_ne!(at1, at0);
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(json["access_token"], at1.as_str());
    h.run_token(h.store_only(&["token", "--min-validity", "7200"]));
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
}

#[test]
fn min_validity_must_be_a_number_of_seconds() {
    let h = Harness::new();
    h.login();
    for bad in ["soon", "-1", "1.5", "99999999999"] {
        let o = h.run_token(h.store_only(&["token", "--min-validity", bad]));
        assert_eq!(o.code, Some(2), "--min-validity {bad}: {o:#?}");
        assert!(o.stderr.starts_with("error: "), "{o:#?}");
        assert!(o.stderr.contains("--min-validity") || o.stderr.contains("'-1'"), "{o:#?}");
        assert!(o.stdout.is_empty());
    }
    assert_eq!(h.mock().counters().token_requests, 1, "only the login's");
}
