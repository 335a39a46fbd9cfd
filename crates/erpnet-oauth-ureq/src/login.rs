//! The loopback redirect listener for console and native applications (the seed's "console based
//! external application"): it receives the browser's redirect after the login.

use crate::Error;
use erpnet_oauth_core::{Callback, CallbackFilter, ListenerRequest, PendingLogin};
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) the listener reads.
const MAX_HEAD: usize = 16 * 1024;
/// Largest `form_post` body the listener reads.
const MAX_BODY: usize = 64 * 1024;
/// How often the waiting loop checks the cancel flag and the deadline.
const POLL: Duration = Duration::from_millis(25);
/// How long one connection may take to send its whole request (catalogue B9): a client that trickles
/// bytes is cut off, whatever the per-read timeout would allow.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 16;

/// Cancels a [`RedirectListener::wait`] from another thread (e.g. a Ctrl-C handler).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, not cancelled, handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the wait: it returns [`Error::Cancelled`] within a few tens of milliseconds.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The callback as the listener received it; borrow it as a [`Callback`] for
/// [`crate::Session::finish_login`].
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
    /// The callback for [`crate::Session::finish_login`].
    pub fn as_callback(&self) -> Callback<'_> {
        match self {
            ReceivedCallback::Query(q) => Callback::Query(q),
            ReceivedCallback::FormPost(b) => Callback::FormPost(b),
        }
    }
}

/// Listens on the redirect URI's loopback address for the browser's redirect after the login.
///
/// It binds exactly the redirect URI's host and port (no port means 80); `localhost` is served on both
/// `127.0.0.1` and `[::1]` (RFC 8252 §8.3: the browser may resolve it to either), on the same port. It takes
/// only the callback of the login it waits for (catalogue B9, [`PendingLogin::judge_request`]): another
/// path, a favicon, a request without this login's `state` (a web page embedding the callback address,
/// another login's stale callback) gets an error page and the wait goes on. Connections are served at once,
/// each on its own thread with a deadline for its whole request (10 s) and bounded sizes, so that a slow or
/// hostile client can neither hold the login nor delay the timeout or a cancel. The wait gives up after the
/// timeout (default 300 s) or when cancelled.
///
/// The browser that brought the callback is kept waiting for its page until the application says how the
/// login ended ([`Self::reply`]): "logged in" only once the tokens are verified and stored. A listener
/// dropped without a reply tells the browser to return to the application.
#[derive(Debug)]
pub struct RedirectListener {
    listeners: Vec<TcpListener>,
    redirect_uri: String,
    timeout: Duration,
    cancel: Cancel,
    /// The connection of the browser that brought the callback, waiting for its page.
    browser: Mutex<Option<TcpStream>>,
}

/// How a login ended, for the page the browser gets ([`RedirectListener::reply`]).
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

