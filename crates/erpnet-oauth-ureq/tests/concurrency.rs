//! Single flight under load: many threads, expiring tokens, exactly one refresh per expiry.

mod common;

use common::*;
use erpnet_oauth_mock::{DEMO_CLIENT_SECRET, DEMO_SERVICE_CLIENT_ID, MockErpNet};
use erpnet_oauth_ureq::{ClientConfig, ClientSecret, Session};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Runs `threads` threads making `calls` calls each through `session`, in `expiries + 1` epochs: between
/// epochs, once every call of the previous epoch is done, the mock's clock jumps past the token's
/// lifetime. `check(epoch)` runs after each epoch's calls. Returns the number of failed calls.
fn run_epochs(
    mock: &Arc<MockErpNet>,
    session: &Arc<Session>,
    threads: u64,
    calls: u64,
    expiries: u64,
    check: impl Fn(u64),
) -> u64 {
    let epochs = expiries + 1;
    let end_of = move |epoch: u64| (epoch + 1) * calls / epochs;
    let gate = Arc::new((Mutex::new(0u64), Condvar::new()));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (session, gate, done, failed) = (session.clone(), gate.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                for i in 0..calls {
                    let (lock, cv) = &*gate;
                    let mut epoch = lock.lock().unwrap();
                    while i >= end_of(*epoch) {
                        epoch = cv.wait(epoch).unwrap();
                    }
                    drop(epoch);
                    match session.get("/api/domain/odata/Crm_Customers?$top=1") {
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
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for epoch in 0..epochs {
        // Bounded, so that a lost wake-up (a thread waiting forever for a renewal) fails the test instead
        // of hanging the run.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::SeqCst) < threads * end_of(epoch) {
            assert!(
                std::time::Instant::now() < deadline,
                "epoch {epoch}: {} of {} calls ended within 120 s",
                done.load(Ordering::SeqCst),
                threads * end_of(epoch)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        check(epoch);
        if epoch + 1 < epochs {
            mock.advance_clock(Duration::from_secs(3600));
            let (lock, cv) = &*gate;
            *lock.lock().unwrap() = epoch + 1;
            cv.notify_all();
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    failed.load(Ordering::SeqCst)
}

#[test]
fn sixty_four_threads_ten_expiries_ten_refreshes() {
    let mock = mock();
    let session = Session::builder(client(&mock, REDIRECT_URI)).clock(mock_clock(&mock)).build().unwrap();
    login(&mock, &session);
    let session = Arc::new(session);
    mock.reset_counters();

    let failed = run_epochs(&mock, &session, 64, 200, 10, |epoch| {
        let c = mock.counters();
        assert_eq!(c.refresh_token_grants, epoch, "one refresh per expiry, after epoch {epoch}");
        assert_eq!(c.invalid_grant_errors, 0);
    });
    assert_eq!(failed, 0, "every call succeeds");
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 10);
    assert_eq!(c.invalid_grant_errors, 0);
    assert_eq!(c.refresh_token_reuses, 0);
    assert_eq!(c.token_requests, 10);
    assert_eq!(c.api_ok, 64 * 200);
    assert_eq!(c.api_calls, 64 * 200 + c.api_unauthorized);
    eprintln!(
        "64 threads x 200 calls, 10 expiries: {} refresh grants, {} invalid_grant, {} API 401s retried",
        c.refresh_token_grants, c.invalid_grant_errors, c.api_unauthorized
    );
}

#[test]
fn sixty_four_threads_with_the_system_clock_refresh_on_401_once_per_expiry() {
    // The session does not see the mock's clock: each expiry shows up as 401s on many threads at once.
    let mock = mock();
    let session = Session::new(client(&mock, REDIRECT_URI)).unwrap();
    login(&mock, &session);
    let session = Arc::new(session);
    mock.reset_counters();
    let failed = run_epochs(&mock, &session, 64, 50, 3, |epoch| {
        assert_eq!(mock.counters().refresh_token_grants, epoch);
    });
    assert_eq!(failed, 0);
    let c = mock.counters();
    assert_eq!(c.refresh_token_grants, 3);
    assert_eq!(c.invalid_grant_errors, 0);
    assert!(c.api_unauthorized >= 3, "the expiries were seen as 401s");
    assert_eq!(c.api_ok, 64 * 50);
}

#[test]
fn client_credentials_single_flight() {
    let mock = mock();
    let client = ClientConfig::builder(&mock.base_url(), DEMO_SERVICE_CLIENT_ID)
        .client_secret(ClientSecret::new(DEMO_CLIENT_SECRET))
        .build()
        .unwrap();
    let session = Arc::new(
        Session::builder(client).client_credentials("DomainApi").clock(mock_clock(&mock)).build().unwrap(),
    );
    let failed = run_epochs(&mock, &session, 16, 40, 3, |epoch| {
        let c = mock.counters();
        assert_eq!(c.client_credentials_grants, epoch + 1, "a new token per expiry, once");
        assert_eq!(c.refresh_token_grants, 0);
    });
    assert_eq!(failed, 0);
    assert_eq!(mock.counters().client_credentials_grants, 4);
    assert_eq!(mock.counters().token_requests, 4);
    assert!(session.tokens().unwrap().refresh_token.is_none());
}
