//! Single flight under load on a multi-threaded runtime: many tasks, expiring tokens, exactly one refresh
//! per expiry, and no task ever blocks a runtime thread while another refreshes.

mod common;

use common::*;
use erpnet_oauth_async::Session;
use erpnet_oauth_mock::MockErpNet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Runs `tasks` tasks making `calls` calls each through `session`, in `expiries + 1` epochs: between
/// epochs, once every call of the previous epoch is done, the mock's clock jumps past the token's lifetime.
/// `check(epoch)` runs after each epoch's calls. Returns the number of failed calls.
async fn run_epochs(
    mock: &Arc<MockErpNet>,
    session: &Session,
    tasks: u64,
    calls: u64,
    expiries: u64,
    check: impl Fn(u64),
) -> u64 {
    let epochs = expiries + 1;
    let end_of = move |epoch: u64| (epoch + 1) * calls / epochs;
    let (gate, _) = watch::channel(0u64);
    let gate = Arc::new(gate);
    let failed = Arc::new(AtomicU64::new(0));
    let (all_done_tx, mut all_done) = watch::channel(0u64);
    let all_done_tx = Arc::new(all_done_tx);
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (session, failed) = (session.clone(), failed.clone());
            let mut epoch = gate.subscribe();
            let all_done_tx = all_done_tx.clone();
            tokio::spawn(async move {
                for i in 0..calls {
                    epoch.wait_for(|e| i < end_of(*e)).await.expect("the gate stays open");
                    match session.get("/api/domain/odata/Crm_Customers?$top=1").await {
                        Ok(r) if r.status() == 200 => {}
                        Ok(r) => {
                            eprintln!("unexpected status {}", r.status());
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            eprintln!("call failed: {e}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Counted inside the channel's lock: a count computed outside it and sent afterwards
                    // could arrive after a larger one and leave the total short (the main task would then
                    // wait forever for the last call of an epoch).
                    all_done_tx.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    for epoch in 0..epochs {
        let all = all_done.wait_for(|n| *n >= tasks * end_of(epoch));
        tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .expect("every call of the epoch ends (no lost wake-up, no hang)")
            .expect("the workers report");
        check(epoch);
        if epoch + 1 < epochs {
            mock.advance_clock(Duration::from_secs(3600));
            gate.send_replace(epoch + 1);
        }
    }
    for w in workers {
        w.await.expect("a worker panicked");
    }
    failed.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_ten_expiries_ten_refreshes() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    mock.reset_counters();

    let failed = run_epochs(&mock, &session, 64, 200, 10, |epoch| {
        let c = mock.counters();
        assert_eq!(c.refresh_token_grants, epoch, "one refresh per expiry, after epoch {epoch}");
        assert_eq!(c.invalid_grant_errors, 0);
    })
    .await;
    assert_eq!(failed, 0, "every call succeeds");
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 10);
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.refresh_token_reuses, 0);
    assert_eq!(c.token_requests, 10);
    assert_eq!(c.api_ok, 64 * 200);
    assert_eq!(c.api_calls, 64 * 200 + c.api_unauthorized);
    eprintln!(
        "64 tasks x 200 calls, 10 expiries: {} refresh grants, {} invalid_grant, {} API 401s retried",
        c.refresh_token_grants, c.invalid_grant_errors, c.api_unauthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_on_the_system_clock_refresh_on_401_once_per_expiry() {
    // The session does not see the mock's clock: each expiry shows up as 401s on many tasks at once.
    let mock = mock().await;
    let session = Session::new(client(&mock)).await.unwrap();
    login(&mock, &session).await;
    mock.reset_counters();
    let failed = run_epochs(&mock, &session, 64, 50, 3, |epoch| {
        assert_eq!(mock.counters().refresh_token_grants, epoch);
    })
    .await;
    assert_eq!(failed, 0);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 3);
    assert_eq!(c.invalid_grant_errors, 0);
    assert!(c.api_unauthorized >= 3, "the expiries were seen as 401s");
    assert_eq!(c.api_ok, 64 * 50);
    eprintln!(
        "64 tasks x 50 calls, 3 expiries seen as 401s: {} refresh grants, {} 401s",
        c.refresh_token_grants, c.api_unauthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_single_flight() {
    let mock = mock().await;
    let session = service_session(&mock).await;
    let failed = run_epochs(&mock, &session, 16, 40, 3, |epoch| {
        let c = mock.counters();
        assert_eq!(c.client_credentials_grants, epoch + 1, "a new token per expiry, once");
    })
    .await;
    assert_eq!(failed, 0);
    assert_eq!(mock.counters().client_credentials_grants, 4);
    assert_eq!(mock.counters().token_requests, 4);
}

// On a runtime with a single thread, a task that blocked while another refreshes (a std Condvar, a
// blocking lock held across the refresh) would deadlock it: every call completing proves waiting tasks
// yield. The timeout turns a deadlock into a failure instead of a hang.
#[tokio::test(flavor = "current_thread")]
async fn one_runtime_thread_is_enough_waiting_tasks_never_block_it() {
    let mock = mock().await;
    let session = Session::builder(client(&mock)).clock(mock_clock(&mock)).build().await.unwrap();
    login(&mock, &session).await;
    mock.reset_counters();
    let run = run_epochs(&mock, &session, 32, 30, 3, |epoch| {
        assert_eq!(mock.counters().refresh_token_grants, epoch);
    });
    let failed = tokio::time::timeout(Duration::from_secs(120), run).await.expect("no deadlock");
    assert_eq!(failed, 0);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 3);
    assert_eq!(c.api_ok, 32 * 30);
}
