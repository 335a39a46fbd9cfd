//! The loopback redirect listener for console and native applications, on tokio: it receives the
//! browser's redirect after the login, like the blocking adapter's, without blocking a runtime thread.

use erpnet_oauth_core::listener::{self, CONNECTION_DEADLINE, MAX_CONNECTIONS, parse_head};
pub use erpnet_oauth_core::listener::{LoginOutcome, ReceivedCallback};
use erpnet_oauth_core::{CallbackFilter, Error, ListenerRequest, PendingLogin};
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long writing a page to the browser may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on the redirect URI's loopback address for the browser's redirect after the login.
///
/// It binds exactly the redirect URI's host and port (no port means 80); `localhost` is served on both
/// `127.0.0.1` and `[::1]` (RFC 8252 §8.3: the browser may resolve it to either), on the same port. It takes
/// only the callback of the login it waits for (catalogue B9, [`PendingLogin::callback_filter`]): another
/// path, a favicon, a request without this login's `state` (a web page embedding the callback address,
/// another login's stale callback) gets an error page and the wait goes on. Each connection is served by a
/// task of its own, with a deadline for its whole request (10 s) and bounded sizes, at most 16 at once (more
/// are answered 503), so that a slow or hostile client can hold neither the login nor the timeout. The wait
/// gives up after the timeout (default 300 s).
///
/// **Cancelling**: there is no cancel handle. Dropping the future of [`Self::wait`] cancels the wait and
/// closes the connections it was serving; wrap it in `tokio::select!` (with a Ctrl-C signal, a shutdown
/// channel) or `tokio::time::timeout`.
///
/// The browser that brought the callback is kept waiting for its page until the application says how the
/// login ended ([`Self::reply`]): "logged in" only once the tokens are verified and stored. A listener
/// dropped without a reply tells the browser to return to the application.
///
/// ```no_run
/// use erpnet_oauth_async::{AuthorizationRequest, ClientConfig, LoginOutcome, RedirectListener, Session};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = RedirectListener::bind("http://localhost:0/signin-callback").await?;
/// let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
///     .redirect_uri(listener.redirect_uri())
///     .build()?;
/// let session = Session::new(client).await?;
/// let pending = session.start_login(AuthorizationRequest::new())?;
/// println!("Open this URL in your browser: {}", pending.authorize_url());
/// let callback = tokio::select! {
///     callback = listener.wait(&pending) => callback?,
///     _ = tokio::signal::ctrl_c() => return Err("cancelled".into()),
/// };
/// match session.finish_login(pending, callback.as_callback()).await {
///     Ok(_) => listener.reply(LoginOutcome::LoggedIn { user: None }).await,
///     Err(e) => listener.reply(LoginOutcome::Failed { reason: &e.to_string() }).await,
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedirectListener {
    listeners: Vec<TcpListener>,
    redirect_uri: String,
    timeout: Duration,
    /// The connection of the browser that brought the callback, waiting for its page.
    browser: Mutex<Option<TcpStream>>,
}

