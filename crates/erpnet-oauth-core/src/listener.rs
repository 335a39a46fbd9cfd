//! What the adapters' loopback redirect listeners share, as data (catalogue B9): the limits, the reading
//! of a request's head, the callback as received, and the pages the browser gets.
//!
//! The listeners themselves (sockets, threads or tasks, deadlines) are the adapters'; which request is the
//! login's callback is [`CallbackFilter::judge`](crate::CallbackFilter::judge)'s. Nothing here does I/O:
//! an adapter reads bytes, asks [`parse_head`] whether it has a whole head, reads the body it announces,
//! judges the request, and writes what [`response`] renders.

use crate::authorize::Callback;
use crate::error::Error;
// Addresses as plain data (`core::net`): the core opens no socket.
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Largest request head (request line and headers) a listener reads; a longer one is answered 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest `form_post` body a listener reads; a longer one is answered 413.
pub const MAX_BODY: usize = 64 * 1024;
/// How long one connection may take to send its whole request (catalogue B9): a client that trickles
/// bytes is cut off with a 400, whatever each read would allow.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Connections a listener serves at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// The page for a browser whose callback was received when the application ended without saying how the
/// login went (the listener dropped without a reply): it is told nothing it cannot know.
pub const RECEIVED_MESSAGE: &str = "The login was received. Return to the application to see how it went.";

/// The addresses a listener for `redirect_uri` binds, and the port (0: the OS chooses one). The URI
/// must be `http://` to a loopback host: `localhost` is both `127.0.0.1` and `[::1]` (RFC 8252 §8.3: the
/// browser may resolve it to either), `127.0.0.1` and `[::1]` themselves; no port means 80.
pub fn loopback_addresses(redirect_uri: &str) -> Result<(Vec<IpAddr>, u16), Error> {
    let url = url::Url::parse(redirect_uri)
        .map_err(|e| Error::Listener(format!("the redirect URI is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(Error::Listener(format!(
            "a loopback redirect URI uses http, not `{}:` (web applications receive the callback \
             in their own server)",
            url.scheme()
        )));
    }
    let ips: Vec<IpAddr> = match url.host() {
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        }
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => vec![ip.into()],
        _ => {
            return Err(Error::Listener(
                "the redirect URI's host is not a loopback address (localhost, 127.0.0.1, [::1])".to_owned(),
            ));
        }
    };
    Ok((ips, url.port().unwrap_or(80)))
}

/// The redirect URI a listener bound on `port` serves: `redirect_uri` as given, or with the port the OS
/// chose when it asked for port 0.
pub fn served_redirect_uri(redirect_uri: &str, port: u16) -> Result<String, Error> {
    let mut url = url::Url::parse(redirect_uri)
        .map_err(|e| Error::Listener(format!("the redirect URI is not a URL: {e}")))?;
    if url.port() != Some(0) {
        return Ok(redirect_uri.to_owned());
    }
    url.set_port(Some(port)).map_err(|()| Error::Listener("cannot set the chosen port".to_owned()))?;
    Ok(url.to_string())
}

/// The callback as a listener received it; borrow it as a [`Callback`] to finish the login with.
#[derive(Clone, PartialEq, Eq)]
pub enum ReceivedCallback {
    /// `GET <path>?<query>`: the query string (the seed's callback).
    Query(String),
    /// `POST <path>` with an `application/x-www-form-urlencoded` body (`response_mode=form_post`).
    FormPost(Vec<u8>),
}

impl std::fmt::Debug for ReceivedCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The callback holds the authorization code: show only its shape.
        match self {
            ReceivedCallback::Query(q) => write!(f, "Query({} bytes)", q.len()),
            ReceivedCallback::FormPost(b) => write!(f, "FormPost({} bytes)", b.len()),
        }
    }
}

impl ReceivedCallback {
    /// The callback for the session's `finish_login` (or [`crate::PendingLogin::handle_callback`]).
    pub fn as_callback(&self) -> Callback<'_> {
        match self {
            ReceivedCallback::Query(q) => Callback::Query(q),
            ReceivedCallback::FormPost(b) => Callback::FormPost(b),
        }
    }
}

impl From<Callback<'_>> for ReceivedCallback {
    /// Owns a callback that [`crate::CallbackFilter::judge`] took (a query or a form body); a full URL
    /// keeps its query.
    fn from(callback: Callback<'_>) -> Self {
        match callback {
            Callback::Query(q) => ReceivedCallback::Query(q.strip_prefix('?').unwrap_or(q).to_owned()),
            Callback::FormPost(b) => ReceivedCallback::FormPost(b.to_vec()),
            Callback::Url(u) => {
                ReceivedCallback::Query(u.split_once('?').map(|(_, q)| q).unwrap_or_default().to_owned())
            }
        }
    }
}

/// How a login ended, for the page the browser that brought the callback gets.
#[derive(Debug, Clone, Copy)]
pub enum LoginOutcome<'a> {
    /// Logged in (as `user`, when known): the tokens are verified and stored.
    LoggedIn {
        /// Who, e.g. the ID token's `sub` or name; it is escaped before it reaches the page.
        user: Option<&'a str>,
    },
    /// The login failed; `reason` (escaped before it reaches the page) says why.
    Failed {
        /// What went wrong.
        reason: &'a str,
    },
}

impl LoginOutcome<'_> {
    /// The page's message, as HTML (the user and the reason escaped).
    pub fn message(&self) -> String {
        match self {
            LoginOutcome::LoggedIn { user } => {
                let who = user.map(|u| format!(" as {}", html_escape(u))).unwrap_or_default();
                format!("Logged in{who}. You can close this window and return to the application.")
            }
            LoginOutcome::Failed { reason } => {
                format!("The login failed: {}. You can close this window.", html_escape(reason))
            }
        }
    }
}

