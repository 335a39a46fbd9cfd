//! Independent OpenID Connect providers serving ERP.net's paths, for the interoperability tests: the CLI
//! must follow the standards, not the mock's habits.
//!
//! - [`Peer::Node`]: node-oidc-provider (<https://github.com/panva/node-oidc-provider>, OpenID Certified),
//!   `tests/node-oidc-provider/server.mjs`, run with the machine's Node.js (20 or later); its npm packages
//!   are pinned by `package-lock.json` and installed with `npm ci`.
//! - [`Peer::Dot`]: django-oauth-toolkit (<https://github.com/jazzband/django-oauth-toolkit>, on
//!   oauthlib), `tests/django-oauth-toolkit/server.py`, run with CPython 3.10 or later in a virtual
//!   environment made from the pinned `requirements.txt`.
//!
//! Both speak the same command line, endpoints, test hooks and counters (their headers say what they
//! serve). Each is installed the first time a test needs it (or by `scripts/install-interop.sh`, which
//! `cargo xtask ci` runs first), so a fresh clone needs nothing but Node.js with npm, Python, and the npm
//! registry and PyPI.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// An independent provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// node-oidc-provider 8 (Node.js).
    Node,
    /// django-oauth-toolkit 3 (Python).
    Dot,
}

/// The user the browser signs in as.
pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "admin-password";

/// How long the server may take to start.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How the provider is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpOptions {
    /// The provider's own endpoint paths (node-oidc-provider: `/id/auth`, `/id/token`, ...;
    /// django-oauth-toolkit: `/id/o/authorize/`, `/id/o/token/`, ...) instead of ERP.net's
    /// (`/id/connect/authorize`, ...): only discovery tells a client where they are.
    pub provider_routes: bool,
    /// node-oidc-provider's default offline-access policy: without `prompt=consent`, no refresh token
    /// (django-oauth-toolkit has no such policy: it refuses the option).
    pub strict_offline_access: bool,
    /// The refresh token stays the same on refresh (ERP.net rotates it; RFC 6749 §6 lets a provider
    /// choose).
    pub no_rotation: bool,
}

/// A running provider; killed when dropped.
pub struct ExternalOp {
    peer: Peer,
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Node => "node-oidc-provider",
            Peer::Dot => "django-oauth-toolkit",
        }
    }

    /// The subject of the user the browser signs in as: a GUID, as ERP.net's users have (the mock's
    /// is `admin`).
    pub fn subject(self) -> &'static str {
        match self {
            Peer::Node => "5f0c2f4e-8f1a-4d36-9a57-2c1e7b3d9a10",
            Peer::Dot => "0b7e8c1d-3f2a-4c5b-9d6e-7a8b9c0d1e2f",
        }
    }

    /// The folder of its server, manifest and lock file.
    pub fn dir(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(self.name())
    }

    /// The command that runs its server.
    fn command(self) -> Command {
        let mut cmd = match self {
            Peer::Node => {
                let mut cmd = Command::new("node");
                cmd.arg("server.mjs");
                cmd
            }
            Peer::Dot => {
                let mut cmd = Command::new(self.dir().join(".venv").join("bin").join("python"));
                cmd.arg("server.py");
                cmd
            }
        };
        cmd.current_dir(self.dir());
        cmd
    }

    /// Installs its packages once per process, under a lock so that test processes running at once
    /// install once.
    fn ensure_installed(self) {
        static NODE: OnceLock<()> = OnceLock::new();
        static DOT: OnceLock<()> = OnceLock::new();
        let once = match self {
            Peer::Node => &NODE,
            Peer::Dot => &DOT,
        };
        once.get_or_init(|| {
            // A directory as the lock (created by one process at a time); one left by a killed process
            // is taken over after a while.
            let lock = self.dir().join(".install.lock");
            let mut waited = Duration::ZERO;
            while let Err(e) = std::fs::create_dir(&lock) {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists,
                    "cannot create {}: {e}",
                    lock.display()
                );
                if waited > Duration::from_secs(300) {
                    let _ = std::fs::remove_dir(&lock);
                    waited = Duration::ZERO;
                }
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            let installed = match self {
                Peer::Node => install_node(),
                Peer::Dot => install_dot(),
            };
            let _ = std::fs::remove_dir(&lock);
            if let Err(message) = installed {
                panic!("{message}");
            }
        });
    }
}

