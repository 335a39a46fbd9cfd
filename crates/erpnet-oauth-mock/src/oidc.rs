//! Front-channel endpoints: discovery, JWKS, authorize, the login form, end session.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::config::ClientType;
use crate::keys;
use crate::state::{AuthRequest, CodeRecord, Pending, ResponseMode, SESSION_COOKIE, Session, Shared};
use crate::util::{
    Params, ReadError, cookie, encode_pairs, error_page, html_escape, html_page, is_form, read_body,
    redirect, response,
};

/// The login form's action.
pub(crate) const LOGIN_PATH: &str = "/id/account/login";
/// The header carrying the pending login's id next to the login form.
pub(crate) const LOGIN_REQUEST_HEADER: &str = "x-mock-login-request";

pub(crate) async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.counters.discovery_fetches.fetch_add(1, Ordering::Relaxed);
    response(StatusCode::OK, "application/json; charset=UTF-8", s.discovery.clone())
}

pub(crate) async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.counters.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    response(StatusCode::OK, "application/json; charset=UTF-8", s.jwks().as_str().to_owned())
}

/// An authorize request that failed: before the redirect URI is trusted (a page) or after (a redirect).
enum AuthorizeError {
    Page(String),
    Redirect { req: Box<AuthRequest>, error: &'static str, description: String },
}

fn validate(s: &Shared, p: &Params) -> Result<AuthRequest, AuthorizeError> {
    let page = |m: &str| AuthorizeError::Page(m.to_owned());
    let client_id = p.get("client_id").ok_or_else(|| page("client_id is missing"))?;
    let app = s.apps.get(client_id).ok_or_else(|| page(&format!("Unknown client: {client_id}")))?;
    if !app.is_enabled {
        return Err(page(&format!("Client {client_id} is disabled")));
    }
    let redirect_uri = p.get("redirect_uri").ok_or_else(|| page("redirect_uri is missing"))?;
    if !app.impersonate_login_urls.iter().any(|u| u == redirect_uri) {
        return Err(page(&format!("Invalid redirect_uri: {redirect_uri}")));
    }
    let response_type = p.get("response_type");
    let hybrid = response_type == Some("code id_token") || response_type == Some("id_token code");
    let mut req = AuthRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        hybrid,
        response_mode: ResponseMode::Query,
        scopes: Vec::new(),
        state: p.get("state").map(str::to_owned),
        nonce: p.get("nonce").map(str::to_owned),
        code_challenge: None,
    };
    let fail = |req: &AuthRequest, error: &'static str, description: &str| AuthorizeError::Redirect {
        req: Box::new(req.clone()),
        error,
        description: description.to_owned(),
    };
    let mode = match p.get("response_mode") {
        None | Some("query") => Some(ResponseMode::Query),
        Some("fragment") => Some(ResponseMode::Fragment),
        Some("form_post") => Some(ResponseMode::FormPost),
        Some(_) => None,
    };
    if let Some(mode) = mode {
        req.response_mode = mode;
    }
    let Some(response_type) = response_type else {
        return Err(fail(&req, "invalid_request", "response_type is missing"));
    };
    if response_type != "code" && !hybrid {
        return Err(fail(&req, "unsupported_response_type", "Response type not supported"));
    }
    if mode.is_none() {
        return Err(fail(&req, "invalid_request", "Invalid response_mode"));
    }
    let Some(scope) = p.get("scope") else {
        return Err(fail(&req, "invalid_request", "scope is missing"));
    };
    for sc in scope.split(' ').filter(|s| !s.is_empty()) {
        if !app.allowed_scopes.iter().any(|a| a == sc) {
            return Err(fail(&req, "invalid_scope", &format!("Invalid scope: {sc}")));
        }
        if !req.scopes.iter().any(|x| x == sc) {
            req.scopes.push(sc.to_owned());
        }
    }
    if req.scopes.is_empty() {
        return Err(fail(&req, "invalid_request", "scope is missing"));
    }
    if hybrid && !req.scopes.iter().any(|x| x == "openid") {
        return Err(fail(&req, "invalid_request", "openid scope missing for response type code id_token"));
    }
    if hybrid && req.nonce.is_none() {
        return Err(fail(&req, "invalid_request", "nonce required for response type code id_token"));
    }
    match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, _) if app.client_type == ClientType::Public => {
            return Err(fail(&req, "invalid_request", "code challenge required"));
        }
        (None, Some(_)) => {
            return Err(fail(&req, "invalid_request", "code_challenge_method without code_challenge"));
        }
        (None, None) => {}
        (Some(challenge), method) => {
            let plain = match method {
                Some("S256") => false,
                None | Some("plain") if s.config.allow_plain_pkce => true,
                _ => return Err(fail(&req, "invalid_request", "Transform algorithm not supported")),
            };
            let valid_chars = challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !(43..=128).contains(&challenge.len()) || !valid_chars {
                return Err(fail(&req, "invalid_request", "Invalid code_challenge"));
            }
            req.code_challenge = Some((challenge.to_owned(), plain));
        }
    }
    Ok(req)
}

