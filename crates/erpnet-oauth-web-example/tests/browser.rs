//! End to end in headless Chromium: the web example against the mock ERP.net, both on loopback ports,
//! driven over WebDriver (chromedriver). Sign in on the mock's login form, see the customers, let the
//! access token expire, reload (one refresh at the mock), sign out (a revocation at the mock). A session
//! id planted in the browser beforehand is not adopted: the login, then the signed-in session, run under
//! fresh ids.
//!
//! Then two instances of the example against one real redis-server (`REDIS_URL`'s backend): sign in
//! through instance A, load the customers page through instance B (the same browser cookie: cookies are
//! scoped to a host, not to a port, so Chromium sends the cookie A set on `127.0.0.1` to B on another
//! port of `127.0.0.1`, as it would to two instances behind one load balancer), the same user; after the
//! access token's expiry, pages on A and B alternately: exactly one refresh grant; a sign-out on B signs
//! out on A.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium`, `chromium-driver`):
//! run `scripts/install-browser.sh` (as root) first. Screenshots of each page are written to
//! `$CARGO_TARGET_TMPDIR/e2e-screenshots/` (`target/tmp/e2e-screenshots/`).

use erpnet_oauth_mock::{ClockMode, DEMO_PASSWORD, DEMO_USER, MockConfig, MockErpNet};
use erpnet_oauth_redis::test_util::RedisServer;
use erpnet_oauth_web_example::{AppConfig, COOKIE, Options, RedisBackend, SessionBackend, WebApp, router};
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Finds chromedriver and chromium, or fails naming the install script.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = |names: &[&str]| {
        names.iter().map(PathBuf::from).find(|p| p.is_file()).or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
                    .find(|p| p.is_file())
            })
        })
    };
    let driver = find(&["/usr/bin/chromedriver", "chromedriver"]);
    let chromium = find(&["/usr/bin/chromium", "chromium"]);
    match (driver, chromium) {
        (Some(d), Some(c)) => (d, c),
        _ => panic!(
            "chromedriver and chromium are needed for the browser test and were not found: \
             run `scripts/install-browser.sh` (as root; it installs the Debian packages `chromium` and \
             `chromium-driver`), then run the test again"
        ),
    }
}

/// chromedriver on a free loopback port, in a process group of its own; the group (chromedriver and the
/// Chromium it started) is killed when dropped, so a failing test leaves no browser behind.
struct Driver {
    child: Child,
    port: u16,
    /// The WebDriver session was closed (Chromium quit): only chromedriver is left to stop.
    closed: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        #[cfg(unix)]
        if !self.closed {
            let _ = Command::new("kill").arg("-KILL").arg(format!("-{}", self.child.id())).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(driver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(driver);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port, closed: false };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium")
}

async fn screenshot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(name), png).expect("the screenshot is saved");
}

