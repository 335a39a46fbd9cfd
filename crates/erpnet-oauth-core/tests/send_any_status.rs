//! `SendRequest::any_status`: the final response of an API call is handed back whatever its status, body
//! included, and `check_api_response` gives the error `SendRequest::new` would have returned (canned
//! responses: the core's own tests).

#![allow(clippy::result_large_err)] // the core's Error is large on purpose (unboxed phase errors)

use erpnet_oauth_core::{
    AccessToken, ApiError, ClientConfig, Error, Input, ManagerOptions, Operation, RefreshToken, Scopes,
    SendRequest, Step, TokenManager, TokenSet, check_api_response, http,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INSTANCE: &str = "https://demodb.my.erp.net";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_655_057_724)
}

fn manager() -> TokenManager {
    let client = ClientConfig::builder(INSTANCE, "my.trusted.app/first").build().unwrap();
    let tokens = TokenSet {
        access_token: AccessToken::new("at-0"),
        expires_at: Some(now() + Duration::from_secs(3600)),
        issued_at: Some(now()),
        refresh_token: Some(RefreshToken::new("rt-0")),
        id_token: None,
        scopes: Scopes::erpnet_default(),
    };
    TokenManager::new(Arc::new(client), Some(tokens), ManagerOptions::default())
}

fn request() -> http::Request<Vec<u8>> {
    let mut r = http::Request::new(Vec::new());
    *r.uri_mut() = format!("{INSTANCE}/api/domain/odata/Crm_Customers").parse().unwrap();
    r
}

fn answer(status: u16, body: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(body.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// Drives `op` through its one send, answered with `response`; returns what it ended with.
fn run(mut op: SendRequest, response: http::Response<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
    let mut m = manager();
    match op.step(&mut m, None, now()) {
        Step::Send { request, .. } => {
            assert_eq!(request.headers()[http::header::AUTHORIZATION], "Bearer at-0");
        }
        _ => panic!("the first step sends the request"),
    }
    match op.step(&mut m, Some(Input::Response(response)), now()) {
        Step::Done(result) => result,
        _ => panic!("a non-401 answer ends the call"),
    }
}

#[test]
fn an_error_status_comes_back_with_its_body() {
    let business = r#"{"message":"The operation failed on purpose.","code":"TestFailure"}"#;
    for (status, body) in [(500, business), (403, "{}"), (404, "not here"), (429, "")] {
        let response = run(SendRequest::new(request()).any_status(), answer(status, body)).unwrap();
        assert_eq!((response.status().as_u16(), response.body().as_slice()), (status, body.as_bytes()));
        // The same error as without `any_status`.
        let plain = run(SendRequest::new(request()), answer(status, body)).unwrap_err();
        match plain {
            Error::Api(e) => assert_eq!(check_api_response(&response), Err(e)),
            other => panic!("{status}: {other:?}"),
        }
    }
    let business = check_api_response(&answer(500, business)).unwrap_err();
    assert!(matches!(business, ApiError::Business { status: 500, .. }), "{business:?}");
}

#[test]
fn a_success_is_unchanged() {
    let response = run(SendRequest::new(request()).any_status(), answer(200, r#"{"value":[]}"#)).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), br#"{"value":[]}"#);
}

#[test]
fn the_token_is_still_never_sent_elsewhere() {
    let mut elsewhere = request();
    *elsewhere.uri_mut() = "https://attacker.example/api/domain/odata/Crm_Customers".parse().unwrap();
    let mut op = SendRequest::new(elsewhere).any_status();
    match op.step(&mut manager(), None, now()) {
        Step::Done(Err(Error::Config(_))) => {}
        _ => panic!("a request to another origin is refused before anything is sent"),
    }
}
