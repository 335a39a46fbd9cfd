//! The commands that need no login (`hash-secret`, `demo`, `mock`, `completions`) and command-line
//! errors.

mod common;

use common::*;
use std::path::Path;

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn hash_secret_prints_the_application_secret_hash() {
    let dir = home();
    for input in [&b"secret\n"[..], b"secret", b"secret\r\n"] {
        let mut cmd = bare(dir.path());
        cmd.arg("hash-secret");
        let o = run_with_stdin(cmd, Some(input));
        o.assert_success();
        assert_eq!(o.stdout, "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=\n");
        assert!(o.stderr.is_empty());
    }
    // The seed's secret gives the hash the mock stores.
    let mut cmd = bare(dir.path());
    cmd.arg("hash-secret");
    let o = run_with_stdin(cmd, Some(format!("{SECRET}\n").as_bytes()));
    assert_eq!(o.stdout.trim_end(), erpnet_oauth_mock::secret_hash(SECRET));
    assert!(!o.stdout.contains(SECRET));
}

#[test]
fn hash_secret_with_empty_stdin_is_a_usage_error() {
    let dir = home();
    for input in [&b""[..], b"\n"] {
        let mut cmd = bare(dir.path());
        cmd.arg("hash-secret");
        let o = run_with_stdin(cmd, Some(input));
        o.assert_only_error(2, &["stdin"]);
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn demo_tells_the_seed_story_with_every_secret_shortened() {
    let dir = home();
    let mut cmd = bare(dir.path());
    cmd.arg("demo");
    let o = run(cmd);
    o.assert_success();
    let out = &o.stdout;
    // The seed's steps, in order.
    let steps = [
        "GET /id/connect/authorize?",
        "POST /id/account/login",
        "GET /signin-callback?code=",
        "grant_type=authorization_code&",
        "GET /api/domain/odata/Crm_Customers?$top=10 HTTP/1.1",
        "HTTP/1.1 401 Unauthorized",
        "grant_type=refresh_token&",
        "--- Retrying the call with the new access token",
        "10 customers received with the renewed access token.",
        "Done.",
    ];
    let mut at = 0;
    for step in steps {
        let found = out[at..].find(step).unwrap_or_else(|| panic!("no {step:?} after byte {at}:\n{out}"));
        at += found + step.len();
    }
    assert!(out.contains("1 authorization code grant, 1 refresh grant"), "{out}");
    assert!(out.contains("    response_type=code id_token&"), "{out}");
    assert!(out.contains("    scope=openid profile offline_access DomainApi&"), "{out}");

    // No secret, and every token-like value shortened to `…` and its last 6 characters.
    assert!(!out.contains(SECRET) && !o.stderr.contains(SECRET));
    assert!(!contains_jwt(out) && !contains_jwt(&o.stderr));
    let mut shortened = 0;
    for line in out.lines() {
        let line = line.trim();
        for key in
            ["client_secret=", "code=", "code_verifier=", "refresh_token=", "id_token=", "access_token="]
        {
            for (i, _) in line.match_indices(key) {
                if i > 0 && !matches!(line.as_bytes()[i - 1], b'?' | b'&') {
                    continue;
                }
                let value: String = line[i + key.len()..].chars().take_while(|c| *c != '&').collect();
                assert!(is_short(&value), "{key} not shortened: {line}");
                shortened += 1;
            }
        }
        for key in ["\"access_token\": ", "\"refresh_token\": ", "\"id_token\": "] {
            if let Some(rest) = line.strip_prefix(key) {
                assert!(is_short(rest.trim_end_matches(',').trim_matches('"')), "{line}");
                shortened += 1;
            }
        }
        if let Some(rest) = line.strip_prefix("Authorization: Bearer ") {
            assert!(is_short(rest), "{line}");
            shortened += 1;
        }
    }
    assert!(shortened >= 15, "the secrets were found and checked ({shortened}):\n{out}");
    // Long random-looking values are only the public ones: state, nonce, the PKCE challenge.
    let public: Vec<String> = out
        .lines()
        .flat_map(|l| l.split(['?', '&', ' ']))
        .filter_map(|p| {
            ["state=", "nonce=", "code_challenge="].iter().find_map(|k| p.strip_prefix(k)).map(str::to_owned)
        })
        .collect();
    for run in long_b64url_runs(out, 30) {
        assert!(public.contains(&run), "a long value that is not state, nonce or challenge: {run}");
    }
}

/// `…` and exactly 6 base64url characters.
fn is_short(value: &str) -> bool {
    value.strip_prefix('…').is_some_and(|tail| {
        tail.chars().count() == 6 && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn usage_errors_from_the_command_line_parser() {
    let dir = home();
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["token", "--no-such-flag"],
        &["--timeout", "0", "token"],
        &["--timeout", "soon", "token"],
        &["call", "GET"],
        &["completions", "no-such-shell"],
        // A wait so long that the deadline overflows used to panic in the listener.
        &["login", "--no-browser", "--wait", "18446744073709551615"],
        &["login", "--no-browser", "--wait", "0"],
    ];
    for args in cases {
        let mut cmd = bare(dir.path());
        cmd.args(*args);
        let o = run(cmd);
        assert_eq!(o.code, Some(2), "{args:?}: {o:#?}");
        assert!(o.stderr.starts_with("error: "), "{args:?}: {o:#?}");
        assert!(o.stdout.is_empty());
    }
    // No command at all: the help, on stderr, exit 2.
    let o = run(bare(dir.path()));
    assert_eq!(o.code, Some(2), "{o:#?}");
    assert!(o.stderr.contains("Usage: erpnet-oauth"), "{o:#?}");
    assert!(o.stdout.is_empty());
    // Help and version: stdout, exit 0.
    for args in [&["--help"][..], &["--version"], &["token", "--help"]] {
        let mut cmd = bare(dir.path());
        cmd.args(args);
        let o = run(cmd);
        o.assert_success();
        assert!(o.stdout.contains("erpnet-oauth"), "{o:#?}");
    }
}

#[test]
fn bad_profile_names_are_usage_errors() {
    let dir = home();
    for profile in ["../x", "a/b", ".hidden", ""] {
        let mut cmd = bare(dir.path());
        cmd.arg("--store").arg(dir.path().join("store")).args(["--profile", profile, "token"]);
        let o = run(cmd);
        o.assert_only_error(2, &["profile"]);
    }
    assert!(!dir.path().join("x").exists());
}

#[test]
fn corrupt_files_in_the_store_are_usage_errors_without_their_content() {
    let dir = home();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("default.profile.json"), "{ not json SECRET-CONTENT").unwrap();
    let mut cmd = bare(dir.path());
    cmd.arg("--store").arg(&store).arg("token");
    run(cmd).assert_only_error(2, &["default.profile.json", "erpnet-oauth login"]);
    std::fs::remove_file(store.join("default.profile.json")).unwrap();
    std::fs::write(store.join("default.tokens.json"), "{\"refresh_token\": \"SECRET-CONTENT\"").unwrap();
    for command in ["token", "status"] {
        let mut cmd = bare(dir.path());
        cmd.arg("--store").arg(&store).args(["--instance", "http://127.0.0.1:9", "--client-id", "x"]);
        cmd.arg(command);
        let o = run(cmd);
        o.assert_only_error(2, &["corrupt"]);
        assert!(!o.stderr.contains("SECRET-CONTENT"), "{o:#?}");
    }
    // `logout` recovers: a warning, the file deleted (tests/profiles.rs: `login` replaces it).
    let mut cmd = bare(dir.path());
    cmd.arg("--store").arg(&store).args(["--instance", "http://127.0.0.1:9", "--client-id", "x", "logout"]);
    let o = run(cmd);
    o.assert_success();
    assert_eq!(o.warnings().len(), 1, "{o:#?}");
    assert!(o.warnings()[0].contains("corrupt") && !o.stderr.contains("SECRET-CONTENT"), "{o:#?}");
    assert!(!store.join("default.tokens.json").exists());
}

#[test]
fn completions_are_printed() {
    let dir = home();
    let mut cmd = bare(dir.path());
    cmd.args(["completions", "bash"]);
    let o = run(cmd);
    o.assert_success();
    assert!(o.stdout.contains("erpnet-oauth") && o.stdout.contains("hash-secret"));
}

#[test]
fn mock_command_serves_until_shut_down() {
    let dir = home();
    let mut cmd = bare(dir.path());
    cmd.args(["mock", "--port", "0"]).stdin(std::process::Stdio::null());
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let base = loop {
        let line = lines.next().expect("the mock prints its address").unwrap();
        if let Some(i) = line.find("http://127.0.0.1:") {
            break line[i..].trim().to_owned();
        }
    };
    let agent = browser();
    let mut discovery = agent.get(&format!("{base}/id/.well-known/openid-configuration")).call().unwrap();
    assert_eq!(discovery.status(), 200);
    let doc: serde_json::Value =
        serde_json::from_str(&discovery.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(doc["issuer"], format!("{base}/id"));
    assert_eq!(agent.post(&format!("{base}/_mock/shutdown")).send_empty().unwrap().status(), 204);
    let deadline = std::time::Instant::now() + PROCESS_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the mock did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn mock_command_with_a_bad_config_is_a_usage_error() {
    let dir = home();
    let file = dir.path().join("mock.json");
    std::fs::write(&file, "{\"apps\": 3}").unwrap();
    let mut cmd = bare(dir.path());
    cmd.args(["mock", "--config"]).arg(&file);
    run(cmd).assert_only_error(2, &["mock.json"]);
    let mut cmd = bare(dir.path());
    cmd.args(["mock", "--config"]).arg(dir.path().join("missing.json"));
    run(cmd).assert_only_error(2, &["missing.json"]);
}

/// Starts `erpnet-oauth mock --port 0` with `args`, reads its banner (up to "Ctrl-C stops"), stops it
/// through its admin path and returns the banner; asserts the mock ended with exit 0.
fn mock_banner(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = bare(dir);
    cmd.args(["mock", "--port", "0"]).args(args).envs(env.iter().copied());
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut banner = String::new();
    loop {
        let line = lines.next().expect("the mock prints its banner").unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.ends_with("Ctrl-C stops") {
            break;
        }
    }
    let first = banner.lines().next().unwrap_or_default();
    let base = &first[first.find("http://127.0.0.1:").expect("the banner names the instance")..];
    assert_eq!(browser().post(&format!("{base}/_mock/shutdown")).send_empty().unwrap().status(), 204);
    let deadline = std::time::Instant::now() + PROCESS_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the mock did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    banner
}

#[test]
fn mock_banner_shows_the_default_demo_configuration() {
    let dir = home();
    let banner = mock_banner(dir.path(), &[], &[]);
    let lines: Vec<&str> = banner.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"my.trusted.app/first: confidential, secret my_plain_app_secret (the demo secret)"),
        "{banner}"
    );
    assert!(lines.contains(&"my.trusted.app/public: public (PKCE, no secret)"), "{banner}");
    assert!(
        lines.contains(
            &"redirect URIs (exact match): http://localhost/signin-callback http://127.0.0.1:8400/signin-callback \
              http://localhost:8400/signin-callback"
        ),
        "{banner}"
    );
    assert!(lines.contains(&"admin, password admin-password (the demo password)"), "{banner}");
}

#[test]
fn mock_banner_shows_the_configuration_loaded_and_no_demo_credential() {
    let dir = home();
    let file = dir.path().join("mock.json");
    // Another confidential app (secret "s3cret-of-mine"), a public one, another user.
    let config = serde_json::json!({
        "apps": [
            {"name": "Mine", "application_uri": "my.company/app", "client_type": "Confidential",
             "application_secret_hash": "iKtroCJv66gLKQzV5hCHSIJ34incIUBs1kn7yNhFc6I=",
             "impersonate_login_urls": ["http://127.0.0.1:9100/cb"]},
            {"ApplicationUri": "my.company/spa", "ClientType": "Public", "Name": "SPA",
             "ImpersonateLoginUrl": ["http://localhost:9200/cb"]}
        ],
        "users": [{"username": "bob", "password": "bobs-password", "id": "1", "name": "Bob", "email": "b@x"}]
    });
    std::fs::write(&file, config.to_string()).unwrap();
    let extra = "http://127.0.0.1:9300/signin-callback";
    for (args, env) in [
        (vec!["--config", file.to_str().unwrap(), "--redirect-uri", extra], vec![]),
        (vec!["--config", file.to_str().unwrap()], vec![("ERPNET_REDIRECT_URI", extra)]),
    ] {
        let banner = mock_banner(dir.path(), &args, &env);
        let lines: Vec<&str> = banner.lines().map(str::trim).collect();
        for line in [
            "my.company/app: confidential, secret as in the configuration (only its hash is known here)",
            "redirect URIs (exact match): http://127.0.0.1:9100/cb http://127.0.0.1:9300/signin-callback",
            "my.company/spa: public (PKCE, no secret)",
            "redirect URIs (exact match): http://localhost:9200/cb http://127.0.0.1:9300/signin-callback",
            "bob, password as in the configuration",
        ] {
            assert!(lines.contains(&line), "{line:?} not in {banner}");
        }
        for absent in [
            "my.trusted.app",
            "my_plain_app_secret",
            "admin,",
            "admin-password",
            "bobs-password",
            "s3cret-of-mine",
            ":8400",
        ] {
            assert!(!banner.contains(absent), "{absent:?} in {banner}");
        }
    }
}

#[test]
fn mock_with_a_redirect_uri_that_is_not_a_url_is_a_usage_error() {
    let dir = home();
    let mut cmd = bare(dir.path());
    cmd.args(["mock", "--port", "0", "--redirect-uri", "not a url"]);
    run(cmd).assert_only_error(2, &["not a URL"]);
}
