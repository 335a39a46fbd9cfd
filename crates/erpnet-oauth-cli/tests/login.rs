//! `erpnet-oauth login`: the authorization code flow driven by a test playing the browser through
//! `--no-browser`, and every way a new user can get it wrong.

mod common;

use common::*;
use erpnet_oauth_mock::{Endpoint, Fault};

#[test]
fn confidential_login_prints_the_url_alone_and_stores_the_tokens() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    // The URL is alone on its line and asks for the code flow with PKCE S256, state and nonce.
    assert!(!run.authorize_url.contains(' '), "{}", run.authorize_url);
    assert!(run.authorize_url.starts_with(&format!("{}/id/connect/authorize?", h.instance())));
    let q = query_of(&run.authorize_url);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(get("redirect_uri").as_deref(), Some(h.redirect_uri.as_str()));
    assert_eq!(get("response_type").as_deref(), Some("code"));
    assert_eq!(get("scope").as_deref(), Some("openid profile offline_access DomainApi"));
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert!(get("code_challenge").is_some_and(|c| c.len() == 43));
    assert!(get("state").is_some_and(|s| s.len() >= 16));
    assert!(get("nonce").is_some_and(|s| s.len() >= 16));
    assert!(get("code_verifier").is_none());

    let page = run.browse(&h);
    // Sent once the tokens are verified and stored.
    assert!(page.contains("Logged in as admin."), "{page}");
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    assert_eq!(o.stderr_lines().last().copied(), Some("Logged in as admin"));
    assert!(o.stdout.is_empty());

    let c = h.mock().counters();
    assert_eq!((c.logins, c.authorization_code_grants, c.token_errors), (1, 1, 0));
    assert!(h.access_token().is_some() && h.refresh_token().is_some());
    // The profile remembers the settings, never the secret or a token.
    let profile = std::fs::read_to_string(h.profile_file()).unwrap();
    assert!(!profile.contains(SECRET));
    for t in h.stored() {
        assert!(!profile.contains(&t));
    }
    let json: serde_json::Value = serde_json::from_str(&profile).unwrap();
    assert_eq!(json["instance"], h.instance());
    assert_eq!(json["client_id"], CLIENT_ID);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(h.token_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
        let mode = std::fs::metadata(h.store()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the store directory is private: {mode:o}");
    }
}

#[test]
fn public_client_logs_in_with_pkce_only() {
    let h = Harness::new();
    let o = h.login_with(h.public_cli(&["login", "--no-browser"]));
    assert!(o.stderr.contains("Logged in as admin"));
    // A token afterwards, with no secret anywhere.
    let t = h.run_token(h.store_only(&["token"]));
    t.assert_success();
    assert_eq!(t.stdout, format!("{}\n", h.access_token().unwrap()));
    let c = h.mock().counters();
    assert_eq!((c.authorization_code_grants, c.invalid_client_errors), (1, 0));
}

#[test]
fn client_secret_file_is_read_and_trimmed() {
    let h = Harness::new();
    let file = h.dir.path().join("secret.txt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    // No ERPNET_CLIENT_SECRET: the secret comes from the file.
    let mut cmd = h.cli(&[]);
    cmd.env_remove("ERPNET_CLIENT_SECRET").arg("--client-secret-file").arg(&file);
    cmd.args(["login", "--no-browser"]);
    h.login_with(cmd);
    assert_eq!(h.mock().counters().invalid_client_errors, 0);
}

#[test]
fn ctrl_c_while_waiting_cancels_the_login() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    run.interrupt();
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(3, &["cancelled"]);
    assert!(!h.token_file().exists(), "no tokens were stored");
    assert!(!h.profile_file().exists());
    assert_eq!(h.mock().counters().token_requests, 0);
}

#[test]
fn no_callback_within_the_wait_is_login_required() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser", "--wait", "1"]));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(3, &["no login callback arrived", "erpnet-oauth login"]);
    assert!(!h.token_file().exists());
}

#[test]
fn wrong_client_secret_fails_the_code_exchange() {
    let h = Harness::new();
    h.login_with_a_wrong_secret();
    assert_eq!(h.mock().counters().invalid_client_errors, 1);
}

#[test]
fn the_user_denying_the_login_is_a_server_error() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let agent = browser();
    let page = agent.get(&run.authorize_url).call().unwrap();
    let id =
        page.headers().get(erpnet_oauth_mock::LOGIN_REQUEST_HEADER).unwrap().to_str().unwrap().to_owned();
    let answer = agent
        .post(&format!("{}{}", h.instance(), erpnet_oauth_mock::LOGIN_PATH))
        .send_form([("request_id", id.as_str()), ("button", "cancel")])
        .unwrap();
    let location = answer.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let mut back = browser().get(&location).call().unwrap();
    assert!(back.body_mut().read_to_string().unwrap().contains("refused"));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(4, &["access_denied"]);
    assert!(!h.token_file().exists());
}

#[test]
fn redirect_port_already_taken_is_a_usage_error() {
    let h = Harness::new();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", h.port)).unwrap();
    let o = h.run(h.cli(&["login", "--no-browser"]));
    o.assert_only_error(2, &[&format!("127.0.0.1:{}", h.port)]);
    assert_eq!(h.mock().counters().authorize_requests, 0);
}

