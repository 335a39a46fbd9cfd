//! `token` and `refresh`: a valid access token on stdout, forced renewals, rotation, a rejected refresh
//! token, a server that fails or hangs, several processes on one store.

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault};
use std::time::Duration;

#[test]
fn token_prints_one_line_and_reuses_a_valid_token() {
    let h = Harness::new();
    h.login();
    let before = h.mock().counters();
    let first = h.run_token(h.store_only(&["token"]));
    first.assert_success();
    assert!(first.stderr.is_empty(), "{first:#?}");
    let stored = h.access_token().unwrap();
    assert_eq!(first.stdout, format!("{stored}\n"), "exactly the access token and a newline");
    let second = h.run_token(h.store_only(&["token"]));
    second.assert_success();
    assert_eq!(second.stdout, first.stdout, "the same token, not a refresh");
    let after = h.mock().counters();
    assert_eq!(after.token_requests, before.token_requests, "no refresh for a valid token");
    assert_eq!(after.refresh_token_grants, 0);
}

#[test]
fn token_refreshes_first_when_expired_or_within_the_skew() {
    let h = Harness::new();
    h.login();
    // Expired on the CLI's clock.
    let at0 = h.access_token().unwrap();
    h.set_expires_at(now_unix() - 10);
    let o = h.run_token(h.store_only(&["token"]));
    o.assert_success();
    let at1 = h.access_token().unwrap();
    assert_ne!(at1, at0, "a new access token was stored");
    assert_eq!(o.stdout, format!("{at1}\n"), "and printed");
    assert!(!o.stdout.contains(&at0));
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    // Expiring within the 60 s skew.
    h.set_expires_at(now_unix() + 30);
    let o = h.run_token(h.store_only(&["token"]));
    let at2 = h.access_token().unwrap();
    assert_ne!(at2, at1);
    assert_eq!(o.stdout, format!("{at2}\n"));
    assert_eq!(h.mock().counters().refresh_token_grants, 2);
    // Well within its lifetime: no refresh.
    h.set_expires_at(now_unix() + 600);
    let o = h.run_token(h.store_only(&["token"]));
    assert_eq!(o.stdout, format!("{at2}\n"));
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (2, 0));
}

#[test]
fn expired_token_in_many_token_processes_is_refreshed_once() {
    let h = Harness::new();
    h.login();
    h.set_expires_at(now_unix() - 10);
    let outcomes = h.run_at_once(6, &["token"]);
    let at = h.access_token().unwrap();
    for o in &outcomes {
        o.assert_success();
        assert_eq!(o.stdout, format!("{at}\n"), "every process prints the one renewed token");
    }
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors, c.refresh_token_reuses), (1, 0, 0), "{c:#?}");
}

#[test]
fn expired_token_without_a_refresh_token_requires_login() {
    let h = Harness::new();
    let o = h.login_with(h.cli(&["--scope", "openid profile DomainApi", "login", "--no-browser"]));
    assert!(h.refresh_token().is_none(), "no offline_access, no refresh token");
    assert!(
        o.stderr.contains(
            "warning: the server issued no refresh token (add offline_access to --scope to get one): when the \
             access token expires, run `erpnet-oauth login` again"
        ),
        "{o:#?}"
    );
    let s = h.run(h.store_only(&["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["has_refresh_token"], false);
    h.run(h.store_only(&["refresh"])).assert_only_error(3, &["offline_access", "erpnet-oauth login"]);
    h.set_expires_at(now_unix() - 10);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["offline_access", "erpnet-oauth login"]);
    assert_eq!(h.mock().counters().token_requests, 1, "only the code exchange");
}

#[test]
fn rate_limited_token_endpoint_keeps_the_tokens() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    h.mock().inject_fault(Endpoint::Token, Fault::RateLimited { retry_after_secs: 9 }, Some(1));
    h.run(h.store_only(&["refresh"])).assert_only_error(4, &["429"]);
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before);
    h.run(h.store_only(&["refresh"])).assert_success();
}

#[test]
fn the_token_printed_is_accepted_by_the_domain_api() {
    let h = Harness::new();
    h.login();
    let o = h.run_token(h.store_only(&["token"]));
    let token = o.stdout.trim_end();
    let mut answer = browser()
        .get(&format!("{}/api/domain/odata/Crm_Customers?$top=1", h.instance()))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.body_mut().read_to_string().unwrap());
}

