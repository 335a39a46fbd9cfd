//! The Domain API (OData) and the userinfo endpoint: bearer-protected resources.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::{API_SCOPE, AccessRecord, Shared};
use crate::util::{Params, json, response};

/// `$filter` value that makes the Domain API answer with a business error, on purpose.
pub(crate) const FAIL_FILTER: &str = "fail";

/// Why a bearer-protected request is refused.
pub(crate) enum BearerError {
    /// 401 `WWW-Authenticate: Bearer` (no token at all).
    Missing,
    /// 401 `invalid_token`.
    Invalid(&'static str),
    /// 403 `insufficient_scope`.
    Scope(&'static str),
}

impl BearerError {
    pub(crate) fn into_response(self) -> Response {
        let (status, challenge) = match self {
            BearerError::Missing => (StatusCode::UNAUTHORIZED, "Bearer".to_owned()),
            BearerError::Invalid(d) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer error=\"invalid_token\", error_description=\"{d}\""),
            ),
            BearerError::Scope(scope) => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer error=\"insufficient_scope\", error_description=\"The token lacks scope {scope}\", scope=\"{scope}\""
                ),
            ),
        };
        let mut r = response(status, "text/plain; charset=utf-8", "");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// The bearer token of the request, checked against the tokens this mock issued.
pub(crate) fn bearer(s: &Shared, headers: &HeaderMap) -> Result<Arc<AccessRecord>, BearerError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(BearerError::Missing);
    };
    let value = value.to_str().map_err(|_| BearerError::Invalid("Malformed authorization header"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(BearerError::Invalid("The token is empty"));
    }
    s.check_access_token(token).map_err(BearerError::Invalid)
}

/// A business error the way ERP.net's Domain API sends it: HTTP 500, JSON `{message, code, type, info}`.
fn business_error(s: &Shared, message: &str, code: &str, info: &str) -> Response {
    s.counters.api_business_errors.fetch_add(1, Ordering::Relaxed);
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({
            "message": message,
            "code": code,
            "type": "Aloe.SystemFrameworks.Domain.BusinessException",
            "info": info,
        }),
    )
}

/// A non-negative integer query option; `Err` is the business error's message.
fn parse_count(name: &str, value: Option<&str>) -> Result<Option<usize>, String> {
    match value {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            format!("The value '{v}' of query option '{name}' is not a valid non-negative integer.")
        }),
    }
}

pub(crate) async fn domain_api(State(s): State<Arc<Shared>>, req: Request) -> Response {
    s.counters.api_calls.fetch_add(1, Ordering::Relaxed);
    let rec = match bearer(&s, req.headers()) {
        Ok(r) => r,
        Err(e) => {
            match e {
                BearerError::Scope(_) => s.counters.api_forbidden.fetch_add(1, Ordering::Relaxed),
                _ => s.counters.api_unauthorized.fetch_add(1, Ordering::Relaxed),
            };
            return e.into_response();
        }
    };
    if !rec.scopes.iter().any(|x| x == API_SCOPE) {
        s.counters.api_forbidden.fetch_add(1, Ordering::Relaxed);
        return BearerError::Scope(API_SCOPE).into_response();
    }
    let path = req.uri().path();
    let entity = path.strip_prefix("/api/domain/odata/").unwrap_or("");
    if entity != "Crm_Customers" {
        return business_error(
            &s,
            &format!("Resource not found for the segment '{entity}'."),
            "EntityNotFound",
            path,
        );
    }
    let params = match Params::parse_query(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return business_error(&s, &e.describe(), "InvalidQuery", ""),
    };
    if params.get("$filter") == Some(FAIL_FILTER) {
        return business_error(
            &s,
            "The operation failed on purpose ($filter=fail).",
            "TestFailure",
            "Requested by the client through $filter=fail",
        );
    }
    let counts = parse_count("$top", params.get("$top"))
        .and_then(|top| parse_count("$skip", params.get("$skip")).map(|skip| (top, skip.unwrap_or(0))));
    let (top, skip) = match counts {
        Ok(c) => c,
        Err(message) => {
            return business_error(&s, &message, "InvalidQueryOption", req.uri().query().unwrap_or(""));
        }
    };
    // The rows asked for, then at most a page of them (server-driven paging).
    let wanted = s.customers.len().saturating_sub(skip).min(top.unwrap_or(usize::MAX));
    let served = s.config.page_size.map_or(wanted, |page| wanted.min(page));
    let mut body = String::with_capacity(256 + 256 * served);
    let _ = write!(
        body,
        "{{\"@odata.context\":\"{}/api/domain/odata/$metadata#Crm_Customers\",\"value\":[",
        s.base_url
    );
    for (i, c) in s.customers.iter().skip(skip).take(served).enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(c);
    }
    body.push(']');
    if served < wanted {
        let next = next_link(&s.base_url, path, req.uri().query(), skip + served, top.map(|t| t - served));
        let _ = write!(body, ",\"@odata.nextLink\":{}", serde_json::Value::from(next));
    }
    body.push('}');
    s.counters.api_ok.fetch_add(1, Ordering::Relaxed);
    let mut r = response(
        StatusCode::OK,
        "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8",
        body,
    );
    r.headers_mut().insert("odata-version", HeaderValue::from_static("4.0"));
    r
}

