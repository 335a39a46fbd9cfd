//! `docs/GUIDE.md` works as written: its `sh` blocks are run in order with bash against `erpnet-oauth mock`,
//! and each command's exit code and output are checked.
//!
//! Every ```` ```sh ```` block of the GUIDE is preceded by a marker, and a block without one, or a marker
//! this test does not know, fails the test:
//!
//! - `<!-- guide-test -->`: run. Its commands (a line, or lines joined by a trailing `\`; comments dropped)
//!   are sent one by one to one bash process (the reader's second terminal: `export`s carry over), each
//!   with stdin from `/dev/null`; each must be the next one of [`STEPS`], which says what it must do. A
//!   command changed in the GUIDE fails the test until [`STEPS`] says what the new one does.
//! - `<!-- guide-test: background -->`: the reader's first terminal, `erpnet-oauth mock`: started on its
//!   own, checked from its banner, stopped at the end through its admin path (`POST /_mock/shutdown`).
//! - `<!-- guide-test: no (why) -->`: not run (e.g. `cargo install`).
//!
//! Rust blocks (```` ```rust ````) are the doctests' business, not this test's.
//!
//! What the test changes, and nothing else:
//!
//! - **Ports.** Tests use ports the OS chose, so the GUIDE's two port numbers, `8400` (the redirect URI's) and
//!   `8401` (the mock's), are replaced in the commands by two free ports the test picked, wherever they stand
//!   as whole numbers; no other text of a command is changed.
//! - **Environment.** The commands run with `erpnet-oauth` (the binary just built) first on `PATH`, `HOME` a
//!   new temporary directory (so the store is the default one, `$HOME/.config/erpnet-oauth`, and new), the
//!   working directory a new temporary directory, and no other variable (no `ERPNET_*`, no
//!   `XDG_CONFIG_HOME`, no desktop session) except `BROWSER`, a script that records the URL it is given and
//!   opens nothing, and `ERPNET_OAUTH_NO_KEYRING=1`, so that the saved secret goes to the store's file and a
//!   user's keyring is never touched (on Linux the file is what `login` uses anyway).
//! - **The browser.** `login` prints the authorize URL on stderr (and hands it to `BROWSER`); the test plays
//!   the browser with it: it fetches the mock's login page, submits the form as the demo user and follows the
//!   redirect to the command's listener.
//! - **The mock's extra redirect URI.** The mock matches redirect URIs exactly, and the GUIDE's 8400 has become
//!   another port: the mock process also gets `ERPNET_REDIRECT_URI` set to the redirect URI with that port,
//!   which it registers with its applications next to its own, as the GUIDE says it does. Its banner shows
//!   both, the GUIDE's own `:8400` URIs included.
#![cfg(unix)]

mod common;

use common::{BIN, PROCESS_DEADLINE, contains_jwt, deliver, free_port, mock_sign_in};
use erpnet_oauth_mock::{Counters, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_USER};
use std::cell::RefCell;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

const GUIDE: &str = include_str!("../../../docs/GUIDE.md");

/// The GUIDE's redirect URI port and mock port, replaced by free ports.
const GUIDE_REDIRECT_PORT: &str = "8400";
const GUIDE_MOCK_PORT: &str = "8401";

/// The profile the GUIDE logs in to (`ERPNET_PROFILE=mock`).
const PROFILE: &str = "mock";

/// The GUIDE's background block: the mock.
const MOCK_COMMAND: &str = "erpnet-oauth mock --port 8401";

/// What a command must do: its checks push a line per failure.
type Check = fn(&World, &Outcome, &mut Vec<String>);

/// Every command of the GUIDE's `guide-test` blocks, in order, as written (comments dropped, continuation
/// lines joined), and what it must do.
const STEPS: &[(&str, Check)] = &[
    ("(umask 077 && head -c 32 /dev/urandom | base64 > client-secret.txt)", make_secret),
    ("erpnet-oauth hash-secret < client-secret.txt", hash_secret),
    ("export ERPNET_INSTANCE=http://127.0.0.1:8401", quiet_success),
    ("export ERPNET_CLIENT_ID=my.trusted.app/first", quiet_success),
    ("export ERPNET_REDIRECT_URI=http://127.0.0.1:8400/signin-callback", quiet_success),
    ("export ERPNET_PROFILE=mock", quiet_success),
    ("(umask 077 && printf '%s' my_plain_app_secret > mock-secret.txt)", mock_secret),
    ("erpnet-oauth login --client-secret-file mock-secret.txt", login),
    ("erpnet-oauth status", status),
    ("erpnet-oauth token", token),
    ("erpnet-oauth call GET '/api/domain/odata/Crm_Customers?$top=3'", call_top_3),
    ("erpnet-oauth refresh", refresh),
    ("erpnet-oauth token --json", token_json),
    ("erpnet-oauth call --paginate GET /api/domain/odata/Crm_Customers", call_paginate),
    ("erpnet-oauth status --json", status_json),
    ("erpnet-oauth status --all", status_all),
    ("erpnet-oauth logout", logout),
    ("erpnet-oauth logout --forget", logout_forget),
];

