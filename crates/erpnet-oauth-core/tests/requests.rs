//! Snapshots of every request the core builds: method, URI, headers and decoded form body.
//!
//! Random values (state, nonce, PKCE verifier and challenge) come from `SeededRandom`, and are then
//! redacted in the snapshot after their form is checked here, so a change in how the seeded stream is
//! drawn does not churn the snapshots while a change in what is sent does.

use base64::Engine as _;
use erpnet_oauth_core::*;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A request as the snapshots show it.
#[derive(Serialize)]
struct Snap {
    method: String,
    /// The URI byte for byte (random values replaced by `[name]`).
    uri: String,
    /// The query, decoded, in order, as `name=value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    query: Vec<String>,
    /// Every header the core sets, `Host` first (from the URI's authority), as `Name: value`.
    headers: Vec<String>,
    /// `Authorization: Basic`, decoded: the form-encoded `id:secret` (RFC 6749 §2.3.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_credentials: Option<String>,
    /// The form body, decoded, in order, as `name=value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    form: Vec<String>,
    /// The form body as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body: Option<String>,
}

fn pairs(s: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn joined(p: &[(String, String)]) -> Vec<String> {
    p.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Snapshots `request`, replacing the values of the parameters named in `random` (query or form) by
/// `[name]`, after checking that each is 43 base64url characters (32 random bytes).
fn snap(request: &http::Request<Vec<u8>>, random: &[&str]) -> Snap {
    let uri = request.uri();
    let mut query = uri.query().map(|q| pairs(q.as_bytes())).unwrap_or_default();
    let mut form = pairs(request.body());
    let mut raw_uri = uri.to_string();
    let mut raw_body = String::from_utf8(request.body().clone()).expect("form bodies are ASCII");
    for list in [&mut query, &mut form] {
        for (name, value) in list.iter_mut() {
            if random.contains(&name.as_str()) {
                assert_eq!(value.len(), 43, "{name} is 43 characters");
                assert!(
                    value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{name} is base64url"
                );
                raw_uri = raw_uri.replace(value.as_str(), &format!("[{name}]"));
                raw_body = raw_body.replace(value.as_str(), &format!("[{name}]"));
                *value = format!("[{name}]");
            }
        }
    }
    let mut headers = vec![format!("Host: {}", uri.authority().expect("absolute URIs").as_str())];
    let mut basic_credentials = None;
    for (name, value) in request.headers() {
        let value = value.to_str().expect("ASCII header values");
        headers.push(format!("{name}: {value}"));
        if let Some(b64) = value.strip_prefix("Basic ") {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
            basic_credentials = Some(String::from_utf8(raw).expect("ASCII credentials"));
        }
    }
    Snap {
        method: request.method().to_string(),
        uri: raw_uri,
        query: joined(&query),
        headers,
        basic_credentials,
        form: joined(&form),
        raw_body: (!raw_body.is_empty()).then_some(raw_body),
    }
}

/// The browser's GET for an authorization URL.
fn url_request(url: &str) -> http::Request<Vec<u8>> {
    http::Request::get(url).body(Vec::new()).expect("a valid URL")
}

const INSTANCE: &str = "https://demodb.my.erp.net";
const REDIRECT: &str = "http://localhost/signin-callback";

fn post_client() -> ClientConfig {
    ClientConfig::builder(INSTANCE, "my.trusted.app/first")
        .client_secret(ClientSecret::new("<my_plain_app_secret>"))
        .redirect_uri(REDIRECT)
        .build()
        .expect("a valid configuration")
}

/// A client id with `/` and a secret with every character RFC 6749 §2.3.1's encoding changes.
fn basic_client() -> ClientConfig {
    ClientConfig::builder(INSTANCE, "my.trusted.app/first")
        .client_secret(ClientSecret::new("p@ss:w/rd+ &=%é"))
        .auth_method(AuthMethod::ClientSecretBasic)
        .redirect_uri(REDIRECT)
        .build()
        .expect("a valid configuration")
}

fn public_client() -> ClientConfig {
    ClientConfig::builder(INSTANCE, "my.public.app/cli")
        .redirect_uri("http://127.0.0.1:8400/signin-callback")
        .build()
        .expect("a valid configuration")
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_655_057_724)
}

/// A login up to its code exchange request.
fn code_exchange(client: &ClientConfig, seed: u64) -> http::Request<Vec<u8>> {
    let pending = AuthorizationRequest::new().build(client, &mut SeededRandom::new(seed)).expect("built");
    let callback = format!("code=g0ZGZmNjVmOWI&state={}", pending.state());
    let exchange = pending.handle_callback(client, Callback::Query(&callback)).expect("accepted");
    exchange.into_request(client).0
}

#[test]
fn authorize_url_default() {
    let pending =
        AuthorizationRequest::new().build(&post_client(), &mut SeededRandom::new(1)).expect("built");
    insta::assert_yaml_snapshot!(snap(
        &url_request(pending.authorize_url()),
        &["state", "nonce", "code_challenge"]
    ));
}

#[test]
fn authorize_url_seed() {
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .state("xyz")
        .nonce("abc")
        .without_pkce()
        .build(&post_client(), &mut SeededRandom::new(1))
        .expect("built");
    insta::assert_yaml_snapshot!(snap(&url_request(pending.authorize_url()), &[]));
}

#[test]
fn authorize_url_hybrid_form_post_prompt_extra() {
    let pending = AuthorizationRequest::new()
        .response_type(ResponseType::CodeIdToken)
        .response_mode(ResponseMode::FormPost)
        .prompt("login")
        .scope("openid DomainApi")
        .extra("ui_locales", "bg en")
        .extra("acr_values", "idp:local")
        .build(&post_client(), &mut SeededRandom::new(2))
        .expect("built");
    insta::assert_yaml_snapshot!(snap(
        &url_request(pending.authorize_url()),
        &["state", "nonce", "code_challenge"]
    ));
}

#[test]
fn code_exchange_client_secret_post() {
    insta::assert_yaml_snapshot!(snap(&code_exchange(&post_client(), 3), &["code_verifier"]));
}

#[test]
fn code_exchange_client_secret_basic() {
    insta::assert_yaml_snapshot!(snap(&code_exchange(&basic_client(), 4), &["code_verifier"]));
}

#[test]
fn code_exchange_public_client() {
    insta::assert_yaml_snapshot!(snap(&code_exchange(&public_client(), 5), &["code_verifier"]));
}

#[test]
fn refresh_request_client_secret_post() {
    let rt = RefreshToken::new("6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw");
    insta::assert_yaml_snapshot!(snap(&post_client().token_request(Grant::RefreshToken(&rt)), &[]));
}

#[test]
fn refresh_request_client_secret_basic() {
    let rt = RefreshToken::new("6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw");
    insta::assert_yaml_snapshot!(snap(&basic_client().token_request(Grant::RefreshToken(&rt)), &[]));
}

#[test]
fn client_credentials_request() {
    let client = ClientConfig::builder(INSTANCE, "my.service.app/sync")
        .client_secret(ClientSecret::new("service-secret"))
        .build()
        .expect("a valid configuration");
    let scopes = Scopes::parse("DomainApi update");
    insta::assert_yaml_snapshot!(snap(
        &client.token_request(Grant::ClientCredentials { scopes: &scopes }),
        &[]
    ));
}

#[test]
fn domain_api_call_with_bearer() {
    let tokens = TokenSet {
        access_token: AccessToken::new("at-1"),
        expires_at: Some(now() + Duration::from_secs(3600)),
        issued_at: None,
        refresh_token: Some(RefreshToken::new("rt-1")),
        id_token: None,
        scopes: Scopes::erpnet_default(),
    };
    let mut manager = TokenManager::new(post_client(), Some(tokens), ManagerOptions::default());
    let mut call = manager.begin_call();
    let mut request = http::Request::get(format!("{INSTANCE}/api/domain/odata/Crm_Customers?$top=10"))
        .body(Vec::new())
        .expect("a valid URL");
    assert!(matches!(manager.authorize(&mut call, &mut request, now()), Access::Ready(())));
    insta::assert_yaml_snapshot!(snap(&request, &[]));
}

#[test]
fn discovery_jwks_userinfo_and_revocation_requests() {
    let client = post_client();
    let rt = RefreshToken::new("rt-1");
    let requests = [
        client.discovery_request(),
        client.jwks_request().expect("ERP.net's JWKS URI"),
        client.userinfo_request(&AccessToken::new("at-1")).expect("ERP.net's userinfo endpoint"),
        client.revocation_request(&rt).expect("ERP.net's revocation endpoint"),
    ];
    let snaps: Vec<Snap> = requests.iter().map(|r| snap(r, &[])).collect();
    insta::assert_yaml_snapshot!(snaps);
}

#[test]
fn end_session_url() {
    let id_token = IdToken::new("h.p.s");
    let url = post_client()
        .end_session_url(&EndSession {
            id_token_hint: Some(&id_token),
            post_logout_redirect_uri: Some("http://localhost/signed-out"),
            state: Some("bye"),
        })
        .expect("ERP.net's end-session endpoint");
    insta::assert_yaml_snapshot!(snap(&url_request(&url), &[]));
}
