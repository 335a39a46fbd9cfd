//! Back-channel endpoints: token and revocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::config::{ClientType, TrustedApp};
use crate::keys;
use crate::state::{Grant, RefreshRecord, Shared, is_identity_scope};
use crate::util::{Params, ReadError, is_form, json, no_store, oauth_error, read_body};

/// An OAuth error to answer with (RFC 6749 §5.2).
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_challenge: bool,
}

fn err(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        status: StatusCode::BAD_REQUEST,
        error,
        description: description.into(),
        basic_challenge: false,
    }
}

fn invalid_client(description: impl Into<String>, basic: bool) -> OAuthError {
    OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: description.into(),
        basic_challenge: basic,
    }
}

impl OAuthError {
    fn into_response(self, s: &Shared) -> Response {
        match self.error {
            "invalid_grant" => {
                s.counters.invalid_grant_errors.fetch_add(1, Ordering::Relaxed);
            }
            "invalid_client" => {
                s.counters.invalid_client_errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let mut r = oauth_error(self.status, self.error, &self.description);
        if self.basic_challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"erpnet-oauth-mock\""),
            );
        }
        r
    }
}

/// Reads and parses a form body (`Content-Type`, size, duplicates, encoding).
async fn read_form(s: &Shared, req: Request) -> Result<(HeaderMap, Params), OAuthError> {
    if !is_form(req.headers()) {
        return Err(err("invalid_request", "Content-Type must be application/x-www-form-urlencoded"));
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, s.config.max_body_bytes).await.map_err(|e| match e {
        ReadError::TooLarge => OAuthError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: "invalid_request",
            description: "Request body too large".into(),
            basic_challenge: false,
        },
        ReadError::Broken => err("invalid_request", "Broken request body"),
    })?;
    let form = Params::parse(&body).map_err(|e| err("invalid_request", e.describe()))?;
    Ok((parts.headers, form))
}

fn form_decode(raw: &str) -> Option<String> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8().ok().map(|c| c.into_owned())
}

/// Client authentication: `client_secret_basic` (RFC 6749 §2.3.1, form-encoded id and secret) or
/// `client_secret_post`, never both; public clients send only `client_id`.
fn authenticate<'a>(s: &'a Shared, headers: &HeaderMap, form: &Params) -> Result<&'a TrustedApp, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        Some(Ok(v)) if v.len() > 6 && v.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")) => {
            let decoded = v
                .get(6..)
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid_client("Malformed Basic authorization header", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_client("Malformed Basic authorization header", true))?;
            let id = form_decode(id).ok_or_else(|| invalid_client("Malformed client id", true))?;
            let secret =
                form_decode(secret).ok_or_else(|| invalid_client("Malformed client secret", true))?;
            Some((id, secret))
        }
        Some(Err(_)) => return Err(invalid_client("Malformed authorization header", false)),
        _ => None,
    };
    let (client_id, secret, via_basic) = match basic {
        Some((id, secret)) => {
            if form.get("client_secret").is_some() {
                return Err(err(
                    "invalid_request",
                    "Multiple client authentication methods (Basic and client_secret)",
                ));
            }
            if form.get("client_id").is_some_and(|b| b != id) {
                return Err(err("invalid_request", "client_id differs from the Basic credentials"));
            }
            (id, Some(secret).filter(|s| !s.is_empty()), true)
        }
        None => match form.get("client_id") {
            Some(id) => (id.to_owned(), form.get("client_secret").map(str::to_owned), false),
            None => return Err(invalid_client("No client id found", false)),
        },
    };
    let app = s
        .apps
        .get(&client_id)
        .filter(|a| a.is_enabled)
        .ok_or_else(|| invalid_client("Unknown or disabled client", via_basic))?;
    if app.client_type == ClientType::Confidential {
        let stored = app.application_secret_hash.as_deref().unwrap_or("");
        match secret {
            None => return Err(invalid_client("No client secret provided", via_basic)),
            Some(sec) if !crate::state::secret_matches(&sec, stored) => {
                return Err(invalid_client("Invalid client secret", via_basic));
            }
            Some(_) => {}
        }
    }
    Ok(app)
}

fn token_ok(body: &serde_json::Value) -> Response {
    no_store(json(StatusCode::OK, body))
}

pub(crate) async fn token(State(s): State<Arc<Shared>>, req: Request) -> Response {
    s.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    match token_inner(&s, req).await {
        Ok(r) => r,
        Err(e) => {
            s.counters.token_errors.fetch_add(1, Ordering::Relaxed);
            e.into_response(&s)
        }
    }
}

