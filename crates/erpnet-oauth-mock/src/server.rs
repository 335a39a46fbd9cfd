//! The accept loop, fault application, routing and the admin path.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::sync::Notify;
use tower_service::Service as _;

use crate::faults::{Endpoint, Fault, FaultRequest};
use crate::intercept::{Intercepted, Interceptor};
use crate::state::Shared;
use crate::util::{self, Params, ReadError, read_body, response};
use crate::{api, oidc, token};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/id/.well-known/openid-configuration", get(oidc::discovery))
        .route("/id/.well-known/openid-configuration/jwks", get(oidc::jwks))
        .route("/id/connect/authorize", get(oidc::authorize))
        .route(oidc::LOGIN_PATH, get(oidc::login).post(oidc::login))
        .route("/id/connect/token", post(token::token))
        .route("/id/connect/userinfo", get(api::userinfo).post(api::userinfo))
        .route("/id/connect/revocation", post(token::revocation))
        .route("/id/connect/endsession", get(oidc::end_session).post(oidc::end_session))
        .route("/api/{*rest}", any(api::domain_api))
        .route("/_mock/counters", get(admin_counters))
        .route("/_mock/reset-counters", post(admin_reset_counters))
        .route("/_mock/clock", get(admin_clock))
        .route("/_mock/clock/advance", post(admin_advance))
        .route("/_mock/faults", post(admin_set_fault).delete(admin_clear_faults))
        .route("/_mock/rotate-key", post(admin_rotate))
        .route("/_mock/revoke-user", post(admin_revoke_user))
        .route("/_mock/shutdown", post(admin_shutdown))
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found() -> Response {
    util::error_page(StatusCode::NOT_FOUND, "Not found")
}

