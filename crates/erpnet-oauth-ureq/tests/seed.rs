//! The seed document, end to end, through the adapter and the loopback redirect listener.
#![allow(clippy::result_large_err)] // the crate's Error is large on purpose (unboxed core errors)

mod common;

use common::*;
use erpnet_oauth_core::CallbackError;
use erpnet_oauth_ureq::{
    AuthorizationRequest, Callback, ClientConfig, Error, LoginOutcome, ReceivedCallback, RedirectListener,
    ResponseMode, Session,
};
use std::time::Duration;

#[test]
fn seed_end_to_end_with_the_loopback_listener() {
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").unwrap();
    let redirect_uri = listener.redirect_uri().to_owned();
    assert_ne!(redirect_uri, "http://127.0.0.1:0/signin-callback", "the chosen port is named");
    let mock = mock_allowing(&[&redirect_uri]);
    // The session's clock is the system clock: the mock's expiry shows up as a 401, as in the seed.
    let session = Session::new(client(&mock, &redirect_uri)).unwrap();

    // Authorize endpoint: the browser fills in the login form; the mock redirects to the listener.
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    assert!(pending.authorize_url().starts_with(&format!("{}/id/connect/authorize?", mock.base_url())));
    let location = browser_login(&mock, pending.authorize_url());
    assert!(location.starts_with(&redirect_uri));
    let browser_thread = std::thread::spawn(move || {
        let mut page = browser().get(&location).call().unwrap();
        (page.status(), page.body_mut().read_to_string().unwrap())
    });
    let callback = listener.wait(&pending).unwrap();
    assert!(matches!(callback, ReceivedCallback::Query(_)));

    // Token endpoint: the code is exchanged once.
    let login = session.finish_login(pending, callback.as_callback()).unwrap();
    // The browser's page comes once the login ended, and says how.
    listener.reply(LoginOutcome::LoggedIn { user: login.claims.as_ref().map(|c| c.sub.as_str()) });
    let (status, page) = browser_thread.join().unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Logged in as admin."), "{page}");
    // The ID token was verified against the mock's JWKS (fetched once).
    assert_eq!(login.claims.as_ref().map(|c| c.sub.as_str()), Some("admin"));
    assert_eq!(mock.counters().jwks_fetches, 1);
    let tokens = login.tokens;
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.id_token.is_some());
    let first_refresh_token = tokens.refresh_token.clone();

    // Authorized Domain API call.
    let response = session.get("/api/domain/odata/Crm_Customers?$top=10").unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["value"].as_array().map(Vec::len), Some(10));

    // An hour later: 401, one refresh (rotation), one retry.
    mock.advance_clock(Duration::from_secs(3601));
    let response = session.get("/api/domain/odata/Crm_Customers?$top=10").unwrap();
    assert_eq!(response.status(), 200);
    let c = mock.counters();
    assert_eq!(c.authorization_code_grants, 1);
    assert_eq!(c.refresh_token_grants, 1);
    assert_eq!(c.api_unauthorized, 1);
    assert_eq!(c.api_ok, 2);
    assert_eq!(c.api_calls, 3);
    assert_ne!(session.tokens().unwrap().refresh_token, first_refresh_token, "the refresh token rotated");

    // And again: the rotated refresh token is used, the old one never again.
    mock.advance_clock(Duration::from_secs(3601));
    assert_eq!(session.get("/api/domain/odata/Crm_Customers?$top=1").unwrap().status(), 200);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 2);
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.refresh_token_reuses, 0);
    assert_eq!(c.token_errors, 0);
}