#[test]
fn every_command_of_the_guide_runs_as_written_against_the_mock() {
    let blocks = guide_blocks(GUIDE).unwrap_or_else(|e| panic!("docs/GUIDE.md: {e}"));
    let backgrounds: Vec<&Block> = blocks.iter().filter(|b| b.kind == Kind::Background).collect();
    assert_eq!(backgrounds.len(), 1, "one background block, the mock: {blocks:#?}");
    assert_eq!(
        backgrounds.first().map(|b| b.commands.clone()),
        Some(vec![MOCK_COMMAND.to_owned()]),
        "the background block starts the mock"
    );
    let commands: Vec<(usize, String)> = blocks
        .iter()
        .filter(|b| b.kind == Kind::Run)
        .flat_map(|b| b.commands.iter().map(|c| (b.line, c.clone())))
        .collect();
    // Compared with runs of blanks as one space; run as written.
    let written: Vec<String> = commands.iter().map(|(_, c)| normalised(c)).collect();
    let expected: Vec<String> = STEPS.iter().map(|(c, _)| normalised(c)).collect();
    assert_eq!(
        written, expected,
        "the GUIDE's commands differ from what this test knows: say in STEPS what the new ones must do"
    );

    let world = World::new();
    // The first terminal: the mock.
    let mut mock = world.start_mock(MOCK_COMMAND);
    // The second terminal.
    let mut shell = Shell::start(&world);
    let mut failures = Vec::new();
    for ((line, command), (_, check)) in commands.iter().zip(STEPS) {
        let outcome = shell.run(&world.substitute(command), |l| world.browse_if_authorize_url(l));
        let mut own = Vec::new();
        general_checks(command, &outcome, &mut own);
        check(&world, &outcome, &mut own);
        if !own.is_empty() {
            failures.push(format!(
                "GUIDE line {line}: `{command}`\n  {}\n  (exit {:?}; stdout: {:?}; stderr: {:?})",
                own.join("\n  "),
                outcome.code,
                outcome.stdout,
                outcome.stderr
            ));
        }
    }
    shell.exit();
    let code = mock.shut_down(&world);
    assert_eq!(code, Some(0), "the mock stops cleanly");
    assert!(failures.is_empty(), "{} GUIDE commands failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn the_guide_blocks_parser_refuses_what_it_does_not_understand() {
    for (text, error) in [
        ("text\n```sh\nls\n```\n", "line 2: a sh block without a guide-test marker"),
        (
            "<!-- guide-test: maybe -->\n```sh\nls\n```\n",
            "line 1: a guide-test marker this test does not understand",
        ),
        (
            "<!-- guide-test -->\n```rust\nfn f() {}\n```\n",
            "line 2: the guide-test marker is followed by a ```rust block",
        ),
        (
            "<!-- guide-test -->\ntext\n```sh\nls\n```\n",
            "line 2: a guide-test marker must be followed by a ```sh block",
        ),
        (
            "<!-- guide-test: no -->\n```sh\nls\n```\n",
            "line 1: a guide-test marker this test does not understand",
        ),
        ("<!-- guide-test -->\n<!-- guide-test -->\n```sh\nls\n```\n", "line 2: two markers in a row"),
        ("<!-- guide-test -->\n```sh\nls\n", "line 2: the block is not closed"),
        ("<!-- guide-test -->\n```sh\nls \\\n```\n", "line 2: the block ends with a continuation line"),
        ("text\n<!-- guide-test -->\n", "line 2: a guide-test marker at the end"),
    ] {
        let got = guide_blocks(text).map(|_| ()).unwrap_err();
        assert!(got.starts_with(error), "{text:?}: {got}");
    }
    // What it understands: comments dropped (not inside quotes), continuations joined, rust blocks skipped.
    let blocks = guide_blocks(
        "<!-- guide-test -->\n```sh\n# a comment\nerpnet-oauth call GET '/x?a#b'   # why\n\nls \\\n  -l\n```\n\
         ```rust\n```sh (not a block: inside rust)\n```\n<!-- guide-test: no (installs) -->\n```sh\ncargo install x\n```\n\
         <!-- guide-test: background -->\n\n```sh\nerpnet-oauth mock\n```\n",
    )
    .unwrap();
    assert_eq!(
        blocks,
        vec![
            Block {
                line: 2,
                kind: Kind::Run,
                commands: vec!["erpnet-oauth call GET '/x?a#b'".into(), "ls   -l".into()]
            },
            Block { line: 13, kind: Kind::Skip, commands: vec!["cargo install x".into()] },
            Block { line: 18, kind: Kind::Background, commands: vec!["erpnet-oauth mock".into()] },
        ]
    );
    // Ports are whole numbers.
    let substituted = substitute_ports("a:8400/b --port 8401 84001 18400 8400", 1234, 5678);
    assert_eq!(substituted, "a:1234/b --port 5678 84001 18400 1234");
}

// ---------------------------------------------------------------------------------------------------------
// The checks of each command.

macro_rules! check {
    ($failures:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $failures.push(format!($($fmt)+));
        }
    };
}