fn authorize_error_response(s: &Shared, e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(m) => error_page(StatusCode::BAD_REQUEST, &m),
        AuthorizeError::Redirect { req, error, description } => {
            let mut params = vec![("error", error), ("error_description", description.as_str())];
            if let Some(st) = req.state.as_deref() {
                params.push(("state", st));
            }
            params.push(("iss", s.issuer.as_str()));
            respond_to_client(&req, &params)
        }
    }
}

/// Sends parameters to the client's redirect URI in the request's response mode.
fn respond_to_client(req: &AuthRequest, params: &[(&str, &str)]) -> Response {
    match req.response_mode {
        ResponseMode::Query => {
            let sep = if req.redirect_uri.contains('?') { '&' } else { '?' };
            redirect(&format!("{}{}{}", req.redirect_uri, sep, encode_pairs(params)))
        }
        ResponseMode::Fragment => redirect(&format!("{}#{}", req.redirect_uri, encode_pairs(params))),
        ResponseMode::FormPost => {
            let inputs: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>\n",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            let page = format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Submit this form</title></head>\n\
                 <body onload=\"javascript:document.forms[0].submit()\">\n\
                 <form method=\"post\" action=\"{}\">\n{inputs}<noscript><button type=\"submit\">Continue</button></noscript>\n</form>\n</body></html>\n",
                html_escape(&req.redirect_uri)
            );
            crate::util::no_store(response(StatusCode::OK, "text/html; charset=utf-8", page))
        }
    }
}

fn login_page(s: &Shared, request_id: &str, error: Option<&str>, username: &str) -> Response {
    let app_name = s
        .store()
        .pending
        .get(request_id)
        .and_then(|p| s.apps.get(&p.req.client_id))
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let error_html =
        error.map(|e| format!("<p class=\"error\">{}</p>\n", html_escape(e))).unwrap_or_default();
    let body = format!(
        "<p>Log in to <b>{db}</b> for <i>{app}</i>.</p>\n{error_html}\
         <form method=\"post\" action=\"{LOGIN_PATH}\">\n\
         <input type=\"hidden\" name=\"request_id\" value=\"{rid}\"/>\n\
         <label>Username <input type=\"text\" name=\"username\" value=\"{user}\"/></label>\n\
         <label>Password <input type=\"password\" name=\"password\"/></label>\n\
         <button type=\"submit\" name=\"button\" value=\"login\">Log in</button>\n\
         <button type=\"submit\" name=\"button\" value=\"cancel\">Cancel</button>\n\
         </form>",
        db = html_escape(&s.config.database),
        app = html_escape(&app_name),
        rid = html_escape(request_id),
        user = html_escape(username),
    );
    let mut r = html_page(StatusCode::OK, "ERP.net login", &body);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(LOGIN_REQUEST_HEADER, v);
    }
    r
}

pub(crate) async fn authorize(State(s): State<Arc<Shared>>, req: Request) -> Response {
    s.counters.authorize_requests.fetch_add(1, Ordering::Relaxed);
    let params = match Params::parse_query(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.describe()),
    };
    let auth = match validate(&s, &params) {
        Ok(a) => a,
        Err(e) => return authorize_error_response(&s, e),
    };
    let prompt: Vec<&str> = params.get("prompt").unwrap_or("").split(' ').collect();
    let session = if prompt.contains(&"login") {
        None
    } else {
        cookie(req.headers(), SESSION_COOKIE).and_then(|c| s.store().sessions.get(c).cloned())
    };
    if let Some(session) = session {
        return complete(&s, auth, &session, None);
    }
    if prompt.contains(&"none") {
        return authorize_error_response(
            &s,
            AuthorizeError::Redirect {
                req: Box::new(auth),
                error: "login_required",
                description: "The user is not logged in".to_owned(),
            },
        );
    }
    let request_id = keys::random_token(16);
    let now = s.clock.now_secs();
    {
        let mut store = s.store();
        let lifetime = s.config.code_lifetime.as_secs();
        store.pending.retain(|_, p| p.created.saturating_add(lifetime) > now);
        store.pending.insert(request_id.clone(), Pending { req: auth, created: now });
    }
    login_page(&s, &request_id, None, "")
}

