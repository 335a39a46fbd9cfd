//! Failure paths through the adapter against the mock (catalogue E5, E6, E8, F2, F3, F5, F6, H1-H3) and a
//! tiny loopback server for what the mock cannot send (a 50 MB body, a redirect from the token endpoint).

#![allow(clippy::result_large_err)] // the crate's Error is large on purpose (unboxed core errors)

mod common;

use common::*;
use erpnet_oauth_core::{ApiError, RefreshToken, Scopes, TokenError};
use erpnet_oauth_mock::{DEMO_CLIENT_SECRET, DEMO_USER, Endpoint, Fault};
use erpnet_oauth_ureq::{
    AccessToken, AuthorizationRequest, Callback, ClientConfig, ClientSecret, Error, FileStore, HttpOptions,
    MemoryStore, RefreshError, RetryAfter, Session, StoreError, TokenSet, TokenStore,
};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=1";

fn logged_in(store: impl TokenStore + 'static) -> (Arc<erpnet_oauth_mock::MockErpNet>, Session) {
    let mock = mock();
    let session =
        Session::builder(client(&mock, REDIRECT_URI)).store(store).clock(mock_clock(&mock)).build().unwrap();
    login(&mock, &session);
    mock.reset_counters();
    (mock, session)
}

#[test]
fn invalid_grant_means_login_required_and_clears_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (mock, session) = logged_in(FileStore::new(&path));
    mock.revoke_all_grants_of(DEMO_USER);
    mock.advance_clock(Duration::from_secs(3601));
    let e = session.get(CUSTOMERS).unwrap_err();
    assert!(e.is_login_required(), "{e}");
    assert!(!e.is_retryable());
    assert!(matches!(e, Error::Refresh(RefreshError::LoginRequired(_))));
    assert_eq!(FileStore::new(&path).load().unwrap(), None, "the store was cleared");
    assert!(!path.exists());
    assert!(!session.is_logged_in());
    // Not retried: the next call needs a login and sends nothing.
    assert!(session.get(CUSTOMERS).unwrap_err().is_login_required());
    let c = mock.counters();
    assert_eq!((c.invalid_grant_errors, c.token_requests, c.api_calls), (1, 1, 0));
}

#[test]
fn server_errors_on_refresh_keep_the_tokens_and_are_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let mock = mock();
    let session = Session::builder(client(&mock, REDIRECT_URI))
        .store(FileStore::new(&path))
        .clock(mock_clock(&mock))
        .http_options(HttpOptions::default().timeout(Duration::from_millis(500)))
        .build()
        .unwrap();
    login(&mock, &session);
    let original = session.tokens().unwrap();
    mock.advance_clock(Duration::from_secs(3601));

    type Expect = fn(&Error) -> bool;
    let faults: [(Fault, Expect); 4] = [
        (Fault::Status(503), |e| {
            matches!(e, Error::Refresh(RefreshError::Token(TokenError::Http { status: 503, .. })))
        }),
        (Fault::DropConnection, |e| matches!(e, Error::Io(_) | Error::Http(_) | Error::Connect(_))),
        (Fault::Hang, |e| matches!(e, Error::Timeout(_))),
        (Fault::RateLimited { retry_after_secs: 3 }, |e| {
            matches!(
                e,
                Error::Refresh(RefreshError::Token(
                    TokenError::OAuth { status: 429, .. } | TokenError::Http { status: 429, .. }
                ))
            )
        }),
    ];
    for (fault, expected) in faults {
        mock.inject_fault(Endpoint::Token, fault.clone(), Some(1));
        let e = session.get(CUSTOMERS).unwrap_err();
        assert!(expected(&e), "{fault:?}: {e:?}");
        assert!(e.is_retryable(), "{fault:?}: {e}");
        assert!(!e.is_login_required());
        assert_eq!(session.tokens().as_ref(), Some(&original), "{fault:?}: the tokens are kept");
        assert_eq!(FileStore::new(&path).load().unwrap().as_ref(), Some(&original));
    }
    // The server is back: the next call refreshes and succeeds.
    assert_eq!(session.get(CUSTOMERS).unwrap().status(), 200);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1);
    assert_eq!(c.invalid_grant_errors, 0);
    let renewed = FileStore::new(&path).load().unwrap().unwrap();
    assert_ne!(renewed.refresh_token, original.refresh_token);

    // A malformed 200 is not retryable, and it spends the refresh token that was sent (catalogue E10: a
    // rotating server has revoked it): the access token is kept, the refresh token is never sent again,
    // and with no readable new one in the answer the next renewal needs a login.
    mock.advance_clock(Duration::from_secs(3601));
    mock.inject_fault(Endpoint::Token, Fault::MalformedBody, Some(1));
    let e = session.get(CUSTOMERS).unwrap_err();
    assert!(matches!(e, Error::Refresh(RefreshError::Token(TokenError::Malformed { .. }))), "{e:?}");
    assert!(!e.is_retryable());
    let kept = session.tokens().unwrap();
    assert_eq!((&kept.access_token, &kept.refresh_token), (&renewed.access_token, &None));
    assert_eq!(FileStore::new(&path).load().unwrap().as_ref(), Some(&kept), "stored before the error");
    let e = session.get(CUSTOMERS).unwrap_err();
    assert!(e.is_login_required(), "{e:?}");
    assert_eq!(mock.counters().refresh_token_grants, 1, "the spent refresh token was not sent again");
}

