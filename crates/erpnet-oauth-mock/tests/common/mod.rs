//! Test helpers: a ureq agent that plays the browser and the client, over real HTTP.
#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use erpnet_oauth_mock::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_REDIRECT_URI, DEMO_USER, MockConfig, MockErpNet,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const SEED_SCOPE: &str = "openid profile offline_access DomainApi";

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The parameters of the Location header's query (or fragment).
    pub fn location_params(&self) -> HashMap<String, String> {
        let loc = self.header("location").expect("a Location header");
        let tail = loc.split_once(['?', '#']).map(|x| x.1).unwrap_or("");
        parse_pairs(tail)
    }

    pub fn assert_oauth_error(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.json()["error"], error, "body: {}", self.body);
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("pragma"), Some("no-cache"));
    }
}

pub fn parse_pairs(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

pub fn dec(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().expect("utf-8").into_owned()
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

pub fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut r = r.expect("HTTP exchange");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.body_mut().read_to_string().expect("body");
    Resp { status, headers, body }
}

pub fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.call())
}

pub fn post_form(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], pairs: &[(&str, &str)]) -> Resp {
    let mut req = agent.post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send_form(pairs.iter().copied()))
}

pub fn post_raw(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Resp {
    read(agent.post(url).header("Content-Type", content_type).send(body))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `value="..."` of the `<input name="NAME">` in an HTML page.
pub fn form_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html.get(..at)?.rfind('<')?;
    let tag_end = at + html.get(at..)?.find('>')?;
    let tag = html.get(tag_start..tag_end)?;
    let v = tag.split_once("value=\"")?.1;
    let v = v.split_once('"')?.0;
    Some(
        v.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// Deterministic PKCE pair (RFC 7636 appendix B shape).
pub fn pkce(seed: &str) -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(Sha256::digest(seed.as_bytes()));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn authorize_url(mock: &MockErpNet, params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    format!("{}/connect/authorize?{}", mock.issuer(), q.join("&"))
}

/// The seed's authorize request (hybrid, nonce abc, state xyz).
pub fn seed_authorize_url(mock: &MockErpNet) -> String {
    authorize_url(
        mock,
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("redirect_uri", DEMO_REDIRECT_URI),
            ("response_type", "code id_token"),
            ("scope", SEED_SCOPE),
            ("nonce", "abc"),
            ("state", "xyz"),
        ],
    )
}

/// GET authorize → the login form → POST it; returns the login POST's response.
pub fn login_with(
    agent: &ureq::Agent,
    mock: &MockErpNet,
    auth_url: &str,
    user: &str,
    password: &str,
) -> Resp {
    let page = get(agent, auth_url, &[]);
    assert_eq!(page.status, 200, "login page expected: {}", page.body);
    let rid = form_value(&page.body, "request_id").expect("request_id in the form");
    assert_eq!(page.header("x-mock-login-request"), Some(rid.as_str()));
    assert!(page.body.contains("action=\"/id/account/login\""));
    post_form(
        agent,
        &format!("{}/id/account/login", mock.base_url()),
        &[],
        &[("request_id", &rid), ("username", user), ("password", password), ("button", "login")],
    )
}

/// Logs the demo user in through `auth_url` and returns the redirect's parameters.
pub fn login(agent: &ureq::Agent, mock: &MockErpNet, auth_url: &str) -> HashMap<String, String> {
    let r = login_with(agent, mock, auth_url, DEMO_USER, DEMO_PASSWORD);
    assert_eq!(r.status, 302, "redirect expected: {}", r.body);
    r.location_params()
}

pub fn token_url(mock: &MockErpNet) -> String {
    format!("{}/connect/token", mock.issuer())
}

/// The seed's token request (client_secret_post).
pub fn exchange(agent: &ureq::Agent, mock: &MockErpNet, code: &str) -> Resp {
    post_form(
        agent,
        &token_url(mock),
        &[],
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", DEMO_REDIRECT_URI),
        ],
    )
}

pub fn refresh(agent: &ureq::Agent, mock: &MockErpNet, refresh_token: &str) -> Resp {
    post_form(
        agent,
        &token_url(mock),
        &[],
        &[
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
}

/// Seed flow up to the token response (as JSON).
pub fn seed_tokens(agent: &ureq::Agent, mock: &MockErpNet) -> Value {
    let params = login(agent, mock, &seed_authorize_url(mock));
    let r = exchange(agent, mock, &params["code"]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

pub fn customers_url(mock: &MockErpNet, query: &str) -> String {
    format!("{}/api/domain/odata/Crm_Customers{query}", mock.base_url())
}

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

pub fn jwt_header(token: &str) -> Value {
    segment(token, 0)
}

pub fn jwt_claims(token: &str) -> Value {
    segment(token, 1)
}

pub fn start() -> MockErpNet {
    MockErpNet::start(MockConfig::seed_manual_clock()).expect("mock starts")
}

pub fn start_with(f: impl FnOnce(&mut MockConfig)) -> MockErpNet {
    let mut c = MockConfig::seed_manual_clock();
    f(&mut c);
    MockErpNet::start(c).expect("mock starts")
}