async fn customer_rows(client: &Client) -> usize {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("table#customers"))
        .await
        .expect("the customers table");
    client.find_all(Locator::Css("tr.customer")).await.expect("the rows").len()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_see_customers_refresh_sign_out_in_headless_chromium() {
    let (driver_bin, chromium) = browser_binaries();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);

    // The app first (its port makes the redirect URI), then the mock registering that URI.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let redirect_uri = format!("{app_url}/signin-callback");
    let mock = {
        let redirect_uri = redirect_uri.clone();
        tokio::task::spawn_blocking(move || {
            let mut config =
                MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
            for app in &mut config.apps {
                app.impersonate_login_urls.push(redirect_uri.clone());
            }
            Arc::new(MockErpNet::start(config).unwrap())
        })
        .await
        .unwrap()
    };
    let config = AppConfig {
        instance: mock.base_url(),
        client_id: erpnet_oauth_mock::DEMO_CLIENT_ID.to_owned(),
        client_secret: Some(erpnet_oauth_mock::DEMO_CLIENT_SECRET.to_owned()),
        redirect_uri,
    };
    let app = router(&config).unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let driver = tokio::task::spawn_blocking(move || start_driver(&driver_bin)).await.unwrap();
    let client = connect(&driver, &chromium, &profile).await;

    // Home: signed out, a sign-in link.
    client.goto(&format!("{app_url}/")).await.unwrap();
    client.find(Locator::Id("signed-out")).await.expect("signed out at first");
    screenshot(&client, &shots, "01-home-signed-out.png").await;
    // An attacker planted a session id of their choosing in this browser.
    let planted = "ab".repeat(32);
    let cookie =
        Cookie::parse(format!("{COOKIE}={planted}; Domain=127.0.0.1; Path=/; SameSite=Lax")).unwrap();
    client.add_cookie(cookie).await.unwrap();
    assert_eq!(client.get_named_cookie(COOKIE).await.unwrap().value(), planted);
    client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();

    // The mock's login form.
    let username = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the login form");
    assert!(client.current_url().await.unwrap().as_str().starts_with(&mock.base_url()), "at the mock");
    username.clear().await.unwrap();
    username.send_keys(DEMO_USER).await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(DEMO_PASSWORD).await.unwrap();
    screenshot(&client, &shots, "02-login-form.png").await;
    let pending = client.get_named_cookie(COOKIE).await.expect("the login's cookie").value().to_owned();
    assert_ne!(pending, planted, "the login runs under a fresh id, not the planted one");
    client.find(Locator::Css("button[value=login]")).await.unwrap().click().await.unwrap();

    // Back at the app, on the customers page.
    assert_eq!(customer_rows(&client).await, 10);
    assert!(client.current_url().await.unwrap().as_str().starts_with(&format!("{app_url}/customers")));
    let user = client.find(Locator::Id("user")).await.unwrap().text().await.unwrap();
    assert!(user.contains("Signed in as"), "{user}");
    screenshot(&client, &shots, "03-customers.png").await;
    let signed_in = client.get_named_cookie(COOKIE).await.expect("the session cookie").value().to_owned();
    assert_ne!(signed_in, pending, "the signed-in session has an id of its own");
    assert_ne!(signed_in, planted);
    let c = mock.counters();
    assert_eq!((c.logins, c.authorization_code_grants, c.refresh_token_grants), (1, 1, 0));

    // The access token expires; a reload shows the rows again after exactly one refresh.
    mock.advance_clock(Duration::from_secs(3600 + 60));
    client.refresh().await.unwrap();
    assert_eq!(customer_rows(&client).await, 10);
    screenshot(&client, &shots, "04-customers-after-refresh.png").await;
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh after the expiry");
    assert_eq!(c.invalid_grant_errors, 0);

    // Sign out: revoked at the mock, signed out in the app, the customers page no longer served.
    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("signed-out"))
        .await
        .expect("the signed-out page");
    screenshot(&client, &shots, "05-signed-out.png").await;
    let c = mock.counters();
    assert_eq!(c.revocations, 1, "the refresh token was revoked");
    assert_eq!(c.grants_revoked, 1);
    client.goto(&format!("{app_url}/customers")).await.unwrap();
    client.find(Locator::Id("sign-in")).await.expect("redirected home, signed out");
    assert!(client.find_all(Locator::Css("tr.customer")).await.unwrap().is_empty());

    client.close().await.unwrap();
    let mut driver = driver;
    driver.closed = true;
    drop(driver);
    server.abort();
    let _ = std::fs::remove_dir_all(&profile);
    eprintln!("screenshots in {}", shots.display());
}

