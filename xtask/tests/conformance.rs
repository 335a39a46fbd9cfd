//! `cargo test` runs every conformance case through the three drivers, so CI cannot skip them: each case
//! must pass through the core, the ureq adapter and the async adapter alike.

use std::collections::BTreeMap;
use xtask::conformance::{
    self, AsyncDriver, CoreDriver, Driver, Report, UreqDriver, Verdict, check, fixtures_dir, load,
};

fn core() -> Box<dyn Driver> {
    Box::new(CoreDriver::new())
}

fn ureq() -> Box<dyn Driver> {
    Box::new(UreqDriver::new())
}

fn async_() -> Box<dyn Driver> {
    Box::new(AsyncDriver::new())
}

/// The core, and the drivers that send over real HTTP to the mock.
fn all_drivers() -> [Box<dyn Driver>; 3] {
    [core(), ureq(), async_()]
}

/// Every `*.toml` in `fixtures/`, counted without the runner's help.
fn fixture_files() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ is listable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn run_all(make: &mut dyn FnMut() -> Box<dyn Driver>) -> Report {
    conformance::run(&fixtures_dir(), None, make).expect("fixtures/ is readable")
}

/// Every case passes through `make`'s driver: one result per file, in file order, each a pass. Prints the
/// driver's count and returns the report.
fn assert_every_case_passes(make: &mut dyn FnMut() -> Box<dyn Driver>) -> Report {
    let report = run_all(make);
    let files = fixture_files();
    assert!(files.len() >= 150, "only {} cases in fixtures/", files.len());
    let mut ids: Vec<&str> = report.results.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let missing: Vec<&String> = files.iter().filter(|f| !ids.contains(&f.as_str())).collect();
    assert!(missing.is_empty() && ids.len() == files.len(), "one result per file; none for {missing:?}");
    let lines = report.lines();
    let failures: Vec<&String> = lines.iter().filter(|l| !l.starts_with("PASS ")).collect();
    let name = report.drivers().first().copied().unwrap_or("?");
    assert!(
        report.results.iter().all(|r| r.verdict == Verdict::Pass),
        "[{name}] not every case passed:\n{}",
        failures.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
    );
    let count = format!("[{name}] {} passed, 0 failed", files.len());
    assert!(lines.contains(&count), "{count} missing from {:?}", lines.last());
    println!("{count}");
    report
}

/// The catalogue's sections (`../shared/CONFORMANCE.md`) and how many lines each has: every line has a case.
const CATALOGUE: [(&str, usize); 9] =
    [("A", 5), ("B", 9), ("C", 7), ("D", 9), ("E", 14), ("F", 6), ("G", 4), ("H", 5), ("I", 1)];

/// Every catalogue line has a case that passed through the report's driver.
fn assert_every_catalogue_line_passed(report: &Report) {
    for (section, count) in CATALOGUE {
        for n in 1..=count {
            let prefix = format!("{section}{n}-");
            let passed =
                report.results.iter().any(|r| r.id.starts_with(&prefix) && r.verdict == Verdict::Pass);
            let name = report.drivers().first().copied().unwrap_or("?");
            assert!(passed, "no {section}{n} case passed through the {name} driver");
        }
    }
}

#[test]
fn every_case_passes_through_the_core() {
    let report = assert_every_case_passes(&mut core);
    assert_every_catalogue_line_passed(&report);
}

#[test]
fn every_case_passes_through_the_ureq_adapter_against_the_mock() {
    let report = assert_every_case_passes(&mut ureq);
    assert_every_catalogue_line_passed(&report);
}

#[test]
fn every_case_passes_through_the_async_adapter_against_the_mock() {
    let report = assert_every_case_passes(&mut async_);
    assert_every_catalogue_line_passed(&report);
}

