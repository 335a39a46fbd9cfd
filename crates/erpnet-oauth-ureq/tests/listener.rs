//! The loopback listener takes only the callback of the login it waits for (catalogue B9), serves
//! connections at once, each under a deadline for its whole request, and keeps the wait's own timeout and
//! cancel whatever the connections do.

#![allow(clippy::result_large_err)] // the threads hand back the session's error as it is

use erpnet_oauth_ureq::{
    AuthorizationRequest, ClientConfig, Error, LoginOutcome, OsRandom, PendingLogin, RedirectListener,
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

/// Sends one raw request and returns the status the listener answered.
fn status_of(port: u16, request: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn get(port: u16, target: &str) -> u16 {
    status_of(port, &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
}

#[test]
fn only_this_logins_callback_ends_the_wait() {
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let state = pending.state().to_owned();
    let browser = std::thread::spawn(move || {
        [
            get(port, "/favicon.ico"),
            // A page that embeds <img src="http://127.0.0.1:PORT/signin-callback?x=1">.
            get(port, "/signin-callback?x=1"),
            get(port, "/signin-callback"),
            // Another login's callback, and one with the state given twice.
            get(port, "/signin-callback?code=stale&state=another-login"),
            get(port, &format!("/signin-callback?code=c&state={state}&state={state}")),
            status_of(port, &format!("PUT /signin-callback?code=c&state={state} HTTP/1.1\r\n\r\n")),
            // This login's.
            get(port, &format!("/signin-callback?code=the-code&state={state}")),
        ]
    });
    let callback = listener.wait(&pending).unwrap();
    // The callback's page comes once the application says how the login ended.
    listener.reply(LoginOutcome::LoggedIn { user: None });
    assert_eq!(browser.join().unwrap(), [404, 400, 400, 400, 400, 405, 200]);
    match callback.as_callback() {
        erpnet_oauth_ureq::Callback::Query(q) => assert!(q.starts_with("code=the-code&state="), "{q}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_that_trickles_bytes_holds_neither_the_callback_nor_the_timeout_nor_a_cancel() {
    // A connection that sends half a request line and then nothing.
    let slow = |port: u16| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /signin-callback?co").unwrap();
        s
    };

    // The callback arrives on another connection while the slow one is open: it is taken at once.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let target = format!("/signin-callback?code=c&state={}", pending.state());
    let _held = slow(port);
    let browser = std::thread::spawn(move || get(port, &target));
    assert!(listener.wait(&pending).is_ok());
    listener.reply(LoginOutcome::Failed { reason: "no" });
    assert_eq!(browser.join().unwrap(), 200);

    // Only the slow connection: the wait ends at its own timeout, not the connection's.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback")
        .unwrap()
        .timeout(Duration::from_millis(300));
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let _held = (slow(port), slow(port));
    assert!(matches!(listener.wait(&pending), Err(Error::LoginTimeout(_))));

    // And a cancel (Ctrl-C) ends it too.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let cancel = listener.cancel_handle();
    let _held = slow(port);
    let waiting = std::thread::spawn(move || listener.wait(&pending));
    std::thread::sleep(Duration::from_millis(100));
    cancel.cancel();
    assert!(matches!(waiting.join().unwrap(), Err(Error::Cancelled)));
}

#[test]
fn a_slow_connection_is_cut_at_its_deadline() {
    // The connection's whole request must arrive within its deadline (10 s): one byte every 2 s never does,
    // and the listener answers 400 and closes it instead of waiting for the rest.
    let listener = RedirectListener::bind("http://127.0.0.1:0/signin-callback").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pending = pending_for(listener.redirect_uri());
    let cancel = listener.cancel_handle();
    let waiting = std::thread::spawn(move || listener.wait(&pending));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = b"GET /signin-callback?code=c&state=x HTTP/1.1\r\n\r\n";
    let mut sent = 0;
    for b in request {
        if stream.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_secs(2));
        let mut probe = [0u8; 1];
        stream.set_nonblocking(true).unwrap();
        let closed = stream.peek(&mut probe).is_ok();
        stream.set_nonblocking(false).unwrap();
        if closed {
            break;
        }
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(sent < request.len(), "answered before the whole request came: {sent} bytes sent");
    cancel.cancel();
    assert!(matches!(waiting.join().unwrap(), Err(Error::Cancelled)));
}