#[test]
fn api_errors_are_typed() {
    let (mock, session) = logged_in(MemoryStore::new());

    // F5: 429 with Retry-After.
    mock.inject_fault(Endpoint::DomainApi, Fault::RateLimited { retry_after_secs: 7 }, Some(1));
    let e = session.get(CUSTOMERS).unwrap_err();
    assert_eq!(e.retry_after(), Some(RetryAfter::Delay(Duration::from_secs(7))), "{e:?}");
    assert!(e.is_retryable());

    // F6: a business error (HTTP 500 with a JSON body).
    match session.get("/api/domain/odata/Crm_Customers?$filter=fail") {
        Err(Error::Api(ApiError::Business { status: 500, error })) => assert!(!error.message.is_empty()),
        other => panic!("expected a business error, got {other:?}"),
    }

    // F2: 401, one refresh, one retry, then the second 401 is returned: no loop.
    mock.inject_fault(Endpoint::DomainApi, Fault::Status(401), Some(2));
    assert!(matches!(session.get(CUSTOMERS), Err(Error::Api(ApiError::Unauthorized { .. }))));
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.faults_applied), (1, 3));
    assert_eq!(session.get(CUSTOMERS).unwrap().status(), 200);
}

#[test]
fn send_any_status_hands_back_the_error_body_after_the_one_retry() {
    let (mock, session) = logged_in(MemoryStore::new());
    let request =
        |url: &str| http::Request::get(format!("{}{url}", mock.base_url())).body(Vec::new()).unwrap();
    // A business error: the body comes back, and it classifies as `send` would have said.
    let response = session.send_any_status(request("/api/domain/odata/Crm_Customers?$filter=fail")).unwrap();
    assert_eq!(response.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["code"], "TestFailure");
    assert!(matches!(
        erpnet_oauth_core::check_api_response(&response),
        Err(ApiError::Business { status: 500, .. })
    ));
    // A 401: one refresh and one retry, then the second 401 comes back as a response.
    mock.inject_fault(Endpoint::DomainApi, Fault::Status(401), Some(2));
    let response = session.send_any_status(request(CUSTOMERS)).unwrap();
    assert_eq!(response.status(), 401);
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.faults_applied, c.api_business_errors), (1, 2, 1));
    // A success is unchanged.
    assert_eq!(session.send_any_status(request(CUSTOMERS)).unwrap().status(), 200);
}

#[test]
fn insufficient_scope_is_not_refreshed() {
    let mock = mock();
    let session = Session::builder(client(&mock, REDIRECT_URI)).clock(mock_clock(&mock)).build().unwrap();
    let pending =
        session.start_login(AuthorizationRequest::new().scope("openid profile offline_access")).unwrap();
    let location = browser_login(&mock, pending.authorize_url());
    session.finish_login(pending, Callback::Url(&location)).unwrap();
    match session.get(CUSTOMERS) {
        Err(Error::Api(ApiError::Forbidden { .. })) => {}
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(mock.counters().refresh_token_grants, 0);
    assert_eq!(mock.counters().api_forbidden, 1);
}

#[test]
fn proactive_refresh_within_the_skew() {
    let (mock, session) = logged_in(MemoryStore::new());
    mock.advance_clock(Duration::from_secs(3600 - 30));
    assert_eq!(session.get(CUSTOMERS).unwrap().status(), 200);
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.api_unauthorized, c.api_ok), (1, 0, 1));
}

