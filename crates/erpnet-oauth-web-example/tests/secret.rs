//! The client secret never comes from the command line (other users of the machine can read it): the
//! built binary refuses `--client-secret`, and reads the secret from `ERPNET_CLIENT_SECRET` or
//! `--client-secret-file`. Each source is proven by a login through the binary against its embedded mock
//! ERP.net (confidential demo application): the right secret signs in, a wrong one gets `invalid_client`.
//!
//! The other secrets of a deployment on several instances: `REDIS_URL` (which may hold Redis's password)
//! is read from the environment only and never shown; the token encryption key comes from a file
//! (`TOKEN_ENCRYPTION_KEY_FILE`), whose content no message shows. With both, against a real
//! redis-server with a password, the binary keeps the session and the encrypted tokens in Redis.

mod common;

use common::{cookie_pair, location, mock_login, set_cookie};
use erpnet_oauth_mock::DEMO_CLIENT_SECRET;
use erpnet_oauth_redis::test_util::RedisServer;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_erpnet-oauth-web-example");

/// The binary with none of the settings' environment variables, listening on an OS-chosen port.
fn web_example() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "ERPNET_INSTANCE",
        "ERPNET_CLIENT_ID",
        "ERPNET_CLIENT_SECRET",
        "ERPNET_REDIRECT_URI",
        "ERPNET_LISTEN",
        "REDIS_URL",
        "TOKEN_ENCRYPTION_KEY_FILE",
    ] {
        command.env_remove(var);
    }
    command.args(["--listen", "127.0.0.1:0"]);
    command
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for the URL it prints ("Open http://ADDR/ in your browser").
async fn serve(mut command: Command) -> Server {
    tokio::task::spawn_blocking(move || {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let mut server = Server { child, url: String::new() };
        server.url = line
            .strip_prefix("Open ")
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("the server did not print its URL: {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        server
    })
    .await
    .unwrap()
}

/// Signs in as the demo user through the server: returns the callback's response.
async fn log_in(server: &Server) -> reqwest::Response {
    let agent = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = agent.get(format!("{}/login", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = cookie_pair(&set_cookie(&r));
    let authorize = location(&r);
    let mock = authorize.split("/id/connect/authorize").next().unwrap().to_owned();
    let callback = mock_login(&agent, &mock, &authorize).await;
    agent.get(callback).header("cookie", cookie).send().await.unwrap()
}

async fn assert_signs_in(server: &Server) {
    let r = log_in(server).await;
    assert_eq!(r.status(), 303, "signed in with the right secret");
    assert_eq!(location(&r), "/customers");
}

async fn assert_invalid_client(server: &Server) {
    let r = log_in(server).await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("The login failed") && html.contains("invalid_client"), "{html}");
}

fn secret_file(name: &str, content: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Runs the binary to its (early) exit; fails if it is still running after 30 s (it started a server).
fn run(mut command: Command) -> Output {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the binary did not exit within 30 s: it started a server instead of refusing to")
        }
    }
}

#[test]
fn the_client_secret_flag_is_refused_without_echoing_the_secret() {
    for args in [
        &["--client-secret", "hunter2-secret"][..],
        &["--client-secret=hunter2-secret"],
        &["--client-secret", "-hunter2-secret"],
        &[
            "--instance",
            "https://demodb.my.erp.net",
            "--client-id",
            "app",
            "--client-secret",
            "hunter2-secret",
        ],
        &["--client-secret"],
    ] {
        let mut command = web_example();
        command.args(args);
        let out = run(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--client-secret is not accepted"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("ERPNET_CLIENT_SECRET") && stderr.contains("--client-secret-file"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "the secret is not echoed: {stderr}");
        assert!(out.stdout.is_empty(), "no server was started");
    }
}

#[test]
fn the_help_offers_a_file_and_the_environment_not_a_flag() {
    let mut command = web_example();
    command.arg("--help");
    let out = run(command);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--client-secret-file <PATH>"), "{help}");
    assert!(help.contains("ERPNET_CLIENT_SECRET"), "{help}");
    assert!(!help.contains("--client-secret "), "{help}");
    assert!(!help.contains("--client-secret <"), "{help}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_secret_is_read_from_the_environment() {
    let mut command = web_example();
    command.env("ERPNET_CLIENT_SECRET", DEMO_CLIENT_SECRET);
    assert_signs_in(&serve(command).await).await;

    let mut command = web_example();
    command.env("ERPNET_CLIENT_SECRET", "not-the-secret");
    assert_invalid_client(&serve(command).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_secret_is_read_from_a_file_before_the_environment() {
    let right = secret_file("right", &format!("{DEMO_CLIENT_SECRET}\n"));
    let wrong = secret_file("wrong", "not-the-secret\n");

    let mut command = web_example();
    command.arg("--client-secret-file").arg(&right).env("ERPNET_CLIENT_SECRET", "not-the-secret");
    assert_signs_in(&serve(command).await).await;

    let mut command = web_example();
    command.arg("--client-secret-file").arg(&wrong).env("ERPNET_CLIENT_SECRET", DEMO_CLIENT_SECRET);
    assert_invalid_client(&serve(command).await).await;
}

#[test]
fn an_empty_or_missing_secret_file_is_an_error() {
    let empty = secret_file("empty", "\n");
    let missing = empty.with_file_name("missing");
    for (path, message) in [(&empty, "is empty"), (&missing, "cannot read the client secret file")] {
        let mut command = web_example();
        command.arg("--client-secret-file").arg(path);
        let out = run(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
        assert!(out.stdout.is_empty(), "no server was started");
    }
}

#[test]
fn the_redis_url_and_the_encryption_key_are_checked_at_start_and_never_shown() {
    let key_like = secret_file("not-a-key", "hunter2-key-material\n");
    let good_key = secret_file("key", &format!("{}\n", "0f".repeat(32)));
    /// The environment, the key file given with the flag, and what the message says.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a PathBuf>, &'a str);
    let cases: [Case<'_>; 4] = [
        (&[], Some(&good_key), "needs REDIS_URL"),
        (&[("REDIS_URL", "redis://127.0.0.1:9/")], Some(&key_like), "must hold 64 hex digits"),
        (&[("REDIS_URL", "http://:hunter2-redis@127.0.0.1:9/")], None, "REDIS_URL: invalid Redis URL"),
        (
            &[("REDIS_URL", "redis://127.0.0.1:9/"), ("TOKEN_ENCRYPTION_KEY_FILE", "/nonexistent/key")],
            None,
            "cannot read the token encryption key file",
        ),
    ];
    for (env, key_file, message) in cases {
        let mut command = web_example();
        command.envs(env.iter().copied());
        if let Some(path) = key_file {
            command.arg("--token-encryption-key-file").arg(path);
        }
        let out = run(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{message}: {stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert!(!stderr.contains("hunter2"), "no secret shown: {stderr}");
        assert!(out.stdout.is_empty(), "no server was started");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_url_the_session_and_the_encrypted_tokens_are_kept_in_redis() {
    const PASSWORD: &str = "hunter2-redis-password";
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.unwrap();
    assert_eq!(redis.command(&["CONFIG", "SET", "requirepass", PASSWORD]), "+OK");
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", redis.port());
    let key = secret_file("token-key", &format!("{}\n", "a5".repeat(32)));
    let mut command = web_example();
    command.env("REDIS_URL", &url).env("TOKEN_ENCRYPTION_KEY_FILE", &key);
    let server = serve(command).await;
    assert_signs_in(&server).await;

    let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let sessions: Vec<String> = redis::cmd("KEYS").arg("erpnet-example:session:*").query(&mut c).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let tokens: Vec<String> = redis::cmd("KEYS").arg("erpnet-example:tokens:*").query(&mut c).unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let stored: Vec<u8> = redis::cmd("HGET").arg(&tokens[0]).arg("tokens").query(&mut c).unwrap();
    assert_eq!(stored.first(), Some(&1), "the encrypted form's version byte");
    let text = String::from_utf8_lossy(&stored);
    assert!(!text.contains("refresh_token") && !text.contains("access_token"), "encrypted at rest");
}
