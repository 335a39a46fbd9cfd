//! A web application that signs users in through ERP.net and calls the Domain API on their behalf, on
//! axum and [`erpnet_oauth_async`].
//!
//! | Route | What |
//! | --- | --- |
//! | `GET /` | a sign-in link, or the signed-in user's name |
//! | `GET /login` | redirects to ERP.net's login with PKCE; state, nonce and verifier stay on the server |
//! | `GET, POST /signin-callback` | finishes the login (query or `form_post`); the pending login is used once |
//! | `GET /customers` | an HTML table of `Crm_Customers?$top=10`, with the user's token, refreshed as needed |
//! | `POST /logout` | revokes the refresh token, forgets the tokens, clears the cookie |
//!
//! Sessions are server-side: the browser holds only an opaque random id in a cookie (`HttpOnly`,
//! `SameSite=Lax`, and `Secure` when the redirect URI is `https`); each signed-in user has their own [`Session`] (single-flight refresh per user).
//!
//! ```no_run
//! use erpnet_oauth_web_example::{AppConfig, router};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AppConfig {
//!     instance: "https://demodb.my.erp.net".to_owned(),
//!     client_id: "my.trusted.app/first".to_owned(),
//!     client_secret: Some("my_plain_app_secret".to_owned()),
//!     redirect_uri: "http://localhost:8080/signin-callback".to_owned(),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(&config)?).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use erpnet_oauth_async::{
    AuthorizationRequest, Callback, ClientConfig, ClientSecret, HttpOptions, OsRandom, PendingLogin,
    ReqwestClient, Session,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A login not finished within this time is forgotten.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// The cookie holding the opaque session id.
pub const COOKIE: &str = "erpnet_example_sid";

/// What the application needs to know about the ERP.net instance and its trusted application.
#[derive(Clone)]
pub struct AppConfig {
    /// The instance URL, e.g. `https://demodb.my.erp.net`.
    pub instance: String,
    /// The trusted application's `ApplicationUri` (the client id).
    pub client_id: String,
    /// The application secret (confidential clients); `None` for a public client.
    pub client_secret: Option<String>,
    /// This server's `/signin-callback` URL, registered as the application's `ImpersonateLoginUrl`.
    pub redirect_uri: String,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("instance", &self.instance)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl AppConfig {
    /// The OAuth client configuration.
    pub fn client(&self) -> Result<ClientConfig, erpnet_oauth_async::Error> {
        let mut builder =
            ClientConfig::builder(&self.instance, &self.client_id).redirect_uri(&self.redirect_uri);
        if let Some(secret) = &self.client_secret {
            builder = builder.client_secret(ClientSecret::new(secret));
        }
        Ok(builder.build()?)
    }
}

/// One browser's server-side state.
#[derive(Default)]
struct UserState {
    /// The login under way: the serialized [`PendingLogin`] (state, nonce, PKCE verifier), and when it
    /// began.
    pending: Option<(String, Instant)>,
    /// The user's session once signed in.
    session: Option<Session>,
    /// The user's display name (from UserInfo).
    name: Option<String>,
}

struct App {
    client: ClientConfig,
    /// `; Secure` on the cookie when the application is served over HTTPS (its redirect URI says so).
    secure: &'static str,
    /// One HTTP client (connection pool) shared by every user's session.
    http: Arc<ReqwestClient>,
    users: Mutex<HashMap<String, UserState>>,
}

impl App {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserState>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signed_in(&self, sid: Option<&str>) -> Option<(Session, Option<String>)> {
        let users = self.users();
        let user = users.get(sid?)?;
        Some((user.session.clone()?, user.name.clone()))
    }
}

/// The application's routes.
pub fn router(config: &AppConfig) -> Result<Router, erpnet_oauth_async::Error> {
    let app = Arc::new(App {
        client: config.client()?,
        secure: if config.redirect_uri.starts_with("https://") { "; Secure" } else { "" },
        http: Arc::new(ReqwestClient::new(&HttpOptions::default())?),
        users: Mutex::new(HashMap::new()),
    });
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/signin-callback", get(callback_query).post(callback_form_post))
        .route("/customers", get(customers))
        .route("/logout", axum::routing::post(logout))
        .with_state(app))
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| value.to_owned())
        })
}

fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn cookie(sid: &str, attributes: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax{attributes}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #999;padding:4px 8px}} th{{background:#eee}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (status, page("Error", &format!("<p id=\"error\">{}</p><p><a href=\"/\">Home</a></p>", esc(message))))
        .into_response()
}

async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Html<String> {
    match app.signed_in(session_id(&headers).as_deref()) {
        Some((_, name)) => page(
            "ERP.net example",
            &format!(
                "<p id=\"user\">Signed in as {}</p><p><a id=\"customers\" href=\"/customers\">Customers</a></p>\
                 <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
                esc(name.as_deref().unwrap_or("an ERP.net user"))
            ),
        ),
        None => page(
            "ERP.net example",
            "<p id=\"signed-out\">You are not signed in.</p><p><a id=\"sign-in\" href=\"/login\">Sign in with ERP.net</a></p>",
        ),
    }
}

