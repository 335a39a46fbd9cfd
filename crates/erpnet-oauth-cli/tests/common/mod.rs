//! Helpers for the integration tests of the `erpnet-oauth` binary: a mock ERP.net (or, for the
//! interoperability tests, independent OpenID Connect providers serving ERP.net's paths: [`external_op`])
//! on an OS-chosen
//! loopback port whose trusted applications allow the test's own loopback redirect URI, a store
//! directory per test, the built binary run as a child process, and a "browser" that fills in the
//! server's login form for `login --no-browser`.
//!
//! Every run is checked for what must never happen: a panic message, or a token or secret on a stream
//! (the tokens are read from the store after every run, so every token the CLI ever held is looked for).
#![allow(dead_code)]

pub mod external_op;

use external_op::{ExternalOp, OpOptions, Peer};

use erpnet_oauth_mock::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_PUBLIC_CLIENT_ID, DEMO_USER, LOGIN_PATH,
    LOGIN_REQUEST_HEADER, MockConfig, MockErpNet, TrustedApp,
};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_erpnet-oauth");
/// The confidential app's client id (contains a '/').
pub const CLIENT_ID: &str = DEMO_CLIENT_ID;
/// The confidential app's plain secret.
pub const SECRET: &str = DEMO_CLIENT_SECRET;
/// The public app's client id.
pub const PUBLIC_CLIENT_ID: &str = DEMO_PUBLIC_CLIENT_ID;
/// The prefix of the one error line every failure prints.
pub const ERR: &str = "erpnet-oauth: ";
/// The prefix of a warning line (the command goes on).
pub const WARN: &str = "erpnet-oauth: warning: ";
/// A bound on any one child process: a hang is a failure, not a stuck test run.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// The environment variables the CLI reads: removed from every child so the host's settings never leak in.
const CLI_ENV: &[&str] = &[
    "ERPNET_NO_DISCOVERY",
    "ERPNET_INSTANCE",
    "ERPNET_CLIENT_ID",
    "ERPNET_CLIENT_SECRET",
    "ERPNET_REDIRECT_URI",
    "ERPNET_SCOPE",
    "ERPNET_OAUTH_STORE",
    "ERPNET_OAUTH_STORE_KEY_FILE",
    "ERPNET_PROFILE",
];

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What a finished process left.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The lines of stderr that report a failure: `erpnet-oauth: ...`, warnings aside.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with(ERR) && !l.starts_with(WARN)).collect()
    }

    /// The warning lines on stderr: `erpnet-oauth: warning: ...`.
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with(WARN)).collect()
    }

    /// Exit 0, nothing about a failure on stderr.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        assert!(
            !self.stderr.lines().any(|l| l.contains(ERR) && !l.starts_with(WARN)),
            "a success printed an error line: {self:#?}"
        );
        self
    }

    /// The exit code is `code`, and exactly one line on stderr starts with `erpnet-oauth: `: the last one,
    /// containing every one of `needles`.
    pub fn assert_failure(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit {code}: {self:#?}");
        let errors = self.error_lines();
        assert_eq!(errors.len(), 1, "expected exactly one error line: {self:#?}");
        assert_eq!(
            self.stderr.lines().last(),
            errors.first().copied(),
            "the error line comes last: {self:#?}"
        );
        let line = errors.first().copied().unwrap_or_default();
        for needle in needles {
            assert!(line.contains(needle), "the error line lacks {needle:?}: {line:?}");
        }
        self
    }

    /// [`Self::assert_failure`], and stderr holds nothing but that line (commands other than `login`).
    pub fn assert_only_error(&self, code: i32, needles: &[&str]) -> &Self {
        self.assert_failure(code, needles);
        assert_eq!(self.stderr_lines().len(), 1, "stderr holds more than the error line: {self:#?}");
        self
    }

    /// The error line (the last line of stderr).
    pub fn error_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` within [`PROCESS_DEADLINE`] (killing it and failing the test past it).
fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not finish within {PROCESS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to its end with `stdin` as its standard input; checks that nothing panicked.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Outcome {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let code = wait(&mut child);
    let outcome = Outcome { code, stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    assert_no_panic(&outcome);
    outcome
}

/// Runs `cmd` to its end, stdin empty.
pub fn run(cmd: Command) -> Outcome {
    run_with_stdin(cmd, None)
}

pub fn assert_no_panic(o: &Outcome) {
    for text in [&o.stdout, &o.stderr] {
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "the process panicked: {o:#?}"
        );
    }
}

/// The binary with the CLI's environment variables removed, the platform config directory pointed into
/// `home` (so the default store is never the real one) and the OS keyring kept out
/// (`ERPNET_OAUTH_NO_KEYRING=1`: a saved client secret goes to the store's file, never to the keyring of the
/// user running the tests).
pub fn bare(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in CLI_ENV {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home).env("XDG_CONFIG_HOME", home.join("config")).env_remove("RUST_BACKTRACE");
    cmd.env("ERPNET_OAUTH_NO_KEYRING", "1");
    cmd
}

/// The values of the tokens in a store file (access, refresh and ID token), if any.
pub fn tokens_in(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    // A corrupt file (tests of the recovery write one) holds no tokens.
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Vec::new() };
    ["access_token", "refresh_token", "id_token"]
        .iter()
        .filter_map(|k| json["tokens"][k].as_str().map(str::to_owned))
        .collect()
}

/// The identity server a [`Harness`] runs against.
pub enum Server {
    /// The project's mock ERP.net (in this process).
    Mock(MockErpNet),
    /// An independent provider serving ERP.net's paths (a child process).
    External(ExternalOp),
}

/// One test's world: an identity server, a redirect URI on a free port that its apps allow, a temporary
/// directory holding the store.
pub struct Harness {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub redirect_uri: String,
    /// Every secret value seen so far: the client secret, codes, every token ever stored.
    secrets: Mutex<Vec<String>>,
}

impl Harness {
    /// The default mock (system clock, so that the CLI's clock and the mock's agree) with the seed's
    /// confidential app and the public app, both allowing this test's redirect URI.
    pub fn new() -> Harness {
        Self::with(|_| {})
    }

    /// [`Self::new`] with the configuration edited by `edit` first.
    pub fn with(edit: impl FnOnce(&mut MockConfig)) -> Harness {
        let port = free_port();
        let redirect_uri = format!("http://127.0.0.1:{port}/signin-callback");
        let mut config = MockConfig {
            apps: vec![
                TrustedApp { impersonate_login_urls: vec![redirect_uri.clone()], ..TrustedApp::demo() },
                TrustedApp {
                    impersonate_login_urls: vec![redirect_uri.clone()],
                    ..TrustedApp::demo_public()
                },
            ],
            worker_threads: Some(2),
            ..MockConfig::default()
        };
        edit(&mut config);
        let mock = MockErpNet::start(config).unwrap();
        Self::around(Server::Mock(mock), port, redirect_uri)
    }

    /// An independent provider (see [`external_op`]) with the same two apps, allowing this test's
    /// redirect URI.
    pub fn external(peer: Peer, options: OpOptions) -> Harness {
        let port = free_port();
        let redirect_uri = format!("http://127.0.0.1:{port}/signin-callback");
        let op = ExternalOp::start(peer, &[redirect_uri.as_str()], options);
        Self::around(Server::External(op), port, redirect_uri)
    }

    fn around(server: Server, port: u16, redirect_uri: String) -> Harness {
        Harness {
            server,
            dir: tempfile::tempdir().unwrap(),
            port,
            redirect_uri,
            secrets: Mutex::new(vec![SECRET.to_owned()]),
        }
    }

    /// The mock ERP.net (the harness of every test but the interoperability ones).
    pub fn mock(&self) -> &MockErpNet {
        match &self.server {
            Server::Mock(mock) => mock,
            Server::External(op) => panic!("this test runs against {}, not the mock", op.peer().name()),
        }
    }

    /// The independent provider (the interoperability tests' harness).
    pub fn op(&self) -> &ExternalOp {
        match &self.server {
            Server::External(op) => op,
            Server::Mock(_) => panic!("this test runs against the mock, not an independent provider"),
        }
    }

    pub fn instance(&self) -> String {
        match &self.server {
            Server::Mock(mock) => mock.base_url(),
            Server::External(op) => op.base_url().to_owned(),
        }
    }

    /// The `sub` of the user the browser logs in as.
    pub fn subject(&self) -> &'static str {
        match &self.server {
            Server::Mock(_) => DEMO_USER,
            Server::External(op) => op.peer().subject(),
        }
    }

    /// The store directory (created by `login`).
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn token_file(&self) -> PathBuf {
        self.store().join("default.tokens.json")
    }

    pub fn profile_file(&self) -> PathBuf {
        self.store().join("default.profile.json")
    }

    /// The client secret `login` saved for the default profile (the keyring is kept out: [`bare`]).
    pub fn secret_file(&self) -> PathBuf {
        self.store().join("default.secret")
    }

    /// The stored tokens: access, refresh, ID token (empty when none).
    pub fn stored(&self) -> Vec<String> {
        tokens_in(&self.token_file())
    }

    /// The stored access token.
    pub fn access_token(&self) -> Option<String> {
        self.stored_field("access_token")
    }

    /// The stored refresh token.
    pub fn refresh_token(&self) -> Option<String> {
        self.stored_field("refresh_token")
    }

    fn stored_field(&self, name: &str) -> Option<String> {
        let bytes = std::fs::read(self.token_file()).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        json["tokens"][name].as_str().map(str::to_owned)
    }

    /// Rewrites the stored access token's expiry (Unix seconds): how a test makes the CLI's own clock
    /// find the token expired, since the CLI runs on the system clock.
    /// Makes the stored access token one of ERP.net's one-hour tokens that expires at `unix`.
    pub fn set_expires_at(&self, unix: u64) {
        let path = self.token_file();
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["tokens"]["expires_at"] = unix.into();
        json["tokens"]["issued_at"] = unix.saturating_sub(3600).into();
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    }

    /// Presents `refresh_token` at the mock's token endpoint as the confidential app, the way the CLI would:
    /// `(status, body)`. A 200 means the refresh token was live (and is now spent: it rotated); a 400
    /// `invalid_grant`, that it was dead.
    pub fn refresh_at_the_mock(&self, refresh_token: &str) -> (u16, serde_json::Value) {
        let mut answer = browser()
            .post(&format!("{}/id/connect/token", self.instance()))
            .send_form([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
            ])
            .unwrap();
        let body = answer.body_mut().read_to_string().unwrap();
        for t in ["access_token", "refresh_token", "id_token"] {
            if let Some(v) = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|j| j[t].as_str().map(str::to_owned))
            {
                self.secret(&v);
            }
        }
        (answer.status().as_u16(), serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    /// Adds a value that must never appear on a stream.
    pub fn secret(&self, value: &str) {
        self.secrets.lock().unwrap().push(value.to_owned());
    }

    fn remember_stored(&self) {
        for t in self.stored() {
            self.secret(&t);
        }
    }

    /// The binary with a clean environment (see [`bare`]).
    pub fn bare(&self) -> Command {
        bare(self.dir.path())
    }

    /// The binary configured for the confidential app: `--store`, `--instance`, `--client-id`,
    /// `--redirect-uri` before `args`, the secret in `ERPNET_CLIENT_SECRET`.
    pub fn cli(&self, args: &[&str]) -> Command {
        self.cli_without(&[], args)
    }

    /// [`Self::cli`] without the flags named in `skip` (e.g. `--instance`), so that a test can give its own.
    pub fn cli_without(&self, skip: &[&str], args: &[&str]) -> Command {
        let mut cmd = self.bare();
        let store = self.store().to_str().unwrap().to_owned();
        for (flag, value) in [
            ("--store", store.as_str()),
            ("--instance", &self.instance()),
            ("--client-id", CLIENT_ID),
            ("--redirect-uri", &self.redirect_uri),
        ] {
            if !skip.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(args).env("ERPNET_CLIENT_SECRET", SECRET);
        cmd
    }

    /// The binary configured for the public app (no secret).
    pub fn public_cli(&self, args: &[&str]) -> Command {
        let mut cmd = self.cli_without(&["--client-id"], &["--client-id", PUBLIC_CLIENT_ID]);
        cmd.args(args).env_remove("ERPNET_CLIENT_SECRET");
        cmd
    }

    /// The binary with only `--store` (a later command uses what `login` saved).
    pub fn store_only(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--store").arg(self.store()).args(args).env("ERPNET_CLIENT_SECRET", SECRET);
        cmd
    }

    /// Runs `cmd`; checks that no secret seen so far (or stored by this run) is on stderr or stdout.
    pub fn run(&self, cmd: Command) -> Outcome {
        let o = run(cmd);
        self.check_streams(&o, true);
        o
    }

    /// [`Self::run`] with `stdin`.
    pub fn run_with_stdin(&self, cmd: Command, stdin: &[u8]) -> Outcome {
        let o = run_with_stdin(cmd, Some(stdin));
        self.check_streams(&o, true);
        o
    }

    /// Runs `cmd` whose stdout may carry the access token (`token`): checks stderr only.
    pub fn run_token(&self, cmd: Command) -> Outcome {
        let o = run(cmd);
        self.check_streams(&o, false);
        o
    }

    /// No secret on stderr (and on stdout when `stdout` is true).
    pub fn check_streams(&self, o: &Outcome, stdout: bool) {
        self.remember_stored();
        for s in self.secrets.lock().unwrap().iter() {
            assert!(!o.stderr.contains(s.as_str()), "a secret or token is on stderr: {o:#?}");
            if stdout {
                assert!(!o.stdout.contains(s.as_str()), "a secret or token is on stdout: {o:#?}");
            }
        }
        assert!(!contains_jwt(&o.stderr), "something like a JWT is on stderr: {o:#?}");
        if stdout {
            assert!(!contains_jwt(&o.stdout), "something like a JWT is on stdout: {o:#?}");
        }
    }

    /// Runs `n` processes of `store_only(args)` at once; returns their outcomes once all have ended,
    /// each checked for leaks (stdout too unless `args` is `token`, whose stdout is the token).
    pub fn run_at_once(&self, n: usize, args: &[&str]) -> Vec<Outcome> {
        let children: Vec<_> = (0..n)
            .map(|_| {
                let cmd = self.store_only(args);
                std::thread::spawn(move || run(cmd))
            })
            .collect();
        let outcomes: Vec<Outcome> = children.into_iter().map(|c| c.join().unwrap()).collect();
        for o in &outcomes {
            self.check_streams(o, args != ["token"]);
        }
        outcomes
    }

    /// A login of the confidential app with a wrong client secret: the browser part succeeds, the code
    /// exchange is refused. Asserts exit 4 with a line naming `invalid_client` and where the secret comes
    /// from, and that nothing was stored.
    pub fn login_with_a_wrong_secret(&self) -> Outcome {
        let wrong = "wrong-secret-Zq8Xw2";
        self.secret(wrong);
        let mut cmd = self.cli(&["login", "--no-browser"]);
        cmd.env("ERPNET_CLIENT_SECRET", wrong);
        let run = self.start_login(cmd);
        let page = run.browse(self);
        // The browser's page tells the real outcome, not "logged in".
        assert!(page.contains("The login failed") && page.contains("invalid_client"), "{page}");
        assert!(!page.contains("Logged in"), "{page}");
        let o = run.finish();
        self.check_streams(&o, true);
        o.assert_failure(4, &["invalid_client", "ERPNET_CLIENT_SECRET"]);
        assert!(self.stored().is_empty(), "nothing is stored");
        o
    }

    /// Starts `login --no-browser` with `cmd` (which must already hold the login's flags) and waits
    /// for the authorize URL on stderr.
    pub fn start_login(&self, cmd: Command) -> LoginRun {
        LoginRun::start(cmd)
    }

    /// A complete login of the confidential app: the CLI prints the URL, the test plays the browser, the
    /// CLI stores the tokens. Asserts exit 0 and `Logged in as SUB` (the user's subject at the server).
    pub fn login(&self) -> Outcome {
        self.login_with(self.cli(&["login", "--no-browser"]))
    }

    /// A complete login with `cmd` (`... login --no-browser`), asserting success.
    pub fn login_with(&self, cmd: Command) -> Outcome {
        let run = self.start_login(cmd);
        let page = run.browse(self);
        assert!(
            page.contains("Logged in"),
            "the CLI's listener answers the browser once the tokens are stored: {page}"
        );
        let o = run.finish();
        self.check_streams(&o, true);
        o.assert_success();
        let expected = format!("Logged in as {}", self.subject());
        assert_eq!(o.stderr_lines().last().copied(), Some(expected.as_str()), "{o:#?}");
        assert!(o.stdout.is_empty(), "login prints nothing on stdout: {o:#?}");
        assert!(self.token_file().exists() && self.profile_file().exists(), "login stores the tokens");
        o
    }
}

/// A running `login --no-browser`.
pub struct LoginRun {
    pub child: Child,
    /// The authorize URL the CLI printed alone on a line of stderr.
    pub authorize_url: String,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

/// Sends each line of `pipe`, wrapped, on `tx` from a thread of its own, until the pipe ends or the
/// receiver is gone.
pub fn pump_lines<T: Send + 'static>(
    pipe: impl std::io::Read + Send + 'static,
    tx: std::sync::mpsc::Sender<T>,
    wrap: fn(String) -> T,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

impl LoginRun {
    /// Spawns `cmd` and reads stderr line by line until the authorize URL appears.
    pub fn start(mut cmd: Command) -> LoginRun {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        pump_lines(stderr, tx, |line| line);
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let mut seen = Vec::new();
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let url = line.starts_with("http://").then(|| line.clone());
                    seen.push(line);
                    if let Some(authorize_url) = url {
                        return LoginRun { child, authorize_url, lines, seen, stdout };
                    }
                }
                Err(RecvTimeoutError::Disconnected) | Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("no authorize URL on stderr; stderr so far: {seen:#?}");
                }
            }
        }
    }

    /// Plays the browser: GET the authorize URL, POST the login form, follow the redirect to the CLI's
    /// listener. Returns the listener's page.
    pub fn browse(&self, h: &Harness) -> String {
        deliver(&self.sign_in(h))
    }

    /// Plays the browser up to the redirect to the CLI's listener, without following it: returns its
    /// `Location` (the callback URL with the code, which is remembered as a secret).
    pub fn sign_in(&self, h: &Harness) -> String {
        match &h.server {
            Server::Mock(_) => browser_login(h, &self.authorize_url),
            Server::External(op) => {
                let location = op.browser_login(&self.authorize_url);
                if let Some((_, code)) =
                    url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code")
                {
                    h.secret(&code);
                }
                location
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) to the process.
    pub fn interrupt(&self) {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process and collects its streams.
    pub fn finish(mut self) -> Outcome {
        let code = wait(&mut self.child);
        // The reader thread ends at EOF, which comes with the exit.
        while let Ok(line) = self.lines.recv_timeout(PROCESS_DEADLINE) {
            self.seen.push(line);
        }
        let mut stderr = self.seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        let o = Outcome { code, stdout: self.stdout.join().unwrap(), stderr };
        assert_no_panic(&o);
        o
    }
}

/// Follows the redirect to the CLI's listener as the browser would; returns the listener's HTML page.
pub fn deliver(location: &str) -> String {
    let mut answer = browser().get(location).call().unwrap();
    assert_eq!(answer.status(), 200, "the CLI's listener answers the callback");
    let ct = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("text/html"), "an HTML page, not {ct}");
    answer.body_mut().read_to_string().unwrap()
}

/// The current Unix time.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A plain agent that plays the browser: follows no redirect, reads error statuses.
pub fn browser() -> ureq::Agent {
    ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into()
}

/// Plays the browser on the mock's login form and returns the `Location` of the redirect (the
/// callback URL, with the code: remembered as a secret).
pub fn browser_login(h: &Harness, authorize_url: &str) -> String {
    let location = mock_sign_in(&h.instance(), authorize_url);
    let url = url::Url::parse(&location).unwrap();
    if let Some((_, code)) = url.query_pairs().find(|(k, _)| k == "code") {
        h.secret(&code);
    }
    location
}

/// Plays the browser on the login form of the mock at `instance` as the demo user: GET `authorize_url`,
/// POST the form. Returns the `Location` of the redirect to the redirect URI (not followed).
pub fn mock_sign_in(instance: &str, authorize_url: &str) -> String {
    let agent = browser();
    let mut page = agent.get(authorize_url).call().unwrap();
    assert_eq!(page.status(), 200, "the authorize endpoint shows the login form");
    let request_id =
        page.headers().get(LOGIN_REQUEST_HEADER).and_then(|v| v.to_str().ok()).unwrap().to_owned();
    let html = page.body_mut().read_to_string().unwrap();
    assert!(html.contains(&format!("action=\"{LOGIN_PATH}\"")), "the page holds the login form");
    let answer = agent
        .post(&format!("{instance}{LOGIN_PATH}"))
        .send_form([
            ("request_id", request_id.as_str()),
            ("username", DEMO_USER),
            ("password", DEMO_PASSWORD),
            ("button", "login"),
        ])
        .unwrap();
    assert_eq!(answer.status(), 302, "a successful login redirects to the redirect URI");
    answer.headers().get("location").and_then(|v| v.to_str().ok()).unwrap().to_owned()
}

fn is_b64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `text` holds something shaped like a JWT: `eyJ` (a base64url JSON header), 10 or more
/// base64url characters, a dot, 10 or more base64url characters.
pub fn contains_jwt(text: &str) -> bool {
    text.match_indices("eyJ").any(|(i, _)| {
        let rest = &text[i..];
        let header = rest.chars().take_while(|c| is_b64url(*c)).count();
        header >= 13
            && rest[header..].starts_with('.')
            && rest[header + 1..].chars().take_while(|c| is_b64url(*c)).count() >= 10
    })
}

/// The runs of `min` or more base64url characters in `text`.
pub fn long_b64url_runs(text: &str, min: usize) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_b64url(c) {
            current.push(c);
        } else {
            if current.chars().count() >= min {
                runs.push(current.clone());
            }
            current.clear();
        }
    }
    runs
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}
