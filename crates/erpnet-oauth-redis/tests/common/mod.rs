//! What the tests share: a real redis-server, a mock ERP.net, a client for it, logins through its form,
//! and a clock the parent sets.
#![allow(dead_code)]

/// The redis-server harness: the crate's own `test_util` (feature `test-util`, enabled for these tests by
/// the `[dev-dependencies]` self-reference), the one other crates' tests use.
pub use erpnet_oauth_redis::test_util as redis_server;

use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, LOGIN_PATH,
    LOGIN_REQUEST_HEADER, MockConfig, MockErpNet,
};
use erpnet_oauth_ureq::{AuthorizationRequest, Callback, ClientConfig, ClientSecret};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The redirect URI the tests register (nothing listens on it).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/signin-callback";

/// A mock with a manual clock starting now, whose seed app allows [`REDIRECT_URI`].
pub fn mock() -> Arc<MockErpNet> {
    let mut config = MockConfig::seed_manual_clock();
    config.clock = ClockMode::Manual { start: SystemTime::now() };
    for app in &mut config.apps {
        app.impersonate_login_urls.push(REDIRECT_URI.to_owned());
    }
    Arc::new(MockErpNet::start(config).expect("the mock starts"))
}

/// The seed's confidential client for the instance at `base`.
pub fn client(base: &str) -> ClientConfig {
    ClientConfig::builder(base, DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(REDIRECT_URI)
        .build()
        .expect("a valid client configuration")
}

/// A clock the test sets (nanoseconds since the epoch), shared by clones.
#[derive(Debug, Clone, Default)]
pub struct SetClock(Arc<AtomicU64>);

impl SetClock {
    pub fn at(t: SystemTime) -> Self {
        let c = SetClock::default();
        c.set(t);
        c
    }
    pub fn set(&self, t: SystemTime) {
        let nanos = t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        self.0.store(nanos, Ordering::SeqCst);
    }
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
    pub fn as_fn(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let c = self.clone();
        move || c.now()
    }
}

/// The time as the nanoseconds the child processes are told.
pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Plays the browser on the mock's login form and returns the callback URL it redirects to.
pub fn browser_login(mock: &MockErpNet, authorize_url: &str) -> String {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let mut page = agent.get(authorize_url).call().expect("the authorize page");
    assert_eq!(page.status(), 200, "the login form");
    let request_id = page
        .headers()
        .get(LOGIN_REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();
    let _ = page.body_mut().read_to_string();
    let answer = agent
        .post(&format!("{}{LOGIN_PATH}", mock.base_url()))
        .send_form([
            ("request_id", request_id.as_str()),
            ("username", DEMO_USER),
            ("password", DEMO_PASSWORD),
            ("button", "login"),
        ])
        .expect("the login form is posted");
    assert_eq!(answer.status(), 302);
    answer.headers().get("location").and_then(|v| v.to_str().ok()).expect("a Location").to_owned()
}

/// Logs a blocking session in through the mock's form.
pub fn login(mock: &MockErpNet, session: &erpnet_oauth_ureq::Session) {
    let pending = session.start_login(AuthorizationRequest::new()).expect("the login starts");
    let location = browser_login(mock, pending.authorize_url());
    session.finish_login(pending, Callback::Url(&location)).expect("the login finishes");
}

/// Logs an async session in through the mock's form.
pub async fn login_async(mock: &Arc<MockErpNet>, session: &erpnet_oauth_async::Session) {
    let pending = session.start_login(AuthorizationRequest::new()).expect("the login starts");
    let mock2 = mock.clone();
    let url = pending.authorize_url().to_owned();
    let location = tokio::task::spawn_blocking(move || browser_login(&mock2, &url)).await.unwrap();
    session.finish_login(pending, Callback::Url(&location)).await.expect("the login finishes");
}
