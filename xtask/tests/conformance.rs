//! `cargo test` runs every conformance case, so CI cannot skip them.

use std::collections::BTreeMap;
use xtask::conformance::{self, CoreDriver, Driver, check, fixtures_dir, load};

fn core() -> Box<dyn Driver> {
    Box::new(CoreDriver::new())
}

/// Every `*.toml` in `fixtures/`, counted without the runner's help.
fn fixture_files() -> usize {
    std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ is listable")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count()
}

#[test]
fn every_case_passes_against_the_core() {
    let report = conformance::run(&fixtures_dir(), None, &mut core).expect("fixtures/ is readable");
    let files = fixture_files();
    assert!(files >= 55, "only {files} cases in fixtures/");
    assert!(
        report.results.len() >= files,
        "{} results for {files} fixture files: a case was skipped",
        report.results.len()
    );
    let lines = report.lines();
    assert_eq!(report.failed(), 0, "\n{}", lines.join("\n"));
    assert_eq!(lines.last().map(String::as_str), Some(format!("{files} passed, 0 failed").as_str()));
}

#[test]
fn every_catalogue_line_of_sections_a_b_c_e_f_has_a_case() {
    let report = conformance::run(&fixtures_dir(), None, &mut core).expect("fixtures/ is readable");
    let ids: Vec<&str> = report.results.iter().map(|(id, _)| id.as_str()).collect();
    let lines = [
        ("A", 5),
        ("B", 6), // B7 needs ID token signatures: it comes with that work.
        ("C", 7),
        ("E", 8),
        ("F", 6),
    ];
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
    let mut c = case("seed-domain-api-call");
    // The stored token differs from the one the case expects in the Authorization header.
    c.tokens.as_mut().expect("stored tokens").access_token = "not-the-token".to_owned();
    let err = check(&c, core().as_mut()).expect_err("the bearer header differs");
    assert!(err.contains("Authorization"), "{err}");
}

#[test]
fn a_request_missing_from_the_script_fails_the_case() {
    let mut c = case("seed-refresh-after-401");
    // Drop the refresh exchange: the client's refresh request is then unexpected.
    let step = c.steps.iter_mut().find(|s| s.get("do").and_then(|d| d.as_str()) == Some("api_call"));
    let wire = step.and_then(|s| s.get_mut("wire")).and_then(|w| w.as_array_mut()).expect("a wire");
    wire.remove(1);
    let err = check(&c, core().as_mut()).expect_err("the refresh is not scripted");
    assert!(err.contains("request 2"), "{err}");
}

#[test]
fn an_unknown_reference_fails_the_case() {
    let mut c = case("seed-domain-api-call");
    c.vars = BTreeMap::new();
    let err = check(&c, core().as_mut()).expect_err("${at1} is unknown");
    assert!(err.contains("at1"), "{err}");
}
