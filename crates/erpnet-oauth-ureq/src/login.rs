//! The loopback redirect listener for console and native applications (the seed's "console based
//! external application"): it receives the browser's redirect after the login.

use crate::Error;
use erpnet_oauth_core::{Callback, CallbackFilter, ListenerRequest, PendingLogin};
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
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
/// It binds exactly the redirect URI's host and port (`localhost` binds `127.0.0.1`; no port means 80) and
/// takes only the callback of the login it waits for (catalogue B9, [`PendingLogin::judge_request`]):
/// another path, a favicon, a request without this login's `state` (a web page embedding the callback
/// address, another login's stale callback) gets an error page and the wait goes on. Connections are
/// served at once, each on its own thread with a deadline for its whole request (10 s) and bounded sizes,
/// so that a slow or hostile client can neither hold the login nor delay the timeout or a cancel. The
/// wait gives up after the timeout (default 300 s) or when cancelled.
#[derive(Debug)]
pub struct RedirectListener {
    listener: TcpListener,
    redirect_uri: String,
    timeout: Duration,
    cancel: Cancel,
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
        let ip: IpAddr = match url.host() {
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => Ipv4Addr::LOCALHOST.into(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => ip.into(),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => ip.into(),
            _ => {
                return Err(Error::Listener(
                    "the redirect URI's host is not a loopback address (localhost, 127.0.0.1, [::1])"
                        .to_owned(),
                ));
            }
        };
        let port = url.port().unwrap_or(80);
        let listener = TcpListener::bind(SocketAddr::new(ip, port))
            .map_err(|e| Error::Listener(format!("cannot listen on {ip}:{port}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::Listener(e.to_string()))?;
        let mut actual = url.clone();
        if port == 0 {
            actual
                .set_port(Some(bound.port()))
                .map_err(|_| Error::Listener("cannot set the chosen port".to_owned()))?;
        }
        listener.set_nonblocking(true).map_err(|e| Error::Listener(e.to_string()))?;
        let redirect_uri = if port == 0 { actual.to_string() } else { redirect_uri.to_owned() };
        Ok(RedirectListener {
            listener,
            redirect_uri,
            timeout: Duration::from_secs(300),
            cancel: Cancel::new(),
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

    /// The local address bound.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(|e| Error::Listener(e.to_string()))
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
        let (found, callbacks) = mpsc::channel::<Request>();
        let busy = Arc::new(AtomicUsize::new(0));
        let filter = Arc::new(pending.callback_filter());
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::LoginTimeout(self.timeout));
            }
            if let Ok(request) = callbacks.try_recv() {
                return Ok(if request.method == "POST" {
                    ReceivedCallback::FormPost(request.body)
                } else {
                    ReceivedCallback::Query(
                        request.target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default(),
                    )
                });
            }
            match self.listener.accept() {
                Ok((stream, _)) => self.serve(stream, &filter, &busy, &found),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Listener(format!("accepting a connection failed: {e}"))),
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
        found: &mpsc::Sender<Request>,
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
                    ListenerRequest::Callback(_) => {
                        respond(&mut writer, 200, page(&request));
                        let _ = found.send(request);
                    }
                    ListenerRequest::Ignore { status, reason } => respond(&mut writer, status, reason),
                },
                Err(status) => respond(&mut writer, status, "The request could not be read."),
            }
        });
    }
}

/// Counts a connection out when its thread ends, however it ends.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The page for the browser once the callback arrived.
fn page(request: &Request) -> &'static str {
    let refused = match request.target.split_once('?') {
        Some((_, q)) if request.method == "GET" => has_error(q.as_bytes()),
        _ => has_error(&request.body),
    };
    if refused {
        "The login was refused or failed. You can close this window."
    } else {
        "Login received. You can close this window and return to the application."
    }
}

fn has_error(form: &[u8]) -> bool {
    form.split(|b| *b == b'&').any(|pair| pair.starts_with(b"error="))
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