/// What every command must do: no panic, no token on stderr (nor on stdout but for `token`'s), never the
/// client secret.
fn general_checks(command: &str, o: &Outcome, f: &mut Vec<String>) {
    for text in [&o.stdout, &o.stderr] {
        check!(f, !text.contains("panicked") && !text.contains("RUST_BACKTRACE"), "it panicked");
        check!(f, !text.contains(DEMO_CLIENT_SECRET), "the client secret is on a stream");
    }
    check!(f, !contains_jwt(&o.stderr), "a token is on stderr");
    if !command.starts_with("erpnet-oauth token") {
        check!(f, !contains_jwt(&o.stdout), "a token is on stdout");
    }
}

fn success(o: &Outcome, f: &mut Vec<String>) {
    check!(f, o.code == Some(0), "exit {:?}, not 0", o.code);
    check!(f, !o.stderr.lines().any(|l| l.starts_with("erpnet-oauth:")), "an error or warning line");
}

fn quiet_success(_: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stdout.is_empty() && o.stderr.is_empty(), "it printed something");
}

fn private_file(path: &Path, f: &mut Vec<String>) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            check!(f, meta.permissions().mode() & 0o777 == 0o600, "{} is not mode 0600", path.display())
        }
        Err(e) => f.push(format!("{}: {e}", path.display())),
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

fn make_secret(w: &World, o: &Outcome, f: &mut Vec<String>) {
    quiet_success(w, o, f);
    let secret = private_file(&w.work.join("client-secret.txt"), f);
    // 32 random bytes in base64 and a newline.
    check!(
        f,
        secret.len() == 45 && secret.ends_with("=\n"),
        "client-secret.txt holds {} bytes",
        secret.len()
    );
}

fn hash_secret(_: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    let lines: Vec<&str> = o.stdout.lines().collect();
    check!(f, lines.len() == 1, "not one line on stdout");
    let hash = lines.first().copied().unwrap_or_default();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(hash).unwrap_or_default();
    check!(f, decoded.len() == 32, "`{hash}` is not base64 of a SHA-256 digest");
    check!(f, o.stderr.is_empty(), "stderr is not empty");
}

fn mock_secret(w: &World, o: &Outcome, f: &mut Vec<String>) {
    quiet_success(w, o, f);
    let secret = private_file(&w.work.join("mock-secret.txt"), f);
    check!(f, secret == DEMO_CLIENT_SECRET, "mock-secret.txt does not hold the demo secret");
}

