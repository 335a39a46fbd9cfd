//! Text from servers is shown escaped (issue 13): the properties of [`escape`], and the `Display` of the
//! core's errors for hostile answers of each kind (token endpoint, callback, discovery, Domain API,
//! `WWW-Authenticate`, userinfo, JWKS, transport).
//!
//! The oracle here is written out on its own (code points), not [`needs_escape`], so that a mistake in
//! the core's list is caught rather than mirrored.

use erpnet_oauth_core::{
    AuthorizationRequest, Callback, ClientConfig, ClientSecret, Error, JwkSet, OAuthError, ProviderMetadata,
    RandomError, RandomSource, RefreshError, check_api_response, escape, http, needs_escape,
    parse_token_response, parse_userinfo_response,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// What must never reach a terminal: C0, DEL, C1, the bidi controls, the line and paragraph separators.
fn special(c: char) -> bool {
    matches!(
        c as u32,
        0x00..=0x1F | 0x7F..=0x9F | 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 | 0x2028 | 0x2029
    )
}

/// The issue's example: clears the screen, homes the cursor, prints a fake line and retitles the window.
const HOSTILE: &str = "\x1b[2J\x1b[1;1H  Logged in as root\x1b]0;pwned\x07";

/// Characters around the edges: every class escaped, their neighbours that are not, letters of several
/// scripts, combining marks, joiners, astral characters, backslashes and braces.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => (0x20u32..0x7F).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('\0')),
        2 => (0x7Fu32..=0xA0).prop_map(|c| char::from_u32(c).unwrap_or('\u{7f}')),
        2 => prop::sample::select(vec![
            '\u{061B}', '\u{061C}', '\u{061D}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}',
            '\u{2027}', '\u{2028}', '\u{2029}', '\u{2029}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{202F}', '\u{2065}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{206A}',
            '\u{FEFF}', '\u{FFFD}',
        ]),
        2 => prop::sample::select(vec![
            'é', 'Ж', 'ж', 'ß', '山', 'ع', 'א', '\u{301}', '😀', '\u{1F1E7}', '\\', '{', '}', 'u',
        ]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(interesting_char(), 0..48).prop_map(String::from_iter),
        1 => any::<String>(),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2048,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/safe_text.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The output holds no control or bidi character, whatever the input.
    #[test]
    fn the_output_holds_nothing_special(s in text()) {
        let out = escape(&s);
        prop_assert!(!out.chars().any(special), "{:?} -> {:?}", s, out);
        prop_assert!(!out.chars().any(needs_escape));
    }

    /// Escaping its own output changes nothing.
    #[test]
    fn escaping_is_idempotent(s in text()) {
        let once = escape(&s).into_owned();
        let twice = escape(&once);
        prop_assert_eq!(&twice, &once);
        prop_assert!(matches!(twice, Cow::Borrowed(_)), "no copy for text with nothing to escape");
    }

    /// Text without special characters (any script, backslashes included) comes back as it is, uncopied.
    #[test]
    fn printable_text_is_unchanged(s in text()) {
        let printable: String = s.chars().filter(|c| !special(*c)).collect();
        let out = escape(&printable);
        prop_assert!(matches!(out, Cow::Borrowed(b) if b == printable));
    }

    /// Each special character becomes its `\u{..}` text, and everything else stays in place.
    #[test]
    fn each_special_character_becomes_visible_text(s in text()) {
        let expected: String = s
            .chars()
            .map(|c| if special(c) { c.escape_unicode().collect() } else { c.to_string() })
            .collect();
        prop_assert_eq!(escape(&s), expected);
    }

    /// The output is at most 6 times the input's bytes (ESC: 1 byte to `\u{1b}`, 6; U+202E: 3 to 8), and
    /// at most 8 times its characters.
    #[test]
    fn the_output_is_bounded(s in text()) {
        let out = escape(&s);
        prop_assert!(out.len() <= 6 * s.len(), "{} bytes -> {}", s.len(), out.len());
        prop_assert!(out.chars().count() <= 8 * s.chars().count());
    }

    /// However the server's error is made, the token endpoint's error `Display` is safe.
    #[test]
    fn token_endpoint_errors_display_safely(error in text(), description in text(), uri in text()) {
        let body = serde_json::json!({"error": error, "error_description": description, "error_uri": uri});
        let response = http::Response::builder().status(400).body(body.to_string().into_bytes()).unwrap();
        let e = parse_token_response(&response, UNIX_EPOCH, &Default::default()).unwrap_err();
        let shown = e.to_string();
        prop_assert!(!shown.chars().any(special), "{:?}", shown);
    }
}

/// Whether `shown` is safe, and says `words`.
fn assert_safe(shown: &str, words: &[&str]) {
    assert!(!shown.chars().any(special), "a special character is shown: {shown:?}");
    assert!(!shown.contains('\x1b') && !shown.contains('\x07'), "{shown:?}");
    for w in words {
        assert!(shown.contains(w), "{shown:?} lacks {w:?}");
    }
}

#[test]
fn the_issues_example_from_the_token_endpoint() {
    let body = serde_json::json!({"error": "invalid_grant", "error_description": HOSTILE,
        "error_uri": "https://e.example/\u{202e}txt.exe"});
    let response = http::Response::builder().status(400).body(body.to_string().into_bytes()).unwrap();
    let e = parse_token_response(&response, UNIX_EPOCH, &Default::default()).unwrap_err();
    // The data keeps what the server sent (the code decides `is_invalid_grant`); the message escapes it.
    assert!(e.is_invalid_grant());
    let shown = e.to_string();
    assert_eq!(
        shown,
        r"the token endpoint answered 400 invalid_grant: \u{1b}[2J\u{1b}[1;1H  Logged in as root\u{1b}]0;pwned\u{7} (see https://e.example/\u{202e}txt.exe)"
    );
    // Through the manager's and the adapters' error types too.
    let wrapped =
        Error::Refresh(RefreshError::LoginRequired(erpnet_oauth_core::LoginRequired::Rejected(OAuthError {
            error: "invalid_grant\n".into(),
            description: Some(HOSTILE.into()),
            uri: None,
        })));
    assert_safe(&wrapped.to_string(), &["Logged in as root", r"invalid_grant\u{a}"]);
    assert_safe(&Error::Token(e).to_string(), &["Logged in as root"]);
}

#[test]
fn callback_errors_escape_the_callbacks_text() {
    let client = ClientConfig::builder("https://demodb.my.erp.net", "app")
        .client_secret(ClientSecret::new("s"))
        .redirect_uri("http://localhost/cb")
        .build()
        .unwrap();
    struct Fixed;
    impl RandomSource for Fixed {
        fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
            dest.fill(1);
            Ok(())
        }
    }
    let pending = || AuthorizationRequest::new().state("s1").build(&client, &mut Fixed).unwrap();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (query, words) in [
        (
            format!("error=access_denied%1b[2J&error_description={}&state=s1", enc(HOSTILE)),
            &[r"access_denied\u{1b}[2J", "Logged in as root"][..],
        ),
        (format!("code=c&state=s1&iss={}", enc("https://evil\u{202e}/id\x1b]0;x\x07")), &["evil"][..]),
        (format!("code=c&state=s1&{}=1&{0}=2", enc("\u{9b}31m")), &[r"\u{9b}31m"][..]),
    ] {
        let e = pending().handle_callback(&client, Callback::Query(&query)).unwrap_err();
        assert_safe(&e.to_string(), words);
        assert_safe(&Error::Callback(e).to_string(), words);
    }
    let e = pending().handle_callback(&client, Callback::Url("http://\x1b[2J")).unwrap_err();
    assert_safe(&e.to_string(), &[]);
}

