//! The loopback listener takes only the callback of the login it waits for (catalogue B9), serves
//! connections at once, each under a deadline for its whole request, and keeps the wait's own timeout
//! whatever the connections do; dropping the wait's future cancels it.

use erpnet_oauth_async::{
    AuthorizationRequest, Callback, ClientConfig, Error, LoginOutcome, OsRandom, PendingLogin,
    ReceivedCallback, RedirectListener,
};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

fn pending_for(redirect_uri: &str) -> PendingLogin {
    let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
        .redirect_uri(redirect_uri)
        .build()
        .unwrap();
    AuthorizationRequest::new().build(&client, &mut OsRandom).unwrap()
}

/// Sends one raw request (from a plain blocking socket: the browser) and returns the whole answer.
fn answer_to(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn status_of(port: u16, request: &str) -> u16 {
    answer_to(port, request).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn get(port: u16, target: &str) -> u16 {
    status_of(port, &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_this_logins_callback_ends_the_wait() {
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let state = pending.state().to_owned();
    let browser = std::thread::spawn(move || {
        let ignored = [
            get(port, "/favicon.ico"),
            // A page that embeds <img src="http://127.0.0.1:PORT/signin-callback?x=1">.
            get(port, "/signin-callback?x=1"),
            get(port, "/signin-callback"),
            // Another login's callback, and one with the state given twice.
            get(port, "/signin-callback?code=stale&state=another-login"),
            get(port, &format!("/signin-callback?code=c&state={state}&state={state}")),
            status_of(port, &format!("PUT /signin-callback?code=c&state={state} HTTP/1.1\r\n\r\n")),
        ];
        // This login's: its page comes once the application replied.
        let page = answer_to(
            port,
            &format!("GET /signin-callback?code=the-code&state={state} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        );
        (ignored, page)
    });
    let callback = listener.wait(&pending).await.unwrap();
    match callback.as_callback() {
        Callback::Query(q) => assert!(q.starts_with("code=the-code&state="), "{q}"),
        other => panic!("{other:?}"),
    }
    listener.reply(LoginOutcome::LoggedIn { user: Some("<admin>") }).await;
    let (ignored, page) = browser.join().unwrap();
    assert_eq!(ignored, [404, 400, 400, 400, 400, 405]);
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Logged in as &lt;admin&gt;."), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_callback_is_taken_and_a_listener_dropped_without_a_reply_still_answers() {
    let listener = RedirectListener::bind("http://localhost:0/cb").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let body = format!("code=c&state={}", pending.state());
    let request = format!(
        "POST /cb HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let browser = std::thread::spawn(move || answer_to(port, &request));
    let callback = listener.wait(&pending).await.unwrap();
    assert_eq!(callback, ReceivedCallback::FormPost(body.into_bytes()));
    drop(listener);
    let page = browser.join().unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Return to the application"), "{page}");
}

#[tokio::test]
async fn only_http_to_a_loopback_address_is_listened_on() {
    for refused in ["https://localhost/cb", "http://example.com/cb", "http://192.0.2.1:0/cb"] {
        assert!(matches!(RedirectListener::bind(refused).await, Err(Error::Listener(_))), "{refused}");
    }
    let listener = RedirectListener::bind("http://localhost:0/cb").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_ne!(port, 0);
    assert_eq!(listener.redirect_uri(), format!("http://localhost:{port}/cb"));
    assert!(listener.local_addrs().iter().all(|a| a.ip().is_loopback() && a.port() == port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_bytes_holds_neither_the_callback_nor_the_timeout() {
    // A connection that sends half a request line and then nothing.
    let slow = |port: u16| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /signin-callback?co").unwrap();
        s
    };

    // The callback arrives on another connection while the slow one is open: it is taken at once.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let target = format!("/signin-callback?code=c&state={}", pending.state());
    let _held = slow(port);
    let browser = std::thread::spawn(move || get(port, &target));
    assert!(listener.wait(&pending).await.is_ok());
    listener.reply(LoginOutcome::Failed { reason: "no" }).await;
    assert_eq!(browser.join().unwrap(), 200);

    // Only slow connections: the wait ends at its own timeout, not the connections'.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback")
        .await
        .unwrap()
        .timeout(Duration::from_millis(300));
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let _held = (slow(port), slow(port));
    assert!(matches!(listener.wait(&pending).await, Err(Error::LoginTimeout(_))));

    // And a select! (Ctrl-C, a shutdown) ends it too: the wait's future is dropped.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let _held = slow(port);
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let canceller = std::thread::spawn(move || cancel.send(()));
    let ended = tokio::select! {
        waited = listener.wait(&pending) => Some(waited),
        _ = cancelled => None,
    };
    assert!(ended.is_none(), "{ended:?}");
    canceller.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_connection_is_cut_at_its_deadline() {
    // The connection's whole request must arrive within its deadline (10 s): one byte every 2 s never does,
    // and the listener answers 400 and closes it instead of waiting for the rest.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let request = b"GET /signin-callback?code=c&state=x HTTP/1.1\r\n\r\n";
    let trickler = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut sent = 0;
        for b in request {
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(2));
            let mut probe = [0u8; 1];
            stream.set_nonblocking(true).unwrap();
            let answered = stream.peek(&mut probe).is_ok();
            stream.set_nonblocking(false).unwrap();
            if answered {
                break;
            }
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        (answer, sent)
    });
    let (done, ended) = tokio::sync::oneshot::channel();
    let waiting = async {
        tokio::select! {
            waited = listener.wait(&pending) => Some(waited),
            _ = ended => None,
        }
    };
    let watcher = tokio::task::spawn_blocking(move || {
        let result = trickler.join().unwrap();
        let _ = done.send(());
        result
    });
    assert!(waiting.await.is_none(), "the trickling request ended the wait");
    let (answer, sent) = watcher.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(sent < request.len(), "answered before the whole request came: {sent} bytes sent");
}