async fn token_inner(s: &Shared, req: Request) -> Result<Response, OAuthError> {
    let (headers, form) = read_form(s, req).await?;
    let app = authenticate(s, &headers, &form)?;
    match form.get("grant_type") {
        None => Err(err("invalid_request", "grant_type is missing")),
        Some("authorization_code") => authorization_code(s, app, &form),
        Some("refresh_token") => refresh_token(s, app, &form),
        Some("client_credentials") => client_credentials(s, app, &form),
        Some(_) => Err(err("unsupported_grant_type", "Grant type not supported")),
    }
}

fn issue_failed(e: std::io::Error) -> OAuthError {
    OAuthError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        description: e.to_string(),
        basic_challenge: false,
    }
}

fn authorization_code(s: &Shared, app: &TrustedApp, form: &Params) -> Result<Response, OAuthError> {
    let code = form.get("code").ok_or_else(|| err("invalid_request", "code is missing"))?;
    let redirect_uri =
        form.get("redirect_uri").ok_or_else(|| err("invalid_request", "redirect_uri is missing"))?;
    let verifier = form.get("code_verifier");
    let now = s.clock.now_secs();
    let mut store = s.store();
    let rec = store.codes.get_mut(code).ok_or_else(|| err("invalid_grant", "Invalid authorization code"))?;
    if rec.req.client_id != app.application_uri {
        return Err(err("invalid_grant", "Client is not the one the code was issued to"));
    }
    if rec.used {
        let grant = rec.grant;
        if let (Some(g), true) = (grant, s.config.revoke_grant_on_code_reuse) {
            s.revoke_grant(&mut store, g);
        }
        return Err(err("invalid_grant", "Authorization code already used"));
    }
    // From here on the code is consumed, whatever the outcome (as IdentityServer removes it).
    rec.used = true;
    if rec.created.saturating_add(s.config.code_lifetime.as_secs()) <= now {
        return Err(err("invalid_grant", "Authorization code is expired"));
    }
    if rec.req.redirect_uri != redirect_uri {
        return Err(err("invalid_grant", "Invalid redirect_uri"));
    }
    match (&rec.req.code_challenge, verifier) {
        (Some(_), None) => return Err(err("invalid_grant", "code_verifier is missing")),
        (None, Some(_)) => {
            return Err(err("invalid_grant", "code_verifier sent but no code_challenge was"));
        }
        (None, None) => {}
        (Some((challenge, plain)), Some(v)) => {
            let well_formed = (43..=128).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed {
                return Err(err("invalid_grant", "Malformed code_verifier"));
            }
            let computed =
                if *plain { v.to_owned() } else { URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) };
            if &computed != challenge {
                return Err(err("invalid_grant", "Transformed code verifier does not match code challenge"));
            }
        }
    }
    let scopes = rec.req.scopes.clone();
    let nonce = rec.req.nonce.clone();
    let grant = Grant {
        client_id: app.application_uri.clone(),
        session: Some(rec.session.clone()),
        scopes: scopes.clone(),
        created: now,
        revoked: Arc::new(AtomicBool::new(false)),
        public_client: app.client_type == ClientType::Public,
    };
    let refresh = scopes.iter().any(|x| x == "offline_access").then(|| keys::random_token(32));
    let issued = s.issue(&grant, &scopes, nonce.as_deref(), refresh.as_deref()).map_err(issue_failed)?;
    let grant_id = store.add_grant(grant);
    if let Some(rec) = store.codes.get_mut(code) {
        rec.grant = Some(grant_id);
    }
    if let Some(rt) = refresh {
        store.refresh.insert(
            rt,
            RefreshRecord {
                grant: grant_id,
                client_id: app.application_uri.clone(),
                created: now,
                consumed: false,
            },
        );
    }
    s.counters.authorization_code_grants.fetch_add(1, Ordering::Relaxed);
    Ok(token_ok(&issued.body))
}