fn login(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stdout.is_empty(), "login printed on stdout");
    let expected = format!("Logged in as {DEMO_USER}");
    check!(f, o.stderr.lines().last() == Some(expected.as_str()), "the last line is not `{expected}`");
    let logins = w.logins.borrow();
    check!(f, logins.len() == 1, "the browser was sent {} times to the login page", logins.len());
    if let Some((url, page)) = logins.first() {
        check!(f, page.contains("Logged in"), "the browser's page after the login: {page:?}");
        check!(f, w.browser_log() == vec![url.clone()], "BROWSER was not given the authorize URL once");
    }
    check!(f, w.counters().authorization_code_grants == 1, "not one code exchange at the mock");
    // Saved: the tokens, the settings (no secret in them), the secret in a private file of the store.
    let profile = w.read(&format!("{PROFILE}.profile.json"));
    check!(f, w.store.join(format!("{PROFILE}.tokens.json")).exists(), "no {PROFILE}.tokens.json");
    check!(f, !profile.contains(DEMO_CLIENT_SECRET), "the profile file holds the secret");
    let profile: serde_json::Value = serde_json::from_str(&profile).unwrap_or_default();
    check!(f, profile["instance"] == w.instance.as_str(), "the profile's instance: {profile}");
    check!(f, profile["client_id"] == DEMO_CLIENT_ID, "the profile's client id: {profile}");
    check!(f, profile["redirect_uri"] == w.redirect_uri.as_str(), "the profile's redirect URI: {profile}");
    check!(
        f,
        profile["secret"] == "file" && profile["confidential"] == true,
        "the secret's place: {profile}"
    );
    let saved = private_file(&w.store.join(format!("{PROFILE}.secret")), f);
    check!(f, saved.trim_end() == DEMO_CLIENT_SECRET, "the saved secret is not the secret given");
}

fn status(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    for needle in [PROFILE, w.instance.as_str(), DEMO_CLIENT_ID, DEMO_USER, "DomainApi"] {
        check!(f, o.stdout.contains(needle), "status does not show {needle}");
    }
}

fn token(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stderr.is_empty(), "stderr is not empty");
    let stored = w.stored("access_token");
    check!(
        f,
        stored.is_some() && o.stdout == format!("{}\n", stored.unwrap_or_default()),
        "not the stored token alone on a line"
    );
}

fn customers(o: &Outcome, f: &mut Vec<String>) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    check!(f, json.is_object(), "stdout is not a JSON object");
    json
}

fn call_top_3(_: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stderr.is_empty(), "stderr is not empty");
    let rows = customers(o, f)["value"].as_array().cloned().unwrap_or_default();
    check!(f, rows.len() == 3, "{} customers, not 3", rows.len());
    check!(f, rows.iter().all(|r| r["PartyName"].is_string()), "rows without PartyName");
}

fn refresh(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stderr.starts_with("Refreshed the access token"), "stderr does not say it refreshed");
    let counters = w.counters();
    check!(
        f,
        counters.refresh_token_grants == 1,
        "{} refreshes at the mock, not 1",
        counters.refresh_token_grants
    );
    check!(f, counters.invalid_client_errors == 0, "the mock refused the client (no secret?)");
}

fn token_json(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stdout.lines().count() == 1, "not one line on stdout");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    check!(
        f,
        json["access_token"].as_str() == w.stored("access_token").as_deref(),
        "not the stored token: {json}"
    );
    check!(f, json["access_token"].is_string(), "no access_token");
    check!(
        f,
        json["expires_at"].as_u64().is_some_and(|t| t > common::now_unix()),
        "expires_at: {}",
        json["expires_at"]
    );
    check!(
        f,
        json["expires_at_rfc3339"].as_str().is_some_and(|t| t.len() >= 20 && t.contains('T')),
        "expires_at_rfc3339: {}",
        json["expires_at_rfc3339"]
    );
    let scopes: Vec<&str> =
        json["scopes"].as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect()).unwrap_or_default();
    check!(
        f,
        scopes.contains(&"DomainApi") && scopes.contains(&"offline_access"),
        "scopes: {}",
        json["scopes"]
    );
    check!(f, json["token_type"] == "Bearer", "token_type: {}", json["token_type"]);
}

fn call_paginate(_: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    let json = customers(o, f);
    let rows = json["value"].as_array().cloned().unwrap_or_default();
    // The mock's default configuration serves 50 customers.
    check!(f, rows.len() == 50, "{} customers, not the 50 of every page", rows.len());
    check!(f, json.get("@odata.nextLink").is_none(), "a nextLink is left in the document");
}

