//! The seed document ("renew an access token via a refresh token"), end to end, against a local mock
//! ERP.net that this example starts itself. The example also plays the browser (fills in the login
//! form), so it runs unattended:
//!
//! ```text
//! cargo run -p erpnet-oauth-ureq --example seed
//! ```

use erpnet_oauth_mock::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, LOGIN_PATH, LOGIN_REQUEST_HEADER,
    MockConfig, MockErpNet,
};
use erpnet_oauth_ureq::{
    AuthorizationRequest, ClientConfig, ClientSecret, LoginOutcome, RedirectListener, Session,
};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The console application listens on a loopback redirect URI (port chosen by the OS).
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback")?;
    let redirect_uri = listener.redirect_uri().to_owned();

    // A fake ERP.net whose trusted app `my.trusted.app/first` allows that redirect URI.
    let mut config = MockConfig::seed_manual_clock();
    for app in &mut config.apps {
        app.impersonate_login_urls.push(redirect_uri.clone());
    }
    let mock = std::sync::Arc::new(MockErpNet::start(config)?);
    println!("0. A mock ERP.net instance runs at {}", mock.base_url());

    let client = ClientConfig::builder(&mock.base_url(), DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(&redirect_uri)
        .build()?;
    // The mock's clock stands at the seed's date: the session reads the same clock, as the client and the
    // server of the seed agree on the time.
    let clock = {
        let mock = mock.clone();
        move || mock.now()
    };
    let session = Session::builder(client).clock(clock).build()?;

    // Authorize endpoint.
    let pending = session.start_login(AuthorizationRequest::new())?;
    println!("1. Authorize endpoint: GET {}", pending.authorize_url());

    // The "browser": shows the login form, posts the credentials, follows the redirect to the listener.
    let authorize_url = pending.authorize_url().to_owned();
    let base = mock.base_url();
    let browser = std::thread::spawn(move || -> Result<(), ureq::Error> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
        let form = agent.get(&authorize_url).call()?;
        let request_id = form
            .headers()
            .get(LOGIN_REQUEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = agent.post(&format!("{base}{LOGIN_PATH}")).send_form([
            ("request_id", request_id.as_str()),
            ("username", DEMO_USER),
            ("password", DEMO_PASSWORD),
            ("button", "login"),
        ])?;
        let location = answer.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
        agent.get(location).call()?;
        Ok(())
    });

    // Sign-in callback.
    let listener = listener.timeout(Duration::from_secs(30));
    let callback = listener.wait(&pending)?;
    println!("2. Sign-in callback received at {redirect_uri}");

    // Token endpoint; then the browser's page says how the login ended.
    let login = session.finish_login(pending, callback.as_callback())?;
    listener.reply(LoginOutcome::LoggedIn { user: login.claims.as_ref().map(|c| c.sub.as_str()) });
    browser.join().map_err(|_| "the browser thread panicked")??;
    if let Some(claims) = &login.claims {
        println!(
            "   ID token verified (signature, issuer, audience, expiry, nonce): the user is {}",
            claims.sub
        );
    }
    let tokens = login.tokens;
    println!(
        "3. Token endpoint: access token {}, refresh token {}, scope `{}`",
        tokens.access_token.tail(8),
        tokens.refresh_token.as_ref().map(|t| t.tail(8)).unwrap_or_default(),
        tokens.scopes
    );

    // Authorized Domain API call.
    let response = session.get("/api/domain/odata/Crm_Customers?$top=10")?;
    let body: serde_json::Value = serde_json::from_slice(response.body())?;
    let count = body["value"].as_array().map(Vec::len).unwrap_or(0);
    println!("4. GET /api/domain/odata/Crm_Customers?$top=10 -> {} ({count} customers)", response.status());

    // An hour passes: the access token expires; the next call gets 401, refreshes once, retries.
    mock.advance_clock(Duration::from_secs(3601));
    println!("5. One hour later (the mock's clock moved 3601 s)...");
    let response = session.get("/api/domain/odata/Crm_Customers?$top=10")?;
    let renewed = session.tokens().ok_or("no tokens")?;
    // The session's clock says the token has expired, so it renews before the call (catalogue E8); a client
    // whose clock still trusted the token would meet the seed's 401, renew, and retry once.
    let how =
        if mock.counters().api_unauthorized > 0 { "GET -> 401, refresh, retry" } else { "refresh, then GET" };
    println!(
        "6. Access token renewal: {how} -> {}; new access token {}, new refresh token {}",
        response.status(),
        renewed.access_token.tail(8),
        renewed.refresh_token.as_ref().map(|t| t.tail(8)).unwrap_or_default()
    );

    let c = mock.counters();
    println!(
        "Mock counters: {} authorization_code grant, {} refresh_token grant, {} invalid_grant, {} API calls ({} answered 401)",
        c.authorization_code_grants,
        c.refresh_token_grants,
        c.invalid_grant_errors,
        c.api_calls,
        c.api_unauthorized
    );
    Ok(())
}
