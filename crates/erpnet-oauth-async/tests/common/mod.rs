//! Helpers shared by the integration tests: a mock ERP.net with a manual clock starting now, a client for
//! it, and a "browser" (reqwest, no redirects) that fills in the mock's login form.
#![allow(dead_code)]

use erpnet_oauth_async::{AuthorizationRequest, Callback, ClientConfig, ClientSecret, Session};
use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_SERVICE_CLIENT_ID, DEMO_USER,
    LOGIN_PATH, LOGIN_REQUEST_HEADER, MockConfig, MockErpNet,
};
use std::sync::Arc;
use std::time::SystemTime;

/// The redirect URI the tests register (nothing listens on it: the callback URL is handed over directly,
/// as a web application's server would).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/signin-callback";

/// A mock with a manual clock starting at the present (so that sessions on the system clock accept its ID
/// tokens) whose seed app also allows [`REDIRECT_URI`]. Started on a blocking thread: the mock runs its own
/// runtime.
pub async fn mock() -> Arc<MockErpNet> {
    tokio::task::spawn_blocking(|| {
        let mut config = MockConfig::seed_manual_clock();
        config.clock = ClockMode::Manual { start: SystemTime::now() };
        for app in &mut config.apps {
            app.impersonate_login_urls.push(REDIRECT_URI.to_owned());
        }
        Arc::new(MockErpNet::start(config).expect("the mock starts"))
    })
    .await
    .expect("the mock starts")
}

/// The seed's confidential client for `mock`.
pub fn client(mock: &MockErpNet) -> ClientConfig {
    ClientConfig::builder(&mock.base_url(), DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(REDIRECT_URI)
        .build()
        .expect("a valid client configuration")
}

/// A session of the mock's service app (client credentials, scope `DomainApi`) on the mock's clock.
pub async fn service_session(mock: &Arc<MockErpNet>) -> Session {
    let client = ClientConfig::builder(&mock.base_url(), DEMO_SERVICE_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .build()
        .expect("a valid client configuration");
    Session::builder(client)
        .client_credentials("DomainApi")
        .clock(mock_clock(mock))
        .build()
        .await
        .expect("the service session builds")
}

/// A clock that reads the mock's manual clock.
pub fn mock_clock(mock: &Arc<MockErpNet>) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let mock = mock.clone();
    move || mock.now()
}

/// Plays the browser on the mock's login form: GET the authorize URL, POST the demo credentials, and
/// return the `Location` the mock redirects to (the callback URL).
pub async fn browser_login(mock: &MockErpNet, authorize_url: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("a browser");
    let page = browser.get(authorize_url).send().await.expect("the authorize page");
    assert_eq!(page.status(), 200, "the authorize endpoint shows the login form");
    let request_id = page
        .headers()
        .get(LOGIN_REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .expect("the login request id")
        .to_owned();
    let html = page.text().await.expect("the login page");
    assert!(html.contains(&format!("action=\"{LOGIN_PATH}\"")), "the page holds the login form");
    let form = format!(
        "request_id={}&username={DEMO_USER}&password={DEMO_PASSWORD}&button=login",
        url::form_urlencoded::byte_serialize(request_id.as_bytes()).collect::<String>()
    );
    let answer = browser
        .post(format!("{}{LOGIN_PATH}", mock.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("the login form is posted");
    assert_eq!(answer.status(), 302, "a successful login redirects to the redirect URI");
    answer.headers().get("location").and_then(|v| v.to_str().ok()).expect("a Location header").to_owned()
}

/// Logs `session` in through the mock's login form.
pub async fn login(mock: &MockErpNet, session: &Session) {
    let pending = session.start_login(AuthorizationRequest::new()).expect("the login starts");
    let location = browser_login(mock, pending.authorize_url()).await;
    let query = location.split_once('?').map(|(_, q)| q.to_owned()).expect("a query in the callback URL");
    session.finish_login(pending, Callback::Query(&query)).await.expect("the login finishes");
}