fn refresh_token(s: &Shared, app: &TrustedApp, form: &Params) -> Result<Response, OAuthError> {
    let rt = form.get("refresh_token").ok_or_else(|| err("invalid_request", "refresh_token is missing"))?;
    let now = s.clock.now_secs();
    let policy = &s.config.refresh;
    let mut store = s.store();
    let (grant_id, created, consumed) = match store.refresh.get(rt) {
        Some(r) if r.client_id == app.application_uri => (r.grant, r.created, r.consumed),
        _ => return Err(err("invalid_grant", "Invalid refresh token")),
    };
    let Some(grant) = store.grants.get(&grant_id).cloned() else {
        return Err(err("invalid_grant", "Invalid refresh token"));
    };
    if grant.revoked.load(Ordering::Acquire) {
        return Err(err("invalid_grant", "Refresh token has been revoked"));
    }
    if consumed {
        s.counters.refresh_token_reuses.fetch_add(1, Ordering::Relaxed);
        if policy.reuse_detection {
            s.revoke_grant(&mut store, grant_id);
        }
        return Err(err("invalid_grant", "Refresh token has already been used"));
    }
    let absolute = if grant.public_client {
        policy.absolute_lifetime_public
    } else {
        policy.absolute_lifetime_confidential
    };
    let mut expires = grant.created.saturating_add(absolute.as_secs());
    if let Some(sliding) = policy.sliding_lifetime {
        expires = expires.min(created.saturating_add(sliding.as_secs()));
    }
    if expires <= now {
        return Err(err("invalid_grant", "Refresh token expired"));
    }
    let scopes = match form.get("scope") {
        None => grant.scopes.clone(),
        Some(requested) => {
            let mut out = Vec::new();
            for sc in requested.split(' ').filter(|x| !x.is_empty()) {
                if !grant.scopes.iter().any(|g| g == sc) {
                    return Err(err("invalid_scope", format!("Scope {sc} was not granted")));
                }
                out.push(sc.to_owned());
            }
            out
        }
    };
    let new_rt = if policy.one_time_only { keys::random_token(32) } else { rt.to_owned() };
    let issued = s.issue(&grant, &scopes, None, Some(&new_rt)).map_err(issue_failed)?;
    if policy.one_time_only {
        if let Some(old) = store.refresh.get_mut(rt) {
            old.consumed = true;
        }
        store.refresh.insert(
            new_rt,
            RefreshRecord {
                grant: grant_id,
                client_id: app.application_uri.clone(),
                created: now,
                consumed: false,
            },
        );
    } else if let Some(old) = store.refresh.get_mut(rt) {
        old.created = now;
    }
    s.counters.refresh_token_grants.fetch_add(1, Ordering::Relaxed);
    Ok(token_ok(&issued.body))
}

fn client_credentials(s: &Shared, app: &TrustedApp, form: &Params) -> Result<Response, OAuthError> {
    if app.client_type != ClientType::Confidential || app.system_user.is_none() {
        return Err(err(
            "unauthorized_client",
            "The client is not allowed to use the client_credentials grant",
        ));
    }
    let api_scopes: Vec<String> =
        app.allowed_scopes.iter().filter(|x| !is_identity_scope(x)).cloned().collect();
    let scopes = match form.get("scope") {
        None => api_scopes,
        Some(requested) => {
            let mut out: Vec<String> = Vec::new();
            for sc in requested.split(' ').filter(|x| !x.is_empty()) {
                if !api_scopes.iter().any(|a| a == sc) {
                    return Err(err("invalid_scope", format!("Invalid scope: {sc}")));
                }
                if !out.iter().any(|o| o == sc) {
                    out.push(sc.to_owned());
                }
            }
            out
        }
    };
    if scopes.is_empty() {
        return Err(err("invalid_scope", "No scope allowed for this client"));
    }
    let grant = Grant {
        client_id: app.application_uri.clone(),
        session: None,
        scopes: scopes.clone(),
        created: s.clock.now_secs(),
        revoked: Arc::new(AtomicBool::new(false)),
        public_client: false,
    };
    let issued = s.issue(&grant, &scopes, None, None).map_err(issue_failed)?;
    s.store().add_grant(grant);
    s.counters.client_credentials_grants.fetch_add(1, Ordering::Relaxed);
    Ok(token_ok(&issued.body))
}

pub(crate) async fn revocation(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match revocation_inner(&s, req).await {
        Ok(()) => {
            s.counters.revocations.fetch_add(1, Ordering::Relaxed);
            no_store(crate::util::response(StatusCode::OK, "text/plain; charset=utf-8", ""))
        }
        Err(e) => e.into_response(&s),
    }
}

async fn revocation_inner(s: &Shared, req: Request) -> Result<(), OAuthError> {
    let (headers, form) = read_form(s, req).await?;
    let app = authenticate(s, &headers, &form)?;
    let token = form.get("token").ok_or_else(|| err("invalid_request", "token is missing"))?;
    match form.get("token_type_hint") {
        None | Some("access_token") | Some("refresh_token") => {}
        Some(_) => return Err(err("unsupported_token_type", "Unsupported token_type_hint")),
    }
    let mut store = s.store();
    if let Some(rec) = store.refresh.get(token) {
        if rec.client_id != app.application_uri {
            return Err(err("unauthorized_client", "The token was issued to another client"));
        }
        let grant = rec.grant;
        s.revoke_grant(&mut store, grant);
        return Ok(());
    }
    drop(store);
    let access = s.access.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
    if let Some(rec) = access {
        if rec.client_id != app.application_uri {
            return Err(err("unauthorized_client", "The token was issued to another client"));
        }
        rec.revoked.store(true, Ordering::Release);
    }
    // Unknown tokens: 200 anyway (RFC 7009 §2.2).
    Ok(())
}