/// A store whose writes fail while `failing` is set.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
}

impl TokenStore for FlakyStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.inner.load()
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Other("disk full".to_owned()));
        }
        self.inner.save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear()
    }
}

#[test]
fn a_store_that_cannot_be_written_is_an_error_the_caller_sees() {
    let store = Arc::new(FlakyStore::default());
    let (mock, session) = logged_in(store.clone());
    store.failing.store(true, Ordering::SeqCst);
    mock.advance_clock(Duration::from_secs(3601));
    let e = session.get(CUSTOMERS).unwrap_err();
    assert!(matches!(e, Error::Refresh(RefreshError::Persist(_))), "{e:?}");
    assert!(!e.is_login_required());
    // The new tokens are kept in memory (the server already revoked the old ones): calls go on.
    assert_eq!(session.get(CUSTOMERS).unwrap().status(), 200);
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (1, 0));

    // A failed save after a login is reported too.
    let e = session.start_login(AuthorizationRequest::new()).and_then(|pending| {
        let location = browser_login(&mock, pending.authorize_url());
        session.finish_login(pending, Callback::Url(&location))
    });
    assert!(matches!(e, Err(Error::Store(StoreError::Other(_)))), "{e:?}");
}

#[test]
fn a_file_store_whose_directory_is_gone_sends_no_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    let (mock, session) = logged_in(FileStore::new(sub.join("tokens.json")));
    let before = session.tokens();
    // (Permission bits do not stop root, so the directory is removed instead of made read-only.)
    std::fs::remove_dir_all(&sub).unwrap();
    mock.advance_clock(Duration::from_secs(3601));
    let e = session.get(CUSTOMERS).unwrap_err();
    assert!(matches!(e, Error::Store(StoreError::Io { .. })), "{e:?}");
    // The refresh token was not spent on a refresh whose result could not be stored.
    assert_eq!(mock.counters().token_requests, 0);
    assert_eq!(session.tokens(), before);
}

#[test]
fn a_corrupt_store_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let garbage = br#"{"version":1,"tokens":{"access_token":"secret-looking-AT-123","expires_at":"x"}"#;
    std::fs::write(&path, garbage).unwrap();
    let mock = mock();
    let e = Session::builder(client(&mock, REDIRECT_URI)).store(FileStore::new(&path)).build().unwrap_err();
    assert!(matches!(e, Error::Store(StoreError::Corrupt { .. })), "{e:?}");
    assert!(!e.to_string().contains("secret-looking"), "{e}");
    assert!(!format!("{e:?}").contains("secret-looking"));
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file is untouched");
}

#[test]
fn logout_revokes_the_refresh_token_and_clears_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (mock, session) = logged_in(FileStore::new(&path));
    let logout = session.logout().unwrap();
    assert!(logout.had_tokens);
    assert!(matches!(logout.revocation, erpnet_oauth_ureq::Revocation::Revoked), "{logout:?}");
    assert_eq!(mock.counters().revocations, 1);
    assert!(!path.exists());
    assert!(session.get(CUSTOMERS).unwrap_err().is_login_required());
    assert!(session.refresh().unwrap_err().is_login_required());
    assert_eq!(mock.counters().token_requests, 0);
}

#[test]
fn logout_deletes_locally_when_revocation_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let (mock, session) = logged_in(FileStore::new(&path));
    mock.inject_fault(Endpoint::Revocation, Fault::Status(503), None);
    let logout = session.logout().unwrap();
    match &logout.revocation {
        erpnet_oauth_ureq::Revocation::Failed(e) => assert!(e.is_retryable(), "{e}"),
        other => panic!("expected a failed revocation, got {other:?}"),
    }
    assert!(!path.exists());
    assert!(!session.is_logged_in());
}

#[test]
fn no_secret_in_debug_or_errors() {
    let (mock, session) = logged_in(MemoryStore::new());
    let tokens = session.tokens().unwrap();
    let access = tokens.access_token.secret().to_owned();
    let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
    mock.revoke_all_grants_of(DEMO_USER);
    mock.advance_clock(Duration::from_secs(3601));
    let e = session.get(CUSTOMERS).unwrap_err();
    for text in [format!("{session:?}"), format!("{tokens:?}"), format!("{e:?}"), e.to_string()] {
        for secret in [access.as_str(), refresh.as_str(), DEMO_CLIENT_SECRET] {
            assert!(!text.contains(secret), "a secret leaked into {text}");
        }
    }
}

