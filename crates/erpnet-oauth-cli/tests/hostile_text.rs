//! Issue 13: text from a hostile server reaches the terminal escaped. The mock answers normally, then its
//! interceptor answers the endpoint under test with text made to drive a terminal (clear the screen, move
//! the cursor, retitle the window, reverse the text that follows). Whatever the CLI prints of it, on
//! stderr (the error line, `Logged in as`, the `--verbose` log) or stdout (`status`, `status --json`),
//! holds no control or bidi character: it is shown as `\u{1b}`-style text.

mod common;

use common::*;
use erpnet_oauth_mock::Intercepted;
use std::sync::{Arc, Mutex};

/// The issue's example.
const HOSTILE: &str = "\x1b[2J\x1b[1;1H  Logged in as root\x1b]0;pwned\x07";
/// What the CLI shows of it.
const SHOWN: &str = r"\u{1b}[2J\u{1b}[1;1H  Logged in as root\u{1b}]0;pwned\u{7}";

/// A character a terminal would obey: C0, DEL, C1, bidi controls, line and paragraph separators.
fn special(c: char) -> bool {
    matches!(
        c as u32,
        0x00..=0x08 | 0x0B..=0x1F | 0x7F..=0x9F | 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069
            | 0x2028 | 0x2029
    )
}

/// No special character anywhere in the output (newlines and tabs between lines are the CLI's own).
fn assert_nothing_special(o: &Outcome) {
    assert_nothing_special_in(o, &[("stdout", &o.stdout), ("stderr", &o.stderr)]);
}

fn assert_nothing_special_in(o: &Outcome, streams: &[(&str, &String)]) {
    for (name, text) in streams {
        let found: Vec<char> = text.chars().filter(|c| special(*c)).collect();
        assert!(found.is_empty(), "{name} holds {found:?}: {o:#?}");
        assert!(!text.contains('\t'), "{name} holds a tab: {o:#?}");
    }
}

fn json(status: u16, body: &serde_json::Value) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body.to_string().into_bytes())
        .unwrap()
}

/// Answers the first request to `path` with `answer()`; every other request goes to the mock.
fn script_once(
    h: &Harness,
    path: &'static str,
    answer: impl Fn() -> http::Response<Vec<u8>> + Send + Sync + 'static,
) {
    let left = Mutex::new(1usize);
    h.mock().set_interceptor(Some(Arc::new(move |req: &http::Request<Vec<u8>>| {
        let mut left = left.lock().unwrap();
        if req.uri().path() == path && *left > 0 {
            *left -= 1;
            Intercepted::Respond(answer())
        } else {
            Intercepted::Pass
        }
    })));
}

#[test]
fn a_hostile_error_description_reaches_stderr_escaped() {
    const TOKEN: &str = "/id/connect/token";
    let rows: [(&str, &str, serde_json::Value, &[&str], i32); 3] = [
        (
            "an OAuth error from the token endpoint",
            TOKEN,
            serde_json::json!({"error": "invalid_request\u{1b}[31m", "error_description": HOSTILE,
                "error_uri": "https://docs.example/\u{202e}exe.txt"}),
            &[SHOWN, r"invalid_request\u{1b}[31m", r"https://docs.example/\u{202e}exe.txt"],
            4,
        ),
        (
            "invalid_grant, whose code the CLI names itself",
            TOKEN,
            serde_json::json!({"error": "invalid_grant", "error_description": HOSTILE}),
            &["invalid_grant", "erpnet-oauth login"],
            3,
        ),
        (
            "a Domain API business error",
            "/api/domain/odata/Crm_Customers",
            serde_json::json!({"message": format!("{HOSTILE}\u{9b}2J\u{2067}"), "code": 1}),
            &[SHOWN, r"\u{9b}2J\u{2067}"],
            4,
        ),
    ];
    for (id, path, body, says, exit) in rows {
        let h = Harness::new();
        h.login();
        let status = if path == TOKEN { 400 } else { 500 };
        let sent = body.to_string();
        script_once(&h, path, move || json(status, &body));
        let args: &[&str] = if path == TOKEN {
            &["--verbose", "refresh"]
        } else {
            &["--verbose", "call", "GET", "/api/domain/odata/Crm_Customers?$top=1"]
        };
        let o = h.run(h.store_only(args));
        o.assert_failure(exit, says);
        if path == TOKEN {
            assert_nothing_special(&o);
        } else {
            // `call` prints an error's body on stdout, to a pipe as received (README; to a terminal it is
            // escaped: tests/call_more.rs); what reaches stderr is escaped.
            assert_eq!(o.stdout, format!("{sent}\n"), "{id}");
            assert_nothing_special_in(&o, &[("stderr", &o.stderr)]);
        }
        assert!(!o.stderr.contains('\x1b') && !o.stderr.contains('\x07'), "{id}: no ESC, no BEL: {o:#?}");
        assert!(
            !o.stderr.lines().any(|l| l.trim_start().starts_with("Logged in as")),
            "{id}: no forged line: {o:#?}"
        );
        assert!(
            o.stderr.lines().any(|l| l.contains("HTTP exchange")),
            "{id}: the verbose log is there: {o:#?}"
        );
    }
}

#[test]
fn a_hostile_subject_is_shown_escaped_by_login_and_status() {
    let sub = "root\x1b]0;pwned\x07\u{9b}2J\u{202e}evil\u{7f} Пешо";
    let shown = r"root\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}evil\u{7f} Пешо";
    let scope = "openid profile offline_access DomainApi Domain\u{85}Api\u{2066}";
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let nonce = query_of(&run.authorize_url).into_iter().find(|(k, _)| k == "nonce").map(|(_, v)| v).unwrap();
    let now = now_unix();
    let claims = serde_json::json!({
        "iss": h.mock().issuer(), "aud": CLIENT_ID, "sub": sub, "nonce": nonce,
        "iat": now, "nbf": now, "exp": now + 300, "auth_time": now,
    });
    let id_token = h.mock().sign_jwt(&claims, None).unwrap();
    h.secret(&id_token);
    script_once(&h, "/id/connect/token", move || {
        json(
            200,
            &serde_json::json!({
                "access_token": "AT-hostile-1", "token_type": "Bearer", "expires_in": 3600,
                "refresh_token": "RT-hostile-1", "scope": scope, "id_token": id_token,
            }),
        )
    });
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    assert_nothing_special(&o);
    assert_eq!(o.stderr_lines().last().copied(), Some(format!("Logged in as {shown}").as_str()), "{o:#?}");

    let o = h.run(h.store_only(&["status"]));
    o.assert_success();
    assert_nothing_special(&o);
    let expected = format!("subject:       {shown}");
    assert!(o.stdout.lines().any(|l| l == expected), "no line {expected:?}: {o:#?}");
    assert!(
        o.stdout.lines().any(|l| l.starts_with("scopes:") && l.contains(r"Domain\u{85}Api\u{2066}")),
        "{o:#?}"
    );

    // JSON stays JSON, with the same values: only written with `\uXXXX` escapes.
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    assert_nothing_special(&o);
    assert_eq!(o.stdout_lines().len(), 1, "{o:#?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["subject"], sub);
    assert!(v["scopes"].as_array().unwrap().iter().any(|s| s == "Domain\u{85}Api\u{2066}"), "{v}");
    assert!(o.stdout.contains("Пешо"), "letters stay readable: {o:#?}");
}