/// Serves until the shutdown flag is raised (or, with `ctrl_c`, until Ctrl-C).
pub(crate) async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, ctrl_c: bool) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("erpnet-oauth-mock: cannot serve: {e}");
            return;
        }
    };
    let router = router(shared.clone());
    let mut shutdown = shared.shutdown.subscribe();
    let ctrl_c_signal = async {
        if ctrl_c {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c_signal);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off a little, keep serving.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = &mut ctrl_c_signal => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let kill2 = kill.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let router = router.clone();
                let shared = shared.clone();
                let kill = kill2.clone();
                async move { Ok::<_, Infallible>(dispatch(shared, router, kill, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {} // dropping the connection closes the socket, no response
            }
        });
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    mut router: Router,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Response {
    let req = if req.uri().path().starts_with("/_mock/") {
        req.map(axum::body::Body::new)
    } else {
        match shared.interceptor.get() {
            None => req.map(axum::body::Body::new),
            Some(hook) => match intercept(&shared, hook, req).await {
                Ok(req) => req,
                Err(Intercepted::Respond(r)) => return r.map(axum::body::Body::from),
                Err(Intercepted::Drop) => {
                    kill.notify_one();
                    return std::future::pending().await;
                }
                Err(Intercepted::Hang) => return std::future::pending().await,
                Err(Intercepted::Pass) => {
                    return util::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Interceptor failed");
                }
            },
        }
    };
    if let Some(endpoint) = Endpoint::for_path(req.uri().path())
        && let Some(fault) = shared.faults.take(endpoint)
    {
        shared.counters.faults_applied.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = format!(
                    "<html><head><title>{0}</title></head><body><h1>{0} {1}</h1></body></html>",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("Error")
                );
                return response(status, "text/html; charset=utf-8", body);
            }
            Fault::MalformedBody => {
                return response(
                    StatusCode::OK,
                    "application/json; charset=utf-8",
                    "{\"access_token\": \"ey",
                );
            }
            Fault::RateLimited { retry_after_secs } => {
                let mut r = crate::util::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({ "message": "Too many requests", "code": "RateLimited" }),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            Fault::DropConnection => {
                kill.notify_one();
                return std::future::pending().await;
            }
            Fault::Hang => return std::future::pending().await,
        }
    }
    match router.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Reads the whole request and asks the interceptor. `Ok`: the request (rebuilt) goes on to the normal
/// handlers; `Err`: the interceptor's answer (`Pass` there only when the hook itself failed).
async fn intercept(
    shared: &Shared,
    hook: Interceptor,
    req: Request<Incoming>,
) -> Result<Request, Intercepted> {
    let (parts, body) = req.into_parts();
    let bytes = match read_body(axum::body::Body::new(body), shared.config.max_body_bytes).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            return Err(Intercepted::Respond(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")));
        }
        Err(ReadError::Broken) => return Err(Intercepted::Drop),
    };
    let mut seen = http::Request::new(bytes.to_vec());
    *seen.method_mut() = parts.method.clone();
    *seen.uri_mut() = parts.uri.clone();
    *seen.version_mut() = parts.version;
    *seen.headers_mut() = parts.headers.clone();
    match tokio::task::spawn_blocking(move || hook(&seen)).await {
        Ok(Intercepted::Pass) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(other) => Err(other),
        // The hook panicked: answer 500 rather than hang up.
        Err(_) => {
            Err(Intercepted::Respond(plain(StatusCode::INTERNAL_SERVER_ERROR, "the interceptor panicked")))
        }
    }
}

fn plain(status: StatusCode, text: &str) -> http::Response<Vec<u8>> {
    let mut r = http::Response::new(text.as_bytes().to_vec());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn admin_counters(State(s): State<Arc<Shared>>) -> Response {
    match serde_json::to_value(s.counters.snapshot()) {
        Ok(v) => util::json(StatusCode::OK, &v),
        Err(e) => util::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": e.to_string() })),
    }
}

async fn admin_reset_counters(State(s): State<Arc<Shared>>) -> Response {
    s.counters.reset();
    StatusCode::NO_CONTENT.into_response_plain()
}

fn clock_json(s: &Shared) -> Response {
    util::json(StatusCode::OK, &json!({ "now_unix": s.clock.now_secs() }))
}

async fn admin_clock(State(s): State<Arc<Shared>>) -> Response {
    clock_json(&s)
}

fn bad_request(message: &str) -> Response {
    util::json(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

async fn admin_advance(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let params = match Params::parse_query(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return bad_request(&e.describe()),
    };
    match params.get("seconds").map(str::parse::<u64>) {
        Some(Ok(n)) => {
            s.clock.advance(Duration::from_secs(n));
            clock_json(&s)
        }
        _ => bad_request("expected ?seconds=N (a non-negative integer)"),
    }
}

async fn admin_set_fault(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let body = match read_body(req.into_body(), s.config.max_body_bytes).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return bad_request("body too large"),
        Err(ReadError::Broken) => return bad_request("broken body"),
    };
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(f) => {
            s.faults.set(f.endpoint, f.fault, f.times);
            StatusCode::NO_CONTENT.into_response_plain()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn admin_clear_faults(State(s): State<Arc<Shared>>) -> Response {
    s.faults.clear();
    StatusCode::NO_CONTENT.into_response_plain()
}

async fn admin_rotate(State(s): State<Arc<Shared>>) -> Response {
    let s2 = s.clone();
    match tokio::task::spawn_blocking(move || s2.rotate_key()).await {
        Ok(Ok(kid)) => util::json(StatusCode::OK, &json!({ "kid": kid })),
        Ok(Err(e)) => util::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": e.to_string() })),
        Err(e) => util::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "error": e.to_string() })),
    }
}

async fn admin_revoke_user(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match Params::parse_query(req.uri().query()).ok().and_then(|p| p.get("username").map(str::to_owned)) {
        Some(u) => {
            s.revoke_user(&u);
            StatusCode::NO_CONTENT.into_response_plain()
        }
        None => bad_request("expected ?username=NAME"),
    }
}

async fn admin_shutdown(State(s): State<Arc<Shared>>) -> Response {
    s.shutdown.send_replace(true);
    StatusCode::NO_CONTENT.into_response_plain()
}

trait PlainStatus {
    fn into_response_plain(self) -> Response;
}

impl PlainStatus for StatusCode {
    fn into_response_plain(self) -> Response {
        response(self, "text/plain; charset=utf-8", "")
    }
}