#[test]
fn connection_failures_are_typed() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (session, _) = tiny_session(port);
    let e = session.get("/api/domain/odata/Crm_Customers").unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
    assert!(e.is_retryable());
}

/// A session with fake tokens for a client of `http://127.0.0.1:{port}`.
fn tiny_session(port: u16) -> (Session, TokenSet) {
    let client = ClientConfig::builder(&format!("http://127.0.0.1:{port}"), "my.trusted.app/first")
        .client_secret(ClientSecret::new("s"))
        .build()
        .unwrap();
    let tokens = TokenSet {
        access_token: AccessToken::new("at"),
        expires_at: None,
        issued_at: None,
        refresh_token: Some(RefreshToken::new("rt")),
        id_token: None,
        scopes: Scopes::default(),
    };
    (Session::builder(client).store(MemoryStore::with_tokens(tokens.clone())).build().unwrap(), tokens)
}

/// A one-purpose HTTP server: answers every request with `head`, then (if `stream_bytes` > 0) that many
/// zero bytes of body or until the client hangs up. Counts requests and body bytes sent.
fn tiny_server(head: String, stream_bytes: u64) -> (u16, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, s) = (requests.clone(), sent.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![0u8; 64 * 1024];
            let mut left = stream_bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64);
                if stream.write_all(&chunk[..n as usize]).is_err() {
                    break;
                }
                s.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
        }
    });
    (port, requests, sent)
}

#[test]
fn a_fifty_megabyte_token_response_is_refused_with_bounded_memory() {
    const FIFTY_MB: u64 = 50 * 1024 * 1024;
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n");
    let (port, requests, sent) = tiny_server(head, FIFTY_MB);
    let (session, tokens) = tiny_session(port);
    let e = session.refresh().unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { limit: 1_048_576 }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(session.tokens(), Some(tokens), "the tokens are kept");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(sent.load(Ordering::SeqCst) < FIFTY_MB, "the client stopped reading at the limit");
}

#[test]
fn a_redirect_from_the_token_endpoint_is_not_followed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let head =
        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/steal\r\nContent-Length: 0\r\n\r\n");
    let (port, requests, _) = tiny_server(head, 0);
    let (session, tokens) = tiny_session(port);
    let e = session.refresh().unwrap_err();
    assert!(matches!(e, Error::Refresh(RefreshError::Token(TokenError::Redirect { status: 302 }))), "{e:?}");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "the Location was not requested");
    assert_eq!(session.tokens(), Some(tokens));
}

#[test]
fn request_targets_resolve_against_the_instance() {
    let (mock, session) = logged_in(MemoryStore::new());
    // A path, an absolute URL, and a query that needs encoding all reach the Domain API.
    assert_eq!(session.get(CUSTOMERS).unwrap().status(), 200);
    assert_eq!(session.get(&format!("{}{CUSTOMERS}", mock.base_url())).unwrap().status(), 200);
    assert_eq!(session.get("api/domain/odata/Crm_Customers?$top=2&$skip=1").unwrap().status(), 200);
    // H4: plain http to a host that is not a loopback address is refused before anything is sent.
    assert!(matches!(
        session.get("http://example.com/api/domain/odata/Crm_Customers"),
        Err(Error::Config(_))
    ));
    assert_eq!(mock.counters().api_ok, 3);
    assert_eq!(mock.counters().api_calls, 3);
}

#[test]
fn the_access_token_is_never_sent_to_another_origin() {
    let (mock, session) = logged_in(MemoryStore::new());
    let elsewhere = common::mock();
    let request = http::Request::get(format!("{}/api/domain/odata/Crm_Customers", elsewhere.base_url()))
        .body(Vec::new())
        .unwrap();
    match session.send(request) {
        Err(Error::Config(erpnet_oauth_core::ConfigError::ForeignOrigin { .. })) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(elsewhere.counters().api_calls, 0, "nothing reached the other server");
    assert_eq!(mock.counters().token_requests, 0);
}