/// `text` for an HTML page: markup characters escaped, control characters dropped.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The whole HTTP/1.1 answer (status line, headers, a small HTML page saying `message`, which is already
/// HTML: escape what it holds from outside with [`html_escape`]). The connection is closed after it.
pub fn response(status: u16, message: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ERP.net login</title></head>\
         <body><p>{message}</p></body></html>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A request's head, read by [`parse_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`...
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The body's length (`Content-Length`; 0 without one), at most [`MAX_BODY`].
    pub content_length: usize,
    /// How many bytes of the input the head took: the body starts there.
    pub head_len: usize,
}

/// Reads the head of an HTTP/1.1 request from the bytes received so far: `Ok(None)` until the blank line
/// that ends it has come, `Ok(Some(head))` then, `Err(status)` for a request to refuse (400 malformed, 413
/// a body over [`MAX_BODY`], 431 a head over [`MAX_HEAD`]). Lines end with CRLF or a bare LF. A malformed
/// request line is refused as soon as it is complete.
pub fn parse_head(received: &[u8]) -> Result<Option<RequestHead>, u16> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut end = None;
    for (i, b) in received.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = received.get(start..i).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start = i + 1;
        if start > MAX_HEAD {
            return Err(431);
        }
        if lines.is_empty() {
            request_line(line)?;
        } else if line.is_empty() {
            end = Some(start);
            break;
        }
        lines.push(line);
    }
    let Some(head_len) = end else {
        return if received.len() > MAX_HEAD { Err(431) } else { Ok(None) };
    };
    let (first, headers) = lines.split_first().ok_or(400u16)?;
    let (method, target) = request_line(first)?;
    let mut content_length = 0usize;
    for line in headers {
        let line = std::str::from_utf8(line).map_err(|_| 400u16)?;
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().map_err(|_| 400u16)?;
        }
    }
    if content_length > MAX_BODY {
        return Err(413);
    }
    Ok(Some(RequestHead { method, target, content_length, head_len }))
}

/// The method and target of a request line (`GET /path?query HTTP/1.1`).
fn request_line(line: &[u8]) -> Result<(String, String), u16> {
    let line = std::str::from_utf8(line).map_err(|_| 400u16)?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => Ok((method.to_owned(), target.to_owned())),
        _ => Err(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_once_its_blank_line_came() {
        let request = b"POST /cb?x HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 3\r\n\r\nabc";
        for n in 0..request.len() - 3 {
            assert_eq!(parse_head(&request[..n]), Ok(None), "{n} bytes");
        }
        let head = parse_head(request).unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("POST", "/cb?x"));
        assert_eq!((head.content_length, head.head_len), (3, request.len() - 3));
        // Bare LFs too.
        let head = parse_head(b"GET /cb?x HTTP/1.1\nHost: a\n\n").unwrap().unwrap();
        assert_eq!((head.target.as_str(), head.content_length), ("/cb?x", 0));
    }

    #[test]
    fn a_request_to_refuse_gets_its_status() {
        assert_eq!(parse_head(b"GET\r\n"), Err(400), "refused once the request line is complete");
        assert_eq!(parse_head(b"\r\n\r\n"), Err(400));
        assert_eq!(parse_head(b"GET /cb HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Err(400));
        assert_eq!(parse_head(b"GET /cb HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), Err(400));
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_head(b"POST /cb HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"), Err(413));
        let mut long = b"GET /cb HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse_head(&long), Err(431), "no end in sight");
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&long), Err(431));
    }

    #[test]
    fn pages_escape_what_comes_from_outside() {
        let page = String::from_utf8(response(404, "gone")).unwrap();
        assert!(page.starts_with("HTTP/1.1 404 Not Found\r\n"), "{page}");
        assert!(page.ends_with("<body><p>gone</p></body></html>"), "{page}");
        let failed = LoginOutcome::Failed { reason: "<script>x</script>\u{7}" }.message();
        assert_eq!(failed, "The login failed: &lt;script&gt;x&lt;/script&gt;. You can close this window.");
        let user = LoginOutcome::LoggedIn { user: Some("a&b") }.message();
        assert!(user.starts_with("Logged in as a&amp;b."), "{user}");
    }

    #[test]
    fn only_http_to_a_loopback_host_is_listened_on() {
        let v4 = IpAddr::from(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::from(Ipv6Addr::LOCALHOST);
        assert_eq!(loopback_addresses("http://localhost/cb").unwrap(), (vec![v4, v6], 80));
        assert_eq!(loopback_addresses("http://127.0.0.1:0/cb").unwrap(), (vec![v4], 0));
        assert_eq!(loopback_addresses("http://[::1]:8400/cb").unwrap(), (vec![v6], 8400));
        for refused in ["https://localhost/cb", "http://example.com/cb", "http://10.0.0.1/cb", "not a url"] {
            assert!(matches!(loopback_addresses(refused), Err(Error::Listener(_))), "{refused}");
        }
        assert_eq!(served_redirect_uri("http://127.0.0.1:0/cb", 5000).unwrap(), "http://127.0.0.1:5000/cb");
        assert_eq!(served_redirect_uri("http://localhost/cb", 80).unwrap(), "http://localhost/cb");
    }

    #[test]
    fn a_judged_callback_is_owned_as_it_came() {
        assert_eq!(
            ReceivedCallback::from(Callback::Query("code=c")),
            ReceivedCallback::Query("code=c".into())
        );
        assert_eq!(
            ReceivedCallback::from(Callback::FormPost(b"code=c")),
            ReceivedCallback::FormPost(b"code=c".to_vec())
        );
        assert_eq!(format!("{:?}", ReceivedCallback::Query("code=secret".into())), "Query(11 bytes)");
    }
}
