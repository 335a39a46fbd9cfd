//! `--verbose` (each HTTP exchange on stderr, nothing secret) and the ID token's verification at login
//! (the JWKS must be reachable and the token must verify, or nothing is stored).

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault};

/// stderr without ANSI escape sequences.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn verbose_logs_each_exchange_without_secrets() {
    let h = Harness::new();
    let o = h.login_with(h.cli(&["--verbose", "login", "--no-browser"]));
    assert!(!o.stderr.contains('\u{1b}'), "no colour escapes when stderr is not a terminal: {o:#?}");
    let err = plain(&o.stderr);
    for path in ["/id/.well-known/openid-configuration", "/id/connect/token"] {
        assert!(err.lines().any(|l| l.contains(path) && l.contains("200")), "{path} not logged: {err}");
    }
    h.set_expires_at(now_unix() - 10);
    let o = h.run(h.store_only(&["-v", "call", "GET", "/api/domain/odata/Crm_Customers?$top=1"]));
    o.assert_success();
    let err = plain(&o.stderr);
    assert!(err.lines().any(|l| l.contains("POST") && l.contains("/id/connect/token")), "{err}");
    assert!(err.lines().any(|l| l.contains("GET") && l.contains("/api/domain/odata/Crm_Customers")), "{err}");
    // stdout is the body alone.
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(json["value"].as_array().map(Vec::len), Some(1));
    // Without --verbose: nothing on stderr.
    let o = h.run(h.store_only(&["call", "GET", "/api/domain/odata/Crm_Customers?$top=1"]));
    assert!(o.stderr.is_empty(), "{o:#?}");
}

#[test]
fn login_fails_when_the_id_token_cannot_be_verified() {
    // The JWKS answers an HTML 500: the ID token cannot be checked, nothing is stored.
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Jwks, Fault::Status(500), None);
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(4, &[]);
    assert!(!h.token_file().exists(), "{o:#?}");
    assert!(!o.stderr.contains("Logged in"));

    // The JWKS hangs: a network failure after --timeout.
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Jwks, Fault::Hang, None);
    let run = h.start_login(h.cli(&["--timeout", "1", "login", "--no-browser"]));
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(5, &["timed out"]);
    assert!(!h.token_file().exists());
}
