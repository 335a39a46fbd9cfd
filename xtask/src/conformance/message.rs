//! HTTP messages as the fixtures write them, and the comparison of a request the client built with the
//! one a case expects.
//!
//! A request is written as:
//!
//! ```text
//! POST /id/connect/token
//! Host: demodb.my.erp.net
//! Content-Type: application/x-www-form-urlencoded
//!
//! client_id=my.trusted.app/first
//! grant_type=refresh_token
//! ```
//!
//! The request line is `METHOD path[?query] [HTTP/1.1]`; when the target ends with `?`, the query pairs
//! follow one per indented line, decoded, in order. Headers follow, then a blank line and the body: form
//! fields one `name=value` per line, decoded, when the Content-Type is a form; the text as is otherwise.
//! A value may hold one capture, `$<name>` or `$<name:class>`, that matches any non-empty text (of the
//! class: `b64url32`, 43 base64url characters from 32 bytes; `pkce`, RFC 7636's verifier alphabet, 43-128
//! characters) and binds it to `name` for the later steps' `${name}`.

use std::collections::BTreeMap;

/// The form content type.
const FORM: &str = "application/x-www-form-urlencoded";

/// A request as a case writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, as sent (not decoded).
    pub path: String,
    /// The decoded query pairs in order; `None` when there is no `?`.
    pub query: Option<Vec<(String, String)>>,
    /// The raw query (after `?`), as written on the request line, when there is one there.
    pub raw_query: Option<String>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// A body as a case writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// Form fields in order, decoded.
    Form(Vec<(String, String)>),
    /// Text.
    Text(String),
}

impl Message {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body's bytes as they go on the wire (forms encoded).
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::Empty => Vec::new(),
            Body::Form(fields) => form_encode(fields).into_bytes(),
            Body::Text(t) => t.clone().into_bytes(),
        }
    }

    /// The query string as it goes on the wire: the raw one written on the request line, or the
    /// indented pairs form-encoded.
    pub fn query_string(&self) -> Option<String> {
        if let Some(raw) = &self.raw_query {
            return Some(raw.clone());
        }
        self.query.as_ref().map(|q| form_encode(q))
    }
}

fn form_encode(fields: &[(String, String)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        ser.append_pair(k, v);
    }
    ser.finish()
}

fn decode_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn split_pair(line: &str) -> (String, String) {
    match line.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (line.to_owned(), String::new()),
    }
}

/// Splits a message into its head lines and its body (after the first blank line, with one trailing
/// newline removed).
fn head_and_body(text: &str) -> (Vec<&str>, Option<&str>) {
    let text = text.strip_prefix('\n').unwrap_or(text);
    match text.find("\n\n") {
        Some(at) => {
            let body = &text[at + 2..];
            (text[..at].lines().collect(), Some(body.strip_suffix('\n').unwrap_or(body)))
        }
        None => (text.lines().filter(|l| !l.trim().is_empty()).collect(), None),
    }
}