#[test]
fn discovery_errors_escape_the_document() {
    let doc = serde_json::json!({"issuer": format!("https://x{HOSTILE}/id"), "authorization_endpoint": "x"});
    let e =
        ProviderMetadata::from_json(doc.to_string().as_bytes(), "https://demodb.my.erp.net/id").unwrap_err();
    assert_safe(&e.to_string(), &["Logged in as root", "https://demodb.my.erp.net/id"]);
    let doc =
        serde_json::json!({"issuer": "https://i/id", "authorization_endpoint": "https://\u{202e}\x1b[0m/"});
    let e = ProviderMetadata::from_json(doc.to_string().as_bytes(), "https://i/id").unwrap_err();
    assert_safe(&e.to_string(), &["authorization_endpoint"]);
    let e =
        ProviderMetadata::from_json(format!("{{\"a\": \"{HOSTILE}").as_bytes(), "https://i/id").unwrap_err();
    assert_safe(&e.to_string(), &["malformed"]);
}

#[test]
fn api_errors_escape_the_servers_text() {
    let business = serde_json::json!({"message": HOSTILE, "code": 1});
    let answer = http::Response::builder().status(500).body(business.to_string().into_bytes()).unwrap();
    let e = check_api_response(&answer).unwrap_err();
    assert_safe(&e.to_string(), &["HTTP 500", "Logged in as root"]);
    assert_safe(&Error::Api(e).to_string(), &["Logged in as root"]);

    // A header value may hold a tab (and obs-text, which the parsers do not read as text): it is shown
    // escaped.
    let challenge = "Bearer error=\"insufficient_scope\", error_description=\"a\tb\", scope=\"Domain\tApi\"";
    for (status, words) in [(401, &[r"a\u{9}b"][..]), (403, &[r"a\u{9}b", r"scope `Domain\u{9}Api`"][..])] {
        let answer = http::Response::builder()
            .status(status)
            .header("www-authenticate", challenge)
            .body(vec![])
            .unwrap();
        let e = check_api_response(&answer).unwrap_err();
        assert_safe(&e.to_string(), words);
    }
    let answer =
        http::Response::builder().status(418).header("content-type", "text/html\tx").body(vec![]).unwrap();
    assert_safe(&check_api_response(&answer).unwrap_err().to_string(), &["418", r"text/html\u{9}x"]);
}

