//! Two instances of the web example against one real redis-server and one mock ERP.net, over real HTTP
//! on loopback ports the OS chose (reqwest as the user agent, the session cookie sent by hand to both
//! instances, as a browser does to two ports of one host): a login through A serves B; a pending login
//! is used once across instances; a sign-out on B signs out on A; session fixation is still refused; the
//! pending logins stay bounded and expire; one refresh for both instances after the expiry; tokens
//! encrypted at rest; Redis unreachable is a 503 page, never a panic, and the service comes back with it.

mod common;

use common::{cookie_pair, location, mock_login, set_cookie};
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, MockConfig, MockErpNet};
use erpnet_oauth_redis::test_util::{Persistence, RedisServer};
use erpnet_oauth_web_example::{
    AppConfig, COOKIE, EncryptionKey, Options, PENDING_LOGIN_LIFETIME, RedisBackend, SessionBackend, WebApp,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Two {
    redis: RedisServer,
    mock: Arc<MockErpNet>,
    /// Instance A's URL (the redirect URI is A's: the callback comes back to A).
    a: String,
    /// Instance B's URL.
    b: String,
    agent: reqwest::Client,
}

/// A clock the test moves by hand (the pending logins' clock, shared by both instances).
#[derive(Clone)]
struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    fn new() -> Self {
        TestClock(Arc::new(Mutex::new(SystemTime::now())))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

#[derive(Default)]
struct Settings {
    persistence: Option<Persistence>,
    max_pending_logins: Option<usize>,
    clock: Option<TestClock>,
    key: Option<[u8; 32]>,
    /// B's key, when it is not A's.
    key_b: Option<[u8; 32]>,
}

async fn two() -> Two {
    two_with(Settings::default()).await
}

async fn two_with(settings: Settings) -> Two {
    let persistence = settings.persistence.unwrap_or(Persistence::None);
    let redis = tokio::task::spawn_blocking(move || RedisServer::start_with(persistence)).await.unwrap();
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = format!("http://{}", listener_a.local_addr().unwrap());
    let b = format!("http://{}", listener_b.local_addr().unwrap());
    // Both instances stand behind one public URL; here it is A's.
    let redirect_uri = format!("{a}/signin-callback");
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
    for (listener, key) in [(listener_a, settings.key), (listener_b, settings.key_b.or(settings.key))] {
        // Each instance its own connections to Redis and its own memory.
        let mut backend = RedisBackend::open(&redis.url()).unwrap();
        assert!(!backend.encrypts_tokens());
        if let Some(key) = key {
            backend = backend.encryption_key(EncryptionKey::new(key));
        }
        let mut options = Options { backend: SessionBackend::Redis(backend), ..Options::default() };
        if let Some(max) = settings.max_pending_logins {
            options.max_pending_logins = max;
        }
        if let Some(clock) = &settings.clock {
            let clock = clock.0.clone();
            options.clock = Arc::new(move || *clock.lock().unwrap());
        }
        let app = WebApp::new(&config, options).unwrap();
        assert_eq!((app.pending_logins(), app.signed_in_users()), (0, 0));
        tokio::spawn(async move { axum::serve(listener, app.router()).await });
    }
    let agent =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    Two { redis, mock, a, b, agent }
}

/// The session id in a `name=value` cookie.
fn sid(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

/// GET /login on `instance` (with `cookie`, if any): the login's cookie and the authorization URL.
async fn start(t: &Two, instance: &str, cookie: Option<&str>) -> (String, String) {
    let mut request = t.agent.get(format!("{instance}/login"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let cookie = cookie_pair(&set_cookie(&r));
    let authorize = location(&r);
    assert!(authorize.starts_with(&format!("{}/id/connect/authorize?", t.mock.base_url())));
    (cookie, authorize)
}

/// The mock's login form for `authorize`: the callback URL (on A, the redirect URI's instance).
async fn fill(t: &Two, authorize: &str) -> String {
    let url = mock_login(&t.agent, &t.mock.base_url(), authorize).await;
    assert!(url.starts_with(&format!("{}/signin-callback?", t.a)), "{url}");
    url
}

/// The callback URL sent to `instance` instead.
fn on(instance: &str, callback: &str) -> String {
    format!("{instance}/signin-callback?{}", callback.split_once('?').unwrap().1)
}

async fn get(t: &Two, url: &str, cookie: &str) -> reqwest::Response {
    t.agent.get(url).header("cookie", cookie).send().await.unwrap()
}

/// The callback: a successful login's signed-in cookie.
async fn signed_in_cookie(t: &Two, callback: &str, cookie: &str) -> String {
    let r = get(t, callback, cookie).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/customers");
    cookie_pair(&set_cookie(&r))
}

/// Signs in through A: the signed-in cookie.
async fn sign_in_through_a(t: &Two) -> String {
    let (cookie, authorize) = start(t, &t.a, None).await;
    let url = fill(t, &authorize).await;
    signed_in_cookie(t, &url, &cookie).await
}

/// The customers page on `instance`: its status and HTML.
async fn customers(t: &Two, instance: &str, cookie: &str) -> (u16, String) {
    let r = get(t, &format!("{instance}/customers"), cookie).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Whether `cookie` is signed in on `instance` (the home page and /customers agree).
async fn is_signed_in(t: &Two, instance: &str, cookie: &str) -> bool {
    let home = get(t, &format!("{instance}/"), cookie).await;
    assert_eq!(home.status(), 200);
    let home = home.text().await.unwrap();
    let page = get(t, &format!("{instance}/customers"), cookie).await;
    let signed_in = home.contains("id=\"user\"");
    assert_eq!(page.status() == 200, signed_in, "the home page and /customers agree");
    if !signed_in {
        assert!(home.contains("id=\"sign-in\""));
        assert_eq!(page.status(), 303);
        assert_eq!(location(&page), "/");
    }
    signed_in
}

fn user_line(html: &str) -> &str {
    let start = html.find("<p id=\"user\">").expect("the user's line");
    let end = html[start..].find("</p>").unwrap();
    &html[start..start + end]
}

/// The keys in Redis matching `pattern`.
fn keys(t: &Two, pattern: &str) -> Vec<String> {
    let out = t.redis.command(&["KEYS", pattern]);
    out.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_through_a_serves_the_same_user_on_b() {
    let t = two().await;
    let cookie = sign_in_through_a(&t).await;
    let (status, on_a) = customers(&t, &t.a, &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(on_a.matches("<tr class=\"customer\">").count(), 10);
    let (status, on_b) = customers(&t, &t.b, &cookie).await;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_b.matches("<tr class=\"customer\">").count(), 10);
    assert_eq!(user_line(&on_b), user_line(&on_a), "the same user");
    assert!(user_line(&on_b).contains("Signed in as"));
    assert!(is_signed_in(&t, &t.b, &cookie).await);
    let c = t.mock.counters();
    assert_eq!((c.logins, c.authorization_code_grants, c.refresh_token_grants), (1, 1, 0));

    // What Redis holds: one session (named by a digest of its id, never the id), its tokens, no pending
    // login, and nowhere the session id itself.
    let sessions = keys(&t, "erpnet-example:session:*");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].starts_with("erpnet-example:session:sha256-"), "{sessions:?}");
    assert_eq!(keys(&t, "erpnet-example:pending:*").len(), 0, "the pending login was used");
    let tokens = keys(&t, "erpnet-example:tokens:*");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let all = t.redis.command(&["KEYS", "*"]);
    assert!(!all.contains(sid(&cookie)), "no key names the session id: {all}");
    let record = t.redis.command(&["GET", &sessions[0]]);
    assert!(!record.contains(sid(&cookie)), "{record}");
    let login = record.split("\"login\":\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(tokens[0], format!("erpnet-example:tokens:{login}"), "the session names its tokens");
    let ttl: i64 = t.redis.command(&["PTTL", &sessions[0]]).trim_start_matches(':').parse().unwrap();
    assert!(ttl > 29 * 24 * 3600 * 1000, "the session expires after 30 days unused: {ttl}");
    let stored = t.redis.command(&["HGET", &tokens[0], "tokens"]);
    assert!(stored.contains("\"refresh_token\""), "without a key, the tokens are the store file's JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_key_the_tokens_are_encrypted_at_rest_and_both_instances_read_them() {
    let t = two_with(Settings { key: Some([7; 32]), ..Settings::default() }).await;
    let cookie = sign_in_through_a(&t).await;
    let (status, html) = customers(&t, &t.b, &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    let tokens = keys(&t, "erpnet-example:tokens:*");
    assert_eq!(tokens.len(), 1);
    let stored = t.redis.command(&["HGET", &tokens[0], "tokens"]);
    assert!(!stored.contains("refresh_token") && !stored.contains("access_token"), "encrypted: {stored}");
    assert!(!stored.starts_with('{'), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_with_another_key_refuses_the_tokens_it_cannot_decrypt() {
    let t = two_with(Settings { key: Some([7; 32]), key_b: Some([8; 32]), ..Settings::default() }).await;
    let cookie = sign_in_through_a(&t).await;
    let (status, html) = customers(&t, &t.b, &cookie).await;
    assert_eq!(status, 500, "{html}");
    assert!(html.contains("The session store failed."), "{html}");
    assert!(!html.contains("erpnet-example:") && !html.contains("redis://"), "{html}");
    assert_eq!(
        customers(&t, &t.a, &cookie).await.0,
        200,
        "A, with the key that wrote them, still reads them"
    );
    let c = t.mock.counters();
    assert_eq!(
        (c.refresh_token_grants, c.invalid_grant_errors),
        (0, 0),
        "nothing sent with unreadable tokens"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_login_is_used_once_across_instances() {
    let t = two().await;

    // The callback replayed on B after A used it.
    let (cookie, authorize) = start(&t, &t.a, None).await;
    let url = fill(&t, &authorize).await;
    let signed_in = signed_in_cookie(&t, &url, &cookie).await;
    let r = get(&t, &on(&t.b, &url), &cookie).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("No login is under way"));
    assert_eq!(t.mock.counters().authorization_code_grants, 1);
    assert!(is_signed_in(&t, &t.b, &signed_in).await);
    assert!(!is_signed_in(&t, &t.b, &cookie).await, "the pending id is spent");

    // A login started on B, finished on A; the same callback sent to both at once: one of them wins.
    for round in 0..5 {
        let (cookie, authorize) = start(&t, &t.b, None).await;
        let url = fill(&t, &authorize).await;
        let url_on_b = on(&t.b, &url);
        let (on_a, on_b) = tokio::join!(get(&t, &url, &cookie), get(&t, &url_on_b, &cookie));
        let mut statuses = [on_a.status().as_u16(), on_b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [303, 400], "round {round}");
        assert_eq!(t.mock.counters().authorization_code_grants, 2 + round, "one code exchange per login");
    }
    assert_eq!(t.mock.counters().invalid_grant_errors, 0, "no code was sent twice");
    assert_eq!(keys(&t, "erpnet-example:pending:*").len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_on_b_signs_out_on_a() {
    let t = two().await;
    let cookie = sign_in_through_a(&t).await;
    // Both instances hold the user's session in memory.
    assert!(is_signed_in(&t, &t.a, &cookie).await);
    assert!(is_signed_in(&t, &t.b, &cookie).await);
    let tokens = keys(&t, "erpnet-example:tokens:*");
    assert_eq!(tokens.len(), 1);

    let r = t.agent.post(format!("{}/logout", t.b)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r).contains("Max-Age=0"));
    assert!(r.text().await.unwrap().contains("You are signed out."));
    assert_eq!(t.mock.counters().revocations, 1, "the refresh token was revoked");
    assert!(!is_signed_in(&t, &t.a, &cookie).await, "A reads the session in Redis: signed out");
    assert!(!is_signed_in(&t, &t.b, &cookie).await);
    assert_eq!(keys(&t, "erpnet-example:session:*").len(), 0, "the session is deleted");
    assert_eq!(t.redis.command(&["HEXISTS", &tokens[0], "tokens"]), ":0", "the tokens are deleted");
    let c = t.mock.counters();
    assert_eq!((c.authorization_code_grants, c.refresh_token_grants), (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_fixation_is_refused_across_instances() {
    let t = two().await;
    let forged = format!("{COOKIE}={}", "ab".repeat(32));

    // An id the server issued (on A), planted in the victim's browser, which starts a login on B.
    let (planted, _) = start(&t, &t.a, None).await;
    let (victims, authorize) = start(&t, &t.b, Some(&planted)).await;
    assert_ne!(victims, planted, "/login never reuses the id the browser brought");
    assert_eq!(keys(&t, "erpnet-example:pending:*").len(), 1, "the planted id's pending login was deleted");
    let url = fill(&t, &authorize).await;
    for cookie in [&planted, &forged] {
        assert_eq!(get(&t, &url, cookie).await.status(), 400);
        assert_eq!(get(&t, &on(&t.b, &url), cookie).await.status(), 400);
    }
    assert_eq!(t.mock.counters().authorization_code_grants, 0);
    let signed_in = signed_in_cookie(&t, &url, &victims).await;
    assert_ne!(signed_in, victims, "a finished login gets a new id");
    for instance in [&t.a, &t.b] {
        assert!(is_signed_in(&t, instance, &signed_in).await);
        assert!(!is_signed_in(&t, instance, &planted).await);
        assert!(!is_signed_in(&t, instance, &victims).await, "the pending login's id is spent");
        assert!(!is_signed_in(&t, instance, &forged).await);
    }

    // A signed-in browser starting a login on A: its old session is deleted in Redis, for B too, and
    // its tokens revoked (in the background).
    let (fresh, _) = start(&t, &t.a, Some(&signed_in)).await;
    assert_ne!(fresh, signed_in);
    assert_eq!(sid(&fresh).len(), 64, "256 bits in hex");
    assert!(!is_signed_in(&t, &t.b, &signed_in).await);
    assert!(!is_signed_in(&t, &t.a, &signed_in).await);
    assert_eq!(keys(&t, "erpnet-example:session:*").len(), 0);
    for _ in 0..200 {
        if t.mock.counters().revocations == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(t.mock.counters().revocations, 1, "the old session's refresh token was revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_logins_are_bounded_and_expire_across_instances() {
    assert_eq!(PENDING_LOGIN_LIFETIME, Duration::from_secs(600));
    let clock = TestClock::new();
    let t =
        two_with(Settings { max_pending_logins: Some(3), clock: Some(clock.clone()), ..Settings::default() })
            .await;
    let (oldest, oldest_authorize) = start(&t, &t.a, None).await;
    let oldest_url = fill(&t, &oldest_authorize).await;
    clock.advance(Duration::from_millis(5));
    let (second, second_authorize) = start(&t, &t.b, None).await;
    let second_url = fill(&t, &second_authorize).await;
    for i in 0..20 {
        clock.advance(Duration::from_millis(5));
        let instance = if i % 2 == 0 { &t.a } else { &t.b };
        let _ = start(&t, instance, None).await;
        assert!(keys(&t, "erpnet-example:pending:*").len() <= 3);
    }
    let pending = keys(&t, "erpnet-example:pending:*");
    assert_eq!(pending.len(), 3);
    assert_eq!(t.redis.command(&["ZCARD", "erpnet-example:pending-index"]), ":3");
    for key in &pending {
        let ttl: i64 = t.redis.command(&["PTTL", key]).trim_start_matches(':').parse().unwrap();
        assert!(
            (1..=600_000).contains(&ttl),
            "a pending login expires with its lifetime in Redis too: {ttl}"
        );
        let value = t.redis.command(&["GET", key]);
        assert!(value.contains("\"started\"") && value.contains("\"login\""), "{value}");
    }
    assert_eq!(get(&t, &oldest_url, &oldest).await.status(), 400, "the oldest was dropped");
    assert_eq!(get(&t, &second_url, &second).await.status(), 400);
    assert_eq!(t.mock.counters().authorization_code_grants, 0);

    // The newest still finishes, just before the end of its lifetime, on B.
    clock.advance(Duration::from_millis(5));
    let (newest, authorize) = start(&t, &t.a, None).await;
    let url = fill(&t, &authorize).await;
    clock.advance(PENDING_LOGIN_LIFETIME - Duration::from_secs(1));
    let signed_in = signed_in_cookie(&t, &on(&t.b, &url), &newest).await;
    assert!(is_signed_in(&t, &t.a, &signed_in).await);

    // At the end of its lifetime a login is refused, on either instance.
    let (cookie, authorize) = start(&t, &t.b, None).await;
    let url = fill(&t, &authorize).await;
    clock.advance(PENDING_LOGIN_LIFETIME);
    let r = get(&t, &url, &cookie).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("No login is under way"));
    assert_eq!(t.mock.counters().authorization_code_grants, 1);
    // Expired ones are deleted as new logins start.
    let _ = start(&t, &t.a, None).await;
    assert_eq!(keys(&t, "erpnet-example:pending:*").len(), 1);
    assert!(is_signed_in(&t, &t.b, &signed_in).await, "signed-in users do not expire with pending logins");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_expiry_both_instances_refresh_once_between_them() {
    let t = two().await;
    let cookie = sign_in_through_a(&t).await;
    // Both instances hold the user's session (and its access token) in memory.
    assert_eq!(customers(&t, &t.a, &cookie).await.0, 200);
    assert_eq!(customers(&t, &t.b, &cookie).await.0, 200);
    t.mock.advance_clock(Duration::from_secs(3600 + 60));
    let pages: Vec<_> = (0..16)
        .map(|i| {
            let instance = if i % 2 == 0 { t.a.clone() } else { t.b.clone() };
            let (agent, cookie) = (t.agent.clone(), cookie.clone());
            tokio::spawn(async move {
                let page =
                    agent.get(format!("{instance}/customers")).header("cookie", cookie).send().await.unwrap();
                (page.status(), page.text().await.unwrap())
            })
        })
        .collect();
    for page in pages {
        let (status, html) = page.await.unwrap();
        assert_eq!(status, 200, "{html}");
        assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    }
    let c = t.mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh for 16 pages on two instances");
    assert_eq!(c.invalid_grant_errors, 0, "no rotated refresh token was sent again");
    // And again, one expiry later.
    t.mock.advance_clock(Duration::from_secs(3600 + 60));
    for instance in [&t.b, &t.a, &t.b, &t.a] {
        assert_eq!(customers(&t, instance, &cookie).await.0, 200);
    }
    let c = t.mock.counters();
    assert_eq!((c.refresh_token_grants, c.invalid_grant_errors), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_unreachable_is_a_503_page_and_the_service_comes_back_with_it() {
    let mut t = two_with(Settings { persistence: Some(Persistence::AofAlways), ..Settings::default() }).await;
    let cookie = sign_in_through_a(&t).await;
    assert!(is_signed_in(&t, &t.b, &cookie).await);
    let (pending, authorize) = start(&t, &t.b, None).await;
    let url = fill(&t, &authorize).await;
    let port = t.redis.port().to_string();

    t.redis.kill();
    for instance in [&t.a, &t.b] {
        let requests = [
            t.agent.get(format!("{instance}/")).header("cookie", &cookie),
            t.agent.get(format!("{instance}/customers")).header("cookie", &cookie),
            t.agent.get(format!("{instance}/login")),
            t.agent.get(on(instance, &url)).header("cookie", &pending),
            t.agent.post(format!("{instance}/logout")).header("cookie", &cookie),
        ];
        for request in requests {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 503, "{instance}");
            assert_eq!(r.headers().get("retry-after").unwrap(), "5");
            assert!(r.headers().get("set-cookie").is_none(), "the cookie is kept for when Redis is back");
            let html = r.text().await.unwrap();
            assert!(html.contains("The session store is unavailable"), "{html}");
            assert!(!html.contains(&port) && !html.contains("redis://") && !html.contains("erpnet-example:"));
        }
    }
    assert_eq!(t.mock.counters().authorization_code_grants, 1, "no code exchanged while Redis was down");

    // Back (with what was persisted): the same user on both instances, and the pending login finishes.
    tokio::task::block_in_place(|| t.redis.restart());
    for instance in [&t.a, &t.b] {
        let (status, html) = customers(&t, instance, &cookie).await;
        assert_eq!(status, 200, "{html}");
        assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
    }
    let signed_in = signed_in_cookie(&t, &url, &pending).await;
    assert!(is_signed_in(&t, &t.b, &signed_in).await);
    let c = t.mock.counters();
    assert_eq!((c.authorization_code_grants, c.refresh_token_grants, c.invalid_grant_errors), (2, 0, 0));

    // Redis restarts with no request meanwhile (every connection the instances hold is dropped), and the
    // access tokens expire: each page is served, after one refresh between the two instances.
    tokio::task::block_in_place(|| t.redis.restart());
    t.mock.advance_clock(Duration::from_secs(3600 + 60));
    for instance in [&t.a, &t.b, &t.a, &t.b] {
        for cookie in [&cookie, &signed_in] {
            let (status, html) = customers(&t, instance, cookie).await;
            assert_eq!(status, 200, "{html}");
            assert_eq!(html.matches("<tr class=\"customer\">").count(), 10);
        }
    }
    let c = t.mock.counters();
    assert_eq!(c.refresh_token_grants, 2, "one refresh for each of the two users");
    assert_eq!(c.invalid_grant_errors, 0);
}
