//! `erpnet-oauth call METHOD URL`: an authorized request to the instance, its body on stdout.
//!
//! - The arguments are checked before anything is read or sent: a method `call` does not send, a malformed
//!   header, an unreadable `--data @FILE` are usage errors (exit 2).
//! - An error status (after the one refresh and retry a 401 allows) prints the body all the same, then
//!   exits 4 with one line naming the status.
//! - The body is the server's text. To a pipe or a file it goes as the bytes received, so that what a
//!   script reads is exactly what the server sent; to a terminal it is shown as text with every control
//!   and bidi character escaped (`\u{1b}`), line breaks and tabs kept, so that no server drives the
//!   terminal (issue 13). Header values are escaped wherever they go.
//! - `--paginate` follows OData's `@odata.nextLink` on the instance only and prints one document.

use crate::errors::failure;
use crate::exit::Failure;
use erpnet_oauth_core::{check_api_response, escape, needs_escape};
use erpnet_oauth_ureq::Session;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::io::{IsTerminal as _, Read as _, Write as _};
use url::Url;

/// The methods `call` sends. Not TRACE, whose answer echoes the request with its `Authorization` header,
/// nor CONNECT.
const METHODS: [http::Method; 7] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
    http::Method::OPTIONS,
];

/// `--paginate` stops with an error past this many pages.
pub const MAX_PAGES: usize = 1000;

/// A checked `call`: nothing read from the network yet.
#[derive(Debug)]
pub struct CallRequest {
    method: http::Method,
    url: String,
    headers: http::HeaderMap,
    body: Option<Vec<u8>>,
    paginate: bool,
}

impl CallRequest {
    /// Checks the arguments and reads the body (`--data @FILE`, `--data @-`). Every failure is a usage
    /// error (exit 2), before any request.
    pub fn parse(
        method: &str,
        url: &str,
        data: Option<String>,
        data_raw: Option<String>,
        headers: &[String],
        paginate: bool,
    ) -> Result<CallRequest, Failure> {
        let upper = method.to_ascii_uppercase();
        let method = METHODS.into_iter().find(|m| m.as_str() == upper).ok_or_else(|| {
            Failure::usage(format!(
                "`{method}` is not an HTTP method `call` sends: use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"
            ))
        })?;
        if paginate && method != http::Method::GET {
            return Err(Failure::usage(format!(
                "--paginate follows the @odata.nextLink of GET requests only, not {method}"
            )));
        }
        let mut map = http::HeaderMap::new();
        for h in headers {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                Failure::usage(format!("the header `{h}` is not of the form 'Name: value'"))
            })?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Failure::usage(format!("`{}` is not a header name", name.trim())))?;
            if name == http::header::AUTHORIZATION {
                return Err(Failure::usage("the Authorization header is set by erpnet-oauth itself"));
            }
            let value = http::HeaderValue::from_str(value.trim())
                .map_err(|_| Failure::usage(format!("the value of the header `{name}` is not allowed")))?;
            map.append(name, value);
        }
        let body = match (data, data_raw) {
            (Some(data), _) => Some(read_data(data)?),
            (None, Some(raw)) => Some(raw.into_bytes()),
            (None, None) => None,
        };
        if !map.contains_key(http::header::ACCEPT) {
            map.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
        }
        if body.is_some() && !map.contains_key(http::header::CONTENT_TYPE) {
            map.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        }
        Ok(CallRequest { method, url: url.to_owned(), headers: map, body, paginate })
    }

    fn request(&self, url: &Url) -> Result<http::Request<Vec<u8>>, Failure> {
        let mut builder = http::Request::builder().method(self.method.clone()).uri(url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(self.body.clone().unwrap_or_default()).map_err(|e| Failure::usage(e.to_string()))
    }
}

/// `--data`: the body itself, or `@FILE` / `@-` (stdin), read as bytes.
fn read_data(data: String) -> Result<Vec<u8>, Failure> {
    let Some(path) = data.strip_prefix('@') else { return Ok(data.into_bytes()) };
    if path == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| Failure::usage(format!("cannot read the request body from stdin: {e}")))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the request body from the file `{path}`: {e} (--data-raw sends a body that starts with '@')"
        ))
    })
}

