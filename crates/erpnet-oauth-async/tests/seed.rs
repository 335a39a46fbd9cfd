//! The seed document end to end against the mock, over real HTTP: login, Domain API call, expiry,
//! renewal with the refresh token, userinfo, logout with revocation; the file store; client credentials.

mod common;

use common::*;
use erpnet_oauth_async::{
    AuthorizationRequest, Callback, Error, FileStore, MemoryStore, Revocation, Session, TokenStore,
};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn login_call_expire_refresh_userinfo_logout() {
    let mock = mock().await;
    let store = Arc::new(MemoryStore::new());
    let session = Session::builder(client(&mock)).store(store.clone()).build().await.unwrap();
    assert!(!session.is_logged_in());

    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url()).await;
    let query = location.split_once('?').unwrap().1.to_owned();
    let logged_in = session.finish_login(pending, Callback::Query(&query)).await.unwrap();
    let claims = logged_in.claims.expect("the ID token was verified");
    assert_eq!(claims.sub, erpnet_oauth_mock::DEMO_USER);
    assert!(store.load().await.unwrap().is_some(), "the tokens are stored");
    let c = mock.counters();
    assert_eq!((c.authorization_code_grants, c.jwks_fetches), (1, 1));

    let response = session.get("/api/domain/odata/Crm_Customers?$top=10").await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["value"].as_array().map(Vec::len), Some(10));

    // The access token expires at the mock: the 401 leads to one refresh and one retry.
    let first_refresh = session.tokens().unwrap().refresh_token.unwrap().secret().to_owned();
    mock.advance_clock(Duration::from_secs(3600));
    let response = session.get("/api/domain/odata/Crm_Customers?$top=2").await.unwrap();
    assert_eq!(response.status(), 200);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1);
    assert_eq!(c.api_unauthorized, 1);
    let stored = store.load().await.unwrap().unwrap();
    assert_ne!(stored.refresh_token.unwrap().secret(), first_refresh, "the rotated token is stored");

    let info = session.userinfo().await.unwrap();
    assert_eq!(info.sub, erpnet_oauth_mock::DEMO_USER);

    let logout = session.logout().await.unwrap();
    assert!(logout.had_tokens);
    assert!(matches!(logout.revocation, Revocation::Revoked), "{:?}", logout.revocation);
    assert_eq!(mock.counters().grants_revoked, 1);
    assert!(!session.is_logged_in());
    assert!(store.load().await.unwrap().is_none());
    let err = session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap_err();
    assert!(err.is_login_required(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_store_keeps_the_login_across_sessions_with_mode_0600() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let session = Session::builder(client(&mock))
        .store(FileStore::new(&path))
        .clock(mock_clock(&mock))
        .build()
        .await
        .unwrap();
    login(&mock, &session).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\": 1"), "the blocking adapter's format");

    // A second session (another process, say) on the same file: already logged in; it refreshes after
    // expiry, and the first session adopts what it stored instead of sending its revoked refresh token.
    let second = Session::builder(client(&mock))
        .store(FileStore::new(&path))
        .clock(mock_clock(&mock))
        .build()
        .await
        .unwrap();
    assert!(second.is_logged_in());
    mock.advance_clock(Duration::from_secs(3600));
    second.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh for both");
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.refresh_token_reuses, 0);

    // A corrupt file is an error, not an empty store.
    std::fs::write(&path, b"{ not json").unwrap();
    let err = Session::builder(client(&mock)).store(FileStore::new(&path)).build().await.unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_without_login() {
    let mock = mock().await;
    let session = service_session(&mock).await;
    let response = session.get("/api/domain/odata/Crm_Customers?$top=3").await.unwrap();
    assert_eq!(response.status(), 200);
    mock.advance_clock(Duration::from_secs(3600));
    session.get("/api/domain/odata/Crm_Customers?$top=3").await.unwrap();
    let c = mock.counters();
    assert_eq!(c.client_credentials_grants, 2);
    assert_eq!(c.refresh_token_grants, 0);
    assert!(session.tokens().unwrap().refresh_token.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_state_is_refused_and_nothing_is_stored() {
    let mock = mock().await;
    let store = Arc::new(MemoryStore::new());
    let session = Session::builder(client(&mock)).store(store.clone()).build().await.unwrap();
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url()).await;
    let query = location.split_once('?').unwrap().1.replace("state=", "state=x");
    let err = session.finish_login(pending, Callback::Query(&query)).await.unwrap_err();
    assert!(matches!(err, Error::Callback(_)), "{err}");
    assert_eq!(mock.counters().authorization_code_grants, 0, "the code was not exchanged");
    assert!(store.load().await.unwrap().is_none());
}
