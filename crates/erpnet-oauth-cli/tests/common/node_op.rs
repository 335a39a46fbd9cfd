//! node-oidc-provider (<https://github.com/panva/node-oidc-provider>, an OpenID Certified provider)
//! serving ERP.net's paths, for the interoperability tests: the CLI must follow the standards, not the
//! mock's habits.
//!
//! The server is `tests/node-oidc-provider/server.mjs` (its header says what it serves), run with the
//! machine's Node.js (20 or later). Its npm packages are pinned by `package-lock.json` and installed
//! with `npm ci` the first time a test needs them (or by `cargo xtask ci` before the tests), so a
//! fresh clone needs nothing but `node` and `npm` and the npm registry.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The user's subject at node-oidc-provider: a GUID, as ERP.net's users have (the mock's is `admin`).
pub const SUBJECT: &str = "5f0c2f4e-8f1a-4d36-9a57-2c1e7b3d9a10";
/// The user the browser signs in as.
pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "admin-password";

/// How long the server may take to start (the first start after `npm ci` included).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How node-oidc-provider is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeOpOptions {
    /// node-oidc-provider's own endpoint paths (`/id/auth`, `/id/token`, `/id/me`, ...) instead of
    /// ERP.net's (`/id/connect/authorize`, ...): only discovery tells a client where they are.
    pub provider_routes: bool,
    /// node-oidc-provider's default offline-access policy: without `prompt=consent`, no refresh token.
    pub strict_offline_access: bool,
    /// The refresh token stays the same on refresh (ERP.net rotates it; RFC 6749 §6 lets a provider
    /// choose).
    pub no_rotation: bool,
}

/// A running node-oidc-provider; killed when dropped.
pub struct NodeOp {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

/// The folder of `server.mjs`, `package.json` and `package-lock.json`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("node-oidc-provider")
}

/// The `oidc-provider` version `package.json` pins.
fn pinned_version() -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("package.json")).unwrap()).unwrap();
    manifest["dependencies"]["oidc-provider"].as_str().unwrap().to_owned()
}

/// The installed `oidc-provider` version, if any.
fn installed_version() -> Option<String> {
    let path = dir().join("node_modules").join("oidc-provider").join("package.json");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    manifest["version"].as_str().map(str::to_owned)
}

/// Checks Node.js and installs the pinned packages once per process (`npm ci`, under a file lock so
/// that test processes running at once install once).
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        let version = match node {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => panic!("the interoperability tests need Node.js 20 or later (`node` on the PATH)"),
        };
        let major: u32 =
            version.trim_start_matches('v').split('.').next().unwrap_or("0").parse().unwrap_or(0);
        assert!(major >= 20, "the interoperability tests need Node.js 20 or later, found {version}");
        // A directory as the lock (created by one process at a time); one left by a killed process is
        // taken over after a while.
        let lock = dir().join(".npm-install.lock");
        let mut waited = Duration::ZERO;
        while let Err(e) = std::fs::create_dir(&lock) {
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "cannot create {}: {e}", lock.display());
            if waited > Duration::from_secs(300) {
                let _ = std::fs::remove_dir(&lock);
                waited = Duration::ZERO;
            }
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
        let installed = install_if_needed();
        let _ = std::fs::remove_dir(&lock);
        if let Err(message) = installed {
            panic!("{message}");
        }
    });
}

/// `npm ci` unless the pinned version is installed.
fn install_if_needed() -> Result<(), String> {
    if installed_version().as_deref() == Some(pinned_version().as_str()) {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir())
        .output()
        .map_err(|e| format!("npm (with Node.js) is needed to install node-oidc-provider: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`npm ci` in {} failed: {}",
            dir().display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    match installed_version() {
        Some(v) if v == pinned_version() => Ok(()),
        other => Err(format!("npm ci installed oidc-provider {other:?}, not {}", pinned_version())),
    }
}

impl NodeOp {
    /// Starts the server with the two trusted apps allowing `redirect_uris`, on a port the OS chooses,
    /// and waits until it accepts connections.
    pub fn start(redirect_uris: &[&str], options: NodeOpOptions) -> NodeOp {
        ensure_installed();
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs").current_dir(dir());
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
                panic!(
                    "node-oidc-provider did not start ({other:?}); its stderr: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        NodeOp { child, base, stderr }
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
    /// in the login form, and returns the `Location` that leaves the provider (the redirect to the
    /// client's redirect URI, with the code), without following it.
    pub fn browser_login(&self, authorize_url: &str) -> String {
        let agent = super::browser();
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut url = url::Url::parse(authorize_url).unwrap();
        let mut form: Option<Vec<(&str, &str)>> = None;
        let mut signed_in = false;
        for _ in 0..10 {
            let cookie = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let mut resp = match form.take() {
                Some(fields) => agent.post(url.as_str()).header("cookie", &cookie).send_form(fields).unwrap(),
                None => agent.get(url.as_str()).header("cookie", &cookie).call().unwrap(),
            };
            for set in resp.headers().get_all("set-cookie") {
                let set = set.to_str().unwrap();
                let pair = set.split(';').next().unwrap_or_default();
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                jar.retain(|(k, _)| k != name);
                if !value.is_empty() {
                    jar.push((name.to_owned(), value.to_owned()));
                }
            }
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let location = resp.headers().get("location").unwrap().to_str().unwrap().to_owned();
                let next = url.join(&location).unwrap();
                if next.origin() != url::Url::parse(&self.base).unwrap().origin() {
                    assert!(signed_in, "the provider redirected away before the login: {next}");
                    return next.into();
                }
                url = next;
                continue;
            }
            let html = resp.body_mut().read_to_string().unwrap();
            assert_eq!(status, 200, "the provider answered {status}: {html}");
            assert!(!signed_in, "the login form came back after signing in: {html}");
            let start = html.find("action=\"").expect("the page holds the login form") + "action=\"".len();
            let action = &html[start..start + html[start..].find('"').unwrap()];
            url = url.join(action).unwrap();
            form = Some(vec![("username", USERNAME), ("password", PASSWORD)]);
            signed_in = true;
        }
        panic!("no redirect to the client after 10 steps; stderr: {}", self.stderr());
    }
}

impl Drop for NodeOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's counters (see [`NodeOp::counters`]).
#[derive(Debug, Clone)]
pub struct Counters(serde_json::Value);

impl Counters {
    /// The counter `name` (a test naming a counter the server doesn't keep fails).
    pub fn get(&self, name: &str) -> u64 {
        self.0[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {}", self.0))
    }
}