impl RedirectListener {
    /// Binds the listener for `redirect_uri`, which must be `http://` to a loopback host (`localhost`,
    /// `127.0.0.1`, `[::1]`). Port 0 lets the OS choose a free port: then [`Self::redirect_uri`] names
    /// the port chosen (register that URI, or configure the trusted application to allow it).
    pub fn bind(redirect_uri: &str) -> Result<RedirectListener, Error> {
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
                    "the redirect URI's host is not a loopback address (localhost, 127.0.0.1, [::1])"
                        .to_owned(),
                ));
            }
        };
        let port = url.port().unwrap_or(80);
        let listeners = bind_all(&ips, port)?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or_else(|| Error::Listener("no address could be bound".to_owned()))?;
        let mut actual = url.clone();
        if port == 0 {
            actual
                .set_port(Some(bound.port()))
                .map_err(|_| Error::Listener("cannot set the chosen port".to_owned()))?;
        }
        for listener in &listeners {
            listener.set_nonblocking(true).map_err(|e| Error::Listener(e.to_string()))?;
        }
        let redirect_uri = if port == 0 { actual.to_string() } else { redirect_uri.to_owned() };
        Ok(RedirectListener {
            listeners,
            redirect_uri,
            timeout: Duration::from_secs(300),
            cancel: Cancel::new(),
            browser: Mutex::new(None),
        })
    }

    /// How long [`Self::wait`] waits for the callback. Default 300 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The redirect URI served (with the port the OS chose, if port 0 was given).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The local address bound (the IPv4 one for `localhost`, which also listens on `[::1]`).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        let first = self.listeners.first().ok_or_else(|| Error::Listener("not bound".to_owned()))?;
        first.local_addr().map_err(|e| Error::Listener(e.to_string()))
    }

    /// Every local address bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Answers the browser that brought the callback with how the login ended (once the tokens are
    /// verified and stored, or what went wrong), escaped. Does nothing if there is no browser waiting.
    pub fn reply(&self, outcome: LoginOutcome<'_>) {
        let taken = self.browser.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut stream) = taken {
            match outcome {
                LoginOutcome::LoggedIn { user } => {
                    let who = user.map(|u| format!(" as {}", html_escape(u))).unwrap_or_default();
                    respond(
                        &mut stream,
                        200,
                        &format!("Logged in{who}. You can close this window and return to the application."),
                    );
                }
                LoginOutcome::Failed { reason } => respond(
                    &mut stream,
                    200,
                    &format!("The login failed: {}. You can close this window.", html_escape(reason)),
                ),
            }
        }
    }

    /// A handle that cancels [`Self::wait`] from another thread.
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Waits for `pending`'s callback and returns it; see the type's docs for what is ignored. Returns
    /// within a few tens of milliseconds of the timeout or a cancel, whatever the connections are doing.
    pub fn wait(&self, pending: &PendingLogin) -> Result<ReceivedCallback, Error> {
        // A timeout too large for the clock means: no deadline.
        let deadline = Instant::now().checked_add(self.timeout);
        let (found, callbacks) = mpsc::channel::<(Request, TcpStream)>();
        let busy = Arc::new(AtomicUsize::new(0));
        let filter = Arc::new(pending.callback_filter());
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::LoginTimeout(self.timeout));
            }
            if let Ok((request, browser)) = callbacks.try_recv() {
                *self.browser.lock().unwrap_or_else(PoisonError::into_inner) = Some(browser);
                return Ok(if request.method == "POST" {
                    ReceivedCallback::FormPost(request.body)
                } else {
                    ReceivedCallback::Query(
                        request.target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default(),
                    )
                });
            }
            let mut accepted = false;
            for listener in &self.listeners {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted = true;
                        self.serve(stream, &filter, &busy, &found);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(Error::Listener(format!("accepting a connection failed: {e}"))),
                }
            }
            if !accepted {
                std::thread::sleep(POLL);
            }
        }
    }

    /// Serves one connection on a thread of its own: reads the request within the connection's deadline,
    /// answers it, and hands this login's callback to the waiting loop.
    fn serve(
        &self,
        stream: TcpStream,
        filter: &Arc<CallbackFilter>,
        busy: &Arc<AtomicUsize>,
        found: &mpsc::Sender<(Request, TcpStream)>,
    ) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            respond(&mut stream, 503, "Too many connections.");
            return;
        }
        let (filter, done, found) = (filter.clone(), Done(busy.clone()), found.clone());
        // If no thread can be had, the closure (and the connection) is dropped; `done` counts it out.
        let _ = std::thread::Builder::new().name("erpnet-oauth-callback".to_owned()).spawn(move || {
            let _done = done;
            let Ok(mut writer) = stream.try_clone() else { return };
            match read_request(stream, Instant::now() + CONNECTION_DEADLINE) {
                Ok(request) => match filter.judge(&request.method, &request.target, &request.body) {
                    // The browser waits for its page until the application says how the login ended.
                    ListenerRequest::Callback(_) => {
                        let _ = writer.set_write_timeout(Some(Duration::from_secs(5)));
                        let _ = found.send((request, writer));
                    }
                    ListenerRequest::Ignore { status, reason } => respond(&mut writer, status, reason),
                },
                Err(status) => respond(&mut writer, status, "The request could not be read."),
            }
        });
    }
}