/// Runs `cmd` in `dir`; an error naming it and its stderr when it fails.
fn run_step(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// `npm ci` unless the pinned oidc-provider is installed (Node.js 20 or later needed).
fn install_node() -> Result<(), String> {
    let dir = Peer::Node.dir();
    let out = Command::new("node").arg("--version").output();
    let version = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => return Err("the interoperability tests need Node.js 20 or later (`node` on the PATH)".into()),
    };
    let major: u32 = version.trim_start_matches('v').split('.').next().unwrap_or("0").parse().unwrap_or(0);
    if major < 20 {
        return Err(format!("the interoperability tests need Node.js 20 or later, found {version}"));
    }
    let json = |path: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let pinned = json(dir.join("package.json"))
        .and_then(|m| m["dependencies"]["oidc-provider"].as_str().map(str::to_owned))
        .ok_or("package.json pins no oidc-provider")?;
    let installed = || {
        json(dir.join("node_modules").join("oidc-provider").join("package.json"))
            .and_then(|m| m["version"].as_str().map(str::to_owned))
    };
    if installed().as_deref() == Some(pinned.as_str()) {
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir);
    run_step(npm, &format!("`npm ci` in {}", dir.display()))?;
    match installed() {
        Some(v) if v == pinned => Ok(()),
        other => Err(format!("npm ci installed oidc-provider {other:?}, not {pinned}")),
    }
}

/// A virtual environment with the pinned requirements, unless one made from the same
/// `requirements.txt` is there (`.venv/requirements.txt` is the copy it was made from).
fn install_dot() -> Result<(), String> {
    let dir = Peer::Dot.dir();
    let venv = dir.join(".venv");
    let wanted = std::fs::read(dir.join("requirements.txt")).map_err(|e| format!("requirements.txt: {e}"))?;
    let stamp = venv.join("requirements.txt");
    if std::fs::read(&stamp).ok().as_ref() == Some(&wanted) && venv.join("bin").join("python").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&venv);
    let mut make = Command::new("python3");
    make.args(["-m", "venv", ".venv"]).current_dir(&dir);
    run_step(make, "`python3 -m venv` (CPython 3.10 or later is needed)")?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args(["install", "--disable-pip-version-check", "--quiet", "-r", "requirements.txt"])
        .current_dir(&dir);
    run_step(pip, "`pip install -r requirements.txt`")?;
    std::fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))
}

impl ExternalOp {
    /// Starts `peer` with the two trusted apps allowing `redirect_uris`, on a port the OS chooses, and
    /// waits until it accepts connections.
    ///
    /// A provider that prints nothing within [`START_DEADLINE`] is killed and started once more: on a
    /// loaded 2-core machine a cold Node.js or Python start has, once in many runs, taken longer than
    /// that. A second failure fails the test, with the provider's stderr.
    pub fn start(peer: Peer, redirect_uris: &[&str], options: OpOptions) -> ExternalOp {
        peer.ensure_installed();
        match Self::try_start(peer, redirect_uris, options) {
            Ok(op) => op,
            Err(first) => {
                eprintln!("{first}; starting it once more");
                Self::try_start(peer, redirect_uris, options).unwrap_or_else(|second| panic!("{second}"))
            }
        }
    }

