//! `erpnet-oauth demo`: the seed's whole story against an embedded mock ERP.net, each exchange printed
//! as the seed shows it, tokens and secrets shortened to their last 6 characters. And `erpnet-oauth mock`.
//!
//! The demo drives the sans-IO core step by step (that is what lets it print every exchange), sending each
//! request with the blocking adapter's HTTP client.

use crate::exit::Failure;
use erpnet_oauth_core::jwks::JwkSet;
use erpnet_oauth_core::{
    Access, ApiOutcome, AuthorizationRequest, Callback, ClientConfig, ClientSecret, ManagerOptions, Output,
    ResponseType, TokenManager,
};
use erpnet_oauth_mock::{MockConfig, MockErpNet};
use erpnet_oauth_ureq::{HttpClient, HttpOptions, OsRandom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// `erpnet-oauth mock [--port N] [--config FILE]`: the configuration of `--config` (or the default one),
/// with `redirect_uri` (the global `--redirect-uri` / `ERPNET_REDIRECT_URI`, when set) registered with each of
/// its applications in addition to their own, so that a login on another port than the guide's 8400 works.
pub fn mock(port: u16, config: Option<&Path>, redirect_uri: Option<&str>) -> Result<(), Failure> {
    let mut config = match config {
        Some(path) => MockConfig::from_file(path).map_err(|e| {
            Failure::usage(format!("cannot use the mock configuration {}: {e}", path.display()))
        })?,
        None => MockConfig::default(),
    };
    if let Some(uri) = redirect_uri {
        if url::Url::parse(uri).is_err() {
            return Err(Failure::usage(format!(
                "the redirect URI `{}` is not a URL",
                erpnet_oauth_core::escape(uri)
            )));
        }
        for app in &mut config.apps {
            if !app.impersonate_login_urls.iter().any(|u| u == uri) {
                app.impersonate_login_urls.push(uri.to_owned());
            }
        }
    }
    erpnet_oauth_mock::run_foreground(config, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|e| Failure::usage(format!("cannot start the mock on 127.0.0.1:{port}: {e}")))
}

/// Names whose values are secrets or tokens: shortened wherever they are printed.
const SECRET_FIELDS: &[&str] =
    &["client_secret", "code", "refresh_token", "access_token", "id_token", "code_verifier", "token"];

/// `…` and the last 6 characters.
fn short(value: &str) -> String {
    let n = value.chars().count();
    format!("…{}", value.chars().skip(n.saturating_sub(6)).collect::<String>())
}

fn shown(name: &str, value: &str) -> String {
    if SECRET_FIELDS.contains(&name) { short(value) } else { value.to_owned() }
}

fn step(n: u32, title: &str) {
    println!("\n=== {n}. {title}\n");
}

fn deviation(what: impl std::fmt::Display) -> Failure {
    Failure::server(format!("demo: {what}"))
}

/// Prints a request the way the seed does: query parameters and form fields one per line, decoded.
fn print_request(method: &str, url: &str, headers: &http::HeaderMap, body: &[u8]) {
    let parsed = url::Url::parse(url).ok();
    let host = parsed
        .as_ref()
        .map(|u| {
            format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default())
        })
        .unwrap_or_default();
    let path = parsed.as_ref().map(|u| u.path().to_owned()).unwrap_or_default();
    let query: Vec<(String, String)> = parsed
        .as_ref()
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let raw_query = parsed.as_ref().and_then(|u| u.query()).unwrap_or("");
    if query.is_empty() {
        println!("{method} {path} HTTP/1.1");
    } else if raw_query.starts_with('$') {
        // OData queries read best as they are.
        println!("{method} {path}?{raw_query} HTTP/1.1");
    } else {
        println!("{method} {path}?");
        let last = query.len().saturating_sub(1);
        for (i, (k, v)) in query.iter().enumerate() {
            println!("    {k}={}{}", shown(k, v), if i == last { " HTTP/1.1" } else { "&" });
        }
    }
    println!("Host: {host}");
    for (name, value) in headers {
        let v = value.to_str().unwrap_or("");
        let v = match v.split_once(' ') {
            Some((scheme, cred)) if name == http::header::AUTHORIZATION => {
                format!("{scheme} {}", short(cred))
            }
            _ => v.to_owned(),
        };
        println!("{}: {v}", title_case(name.as_str()));
    }
    if !body.is_empty() {
        println!();
        let fields: Vec<(String, String)> =
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let last = fields.len().saturating_sub(1);
        for (i, (k, v)) in fields.iter().enumerate() {
            println!("{k}={}{}", shown(k, v), if i == last { "" } else { "&" });
        }
    }
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Prints a response: status, the headers that matter, and a JSON body with tokens shortened.
fn print_response(response: &http::Response<Vec<u8>>, body_lines: usize) {
    let status = response.status();
    println!("\nHTTP/1.1 {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    for name in [http::header::LOCATION, http::header::WWW_AUTHENTICATE, http::header::CONTENT_TYPE] {
        if let Some(v) = response.headers().get(&name).and_then(|v| v.to_str().ok()) {
            let v = if name == http::header::LOCATION { redact_url(v) } else { v.to_owned() };
            println!("{}: {v}", title_case(name.as_str()));
        }
    }
    if body_lines == 0 || response.body().is_empty() {
        return;
    }
    println!();
    match serde_json::from_slice::<serde_json::Value>(response.body()) {
        Ok(serde_json::Value::Object(map)) if map.get("value").is_some_and(|v| v.is_array()) => {
            // An OData collection: one line per row.
            println!("{{");
            if let Some(ctx) = map.get("@odata.context") {
                println!("  \"@odata.context\": {ctx},");
            }
            println!("  \"value\": [");
            let rows = map.get("value").and_then(|v| v.as_array()).cloned().unwrap_or_default();
            for row in rows.iter().take(body_lines) {
                // The columns a person looks at first, then the rest, shortened.
                let line = match row {
                    serde_json::Value::Object(fields) => {
                        let first = ["Number", "PartyName"];
                        let pairs = first
                            .iter()
                            .filter_map(|k| fields.get(*k).map(|v| (*k, v)))
                            .chain(
                                fields
                                    .iter()
                                    .filter(|(k, _)| !first.contains(&k.as_str()))
                                    .map(|(k, v)| (k.as_str(), v)),
                            )
                            .map(|(k, v)| format!("\"{k}\":{v}"))
                            .collect::<Vec<_>>();
                        format!("{{{}}}", pairs.join(","))
                    }
                    other => other.to_string(),
                };
                let cut: String = line.chars().take(100).collect();
                println!("    {cut}{}", if cut.len() < line.len() { "…" } else { "" });
            }
            if rows.len() > body_lines {
                println!("    ... ({} more rows)", rows.len() - body_lines);
            }
            println!("  ]\n}}");
        }
        Ok(mut json) => {
            redact_json(&mut json);
            let text = serde_json::to_string_pretty(&json).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for line in lines.iter().take(body_lines) {
                println!("{line}");
            }
            if lines.len() > body_lines {
                println!("  ... ({} more lines)", lines.len() - body_lines);
            }
        }
        Err(_) => println!(
            "({} bytes of {})",
            response.body().len(),
            response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("content")
        ),
    }
}

fn redact_json(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        for (k, val) in map.iter_mut() {
            match val {
                serde_json::Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => *s = short(s),
                other => redact_json(other),
            }
        }
    } else if let serde_json::Value::Array(items) = v {
        items.iter_mut().for_each(redact_json);
    }
}