fn status_json(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stdout.lines().count() == 1, "not one line on stdout");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    for (key, value) in [
        ("profile", serde_json::json!(PROFILE)),
        ("logged_in", serde_json::json!(true)),
        ("instance", serde_json::json!(w.instance)),
        ("client_id", serde_json::json!(DEMO_CLIENT_ID)),
        ("subject", serde_json::json!(DEMO_USER)),
        ("has_refresh_token", serde_json::json!(true)),
        ("secret", serde_json::json!("file")),
        ("mismatches", serde_json::json!([])),
    ] {
        check!(f, json[key] == value, "`{key}` is {}, not {value}", json[key]);
    }
    check!(f, json["access_token_expires_at"].is_u64(), "no access_token_expires_at");
    check!(f, json["access_token_expires_at_rfc3339"].is_string(), "no access_token_expires_at_rfc3339");
}

fn status_all(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    for needle in [PROFILE, w.instance.as_str(), DEMO_USER] {
        check!(f, o.stdout.contains(needle), "status --all does not show {needle}");
    }
}

fn logout(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    check!(f, o.stderr.contains("Revoked the refresh token"), "stderr does not say it was revoked");
    check!(f, w.counters().revocations == 1, "not one revocation at the mock");
    check!(f, !w.store.join(format!("{PROFILE}.tokens.json")).exists(), "the tokens are still stored");
    check!(f, w.store.join(format!("{PROFILE}.profile.json")).exists(), "the profile's settings are gone");
    check!(f, w.store.join(format!("{PROFILE}.secret")).exists(), "the saved secret is gone");
}

fn logout_forget(w: &World, o: &Outcome, f: &mut Vec<String>) {
    success(o, f);
    for file in ["profile.json", "tokens.json", "secret"] {
        check!(f, !w.store.join(format!("{PROFILE}.{file}")).exists(), "{PROFILE}.{file} is still there");
    }
}

fn banner_checks(w: &World, banner: &str) {
    let lines: Vec<&str> = banner.lines().collect();
    let has = |l: &str| lines.iter().any(|x| x.trim() == l);
    assert!(
        lines.first().is_some_and(|l| l.ends_with(&format!("listening on {}", w.instance))),
        "the banner names the instance: {banner}"
    );
    assert!(
        has(&format!("{DEMO_CLIENT_ID}: confidential, secret {DEMO_CLIENT_SECRET} (the demo secret)")),
        "{banner}"
    );
    let uris = format!(
        "redirect URIs (exact match): http://localhost/signin-callback http://127.0.0.1:8400/signin-callback \
         http://localhost:8400/signin-callback {}",
        w.redirect_uri
    );
    assert!(has(&uris), "the demo app's redirect URIs, the GUIDE's and the one registered: {banner}");
    assert!(has(&format!("{DEMO_USER}, password admin-password (the demo password)")), "{banner}");
}

// ---------------------------------------------------------------------------------------------------------
// The GUIDE's blocks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Background,
    Skip,
}

#[derive(Debug, PartialEq, Eq)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    kind: Kind,
    commands: Vec<String>,
}

/// The marked `sh` blocks of `text`. Refuses a `sh` block without a marker, a marker it does not know, a
/// marker not followed by a `sh` block, an unterminated block, a block ending with a continuation line.
fn guide_blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut pending: Option<(usize, Kind)> = None;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        if line.starts_with("<!-- guide-test") {
            if pending.is_some() {
                return Err(format!("line {n}: two markers in a row"));
            }
            let kind = match line {
                "<!-- guide-test -->" => Kind::Run,
                "<!-- guide-test: background -->" => Kind::Background,
                _ if line.starts_with("<!-- guide-test: no (") && line.ends_with(") -->") => Kind::Skip,
                _ => {
                    return Err(format!(
                        "line {n}: a guide-test marker this test does not understand: {line}"
                    ));
                }
            };
            pending = Some((n, kind));
            continue;
        }
        if let Some(info) = line.strip_prefix("```") {
            let kind = if info == "sh" {
                let Some((_, kind)) = pending.take() else {
                    return Err(format!(
                        "line {n}: a sh block without a guide-test marker (guide-test, background or no (why))"
                    ));
                };
                Some(kind)
            } else if pending.is_some() {
                return Err(format!("line {n}: the guide-test marker is followed by a ```{info} block"));
            } else {
                None
            };
            let mut body = Vec::new();
            loop {
                let Some((_, l)) = lines.next() else {
                    return Err(format!("line {n}: the block is not closed"));
                };
                // A closing fence has no info string (CommonMark).
                if l.trim_end() == "```" {
                    break;
                }
                body.push(l);
            }
            if let Some(kind) = kind {
                let commands = commands(&body).map_err(|e| format!("line {n}: {e}"))?;
                blocks.push(Block { line: n, kind, commands });
            }
            continue;
        }
        if pending.is_some() && !line.trim().is_empty() {
            return Err(format!(
                "line {n}: a guide-test marker must be followed by a ```sh block, not {line:?}"
            ));
        }
    }
    match pending {
        Some((n, _)) => Err(format!("line {n}: a guide-test marker at the end")),
        None => Ok(blocks),
    }
}

