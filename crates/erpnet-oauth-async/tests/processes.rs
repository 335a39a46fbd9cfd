//! Processes sharing one file store: whoever finds the token expired, one refresh for all of them.
//!
//! `harness = false`: this binary is both the test (no `ASYNC_TEST_CHILD` in the environment) and the
//! child processes it spawns (`ASYNC_TEST_CHILD=1`), each running its own tokio runtime.

mod common;

use common::*;
use erpnet_oauth_async::{ClientConfig, ClientSecret, FileStore, Session, TokenStore};
use erpnet_oauth_mock::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::var_os("ASYNC_TEST_CHILD").is_some() {
        std::process::exit(runtime.block_on(child()));
    }
    runtime.block_on(eight_processes_sharing_a_store_refresh_once_per_expiry());
    println!("test eight_processes_sharing_a_store_refresh_once_per_expiry ... ok");
    println!("\ntest result: ok. 1 passed; 0 failed");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for a child"))
}

/// Child: load the shared store, say ready, wait for the go file, make one API call with the token found
/// expired (its clock is the mock's, frozen at the time given).
async fn child() -> i32 {
    let now = UNIX_EPOCH + Duration::from_secs(env("ASYNC_TEST_NOW").parse().unwrap());
    let client = ClientConfig::builder(&env("ASYNC_TEST_BASE"), DEMO_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .redirect_uri(REDIRECT_URI)
        .build()
        .unwrap();
    let session = Session::builder(client)
        .store(FileStore::new(env("ASYNC_TEST_STORE")))
        .clock(move || now)
        .build()
        .await
        .unwrap();
    println!("ready");
    let go = env("ASYNC_TEST_GO");
    while !Path::new(&go).exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match session.get("/api/domain/odata/Crm_Customers?$top=1").await {
        Ok(r) if r.status() == 200 => 0,
        Ok(r) => {
            eprintln!("status {}", r.status());
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn eight_processes_sharing_a_store_refresh_once_per_expiry() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("tokens.json");
    let session = Session::builder(client(&mock))
        .store(FileStore::new(&store_path))
        .clock(mock_clock(&mock))
        .build()
        .await
        .unwrap();
    login(&mock, &session).await;
    drop(session);
    mock.reset_counters();

    for round in 1..=3u64 {
        mock.advance_clock(Duration::from_secs(3601));
        let now = mock.now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
        let go = dir.path().join(format!("go-{round}"));
        let mut children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env("ASYNC_TEST_CHILD", "1")
                    .env("ASYNC_TEST_BASE", mock.base_url())
                    .env("ASYNC_TEST_STORE", &store_path)
                    .env("ASYNC_TEST_NOW", &now)
                    .env("ASYNC_TEST_GO", &go)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in &mut children {
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready");
        }
        std::fs::write(&go, b"").unwrap();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "every process's call succeeds (round {round})");
        }
        let c = mock.counters();
        assert_eq!(c.refresh_token_grants, round, "one refresh per expiry for 8 processes (round {round})");
        assert_eq!(c.invalid_grant_errors, 0);
        assert_eq!(c.refresh_token_reuses, 0);
        assert_eq!(c.api_ok, 8 * round);
    }
    let stored = TokenStore::load(&FileStore::new(&store_path))
        .await
        .unwrap()
        .expect("the store holds the last tokens");
    assert!(stored.refresh_token.is_some());
}
