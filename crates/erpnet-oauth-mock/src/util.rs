//! Small HTTP helpers: strict parameter parsing, escaping, canned responses.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Decoded `application/x-www-form-urlencoded` parameters (query string or body), each name at most once.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// A parameter appears more than once.
    Duplicate(String),
    /// Not UTF-8 after percent-decoding.
    Encoding,
}

impl ParamError {
    pub(crate) fn describe(&self) -> String {
        match self {
            ParamError::Duplicate(name) => format!("parameter '{name}' is repeated"),
            ParamError::Encoding => "parameters are not valid UTF-8".to_owned(),
        }
    }
}

fn decode(raw: &[u8]) -> Result<String, ParamError> {
    let plus: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
    String::from_utf8(bytes).map_err(|_| ParamError::Encoding)
}

impl Params {
    /// Parses `a=1&b=2`. Whitespace around each raw pair is ignored (a literal space or line break is never
    /// part of a well-encoded value; the seed document writes its form bodies one parameter per line).
    pub(crate) fn parse(input: &[u8]) -> Result<Params, ParamError> {
        let mut map = HashMap::new();
        for pair in input.split(|&b| b == b'&') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (pair.get(..i).unwrap_or_default(), pair.get(i + 1..).unwrap_or_default()),
                None => (pair, &[][..]),
            };
            let k = decode(k)?;
            let v = decode(v)?;
            if map.contains_key(&k) {
                return Err(ParamError::Duplicate(k));
            }
            map.insert(k, v);
        }
        Ok(Params(map))
    }

    pub(crate) fn parse_query(query: Option<&str>) -> Result<Params, ParamError> {
        Params::parse(query.unwrap_or("").as_bytes())
    }

    /// The value of `name`; an empty value counts as absent (as in OpenID Connect).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn enc(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

pub(crate) fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

pub(crate) fn response(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    response(status, "application/json; charset=utf-8", value.to_string())
}

pub(crate) fn html_page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n{body_html}\n</body></html>\n",
        t = html_escape(title)
    );
    no_store(response(status, "text/html; charset=utf-8", page))
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    html_page(status, "Error", &format!("<p class=\"error\">{}</p>", html_escape(message)))
}

/// RFC 6749 §5.2 error: JSON `{error, error_description}`, `no-store`.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(json(status, &serde_json::json!({ "error": error, "error_description": description })))
}

pub(crate) fn redirect(location: &str) -> Response {
    let mut r = response(StatusCode::FOUND, "text/html; charset=utf-8", Body::empty());
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI cannot be used in a Location header"),
    }
}

/// Whether the request's `Content-Type` is `application/x-www-form-urlencoded` (parameters allowed).
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The value of cookie `name` from the `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Reads a body up to `limit` bytes; `Err(response)` is the answer to give instead.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ReadError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // http-body-util's LengthLimitError, somewhere in the source chain.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if err.to_string().contains("length limit exceeded") {
                return ReadError::TooLarge;
            }
            cur = err.source();
        }
        ReadError::Broken
    })
}

#[derive(Debug)]
pub(crate) enum ReadError {
    TooLarge,
    Broken,
}
