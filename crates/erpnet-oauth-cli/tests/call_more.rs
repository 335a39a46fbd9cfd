//! `call` beyond the basics (issue 14): methods checked before anything is sent, bodies from a file or
//! stdin, `-i`, the body of an error status on stdout, server text on a terminal, and `--paginate` over
//! the mock's server-driven paging (`@odata.nextLink`).

mod common;

use common::*;
use erpnet_oauth_mock::Intercepted;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers";
const ECHO: &str = "/api/domain/odata/Echo";

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Records every request the mock receives (the admin path aside); `answer` may answer one instead of the
/// mock. `ECHO` is answered 200 with the request's body.
fn record(
    h: &Harness,
    answer: impl Fn(&http::Request<Vec<u8>>) -> Option<http::Response<Vec<u8>>> + Send + Sync + 'static,
) -> Log {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    h.mock().set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            target: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            content_type: header("content-type"),
            authorization: header("authorization"),
            body: req.body().clone(),
        });
        if req.uri().path() == ECHO {
            return Intercepted::Respond(
                http::Response::builder().status(200).body(req.body().clone()).unwrap(),
            );
        }
        answer(req).map_or(Intercepted::Pass, Intercepted::Respond)
    })));
    log
}

fn api_requests(log: &Log) -> Vec<Seen> {
    log.lock().unwrap().iter().filter(|s| s.target.starts_with("/api/")).cloned().collect()
}

#[test]
fn a_method_call_does_not_send_is_a_usage_error_and_nothing_is_sent() {
    let h = Harness::new();
    h.login();
    let log = record(&h, |_| None);
    let before = h.mock().counters();
    for method in ["FROB", "GE T", "", "TRACE", "CONNECT"] {
        let o = h.run(h.store_only(&["call", method, "/x"]));
        o.assert_only_error(2, &["not an HTTP method `call` sends", "GET, HEAD, POST"]);
        assert!(o.stdout.is_empty(), "{o:#?}");
    }
    // Not logged in at all: the arguments are judged first.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = h.bare();
    cmd.arg("--store").arg(empty.path()).args(["call", "FROB", "/x"]);
    h.run(cmd).assert_only_error(2, &["FROB"]);
    assert!(log.lock().unwrap().is_empty(), "no request of any kind reached the server");
    assert_eq!(h.mock().counters(), before);
}

#[test]
fn lower_case_methods_are_sent_upper_case() {
    let h = Harness::new();
    h.login();
    let log = record(&h, |_| None);
    for method in ["patch", "Put", "delete", "options", "head"] {
        h.run(h.store_only(&["call", method, ECHO])).assert_success();
    }
    let methods: Vec<String> = api_requests(&log).into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"]);
}