#[test]
fn the_report_counts_each_driver_then_the_totals() {
    let mut report = Report::default();
    for make in [core as fn() -> Box<dyn Driver>, ureq, async_] {
        let mut make = make;
        report.extend(
            conformance::run(&fixtures_dir(), Some("seed-domain-api-call"), &mut make).expect("runs"),
        );
    }
    let lines = report.lines();
    let tail: Vec<&str> = lines.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "[core] 1 passed, 0 failed",
            "[ureq] 1 passed, 0 failed",
            "[async] 1 passed, 0 failed",
            "3 passed, 0 failed"
        ]
    );
}

#[test]
fn every_catalogue_line_has_a_case_and_the_seed_its_own() {
    let ids = fixture_files();
    for (section, count) in CATALOGUE {
        for n in 1..=count {
            let prefix = format!("{section}{n}-");
            assert!(ids.iter().any(|id| id.starts_with(&prefix)), "no case for {section}{n}");
        }
    }
    assert!(ids.iter().filter(|id| id.starts_with("seed-")).count() >= 6);
}

fn case(id: &str) -> conformance::Case {
    load(&fixtures_dir().join(format!("{id}.toml"))).expect("the case loads")
}

#[test]
fn a_wrong_expected_token_fails_the_case() {
    for mut driver in all_drivers() {
        let mut c = case("seed-domain-api-call");
        // The stored token differs from the one the case expects in the Authorization header.
        c.tokens.as_mut().expect("stored tokens").access_token = "not-the-token".to_owned();
        let err = check(&c, driver.as_mut()).expect_err("the bearer header differs");
        assert!(err.contains("Authorization"), "{}: {err}", driver.name());
    }
}

#[test]
fn a_request_missing_from_the_script_fails_the_case() {
    for mut driver in all_drivers() {
        let mut c = case("seed-refresh-after-401");
        // Drop the refresh exchange: the client's refresh request is then unexpected.
        let step = c.steps.iter_mut().find(|s| s.get("do").and_then(|d| d.as_str()) == Some("api_call"));
        let wire = step.and_then(|s| s.get_mut("wire")).and_then(|w| w.as_array_mut()).expect("a wire");
        wire.remove(1);
        let err = check(&c, driver.as_mut()).expect_err("the refresh is not scripted");
        assert!(err.contains("request 2"), "{}: {err}", driver.name());
    }
}

#[test]
fn a_second_refresh_by_a_concurrent_caller_fails_the_case() {
    // E7 with one caller more than the script answers: the extra call's request is unexpected, so a
    // driver whose callers each refreshed (or sent the old token) could not pass E7.
    for mut driver in all_drivers() {
        let mut c = case("E7-concurrent-callers-one-refresh");
        let step = c.steps.first_mut().expect("a step");
        let count = step.get("count").and_then(|n| n.as_integer()).expect("a count");
        step.as_table_mut().expect("a table").insert("count".into(), toml::Value::Integer(count + 1));
        let err = check(&c, driver.as_mut()).expect_err("one request too many");
        assert!(err.contains("was not expected"), "{}: {err}", driver.name());
    }
}

#[test]
fn concurrent_callers_of_a_failed_renewal_share_its_one_request_and_its_error() {
    // E5 and E6 with four callers instead of one: each driver must send the one scripted token request
    // (a caller that renewed again would send an unexpected one), give every caller the case's error
    // (the late callers waited for the renewal in flight), and ask its store what the case says, once.
    let ids = [
        "E5-err-invalid-grant-login-required",
        "E6-err-503-keeps-tokens",
        "E6-err-connection-refused-keeps-tokens",
        "E6-err-invalid-client-keeps-tokens",
        "E6-err-temporarily-unavailable-keeps-tokens",
        "E6-err-timeout-keeps-tokens",
    ];
    for id in ids {
        for mut driver in all_drivers() {
            let mut c = case(id);
            let step = c.steps.first_mut().and_then(|s| s.as_table_mut()).expect("a step");
            assert_eq!(step.get("do").and_then(|d| d.as_str()), Some("api_call"), "{id}");
            step.insert("count".into(), toml::Value::Integer(4));
            check(&c, driver.as_mut()).unwrap_or_else(|e| panic!("[{}] {id}: {e}", driver.name()));
        }
    }
}