/// Sends `request` and prints the answer (with `include`, its status line and headers first).
pub fn run(session: &Session, request: CallRequest, include: bool) -> Result<(), Failure> {
    let url = session.client().resolve(&request.url).map_err(|e| Failure::usage(e.to_string()))?;
    // The access token goes to the instance only, never to a URL elsewhere (which would leak it).
    let instance = session.client().instance().origin();
    if url.origin() != instance {
        return Err(Failure::usage(format!(
            "{url} is not on the instance {}: `call` sends the access token to the instance only",
            instance.ascii_serialization()
        )));
    }
    if request.paginate {
        return paginate(session, &request, url);
    }
    let response = session.send_any_status(request.request(&url)?).map_err(failure)?;
    let mut out = Out::stdout();
    if include {
        out.head(&response)?;
    }
    out.body(response.body())?;
    out.flush()?;
    match status_failure(&response) {
        Some(failed) => Err(failed),
        None => Ok(()),
    }
}

/// The failure an answer's status means (exit 4), `None` for a success.
fn status_failure(response: &http::Response<Vec<u8>>) -> Option<Failure> {
    let status = response.status();
    if status.is_success() {
        return None;
    }
    Some(Failure::server(match check_api_response(response) {
        Err(e) => e.to_string(),
        Ok(()) => format!("the server answered HTTP {status} (a redirect is not followed)"),
    }))
}

/// One page of an OData collection (OData JSON Format 4.01 §12: `value`, with the control information
/// `@odata.context` and `@odata.nextLink`, or without the `odata.` prefix as 4.01 allows). The rows stay
/// as the server wrote them: numbers are not rounded through `f64`.
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(rename = "@odata.context", alias = "@context", default)]
    context: Option<Box<RawValue>>,
    value: Vec<Box<RawValue>>,
    #[serde(rename = "@odata.nextLink", alias = "@nextLink", default)]
    next_link: Option<String>,
}

