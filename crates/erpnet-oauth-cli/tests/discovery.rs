//! Discovery at `login` (issue 14): any failure to get a valid discovery document is an error naming the
//! discovery URL (exit 4 for a bad answer, 5 for no answer), never a silent fall-back to ERP.net's paths;
//! `--no-discovery` (`ERPNET_NO_DISCOVERY`) uses those paths with no discovery request, and the profile
//! remembers it.

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault, Intercepted, MockConfig, MockErpNet, TrustedApp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const WELL_KNOWN: &str = "/id/.well-known/openid-configuration";

fn discovery_url(h: &Harness) -> String {
    format!("{}{WELL_KNOWN}", h.instance())
}

fn profile(h: &Harness) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(h.profile_file()).unwrap()).unwrap()
}

/// Counts the requests for the discovery document; answers them with `answer` when it gives one.
fn discovery_requests(
    h: &Harness,
    answer: impl Fn() -> Option<http::Response<Vec<u8>>> + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    h.mock().set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        if req.uri().path() != WELL_KNOWN {
            return Intercepted::Pass;
        }
        seen.fetch_add(1, Ordering::SeqCst);
        answer().map_or(Intercepted::Pass, Intercepted::Respond)
    })));
    count
}

fn response(status: u16, content_type: &str, body: &str) -> http::Response<Vec<u8>> {
    let mut builder = http::Response::builder().status(status);
    if !content_type.is_empty() {
        builder = builder.header("content-type", content_type);
    }
    builder.body(body.as_bytes().to_vec()).unwrap()
}

/// Asserts that `login` failed before any authorize URL, with nothing stored.
fn assert_nothing_began(h: &Harness, o: &Outcome) {
    assert!(o.stdout.is_empty(), "{o:#?}");
    assert!(!o.stderr.contains("/connect/authorize"), "no authorize URL: {o:#?}");
    assert!(!h.token_file().exists() && !h.profile_file().exists(), "nothing stored");
    let c = h.mock().counters();
    assert_eq!((c.authorize_requests, c.token_requests), (0, 0));
}

#[test]
fn a_discovery_404_is_an_error_naming_the_url() {
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Discovery, Fault::Status(404), None);
    let o = h.run(h.cli(&["login", "--no-browser"]));
    o.assert_only_error(4, &[&discovery_url(&h), "HTTP 404", "--instance", "--no-discovery"]);
    assert_nothing_began(&h, &o);
    assert_eq!(h.mock().counters().faults_applied, 1);
}

#[test]
fn the_issuer_given_as_the_instance_fails_at_once() {
    // The case: the issuer URL the mock prints, given as --instance. Discovery at
    // {issuer}/id/.well-known/... is a 404: an error now, not a dead authorize URL and a 300 s wait.
    let h = Harness::new();
    let issuer = h.mock().issuer();
    let o = h.run(h.cli_without(&["--instance"], &["--instance", &issuer, "login", "--no-browser"]));
    o.assert_only_error(4, &[&format!("{issuer}{WELL_KNOWN}"), "404", "without /id"]);
    assert_nothing_began(&h, &o);
}

#[test]
fn every_other_bad_answer_is_an_error_naming_the_url() {
    let rows: [(&str, http::Response<Vec<u8>>, &str); 6] = [
        ("a server error", response(500, "text/plain", "down"), "HTTP 500"),
        ("a redirect", response(302, "", ""), "redirect"),
        ("204", response(204, "", ""), "HTTP 204"),
        ("not JSON", response(200, "text/html", "<html>login</html>"), "malformed"),
        ("a JSON array", response(200, "application/json", "[]"), "malformed"),
        ("no token endpoint", response(200, "application/json", "{}"), "no `issuer`"),
    ];
    for (what, answer, says) in rows {
        let h = Harness::new();
        let answer = Mutex::new(Some(answer));
        let count = discovery_requests(&h, move || answer.lock().unwrap().take());
        let o = h.run(h.cli(&["login", "--no-browser"]));
        o.assert_only_error(4, &[&discovery_url(&h), says]);
        assert_nothing_began(&h, &o);
        assert_eq!(count.load(Ordering::SeqCst), 1, "{what}: one request, no retry");
    }
}

#[test]
fn no_answer_is_a_network_error_naming_the_url() {
    let h = Harness::new();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let o = h.run(h.cli_without(&["--instance"], &["--instance", &closed, "login", "--no-browser"]));
    o.assert_only_error(5, &[&format!("{closed}{WELL_KNOWN}"), "connection"]);
    h.mock().inject_fault(Endpoint::Discovery, Fault::Hang, None);
    let o = h.run(h.cli(&["--timeout", "1", "login", "--no-browser"]));
    o.assert_only_error(5, &[&discovery_url(&h), "timed out"]);
    assert_nothing_began(&h, &o);
}

