//! Servers other than ERP.net's defaults: access tokens that live 1 s, 5 s, exactly the skew, or an hour;
//! token responses without `expires_in`; a client clock minutes off the server's (catalogue E9, E12,
//! E13). Every rule is checked by counting the refresh grants the mock saw: N calls make at most N
//! renewals, one call at most one, and every call succeeds.

mod common;

use common::*;
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID, MockConfig, MockErpNet};
use erpnet_oauth_ureq::{MemoryStore, Session};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=1";

/// A mock whose seed app issues access tokens of `lifetime` (and no `expires_in` when `omit`).
fn mock_issuing(lifetime: Duration, omit: bool) -> Arc<MockErpNet> {
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
}

/// A session on the mock's clock shifted by `offset` seconds (0 while logging in: the login's ID token is
/// checked on the client's clock).
fn session(mock: &Arc<MockErpNet>, offset: &Arc<AtomicI64>) -> Session {
    let (m, o) = (mock.clone(), offset.clone());
    let clock = move || {
        let by = o.load(Ordering::SeqCst);
        let shift = Duration::from_secs(by.unsigned_abs());
        if by >= 0 { m.now() + shift } else { m.now() - shift }
    };
    let session = Session::builder(client(mock, REDIRECT_URI)).store(MemoryStore::new()).clock(clock).build();
    session.expect("the session builds")
}

/// `calls` calls, the server's clock moving `step` before each; returns the refresh grants of each call.
fn calls(mock: &MockErpNet, session: &Session, calls: usize, step: Duration) -> Vec<u64> {
    (0..calls)
        .map(|i| {
            mock.advance_clock(step);
            let before = mock.counters().refresh_token_grants;
            let response = session.get(CUSTOMERS).unwrap_or_else(|e| panic!("call {i} failed: {e}"));
            assert_eq!(response.status(), 200, "call {i}");
            mock.counters().refresh_token_grants - before
        })
        .collect()
}

#[test]
fn short_lived_tokens_cost_one_renewal_per_call_at_most() {
    // (token lifetime, clock step before each call, refresh grants expected for 12 calls). Times are kept
    // in whole seconds; a token is fresh until its expiry less the margin, min(60 s, half its lifetime).
    let cases: &[(u64, u64, u64)] = &[
        (1, 1, 12),     // dead at every call: one renewal each
        (1, 0, 0),      // the clock stands still: the token stays good
        (5, 1, 4),      // fresh for the first 2.5 s of its 5: renewed at the 3rd, 6th, 9th and 12th call
        (5, 5, 12),     // dead at every call
        (60, 20, 6),    // a lifetime equal to the skew: fresh for 30 s, renewed every other call
        (3600, 600, 2), // ERP.net's: fresh for 59 minutes, renewed at the 6th and 12th call
    ];
    for &(lifetime, step, expected) in cases {
        let mock = mock_issuing(Duration::from_secs(lifetime), false);
        let offset = Arc::new(AtomicI64::new(0));
        let session = session(&mock, &offset);
        login(&mock, &session);
        let per_call = calls(&mock, &session, 12, Duration::from_secs(step));
        let total: u64 = per_call.iter().sum();
        let why = format!("lifetime {lifetime} s, step {step} s: {per_call:?}");
        assert!(per_call.iter().all(|&n| n <= 1), "one call causes at most one renewal ({why})");
        assert_eq!(total, expected, "{why}");
        let c = mock.counters();
        assert_eq!(c.invalid_grant_errors, 0, "{why}");
        // No call needed a retry after a 401: the client renewed before the token died at the server.
        assert_eq!(c.api_unauthorized, 0, "{why}");
    }
}