/// `--paginate`: GETs `url`, then each page's `@odata.nextLink` (relative to the page's context URL,
/// else to the page's own URL), on the instance only, each at most once, at most [`MAX_PAGES`]; prints
/// `{"@odata.context": <the first page's>, "value": [<every row>]}`.
fn paginate(session: &Session, request: &CallRequest, first: Url) -> Result<(), Failure> {
    let instance = session.client().instance().origin();
    let mut seen = HashSet::from([first.as_str().to_owned()]);
    let mut url = first;
    let mut context = None;
    let mut rows = Vec::new();
    for number in 1..=MAX_PAGES {
        let response = session.send_any_status(request.request(&url)?).map_err(failure)?;
        if let Some(failed) = status_failure(&response) {
            // The server's answer is shown as for any call; the rows gathered so far are not printed.
            let mut out = Out::stdout();
            out.body(response.body())?;
            out.flush()?;
            return Err(Failure::server(format!("page {number} ({url}): {}", failed.message)));
        }
        let page: Page = serde_json::from_slice(response.body()).map_err(|e| {
            Failure::server(format!(
                "page {number} ({url}) is not an OData collection, a JSON object with an array `value` \
                 (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if number == 1 {
            context = page.context.as_ref().map(|c| c.get().to_owned());
        }
        rows.extend(page.value);
        let Some(link) = page.next_link else {
            let mut doc = String::from("{");
            if let Some(context) = &context {
                doc.push_str("\"@odata.context\":");
                doc.push_str(context);
                doc.push(',');
            }
            doc.push_str("\"value\":[");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    doc.push(',');
                }
                doc.push_str(row.get());
            }
            doc.push_str("]}");
            let mut out = Out::stdout();
            out.body(doc.as_bytes())?;
            return out.flush();
        };
        // OData: a relative URL is relative to the context URL of its object, which is itself relative
        // to the request's URL.
        let base = page
            .context
            .as_ref()
            .and_then(|c| serde_json::from_str::<String>(c.get()).ok())
            .and_then(|c| url.join(&c).ok())
            .unwrap_or_else(|| url.clone());
        let next = base.join(&link).map_err(|e| {
            Failure::server(format!("page {number}'s @odata.nextLink `{link}` is not a URL ({e})"))
        })?;
        if next.origin() != instance {
            return Err(Failure::server(format!(
                "page {number}'s @odata.nextLink {next} is not on the instance {}: not followed (the access \
                 token is sent to the instance only)",
                instance.ascii_serialization()
            )));
        }
        if !seen.insert(next.as_str().to_owned()) {
            return Err(Failure::server(format!(
                "page {number}'s @odata.nextLink {next} leads back to a page already fetched: the server's \
                 paging loops; stopped"
            )));
        }
        url = next;
    }
    Err(Failure::server(format!(
        "the collection has more than {MAX_PAGES} pages; stopped (narrow the query with $filter or $top)"
    )))
}

/// Stdout, for the server's answer: raw bytes to a pipe or file, escaped text to a terminal.
struct Out {
    out: std::io::StdoutLock<'static>,
    terminal: bool,
}

impl Out {
    fn stdout() -> Out {
        let stdout = std::io::stdout();
        Out { terminal: stdout.is_terminal(), out: stdout.lock() }
    }

    /// The status line and the headers (values escaped), then a blank line, as `curl -i` shows them.
    fn head(&mut self, response: &http::Response<Vec<u8>>) -> Result<(), Failure> {
        let status = response.status();
        let mut text = format!("{:?} {}", response.version(), status.as_u16());
        if let Some(reason) = status.canonical_reason() {
            text.push(' ');
            text.push_str(reason);
        }
        text.push('\n');
        for (name, value) in response.headers() {
            text.push_str(&format!("{name}: {}\n", escape(&String::from_utf8_lossy(value.as_bytes()))));
        }
        text.push('\n');
        self.out.write_all(text.as_bytes()).map_err(Failure::stdout)
    }

    /// The body, ending with a line break; nothing for an empty body.
    fn body(&mut self, body: &[u8]) -> Result<(), Failure> {
        if body.is_empty() {
            return Ok(());
        }
        let shown;
        let bytes = if self.terminal {
            shown = for_terminal(body);
            shown.as_bytes()
        } else {
            body
        };
        self.out
            .write_all(bytes)
            .and_then(|()| if bytes.ends_with(b"\n") { Ok(()) } else { self.out.write_all(b"\n") })
            .map_err(Failure::stdout)
    }

    fn flush(mut self) -> Result<(), Failure> {
        self.out.flush().map_err(Failure::stdout)
    }
}

/// `body` as text for a terminal: UTF-8 (invalid sequences as U+FFFD), line breaks and tabs kept (a CR
/// before a line break dropped), every other character of [`needs_escape`] written `\u{..}` as
/// [`escape`] writes it.
pub fn for_terminal(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => {}
            c if needs_escape(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_no_control_character() {
        let hostile = "{\"name\":\"\x1b[2J\x1b]0;pwned\x07\u{202e}gpj.exe\"}\r\n\tnext\u{85}line\n";
        let shown = for_terminal(hostile.as_bytes());
        assert_eq!(
            shown,
            "{\"name\":\"\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}gpj.exe\"}\n\tnext\\u{85}line\n"
        );
        assert!(!shown.chars().any(|c| needs_escape(c) && c != '\n' && c != '\t'));
        // A lone CR (which would move the cursor back over the line) is escaped; invalid UTF-8 is shown as
        // U+FFFD; letters stay.
        assert_eq!(for_terminal(b"a\rb \xff \xd0\x9f"), "a\\u{d}b \u{fffd} П");
    }

    #[test]
    fn methods_call_does_not_send_are_usage_errors() {
        for bad in ["FROB", "GE T", "", "TRACE", "CONNECT", "GET\n"] {
            let e = CallRequest::parse(bad, "/x", None, None, &[], false).unwrap_err();
            assert_eq!(e.code, crate::exit::Code::Usage, "{bad:?}");
            assert!(e.message.contains("not an HTTP method `call` sends"), "{e}");
        }
        for good in ["get", "GET", "Head", "post", "PUT", "patch", "DELETE", "options"] {
            let r = CallRequest::parse(good, "/x", None, None, &[], false).unwrap();
            assert_eq!(r.method.as_str(), good.to_ascii_uppercase());
        }
        let e = CallRequest::parse("POST", "/x", None, None, &[], true).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("--paginate"), "{e}");
    }

    #[test]
    fn bodies_from_files_and_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body.bin");
        std::fs::write(&file, b"\x00\xff{\"a\":1}\r\n").unwrap();
        let at = format!("@{}", file.display());
        let r = CallRequest::parse("POST", "/x", Some(at.clone()), None, &[], false).unwrap();
        assert_eq!(r.body.as_deref(), Some(&b"\x00\xff{\"a\":1}\r\n"[..]));
        assert_eq!(r.headers[http::header::CONTENT_TYPE], "application/json");
        let r = CallRequest::parse("POST", "/x", None, Some(at.clone()), &[], false).unwrap();
        assert_eq!(r.body, Some(at.into_bytes()), "--data-raw is the body itself");
        let r = CallRequest::parse("POST", "/x", None, None, &["Content-Type: text/plain".into()], false)
            .unwrap();
        assert_eq!(r.body, None);
        let missing = format!("@{}", dir.path().join("missing").display());
        let e = CallRequest::parse("POST", "/x", Some(missing), None, &[], false).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("--data-raw"), "{e}");
    }
}