#[test]
fn no_discovery_uses_erpnets_paths_and_the_profile_remembers_it() {
    let h = Harness::new();
    // Discovery is broken: only --no-discovery can log in.
    h.mock().inject_fault(Endpoint::Discovery, Fault::Status(404), None);
    let count = discovery_requests(&h, || None);
    let run = h.start_login(h.cli(&["login", "--no-browser", "--no-discovery"]));
    assert!(
        run.authorize_url.starts_with(&format!("{}/id/connect/authorize?", h.instance())),
        "{}",
        run.authorize_url
    );
    run.browse(&h);
    let o = run.finish();
    o.assert_success();
    assert_eq!(count.load(Ordering::SeqCst), 0, "no discovery request");
    let saved = profile(&h);
    assert_eq!(saved["no_discovery"], true, "{saved}");
    assert!(saved["discovery"].is_null(), "{saved}");
    // Later commands need no flag.
    h.set_expires_at(now_unix() - 10);
    h.run(h.store_only(&["call", "GET", "/api/domain/odata/Crm_Customers?$top=1"])).assert_success();
    h.run(h.store_only(&["refresh"])).assert_success();
    h.run_token(h.store_only(&["token"])).assert_success();
    // Nor does the next login (with the profile's settings).
    h.login();
    assert_eq!(count.load(Ordering::SeqCst), 0, "still no discovery request");
    assert_eq!(profile(&h)["no_discovery"], true);
    let c = h.mock().counters();
    assert_eq!((c.authorization_code_grants, c.refresh_token_grants, c.faults_applied), (2, 2, 0), "{c:#?}");
    // --no-discovery=false turns it off: discovery again (and its 404 is an error again).
    let o = h.run(h.cli(&["login", "--no-browser", "--no-discovery=false"]));
    o.assert_only_error(4, &[&discovery_url(&h), "404"]);
    h.mock().clear_faults();
    h.login_with(h.cli(&["login", "--no-browser", "--no-discovery=false"]));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let saved = profile(&h);
    assert!(saved.get("no_discovery").is_none(), "{saved}");
    assert_eq!(saved["discovery"]["issuer"], h.mock().issuer().as_str());
}

#[test]
fn the_environment_variable_and_the_flag() {
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Discovery, Fault::Status(404), None);
    let count = discovery_requests(&h, || None);
    // Falsy values, and a flag saying false over a variable saying true: discovery is tried.
    for (var, flag) in [("0", None), ("false", None), ("no", None), ("1", Some("--no-discovery=false"))] {
        let mut cmd = h.cli(&["login", "--no-browser"]);
        cmd.args(flag).env("ERPNET_NO_DISCOVERY", var);
        h.run(cmd).assert_only_error(4, &[&discovery_url(&h)]);
    }
    assert_eq!(count.load(Ordering::SeqCst), 4);
    let mut cmd = h.cli(&["login", "--no-browser"]);
    cmd.env("ERPNET_NO_DISCOVERY", "maybe");
    let o = h.run(cmd);
    assert_eq!(o.code, Some(2), "{o:#?}");
    assert!(o.stderr.contains("ERPNET_NO_DISCOVERY") || o.stderr.contains("--no-discovery"), "{o:#?}");
    // A true value logs in on ERP.net's paths.
    let mut cmd = h.cli(&["login", "--no-browser"]);
    cmd.env("ERPNET_NO_DISCOVERY", "1");
    h.login_with(cmd);
    assert_eq!(count.load(Ordering::SeqCst), 4, "no discovery request");
    assert_eq!(profile(&h)["no_discovery"], true);
}

#[test]
fn the_saved_choice_is_for_the_saved_instance_only() {
    let h = Harness::new();
    h.login_with(h.cli(&["login", "--no-browser", "--no-discovery"]));
    // Another instance in the same profile: its discovery document is asked for (here, a 404).
    let other = MockErpNet::start(MockConfig {
        apps: vec![TrustedApp { impersonate_login_urls: vec![h.redirect_uri.clone()], ..TrustedApp::demo() }],
        worker_threads: Some(1),
        ..MockConfig::default()
    })
    .unwrap();
    other.inject_fault(Endpoint::Discovery, Fault::Status(404), None);
    let o =
        h.run(h.cli_without(&["--instance"], &["--instance", &other.base_url(), "login", "--no-browser"]));
    o.assert_only_error(4, &[&format!("{}{WELL_KNOWN}", other.base_url())]);
    assert_eq!(other.counters().faults_applied, 1);
}
