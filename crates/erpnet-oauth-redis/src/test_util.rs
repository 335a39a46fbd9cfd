//! Test support (feature `test-util`, off by default; enable it in `[dev-dependencies]` only, as the web
//! example's tests do): a real redis-server for tests, started on a free loopback port (bound by the OS,
//! then closed and handed to redis-server; a race for the port is retried), in a temporary directory,
//! stopped by its pid when dropped. `scripts/install-redis.sh` installs it (Debian's `redis-server`);
//! without it the tests fail with a message saying so, they are never skipped.
//!
//! A copy of this crate's own `tests/common/redis_server.rs`, for other crates' tests. It panics on
//! failure, as test code does: never use it outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Persistence for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// No RDB, no AOF.
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
    persistence: Persistence,
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
    /// A server without persistence.
    pub fn start() -> RedisServer {
        Self::start_with(Persistence::None)
    }

    /// A server with `persistence`.
    pub fn start_with(persistence: Persistence) -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            match spawn(port, dir.path(), persistence) {
                Ok(child) => return RedisServer { child: Some(child), port, dir, persistence },
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start after 10 ports: {last}");
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with SIGKILL (no shutdown save: what is on disk is what survives).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (its AOF, if any, is loaded).
    pub fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        loop {
            match spawn(self.port, self.dir.path(), self.persistence) {
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

    /// Sends one command (inline protocol) and returns the raw reply's first line and following lines.
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args).unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, dir: &Path, persistence: Persistence) -> Result<Child, String> {
    let mut cmd = Command::new(binary());
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "no", "--loglevel", "warning", "--maxmemory-policy", "noeviction"]);
    match persistence {
        Persistence::None => cmd.args(["--appendonly", "no"]),
        Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
    };
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
        if command(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG")) {
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

/// One command over RESP, the reply's lines joined by `\n`.
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut out = String::new();
    read_reply(&mut reader, &mut out)?;
    Ok(out.trim_end().to_owned())
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
