//! The loopback redirect listener for console and native applications (the seed's "console based
//! external application"): it receives the browser's redirect after the login.

use crate::Error;
use erpnet_oauth_core::listener::{self, CONNECTION_DEADLINE, MAX_BODY, MAX_CONNECTIONS, MAX_HEAD};
pub use erpnet_oauth_core::listener::{LoginOutcome, ReceivedCallback};
use erpnet_oauth_core::{CallbackFilter, ListenerRequest, PendingLogin};
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the waiting loop checks the cancel flag and the deadline.
const POLL: Duration = Duration::from_millis(25);

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

impl RedirectListener {
    /// Binds the listener for `redirect_uri`, which must be `http://` to a loopback host (`localhost`,
    /// `127.0.0.1`, `[::1]`). Port 0 lets the OS choose a free port: then [`Self::redirect_uri`] names
    /// the port chosen (register that URI, or configure the trusted application to allow it).
    pub fn bind(redirect_uri: &str) -> Result<RedirectListener, Error> {
        let (ips, port) = listener::loopback_addresses(redirect_uri)?;
        let listeners = bind_all(&ips, port)?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or_else(|| Error::Listener("no address could be bound".to_owned()))?;
        for listener in &listeners {
            listener.set_nonblocking(true).map_err(|e| Error::Listener(e.to_string()))?;
        }
        let redirect_uri = listener::served_redirect_uri(redirect_uri, bound.port())?;
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
            respond(&mut stream, 200, &outcome.message());
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
            respond(&mut stream, 200, listener::RECEIVED_MESSAGE);
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
    let _ = stream.write_all(&listener::response(status, message));
    let _ = stream.flush();
}
