//! Processes sharing one login through Redis: 4 processes × 16 threads over 10 access-token expiries
//! refresh exactly once per expiry; a lock holder killed (SIGKILL) before its token request is taken
//! over after its lease with nothing lost; one killed after the server answered, before its save, ends
//! the login honestly (reuse detected, login required), and nothing panics.
//!
//! `harness = false`: this binary is both the test (no `REDIS_TEST_CHILD` in the environment) and the
//! child processes it spawns (`REDIS_TEST_CHILD=<role>`).

mod common;

use common::redis_server::{RedisServer, command};
use common::*;
use erpnet_oauth_core::TokenSet;
use erpnet_oauth_core::store::{StoreError, StoreLock};
use erpnet_oauth_redis::{AsyncRedisStore, RedisStore};
use erpnet_oauth_ureq::{Session, TokenStore};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

const LOGIN: &str = "shared-login";
const PROCESSES: usize = 4;
const THREADS: usize = 16;
const CALLS_PER_THREAD: usize = 2;
const EXPIRIES: usize = 10;

fn main() {
    match std::env::var("REDIS_TEST_CHILD").as_deref() {
        Ok("blocking") => child_blocking(),
        Ok("async") => child_async(),
        Ok(role @ ("die-before-send" | "die-before-save")) => child_doomed(role),
        _ => {
            let tests: [(&str, fn()); 3] = [
                (
                    "four_processes_of_sixteen_threads_refresh_once_per_expiry",
                    four_processes_refresh_once_per_expiry,
                ),
                ("a_holder_killed_before_its_token_request_is_taken_over", killed_before_send),
                ("a_holder_killed_after_the_answer_ends_the_login_honestly", killed_before_save),
            ];
            let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
            let mut ran = 0;
            for (name, test) in tests {
                if only.as_deref().is_some_and(|o| !name.contains(o)) {
                    continue;
                }
                test();
                ran += 1;
                println!("test {name} ... ok");
            }
            println!("\ntest result: ok. {ran} passed; 0 failed");
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for a child"))
}

fn spawn_child(role: &str, base: &str, redis_url: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("REDIS_TEST_CHILD", role)
        .env("REDIS_TEST_BASE", base)
        .env("REDIS_TEST_URL", redis_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Child: a blocking session on the shared login; for each `go NANOS` line, 16 threads make 2 API
/// calls each at that time, then `done OK FAILED`.
fn child_blocking() {
    let client = client(&env("REDIS_TEST_BASE"));
    let store = RedisStore::open(&env("REDIS_TEST_URL"), LOGIN).unwrap().for_client(&client);
    let clock = SetClock::default();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let first = lines.next().unwrap().unwrap();
    clock.set(UNIX_EPOCH + Duration::from_nanos(first.trim_start_matches("go ").parse().unwrap()));
    let session =
        std::sync::Arc::new(Session::builder(client).store(store).clock(clock.as_fn()).build().unwrap());
    let mut line = first;
    loop {
        let at: u64 = line.trim_start_matches("go ").parse().unwrap();
        clock.set(UNIX_EPOCH + Duration::from_nanos(at));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let session = session.clone();
                std::thread::spawn(move || {
                    let mut failed = 0;
                    for _ in 0..CALLS_PER_THREAD {
                        match session.get("/api/domain/odata/Crm_Customers?$top=1") {
                            Ok(r) if r.status() == 200 => {}
                            Ok(r) => {
                                eprintln!("child: status {}", r.status());
                                failed += 1;
                            }
                            Err(e) => {
                                eprintln!("child: {e}");
                                failed += 1;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        let failed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        say(&format!("done {} {failed}", THREADS * CALLS_PER_THREAD - failed));
        match lines.next() {
            Some(Ok(next)) if next.starts_with("go ") => line = next,
            _ => return,
        }
    }
}

/// Child: the same with the async store and session, 16 tasks on a multi-threaded runtime.
fn child_async() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    runtime.block_on(async {
        let client = client(&env("REDIS_TEST_BASE"));
        let store = AsyncRedisStore::open(&env("REDIS_TEST_URL"), LOGIN).unwrap().for_client(&client);
        let clock = SetClock::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut session = None;
        while let Some(line) = rx.recv().await {
            let Some(at) = line.strip_prefix("go ") else { return };
            clock.set(UNIX_EPOCH + Duration::from_nanos(at.parse().unwrap()));
            if session.is_none() {
                session = Some(std::sync::Arc::new(
                    erpnet_oauth_async::Session::builder(client.clone())
                        .store(store.clone())
                        .clock(clock.as_fn())
                        .build()
                        .await
                        .unwrap(),
                ));
            }
            let Some(session) = session.clone() else { return };
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..THREADS {
                let session = session.clone();
                tasks.spawn(async move {
                    let mut failed = 0;
                    for _ in 0..CALLS_PER_THREAD {
                        match session.get("/api/domain/odata/Crm_Customers?$top=1").await {
                            Ok(r) if r.status() == 200 => {}
                            Ok(r) => {
                                eprintln!("async child: status {}", r.status());
                                failed += 1;
                            }
                            Err(e) => {
                                eprintln!("async child: {e}");
                                failed += 1;
                            }
                        }
                    }
                    failed
                });
            }
            let mut failed = 0;
            while let Some(r) = tasks.join_next().await {
                failed += r.unwrap();
            }
            say(&format!("done {} {failed}", THREADS * CALLS_PER_THREAD - failed));
        }
    });
}

struct Child_ {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

fn four_processes_refresh_once_per_expiry() {
    let redis = RedisServer::start_with(common::redis_server::Persistence::AofAlways);
    let mock = mock();
    let client = client(&mock.base_url());
    let store = RedisStore::open(&redis.url(), LOGIN).unwrap().for_client(&client);
    let clock = SetClock::at(mock.now());
    let session = Session::builder(client.clone()).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    login(&mock, &session);
    drop(session);
    let first = store.load().unwrap().unwrap();
    mock.reset_counters();

    // Two processes on the blocking store, two on the async one: both read and write the same login.
    let mut children: Vec<Child_> = (0..PROCESSES)
        .map(|i| {
            let mut child = spawn_child(
                if i % 2 == 0 { "blocking" } else { "async" },
                &mock.base_url(),
                &redis.url(),
                &[],
            );
            let stdin = child.stdin.take().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            Child_ { child, stdin, stdout }
        })
        .collect();
    let mut grants_per_expiry = Vec::new();
    for round in 0..EXPIRIES {
        // The access token expires (the mock's lifetime is 3600 s): every thread of every process finds
        // it expired at once.
        let before = mock.counters().refresh_token_grants;
        mock.advance_clock(Duration::from_secs(3600));
        let at = nanos(mock.now());
        for c in &mut children {
            writeln!(c.stdin, "go {at}").unwrap();
            c.stdin.flush().unwrap();
        }
        for (i, c) in children.iter_mut().enumerate() {
            let mut line = String::new();
            c.stdout.read_line(&mut line).unwrap();
            assert_eq!(
                line.trim(),
                format!("done {} 0", THREADS * CALLS_PER_THREAD),
                "round {round}, process {i}: every call succeeds"
            );
        }
        grants_per_expiry.push(mock.counters().refresh_token_grants - before);
    }
    for mut c in children {
        drop(c.stdin);
        assert!(c.child.wait().unwrap().success());
    }
    let c = mock.counters();
    eprintln!(
        "{PROCESSES} processes × {THREADS} threads, {EXPIRIES} expiries: refresh grants per expiry {grants_per_expiry:?} \
         (total {}), reuse {}, invalid_grant {}, API calls ok {}",
        c.refresh_token_grants, c.refresh_token_reuses, c.invalid_grant_errors, c.api_ok
    );
    assert_eq!(grants_per_expiry, vec![1; EXPIRIES], "exactly one refresh grant per expiry");
    assert_eq!(c.refresh_token_grants, EXPIRIES as u64);
    assert_eq!(c.refresh_token_reuses, 0);
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.token_requests, EXPIRIES as u64, "no other token request");
    assert_eq!(c.api_ok, (EXPIRIES * PROCESSES * THREADS * CALLS_PER_THREAD) as u64);
    assert_eq!(c.api_unauthorized, 0);
    let last = store.load().unwrap().unwrap();
    assert_ne!(last.refresh_token, first.refresh_token, "the store holds the last rotated refresh token");
    let generation = command(redis.port(), &["HGET", store.key(), "generation"]).unwrap();
    assert_eq!(generation, (1 + EXPIRIES).to_string(), "one login and one save per expiry");
}

/// A blocking store that signals, then hangs forever, at a chosen step under the lock: where the
/// parent kills the process.
struct Doomed {
    inner: RedisStore,
    locked: AtomicBool,
    role: String,
}

impl TokenStore for Doomed {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let loaded = self.inner.load();
        if self.role == "die-before-send" && self.locked.load(Ordering::SeqCst) {
            say("holding the lock, about to send");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        loaded
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        if self.role == "die-before-save" {
            say("answered, about to save");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        self.inner.save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear()
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        let lock = self.inner.lock()?;
        self.locked.store(true, Ordering::SeqCst);
        Ok(lock)
    }
}

/// Child: one call at the time given, through a store that hangs at the step of its role.
fn child_doomed(role: &str) {
    let client = client(&env("REDIS_TEST_BASE"));
    let inner = RedisStore::open(&env("REDIS_TEST_URL"), LOGIN)
        .unwrap()
        .for_client(&client)
        .lease(Duration::from_secs(2))
        .unwrap();
    let at: u64 = env("REDIS_TEST_NOW").parse().unwrap();
    let now = UNIX_EPOCH + Duration::from_nanos(at);
    let store = Doomed { inner, locked: AtomicBool::new(false), role: role.to_owned() };
    let session = Session::builder(client).store(store).clock(move || now).build().unwrap();
    let _ = session.get("/api/domain/odata/Crm_Customers?$top=1");
    say("finished (the parent should have killed this process)");
}

/// Logs in through Redis, lets the token expire, and runs a doomed child until it says `expect`, then
/// SIGKILLs it. Returns the mock, the server, the store and the clock at the expiry.
fn doomed_run(
    role: &str,
    expect: &str,
) -> (std::sync::Arc<erpnet_oauth_mock::MockErpNet>, RedisServer, RedisStore, SetClock) {
    let redis = RedisServer::start();
    let mock = mock();
    let client = client(&mock.base_url());
    let store = RedisStore::open(&redis.url(), LOGIN)
        .unwrap()
        .for_client(&client)
        .lease(Duration::from_secs(2))
        .unwrap()
        .lock_wait(Duration::from_secs(30));
    let clock = SetClock::at(mock.now());
    let session = Session::builder(client).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    login(&mock, &session);
    drop(session);
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    mock.reset_counters();
    let mut child = spawn_child(
        role,
        &mock.base_url(),
        &redis.url(),
        &[("REDIS_TEST_NOW", nanos(mock.now()).to_string())],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), expect);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
    assert_eq!(
        command(redis.port(), &["EXISTS", store.lock_key()]).unwrap(),
        ":1",
        "the dead holder's lock is still there, until its lease ends"
    );
    (mock, redis, store, clock)
}

fn killed_before_send() {
    let (mock, redis, store, clock) = doomed_run("die-before-send", "holding the lock, about to send");
    let before = store.load().unwrap().unwrap();
    assert_eq!(mock.counters().token_requests, 0, "the dead holder sent nothing");
    // Another instance: it waits for the dead holder's lease, then refreshes with the stored token.
    let session =
        Session::builder(client(&mock.base_url())).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    let r = session.get("/api/domain/odata/Crm_Customers?$top=1").unwrap();
    assert_eq!(r.status(), 200);
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses, c.invalid_grant_errors), (1, 0, 0));
    let after = store.load().unwrap().unwrap();
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");
    assert_eq!(command(redis.port(), &["EXISTS", store.lock_key()]).unwrap(), ":0", "and the lock released");
    eprintln!("killed before sending: taken over after the lease; 1 refresh grant, 0 reuse; nothing lost");
}

fn killed_before_save() {
    let (mock, _redis, store, clock) = doomed_run("die-before-save", "answered, about to save");
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 1, "the dead holder's refresh was answered: the token rotated");
    // The rotated refresh token died with the process; the store holds the one the server just spent.
    let session =
        Session::builder(client(&mock.base_url())).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    let e = session.get("/api/domain/odata/Crm_Customers?$top=1").unwrap_err();
    assert!(e.is_login_required(), "reported as login required: {e}");
    let c = mock.counters();
    assert_eq!(c.refresh_token_reuses, 1, "the next refresh sent the spent token: the mock saw reuse");
    assert_eq!(c.invalid_grant_errors, 1);
    assert_eq!(store.load().unwrap(), None, "the dead login's tokens were deleted (invalid_grant)");
    eprintln!(
        "killed after the answer: the rotated refresh token was lost with the process; reuse detected; login required: {e}"
    );
}
