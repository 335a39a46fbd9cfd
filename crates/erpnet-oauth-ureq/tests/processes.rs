//! Processes sharing one file store: one refresh for all of them, and SIGKILL at any moment of
//! refresh-and-persist never leaves the store unreadable or holding only a refresh token already replaced.
//!
//! `harness = false`: this binary is both the test (no `UREQ_TEST_CHILD` in the environment) and the child
//! processes it spawns (`UREQ_TEST_CHILD=<role>`).

mod common;

use common::*;
use erpnet_oauth_mock::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Endpoint, Fault};
use erpnet_oauth_ureq::{ClientConfig, ClientSecret, FileStore, Session};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

fn main() {
    match std::env::var("UREQ_TEST_CHILD").as_deref() {
        Ok("shared-expired") => child_shared_expired(),
        Ok("refresh-loop") => child_refresh_loop(),
        _ => {
            let tests: [(&str, fn()); 2] = [
                (
                    "eight_processes_sharing_a_store_refresh_once",
                    eight_processes_sharing_a_store_refresh_once,
                ),
                ("sigkill_during_refresh_and_persist_never_breaks_the_store", sigkill_never_breaks_the_store),
            ];
            for (name, test) in tests {
                test();
                println!("test {name} ... ok");
            }
            println!("\ntest result: ok. {} passed; 0 failed", tests.len());
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for a child"))
}

fn child_client() -> ClientConfig {
    ClientConfig::builder(&env("UREQ_TEST_BASE"), DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(REDIRECT_URI)
        .build()
        .unwrap()
}

/// Child: load the shared store, wait for the go signal, make one API call with the token found expired.
fn child_shared_expired() {
    let now = UNIX_EPOCH + Duration::from_secs(env("UREQ_TEST_NOW").parse().unwrap());
    let session = Session::builder(child_client())
        .store(FileStore::new(env("UREQ_TEST_STORE")))
        .clock(move || now)
        .build()
        .unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let go = env("UREQ_TEST_GO");
    while !Path::new(&go).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    match session.get("/api/domain/odata/Crm_Customers?$top=1") {
        Ok(r) if r.status() == 200 => println!("ok"),
        Ok(r) => {
            eprintln!("status {}", r.status());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Child: refresh forever, printing the tail of each refresh token once it is stored.
fn child_refresh_loop() {
    let session =
        Session::builder(child_client()).store(FileStore::new(env("UREQ_TEST_STORE"))).build().unwrap();
    loop {
        if let Err(e) = session.refresh() {
            eprintln!("refresh failed: {e}");
            std::process::exit(2);
        }
        let tail = session.tokens().and_then(|t| t.refresh_token).map(|t| t.tail(16)).unwrap_or_default();
        println!("persisted {tail}");
        std::io::stdout().flush().unwrap();
    }
}

fn spawn_child(role: &str, base: &str, store: &Path, extra: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("UREQ_TEST_CHILD", role)
        .env("UREQ_TEST_BASE", base)
        .env("UREQ_TEST_STORE", store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn eight_processes_sharing_a_store_refresh_once() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("tokens.json");
    let session = Session::builder(client(&mock, REDIRECT_URI))
        .store(FileStore::new(&store_path))
        .clock(mock_clock(&mock))
        .build()
        .unwrap();
    login(&mock, &session);
    drop(session);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&store_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the store is readable by its owner only");
    }
    let before = FileStore::new(&store_path).load().unwrap().unwrap();

    // All eight find the token expired.
    mock.advance_clock(Duration::from_secs(3601));
    mock.reset_counters();
    let now = mock.now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let go = dir.path().join("go");
    let mut children: Vec<_> = (0..8)
        .map(|_| {
            spawn_child(
                "shared-expired",
                &mock.base_url(),
                &store_path,
                &[("UREQ_TEST_NOW", now.clone()), ("UREQ_TEST_GO", go.display().to_string())],
            )
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        outputs.push(out);
    }
    std::fs::write(&go, b"go").unwrap();
    for (child, mut out) in children.iter_mut().zip(outputs) {
        let status = child.wait().unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(status.success(), "every process succeeds");
        assert_eq!(line.trim(), "ok");
    }
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "eight processes, one refresh");
    assert_eq!(c.token_requests, 1);
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.api_ok, 8);
    let after = FileStore::new(&store_path).load().unwrap().unwrap();
    assert_ne!(after.refresh_token, before.refresh_token, "the store holds the rotated refresh token");
    eprintln!(
        "8 processes sharing one file store: {} refresh grant(s), {} API calls ok",
        c.refresh_token_grants, c.api_ok
    );
}

fn sigkill_never_breaks_the_store() {
    const ITERATIONS: u64 = 40;
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("tokens.json");
    let client = client(&mock, REDIRECT_URI);
    let (mut accepted, mut rejected, mut confirmed_writes) = (0, 0, 0usize);
    let mut needs_login = true;
    for i in 0..ITERATIONS {
        if needs_login {
            let session =
                Session::builder(client.clone()).store(FileStore::new(&store_path)).build().unwrap();
            login(&mock, &session);
            needs_login = false;
        }
        let initial = FileStore::new(&store_path).load().unwrap().unwrap().refresh_token.unwrap().tail(16);
        // A third of the runs have a slow token endpoint, to land kills while the answer is awaited.
        if i % 3 == 1 {
            mock.inject_fault(Endpoint::Token, Fault::Delay(Duration::from_millis(15)), None);
        }
        let mut child = spawn_child("refresh-loop", &mock.base_url(), &store_path, &[]);
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5 + (i * 7) % 61));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished: {status}");
        reader.join().unwrap();
        mock.clear_faults();

        // Whatever the moment, the store parses.
        let stored = match FileStore::new(&store_path).load() {
            Ok(Some(t)) => t,
            other => panic!("iteration {i}: the store is unreadable after SIGKILL: {other:?}"),
        };
        let stored_tail = stored.refresh_token.unwrap().tail(16);
        let lines = lines.lock().unwrap().clone();
        confirmed_writes += lines.len();
        let last_confirmed =
            lines.last().and_then(|l| l.strip_prefix("persisted ")).map(str::to_owned).unwrap_or(initial);

        // Its refresh token is accepted, or it is the last one the child confirmed writing and the child was
        // killed after the server had rotated it but before the new one was written (the window rotation
        // cannot close).
        let verifier = Session::builder(client.clone()).store(FileStore::new(&store_path)).build().unwrap();
        match verifier.refresh() {
            Ok(()) => accepted += 1,
            Err(e) if e.is_login_required() => {
                assert_eq!(
                    stored_tail, last_confirmed,
                    "iteration {i}: a rejected store must hold the last refresh token written, not an older one"
                );
                rejected += 1;
                needs_login = true;
            }
            Err(e) => panic!("iteration {i}: unexpected error {e}"),
        }
    }
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
        .count();
    eprintln!(
        "SIGKILL test: {ITERATIONS} kills, {confirmed_writes} confirmed refresh+persist cycles; stored token accepted \
         after {accepted} kills, rotated-but-not-yet-written after {rejected}; {leftovers} leftover temp files"
    );
    assert_eq!(accepted + rejected, ITERATIONS);
    assert!(confirmed_writes > 0, "the children did refresh before being killed");
}
