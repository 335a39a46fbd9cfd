//! `call` and `token` against a server that issues 1 s and 5 s access tokens (catalogue E9): each command
//! finishes, with at most one refresh grant. (An earlier version sent thousands of refresh grants in one
//! `call` against 5 s tokens, and lost the login.)
//!
//! The mock's clock is manual, moved by the test past each token's lifetime before each command, so that
//! every command meets a token that is dead at the server, whatever the real time the commands take.

mod common;

use common::*;
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID};
use std::time::{Duration, SystemTime};

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=2";

fn harness(lifetime: u64) -> Harness {
    Harness::with(|c| {
        c.clock = ClockMode::Manual { start: SystemTime::now() };
        for app in &mut c.apps {
            if app.application_uri == DEMO_CLIENT_ID {
                app.access_token_lifetime = Some(Duration::from_secs(lifetime));
            }
        }
    })
}

#[test]
fn call_and_token_make_at_most_one_refresh_grant_each_with_1_and_5_second_tokens() {
    for lifetime in [1u64, 5] {
        let h = harness(lifetime);
        h.login().assert_success();
        let mut calls = Vec::new();
        for _ in 0..5 {
            h.mock().advance_clock(Duration::from_secs(lifetime));
            let before = h.mock().counters().refresh_token_grants;
            let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
            o.assert_success();
            assert!(o.stdout.contains("\"value\""), "{o:#?}");
            calls.push(h.mock().counters().refresh_token_grants - before);
        }
        // The token each `call` met was dead at the server: renewed before the call, or after its 401, once.
        assert_eq!(calls, vec![1; 5], "lifetime {lifetime} s: refresh grants per `call`");
        let mut tokens = Vec::new();
        for _ in 0..5 {
            h.mock().advance_clock(Duration::from_secs(lifetime));
            let before = h.mock().counters().refresh_token_grants;
            let o = h.run_token(h.store_only(&["token"]));
            o.assert_success();
            assert_eq!(o.stdout, format!("{}\n", h.access_token().unwrap()));
            tokens.push(h.mock().counters().refresh_token_grants - before);
        }
        // `token` judges on the CLI's own clock, which the test does not move: a token received less than
        // half its lifetime ago is still printed, an older one renewed, once.
        assert!(
            tokens.iter().all(|&n| n <= 1),
            "lifetime {lifetime} s: refresh grants per `token`: {tokens:?}"
        );
        // Tokens received a whole lifetime ago on the CLI's clock: each `token` renews once, and prints the
        // new one (just issued, it is used even though half its lifetime is already less than the skew).
        let mut aged = Vec::new();
        for _ in 0..5 {
            age_stored_token(&h, lifetime);
            let before = h.mock().counters().refresh_token_grants;
            let old = h.access_token().unwrap();
            let o = h.run_token(h.store_only(&["token"]));
            o.assert_success();
            assert_ne!(o.stdout, format!("{old}\n"));
            assert_eq!(o.stdout, format!("{}\n", h.access_token().unwrap()));
            aged.push(h.mock().counters().refresh_token_grants - before);
        }
        assert_eq!(aged, vec![1; 5], "lifetime {lifetime} s: refresh grants per `token` of an aged token");
        let c = h.mock().counters();
        assert_eq!((c.invalid_grant_errors, c.refresh_token_reuses), (0, 0), "lifetime {lifetime} s");
        eprintln!(
            "lifetime {lifetime} s: refresh grants per call {calls:?}, per token {tokens:?}, per token of an aged token {aged:?}"
        );
    }
}

/// Makes the stored token one of `lifetime` seconds received `lifetime` seconds ago on the CLI's clock.
fn age_stored_token(h: &Harness, lifetime: u64) {
    let path = h.token_file();
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let now = now_unix();
    json["tokens"]["issued_at"] = (now - lifetime).into();
    json["tokens"]["expires_at"] = now.into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
}

#[test]
fn a_token_response_without_expires_in_is_not_fresh_forever() {
    // `token` used to print a dead token forever when the server omitted expires_in; it now gets the
    // fallback lifetime (300 s, catalogue E12) and is renewed when that runs out.
    let h = Harness::with(|c| {
        for app in &mut c.apps {
            app.omit_expires_in = true;
        }
    });
    h.login().assert_success();
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(h.token_file()).unwrap()).unwrap();
    let (issued, expires) = (stored["tokens"]["issued_at"].as_u64(), stored["tokens"]["expires_at"].as_u64());
    assert_eq!(expires.zip(issued).map(|(e, i)| e - i), Some(300), "{stored:#}");
    h.set_expires_at(now_unix() - 1);
    let before = h.access_token().unwrap();
    let o = h.run_token(h.store_only(&["token"]));
    o.assert_success();
    assert_ne!(o.stdout, format!("{before}\n"), "a new token, not the dead one");
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
}