#[test]
fn non_loopback_redirect_uri_is_refused() {
    let h = Harness::new();
    let login = |uri: &str| {
        h.run(h.cli_without(&["--redirect-uri"], &["--redirect-uri", uri, "login", "--no-browser"]))
    };
    login("http://example.com/cb").assert_only_error(2, &["http://example.com/cb", "loopback"]);
    login("https://127.0.0.1:8400/cb").assert_only_error(2, &["loopback"]);
    login("not a url").assert_only_error(2, &["not a URL"]);
    // Port 0 would bind some free port while the authorize request names port 0: never completable.
    login("http://127.0.0.1:0/signin-callback").assert_only_error(2, &["port 0"]);
    assert_eq!(h.mock().counters().discovery_fetches, 0);
}

#[test]
fn missing_configuration_is_a_usage_error() {
    let h = Harness::new();
    let store = h.store();
    let store = store.to_str().unwrap();
    // No instance (and no ERPNET_INSTANCE).
    let mut cmd = h.bare();
    cmd.args(["--store", store, "--client-id", CLIENT_ID, "--redirect-uri", &h.redirect_uri]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["--instance", "ERPNET_INSTANCE"]);
    // No client id.
    let mut cmd = h.bare();
    cmd.args(["--store", store, "--instance", &h.instance(), "--redirect-uri", &h.redirect_uri]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["--client-id", "ERPNET_CLIENT_ID"]);
    // No redirect URI.
    let mut cmd = h.bare();
    cmd.args(["--store", store, "--instance", &h.instance(), "--client-id", CLIENT_ID]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["--redirect-uri", "ERPNET_REDIRECT_URI"]);
    assert_eq!(h.mock().counters().discovery_fetches, 0);
}

#[test]
fn configuration_from_the_environment_works() {
    let h = Harness::new();
    let mut cmd = h.bare();
    cmd.env("ERPNET_INSTANCE", h.instance())
        .env("ERPNET_CLIENT_ID", CLIENT_ID)
        .env("ERPNET_CLIENT_SECRET", SECRET)
        .env("ERPNET_REDIRECT_URI", &h.redirect_uri)
        .env("ERPNET_OAUTH_STORE", h.store())
        .env("ERPNET_SCOPE", "openid profile offline_access DomainApi")
        .args(["login", "--no-browser"]);
    h.login_with(cmd);
}

#[test]
fn plain_http_to_a_remote_instance_needs_allow_insecure_http() {
    let h = Harness::new();
    // `.invalid` never resolves: should the check be missing, no traffic leaves the machine.
    let cmd =
        h.cli_without(&["--instance"], &["--instance", "http://demodb.invalid", "login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["http"]);
}

#[test]
fn store_directory_that_cannot_be_created_is_a_usage_error() {
    let h = Harness::new();
    // Tests run as root, where permissions are not enforced: a regular file in the path makes creating
    // the directory fail for anyone.
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let store = file.join("store");
    let mut cmd = h.bare();
    cmd.arg("--store").arg(&store);
    cmd.args(["--instance", &h.instance(), "--client-id", CLIENT_ID, "--redirect-uri", &h.redirect_uri]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &[store.to_str().unwrap()]);
    // The store is the file itself.
    let mut cmd = h.bare();
    cmd.arg("--store").arg(&file);
    cmd.args(["--instance", &h.instance(), "--client-id", CLIENT_ID, "--redirect-uri", &h.redirect_uri]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &[file.to_str().unwrap()]);
    assert_eq!(h.mock().counters().authorize_requests, 0);
}

#[test]
fn unreadable_client_secret_file_is_a_usage_error() {
    let h = Harness::new();
    let missing = h.dir.path().join("no-such-secret");
    let mut cmd = h.cli(&[]);
    cmd.arg("--client-secret-file").arg(&missing).args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["client secret file", missing.to_str().unwrap()]);
    // A directory in place of the file.
    let mut cmd = h.cli(&[]);
    cmd.arg("--client-secret-file").arg(h.dir.path()).args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["client secret file"]);
    // An empty file.
    let empty = h.dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let mut cmd = h.cli(&[]);
    cmd.arg("--client-secret-file").arg(&empty).args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(2, &["empty"]);
}

#[test]
fn instance_on_a_closed_port_is_a_network_error() {
    let h = Harness::new();
    let cmd = h.cli_without(&["--instance"], &["--instance", "http://127.0.0.1:1", "login", "--no-browser"]);
    h.run(cmd).assert_only_error(5, &["connection"]);
}

#[test]
fn discovery_hanging_past_the_timeout_is_a_network_error() {
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Discovery, Fault::Hang, None);
    let mut cmd = h.cli(&["--timeout", "1"]);
    cmd.args(["login", "--no-browser"]);
    h.run(cmd).assert_only_error(5, &["timed out"]);
}