async fn user_line(client: &Client) -> String {
    client.find(Locator::Id("user")).await.expect("the user's line").text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_login_served_by_two_instances_on_one_redis_in_headless_chromium() {
    let (driver_bin, chromium) = browser_binaries();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-two-instances-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.unwrap();

    // Two instances on two ports of 127.0.0.1, behind one public URL (here A's: the callback comes back
    // to A), one mock ERP.net, one Redis.
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = format!("http://{}", listener_a.local_addr().unwrap());
    let b = format!("http://{}", listener_b.local_addr().unwrap());
    assert_ne!(a, b);
    let redirect_uri = format!("{a}/signin-callback");
    let mock = {
        let redirect_uri = redirect_uri.clone();
        tokio::task::spawn_blocking(move || {
            let mut config =
                MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
            for app in &mut config.apps {
                app.impersonate_login_urls.push(redirect_uri.clone());
            }
            Arc::new(MockErpNet::start(config).unwrap())
        })
        .await
        .unwrap()
    };
    let config = AppConfig {
        instance: mock.base_url(),
        client_id: erpnet_oauth_mock::DEMO_CLIENT_ID.to_owned(),
        client_secret: Some(erpnet_oauth_mock::DEMO_CLIENT_SECRET.to_owned()),
        redirect_uri,
    };
    let mut servers = Vec::new();
    for listener in [listener_a, listener_b] {
        let backend = SessionBackend::Redis(RedisBackend::open(&redis.url()).unwrap());
        let app = WebApp::new(&config, Options { backend, ..Options::default() }).unwrap().router();
        servers.push(tokio::spawn(async move { axum::serve(listener, app).await }));
    }

    let driver = tokio::task::spawn_blocking(move || start_driver(&driver_bin)).await.unwrap();
    let client = connect(&driver, &chromium, &profile).await;

    // Sign in through A.
    client.goto(&format!("{a}/")).await.unwrap();
    client.find(Locator::Id("sign-in")).await.expect("signed out at first").click().await.unwrap();
    let username = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=username]"))
        .await
        .expect("the login form");
    username.send_keys(DEMO_USER).await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(DEMO_PASSWORD).await.unwrap();
    client.find(Locator::Css("button[value=login]")).await.unwrap().click().await.unwrap();
    assert_eq!(customer_rows(&client).await, 10);
    assert!(client.current_url().await.unwrap().as_str().starts_with(&format!("{a}/customers")));
    let user_on_a = user_line(&client).await;
    assert!(user_on_a.contains("Signed in as"), "{user_on_a}");
    let cookie_on_a = client.get_named_cookie(COOKIE).await.expect("A's session cookie").value().to_owned();
    screenshot(&client, &shots, "11-instance-a-customers.png").await;

    // The customers page through B: the browser sends it the cookie A set (same host, another port), and
    // B, which never saw this browser, serves the same user from Redis.
    client.goto(&format!("{b}/customers")).await.unwrap();
    assert_eq!(customer_rows(&client).await, 10);
    assert!(
        client.current_url().await.unwrap().as_str().starts_with(&format!("{b}/customers")),
        "served by B"
    );
    assert_eq!(user_line(&client).await, user_on_a, "the same user");
    let cookie_on_b =
        client.get_named_cookie(COOKIE).await.expect("the cookie, seen on B").value().to_owned();
    assert_eq!(cookie_on_b, cookie_on_a, "one cookie for both ports of 127.0.0.1");
    screenshot(&client, &shots, "12-instance-b-customers.png").await;
    let c = mock.counters();
    assert_eq!((c.logins, c.authorization_code_grants, c.refresh_token_grants), (1, 1, 0));

    // The access token expires; pages on A and on B, alternately: one refresh between them.
    mock.advance_clock(Duration::from_secs(3600 + 60));
    for (i, instance) in [&a, &b, &a, &b, &b, &a].into_iter().enumerate() {
        client.goto(&format!("{instance}/customers")).await.unwrap();
        assert_eq!(customer_rows(&client).await, 10, "page {i} on {instance}");
        assert_eq!(user_line(&client).await, user_on_a);
    }
    screenshot(&client, &shots, "13-instances-after-refresh.png").await;
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "one refresh after the expiry, for both instances");
    assert_eq!(c.invalid_grant_errors, 0, "no rotated refresh token sent twice");
    assert_eq!(c.authorization_code_grants, 1);

    // Sign out on B: signed out on A too.
    client.goto(&format!("{b}/customers")).await.unwrap();
    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("signed-out"))
        .await
        .expect("the signed-out page");
    assert_eq!(mock.counters().revocations, 1);
    client.goto(&format!("{a}/customers")).await.unwrap();
    client.find(Locator::Id("sign-in")).await.expect("A: redirected home, signed out");
    assert!(client.find_all(Locator::Css("tr.customer")).await.unwrap().is_empty());
    screenshot(&client, &shots, "14-instance-a-after-sign-out-on-b.png").await;

    client.close().await.unwrap();
    let mut driver = driver;
    driver.closed = true;
    drop(driver);
    for server in servers {
        server.abort();
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&profile);
}
