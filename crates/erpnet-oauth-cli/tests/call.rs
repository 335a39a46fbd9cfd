//! `erpnet-oauth call METHOD URL`: the body on stdout, the 401 → refresh → retry path, and the Domain
//! API's errors as exit 4 with one line naming them.

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault};
use std::time::Duration;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers";

fn rows(o: &Outcome) -> usize {
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    json["value"].as_array().map(Vec::len).unwrap()
}

#[test]
fn call_prints_the_body_on_stdout() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=3")]));
    o.assert_success();
    assert!(o.stderr.is_empty(), "{o:#?}");
    assert_eq!(rows(&o), 3);
    assert!(o.stdout.ends_with('\n'));
    let c = h.mock().counters();
    assert_eq!((c.api_calls, c.api_ok, c.refresh_token_grants), (1, 1, 0));
}

#[test]
fn call_takes_headers_methods_in_any_case_and_absolute_urls() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&[
        "call",
        "get",
        &format!("{CUSTOMERS}?$top=2"),
        "--header",
        "Accept: application/json",
    ]));
    o.assert_success();
    assert_eq!(rows(&o), 2);
    let o = h.run(h.store_only(&[
        "call",
        "GET",
        &format!("{}{CUSTOMERS}?$top=4", h.instance()),
        "-H",
        "X-Test: 1",
    ]));
    o.assert_success();
    assert_eq!(rows(&o), 4);
    assert_eq!(h.mock().counters().api_ok, 2);
}

#[test]
fn expired_token_gets_401_then_one_refresh_and_one_retry() {
    let h = Harness::new();
    h.login();
    let rt0 = h.refresh_token().unwrap();
    h.mock().advance_clock(Duration::from_secs(3601));
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=3")]));
    o.assert_success();
    assert_eq!(rows(&o), 3);
    let c = h.mock().counters();
    assert_eq!((c.api_unauthorized, c.refresh_token_grants, c.api_ok), (1, 1, 1), "{c:#?}");
    assert_eq!(c.invalid_grant_errors, 0);
    assert_ne!(h.refresh_token().unwrap(), rt0, "the rotated refresh token was stored");
    // The next call uses the renewed token straight away.
    h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();
    let c = h.mock().counters();
    assert_eq!((c.api_unauthorized, c.refresh_token_grants), (1, 1));
}

#[test]
fn expired_token_with_a_revoked_grant_requires_login() {
    let h = Harness::new();
    h.login();
    h.mock().revoke_all_grants_of("admin");
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(3, &["invalid_grant", "erpnet-oauth login"]);
    assert!(o.stdout.is_empty());
    assert!(!h.token_file().exists());
}

#[test]
fn business_error_is_exit_4_with_the_message() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$filter=fail")]));
    o.assert_only_error(4, &["500", "The operation failed on purpose"]);
    assert_eq!(h.mock().counters().api_business_errors, 1);
}

#[test]
fn missing_domain_api_scope_is_exit_4_naming_the_scope() {
    let h = Harness::new();
    h.login_with(h.cli(&["--scope", "openid profile offline_access", "login", "--no-browser"]));
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(4, &["403", "DomainApi"]);
    let c = h.mock().counters();
    assert_eq!((c.api_forbidden, c.refresh_token_grants), (1, 0), "a 403 is not refreshed: {c:#?}");
}

#[test]
fn rate_limiting_is_exit_4_with_the_delay() {
    let h = Harness::new();
    h.login();
    h.mock().inject_fault(Endpoint::DomainApi, Fault::RateLimited { retry_after_secs: 7 }, Some(1));
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(4, &["429", "7 s"]);
}

#[test]
fn api_hanging_is_a_network_error() {
    let h = Harness::new();
    h.login();
    h.mock().inject_fault(Endpoint::DomainApi, Fault::Hang, Some(1));
    h.run(h.store_only(&["--timeout", "1", "call", "GET", CUSTOMERS])).assert_only_error(5, &["timed out"]);
}

#[test]
fn bad_call_arguments_are_usage_errors() {
    let h = Harness::new();
    h.login();
    h.run(h.store_only(&["call", "GET", CUSTOMERS, "-H", "no colon"])).assert_only_error(2, &["Name: value"]);
    h.run(h.store_only(&["call", "GET", CUSTOMERS, "-H", "Authorization: Bearer x"]))
        .assert_only_error(2, &["Authorization"]);
    h.run(h.store_only(&["call", "GE T", CUSTOMERS])).assert_only_error(2, &["HTTP method"]);
    // Plain http to another host is refused (and never sent).
    h.run(h.store_only(&["call", "GET", "http://demodb.invalid/api/domain/odata/Crm_Customers"]))
        .assert_only_error(2, &[]);
    assert_eq!(h.mock().counters().api_calls, 0);
}

#[test]
fn a_missing_entity_set_is_exit_4() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["call", "GET", "/api/domain/odata/No_Such_Set"]));
    o.assert_only_error(4, &[]);
}

#[test]
fn the_token_is_never_sent_to_another_origin() {
    let h = Harness::new();
    h.login();
    // Another server on loopback, recording whatever reaches it.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    other.set_nonblocking(true).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/api/domain/odata/Crm_Customers"),
        format!("http://localhost:{}/api/domain/odata/Crm_Customers", h.mock().addr().port()),
        "https://example.com/api/domain/odata/Crm_Customers".to_owned(),
    ] {
        let o = h.run(h.store_only(&["call", "GET", &url]));
        o.assert_only_error(2, &["not on the instance"]);
        assert!(o.stdout.is_empty());
    }
    assert!(other.accept().is_err(), "nothing connected to the other server");
    assert_eq!(h.mock().counters().api_calls, 0);
}