async fn login(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let sid = match session_id(&headers) {
        Some(sid) => sid,
        None => match new_session_id() {
            Ok(sid) => sid,
            Err(e) => {
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("no random source: {e}"));
            }
        },
    };
    let pending = match AuthorizationRequest::new().build(&app.client, &mut OsRandom) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let serialized = match serde_json::to_string(&pending) {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let target = pending.authorize_url().to_owned();
    {
        let mut users = app.users();
        // Logins abandoned half-way are forgotten; signed-in users are kept.
        users.retain(|_, u| {
            u.session.is_some() || u.pending.as_ref().is_some_and(|(_, t)| t.elapsed() < PENDING_LIFETIME)
        });
        users.insert(
            sid.clone(),
            UserState { pending: Some((serialized, Instant::now())), session: None, name: None },
        );
    }
    let mut response = Redirect::to(&target).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&sid, app.secure));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn callback_query(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    finish(app, headers, Callback::Query(&query)).await
}

async fn callback_form_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    finish(app, headers, Callback::FormPost(&body)).await
}

async fn finish(app: Arc<App>, headers: HeaderMap, callback: Callback<'_>) -> Response {
    let Some(sid) = session_id(&headers) else {
        return error_page(StatusCode::BAD_REQUEST, "No login is under way in this browser.");
    };
    // Taken out: a pending login is used once, whatever the outcome.
    let pending = app.users().get_mut(&sid).and_then(|u| u.pending.take());
    let pending = pending
        .filter(|(_, started)| started.elapsed() < PENDING_LIFETIME)
        .and_then(|(p, _)| serde_json::from_str::<PendingLogin>(&p).ok());
    let Some(pending) = pending else {
        return error_page(StatusCode::BAD_REQUEST, "No login is under way in this browser.");
    };
    let session = match Session::builder(app.client.clone()).http_client(app.http.clone()).build().await {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Err(e) = session.finish_login(pending, callback).await {
        return error_page(StatusCode::BAD_REQUEST, &format!("The login failed: {e}"));
    }
    let name = match session.userinfo().await {
        Ok(info) => info.name,
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            None
        }
    };
    app.users().insert(sid, UserState { pending: None, session: Some(session), name });
    Redirect::to("/customers").into_response()
}

async fn customers(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let sid = session_id(&headers);
    let Some((session, name)) = app.signed_in(sid.as_deref()) else {
        return Redirect::to("/").into_response();
    };
    let response = match session.get("/api/domain/odata/Crm_Customers?$top=10").await {
        Ok(r) => r,
        Err(e) if e.is_login_required() => {
            if let Some(sid) = sid {
                app.users().remove(&sid);
            }
            return Redirect::to("/").into_response();
        }
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &format!("The Domain API call failed: {e}")),
    };
    let rows = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|v| v.get("value").and_then(|v| v.as_array()).cloned())
        .unwrap_or_default();
    let columns = columns(rows.first());
    let mut table = String::from("<table id=\"customers\"><thead><tr>");
    for c in &columns {
        table.push_str(&format!("<th>{}</th>", esc(c)));
    }
    table.push_str("</tr></thead><tbody>");
    for row in &rows {
        table.push_str("<tr class=\"customer\">");
        for c in &columns {
            let cell = match row.get(c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            table.push_str(&format!("<td>{}</td>", esc(&cell)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    page(
        "Customers",
        &format!(
            "<p id=\"user\">Signed in as {}</p><p>{} customers (Crm_Customers?$top=10)</p>{table}\
             <p><a href=\"/\">Home</a></p>\
             <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
            esc(name.as_deref().unwrap_or("an ERP.net user")),
            rows.len()
        ),
    )
    .into_response()
}

/// The table's columns: the usual customer fields first when present, then others, at most [`MAX_COLUMNS`].
fn columns(first: Option<&serde_json::Value>) -> Vec<String> {
    let Some(row) = first.and_then(|r| r.as_object()) else { return Vec::new() };
    let mut columns: Vec<String> =
        PREFERRED_COLUMNS.iter().filter(|c| row.contains_key(**c)).map(|c| (*c).to_owned()).collect();
    for key in row.keys() {
        if columns.len() >= MAX_COLUMNS {
            break;
        }
        if !key.starts_with('@') && !columns.contains(key) && !row.get(key).is_some_and(|v| v.is_object()) {
            columns.push(key.clone());
        }
    }
    columns.truncate(MAX_COLUMNS);
    columns
}

const PREFERRED_COLUMNS: &[&str] =
    &["Number", "PartyName", "Email", "Active", "CreditLimitValue", "CreditLimitCurrency"];
const MAX_COLUMNS: usize = 7;

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let removed = session_id(&headers).and_then(|sid| app.users().remove(&sid));
    let mut message = "You are signed out.".to_owned();
    if let Some(session) = removed.and_then(|u| u.session) {
        match session.logout().await {
            Ok(out) => {
                if let erpnet_oauth_async::Revocation::Failed(e) = out.revocation {
                    message =
                        format!("You are signed out here; the server did not confirm the revocation: {e}");
                }
            }
            Err(e) => message = format!("You are signed out here; the tokens could not be deleted: {e}"),
        }
    }
    let mut response = page(
        "Signed out",
        &format!(
            "<p id=\"signed-out\">{}</p><p><a id=\"sign-in\" href=\"/login\">Sign in with ERP.net</a></p>",
            esc(&message)
        ),
    )
    .into_response();
    let cleared = format!("; Max-Age=0{}", app.secure);
    response.headers_mut().insert(header::SET_COOKIE, cookie("", &cleared));
    response
}