#[test]
fn userinfo_and_jwks_errors_escape_the_servers_text() {
    let body = serde_json::json!({"sub": format!("root{HOSTILE}")});
    let e = parse_userinfo_response(&http::Response::new(body.to_string().into_bytes()), "ad\u{202e}min")
        .unwrap_err();
    assert_safe(&e.to_string(), &["Logged in as root", r"ad\u{202e}min"]);
    let e = JwkSet::from_json(format!("{{\"keys\": \"{HOSTILE}").as_bytes()).unwrap_err();
    assert_safe(&e.to_string(), &["malformed"]);
    let doc = serde_json::json!({"keys": [{"kty": format!("oct{HOSTILE}"), "kid": HOSTILE}]});
    let set = JwkSet::from_json(doc.to_string().as_bytes()).unwrap();
    assert_safe(&set.ignored()[0].reason, &["Logged in as root"]);
    assert_eq!(set.ignored()[0].kid.as_deref(), Some(HOSTILE), "the kid is data: kept as received");
}

#[test]
fn transport_messages_are_escaped_too() {
    for e in [
        Error::Dns(HOSTILE.into()),
        Error::Connect(HOSTILE.into()),
        Error::Tls(HOSTILE.into()),
        Error::Timeout(HOSTILE.into()),
        Error::Io(HOSTILE.into()),
        Error::Http(HOSTILE.into()),
        Error::Listener(HOSTILE.into()),
        Error::Task(HOSTILE.into()),
        Error::Refresh(RefreshError::Transport(HOSTILE.into())),
        Error::Refresh(RefreshError::Persist(HOSTILE.into())),
    ] {
        assert_safe(&e.to_string(), &["Logged in as root"]);
    }
}