#[test]
fn scope_flag_is_sent_and_remembered() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["--scope", "openid profile offline_access", "login", "--no-browser"]));
    assert!(query_of(&run.authorize_url).contains(&("scope".into(), "openid profile offline_access".into())));
    run.browse(&h);
    let o = run.finish();
    o.assert_success();
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.profile_file()).unwrap()).unwrap();
    assert_eq!(profile["scope"], "openid profile offline_access");
}

#[test]
fn a_callback_with_another_state_is_ignored_and_the_login_goes_on() {
    // Catalogue B9: a forged callback (or one embedded in a web page) does not end the login; the real
    // one does, and the forged code is never exchanged.
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let forged = format!("{}?code=forged-code&state=not-the-state", h.redirect_uri);
    let mut page = browser().get(&forged).call().unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.body_mut().read_to_string().unwrap().contains("not the callback of the login in progress"));
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    let c = h.mock().counters();
    assert_eq!((c.token_requests, c.authorization_code_grants), (1, 1), "only the real code is exchanged");
}

#[test]
fn the_listener_ignores_other_paths_until_the_callback() {
    let h = Harness::new();
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let agent = browser();
    let favicon = agent.get(&format!("http://127.0.0.1:{}/favicon.ico", h.port)).call().unwrap();
    assert_eq!(favicon.status(), 404);
    let bare = agent.get(&h.redirect_uri).call().unwrap();
    assert_eq!(bare.status(), 400);
    run.browse(&h);
    let o = run.finish();
    o.assert_success();
    assert_eq!(o.stderr_lines().last().copied(), Some("Logged in as admin"));
}

#[test]
fn code_exchange_failures_store_nothing() {
    // HTML 500 at the token endpoint: exit 4.
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Token, Fault::Status(500), None);
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(4, &["500"]);
    assert!(!h.token_file().exists());

    // A token endpoint that hangs: exit 5 after --timeout.
    let h = Harness::new();
    h.mock().inject_fault(Endpoint::Token, Fault::Hang, None);
    let run = h.start_login(h.cli(&["--timeout", "1", "login", "--no-browser"]));
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(5, &["timed out"]);
    assert!(!h.token_file().exists());
}

#[test]
fn a_second_login_replaces_the_first() {
    let h = Harness::new();
    h.login();
    let rt0 = h.refresh_token().unwrap();
    h.login();
    assert_ne!(h.refresh_token().unwrap(), rt0);
    h.run(h.store_only(&["refresh"])).assert_success();
    assert_eq!(h.mock().counters().authorization_code_grants, 2);
}

#[test]
fn wait_out_of_range_is_a_usage_error_not_a_panic() {
    let h = Harness::new();
    for wait in ["18446744073709551615", "0", "soon"] {
        let o = h.run(h.cli(&["login", "--no-browser", "--wait", wait]));
        assert_eq!(o.code, Some(2), "--wait {wait}: {o:#?}");
        assert!(o.stderr.starts_with("error: ") && o.stderr.contains("--wait"), "{o:#?}");
    }
    assert_eq!(h.mock().counters().discovery_fetches, 0);
}

#[test]
fn without_no_browser_the_system_browser_is_opened_with_the_url() {
    let h = Harness::new();
    // A fake `xdg-open` that records the URL it was asked to open.
    let bin = h.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let opened = h.dir.path().join("opened");
    let script = bin.join("xdg-open");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = h.cli(&["login"]);
    cmd.env("PATH", &bin);
    let run = h.start_login(cmd);
    let url = run.authorize_url.clone();
    run.browse(&h);
    let o = run.finish();
    o.assert_success();
    assert_eq!(o.stderr_lines().last().copied(), Some("Logged in as admin"));
    assert!(o.stderr.contains("Opening the ERP.net login page"), "{o:#?}");
    // The browser runs on its own: wait for its record.
    let deadline = std::time::Instant::now() + PROCESS_DEADLINE;
    while !std::fs::read_to_string(&opened).is_ok_and(|s| !s.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "the browser was never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(std::fs::read_to_string(&opened).unwrap(), url, "the browser got the URL printed");

    // No browser at all: the URL is still printed, and the login still works.
    let h = Harness::new();
    let empty = h.dir.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = h.cli(&["login"]);
    cmd.env("PATH", &empty);
    let run = h.start_login(cmd);
    run.browse(&h);
    let o = run.finish();
    o.assert_success();
    assert!(o.stderr.contains("could not start a browser"), "{o:#?}");
}

#[test]
fn the_browser_gets_the_whole_authorize_url_from_the_os_never_a_shell() {
    // A stand-in for the platform's opener (xdg-open here; ShellExecuteW on Windows, `open` on macOS)
    // records the arguments it is given: the authorize URL, `&`s and all, arrives as one argument.
    let h = Harness::new();
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("opened");
    let script = bin.path().join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > '{}.tmp'\nmv '{0}.tmp' '{0}'\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = h.cli(&["login"]);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", bin.path().display()));
    let run = h.start_login(cmd);
    let mut opened = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&record) {
            opened = Some(text);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let opened = opened.expect("the opener was started");
    assert!(run.authorize_url.contains('&'));
    assert_eq!(opened, format!("1\n{}\n", run.authorize_url), "one argument, the whole URL");
    run.browse(&h);
    run.finish().assert_success();
}
