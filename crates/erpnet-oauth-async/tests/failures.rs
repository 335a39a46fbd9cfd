//! Failure paths: a rejected refresh token, a failing token endpoint, a cancelled caller.

mod common;

use common::*;
use erpnet_oauth_async::{Error, MemoryStore, RefreshError, Session, TokenStore};
use erpnet_oauth_core::LoginRequired;
use erpnet_oauth_mock::{DEMO_USER, Endpoint, Fault};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn invalid_grant_requires_a_login_and_clears_the_store() {
    let mock = mock().await;
    let store = Arc::new(MemoryStore::new());
    let session =
        Session::builder(client(&mock)).store(store.clone()).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    mock.revoke_all_grants_of(DEMO_USER);
    mock.advance_clock(Duration::from_secs(3600));

    let err = session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap_err();
    assert!(err.is_login_required(), "{err}");
    assert!(
        matches!(&err, Error::Refresh(RefreshError::LoginRequired(LoginRequired::Rejected(e))) if e.is("invalid_grant")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(!session.is_logged_in());
    assert!(store.load().await.unwrap().is_none(), "the store was cleared");
    assert_eq!(mock.counters().invalid_grant_errors, 1);
    // Later calls fail at once, without another request.
    assert!(session.access_token().await.unwrap_err().is_login_required());
    assert_eq!(mock.counters().token_requests, 2, "the code exchange and the one refresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_on_refresh_keeps_the_tokens_and_is_retryable() {
    let mock = mock().await;
    let store = Arc::new(MemoryStore::new());
    let session =
        Session::builder(client(&mock)).store(store.clone()).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    let before = session.tokens().unwrap();
    mock.advance_clock(Duration::from_secs(3600));
    mock.inject_fault(Endpoint::Token, Fault::Status(503), Some(1));

    let err = session.access_token().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.is_login_required());
    let kept = session.tokens().expect("the tokens are kept");
    assert_eq!(
        kept.refresh_token.as_ref().map(|t| t.secret()),
        before.refresh_token.as_ref().map(|t| t.secret())
    );
    assert!(store.load().await.unwrap().is_some());

    // The next call refreshes (the fault is spent).
    session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    assert_eq!(mock.counters().refresh_token_grants, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_on_refresh_is_a_retryable_transport_error() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    mock.advance_clock(Duration::from_secs(3600));
    mock.inject_fault(Endpoint::Token, Fault::DropConnection, Some(1));
    let err = session.access_token().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(session.is_logged_in());
    session.access_token().await.unwrap();
    assert_eq!(mock.counters().refresh_token_grants, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_caller_does_not_wedge_the_refresh() {
    // The task that picked up the refresh is cancelled while the token endpoint is slow; the refresh runs
    // on in its own task, and the next caller gets the new token without a second refresh.
    let mock = mock().await;
    let session = Session::builder(client(&mock)).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    mock.advance_clock(Duration::from_secs(3600));
    mock.inject_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(300)), Some(1));
    let cancelled = tokio::time::timeout(Duration::from_millis(50), session.access_token()).await;
    assert!(cancelled.is_err(), "the first caller gave up while the refresh was under way");
    let token = tokio::time::timeout(Duration::from_secs(20), session.access_token())
        .await
        .expect("the second caller is not left waiting")
        .unwrap();
    assert!(!token.secret().is_empty());
    assert_eq!(mock.counters().refresh_token_grants, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_error_is_returned_typed() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    let err = session.get("/api/domain/odata/Crm_Customers?$filter=fail").await.unwrap_err();
    assert!(matches!(err, Error::Api(_)), "{err}");
    assert!(!err.is_retryable(), "a business error is not retried");
    // Neither the session's nor the tokens' Debug shows a token.
    let tokens = session.tokens().unwrap();
    let shown = format!("{session:?} {tokens:?} {err:?}");
    assert!(!shown.contains(tokens.access_token.secret()));
    assert!(!shown.contains(tokens.refresh_token.as_ref().unwrap().secret()));
}

#[tokio::test(flavor = "multi_thread")]
async fn send_any_status_hands_back_the_error_body() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    let url = format!("{}/api/domain/odata/Crm_Customers?$filter=fail", mock.base_url());
    let response = session.send_any_status(http::Request::get(url).body(Vec::new()).unwrap()).await.unwrap();
    assert_eq!(response.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["code"], "TestFailure");
    assert!(erpnet_oauth_core::check_api_response(&response).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_never_sent_to_another_origin() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    let before = mock.counters().api_calls;
    let other = format!("http://localhost:{}/api/domain/odata/Crm_Customers", mock.addr().port());
    let err = session.get(&other).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(mock.counters().api_calls, before, "nothing was sent");
}