fn redact_url(u: &str) -> String {
    let Ok(mut url) = url::Url::parse(u) else { return u.to_owned() };
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.to_string(), shown(&k, &v))).collect();
    if pairs.is_empty() {
        return u.to_owned();
    }
    let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    url.set_query(None);
    format!("{url}?{query}")
}

fn send(http: &HttpClient, request: &http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Failure> {
    http.send(request, 4 << 20).map_err(crate::errors::failure)
}

/// `erpnet-oauth demo`.
pub fn run(_verbose: bool) -> Result<(), Failure> {
    let mock = MockErpNet::start(MockConfig::seed_manual_clock())
        .map_err(|e| Failure::usage(format!("cannot start the embedded mock ERP.net: {e}")))?;
    let instance = mock.base_url();
    println!("The seed's story against a mock ERP.net at {instance} (manual clock).");
    println!(
        "Trusted application: {} (confidential), redirect URI {}",
        erpnet_oauth_mock::DEMO_CLIENT_ID,
        erpnet_oauth_mock::DEMO_REDIRECT_URI
    );
    let client = ClientConfig::builder(&instance, erpnet_oauth_mock::DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(erpnet_oauth_mock::DEMO_CLIENT_SECRET))
        .redirect_uri(erpnet_oauth_mock::DEMO_REDIRECT_URI)
        .iss_parameter_supported(true)
        .build()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let http = HttpClient::new(HttpOptions::default().timeout(Duration::from_secs(10)));

    // 1. Authorize endpoint, as in the seed: response_type `code id_token`, the seed's scopes, a nonce and
    // a state (fresh random values here), plus PKCE S256.
    step(1, "Authorize endpoint");
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .scope("openid profile offline_access DomainApi")
        .build(&client, &mut OsRandom)
        .map_err(deviation)?;
    let authorize = http::Request::get(pending.authorize_url()).body(Vec::new()).map_err(deviation)?;
    print_request("GET", pending.authorize_url(), authorize.headers(), &[]);
    let page = send(&http, &authorize)?;
    print_response(&page, 0);
    if page.status() != http::StatusCode::OK {
        return Err(deviation(format!(
            "the authorize endpoint answered {}, not the login form",
            page.status()
        )));
    }
    let request_id = page
        .headers()
        .get(erpnet_oauth_mock::LOGIN_REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| deviation("the login page has no login request id"))?
        .to_owned();
    println!("(the ERP.net login form)");

    // 2. The user logs in: the demo fills in the form as the browser would.
    step(2, "The user logs in on the ERP.net login form (filled in by the demo)");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request_id", &request_id)
        .append_pair("username", erpnet_oauth_mock::DEMO_USER)
        .append_pair("password", erpnet_oauth_mock::DEMO_PASSWORD)
        .append_pair("button", "login")
        .finish();
    let login_url = format!("{instance}{}", erpnet_oauth_mock::LOGIN_PATH);
    let login_request = http::Request::post(&login_url)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.into_bytes())
        .map_err(deviation)?;
    println!(
        "POST {} HTTP/1.1\nHost: {}\n\nrequest_id=…&username={}&password=…",
        erpnet_oauth_mock::LOGIN_PATH,
        instance.trim_start_matches("http://"),
        erpnet_oauth_mock::DEMO_USER
    );
    let redirect = send(&http, &login_request)?;
    print_response(&redirect, 0);
    let location = redirect
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| deviation(format!("the login answered {} without a redirect", redirect.status())))?
        .to_owned();

    // 3. Sign in callback.
    step(3, "Sign in callback (the browser comes back to the redirect URI)");
    println!(
        "GET {} HTTP/1.1\nHost: localhost",
        redact_url(&location).trim_start_matches("http://localhost")
    );
    let mut exchange = pending.handle_callback(&client, Callback::Url(&location)).map_err(deviation)?;
    println!("\nstate and iss checked.");
    let jwks_request = client.jwks_request().map_err(deviation)?;
    let keys = JwkSet::parse(&send(&http, &jwks_request)?).map_err(deviation)?;
    match exchange
        .verify_front_channel(&client, &keys, mock.now())
        .map_err(|e| deviation(format!("front-channel ID token rejected: {e}")))?
    {
        Some(claims) => {
            println!(
                "Front-channel ID token verified (signature, nonce, c_hash): sub={}",
                erpnet_oauth_core::escape(&claims.sub)
            )
        }
        None => println!("No front-channel ID token."),
    }

    // 4. Token endpoint: the code exchange.
    step(4, "Token endpoint (authorization code)");
    let (request, waiting) = exchange.into_request(&client);
    print_request("POST", &request.uri().to_string(), request.headers(), request.body());
    let response = send(&http, &request)?;
    print_response(&response, 20);
    let login = waiting.handle_response(&response, mock.now()).map_err(deviation)?;
    let login =
        login.verify(&client, &keys, mock.now()).map_err(|e| deviation(format!("ID token rejected: {e}")))?;
    let sub =
        login.claims.as_ref().map(|c| c.sub.clone()).ok_or_else(|| deviation("no ID token was issued"))?;
    println!(
        "\nID token verified (signature, iss, aud, exp, nonce, at_hash): logged in as {}",
        erpnet_oauth_core::escape(&sub)
    );
    let first_refresh =
        login.tokens.refresh_token.clone().ok_or_else(|| deviation("no refresh token was issued"))?;

    // 5. Authorized Domain API call.
    let mut manager = TokenManager::new(client.clone(), Some(login.tokens), ManagerOptions::default());
    let api_url = format!("{instance}/api/domain/odata/Crm_Customers?$top=10");
    step(5, "Authorized Domain API call");
    let rows = api_call(&mut manager, &http, mock.now(), &api_url, false)?;
    println!("\n{rows} customers received.");

    // 6. An hour later the access token has expired at the server. The client's clock is held where it
    // was, so that, as in the seed, the server's 401 is what tells it; with a running clock the manager
    // would have refreshed before the call (a token within 60 s of expiry is never sent).
    let client_now = mock.now();
    mock.advance_clock(Duration::from_secs(3601));
    step(6, "One hour later (the mock's clock moved 3601 s): the same call gets 401, then the renewal");
    let rows = api_call(&mut manager, &http, client_now, &api_url, true)?;
    let tokens = manager.tokens().ok_or_else(|| deviation("the tokens were lost"))?;
    let new_refresh = tokens.refresh_token.clone().ok_or_else(|| deviation("the refresh token was lost"))?;
    if new_refresh == first_refresh {
        return Err(deviation("the refresh token was not rotated"));
    }
    println!("\n{rows} customers received with the renewed access token.");
    println!(
        "Refresh token rotated: {} -> {} (the old one is now revoked and is never sent again).",
        first_refresh.tail(6),
        new_refresh.tail(6)
    );

    let c = mock.counters();
    println!(
        "\nDone. The mock counted {} authorization code grant, {} refresh grant, {} Domain API calls ({} answered 401), {} invalid_grant.",
        c.authorization_code_grants,
        c.refresh_token_grants,
        c.api_calls,
        c.api_unauthorized,
        c.invalid_grant_errors
    );
    if (c.authorization_code_grants, c.refresh_token_grants, c.api_unauthorized, c.invalid_grant_errors)
        != (1, 1, 1, 0)
    {
        return Err(deviation("the mock's counters differ from the seed's story"));
    }
    Ok(())
}

