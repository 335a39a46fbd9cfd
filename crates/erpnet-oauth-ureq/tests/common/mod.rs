//! Helpers shared by the integration tests: a mock ERP.net that allows the test's redirect URI, a
//! client for it, and a "browser" that fills in the mock's login form.
#![allow(dead_code)]

use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, LOGIN_PATH,
    LOGIN_REQUEST_HEADER, MockConfig, MockErpNet,
};
use erpnet_oauth_ureq::{AuthorizationRequest, Callback, ClientConfig, ClientSecret, Session};
use std::sync::Arc;
use std::time::SystemTime;

/// The redirect URI the tests register (nothing listens on it unless a test binds it).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/signin-callback";

/// A mock with a manual clock starting at the present (so that sessions on the system clock accept its ID
/// tokens) whose seed app also allows `redirect_uris`.
pub fn mock_allowing(redirect_uris: &[&str]) -> Arc<MockErpNet> {
    let mut config = MockConfig::seed_manual_clock();
    config.clock = ClockMode::Manual { start: SystemTime::now() };
    for app in &mut config.apps {
        for uri in redirect_uris {
            app.impersonate_login_urls.push((*uri).to_owned());
        }
    }
    Arc::new(MockErpNet::start(config).expect("the mock starts"))
}

/// A mock with the manual clock allowing [`REDIRECT_URI`].
pub fn mock() -> Arc<MockErpNet> {
    mock_allowing(&[REDIRECT_URI])
}

/// The seed's confidential client for `mock`, redirecting to `redirect_uri`.
pub fn client(mock: &MockErpNet, redirect_uri: &str) -> ClientConfig {
    ClientConfig::builder(&mock.base_url(), DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(redirect_uri)
        .build()
        .expect("a valid client configuration")
}

/// A clock that reads the mock's manual clock.
pub fn mock_clock(mock: &Arc<MockErpNet>) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let mock = mock.clone();
    move || mock.now()
}

/// A plain agent that plays the browser: follows no redirect, reads error statuses.
pub fn browser() -> ureq::Agent {
    ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into()
}

/// Plays the browser on the mock's login form: GET the authorize URL, read the form, POST the demo
/// credentials, and return the `Location` the mock redirects to (the callback URL).
pub fn browser_login(mock: &MockErpNet, authorize_url: &str) -> String {
    let agent = browser();
    let mut page = agent.get(authorize_url).call().expect("the authorize page");
    assert_eq!(page.status(), 200, "the authorize endpoint shows the login form");
    let request_id = page
        .headers()
        .get(LOGIN_REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .expect("the login request id")
        .to_owned();
    let html = page.body_mut().read_to_string().expect("the login page");
    assert!(html.contains(&format!("action=\"{LOGIN_PATH}\"")), "the page holds the login form");
    assert!(html.contains(&request_id), "the form carries the request id");
    let answer = agent
        .post(&format!("{}{LOGIN_PATH}", mock.base_url()))
        .send_form([
            ("request_id", request_id.as_str()),
            ("username", DEMO_USER),
            ("password", DEMO_PASSWORD),
            ("button", "login"),
        ])
        .expect("the login form is posted");
    assert_eq!(answer.status(), 302, "a successful login redirects to the redirect URI");
    answer.headers().get("location").and_then(|v| v.to_str().ok()).expect("a Location header").to_owned()
}

/// Logs `session` in through the mock's login form (without a listener: the callback URL is handed
/// over directly, as a web application's server would).
pub fn login(mock: &MockErpNet, session: &Session) {
    let pending = session.start_login(AuthorizationRequest::new()).expect("the login starts");
    let location = browser_login(mock, pending.authorize_url());
    session.finish_login(pending, Callback::Url(&location)).expect("the login finishes");
}