impl RedirectListener {
    /// Binds the listener for `redirect_uri`, which must be `http://` to a loopback host (`localhost`,
    /// `127.0.0.1`, `[::1]`). Port 0 lets the OS choose a free port: then [`Self::redirect_uri`] names
    /// the port chosen (register that URI, or configure the trusted application to allow it). Call it
    /// within a tokio runtime.
    pub async fn bind(redirect_uri: &str) -> Result<RedirectListener, Error> {
        let (ips, port) = listener::loopback_addresses(redirect_uri)?;
        let listeners = bind_all(&ips, port)?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or_else(|| Error::Listener("no address could be bound".to_owned()))?;
        let redirect_uri = listener::served_redirect_uri(redirect_uri, bound.port())?;
        Ok(RedirectListener {
            listeners,
            redirect_uri,
            timeout: Duration::from_secs(300),
            browser: Mutex::default(),
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
    pub async fn reply(&self, outcome: LoginOutcome<'_>) {
        let taken = self.browser.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut stream) = taken {
            respond(&mut stream, 200, &outcome.message()).await;
        }
    }

    /// Waits for `pending`'s callback and returns it; see the type's docs for what is ignored. Ends with
    /// [`Error::LoginTimeout`] after the timeout, whatever the connections are doing; dropping the future
    /// cancels it.
    pub async fn wait(&self, pending: &PendingLogin) -> Result<ReceivedCallback, Error> {
        match tokio::time::timeout(self.timeout, self.serve_until_the_callback(pending)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Error::LoginTimeout(self.timeout)),
        }
    }

    async fn serve_until_the_callback(&self, pending: &PendingLogin) -> Result<ReceivedCallback, Error> {
        let filter = Arc::new(pending.callback_filter());
        let (found, mut callbacks) = mpsc::unbounded_channel::<(ReceivedCallback, TcpStream)>();
        // The connections being served: dropped (and so aborted) with the wait, however it ends.
        let mut connections = JoinSet::new();
        loop {
            let next = poll_fn(|cx| {
                if let Poll::Ready(Some(found)) = callbacks.poll_recv(cx) {
                    return Poll::Ready(Event::Callback(found));
                }
                for listener in &self.listeners {
                    if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                        return Poll::Ready(Event::Accepted(accepted.map(|(stream, _)| stream)));
                    }
                }
                Poll::Pending
            });
            match next.await {
                Event::Callback((callback, browser)) => {
                    *self.browser.lock().unwrap_or_else(PoisonError::into_inner) = Some(browser);
                    return Ok(callback);
                }
                Event::Accepted(Ok(stream)) => {
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= MAX_CONNECTIONS {
                        // No task for it: one attempt to say so, without waiting, then it is closed.
                        let _ = stream.try_write(&listener::response(503, "Too many connections."));
                        continue;
                    }
                    connections.spawn(serve(stream, filter.clone(), found.clone()));
                }
                Event::Accepted(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Event::Accepted(Err(e)) => {
                    return Err(Error::Listener(format!("accepting a connection failed: {e}")));
                }
            }
        }
    }
}

impl Drop for RedirectListener {
    fn drop(&mut self) {
        // No reply was given (the application ended early): the browser is not left hanging, and is told
        // nothing it cannot know. A drop cannot wait: one attempt to write the small page, then it is closed.
        let taken = self.browser.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(stream) = taken {
            let page = listener::response(200, listener::RECEIVED_MESSAGE);
            let mut written = 0;
            while let Some(rest) = page.get(written..).filter(|r| !r.is_empty()) {
                match stream.try_write(rest) {
                    Ok(n) if n > 0 => written += n,
                    _ => break,
                }
            }
        }
    }
}

enum Event {
    Callback((ReceivedCallback, TcpStream)),
    Accepted(std::io::Result<TcpStream>),
}

/// Serves one connection: reads the request within the connection's deadline, answers it, and hands this
/// login's callback (and the browser's connection) to the wait.
async fn serve(
    mut stream: TcpStream,
    filter: Arc<CallbackFilter>,
    found: mpsc::UnboundedSender<(ReceivedCallback, TcpStream)>,
) {
    let request = match tokio::time::timeout(CONNECTION_DEADLINE, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        // Malformed, too large, or not whole by the deadline.
        Ok(Err(status)) => return respond(&mut stream, status, "The request could not be read.").await,
        Err(_elapsed) => return respond(&mut stream, 400, "The request could not be read.").await,
    };
    match filter.judge(&request.method, &request.target, &request.body) {
        // The browser waits for its page until the application says how the login ended.
        ListenerRequest::Callback(callback) => {
            let _ = found.send((ReceivedCallback::from(callback), stream));
        }
        ListenerRequest::Ignore { status, reason } => respond(&mut stream, status, reason).await,
    }
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (bounded: the head by `MAX_HEAD`, the body by `MAX_BODY`); `Err` carries
/// the status to answer with.
async fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let mut received = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head = loop {
        if let Some(head) = parse_head(&received)? {
            break head;
        }
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        received.extend_from_slice(chunk.get(..n).filter(|c| !c.is_empty()).ok_or(400u16)?);
    };
    let end = head.head_len + head.content_length;
    while received.len() < end {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        received.extend_from_slice(chunk.get(..n).filter(|c| !c.is_empty()).ok_or(400u16)?);
    }
    let body = received.get(head.head_len..end).ok_or(400u16)?.to_vec();
    Ok(Request { method: head.method, target: head.target, body })
}

/// Answers with a page whose `message` is already HTML (escaped where it holds outside text), then closes.
async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let page = listener::response(status, message);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&page).await?;
        stream.shutdown().await
    })
    .await;
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
            match std::net::TcpListener::bind(SocketAddr::new(*ip, chosen)) {
                Ok(l) => {
                    if i == 0 {
                        chosen = l.local_addr().map(|a| a.port()).map_err(|e| err(ip, port, e))?;
                    }
                    l.set_nonblocking(true).map_err(|e| err(ip, chosen, e))?;
                    listeners.push(TcpListener::from_std(l).map_err(|e| err(ip, chosen, e))?);
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
