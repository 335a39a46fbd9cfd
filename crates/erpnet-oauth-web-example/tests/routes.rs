//! The web example's HTTP contract without a browser (reqwest as the user agent, no redirects followed):
//! the session cookie's attributes, PKCE and state in the redirect, a pending login used once.

use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, LOGIN_PATH,
    LOGIN_REQUEST_HEADER, MockConfig, MockErpNet,
};
use erpnet_oauth_web_example::{AppConfig, COOKIE, router};
use std::sync::Arc;
use std::time::SystemTime;

struct Setup {
    mock: Arc<MockErpNet>,
    app_url: String,
    agent: reqwest::Client,
}

async fn setup() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let redirect_uri = format!("{app_url}/signin-callback");
    let uri = redirect_uri.clone();
    let mock = tokio::task::spawn_blocking(move || {
        let mut config =
            MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
        for app in &mut config.apps {
            app.impersonate_login_urls.push(uri.clone());
        }
        Arc::new(MockErpNet::start(config).unwrap())
    })
    .await
    .unwrap();
    let config = AppConfig {
        instance: mock.base_url(),
        client_id: DEMO_CLIENT_ID.to_owned(),
        client_secret: Some(DEMO_CLIENT_SECRET.to_owned()),
        redirect_uri,
    };
    let app = router(&config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let agent =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    Setup { mock, app_url, agent }
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap().to_owned()
}

/// GET /login, then the mock's form: returns the session cookie and the callback URL.
async fn start_and_fill(s: &Setup) -> (String, String) {
    let r = s.agent.get(format!("{}/login", s.app_url)).send().await.unwrap();
    assert!(r.status().is_redirection());
    let set_cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("{COOKIE}=")));
    let authorize = location(&r);
    assert!(authorize.starts_with(&format!("{}/id/connect/authorize?", s.mock.base_url())));
    assert!(authorize.contains("code_challenge_method=S256"));
    assert!(authorize.contains("state=") && authorize.contains("nonce="));
    let page = s.agent.get(&authorize).send().await.unwrap();
    let rid = page.headers().get(LOGIN_REQUEST_HEADER).and_then(|v| v.to_str().ok()).unwrap().to_owned();
    let r = s
        .agent
        .post(format!("{}{LOGIN_PATH}", s.mock.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request_id={rid}&username={DEMO_USER}&password={DEMO_PASSWORD}&button=login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    (cookie, location(&r))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_login_is_used_once_and_belongs_to_its_browser() {
    let s = setup().await;
    let (cookie, callback) = start_and_fill(&s).await;

    // Another browser (no cookie, or another one) cannot use this callback.
    let r = s.agent.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let other = format!("{COOKIE}={}", "ab".repeat(32));
    let r = s.agent.get(&callback).header("cookie", &other).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.mock.counters().authorization_code_grants, 0);

    // Its own browser signs in, once.
    let r = s.agent.get(&callback).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/customers");
    let r = s.agent.get(&callback).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 400, "the pending login was removed");
    assert_eq!(s.mock.counters().authorization_code_grants, 1);

    let page =
        s.agent.get(format!("{}/customers", s.app_url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    assert!(!html.contains("access_token"));

    let r = s.agent.post(format!("{}/logout", s.app_url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(s.mock.counters().revocations, 1);
    let r = s.agent.get(format!("{}/customers", s.app_url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed out: sent home");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_callback_is_refused_with_an_escaped_message() {
    let s = setup().await;
    let (cookie, callback) = start_and_fill(&s).await;
    let forged = callback.replace("state=", "state=%3Cscript%3E");
    let r = s.agent.get(&forged).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("The login failed"), "{html}");
    assert!(!html.contains("<script>"));
    assert_eq!(s.mock.counters().authorization_code_grants, 0);
    let r = s.agent.get(format!("{}/", s.app_url)).header("cookie", &cookie).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("id=\"sign-in\""), "still signed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_users_concurrent_pages_after_expiry_make_one_refresh() {
    let s = setup().await;
    let (cookie, callback) = start_and_fill(&s).await;
    let r = s.agent.get(&callback).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303);
    s.mock.advance_clock(std::time::Duration::from_secs(3600 + 60));
    let pages: Vec<_> = (0..16)
        .map(|_| {
            let (agent, url, cookie) = (s.agent.clone(), format!("{}/customers", s.app_url), cookie.clone());
            tokio::spawn(async move {
                let page = agent.get(url).header("cookie", cookie).send().await.unwrap();
                (page.status(), page.text().await.unwrap())
            })
        })
        .collect();
    for page in pages {
        let (status, html) = page.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    }
    let c = s.mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh for the user's 16 pages");
    assert_eq!(c.invalid_grant_errors, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn served_over_https_the_cookie_is_secure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let config = AppConfig {
        instance: "http://127.0.0.1:9".to_owned(),
        client_id: DEMO_CLIENT_ID.to_owned(),
        client_secret: Some(DEMO_CLIENT_SECRET.to_owned()),
        redirect_uri: "https://app.example/signin-callback".to_owned(),
    };
    let app = router(&config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let agent =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let r = agent.get(format!("{app_url}/login")).send().await.unwrap();
    let set_cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    assert!(set_cookie.ends_with("HttpOnly; SameSite=Lax; Secure"), "{set_cookie}");
    let r = agent.post(format!("{app_url}/logout")).send().await.unwrap();
    let cleared = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0") && cleared.contains("Secure"), "{cleared}");
}
