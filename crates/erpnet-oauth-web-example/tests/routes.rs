//! The web example's HTTP contract without a browser (reqwest as the user agent, no redirects followed):
//! the session cookie's attributes, PKCE and state in the redirect, a pending login used once; and against
//! hostile input: session fixation, pending logins bounded and expiring, hostile values escaped.

mod common;

use common::{cookie_pair, location, mock_login, set_cookie};
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Intercepted, MockConfig, MockErpNet};
use erpnet_oauth_web_example::{AppConfig, COOKIE, Options, PENDING_LOGIN_LIFETIME, WebApp};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Setup {
    mock: Arc<MockErpNet>,
    app: WebApp,
    app_url: String,
    agent: reqwest::Client,
}

/// A change to the mock's configuration.
type MockChange = Box<dyn FnOnce(&mut MockConfig) + Send>;

/// The application's settings in a test: the redirect URI (default: the app's own, over http), the
/// limits, and changes to the mock's configuration.
#[derive(Default)]
struct Settings {
    redirect_uri: Option<String>,
    options: Options,
    mock: Option<MockChange>,
}

async fn setup() -> Setup {
    setup_with(Settings::default()).await
}

async fn setup_with(settings: Settings) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let redirect_uri = settings.redirect_uri.unwrap_or_else(|| format!("{app_url}/signin-callback"));
    let uri = redirect_uri.clone();
    let change = settings.mock;
    let mock = tokio::task::spawn_blocking(move || {
        let mut config =
            MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
        for app in &mut config.apps {
            app.impersonate_login_urls.push(uri.clone());
        }
        if let Some(change) = change {
            change(&mut config);
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
    let app = WebApp::new(&config, settings.options).unwrap();
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let agent =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    Setup { mock, app, app_url, agent }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    fn new() -> Self {
        TestClock(Arc::new(Mutex::new(SystemTime::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn options(&self) -> Options {
        let clock = self.0.clone();
        Options { clock: Arc::new(move || *clock.lock().unwrap()), ..Options::default() }
    }
}

/// A `name=value` cookie with the form of a session id, chosen by an attacker.
fn forged_cookie() -> String {
    format!("{COOKIE}={}", "ab".repeat(32))
}

/// GET /login (with `cookie`, if any): returns the session cookie it set and the authorization URL.
async fn start(s: &Setup, cookie: Option<&str>) -> (String, String) {
    let mut request = s.agent.get(format!("{}/login", s.app_url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let r = request.send().await.unwrap();
    assert!(r.status().is_redirection());
    let set_cookie = set_cookie(&r);
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = cookie_pair(&set_cookie);
    let authorize = location(&r);
    assert!(authorize.starts_with(&format!("{}/id/connect/authorize?", s.mock.base_url())));
    assert!(authorize.contains("code_challenge_method=S256"));
    assert!(authorize.contains("state=") && authorize.contains("nonce="));
    (cookie, authorize)
}

/// Logs in on the mock's form for the authorization URL: returns the callback URL.
async fn fill(s: &Setup, authorize: &str) -> String {
    mock_login(&s.agent, &s.mock.base_url(), authorize).await
}

/// GET /login, then the mock's form: returns the session cookie and the callback URL.
async fn start_and_fill(s: &Setup) -> (String, String) {
    let (cookie, authorize) = start(s, None).await;
    (cookie, fill(s, &authorize).await)
}

/// The callback with `cookie`: a successful login's response (303 to /customers) gives the signed-in
/// session's cookie.
async fn callback(s: &Setup, callback: &str, cookie: &str) -> reqwest::Response {
    s.agent.get(callback).header("cookie", cookie).send().await.unwrap()
}

async fn signed_in_cookie(s: &Setup, url: &str, cookie: &str) -> String {
    let r = callback(s, url, cookie).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/customers");
    cookie_pair(&set_cookie(&r))
}

/// Whether `cookie` is a signed-in session: the home page and the customers page say so.
async fn is_signed_in(s: &Setup, cookie: &str) -> bool {
    let home = s.agent.get(format!("{}/", s.app_url)).header("cookie", cookie).send().await.unwrap();
    let home = home.text().await.unwrap();
    let customers =
        s.agent.get(format!("{}/customers", s.app_url)).header("cookie", cookie).send().await.unwrap();
    let signed_in = home.contains("id=\"user\"");
    assert_eq!(customers.status() == 200, signed_in, "the home page and /customers agree");
    if !signed_in {
        assert!(home.contains("id=\"sign-in\""));
        assert_eq!(customers.status(), 303);
        assert_eq!(location(&customers), "/");
    }
    signed_in
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_login_is_used_once_and_belongs_to_its_browser() {
    let s = setup().await;
    let (cookie, url) = start_and_fill(&s).await;

    // Another browser (no cookie, or another one) cannot use this callback.
    let r = s.agent.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = callback(&s, &url, &forged_cookie()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(s.mock.counters().authorization_code_grants, 0);

    // Its own browser signs in, once.
    let signed_in = signed_in_cookie(&s, &url, &cookie).await;
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 400, "the pending login was removed");
    assert_eq!(s.mock.counters().authorization_code_grants, 1);

    let page =
        s.agent.get(format!("{}/customers", s.app_url)).header("cookie", &signed_in).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    assert!(!html.contains("access_token"));

    let r = s.agent.post(format!("{}/logout", s.app_url)).header("cookie", &signed_in).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared = set_cookie(&r);
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(s.mock.counters().revocations, 1);
    assert!(!is_signed_in(&s, &signed_in).await, "signed out");
    assert_eq!(s.app.signed_in_users(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attacker_chosen_cookie_is_never_adopted_nor_signed_in() {
    let s = setup().await;
    let forged = forged_cookie();

    // The victim's browser carries the attacker's cookie to /login: it gets a fresh id instead.
    let (pending, authorize) = start(&s, Some(&forged)).await;
    assert_ne!(pending, forged, "the login runs under an id the server issued, not the browser's");
    let url = fill(&s, &authorize).await;
    // The attacker's cookie does not carry the victim's login.
    assert_eq!(callback(&s, &url, &forged).await.status(), 400);
    assert_eq!(s.mock.counters().authorization_code_grants, 0);

    // The victim signs in: under yet another id, not the one that carried the pending login.
    let signed_in = signed_in_cookie(&s, &url, &pending).await;
    assert_ne!(signed_in, pending, "a finished login gets a new id");
    assert_ne!(signed_in, forged);
    assert!(is_signed_in(&s, &signed_in).await);
    assert!(!is_signed_in(&s, &forged).await, "the attacker's cookie is not signed in");
    assert!(!is_signed_in(&s, &pending).await, "the pending login's id is spent");
    assert_eq!(s.app.signed_in_users(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issued_id_planted_in_the_victims_browser_does_not_sign_the_attacker_in() {
    let s = setup().await;

    // The attacker gets an id the server did issue, and plants it in the victim's browser.
    let (planted, _) = start(&s, None).await;
    let (victims, authorize) = start(&s, Some(&planted)).await;
    assert_ne!(victims, planted, "/login never reuses the id the browser brought");
    assert_eq!(s.app.pending_logins(), 1, "the planted id's pending login was replaced");
    let url = fill(&s, &authorize).await;
    assert_eq!(callback(&s, &url, &planted).await.status(), 400);
    let signed_in = signed_in_cookie(&s, &url, &victims).await;
    assert!(is_signed_in(&s, &signed_in).await);
    assert!(!is_signed_in(&s, &planted).await, "the attacker's id is not the victim's session");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_login_finished_by_the_victim_does_not_sign_the_attacker_in() {
    let s = setup().await;
    // The attacker starts a login, keeps its id, and lures the victim (with that id planted in the
    // victim's browser) to its authorization URL; the victim logs in at ERP.net.
    let (attackers, authorize) = start(&s, None).await;
    let url = fill(&s, &authorize).await;
    let victims = signed_in_cookie(&s, &url, &attackers).await;
    // The session is the victim's browser's alone: the id the attacker knows was spent by the callback.
    assert_ne!(victims, attackers);
    assert!(is_signed_in(&s, &victims).await);
    assert!(!is_signed_in(&s, &attackers).await, "the attacker's id is not signed in");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_browser_starting_a_login_gets_a_new_id_and_the_old_one_is_signed_out() {
    let s = setup().await;
    let (cookie, url) = start_and_fill(&s).await;
    let signed_in = signed_in_cookie(&s, &url, &cookie).await;
    let (pending, _) = start(&s, Some(&signed_in)).await;
    assert_ne!(pending, signed_in);
    assert!(!is_signed_in(&s, &signed_in).await, "the old session is not kept under its known id");
    assert_eq!(s.app.signed_in_users(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_logins_are_bounded_the_oldest_dropped_first() {
    let s = setup_with(Settings {
        options: Options { max_pending_logins: 3, ..Options::default() },
        ..Settings::default()
    })
    .await;
    let (oldest, oldest_url) = start_and_fill(&s).await;
    assert_eq!(s.app.pending_logins(), 1);
    let (second, second_url) = start_and_fill(&s).await;
    for expected in [3, 3, 3] {
        let _ = start(&s, None).await;
        assert_eq!(s.app.pending_logins(), expected);
    }
    // 50 more cookieless /login: still 3 entries.
    for _ in 0..50 {
        let _ = start(&s, None).await;
    }
    assert_eq!(s.app.pending_logins(), 3);
    assert_eq!(callback(&s, &oldest_url, &oldest).await.status(), 400, "the oldest was dropped");
    assert_eq!(callback(&s, &second_url, &second).await.status(), 400);
    assert_eq!(s.mock.counters().authorization_code_grants, 0);

    // The newest logins still finish.
    let (newest, newest_url) = start_and_fill(&s).await;
    assert_eq!(s.app.pending_logins(), 3);
    let signed_in = signed_in_cookie(&s, &newest_url, &newest).await;
    assert_eq!(s.app.pending_logins(), 2, "a finished login leaves the pending ones");
    assert!(is_signed_in(&s, &signed_in).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_logins_expire_after_their_lifetime() {
    assert_eq!(PENDING_LOGIN_LIFETIME, Duration::from_secs(600));
    let clock = TestClock::new();
    let s = setup_with(Settings { options: clock.options(), ..Settings::default() }).await;

    // Just before its lifetime ends, a login still finishes.
    let (cookie, url) = start_and_fill(&s).await;
    clock.advance(PENDING_LOGIN_LIFETIME - Duration::from_secs(1));
    assert_eq!(s.app.pending_logins(), 1);
    let signed_in = signed_in_cookie(&s, &url, &cookie).await;
    assert!(is_signed_in(&s, &signed_in).await);

    // At the end of its lifetime it is gone, and its callback is refused.
    let (cookie, url) = start_and_fill(&s).await;
    for _ in 0..5 {
        let _ = start(&s, None).await;
    }
    assert_eq!(s.app.pending_logins(), 6);
    clock.advance(PENDING_LOGIN_LIFETIME);
    assert_eq!(s.app.pending_logins(), 0, "every pending login expired");
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("No login is under way"));
    assert_eq!(s.mock.counters().authorization_code_grants, 1, "only the first login reached ERP.net");

    // Expired ones are dropped as new logins start, without asking for the count.
    let _ = start(&s, None).await;
    clock.advance(PENDING_LOGIN_LIFETIME);
    let _ = start(&s, None).await;
    assert_eq!(s.app.pending_logins(), 1);
    assert!(is_signed_in(&s, &signed_in).await, "signed-in users do not expire with pending logins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_callback_is_refused_with_an_escaped_message() {
    let s = setup().await;
    let (cookie, url) = start_and_fill(&s).await;
    let forged = url.replace("state=", "state=%3Cscript%3E");
    let r = callback(&s, &forged, &cookie).await;
    assert_eq!(r.status(), 400);
    let cleared = set_cookie(&r);
    assert!(cleared.contains("Max-Age=0"), "the spent id is cleared: {cleared}");
    let html = r.text().await.unwrap();
    assert!(html.contains("The login failed"), "{html}");
    assert!(!html.contains("<script>"));
    assert_eq!(s.mock.counters().authorization_code_grants, 0);
    assert!(!is_signed_in(&s, &cookie).await, "still signed out");
}

/// The `state` parameter of a URL.
fn state(url: &str) -> String {
    url.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_error_description_or_issuer_in_the_callback_is_escaped() {
    let s = setup().await;
    let issuer = s.mock.issuer().replace(':', "%3A").replace('/', "%2F");
    let (cookie, authorize) = start(&s, None).await;
    let url = format!(
        "{}/signin-callback?error=access_denied&error_description=%3Cscript%3Ealert(%22xss%22)%3C%2Fscript%3E\
         %3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&state={}&iss={issuer}",
        s.app_url,
        state(&authorize)
    );
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;"), "shown, escaped: {html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");

    // A hostile `iss` (named in the mix-up error).
    let (cookie, authorize) = start(&s, None).await;
    let url = format!(
        "{}/signin-callback?code=x&state={}&iss=%3Cscript%3Ealert(%27iss%27)%3C%2Fscript%3E",
        s.app_url,
        state(&authorize)
    );
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(&#39;iss&#39;)&lt;/script&gt;"), "shown, escaped: {html}");
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_token_endpoint_error_is_escaped() {
    let s = setup().await;
    s.mock.set_interceptor(Some(Arc::new(|req: &http::Request<Vec<u8>>| {
        if req.uri().path() != "/id/connect/token" {
            return Intercepted::Pass;
        }
        Intercepted::Respond(
            http::Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(
                    br#"{"error":"invalid_grant","error_description":"<script>alert('token')</script>"}"#
                        .to_vec(),
                )
                .unwrap(),
        )
    })));
    let (cookie, url) = start_and_fill(&s).await;
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(&#39;token&#39;)&lt;/script&gt;"), "shown, escaped: {html}");
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_user_name_and_hostile_customers_are_escaped() {
    const NAME: &str = "<script>alert(\"name\")</script>";
    let s = setup_with(Settings {
        mock: Some(Box::new(|config: &mut MockConfig| {
            for user in &mut config.users {
                user.name = NAME.to_owned();
            }
        })),
        ..Settings::default()
    })
    .await;
    s.mock.set_interceptor(Some(Arc::new(|req: &http::Request<Vec<u8>>| {
        if !req.uri().path().ends_with("/Crm_Customers") {
            return Intercepted::Pass;
        }
        let body = serde_json::json!({
            "value": [{
                "Number": "<img src=x onerror=alert(1)>",
                "PartyName": "\"><script>alert('party')</script>",
                "<b onmouseover=alert(2)>column</b>": "x & y",
            }]
        });
        Intercepted::Respond(
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap(),
        )
    })));
    let (cookie, url) = start_and_fill(&s).await;
    let signed_in = signed_in_cookie(&s, &url, &cookie).await;

    let home = s.agent.get(format!("{}/", s.app_url)).header("cookie", &signed_in).send().await.unwrap();
    let home = home.text().await.unwrap();
    assert!(home.contains("Signed in as &lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;"), "{home}");
    assert!(!home.contains("<script>"), "{home}");

    let page =
        s.agent.get(format!("{}/customers", s.app_url)).header("cookie", &signed_in).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as &lt;script&gt;"), "{html}");
    assert!(html.contains("<td>&lt;img src=x onerror=alert(1)&gt;</td>"), "{html}");
    assert!(
        html.contains("<td>&quot;&gt;&lt;script&gt;alert(&#39;party&#39;)&lt;/script&gt;</td>"),
        "{html}"
    );
    assert!(html.contains("<th>&lt;b onmouseover=alert(2)&gt;column&lt;/b&gt;</th>"), "{html}");
    assert!(html.contains("<td>x &amp; y</td>"), "{html}");
    assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b "), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_users_concurrent_pages_after_expiry_make_one_refresh() {
    let s = setup().await;
    let (cookie, url) = start_and_fill(&s).await;
    let cookie = signed_in_cookie(&s, &url, &cookie).await;
    s.mock.advance_clock(Duration::from_secs(3600 + 60));
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

/// The callback URL the mock sent the browser to, on this test's app (the redirect URI's host is not
/// served here).
fn on_app(s: &Setup, url: &str) -> String {
    format!("{}/signin-callback?{}", s.app_url, url.split_once('?').unwrap().1)
}

#[tokio::test(flavor = "multi_thread")]
async fn served_over_https_every_cookie_is_secure() {
    for redirect_uri in ["https://app.example/signin-callback", "HTTPS://app.example/signin-callback"] {
        let s =
            setup_with(Settings { redirect_uri: Some(redirect_uri.to_owned()), ..Settings::default() }).await;
        let r = s.agent.get(format!("{}/login", s.app_url)).send().await.unwrap();
        let login = set_cookie(&r);
        assert!(login.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"), "{login}");
        let url = fill(&s, &location(&r)).await;
        assert!(url.starts_with(redirect_uri), "{url}");
        let r = callback(&s, &on_app(&s, &url), &cookie_pair(&login)).await;
        assert_eq!(r.status(), 303);
        let signed_in = set_cookie(&r);
        assert!(signed_in.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"), "{signed_in}");
        let r = s
            .agent
            .post(format!("{}/logout", s.app_url))
            .header("cookie", cookie_pair(&signed_in))
            .send()
            .await
            .unwrap();
        let cleared = set_cookie(&r);
        assert!(cleared.ends_with("; HttpOnly; SameSite=Lax; Max-Age=0; Secure"), "{cleared}");
        // A failed login's cleared cookie too.
        let (pending, _) = start(&s, None).await;
        let r = callback(&s, &format!("{}/signin-callback?error=access_denied", s.app_url), &pending).await;
        assert_eq!(r.status(), 400);
        assert!(set_cookie(&r).ends_with("; Max-Age=0; Secure"), "{}", set_cookie(&r));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn served_over_http_no_cookie_is_secure() {
    let s = setup().await;
    let (cookie, authorize) = start(&s, None).await;
    let r = s.agent.get(format!("{}/login", s.app_url)).send().await.unwrap();
    let login = set_cookie(&r);
    assert!(login.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{login}");
    assert!(!login.contains("Secure"), "{login}");
    let url = fill(&s, &authorize).await;
    let r = callback(&s, &url, &cookie).await;
    assert_eq!(r.status(), 303);
    let signed_in = set_cookie(&r);
    assert!(signed_in.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{signed_in}");
    assert!(!signed_in.contains("Secure"));
    let r = s
        .agent
        .post(format!("{}/logout", s.app_url))
        .header("cookie", cookie_pair(&signed_in))
        .send()
        .await
        .unwrap();
    let cleared = set_cookie(&r);
    assert!(cleared.ends_with("; HttpOnly; SameSite=Lax; Max-Age=0"), "{cleared}");
    assert!(!cleared.contains("Secure"));
}