impl Drop for RedirectListener {
    fn drop(&mut self) {
        // No reply was given (the application ended early): the browser is not left hanging, and is told
        // nothing it cannot know.
        let taken = self.browser.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut stream) = taken {
            respond(
                &mut stream,
                200,
                "The login was received. Return to the application to see how it went.",
            );
        }
    }
}

/// Binds every address of `ips` on `port`; port 0 lets the OS choose for the first, and the others take the
/// same (a few tries if that port is taken there). An IPv6 loopback the machine does not have is skipped.
fn bind_all(ips: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, Error> {
    let err = |ip: &IpAddr, port: u16, e: std::io::Error| {
        Error::Listener(format!("cannot listen on {ip}:{port}: {e}"))
    };
    let mut last = None;
    for _ in 0..5 {
        let mut listeners = Vec::with_capacity(ips.len());
        let mut chosen = port;
        let mut retry = false;
        for (i, ip) in ips.iter().enumerate() {
            match TcpListener::bind(SocketAddr::new(*ip, chosen)) {
                Ok(l) => {
                    if i == 0 {
                        chosen = l.local_addr().map(|a| a.port()).map_err(|e| err(ip, port, e))?;
                    }
                    listeners.push(l);
                }
                Err(e) if i == 0 => return Err(err(ip, port, e)),
                // No IPv6 on this machine: IPv4 only.
                Err(e) if ip.is_ipv6() && e.kind() == std::io::ErrorKind::AddrNotAvailable => {}
                Err(e) if port == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    last = Some(err(ip, chosen, e));
                    retry = true;
                    break;
                }
                Err(e) => return Err(err(ip, chosen, e)),
            }
        }
        if !retry {
            return Ok(listeners);
        }
    }
    Err(last.unwrap_or_else(|| Error::Listener("no port could be bound".to_owned())))
}

/// `text` for an HTML page: markup characters escaped, control characters dropped.
fn html_escape(text: &str) -> String {
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

/// Counts a connection out when its thread ends, however it ends.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// A connection read under an overall deadline: each read waits at most what is left of it.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection's deadline passed",
            ));
        }
        self.stream.set_read_timeout(Some(left.min(Duration::from_secs(5))))?;
        self.stream.read(buf)
    }
}

/// Reads one HTTP/1.1 request by `deadline`; `Err` carries the status to answer with.
fn read_request(stream: TcpStream, deadline: Instant) -> Result<Request, u16> {
    let stream = Deadlined { stream, deadline };
    let mut reader = BufReader::new(stream.take((MAX_HEAD + MAX_BODY) as u64));
    let mut head_len = 0usize;
    let mut line = String::new();
    let read_line = |reader: &mut BufReader<_>, line: &mut String, head_len: &mut usize| -> Result<(), u16> {
        line.clear();
        let n = reader.read_line(line).map_err(|_| 400u16)?;
        *head_len += n;
        if n == 0 || *head_len > MAX_HEAD {
            return Err(if n == 0 { 400 } else { 431 });
        }
        Ok(())
    };
    read_line(&mut reader, &mut line, &mut head_len)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().ok_or(400u16)?.to_owned();
    let target = parts.next().ok_or(400u16)?.to_owned();
    let mut content_length = 0usize;
    loop {
        read_line(&mut reader, &mut line, &mut head_len)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().map_err(|_| 400u16)?;
        }
    }
    if content_length > MAX_BODY {
        return Err(413);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).map_err(|_| 400u16)?;
    Ok(Request { method, target, body })
}

/// Answers with a page whose `message` is already HTML (escaped where it holds outside text).
fn respond(stream: &mut TcpStream, status: u16, message: &str) {
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
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}