/// The commands of a block's lines: continuation lines joined, comments dropped, blank lines skipped.
fn commands(body: &[&str]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body {
        let line = strip_comment(line);
        match line.strip_suffix('\\') {
            // Bash drops a backslash-newline and keeps the rest as it stands.
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let command = current.trim();
                if !command.is_empty() {
                    out.push(command.to_owned());
                }
                current.clear();
            }
        }
    }
    if current.trim().is_empty() { Ok(out) } else { Err("the block ends with a continuation line".into()) }
}

fn normalised(command: &str) -> String {
    command.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `line` without a comment: a `#` at the start of a word, outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        prev = c;
    }
    line.trim_end()
}

/// `command` with the whole numbers 8400 and 8401 replaced by `redirect_port` and `mock_port`.
fn substitute_ports(command: &str, redirect_port: u16, mock_port: u16) -> String {
    let mut out = String::with_capacity(command.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.as_str() {
            GUIDE_REDIRECT_PORT => out.push_str(&redirect_port.to_string()),
            GUIDE_MOCK_PORT => out.push_str(&mock_port.to_string()),
            other => out.push_str(other),
        }
        digits.clear();
    };
    for c in command.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------------------
// The reader's machine: a home, a working directory, the mock, a shell, a browser.

struct World {
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    bin: PathBuf,
    scratch: PathBuf,
    store: PathBuf,
    redirect_port: u16,
    mock_port: u16,
    /// `http://127.0.0.1:MOCK_PORT`.
    instance: String,
    /// The GUIDE's redirect URI with its substituted port.
    redirect_uri: String,
    /// Each login page the test played the browser on: the authorize URL and the listener's last page.
    logins: RefCell<Vec<(String, String)>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let [home, work, bin, scratch] = ["home", "work", "bin", "scratch"].map(|d| dir.path().join(d));
        for d in [&home, &work, &bin, &scratch] {
            std::fs::create_dir(d).unwrap();
        }
        std::os::unix::fs::symlink(BIN, bin.join("erpnet-oauth")).unwrap();
        // The browser the command starts: records the URL, opens nothing.
        let browser = bin.join("guide-test-browser");
        std::fs::write(
            &browser,
            format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", scratch.join("browser.log").display()),
        )
        .unwrap();
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let redirect_port = free_port();
        let mock_port = loop {
            let port = free_port();
            if port != redirect_port {
                break port;
            }
        };
        World {
            store: home.join(".config").join("erpnet-oauth"),
            home,
            work,
            bin,
            scratch,
            _dir: dir,
            redirect_port,
            mock_port,
            instance: format!("http://127.0.0.1:{mock_port}"),
            redirect_uri: format!("http://127.0.0.1:{redirect_port}/signin-callback"),
            logins: RefCell::new(Vec::new()),
        }
    }

    fn substitute(&self, command: &str) -> String {
        substitute_ports(command, self.redirect_port, self.mock_port)
    }

    /// bash with the environment the module docs describe, in its own process group.
    fn bash(&self) -> Command {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("bash");
        cmd.arg("--noprofile")
            .arg("--norc")
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("BROWSER", self.bin.join("guide-test-browser"))
            .env("ERPNET_OAUTH_NO_KEYRING", "1")
            .current_dir(&self.work)
            .process_group(0);
        cmd
    }

    fn start_mock(&self, command: &str) -> Background {
        let mut cmd = self.bash();
        cmd.arg("-c")
            .arg(self.substitute(command))
            .env("ERPNET_REDIRECT_URI", &self.redirect_uri)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Group(cmd.spawn().unwrap());
        let stderr = child.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        common::pump_lines(stderr, tx, |line| line);
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let mut banner = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if line.ends_with("Ctrl-C stops") {
                        break;
                    }
                }
                Err(_) => panic!("the mock printed no banner: {banner}"),
            }
        }
        banner_checks(self, &banner);
        Background { child, _stderr: rx }
    }

    /// Plays the browser when `line` is an authorize URL of the mock.
    fn browse_if_authorize_url(&self, line: &str) {
        let Ok(url) = url::Url::parse(line) else { return };
        if !line.starts_with(&self.instance) || !url.path().ends_with("/connect/authorize") {
            return;
        }
        let location = mock_sign_in(&self.instance, line);
        let page = deliver(&location);
        self.logins.borrow_mut().push((line.to_owned(), page));
    }

    /// The URLs the fake browser was given (it may start a moment after `login` did).
    fn browser_log(&self) -> Vec<String> {
        let path = self.scratch.join("browser.log");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    fn counters(&self) -> Counters {
        let mut answer = common::browser().get(&format!("{}/_mock/counters", self.instance)).call().unwrap();
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// A file of the store, or "".
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.store.join(name)).unwrap_or_default()
    }

    /// A field of the stored tokens.
    fn stored(&self, field: &str) -> Option<String> {
        let json: serde_json::Value =
            serde_json::from_str(&self.read(&format!("{PROFILE}.tokens.json"))).ok()?;
        json["tokens"][field].as_str().map(str::to_owned)
    }
}