/// The `@odata.nextLink` of a page: the request's URL (absolute, on the instance) with every query option
/// kept as sent but `$skip` and `$top`, then `$top` (the rows still wanted, when the request limited them)
/// and `$skip` (where the next page starts).
fn next_link(base: &str, path: &str, query: Option<&str>, skip: usize, top: Option<usize>) -> String {
    let mut pairs: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            !pair.is_empty() && key != "$skip" && key != "$top"
        })
        .map(str::to_owned)
        .collect();
    if let Some(top) = top {
        pairs.push(format!("$top={top}"));
    }
    pairs.push(format!("$skip={skip}"));
    format!("{base}{path}?{}", pairs.join("&"))
}

pub(crate) async fn userinfo(State(s): State<Arc<Shared>>, req: Request) -> Response {
    s.counters.userinfo_calls.fetch_add(1, Ordering::Relaxed);
    let rec = match bearer(&s, req.headers()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !rec.scopes.iter().any(|x| x == "openid") {
        return BearerError::Scope("openid").into_response();
    }
    let Some(user) = rec.username.as_ref().and_then(|u| s.users.get(u)) else {
        return BearerError::Invalid("The token has no subject").into_response();
    };
    let mut claims = json!({ "sub": user.username });
    if let Some(obj) = claims.as_object_mut() {
        if rec.scopes.iter().any(|x| x == "profile") {
            obj.insert("name".into(), json!(user.name));
            obj.insert("id".into(), json!(user.id));
            obj.insert("user_type".into(), json!("InternalUser"));
            obj.insert("db".into(), json!(s.config.database));
            obj.insert("locale".into(), json!(user.locale));
            obj.insert("email".into(), json!(user.email));
        }
        if rec.scopes.iter().any(|x| x == "email") {
            obj.insert("email".into(), json!(user.email));
        }
    }
    json(StatusCode::OK, &claims)
}

/// `n` deterministic fake customers, each pre-serialised as a JSON object.
pub(crate) fn customers(n: usize) -> Vec<String> {
    const FIRST: &[&str] = &[
        "Acme",
        "Globex",
        "Initech",
        "Umbrella",
        "Stark",
        "Wayne",
        "Wonka",
        "Tyrell",
        "Cyberdyne",
        "Soylent",
        "Hooli",
        "Vandelay",
        "Monarch",
        "Gringotts",
        "Oceanic",
    ];
    const SECOND: &[&str] = &["Ltd", "AD", "OOD", "GmbH", "Inc", "EOOD", "SA"];
    (0..n)
        .map(|i| {
            let d = Sha256::digest(format!("erpnet-oauth-mock customer {i}").as_bytes());
            let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let id = format!(
                "{}-{}-4{}-8{}-{}",
                hex.get(0..8).unwrap_or(""),
                hex.get(8..12).unwrap_or(""),
                hex.get(13..16).unwrap_or(""),
                hex.get(17..20).unwrap_or(""),
                hex.get(20..32).unwrap_or("")
            );
            let first = FIRST.get(i % FIRST.len()).copied().unwrap_or("Acme");
            let second = SECOND.get((i / FIRST.len()) % SECOND.len()).copied().unwrap_or("Ltd");
            let name = format!("{first} {second} {}", i + 1);
            json!({
                "Id": id,
                "Number": format!("C{:05}", i + 1),
                "PartyName": name,
                "Active": i % 10 != 9,
                "CreationTimeUtc": format!("2022-{:02}-{:02}T09:{:02}:00Z", i % 12 + 1, i % 28 + 1, i % 60),
                "CreditLimitValue": ((i * 1375) % 50_000) as f64,
                "CreditLimitCurrency": "EUR",
                "GracePeriodDays": (i % 4) * 15,
                "Email": format!("office{}@{}.example", i + 1, first.to_ascii_lowercase()),
            })
            .to_string()
        })
        .collect()
}