#[test]
fn refresh_rotates_the_refresh_token_and_never_reuses_it() {
    let h = Harness::new();
    h.login();
    let rt0 = h.refresh_token().unwrap();
    let at0 = h.access_token().unwrap();
    let o = h.run(h.store_only(&["refresh"]));
    o.assert_success();
    assert!(o.stdout.is_empty());
    assert!(o.stderr.starts_with("Refreshed the access token"), "{o:#?}");
    let rt1 = h.refresh_token().unwrap();
    assert_ne!(rt1, rt0, "the refresh token rotated");
    assert_ne!(h.access_token().unwrap(), at0, "a new access token was stored");
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (1, 0));

    h.run(h.store_only(&["refresh"])).assert_success();
    assert_ne!(h.refresh_token().unwrap(), rt1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(h.token_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the rewritten token file is still private: {mode:o}");
    }
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors, c.refresh_token_reuses), (2, 0, 0));
    // The new token works.
    let t = h.run_token(h.store_only(&["token"]));
    assert_eq!(t.stdout, format!("{}\n", h.access_token().unwrap()));
}

#[test]
fn rejected_refresh_token_requires_a_new_login_and_deletes_the_tokens() {
    let h = Harness::new();
    h.login();
    h.mock().revoke_all_grants_of("admin");
    let o = h.run(h.store_only(&["refresh"]));
    o.assert_only_error(3, &["invalid_grant", "erpnet-oauth login"]);
    assert!(!h.token_file().exists(), "the rejected tokens are deleted");
    assert_eq!(h.mock().counters().invalid_grant_errors, 1);
    // From now on: login required, without asking the server again.
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
    h.run(h.store_only(&["refresh"])).assert_only_error(3, &["erpnet-oauth login"]);
    assert_eq!(h.mock().counters().token_requests, 2, "the code exchange and the one refused refresh");
    // A new login works.
    h.login();
    h.run(h.store_only(&["refresh"])).assert_success();
}

#[test]
fn token_endpoint_answering_html_500_keeps_the_tokens() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    h.mock().inject_fault(Endpoint::Token, Fault::Status(500), Some(1));
    let o = h.run(h.store_only(&["refresh"]));
    o.assert_only_error(4, &["500"]);
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before, "the tokens are kept as they were");
    // The next attempt succeeds with the same refresh token.
    h.run(h.store_only(&["refresh"])).assert_success();
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (1, 0));
}

#[test]
fn token_endpoint_answering_malformed_json_is_a_server_error() {
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    h.mock().inject_fault(Endpoint::Token, Fault::MalformedBody, Some(1));
    h.run(h.store_only(&["refresh"])).assert_only_error(4, &[]);
    // Answered 200: the refresh token sent is spent (catalogue E10) and never sent again; the access token
    // is kept, and with no readable refresh token in the answer the next renewal needs a login.
    assert_eq!(h.access_token(), Some(at0));
    assert_eq!(h.refresh_token(), None);
    let grants = h.mock().counters().refresh_token_grants;
    h.run(h.store_only(&["refresh"])).assert_only_error(3, &["erpnet-oauth login"]);
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (grants, 0));
}

#[test]
fn token_endpoint_hanging_times_out_and_keeps_the_tokens() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    h.mock().inject_fault(Endpoint::Token, Fault::Hang, Some(1));
    let o = h.run(h.store_only(&["--timeout", "1", "refresh"]));
    o.assert_only_error(5, &["timed out"]);
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before);
    h.run(h.store_only(&["refresh"])).assert_success();
    assert_eq!(h.mock().counters().invalid_grant_errors, 0);
}

#[test]
fn connection_dropped_by_the_token_endpoint_is_a_network_error() {
    let h = Harness::new();
    h.login();
    h.mock().inject_fault(Endpoint::Token, Fault::DropConnection, Some(1));
    h.run(h.store_only(&["refresh"])).assert_only_error(5, &[]);
    h.run(h.store_only(&["refresh"])).assert_success();
}

#[test]
fn instance_gone_is_a_network_error_and_keeps_the_tokens() {
    let h = Harness::new();
    h.login();
    let before = std::fs::read(h.token_file()).unwrap();
    let Harness { server, dir, .. } = h;
    drop(server);
    let mut cmd = bare(dir.path());
    cmd.arg("--store").arg(dir.path().join("store")).args(["refresh"]).env("ERPNET_CLIENT_SECRET", SECRET);
    let o = run(cmd);
    o.assert_only_error(5, &["connection"]);
    assert!(!o.stderr.contains(SECRET));
    assert_eq!(std::fs::read(dir.path().join("store/default.tokens.json")).unwrap(), before);
}

#[test]
fn empty_store_means_login_required() {
    let h = Harness::new();
    for args in [&["token"][..], &["refresh"], &["call", "GET", "/api/domain/odata/Crm_Customers"]] {
        let o = h.run(h.cli(args));
        o.assert_only_error(3, &["not logged in", "erpnet-oauth login"]);
        assert!(o.stdout.is_empty());
    }
    // Nothing configured at all: still "log in first".
    let mut cmd = h.bare();
    cmd.arg("--store").arg(h.store()).arg("token");
    let o = h.run(cmd);
    o.assert_only_error(3, &["erpnet-oauth login"]);
    assert_eq!(h.mock().counters().token_requests, 0);
}