#[test]
fn a_transport_failure_of_another_kind_fails_the_case() {
    // The script drops the connection, the case expects a timeout: every driver must tell them apart.
    for mut driver in all_drivers() {
        let mut c = case("E6-err-timeout-keeps-tokens");
        let step = c.steps.first_mut().and_then(|s| s.as_table_mut()).expect("a step");
        let wire = step.get_mut("wire").and_then(|w| w.as_array_mut()).expect("a wire");
        let first = wire.first_mut().and_then(|w| w.as_table_mut()).expect("an exchange");
        first.insert("transport_error".into(), toml::Value::String("connection reset".into()));
        let err = check(&c, driver.as_mut()).expect_err("not a timeout");
        assert!(err.contains("expected the error Transport(\"timeout\")"), "{}: {err}", driver.name());
    }
}

#[test]
fn a_login_step_answers_only_its_own_part_of_the_login() {
    // B7's hybrid login with the front channel's JWKS moved to the exchange step: the front-channel step
    // then has nothing to answer the key request with, and the exchange step gets the key request where
    // it expects the code exchange. Every driver must fail the case, not let one step answer another's.
    for mut driver in all_drivers() {
        let mut c = case("B7-hybrid-front-channel-id-token-verified-then-exchanged");
        let front = c
            .steps
            .iter_mut()
            .find(|s| s.get("do").and_then(|d| d.as_str()) == Some("verify_front_channel"))
            .and_then(|s| s.as_table_mut())
            .expect("a front-channel step");
        front.remove("wire");
        let err = check(&c, driver.as_mut()).expect_err("the key request is not the exchange");
        assert!(err.contains("(exchange)") && err.contains("jwks"), "{}: {err}", driver.name());
    }
}

#[test]
fn a_listen_step_checks_each_status_and_which_request_ended_the_wait() {
    // B9 with the favicon expected to be the callback's 200, then with no callback expected: every driver
    // must report the status its listener gave, and that the last request did end the wait.
    let listen = |c: &conformance::Case| -> toml::Table {
        c.steps
            .iter()
            .find(|s| s.get("do").and_then(|d| d.as_str()) == Some("listen"))
            .and_then(|s| s.as_table())
            .expect("a listen step")
            .clone()
    };
    let set_listen = |c: &mut conformance::Case, step: toml::Table| {
        let at = c
            .steps
            .iter()
            .position(|s| s.get("do").and_then(|d| d.as_str()) == Some("listen"))
            .expect("a listen step");
        c.steps[at] = toml::Value::Table(step);
    };
    for mut driver in all_drivers() {
        let mut c = case("B9-listener-ignores-other-requests-until-the-callback");
        let mut step = listen(&c);
        let requests = step.get_mut("requests").and_then(|r| r.as_array_mut()).expect("requests");
        let first = requests.first_mut().and_then(|r| r.as_table_mut()).expect("a request");
        first.insert("status".into(), toml::Value::Integer(200));
        set_listen(&mut c, step);
        let err = check(&c, driver.as_mut()).expect_err("the favicon is a 404");
        assert!(err.contains("request 1 was answered 404, expected 200"), "{}: {err}", driver.name());

        let mut c = case("B9-listener-ignores-other-requests-until-the-callback");
        let mut step = listen(&c);
        step.remove("callback");
        set_listen(&mut c, step);
        let err = check(&c, driver.as_mut()).expect_err("the last request is the callback");
        assert!(err.contains("request 11 ended the wait"), "{}: {err}", driver.name());
    }
}

#[test]
fn an_unknown_reference_fails_the_case() {
    let mut c = case("seed-domain-api-call");
    c.vars = BTreeMap::new();
    let err = check(&c, core().as_mut()).expect_err("${at1} is unknown");
    assert!(err.contains("at1"), "{err}");
}