    fn try_start(peer: Peer, redirect_uris: &[&str], options: OpOptions) -> Result<ExternalOp, String> {
        let mut cmd = peer.command();
        for uri in redirect_uris {
            cmd.args(["--redirect-uri", uri]);
        }
        if options.provider_routes {
            cmd.args(["--routes", "provider"]);
        }
        if options.strict_offline_access {
            cmd.arg("--strict-offline-access");
        }
        if options.no_rotation {
            cmd.arg("--no-rotation");
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep reading so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(START_DEADLINE);
        let base = match first {
            Ok(Some(Ok(line))) if line.starts_with("listening http://127.0.0.1:") => {
                line["listening ".len()..].to_owned()
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not start ({other:?}); its stderr: {}",
                    peer.name(),
                    stderr.lock().unwrap()
                ));
            }
        };
        Ok(ExternalOp { peer, child, base, stderr })
    }

    /// Which provider this is.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// `http://127.0.0.1:PORT`: the instance URL (the issuer is this plus `/id`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's counters: `authorization_code` and `refresh_token` (successful grants),
    /// `invalid_grant`, `token_errors`, `grants_revoked`, `server_errors`, `api_ok`, `api_unauthorized`,
    /// `logins`.
    pub fn counters(&self) -> Counters {
        let mut resp = super::browser().get(&format!("{}/_test/counters", self.base)).call().unwrap();
        assert_eq!(resp.status(), 200);
        Counters(serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap())
    }

    /// Ends `access_token` at the server, as its expiry would, leaving the grant (and the refresh token)
    /// alive: the Domain API stand-in answers 401 to it from now on.
    pub fn expire(&self, access_token: &str) {
        let resp = super::browser().post(&format!("{}/_test/expire", self.base)).send(access_token).unwrap();
        assert_eq!(resp.status(), 204, "the server knew the access token");
    }

    /// An endpoint's URL from the discovery document (`token_endpoint`, `revocation_endpoint`, ...).
    pub fn endpoint(&self, name: &str) -> String {
        let url = format!("{}/id/.well-known/openid-configuration", self.base);
        let mut resp = super::browser().get(&url).call().unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        doc[name].as_str().unwrap_or_else(|| panic!("discovery has no {name}: {doc}")).to_owned()
    }

    /// POSTs `form` to the token endpoint as the confidential app would; returns the status and the
    /// JSON body (how a test checks what the server thinks of a refresh token).
    pub fn token_request(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut resp =
            super::browser().post(&self.endpoint("token_endpoint")).send_form(form.to_vec()).unwrap();
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
    }

    /// Uses `refresh_token` at the token endpoint with the confidential app's credentials.
    pub fn try_refresh(&self, refresh_token: &str) -> (u16, serde_json::Value) {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", super::CLIENT_ID),
            ("client_secret", super::SECRET),
        ])
    }

    /// Revokes `token` at the revocation endpoint (RFC 7009), as a logout elsewhere would.
    pub fn revoke(&self, token: &str) {
        let resp = super::browser()
            .post(&self.endpoint("revocation_endpoint"))
            .send_form([
                ("token", token),
                ("token_type_hint", "refresh_token"),
                ("client_id", super::CLIENT_ID),
                ("client_secret", super::SECRET),
            ])
            .unwrap();
        assert_eq!(resp.status(), 200, "revocation answers 200");
    }

    /// Plays the browser from `authorize_url`: follows the provider's redirects with its cookies, fills
    /// in the login form (user name, password, and the form's hidden fields, such as a CSRF token), and
    /// returns the `Location` that leaves the provider (the redirect to the client's redirect URI, with
    /// the code), without following it.
    pub fn browser_login(&self, authorize_url: &str) -> String {
        let agent = super::browser();
        let origin = url::Url::parse(&self.base).unwrap().origin();
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut url = url::Url::parse(authorize_url).unwrap();
        let mut form: Option<Vec<(String, String)>> = None;
        let mut signed_in = false;
        for _ in 0..10 {
            let cookie = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let mut resp = match form.take() {
                Some(fields) => agent
                    .post(url.as_str())
                    .header("cookie", &cookie)
                    .header("referer", url.as_str())
                    .send_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .unwrap(),
                None => agent.get(url.as_str()).header("cookie", &cookie).call().unwrap(),
            };
            for set in resp.headers().get_all("set-cookie") {
                let set = set.to_str().unwrap();
                let pair = set.split(';').next().unwrap_or_default();
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = value.trim_matches('"');
                jar.retain(|(k, _)| k != name);
                let expired = set.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
                if !value.is_empty() && !expired {
                    jar.push((name.trim().to_owned(), value.to_owned()));
                }
            }
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let location = resp.headers().get("location").unwrap().to_str().unwrap().to_owned();
                let next = url.join(&location).unwrap();
                if next.origin() != origin {
                    assert!(signed_in, "the provider redirected away before the login: {next}");
                    return next.into();
                }
                url = next;
                continue;
            }
            let html = resp.body_mut().read_to_string().unwrap();
            assert_eq!(status, 200, "{} answered {status}: {html}", self.peer.name());
            assert!(!signed_in, "the login form came back after signing in: {html}");
            let login = LoginForm::parse(&html).unwrap_or_else(|| panic!("no login form in {html}"));
            url = url.join(&login.action).unwrap();
            let mut fields = login.hidden;
            fields.push(("username".to_owned(), USERNAME.to_owned()));
            fields.push(("password".to_owned(), PASSWORD.to_owned()));
            form = Some(fields);
            signed_in = true;
        }
        panic!("no redirect to the client after 10 steps; stderr: {}", self.stderr());
    }
}

/// The first form of a page: its action and its hidden fields.
struct LoginForm {
    action: String,
    hidden: Vec<(String, String)>,
}

impl LoginForm {
    fn parse(html: &str) -> Option<LoginForm> {
        let start = html.find("<form")?;
        let end = start + html[start..].find("</form>")?;
        let form = &html[start..end];
        let tag_end = form.find('>')?;
        let action = attribute(&form[..tag_end], "action").unwrap_or_default();
        let hidden = form
            .match_indices("<input")
            .filter_map(|(i, _)| {
                let tag = &form[i..i + form[i..].find('>')?];
                (attribute(tag, "type").as_deref() == Some("hidden"))
                    .then(|| Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default())))
                    .flatten()
            })
            .collect();
        Some(LoginForm { action, hidden })
    }
}

/// The value of `name="..."` in an HTML tag, with the character references decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

impl Drop for ExternalOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's counters (see [`ExternalOp::counters`]).
#[derive(Debug, Clone)]
pub struct Counters(serde_json::Value);

impl Counters {
    /// The counter `name` (a test naming a counter the server doesn't keep fails).
    pub fn get(&self, name: &str) -> u64 {
        self.0[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {}", self.0))
    }
}