#[test]
fn global_flags_are_accepted_after_the_command() {
    let h = Harness::new();
    h.login();
    let mut cmd = h.bare();
    cmd.args(["token", "--store"]).arg(h.store()).env("ERPNET_CLIENT_SECRET", SECRET);
    let o = h.run_token(cmd);
    o.assert_success();
    assert_eq!(o.stdout, format!("{}\n", h.access_token().unwrap()));
    let mut cmd = h.bare();
    cmd.args(["refresh", "--timeout", "5", "--profile", "default", "--store"]).arg(h.store());
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    h.run(cmd).assert_success();
}

#[test]
fn profiles_keep_logins_apart() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["--profile", "other", "token"]));
    o.assert_only_error(3, &["`other`", "erpnet-oauth login"]);
    let default = h.run_token(h.store_only(&["token"]));
    default.assert_success();
}

#[test]
fn a_login_to_another_instance_is_not_mixed_up() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.cli_without(&["--instance"], &["--instance", "http://127.0.0.1:9", "token"]));
    o.assert_only_error(2, &["--profile"]);
}

#[test]
fn expired_token_in_many_processes_is_refreshed_once() {
    let h = Harness::new();
    h.login();
    let rt0 = h.refresh_token().unwrap();
    // The mock's clock moves past the token's lifetime: each process still thinks its token is good,
    // gets a 401, and the processes must renew once between them.
    h.mock().advance_clock(Duration::from_secs(3601));
    for o in h.run_at_once(6, &["call", "GET", "/api/domain/odata/Crm_Customers?$top=2"]) {
        o.assert_success();
        let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(json["value"].as_array().map(Vec::len), Some(2));
    }
    let c = h.mock().counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh between all the processes: {c:#?}");
    assert_eq!((c.invalid_grant_errors, c.refresh_token_reuses), (0, 0), "{c:#?}");
    assert_ne!(h.refresh_token().unwrap(), rt0);
}

#[test]
fn forced_refresh_in_many_processes_never_reuses_a_refresh_token() {
    let h = Harness::new();
    h.login();
    for o in h.run_at_once(6, &["refresh"]) {
        o.assert_success();
    }
    let c = h.mock().counters();
    assert!((1..=6).contains(&c.refresh_token_grants), "{c:#?}");
    assert_eq!((c.invalid_grant_errors, c.refresh_token_reuses), (0, 0), "{c:#?}");
    // The login is intact.
    h.run(h.store_only(&["refresh"])).assert_success();
}

#[test]
fn instance_with_or_without_a_trailing_slash_is_the_same_login() {
    let h = Harness::new();
    let slash = format!("{}/", h.instance());
    h.login_with(h.cli_without(&["--instance"], &["--instance", &slash, "login", "--no-browser"]));
    let o = h.run_token(h.cli(&["token"]));
    o.assert_success();
    assert_eq!(o.stdout, format!("{}\n", h.access_token().unwrap()));
    let o = h.run(h.cli_without(
        &["--instance"],
        &["--instance", &slash, "call", "GET", "/api/domain/odata/Crm_Customers?$top=1"],
    ));
    o.assert_success();
}

#[test]
fn refresh_without_or_with_a_wrong_secret_says_what_to_check_and_keeps_the_tokens() {
    let h = Harness::new();
    // The secret not saved (tests/secrets.rs has the saved one).
    h.login_with(h.cli(&["login", "--no-browser", "--no-save-secret"]));
    let before = std::fs::read(h.token_file()).unwrap();
    let mut cmd = h.store_only(&["refresh"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    h.run(cmd)
        .assert_only_error(2, &["needs its client secret", "ERPNET_CLIENT_SECRET", "--client-secret-file"]);
    assert_eq!(h.mock().counters().token_requests, 1, "nothing sent: only the login's code exchange");
    let wrong = "wrong-secret-Hq3Lp9";
    h.secret(wrong);
    let mut cmd = h.store_only(&["refresh"]);
    cmd.env("ERPNET_CLIENT_SECRET", wrong);
    h.run(cmd).assert_only_error(4, &["invalid_client", "ERPNET_CLIENT_SECRET"]);
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before, "the tokens are kept");
    h.run(h.store_only(&["refresh"])).assert_success();
    let c = h.mock().counters();
    assert_eq!((c.invalid_client_errors, c.refresh_token_grants, c.invalid_grant_errors), (1, 1, 0));
}