#[test]
fn a_token_response_without_expires_in_gets_the_fallback_lifetime() {
    // The server omits expires_in; its tokens live 10 minutes. The client gives them 300 s (catalogue E12):
    // renewed before the server would refuse them, never used as if they lived forever.
    let mock = mock_issuing(Duration::from_secs(600), true);
    let offset = Arc::new(AtomicI64::new(0));
    let session = session(&mock, &offset);
    login(&mock, &session);
    let tokens = session.tokens().unwrap();
    let lifetime = tokens.expires_at.unwrap().duration_since(tokens.issued_at.unwrap()).unwrap();
    assert_eq!(lifetime, Duration::from_secs(300), "the fallback lifetime");
    // 30 calls a minute apart: a renewal every 4 minutes (300 s less the 60 s skew), never a 401.
    let per_call = calls(&mock, &session, 30, Duration::from_secs(60));
    let total: u64 = per_call.iter().sum();
    assert!(per_call.iter().all(|&n| n <= 1), "{per_call:?}");
    assert_eq!(total, 7, "30 minutes of calls, a renewal every 4 minutes: {per_call:?}");
    let c = mock.counters();
    assert_eq!((c.api_unauthorized, c.invalid_grant_errors), (0, 0));
    assert!(session.tokens().unwrap().expires_at.is_some(), "never fresh forever");
}

#[test]
fn a_client_clock_minutes_off_the_servers_still_renews() {
    // Expiry is computed from expires_in on the client's own clock (catalogue E13): 10 minutes ahead or
    // behind makes no difference to when the client renews, relative to when it received the token.
    for offset_secs in [-600i64, 600] {
        for lifetime in [5u64, 3600] {
            let mock = mock_issuing(Duration::from_secs(lifetime), false);
            let offset = Arc::new(AtomicI64::new(0));
            let session = session(&mock, &offset);
            login(&mock, &session);
            // The client's clock jumps: the token it holds was timed on the old clock. Going back, it looks
            // fresh for ten more minutes, so the server's 401 tells: one renewal, one retry, no more.
            offset.store(offset_secs, Ordering::SeqCst);
            let jump = calls(&mock, &session, 1, Duration::from_secs(lifetime));
            assert_eq!(jump, vec![1], "clock {offset_secs:+} s, lifetime {lifetime} s");
            let unauthorized = mock.counters().api_unauthorized;
            assert!(unauthorized <= u64::from(offset_secs < 0), "{unauthorized} 401s");
            // From then on the tokens are timed on the new clock, minutes off the server's.
            let per_call = calls(&mock, &session, 6, Duration::from_secs(lifetime));
            let why = format!("clock {offset_secs:+} s, lifetime {lifetime} s: {per_call:?}");
            assert_eq!(per_call, vec![1; 6], "every call finds a dead token and renews it once ({why})");
            let c = mock.counters();
            assert_eq!((c.api_unauthorized, c.invalid_grant_errors), (unauthorized, 0), "no 401 ({why})");
        }
    }
}

#[test]
fn threads_on_one_short_lived_session_renew_once_per_expiry() {
    // 8 threads call at once after each expiry of a 1 s token: one renewal per round, every call succeeds.
    let mock = mock_issuing(Duration::from_secs(1), false);
    let offset = Arc::new(AtomicI64::new(0));
    let session = Arc::new(session(&mock, &offset));
    login(&mock, &session);
    for round in 0..5 {
        mock.advance_clock(Duration::from_secs(1));
        let before = mock.counters().refresh_token_grants;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = session.clone();
                std::thread::spawn(move || {
                    s.get(CUSTOMERS).map(|r| r.status().as_u16()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 200, "round {round}");
        }
        assert_eq!(mock.counters().refresh_token_grants - before, 1, "round {round}: one renewal");
    }
    assert_eq!(mock.counters().invalid_grant_errors, 0);
}

#[test]
fn the_timer_never_renews_twice_for_one_token() {
    // poll_timeout plans one renewal per token: half a 1 s token's lifetime after it arrived, and after
    // that renewal the next one half a lifetime later, never at once.
    let mock = mock_issuing(Duration::from_secs(1), false);
    let offset = Arc::new(AtomicI64::new(0));
    let session = session(&mock, &offset);
    login(&mock, &session);
    for _ in 0..5 {
        let due = session.poll_timeout().expect("a renewal is planned");
        assert!(due > session.now(), "not due at once after a renewal");
        let before = mock.counters().refresh_token_grants;
        session.handle_timeout().unwrap();
        assert_eq!(mock.counters().refresh_token_grants, before, "not due yet: nothing sent");
        mock.advance_clock(due.duration_since(session.now()).unwrap());
        session.handle_timeout().unwrap();
        assert_eq!(mock.counters().refresh_token_grants, before + 1, "due: one renewal");
    }
}
