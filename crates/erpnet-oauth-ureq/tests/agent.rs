//! An application's own `ureq::Agent` (a proxy, a company CA, its own user agent): the session sends
//! through it, and the protocol's rules hold whatever the agent's settings (no redirect followed, error
//! statuses read as answers, the session's timeouts).

mod common;

use common::*;
use erpnet_oauth_mock::Intercepted;
use erpnet_oauth_ureq::{Error, HttpOptions, MemoryStore, Session};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn the_session_sends_through_the_applications_agent_and_keeps_the_protocols_rules() {
    let mock = mock();
    // An agent that follows redirects and turns error statuses into errors: the defaults an application
    // may well have.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .user_agent("my-erp-app/1.0")
        .max_redirects(10)
        .http_status_as_error(true)
        .build()
        .into();
    let session = Session::builder(client(&mock, REDIRECT_URI))
        .store(MemoryStore::new())
        .clock(mock_clock(&mock))
        .http_options(HttpOptions::default().timeout(Duration::from_secs(5)))
        .agent(agent)
        .build()
        .unwrap();
    let agents: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = agents.clone();
    let token_path = "/id/connect/token";
    let redirected = Arc::new(Mutex::new(false));
    let redirect_once = redirected.clone();
    mock.set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        // The session's requests (the test's "browser" has an agent of its own).
        if req.uri().path() == token_path || req.uri().path().ends_with("/jwks") {
            let ua = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            seen.lock().unwrap().push(ua);
        }
        let mut r = redirect_once.lock().unwrap();
        if req.uri().path() == token_path && req.body().windows(13).any(|w| w == b"refresh_token") && !*r {
            *r = true;
            let answer = http::Response::builder()
                .status(307)
                .header("location", "/elsewhere/token")
                .body(Vec::new())
                .unwrap();
            return Intercepted::Respond(answer);
        }
        Intercepted::Pass
    })));
    login(&mock, &session);
    assert_eq!(agents.lock().unwrap().len(), 2, "the code exchange and the JWKS");
    assert!(agents.lock().unwrap().iter().all(|ua| ua == "my-erp-app/1.0"), "{:?}", agents.lock().unwrap());

    // A redirect from the token endpoint is an error, not followed (catalogue C5), whatever the agent says.
    mock.advance_clock(Duration::from_secs(3601));
    let e = session.access_token().unwrap_err();
    assert!(e.to_string().contains("307"), "{e}");
    assert_eq!(mock.counters().refresh_token_grants, 0, "the credentials were not re-sent to the Location");

    // An error status is an answer to read (RFC 6749 §5.2), not a transport error of the agent's.
    mock.revoke_all_grants_of(erpnet_oauth_mock::DEMO_USER);
    let e = session.access_token().unwrap_err();
    assert!(e.is_login_required(), "invalid_grant read from the 400's body: {e:?}");
    assert!(matches!(e, Error::Refresh(_)), "{e:?}");
}
