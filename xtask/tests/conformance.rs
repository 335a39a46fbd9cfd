//! `cargo test` runs every conformance case through the three drivers, so CI cannot skip them.

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

/// The drivers that send over real HTTP to the mock, and the core.
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

/// The cases that only the adapters run (`drivers = ["ureq", ...]`), by file content.
fn adapter_only() -> Vec<String> {
    fixture_files()
        .into_iter()
        .filter(|id| load(&fixtures_dir().join(format!("{id}.toml"))).expect("loads").drivers.is_some())
        .collect()
}

#[test]
fn every_case_passes_against_the_core() {
    let report = run_all(&mut core);
    let files = fixture_files();
    assert!(files.len() >= 55, "only {} cases in fixtures/", files.len());
    let mut ids: Vec<&str> = report.results.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, files.iter().map(String::as_str).collect::<Vec<_>>(), "one result per file");
    let lines = report.lines();
    assert_eq!(report.failed(), 0, "\n{}", lines.join("\n"));
    // The core skips only the adapter-only cases, and each says why.
    let skipped: Vec<String> = report
        .results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Skip(_)))
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(skipped, adapter_only());
    let expected = format!("{} passed, 0 failed, {} skipped", files.len() - skipped.len(), skipped.len());
    assert_eq!(lines.last().map(String::as_str), Some(expected.as_str()));
}

/// The E, F, G and H cases an adapter (ureq, async) does not run, each with its reason (a substring of the
/// SKIP line).
const ADAPTER_SKIPS: &[(&str, &str)] = &[
    // The session renews on use; it has no timer to wake it before expiry. E8's renewal before use runs.
    ("E8-timer-refreshes-before-expiry", "no timer entry point"),
    // The end-session URL is the core's alone; the session revokes in logout (G1, G2 run).
    ("G3-end-session-url", "end session"),
    // H5 is the discovery document, which the session does not fetch: not an adapter behaviour.
    ("H5-err-discovery-issuer-differs", "no discovery"),
    ("H5-err-discovery-unavailable-erpnet-paths-used", "no discovery"),
];

/// Every E, F, G and H case passes through `driver`'s adapter but those of [`ADAPTER_SKIPS`], skipped for
/// their reason, and every catalogue line of E, F, G1-G2 and H1-H4 has a case that passed. Returns the
/// report.
fn assert_every_e_f_g_h_case_passes(make: &mut dyn FnMut() -> Box<dyn Driver>) -> Report {
    let report = run_all(make);
    let lines = report.lines();
    assert_eq!(report.failed(), 0, "\n{}", lines.join("\n"));
    assert_eq!(report.results.len(), fixture_files().len());
    let efh: Vec<_> = report.results.iter().filter(|r| r.id.starts_with(['E', 'F', 'G', 'H'])).collect();
    let mut skipped = Vec::new();
    for r in &efh {
        match &r.verdict {
            Verdict::Pass => {}
            Verdict::Skip(why) => {
                let allowed = ADAPTER_SKIPS.iter().find(|(id, _)| *id == r.id);
                let (_, reason) =
                    allowed.unwrap_or_else(|| panic!("[{}] {} is skipped: {why}", r.driver, r.id));
                assert!(why.contains(reason), "[{}] {}: {why}", r.driver, r.id);
                skipped.push(r.id.as_str());
            }
            Verdict::Fail(why) => panic!("[{}] {}: {why}", r.driver, r.id),
        }
    }
    assert_eq!(skipped, ADAPTER_SKIPS.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    for (section, lines) in [("E", 1..=8), ("F", 1..=6), ("G", 1..=2), ("H", 1..=4)] {
        for n in lines {
            let prefix = format!("{section}{n}-");
            assert!(
                efh.iter().any(|r| r.id.starts_with(&prefix) && r.verdict == Verdict::Pass),
                "no {section}{n} case passed through the {} driver",
                efh.first().map_or("?", |r| r.driver)
            );
        }
    }
    report
}

/// The ids of the cases that passed.
fn passed(report: &Report) -> Vec<&str> {
    report.results.iter().filter(|r| r.verdict == Verdict::Pass).map(|r| r.id.as_str()).collect()
}

#[test]
fn every_e_f_g_h_case_passes_through_the_ureq_adapter_against_the_mock() {
    assert_every_e_f_g_h_case_passes(&mut ureq);
}

#[test]
fn the_async_adapter_passes_every_case_the_ureq_adapter_passes() {
    let of_async = assert_every_e_f_g_h_case_passes(&mut async_);
    let of_ureq = run_all(&mut ureq);
    let (by_async, by_ureq) = (passed(&of_async), passed(&of_ureq));
    let missing: Vec<&&str> = by_ureq.iter().filter(|id| !by_async.contains(id)).collect();
    assert!(missing.is_empty(), "passed through ureq, not through async: {missing:?}");
    // The seed's API exchanges and the client credentials cases run through both adapters.
    assert!(by_async.iter().filter(|id| id.starts_with("seed-")).count() >= 2, "{by_async:?}");
    assert!(by_async.iter().any(|id| id.starts_with("I1-")), "{by_async:?}");
}

#[test]
fn every_catalogue_line_of_sections_a_b_c_e_f_h_has_a_case() {
    let ids = fixture_files();
    let lines = [("A", 5), ("B", 7), ("C", 7), ("E", 8), ("F", 6), ("H", 5)];
    for (section, count) in lines {
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
    // The script drops the connection, the case expects a timeout: both drivers must tell them apart.
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
fn an_unknown_reference_fails_the_case() {
    let mut c = case("seed-domain-api-call");
    c.vars = BTreeMap::new();
    let err = check(&c, core().as_mut()).expect_err("${at1} is unknown");
    assert!(err.contains("at1"), "{err}");
}
