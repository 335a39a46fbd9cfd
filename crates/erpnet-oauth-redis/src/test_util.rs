//! Test support (feature `test-util`, off by default; enable it in `[dev-dependencies]` only, as this
//! crate's own tests, the CLI's and the web example's do): a real redis-server for tests, started on a
//! free loopback port (bound by the OS, then closed and handed to redis-server; a race for the port is
//! retried), in a temporary directory, stopped by its pid when dropped. `scripts/install-redis.sh`
//! installs it (Debian's `redis-server`); without it the tests fail with a message saying so, they are
//! never skipped.
//!
//! Options ([`RedisServer::builder`]): persistence (AOF, `appendfsync always`), a password
//! (`requirepass`), a Unix socket next to the TCP port, and a TLS port with a certificate of a CA made
//! for the test (the `openssl` command). It panics on failure, as test code does: never use it outside
//! tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Persistence for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// No RDB, no AOF.
    #[default]
    None,
    /// `appendonly yes`, `appendfsync always`.
    AofAlways,
}

/// A running redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: Builder,
    tls: Option<Tls>,
}

/// The options of a [`RedisServer`] to start ([`RedisServer::builder`]).
#[derive(Debug, Clone, Default)]
pub struct Builder {
    persistence: Persistence,
    password: Option<String>,
    unix_socket: bool,
    tls: bool,
}

impl Builder {
    /// With `persistence` (default: none).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Requiring `password` (`requirepass`) of the default user.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Listening on a Unix socket too ([`RedisServer::socket`], [`RedisServer::unix_url`]), mode 0700.
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// Listening with TLS too ([`RedisServer::tls`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts the server.
    pub fn start(self) -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let files = self.tls.then(|| make_certificates(dir.path()));
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            let tls = files.as_ref().map(|(ca, cert, key)| Tls {
                port: free_port(),
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            });
            match spawn(port, dir.path(), &self, tls.as_ref()) {
                Ok(child) => return RedisServer { child: Some(child), port, dir, options: self, tls },
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start after 10 ports: {last}");
    }
}

/// A TLS port next to the plain one, with a certificate for `127.0.0.1` issued by a CA of the test's own.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The TLS port.
    pub port: u16,
    /// The CA certificate (PEM) that issued the server's.
    pub ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("openssl (for the TLS test's certificates) cannot run: {e}"));
    assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
}

/// A CA and a server certificate for IP 127.0.0.1, made with the openssl command in `dir`.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=erpnet-oauth test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"))
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin"]) {
        let candidate = Path::new(dir).join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "redis-server was not found (PATH, /usr/bin, or $REDIS_SERVER): these tests need a real Redis. \
         Install it with `bash scripts/install-redis.sh` (Debian's redis-server package)."
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port from the OS");
    listener.local_addr().expect("its address").port()
}

impl RedisServer {
    /// The options of a server to start: `RedisServer::builder().password("pw").unix_socket().start()`.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A server without persistence.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// A server with `persistence`.
    pub fn start_with(persistence: Persistence) -> RedisServer {
        Self::builder().persistence(persistence).start()
    }

    /// A server without persistence that also listens with TLS ([`Self::tls`]).
    pub fn start_tls() -> RedisServer {
        Self::builder().tls().start()
    }

    /// `redis://127.0.0.1:PORT/`, without the password (see [`Self::url_with_password`]).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/` (the password percent-encoded), or [`Self::url`] without one.
    pub fn url_with_password(&self) -> String {
        match &self.options.password {
            Some(p) => format!("redis://:{}@127.0.0.1:{}/", encode(p), self.port),
            None => self.url(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password the server requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// The Unix socket, for a server started with [`Builder::unix_socket`].
    pub fn socket(&self) -> Option<PathBuf> {
        self.options.unix_socket.then(|| self.dir.path().join("redis.sock"))
    }

    /// `redis+unix:///PATH` with the password as `?pass=` (form-encoded) when there is one, for a server
    /// started with [`Builder::unix_socket`].
    pub fn unix_url(&self) -> Option<String> {
        let socket = self.socket()?;
        Some(match &self.options.password {
            Some(p) => format!("redis+unix://{}?pass={}", socket.display(), encode(p)),
            None => format!("redis+unix://{}", socket.display()),
        })
    }

    /// The TLS side, for a server started with [`Builder::tls`].
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Stops the server with SIGKILL (no shutdown save: what is on disk is what survives).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, socket and directory, with the same options (its AOF, if any, is
    /// loaded).
    pub fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        loop {
            match spawn(self.port, self.dir.path(), &self.options, self.tls.as_ref()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    eprintln!("redis-server restart on port {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("redis-server did not restart on port {}: {e}", self.port),
            }
        }
    }

    /// Sends one command (authenticated with the server's password, if any) and returns the reply's
    /// lines joined by `\n`.
    pub fn command(&self, args: &[&str]) -> String {
        command_as(self.port, self.options.password.as_deref(), args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `s` percent-encoded but for unreserved characters (for a URL's user-info or query).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn spawn(port: u16, dir: &Path, options: &Builder, tls: Option<&Tls>) -> Result<Child, String> {
    let mut cmd = Command::new(binary());
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--loglevel", "warning", "--maxmemory-policy", "noeviction"]);
    match options.persistence {
        Persistence::None => cmd.args(["--appendonly", "no"]),
        Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
    };
    if let Some(password) = &options.password {
        cmd.args(["--requirepass", password]);
    }
    if options.unix_socket {
        cmd.arg("--unixsocket").arg(dir.join("redis.sock")).args(["--unixsocketperm", "700"]);
    }
    if let Some(tls) = tls {
        cmd.args(["--tls-port", &tls.port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run redis-server: {e}"))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            return Err(format!("redis-server exited ({status}): {}", err.trim()));
        }
        let socket_ready = !options.unix_socket || dir.join("redis.sock").exists();
        if socket_ready
            && command_as(port, options.password.as_deref(), &["PING"]).is_ok_and(|r| r.starts_with("+PONG"))
        {
            return Ok(child);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no PONG within 20 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One command over RESP on a server without a password, the reply's lines joined by `\n`.
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    command_as(port, None, args)
}

/// One command over RESP, after `AUTH password` when given, the reply's lines joined by `\n`.
pub fn command_as(port: u16, password: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    if let Some(password) = password {
        stream.write_all(&request(&["AUTH", password])).map_err(|e| e.to_string())?;
        let mut out = String::new();
        read_reply(&mut reader, &mut out)?;
        if !out.starts_with("+OK") {
            return Err(format!("AUTH: {}", out.trim_end()));
        }
    }
    stream.write_all(&request(args)).map_err(|e| e.to_string())?;
    let mut out = String::new();
    read_reply(&mut reader, &mut out)?;
    Ok(out.trim_end().to_owned())
}

fn request(args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req
}

fn read_reply(reader: &mut impl BufRead, out: &mut String) -> Result<(), String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end().to_owned();
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().map_err(|_| line.clone())?;
            if n < 0 {
                out.push_str("(nil)\n");
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
                out.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
                out.push('\n');
            }
        }
        Some(b'*') => {
            let n: i64 = line[1..].parse().map_err(|_| line.clone())?;
            for _ in 0..n.max(0) {
                read_reply(reader, out)?;
            }
        }
        _ => {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(())
}