/// One authorized call through the token manager, printing every exchange, the 401 and the refresh included.
/// Returns the number of rows.
fn api_call(
    manager: &mut TokenManager,
    http: &HttpClient,
    now: std::time::SystemTime,
    url: &str,
    expect_refresh: bool,
) -> Result<usize, Failure> {
    let mut call = manager.begin_call();
    let mut refreshed = false;
    loop {
        let mut request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(deviation)?;
        match manager.authorize(&mut call, &mut request, now) {
            Access::Ready(()) => {}
            Access::Failed(e) => return Err(deviation(e)),
            Access::Wait => {
                let mut handled = 0;
                while let Some(output) = manager.poll_output() {
                    handled += 1;
                    match output {
                        Output::Refresh { id, request } => {
                            println!("\n--- Access token renewal\n");
                            print_request(
                                "POST",
                                &request.uri().to_string(),
                                request.headers(),
                                request.body(),
                            );
                            let response = send(http, &request)?;
                            print_response(&response, 20);
                            manager.handle_refresh_response(id, &response, now);
                            refreshed = true;
                        }
                        Output::FetchKeys { id, request } => {
                            // The refresh brought a new ID token: it is verified against the issuer's keys
                            // before anything is stored (catalogue E11).
                            println!("\n--- The issuer's signing keys, for the refreshed ID token\n");
                            print_request("GET", &request.uri().to_string(), request.headers(), &[]);
                            let response = send(http, &request)?;
                            print_response(&response, 4);
                            manager.handle_keys_response(id, Ok(&response), now);
                        }
                        Output::Persist { id, tokens: _ } => {
                            // A real application writes the tokens to its store here, before using them.
                            manager.handle_persisted(id, Ok(()), now);
                        }
                        Output::Clear => return Err(deviation("the refresh token was rejected")),
                        _ => {}
                    }
                }
                if handled == 0 {
                    return Err(deviation("the token manager is waiting and asked for nothing"));
                }
                println!("\n--- Retrying the call with the new access token\n");
                continue;
            }
        }
        print_request("GET", url, request.headers(), &[]);
        let response = send(http, &request)?;
        print_response(&response, 8);
        match manager.handle_api_response(&mut call, &response) {
            ApiOutcome::Retry => continue,
            ApiOutcome::Done(Ok(())) => {
                if refreshed != expect_refresh {
                    return Err(deviation(if expect_refresh {
                        "no refresh happened"
                    } else {
                        "an unexpected refresh happened"
                    }));
                }
                let json: serde_json::Value = serde_json::from_slice(response.body())
                    .map_err(|e| deviation(format!("the API's answer is not JSON: {e}")))?;
                return Ok(json.get("value").and_then(|v| v.as_array()).map(Vec::len).unwrap_or(0));
            }
            ApiOutcome::Done(Err(e)) => return Err(deviation(e)),
        }
    }
}