fn parse_header(line: &str) -> Result<(String, String), String> {
    let (name, value) =
        line.split_once(':').ok_or_else(|| format!("`{line}` is neither a header nor a query pair"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// Parses a request as a case writes it.
pub fn parse_request(text: &str) -> Result<Message, String> {
    let (head, body) = head_and_body(text);
    let mut lines = head.into_iter();
    let first = lines.next().ok_or("an empty request")?;
    let mut parts = first.split_whitespace();
    let method = parts.next().ok_or("no method on the request line")?.to_owned();
    let target = parts.next().ok_or("no target on the request line")?;
    match parts.next() {
        None | Some("HTTP/1.1") => {}
        Some(other) => return Err(format!("unexpected `{other}` on the request line")),
    }
    let (path, mut query, raw_query) = match target.split_once('?') {
        Some((p, "")) => (p.to_owned(), Some(Vec::new()), None),
        Some((p, q)) => (p.to_owned(), Some(decode_pairs(q)), Some(q.to_owned())),
        None => (target.to_owned(), None, None),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let q =
                query.as_mut().ok_or_else(|| format!("an indented line `{line}` without a `?` target"))?;
            q.push(split_pair(line.trim_start()));
        } else {
            headers.push(parse_header(line)?);
        }
    }
    let is_form = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.to_ascii_lowercase().starts_with(FORM));
    let body = match body {
        None | Some("") => Body::Empty,
        Some(b) if is_form => Body::Form(b.lines().filter(|l| !l.is_empty()).map(split_pair).collect()),
        Some(b) => Body::Text(b.to_owned()),
    };
    Ok(Message { method, path, query, raw_query, headers, body })
}

/// Parses a response as a case writes it: `HTTP/1.1 200 OK`, headers, a blank line, the body.
pub fn parse_response(text: &str) -> Result<http::Response<Vec<u8>>, String> {
    let (head, body) = head_and_body(text);
    let mut lines = head.into_iter();
    let first = lines.next().ok_or("an empty response")?;
    let mut parts = first.split_whitespace();
    if parts.next() != Some("HTTP/1.1") {
        return Err(format!("`{first}` is not a status line"));
    }
    let status: u16 =
        parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status code in `{first}`"))?;
    let mut builder = http::Response::builder().status(status);
    for line in lines {
        let (name, value) = parse_header(line)?;
        builder = builder.header(name, value);
    }
    builder.body(body.unwrap_or("").as_bytes().to_vec()).map_err(|e| format!("bad response: {e}"))
}

/// Converts a request the client built into the case's form, with `Host` from the URI's authority.
pub fn from_http(request: &http::Request<Vec<u8>>, form: bool) -> Message {
    let uri = request.uri();
    let mut headers = Vec::new();
    if let Some(authority) = uri.authority() {
        headers.push(("Host".to_owned(), authority.as_str().to_owned()));
    }
    for (name, value) in request.headers() {
        headers.push((name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
    }
    let body = request.body();
    let body = if body.is_empty() {
        Body::Empty
    } else if form {
        Body::Form(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    } else {
        Body::Text(String::from_utf8_lossy(body).into_owned())
    };
    Message {
        method: request.method().as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(decode_pairs),
        raw_query: uri.query().map(str::to_owned),
        headers,
        body,
    }
}

/// Converts a URL the client built (the authorization request) into a GET message.
pub fn from_url(url: &str) -> Result<Message, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("the URL `{url}` is not a URI: {e}"))?;
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = uri;
    Ok(from_http(&request, false))
}

/// Whether `expected` says the body is a form.
pub fn expects_form(expected: &Message) -> bool {
    matches!(expected.body, Body::Form(_))
        || expected.header("content-type").is_some_and(|v| v.to_ascii_lowercase().starts_with(FORM))
}

/// Compares `actual` with `expected`, binding captures into `vars`. `ignore` names headers the
/// transport adds (compared by neither side).
pub fn compare(
    expected: &Message,
    actual: &Message,
    ignore: &[&str],
    vars: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let line = format!("{} {}", actual.method, actual.path);
    if expected.method != actual.method || expected.path != actual.path {
        return Err(format!("expected `{} {}`, got `{line}`", expected.method, expected.path));
    }
    match (&expected.query, &actual.query) {
        (None, None) => {}
        (None, Some(q)) => return Err(format!("{line}: unexpected query `{}`", pairs_text(q))),
        (Some(_), None) => return Err(format!("{line}: no query")),
        (Some(e), Some(a)) => compare_pairs("query", e, a, vars).map_err(|m| format!("{line}: {m}"))?,
    }
    let skip = |name: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case(name));
    let mut unmatched: Vec<&(String, String)> = actual.headers.iter().filter(|(n, _)| !skip(n)).collect();
    for (name, value) in expected.headers.iter().filter(|(n, _)| !skip(n)) {
        let candidates: Vec<usize> = unmatched
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
            .map(|(i, _)| i)
            .collect();
        let mut found = None;
        let mut last_err = None;
        for i in candidates {
            let Some((_, actual_value)) = unmatched.get(i) else { continue };
            match matches(value, actual_value, vars) {
                Ok(()) => {
                    found = Some(i);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (found, last_err) {
            (Some(i), _) => {
                unmatched.remove(i);
            }
            (None, Some(e)) => return Err(format!("{line}: header {name}: {e}")),
            (None, None) => return Err(format!("{line}: missing header `{name}: {value}`")),
        }
    }
    if let Some((name, value)) = unmatched.first() {
        return Err(format!("{line}: unexpected header `{name}: {}`", short(value)));
    }
    match (&expected.body, &actual.body) {
        (Body::Empty, Body::Empty) => Ok(()),
        (Body::Form(e), Body::Form(a)) => {
            compare_pairs("form", e, a, vars).map_err(|m| format!("{line}: {m}"))
        }
        (Body::Text(e), Body::Text(a)) => matches(e, a, vars).map_err(|m| format!("{line}: body: {m}")),
        (Body::Empty, _) => Err(format!("{line}: unexpected body")),
        (_, Body::Empty) => Err(format!("{line}: the body is empty")),
        _ => Err(format!("{line}: the body is not of the expected kind")),
    }
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", short(v))).collect::<Vec<_>>().join("&")
}

fn compare_pairs(
    what: &str,
    expected: &[(String, String)],
    actual: &[(String, String)],
    vars: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (i, pair) in actual.iter().enumerate() {
        let Some((name, value)) = expected.get(i) else {
            return Err(format!("{what}: unexpected field {} `{}={}`", i + 1, pair.0, short(&pair.1)));
        };
        if *name != pair.0 {
            return Err(format!("{what}: field {} is `{}`, expected `{name}`", i + 1, pair.0));
        }
        matches(value, &pair.1, vars).map_err(|e| format!("{what}: `{name}`: {e}"))?;
    }
    if let Some((name, value)) = expected.get(actual.len()) {
        return Err(format!("{what}: missing field {} `{name}={}`", actual.len() + 1, short(value)));
    }
    Ok(())
}

fn short(s: &str) -> String {
    if s.chars().count() > 72 {
        format!("{}…", s.chars().take(72).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Matches one value, with at most one `$<name[:class]>` capture in it.
pub fn matches(expected: &str, actual: &str, vars: &mut BTreeMap<String, String>) -> Result<(), String> {
    let Some(at) = expected.find("$<") else {
        return if expected == actual {
            Ok(())
        } else {
            Err(format!("expected `{}`, got `{}`", short(expected), short(actual)))
        };
    };
    let prefix = &expected[..at];
    let rest = &expected[at + 2..];
    let end = rest.find('>').ok_or_else(|| format!("unterminated capture in `{expected}`"))?;
    let (name, class) = match rest[..end].split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (&rest[..end], None),
    };
    let suffix = &rest[end + 1..];
    let mismatch = || format!("expected `{}`, got `{}`", short(expected), short(actual));
    let middle = actual
        .strip_prefix(prefix)
        .and_then(|m| m.strip_suffix(suffix))
        .filter(|m| !m.is_empty())
        .ok_or_else(mismatch)?;
    check_class(middle, class).map_err(|e| format!("`{name}`: {e}"))?;
    match vars.get(name) {
        Some(bound) if bound != middle => {
            Err(format!("`{name}` was `{}` earlier and is `{}` now", short(bound), short(middle)))
        }
        _ => {
            vars.insert(name.to_owned(), middle.to_owned());
            Ok(())
        }
    }
}

fn check_class(value: &str, class: Option<&str>) -> Result<(), String> {
    let b64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    match class {
        None => Ok(()),
        Some("b64url32") if value.len() == 43 && value.bytes().all(b64url) => Ok(()),
        Some("b64url32") => Err(format!("`{}` is not 43 base64url characters (32 bytes)", short(value))),
        Some("pkce") if is_pkce_verifier(value) => Ok(()),
        Some("pkce") => Err(format!("`{}` is not an RFC 7636 verifier", short(value))),
        Some(other) => Err(format!("unknown capture class `{other}`")),
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn is_pkce_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_indented_queries_and_form_bodies() {
        let m = parse_request(
            "GET /id/connect/authorize? HTTP/1.1\n    client_id=my.trusted.app/first\n    scope=openid profile\nHost: x\n",
        )
        .unwrap();
        assert_eq!(
            m.query,
            Some(vec![
                ("client_id".into(), "my.trusted.app/first".into()),
                ("scope".into(), "openid profile".into())
            ])
        );
        assert_eq!(m.headers, vec![("Host".into(), "x".into())]);
        assert_eq!(m.body, Body::Empty);
        let m =
            parse_request("POST /t\nContent-Type: application/x-www-form-urlencoded\n\na=b=c\nd=\n").unwrap();
        assert_eq!(m.body, Body::Form(vec![("a".into(), "b=c".into()), ("d".into(), "".into())]));
        assert_eq!(m.body_bytes(), b"a=b%3Dc&d=");
    }

    #[test]
    fn responses_keep_their_body_exactly() {
        let r = parse_response("HTTP/1.1 500 Oops\nContent-Type: text/html\n\n<html></html>\n").unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.body(), b"<html></html>");
        let r = parse_response("HTTP/1.1 502 Bad Gateway\n").unwrap();
        assert!(r.body().is_empty());
    }

    #[test]
    fn captures_bind_and_must_agree() {
        let mut vars = BTreeMap::new();
        assert!(matches("Bearer $<at>", "Bearer abc", &mut vars).is_ok());
        assert_eq!(vars["at"], "abc");
        assert!(matches("Bearer $<at>", "Bearer abd", &mut vars).is_err());
        assert!(matches("$<s:b64url32>", "short", &mut vars).is_err());
        assert!(matches("x", "y", &mut vars).is_err());
    }

    #[test]
    fn comparison_reports_the_first_difference() {
        let e =
            parse_request("POST /t\nContent-Type: application/x-www-form-urlencoded\n\na=1\nb=2\n").unwrap();
        let mut req = http::Request::new(b"a=1&b=3".to_vec());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = "https://h/t".parse().unwrap();
        req.headers_mut().insert("content-type", http::HeaderValue::from_static(FORM));
        let a = from_http(&req, true);
        let err = compare(&e, &a, &[], &mut BTreeMap::new()).unwrap_err();
        assert!(err.contains("unexpected header `Host: h`"), "{err}");
        let e =
            parse_request("POST /t\nHost: h\nContent-Type: application/x-www-form-urlencoded\n\na=1\nb=2\n")
                .unwrap();
        let err = compare(&e, &a, &[], &mut BTreeMap::new()).unwrap_err();
        assert!(err.contains("`b`: expected `2`, got `3`"), "{err}");
    }
}
