//! The async session against servers other than ERP.net's defaults: access tokens of 1 s, 5 s, the skew
//! or an hour, token responses without `expires_in`, tasks at once (catalogue E9, E12). The same counts
//! as the blocking adapter's `tests/short_lived.rs`: both drive the core's one lifecycle machine.

mod common;

use common::*;
use erpnet_oauth_async::{MemoryStore, Session};
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID, MockConfig, MockErpNet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=1";

/// A mock whose seed app issues access tokens of `lifetime` (and no `expires_in` when `omit`).
async fn mock_issuing(lifetime: Duration, omit: bool) -> Arc<MockErpNet> {
    tokio::task::spawn_blocking(move || {
        let mut config = MockConfig::seed_manual_clock();
        config.clock = ClockMode::Manual { start: SystemTime::now() };
        for app in &mut config.apps {
            app.impersonate_login_urls.push(REDIRECT_URI.to_owned());
            if app.application_uri == DEMO_CLIENT_ID {
                app.access_token_lifetime = Some(lifetime);
                app.omit_expires_in = omit;
            }
        }
        Arc::new(MockErpNet::start(config).expect("the mock starts"))
    })
    .await
    .expect("the mock starts")
}

async fn logged_in(lifetime: u64, omit: bool) -> (Arc<MockErpNet>, Session) {
    let mock = mock_issuing(Duration::from_secs(lifetime), omit).await;
    let session = Session::builder(client(&mock))
        .store(MemoryStore::new())
        .clock(mock_clock(&mock))
        .build()
        .await
        .expect("the session builds");
    login(&mock, &session).await;
    (mock, session)
}

/// `calls` calls, the server's clock moving `step` before each; the refresh grants of each call.
async fn calls(mock: &MockErpNet, session: &Session, calls: usize, step: Duration) -> Vec<u64> {
    let mut grants = Vec::with_capacity(calls);
    for i in 0..calls {
        mock.advance_clock(step);
        let before = mock.counters().refresh_token_grants;
        let response = session.get(CUSTOMERS).await.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(response.status(), 200, "call {i}");
        grants.push(mock.counters().refresh_token_grants - before);
    }
    grants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_cost_one_renewal_per_call_at_most() {
    // (token lifetime, clock step before each call, refresh grants expected for 12 calls): the blocking
    // adapter's table, to the grant.
    let cases: &[(u64, u64, u64)] =
        &[(1, 1, 12), (1, 0, 0), (5, 1, 4), (5, 5, 12), (60, 20, 6), (3600, 600, 2)];
    for &(lifetime, step, expected) in cases {
        let (mock, session) = logged_in(lifetime, false).await;
        let per_call = calls(&mock, &session, 12, Duration::from_secs(step)).await;
        let why = format!("lifetime {lifetime} s, step {step} s: {per_call:?}");
        assert!(per_call.iter().all(|&n| n <= 1), "one call causes at most one renewal ({why})");
        assert_eq!(per_call.iter().sum::<u64>(), expected, "{why}");
        let c = mock.counters();
        assert_eq!((c.api_unauthorized, c.invalid_grant_errors), (0, 0), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_response_without_expires_in_gets_the_fallback_lifetime() {
    let (mock, session) = logged_in(600, true).await;
    let tokens = session.tokens().unwrap();
    let lifetime = tokens.expires_at.unwrap().duration_since(tokens.issued_at.unwrap()).unwrap();
    assert_eq!(lifetime, Duration::from_secs(300), "the fallback lifetime (catalogue E12)");
    let per_call = calls(&mock, &session, 30, Duration::from_secs(60)).await;
    assert_eq!(per_call.iter().sum::<u64>(), 7, "a renewal every 4 minutes: {per_call:?}");
    let c = mock.counters();
    assert_eq!((c.api_unauthorized, c.invalid_grant_errors), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_one_short_lived_session_renew_once_per_expiry() {
    let (mock, session) = logged_in(1, false).await;
    for round in 0..5 {
        mock.advance_clock(Duration::from_secs(1));
        let before = mock.counters().refresh_token_grants;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = session.clone();
                tokio::spawn(async move { s.get(CUSTOMERS).await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 200, "round {round}");
        }
        assert_eq!(mock.counters().refresh_token_grants - before, 1, "round {round}: one renewal");
    }
    assert_eq!(mock.counters().invalid_grant_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_never_renews_twice_for_one_token() {
    let (mock, session) = logged_in(1, false).await;
    for _ in 0..5 {
        let due = session.poll_timeout().expect("a renewal is planned");
        assert!(due > session.now(), "not due at once after a renewal");
        let before = mock.counters().refresh_token_grants;
        session.handle_timeout().await.unwrap();
        assert_eq!(mock.counters().refresh_token_grants, before, "not due yet: nothing sent");
        mock.advance_clock(due.duration_since(session.now()).unwrap());
        session.handle_timeout().await.unwrap();
        assert_eq!(mock.counters().refresh_token_grants, before + 1, "due: one renewal");
    }
}