#[test]
fn a_body_from_a_file_from_stdin_or_as_given() {
    let h = Harness::new();
    h.login();
    let log = record(&h, |_| None);
    // Bytes as they are: no UTF-8 needed, no line break added or removed.
    let bytes: &[u8] = b"{\"Name\":\"Acme\"}\r\n\x00\xff@";
    let file = h.dir.path().join("body.bin");
    std::fs::write(&file, bytes).unwrap();
    let at_file = format!("@{}", file.display());
    let o = h.run(h.store_only(&["call", "POST", ECHO, "--data", &at_file]));
    o.assert_success();
    let o = h.run_with_stdin(h.store_only(&["call", "PUT", ECHO, "-d", "@-"]), bytes);
    o.assert_success();
    let o = h.run(h.store_only(&["call", "POST", ECHO, "--data-raw", "@not-a-file"]));
    o.assert_success();
    assert_eq!(o.stdout, "@not-a-file\n");
    let o =
        h.run(h.store_only(&["call", "POST", ECHO, "--data", "{\"a\":1}", "-H", "Content-Type: text/plain"]));
    o.assert_success();
    let seen = api_requests(&log);
    let bodies: Vec<&[u8]> = seen.iter().map(|s| s.body.as_slice()).collect();
    assert_eq!(bodies, [bytes, bytes, b"@not-a-file", b"{\"a\":1}"]);
    let types: Vec<Option<&str>> = seen.iter().map(|s| s.content_type.as_deref()).collect();
    assert_eq!(
        types,
        [Some("application/json"), Some("application/json"), Some("application/json"), Some("text/plain")]
    );
    assert!(seen.iter().all(|s| s.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer "))));
}

#[test]
fn bad_bodies_are_usage_errors_before_anything_is_sent() {
    let h = Harness::new();
    h.login();
    let log = record(&h, |_| None);
    let missing = format!("@{}", h.dir.path().join("missing.json").display());
    let o = h.run(h.store_only(&["call", "POST", ECHO, "--data", &missing]));
    o.assert_only_error(2, &["missing.json", "--data-raw"]);
    // --data and --data-raw together: clap's usage error.
    let o = h.run(h.store_only(&["call", "POST", ECHO, "--data", "a", "--data-raw", "b"]));
    assert_eq!(o.code, Some(2), "{o:#?}");
    assert!(o.stderr.contains("--data-raw") && o.stderr.contains("cannot be used with"), "{o:#?}");
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn include_prints_the_status_line_and_headers_first() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=2"), "-i"]));
    o.assert_success();
    let (head, body) = o.stdout.split_once("\n\n").expect("a blank line after the headers");
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let headers: Vec<&str> = lines.collect();
    assert!(
        headers.contains(
            &"content-type: application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
        ),
        "{headers:#?}"
    );
    assert!(headers.contains(&"odata-version: 4.0"), "{headers:#?}");
    assert!(headers.iter().all(|h| h.contains(": ")), "{headers:#?}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["value"].as_array().unwrap().len(), 2);
    // --include too
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=2"), "--include"]));
    assert!(o.stdout.starts_with("HTTP/1.1 200 OK\n"), "{o:#?}");
}

#[test]
fn include_escapes_header_values() {
    let h = Harness::new();
    h.login();
    record(&h, |req| {
        (req.uri().path() == CUSTOMERS).then(|| {
            http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                // UTF-8 of U+202E (right-to-left override) and U+009B (CSI), and a byte that is not UTF-8.
                .header(
                    "x-title",
                    http::HeaderValue::from_bytes(b"\xe2\x80\xaeexe.txt \xc2\x9b2J \xff").unwrap(),
                )
                .body(b"{\"value\":[]}".to_vec())
                .unwrap()
        })
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "-i"]));
    o.assert_success();
    assert!(o.stdout.contains("x-title: \\u{202e}exe.txt \\u{9b}2J \u{fffd}\n"), "{o:#?}");
    assert!(!o.stdout.contains('\u{202e}') && !o.stdout.contains('\u{9b}'), "{o:#?}");
}

#[test]
fn an_error_status_prints_the_body_and_exits_4() {
    let h = Harness::new();
    h.login();
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$filter=fail")]));
    o.assert_only_error(4, &["HTTP 500", "The operation failed on purpose"]);
    let body: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(body["code"], "TestFailure");
    assert_eq!(body["type"], "Aloe.SystemFrameworks.Domain.BusinessException");
    // With -i: the status line first.
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$filter=fail"), "-i"]));
    o.assert_only_error(4, &["HTTP 500"]);
    assert!(o.stdout.starts_with("HTTP/1.1 500 Internal Server Error\n"), "{o:#?}");
    assert!(o.stdout.contains("\n\n{\"code\":\"TestFailure\""), "{o:#?}");
    // A 404 with a plain-text body.
    record(&h, |req| {
        (req.uri().path() == CUSTOMERS).then(|| {
            http::Response::builder()
                .status(404)
                .header("content-type", "text/plain")
                .body(b"no such thing".to_vec())
                .unwrap()
        })
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(4, &["HTTP 404", "text/plain"]);
    assert_eq!(o.stdout, "no such thing\n");
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.api_business_errors), (0, 2));
}

#[test]
fn a_401_after_the_one_refresh_prints_its_body() {
    let h = Harness::new();
    h.login();
    let rt0 = h.refresh_token().unwrap();
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&unauthorized);
    record(&h, move |req| {
        (req.uri().path() == CUSTOMERS).then(|| {
            count.fetch_add(1, Ordering::SeqCst);
            http::Response::builder()
                .status(401)
                .header("www-authenticate", "Bearer error=\"invalid_token\"")
                .body(b"{\"error\":\"token refused\"}".to_vec())
                .unwrap()
        })
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_only_error(4, &["401"]);
    assert_eq!(o.stdout, "{\"error\":\"token refused\"}\n");
    assert_eq!(unauthorized.load(Ordering::SeqCst), 2, "one retry after one refresh");
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    assert_ne!(h.refresh_token().unwrap(), rt0, "the rotated refresh token was stored");
}

#[test]
fn the_body_goes_to_a_pipe_as_received() {
    // To a pipe, stdout carries the server's bytes exactly (a script reads what the server sent); the
    // error line on stderr is escaped.
    let h = Harness::new();
    h.login();
    let body: &[u8] = b"{\"m\":\"\x1b[2J\xe2\x80\xae\"}\n\xff";
    record(&h, move |req| {
        (req.uri().path() == CUSTOMERS)
            .then(|| http::Response::builder().status(500).body(body.to_vec()).unwrap())
    });
    let mut cmd = h.store_only(&["call", "GET", CUSTOMERS]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(out.stdout, [body, b"\n"].concat());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("erpnet-oauth: ") && stderr.contains("HTTP 500"), "{stderr}");
}

#[test]
fn a_terminal_gets_the_body_escaped() {
    // `script` (util-linux, in every Debian system) gives the command a pseudo-terminal.
    let h = Harness::new();
    h.login();
    record(&h, |req| {
        (req.uri().path() == CUSTOMERS).then(|| {
            http::Response::builder()
                .status(500)
                .header("content-type", "application/json")
                .body(
                    "{\"message\":\"\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}gpj.exe\u{9b}\",\n\t\"code\":1}"
                        .into(),
                )
                .unwrap()
        })
    });
    let store = h.store();
    let line = format!("{BIN} --store '{}' call GET {CUSTOMERS}", store.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]).env("SHELL", "/bin/sh").env("ERPNET_CLIENT_SECRET", SECRET);
    cmd.env("HOME", h.dir.path()).env("XDG_CONFIG_HOME", h.dir.path().join("config"));
    let o = run(cmd);
    assert_eq!(o.code, Some(4), "{o:#?}");
    // The terminal turns each line break into CR LF.
    let shown = o.stdout.replace("\r\n", "\n");
    assert!(
        shown.contains(
            "{\"message\":\"\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}gpj.exe\\u{9b}\",\n\t\"code\":1}\n"
        ),
        "{o:#?}"
    );
    let special: Vec<char> =
        shown.chars().filter(|c| erpnet_oauth_core::needs_escape(*c) && *c != '\n' && *c != '\t').collect();
    assert!(special.is_empty(), "the terminal got {special:?}: {o:#?}");
    // Not JSON (raw control characters are not allowed in JSON strings): the line names the status.
    assert!(shown.contains("erpnet-oauth: the API answered HTTP 500 (application/json,"), "{o:#?}");
}

// ------------------------------------------------------------------------------------------------
// --paginate
// ------------------------------------------------------------------------------------------------

/// A mock of `customers` rows served `page_size` at a time.
fn paged(customers: usize, page_size: usize) -> Harness {
    Harness::with(|c| {
        c.customers = customers;
        c.page_size = Some(page_size);
    })
}

fn numbers(doc: &serde_json::Value) -> Vec<String> {
    doc["value"].as_array().unwrap().iter().map(|r| r["Number"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn paginate_gathers_every_page_into_one_document() {
    let h = paged(25, 10);
    h.login();
    let log = record(&h, |_| None);
    // Without --paginate: the first page, with its link.
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_success();
    let first: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(numbers(&first).len(), 10);
    assert!(first["@odata.nextLink"].is_string());
    // With it: every row, once, in order; the first page's context; no link.
    log.lock().unwrap().clear();
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_success();
    assert!(o.stderr.is_empty(), "{o:#?}");
    assert_eq!(o.stdout_lines().len(), 1, "one document on one line");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let expected: Vec<String> = (1..=25).map(|i| format!("C{i:05}")).collect();
    assert_eq!(numbers(&doc), expected);
    assert_eq!(doc["@odata.context"], format!("{}/api/domain/odata/$metadata#Crm_Customers", h.instance()));
    assert_eq!(doc.as_object().unwrap().len(), 2, "@odata.context and value only: {doc}");
    let targets: Vec<String> = api_requests(&log).into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [CUSTOMERS.to_owned(), format!("{CUSTOMERS}?$skip=10"), format!("{CUSTOMERS}?$skip=20")]
    );
    // The client's own $top and $skip: the server stops at $top rows.
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$top=13&$skip=4"), "--paginate"]));
    o.assert_success();
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let expected: Vec<String> = (5..=17).map(|i| format!("C{i:05}")).collect();
    assert_eq!(numbers(&doc), expected);
    let c = h.mock().counters();
    assert_eq!((c.api_ok, c.refresh_token_grants), (1 + 3 + 2, 0));
}

#[test]
fn paginate_keeps_the_rows_as_written() {
    // Numbers with more digits than an f64 holds, and exponents, pass through untouched.
    let h = Harness::new();
    h.login();
    let instance = h.instance();
    record(&h, move |req| {
        if req.uri().path() != CUSTOMERS {
            return None;
        }
        let body = if req.uri().query().is_none() {
            format!(
                "{{\"@odata.context\":\"$metadata#Crm_Customers\",\"value\":[{{\"Amount\":12345678901234567890.123456789}}],\
                 \"@odata.nextLink\":\"{instance}{CUSTOMERS}?$skiptoken=2\"}}"
            )
        } else {
            "{\"value\":[{\"Amount\":1.50e3, \"Name\":\"\\u00e9\"}]}".to_owned()
        };
        Some(http::Response::builder().status(200).body(body.into_bytes()).unwrap())
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_success();
    assert_eq!(
        o.stdout,
        "{\"@odata.context\":\"$metadata#Crm_Customers\",\"value\":[{\"Amount\":12345678901234567890.123456789},\
         {\"Amount\":1.50e3, \"Name\":\"\\u00e9\"}]}\n"
    );
}

#[test]
fn paginate_follows_relative_links_on_the_instance() {
    // OData: a relative nextLink is relative to the page's context URL (itself relative to the request).
    let h = Harness::new();
    h.login();
    let log = record(&h, |req| {
        if req.uri().path() != CUSTOMERS {
            return None;
        }
        let body = match req.uri().query() {
            None => {
                r#"{"@odata.context":"$metadata#Crm_Customers","value":[1],"@odata.nextLink":"Crm_Customers?$skiptoken=a"}"#
            }
            Some("$skiptoken=a") => {
                r#"{"value":[2],"@odata.nextLink":"/api/domain/odata/Crm_Customers?$skiptoken=b"}"#
            }
            Some(_) => r#"{"value":[3]}"#,
        };
        Some(http::Response::builder().status(200).body(body.as_bytes().to_vec()).unwrap())
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_success();
    assert_eq!(o.stdout, "{\"@odata.context\":\"$metadata#Crm_Customers\",\"value\":[1,2,3]}\n");
    let targets: Vec<String> = api_requests(&log).into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [CUSTOMERS.to_owned(), format!("{CUSTOMERS}?$skiptoken=a"), format!("{CUSTOMERS}?$skiptoken=b")]
    );
}

#[test]
fn paginate_never_follows_a_link_to_another_origin() {
    let h = Harness::new();
    h.login();
    // Another server on loopback, recording whether anything connects.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://127.0.0.1:{}{CUSTOMERS}?$skip=10", other.local_addr().unwrap().port());
    let same_host_other_name = format!("http://localhost:{}{CUSTOMERS}?$skip=10", h.mock().addr().port());
    for link in [elsewhere, same_host_other_name, "https://attacker.example/steal".to_owned()] {
        let page = format!("{{\"value\":[1],\"@odata.nextLink\":\"{link}\"}}");
        let log = record(&h, move |req| {
            (req.uri().path() == CUSTOMERS)
                .then(|| http::Response::builder().status(200).body(page.clone().into_bytes()).unwrap())
        });
        let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
        o.assert_only_error(4, &["@odata.nextLink", "not on the instance", "not followed"]);
        assert!(o.stdout.is_empty(), "{o:#?}");
        assert_eq!(api_requests(&log).len(), 1, "only the first page was asked for: {link}");
    }
    assert!(other.accept().is_err(), "nothing connected to the other server");
}

#[test]
fn paginate_stops_on_a_loop() {
    let h = Harness::new();
    h.login();
    let instance = h.instance();
    let log = record(&h, move |req| {
        if req.uri().path() != CUSTOMERS {
            return None;
        }
        // Page a links to b, b back to a.
        let next = if req.uri().query() == Some("$skiptoken=a") { "b" } else { "a" };
        let body =
            format!("{{\"value\":[1],\"@odata.nextLink\":\"{instance}{CUSTOMERS}?$skiptoken={next}\"}}");
        Some(http::Response::builder().status(200).body(body.into_bytes()).unwrap())
    });
    let o = h.run(h.store_only(&["call", "GET", &format!("{CUSTOMERS}?$skiptoken=a"), "--paginate"]));
    o.assert_only_error(4, &["page 2", "already fetched", "loops"]);
    assert!(o.stdout.is_empty());
    assert_eq!(api_requests(&log).len(), 2);
}

#[test]
fn paginate_stops_after_1000_pages() {
    let h = Harness::new();
    h.login();
    let instance = h.instance();
    let pages = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&pages);
    record(&h, move |req| {
        (req.uri().path() == CUSTOMERS).then(|| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!("{{\"value\":[{n}],\"@odata.nextLink\":\"{instance}{CUSTOMERS}?$skip={n}\"}}");
            http::Response::builder().status(200).body(body.into_bytes()).unwrap()
        })
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_only_error(4, &["more than 1000 pages"]);
    assert!(o.stdout.is_empty());
    assert_eq!(pages.load(Ordering::SeqCst), 1000);
}

#[test]
fn paginate_refuses_a_page_that_is_not_a_collection() {
    let h = Harness::new();
    h.login();
    let instance = h.instance();
    for (second, what) in [
        ("<html>busy</html>", "not JSON"),
        ("{\"value\":{\"a\":1}}", "value not an array"),
        ("{\"d\":[1]}", "no value"),
        ("{\"value\":[1],\"@odata.nextLink\":7}", "a link that is not a string"),
    ] {
        let first = format!("{{\"value\":[0],\"@odata.nextLink\":\"{instance}{CUSTOMERS}?$skip=1\"}}");
        record(&h, move |req| {
            (req.uri().path() == CUSTOMERS).then(|| {
                let body = if req.uri().query().is_some() { second.to_owned() } else { first.clone() };
                http::Response::builder().status(200).body(body.into_bytes()).unwrap()
            })
        });
        let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
        o.assert_only_error(4, &["page 2", "not an OData collection"]);
        assert!(o.stdout.is_empty(), "{what}: {o:#?}");
    }
}

#[test]
fn paginate_shows_an_error_page_and_exits_4() {
    let h = Harness::new();
    h.login();
    let instance = h.instance();
    record(&h, move |req| {
        (req.uri().path() == CUSTOMERS && req.uri().query().is_none()).then(|| {
            let body =
                format!("{{\"value\":[0],\"@odata.nextLink\":\"{instance}{CUSTOMERS}?$filter=fail\"}}");
            http::Response::builder().status(200).body(body.into_bytes()).unwrap()
        })
    });
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_only_error(4, &["page 2", "HTTP 500", "The operation failed on purpose"]);
    let body: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(body["code"], "TestFailure", "the error page's body, not the rows so far");
}

#[test]
fn paginate_is_for_get_alone() {
    let h = Harness::new();
    h.login();
    let log = record(&h, |_| None);
    h.run(h.store_only(&["call", "POST", CUSTOMERS, "--paginate"]))
        .assert_only_error(2, &["--paginate", "GET", "POST"]);
    for conflicting in [&["-i"][..], &["--include"], &["--data", "x"], &["--data-raw", "x"]] {
        let mut args = vec!["call", "GET", CUSTOMERS, "--paginate"];
        args.extend_from_slice(conflicting);
        let o = h.run(h.store_only(&args));
        assert_eq!(o.code, Some(2), "{args:?}: {o:#?}");
    }
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn paginate_after_an_expired_token_refreshes_once() {
    let h = paged(30, 10);
    h.login();
    let rt0 = h.refresh_token().unwrap();
    h.mock().advance_clock(Duration::from_secs(3601));
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS, "--paginate"]));
    o.assert_success();
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(numbers(&doc).len(), 30);
    let c = h.mock().counters();
    assert_eq!((c.api_unauthorized, c.refresh_token_grants, c.api_ok), (1, 1, 3), "{c:#?}");
    assert_ne!(h.refresh_token().unwrap(), rt0);
}
