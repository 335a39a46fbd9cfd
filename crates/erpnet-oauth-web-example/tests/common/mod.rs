//! What the web example's test files share: reading redirects and cookies, and the mock's login form.

#![allow(dead_code)]

use erpnet_oauth_mock::{DEMO_PASSWORD, DEMO_USER, LOGIN_PATH, LOGIN_REQUEST_HEADER};
use erpnet_oauth_web_example::COOKIE;

/// The `Location` of a redirect.
pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap().to_owned()
}

/// The `Set-Cookie` of a response.
pub fn set_cookie(r: &reqwest::Response) -> String {
    r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap().to_owned()
}

/// The `name=value` part of a `Set-Cookie`, which must be the example's session cookie.
pub fn cookie_pair(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    assert!(pair.starts_with(&format!("{COOKIE}=")), "{set_cookie}");
    pair
}

/// Logs in as the demo user on the login form of the mock at `mock_base` for the authorization URL
/// `authorize`: returns the callback URL the mock redirects to.
pub async fn mock_login(agent: &reqwest::Client, mock_base: &str, authorize: &str) -> String {
    let page = agent.get(authorize).send().await.unwrap();
    let rid = page.headers().get(LOGIN_REQUEST_HEADER).and_then(|v| v.to_str().ok()).unwrap().to_owned();
    let r = agent
        .post(format!("{mock_base}{LOGIN_PATH}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request_id={rid}&username={DEMO_USER}&password={DEMO_PASSWORD}&button=login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    location(&r)
}