#[test]
fn the_listener_ignores_other_paths_and_takes_form_post_bodies() {
    let listener = RedirectListener::bind("http://localhost:0/signin-callback").unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let redirect_uri = listener.redirect_uri().to_owned();
    assert!(redirect_uri.starts_with("http://localhost:"));
    let mock = mock_allowing(&[&redirect_uri]);
    let session = Session::new(client(&mock, &redirect_uri)).unwrap();
    let pending =
        session.start_login(AuthorizationRequest::new().response_mode(ResponseMode::FormPost)).unwrap();

    // With form_post the mock answers the login with an auto-submitting form instead of a redirect.
    let agent = browser();
    let mut page = agent.get(pending.authorize_url()).call().unwrap();
    let request_id =
        page.headers().get(erpnet_oauth_mock::LOGIN_REQUEST_HEADER).unwrap().to_str().unwrap().to_owned();
    let _ = page.body_mut().read_to_string().unwrap();
    let mut answer = agent
        .post(&format!("{}{}", mock.base_url(), erpnet_oauth_mock::LOGIN_PATH))
        .send_form([
            ("request_id", request_id.as_str()),
            ("username", erpnet_oauth_mock::DEMO_USER),
            ("password", erpnet_oauth_mock::DEMO_PASSWORD),
            ("button", "login"),
        ])
        .unwrap();
    assert_eq!(answer.status(), 200);
    let html = answer.body_mut().read_to_string().unwrap();
    let fields: Vec<(String, String)> = html
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|chunk| {
            let (name, rest) = chunk.split_once("\" value=\"")?;
            let (value, _) = rest.split_once('"')?;
            Some((name.to_owned(), value.replace("&amp;", "&")))
        })
        .collect();
    assert!(fields.iter().any(|(n, _)| n == "code"));

    let port = addr.port();
    let browser_thread = std::thread::spawn(move || {
        let agent = browser();
        // A favicon request and a bare GET of the callback path come first: 404, then 400; the wait goes on.
        let favicon = agent.get(&format!("http://127.0.0.1:{port}/favicon.ico")).call().unwrap();
        let bare = agent.get(&format!("http://127.0.0.1:{port}/signin-callback")).call().unwrap();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let posted =
            agent.post(&format!("http://127.0.0.1:{port}/signin-callback")).send_form(pairs).unwrap();
        (favicon.status().as_u16(), bare.status().as_u16(), posted.status().as_u16())
    });
    let callback = listener.wait(&pending).unwrap();
    listener.reply(LoginOutcome::LoggedIn { user: None });
    assert_eq!(browser_thread.join().unwrap(), (404, 400, 200));
    assert!(matches!(callback, ReceivedCallback::FormPost(_)));
    assert!(!format!("{callback:?}").contains("code="), "Debug shows no code");
    session.finish_login(pending, callback.as_callback()).unwrap();
    assert_eq!(session.get("/api/domain/odata/Crm_Customers?$top=1").unwrap().status(), 200);
    assert_eq!(mock.counters().authorization_code_grants, 1);
}

#[test]
fn the_listener_times_out_and_can_be_cancelled() {
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback")
        .unwrap()
        .timeout(Duration::from_millis(100));
    let pending = pending_for(listener.redirect_uri());
    assert!(matches!(listener.wait(&pending), Err(Error::LoginTimeout(_))));

    let listener = RedirectListener::bind("http://127.0.0.1:0/cb").unwrap();
    let cancel = listener.cancel_handle();
    let pending = pending_for(listener.redirect_uri());
    let t = std::thread::spawn(move || listener.wait(&pending));
    cancel.cancel();
    assert!(matches!(t.join().unwrap(), Err(Error::Cancelled)));

    for bad in ["https://127.0.0.1/cb", "http://example.com/cb", "not a url"] {
        assert!(matches!(RedirectListener::bind(bad), Err(Error::Listener(_))), "{bad}");
    }
}

#[test]
fn a_refused_login_or_a_forged_callback_sends_no_token_request() {
    let mock = mock();
    let session = Session::new(client(&mock, REDIRECT_URI)).unwrap();

    // The user presses "cancel" on the login form: access_denied comes back.
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let agent = browser();
    let page = agent.get(pending.authorize_url()).call().unwrap();
    let request_id =
        page.headers().get(erpnet_oauth_mock::LOGIN_REQUEST_HEADER).unwrap().to_str().unwrap().to_owned();
    let answer = agent
        .post(&format!("{}{}", mock.base_url(), erpnet_oauth_mock::LOGIN_PATH))
        .send_form([("request_id", request_id.as_str()), ("button", "cancel")])
        .unwrap();
    let location = answer.headers().get("location").unwrap().to_str().unwrap().to_owned();
    match session.finish_login(pending, Callback::Url(&location)) {
        Err(Error::Callback(CallbackError::Authorization(e))) => assert_eq!(e.error, "access_denied"),
        other => panic!("expected access_denied, got {other:?}"),
    }

    // A callback whose state is not this login's.
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url());
    let forged = location.replace("state=", "state=x");
    assert!(matches!(
        session.finish_login(pending, Callback::Url(&forged)),
        Err(Error::Callback(CallbackError::StateMismatch))
    ));
    assert_eq!(mock.counters().token_requests, 0);
    assert!(!session.is_logged_in());
    // Without a login, calls say so.
    let e = session.get("/api/domain/odata/Crm_Customers").unwrap_err();
    assert!(e.is_login_required(), "{e}");
    assert_eq!(mock.counters().api_calls, 0);
}

/// A login waiting for its callback at `redirect_uri`.
fn pending_for(redirect_uri: &str) -> erpnet_oauth_ureq::PendingLogin {
    let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
        .redirect_uri(redirect_uri)
        .build()
        .unwrap();
    AuthorizationRequest::new().build(&client, &mut erpnet_oauth_ureq::OsRandom).unwrap()
}
