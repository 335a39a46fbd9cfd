//! The interceptor: scripted responses, dropped connections, hangs, and requests passed through to the
//! normal handlers; the admin path is never intercepted.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use erpnet_oauth_mock::{DEMO_CLIENT_ID, Endpoint, Fault, Intercepted, MockErpNet};

/// What the hook saw: method, path and query, a header, the body.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Vec<u8>)>>>;

fn install(mock: &MockErpNet, decide: impl Fn(&str) -> Intercepted + Send + Sync + 'static) -> Seen {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    mock.set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let header = req.headers().get("x-case").and_then(|v| v.to_str().ok()).map(str::to_owned);
        log.lock().unwrap().push((req.method().as_str().to_owned(), target, header, req.body().clone()));
        decide(req.uri().path())
    })));
    seen
}

#[test]
fn respond_answers_with_the_scripted_response_and_the_hook_sees_the_whole_request() {
    let mock = start();
    let seen = install(&mock, |_| {
        Intercepted::Respond(
            http::Response::builder()
                .status(409)
                .header("content-type", "application/json")
                .header("x-scripted", "yes")
                .body(br#"{"error":"scripted"}"#.to_vec())
                .unwrap(),
        )
    });
    let agent = agent();
    let r = read(
        agent
            .post(format!("{}/id/connect/token?x=1", mock.base_url()))
            .header("x-case", "respond")
            .content_type("application/x-www-form-urlencoded")
            .send("grant_type=refresh_token&refresh_token=rt-1"),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.header("x-scripted"), Some("yes"));
    assert_eq!(r.body, r#"{"error":"scripted"}"#);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (method, target, header, body) = &seen[0];
    assert_eq!((method.as_str(), target.as_str()), ("POST", "/id/connect/token?x=1"));
    assert_eq!(header.as_deref(), Some("respond"));
    assert_eq!(body, b"grant_type=refresh_token&refresh_token=rt-1");
    // The token endpoint never saw it.
    assert_eq!(mock.counters().token_requests, 0);
}

#[test]
fn drop_closes_the_connection_without_an_answer() {
    let mock = start();
    let seen = install(&mock, |_| Intercepted::Drop);
    let err = agent()
        .get(format!("{}/api/domain/odata/Crm_Customers", mock.base_url()))
        .call()
        .expect_err("no response comes");
    assert!(!matches!(err, ureq::Error::Timeout(_)), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the request is not retried by the server side");
}

#[test]
fn hang_never_answers() {
    let mock = start();
    let _seen = install(&mock, |_| Intercepted::Hang);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(300))).build().into();
    let err = agent.get(format!("{}/id/connect/userinfo", mock.base_url())).call().expect_err("no answer");
    assert!(matches!(err, ureq::Error::Timeout(_)), "{err:?}");
}

#[test]
fn pass_falls_through_to_the_normal_handlers_with_the_body_intact() {
    let mock = start();
    let seen = install(&mock, |path| {
        if path == "/api/domain/odata/Crm_Customers" {
            Intercepted::Respond(http::Response::builder().status(418).body(Vec::new()).unwrap())
        } else {
            Intercepted::Pass
        }
    });
    let agent = agent();
    // A real client-credentials grant: the form body must reach the token endpoint unchanged.
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", erpnet_oauth_mock::DEMO_SERVICE_CLIENT_ID),
            ("client_secret", erpnet_oauth_mock::DEMO_CLIENT_SECRET),
            ("scope", "DomainApi"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(mock.counters().token_requests, 1);
    // Faults apply to passed requests, after the hook.
    mock.inject_fault(Endpoint::Token, Fault::Status(503), Some(1));
    let r = post_form(
        &agent,
        &token_url(&mock),
        &[],
        &[("grant_type", "refresh_token"), ("client_id", DEMO_CLIENT_ID)],
    );
    assert_eq!(r.status, 503);
    // The intercepted path is answered by the hook even with a valid token.
    let r = get(
        &agent,
        &format!("{}/api/domain/odata/Crm_Customers", mock.base_url()),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(r.status, 418);
    assert_eq!(seen.lock().unwrap().len(), 3);
    // The admin path is never shown to the hook.
    let r = get(&agent, &format!("{}/_mock/counters", mock.base_url()), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(seen.lock().unwrap().len(), 3);
    // Removing the hook restores the normal handlers.
    mock.set_interceptor(None);
    let r = get(
        &agent,
        &format!("{}/api/domain/odata/Crm_Customers?$top=1", mock.base_url()),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen.lock().unwrap().len(), 3);
}
