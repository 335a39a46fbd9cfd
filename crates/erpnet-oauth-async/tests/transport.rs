//! How bytes move: a client of your own through `HttpSend`, no redirects followed, bounded bodies,
//! timeouts that keep the tokens.

mod common;

use common::*;
use erpnet_oauth_async::{
    AuthorizationRequest, BoxFuture, Callback, Error, HttpOptions, HttpSend, ReqwestClient, Session,
};
use erpnet_oauth_mock::{Endpoint, Fault, Intercepted};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A client of one's own: counts the requests and the token requests, sends with reqwest.
struct Counting {
    inner: ReqwestClient,
    requests: Arc<AtomicU64>,
    token_requests: Arc<AtomicU64>,
}

impl HttpSend for Counting {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        limit: u64,
    ) -> BoxFuture<'_, Result<http::Response<Vec<u8>>, Error>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if request.uri().path() == "/id/connect/token" {
            self.token_requests.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.send(request, limit)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_of_ones_own_carries_every_request() {
    let mock = mock().await;
    let (requests, token_requests) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let counting = Counting {
        inner: ReqwestClient::new(&HttpOptions::default()).unwrap(),
        requests: requests.clone(),
        token_requests: token_requests.clone(),
    };
    let session =
        Session::builder(client(&mock)).http_client(counting).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    mock.advance_clock(Duration::from_secs(3600));
    session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    let c = mock.counters();
    // Code exchange + one refresh; JWKS once; two API calls.
    assert_eq!(token_requests.load(Ordering::SeqCst), c.token_requests);
    assert_eq!(c.token_requests, 2);
    assert_eq!(requests.load(Ordering::SeqCst), c.token_requests + c.jwks_fetches + c.api_calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_from_the_api_is_returned_not_followed() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    let before = mock.counters().api_calls;
    mock.set_interceptor(Some(Arc::new(|req: &http::Request<Vec<u8>>| {
        if req.uri().path() == "/api/domain/odata/Crm_Customers" {
            Intercepted::Respond(
                http::Response::builder()
                    .status(302)
                    .header("location", "http://127.0.0.1:9/elsewhere")
                    .body(Vec::new())
                    .unwrap(),
            )
        } else {
            Intercepted::Pass
        }
    })));
    // Handed back as the response (nothing listens on port 9: following it would be a connection error).
    let response = session.get("/api/domain/odata/Crm_Customers?$top=1").await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:9/elsewhere");
    assert_eq!(mock.counters().api_calls, before, "intercepted before the API handler");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_answer_larger_than_the_limit_is_refused_and_nothing_is_stored() {
    let mock = mock().await;
    let session = Session::builder(client(&mock))
        .http_options(HttpOptions::default().token_body_limit(64))
        .build()
        .await
        .unwrap();
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url()).await;
    let query = location.split_once('?').unwrap().1.to_owned();
    let err = session.finish_login(pending, Callback::Query(&query)).await.unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { limit: 64 }), "{err}");
    assert!(!session.is_logged_in());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_token_endpoint_times_out_and_the_tokens_are_kept() {
    let mock = mock().await;
    let session = Session::builder(client(&mock))
        .http_options(HttpOptions::default().timeout(Duration::from_millis(500)))
        .clock(mock_clock(&mock))
        .build()
        .await
        .unwrap();
    login(&mock, &session).await;
    mock.advance_clock(Duration::from_secs(3600));
    mock.inject_fault(Endpoint::Token, Fault::Hang, Some(1));
    let err = session.access_token().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.is_retryable());
    assert!(session.is_logged_in(), "the tokens are kept");
    session.access_token().await.unwrap();
    assert_eq!(mock.counters().refresh_token_grants, 1);
}