/// Issues the code for a logged-in user and sends it to the client.
fn complete(s: &Shared, req: AuthRequest, session: &Session, set_cookie: Option<String>) -> Response {
    let allowed = s.apps.get(&req.client_id).is_some_and(|a| a.impersonate_as_internal_user_allowed);
    let mut r = if !allowed {
        authorize_error_response(
            s,
            AuthorizeError::Redirect {
                req: Box::new(req),
                error: "access_denied",
                description: "Internal users are not allowed for this application".to_owned(),
            },
        )
    } else {
        let code = keys::random_token(32);
        let mut id_token = None;
        if req.hybrid {
            let mut hashes = vec![("c_hash", keys::half_hash(&code))];
            if let Some(st) = &req.state {
                hashes.push(("s_hash", keys::half_hash(st)));
            }
            match s.id_token(&s.signing_key(), &req.client_id, session, req.nonce.as_deref(), &hashes) {
                Ok(t) => id_token = Some(t),
                Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        let mut params: Vec<(&str, &str)> = vec![("code", &code)];
        if let Some(t) = &id_token {
            params.push(("id_token", t));
        }
        if let Some(st) = &req.state {
            params.push(("state", st));
        }
        params.push(("iss", &s.issuer));
        let r = respond_to_client(&req, &params);
        s.store().codes.insert(
            code.clone(),
            CodeRecord {
                req,
                session: session.clone(),
                created: s.clock.now_secs(),
                used: false,
                grant: None,
            },
        );
        r
    };
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

pub(crate) async fn login(State(s): State<Arc<Shared>>, req: Request) -> Response {
    if req.method() == Method::GET {
        // The login page again, for a pending request (e.g. after a browser reload).
        let params = Params::parse_query(req.uri().query()).unwrap_or_default();
        let rid = params.get("request_id").unwrap_or("");
        if !s.store().pending.contains_key(rid) {
            return error_page(StatusCode::BAD_REQUEST, "Unknown or expired login request");
        }
        return login_page(&s, rid, None, "");
    }
    if !is_form(req.headers()) {
        return error_page(StatusCode::BAD_REQUEST, "The login form must be posted as a form");
    }
    let body = match read_body(req.into_body(), s.config.max_body_bytes).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return error_page(StatusCode::PAYLOAD_TOO_LARGE, "Request too large"),
        Err(ReadError::Broken) => return error_page(StatusCode::BAD_REQUEST, "Broken request body"),
    };
    let form = match Params::parse(&body) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.describe()),
    };
    let rid = form.get("request_id").unwrap_or("");
    let now = s.clock.now_secs();
    let pending = {
        let store = s.store();
        store
            .pending
            .get(rid)
            .filter(|p| p.created.saturating_add(s.config.code_lifetime.as_secs()) > now)
            .map(|p| p.req.clone())
    };
    let Some(auth) = pending else {
        return error_page(StatusCode::BAD_REQUEST, "Unknown or expired login request");
    };
    if form.get("button") == Some("cancel") {
        s.store().pending.remove(rid);
        return authorize_error_response(
            &s,
            AuthorizeError::Redirect {
                req: Box::new(auth),
                error: "access_denied",
                description: "The user cancelled the login".to_owned(),
            },
        );
    }
    let username = form.get("username").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let ok = s.users.get(username).is_some_and(|u| u.is_enabled && u.password == password);
    if !ok {
        s.counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return login_page(&s, rid, Some("Invalid username or password"), username);
    }
    s.counters.logins.fetch_add(1, Ordering::Relaxed);
    let session = Session { sid: keys::random_token(16), username: username.to_owned(), auth_time: now };
    let cookie_value = keys::random_token(32);
    {
        let mut store = s.store();
        store.pending.remove(rid);
        store.sessions.insert(cookie_value.clone(), session.clone());
    }
    let set_cookie = format!("{SESSION_COOKIE}={cookie_value}; Path=/id; HttpOnly; SameSite=Lax");
    complete(&s, auth, &session, Some(set_cookie))
}

pub(crate) async fn end_session(State(s): State<Arc<Shared>>, req: Request) -> Response {
    s.counters.end_sessions.fetch_add(1, Ordering::Relaxed);
    if let Some(c) = cookie(req.headers(), SESSION_COOKIE).map(str::to_owned) {
        s.store().sessions.remove(&c);
    }
    let params = if req.method() == Method::POST && is_form(req.headers()) {
        match read_body(req.into_body(), s.config.max_body_bytes).await {
            Ok(b) => Params::parse(&b),
            Err(_) => return error_page(StatusCode::BAD_REQUEST, "Broken request body"),
        }
    } else {
        Params::parse_query(req.uri().query())
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.describe()),
    };
    let client_id = params
        .get("id_token_hint")
        .and_then(|t| keys::verify_jwt(t, &s.published_keys()))
        .filter(|c| c.get("iss").and_then(|i| i.as_str()) == Some(s.issuer.as_str()))
        .and_then(|c| c.get("aud").and_then(|a| a.as_str()).map(str::to_owned));
    let target = match (client_id, params.get("post_logout_redirect_uri")) {
        (Some(cid), Some(uri)) => s
            .apps
            .get(&cid)
            .filter(|a| a.post_logout_redirect_uris.iter().any(|u| u == uri))
            .map(|_| uri.to_owned()),
        _ => None,
    };
    let mut r = match target {
        Some(uri) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            match params.get("state") {
                Some(st) => redirect(&format!("{uri}{sep}{}", encode_pairs(&[("state", st)]))),
                None => redirect(&uri),
            }
        }
        None => html_page(StatusCode::OK, "Logged out", "<p>You are now logged out.</p>"),
    };
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("idsrv.session=; Path=/id; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    r
}
