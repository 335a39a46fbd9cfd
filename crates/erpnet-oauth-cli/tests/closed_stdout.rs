//! A closed stdout (EPIPE: `status | head -1`, `call ... | head -c1`, `token | true`) ends the command
//! quietly, as ripgrep does: exit 0, nothing on stderr, and what the command stored before stays stored.
//!
//! Each command runs with its stdout on a pipe whose only reader is closed before the command writes
//! (the test drops its end right after the spawn), so every write fails with EPIPE.

mod common;

use common::*;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers";

/// Runs `cmd` with stdout on a pipe nobody reads; returns the exit code and stderr.
fn run_with_stdout_closed(mut cmd: Command) -> (Option<i32>, String) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    (status.code(), stderr)
}

fn assert_quiet(what: &str, (code, stderr): (Option<i32>, String)) {
    assert_eq!(code, Some(0), "{what}: exit 0 on a closed stdout; stderr: {stderr}");
    assert_eq!(stderr, "", "{what}: nothing on stderr");
}

#[test]
fn every_printing_command_ends_quietly() {
    // Many rows, more than a pipe holds: the write fails even if another process held the reading end
    // for a moment.
    let h = Harness::with(|c| c.customers = 2000);
    h.login();
    let before = h.stored();
    for args in [
        &["token"][..],
        &["token", "--json"],
        &["status"],
        &["status", "--json"],
        &["call", "GET", CUSTOMERS],
        &["call", "GET", CUSTOMERS, "-i"],
        &["call", "GET", CUSTOMERS, "--paginate"],
        &["completions", "bash"],
        &["--help"],
        &["call", "--help"],
    ] {
        assert_quiet(&args.join(" "), run_with_stdout_closed(h.store_only(args)));
    }
    let mut hash = h.bare();
    hash.arg("hash-secret").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = hash.spawn().unwrap();
    drop(child.stdout.take());
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"secret").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), out.stderr.as_slice()), (Some(0), &b""[..]), "hash-secret");
    assert_eq!(h.stored(), before, "nothing was refreshed or lost");
    // The same commands with a reader print what they always printed.
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=1")]));
    o.assert_success();
    assert!(o.stdout.contains("C00001"));
}

#[test]
fn the_demo_ends_quietly() {
    // The demo prints with `println!`, which panics on EPIPE: the panic hook ends it quietly too.
    let h = Harness::new();
    let mut demo = h.bare();
    demo.arg("demo");
    assert_quiet("demo", run_with_stdout_closed(demo));
}

#[test]
fn a_call_cut_short_has_stored_the_rotated_refresh_token() {
    let h = Harness::with(|c| c.customers = 2000);
    h.login();
    let rt0 = h.refresh_token().unwrap();
    // The server's clock moves past the token's expiry: the call gets a 401, refreshes (the refresh token
    // rotates), retries, and then finds its stdout closed.
    h.mock().advance_clock(Duration::from_secs(3601));
    assert_quiet("call", run_with_stdout_closed(h.store_only(&["call", "GET", CUSTOMERS])));
    let c = h.mock().counters();
    assert_eq!((c.api_unauthorized, c.refresh_token_grants, c.api_ok), (1, 1, 1), "{c:#?}");
    let rt1 = h.refresh_token().unwrap();
    assert_ne!(rt1, rt0, "the rotated refresh token was stored before the output");
    // It is the live one: the next refresh uses it, no reuse detected, nothing revoked.
    h.run(h.store_only(&["refresh"])).assert_success();
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses, c.invalid_grant_errors), (2, 0, 0), "{c:#?}");
}

#[test]
fn token_cut_short_after_a_refresh_has_stored_it() {
    let h = Harness::new();
    h.login();
    let at0 = h.access_token().unwrap();
    h.set_expires_at(now_unix() - 10);
    assert_quiet("token", run_with_stdout_closed(h.store_only(&["token"])));
    assert_ne!(h.access_token().unwrap(), at0, "the new token was stored");
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    let o = h.run_token(h.store_only(&["token"]));
    o.assert_success();
    assert_eq!(o.stdout, format!("{}\n", h.access_token().unwrap()));
    assert_eq!(h.mock().counters().refresh_token_grants, 1, "no second refresh");
}