/// A child in its own process group, killed with its group if the test ends before it does.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg("-KILL").arg(format!("-{}", self.0.id())).status();
            let _ = self.0.wait();
        }
    }
}

struct Background {
    child: Group,
    _stderr: Receiver<String>,
}

impl Background {
    /// `POST /_mock/shutdown`, then its exit code.
    fn shut_down(&mut self, w: &World) -> Option<i32> {
        let answer = common::browser().post(&format!("{}/_mock/shutdown", w.instance)).send_empty().unwrap();
        assert_eq!(answer.status(), 204);
        wait(&mut self.child.0)
    }
}

fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the process did not end within {PROCESS_DEADLINE:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What one command left.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

enum Line {
    Out(String),
    Err(String),
}

/// One bash process fed one command at a time: each is written to a file and sourced (so `export`s stay),
/// with stdin from /dev/null, followed by a marker line on each stream carrying the exit code.
struct Shell {
    child: Group,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    scratch: PathBuf,
    count: usize,
}

const DONE: &str = "@@guide-test-done@@";

impl Shell {
    fn start(w: &World) -> Shell {
        let mut cmd = w.bash();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Group(cmd.spawn().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        common::pump_lines(child.0.stdout.take().unwrap(), tx.clone(), Line::Out);
        common::pump_lines(child.0.stderr.take().unwrap(), tx, Line::Err);
        let stdin = child.0.stdin.take();
        Shell { child, stdin, lines, scratch: w.scratch.clone(), count: 0 }
    }

    /// Runs `command`; `on_stderr` sees each line of stderr as it comes.
    fn run(&mut self, command: &str, on_stderr: impl Fn(&str)) -> Outcome {
        self.count += 1;
        let file = self.scratch.join(format!("command-{}.sh", self.count));
        std::fs::write(&file, format!("{command}\n")).unwrap();
        let script = format!(
            ". '{}' </dev/null; printf '\\n{DONE} %s\\n' \"$?\"; printf '\\n{DONE}\\n' >&2\n",
            file.display()
        );
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(script.as_bytes()).and_then(|()| stdin.flush()).unwrap();
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut code, mut err_done) = (None::<Option<i32>>, false);
        while code.is_none() || !err_done {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Line::Out(line)) => match line.strip_prefix(DONE) {
                    Some(rc) => code = Some(rc.trim().parse().ok()),
                    None => out.push(line),
                },
                Ok(Line::Err(line)) => {
                    if line == DONE {
                        err_done = true;
                    } else {
                        on_stderr(&line);
                        err.push(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("`{command}` did not end within {PROCESS_DEADLINE:?}: {err:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("the shell ended during `{command}`: {err:?}"),
            }
        }
        Outcome { code: code.flatten(), stdout: text(out), stderr: text(err) }
    }

    fn exit(&mut self) {
        drop(self.stdin.take());
        assert_eq!(wait(&mut self.child.0), Some(0), "the shell ends cleanly");
    }
}

/// The lines read before a marker, which was preceded by a newline of its own: that newline is not the
/// command's.
fn text(lines: Vec<String>) -> String {
    let mut text: String = lines.into_iter().map(|l| l + "\n").collect();
    text.pop();
    text
}
