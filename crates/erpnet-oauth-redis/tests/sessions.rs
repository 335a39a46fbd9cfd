//! Sessions on the Redis stores against the mock ERP.net: Redis stopped and restarted during a run
//! (typed retryable errors while it is down, no refresh sent, recovery, the tokens saved before the stop
//! found after it), through the blocking and the async session; and a holder stalled past its lease
//! fenced instead of overwriting a new login.

mod common;

use common::redis_server::{Persistence, RedisServer};
use common::*;
use erpnet_oauth_core::store::{StoreError, StoreLock};
use erpnet_oauth_core::{Error, TokenSet};
use erpnet_oauth_redis::{AsyncRedisStore, RedisStore};
use erpnet_oauth_ureq::{Session, TokenStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const API: &str = "/api/domain/odata/Crm_Customers?$top=1";

fn unavailable(e: &Error) -> bool {
    matches!(e, Error::Store(StoreError::Unavailable { .. }))
}

#[test]
fn blocking_redis_stopped_and_restarted_during_a_run() {
    let mut redis = RedisServer::start_with(Persistence::AofAlways);
    let mock = mock();
    let client = client(&mock.base_url());
    let store = RedisStore::open(&redis.url(), "alice")
        .unwrap()
        .for_client(&client)
        .timeout(Duration::from_secs(1))
        .unwrap();
    let clock = SetClock::at(mock.now());
    let session = Session::builder(client.clone()).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    login(&mock, &session);
    assert_eq!(session.get(API).unwrap().status(), 200);
    let saved = store.load().unwrap().unwrap();
    mock.reset_counters();

    redis.kill();
    // The access token is still valid: calls go on from memory.
    assert_eq!(session.get(API).unwrap().status(), 200, "a valid token needs no store");
    // It expires while Redis is down: the renewal cannot lock the store, so nothing is sent.
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    let e = session.get(API).unwrap_err();
    assert!(unavailable(&e), "the typed error: {e:?}");
    assert!(e.is_retryable(), "{e}");
    assert!(!e.is_login_required());
    let e = session.access_token().unwrap_err();
    assert!(e.is_retryable(), "callers during the retry backoff get a retryable error too: {e:?}");
    assert_eq!(mock.counters().token_requests, 0, "no refresh is sent without the lock");

    redis.restart();
    mock.advance_clock(Duration::from_secs(11)); // past the session's retry backoff (10 s)
    clock.set(mock.now());
    assert_eq!(store.load().unwrap(), Some(saved.clone()), "the tokens saved before the stop survived");
    // The first call after the restart succeeds: a pooled connection the restart dropped is replaced
    // within the call.
    assert_eq!(session.get(API).unwrap().status(), 200, "recovered");
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses), (1, 0));
    let after = store.load().unwrap().unwrap();
    assert_ne!(after.refresh_token, saved.refresh_token, "the rotated refresh token is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_redis_stopped_and_restarted_during_a_run() {
    let mut redis = RedisServer::start_with(Persistence::AofAlways);
    let mock = mock();
    let client = client(&mock.base_url());
    let store = AsyncRedisStore::open(&redis.url(), "alice")
        .unwrap()
        .for_client(&client)
        .timeout(Duration::from_secs(1))
        .unwrap();
    let clock = SetClock::at(mock.now());
    let session = erpnet_oauth_async::Session::builder(client.clone())
        .store(store.clone())
        .clock(clock.as_fn())
        .build()
        .await
        .unwrap();
    login_async(&mock, &session).await;
    assert_eq!(session.get(API).await.unwrap().status(), 200);
    let saved = store.load().await.unwrap().unwrap();
    mock.reset_counters();
    // The login's lock is released by a task spawned when it was dropped: wait until it is gone (were
    // Redis stopped before, the lock would come back with the AOF and hold the next renewal for its lease).
    let mut released = false;
    for _ in 0..1000 {
        if redis.command(&["EXISTS", store.lock_key()]) == ":0" {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the login's lock was released");

    redis.kill();
    assert_eq!(session.get(API).await.unwrap().status(), 200, "a valid token needs no store");
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    let e = session.get(API).await.unwrap_err();
    assert!(unavailable(&e), "the typed error: {e:?}");
    assert!(e.is_retryable());
    assert_eq!(mock.counters().token_requests, 0, "no refresh is sent without the lock");

    redis.restart();
    mock.advance_clock(Duration::from_secs(11));
    clock.set(mock.now());
    assert_eq!(session.get(API).await.unwrap().status(), 200, "recovered at the first call");
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses), (1, 0));
    let after = store.load().await.unwrap().unwrap();
    assert_ne!(after.refresh_token, saved.refresh_token);
}

/// Waits until no one holds the lock of `store` (an async lock is released by a spawned task).
async fn released(redis: &RedisServer, lock_key: &str) {
    for _ in 0..1000 {
        if redis.command(&["EXISTS", lock_key]) == ":0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the lock {lock_key} was not released");
}

/// Redis (with persistence) restarted between two calls of a blocking session: the first call after the
/// restart succeeds, on the store's kept connections, and the restart costs no refresh grant: one per
/// expiry, as without it.
#[test]
fn blocking_the_first_calls_after_a_redis_restart_succeed() {
    let mut redis = RedisServer::start_with(Persistence::AofAlways);
    let mock = mock();
    let client = client(&mock.base_url());
    let store = RedisStore::open(&redis.url(), "alice")
        .unwrap()
        .for_client(&client)
        .timeout(Duration::from_secs(1))
        .unwrap();
    let clock = SetClock::at(mock.now());
    let session = Session::builder(client.clone()).store(store.clone()).clock(clock.as_fn()).build().unwrap();
    login(&mock, &session);
    mock.reset_counters();
    // A renewal through the store, whose pool then keeps its connections.
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    assert_eq!(session.get(API).unwrap().status(), 200);
    assert_eq!(mock.counters().refresh_token_grants, 1);
    let saved = store.load().unwrap().unwrap();

    redis.restart();
    assert_eq!(store.load().unwrap(), Some(saved.clone()), "a read, the first call after the restart");
    redis.restart();
    // A renewal (lock, reload, save, release) is the first use of the store after this restart.
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    assert_eq!(session.get(API).unwrap().status(), 200, "a renewal, the first call after the restart");
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses), (2, 0), "one grant per expiry: {c:?}");
    assert_eq!(c.api_ok, 2, "{c:?}");
    let after = store.load().unwrap().unwrap();
    assert_ne!(after.refresh_token, saved.refresh_token, "the rotated refresh token is stored");
    assert_eq!(redis.command(&["EXISTS", store.lock_key()]), ":0", "the lock is released");
    assert_eq!(
        redis.command(&["HGET", store.key(), "generation"]),
        "3",
        "login, two refreshes: no write twice"
    );
}

/// The same through an async session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_the_first_calls_after_a_redis_restart_succeed() {
    let mut redis = RedisServer::start_with(Persistence::AofAlways);
    let mock = mock();
    let client = client(&mock.base_url());
    let store = AsyncRedisStore::open(&redis.url(), "alice")
        .unwrap()
        .for_client(&client)
        .timeout(Duration::from_secs(1))
        .unwrap();
    let clock = SetClock::at(mock.now());
    let session = erpnet_oauth_async::Session::builder(client.clone())
        .store(store.clone())
        .clock(clock.as_fn())
        .build()
        .await
        .unwrap();
    login_async(&mock, &session).await;
    mock.reset_counters();
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    assert_eq!(session.get(API).await.unwrap().status(), 200);
    assert_eq!(mock.counters().refresh_token_grants, 1);
    let saved = store.load().await.unwrap().unwrap();
    released(&redis, store.lock_key()).await;

    redis.restart();
    assert_eq!(store.load().await.unwrap(), Some(saved.clone()), "a read, the first call after the restart");
    redis.restart();
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    assert_eq!(session.get(API).await.unwrap().status(), 200, "a renewal, the first call after the restart");
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses), (2, 0), "one grant per expiry: {c:?}");
    assert_eq!(c.api_ok, 2, "{c:?}");
    let after = store.load().await.unwrap().unwrap();
    assert_ne!(after.refresh_token, saved.refresh_token, "the rotated refresh token is stored");
    released(&redis, store.lock_key()).await;
    assert_eq!(
        redis.command(&["HGET", store.key(), "generation"]),
        "3",
        "login, two refreshes: no write twice"
    );
}

/// A blocking store whose first save stalls (a process paused after the server answered), past the
/// lock's lease.
struct Stalling {
    inner: RedisStore,
    stall: Duration,
    stalled: AtomicBool,
}

impl TokenStore for Stalling {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.inner.load()
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        if !self.stalled.swap(true, Ordering::SeqCst) {
            std::thread::sleep(self.stall);
        }
        self.inner.save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear()
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        self.inner.lock()
    }
}

/// Instance A refreshes, then stalls before its save for longer than its lease; meanwhile the user logs
/// in again through instance B. A's late save is fenced: the new login is kept, never overwritten by the
/// old login's tokens; A's next renewal adopts the new login from the store without sending anything.
#[test]
fn a_holder_stalled_past_its_lease_cannot_overwrite_a_new_login() {
    let redis = RedisServer::start();
    let mock = mock();
    let client = client(&mock.base_url());
    let base = RedisStore::open(&redis.url(), "alice").unwrap().for_client(&client);
    let clock = SetClock::at(mock.now());
    let b = Session::builder(client.clone()).store(base.clone()).clock(clock.as_fn()).build().unwrap();
    login(&mock, &b);
    let stalling = Stalling {
        inner: base.clone().lease(Duration::from_secs(1)).unwrap(),
        stall: Duration::from_millis(2500),
        stalled: AtomicBool::new(false),
    };
    let a = Arc::new(Session::builder(client.clone()).store(stalling).clock(clock.as_fn()).build().unwrap());
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    mock.reset_counters();

    let a2 = a.clone();
    let refreshing = std::thread::spawn(move || a2.get(API).map(|r| r.status()).map_err(Box::new));
    // While A stalls (its lease of 1 s runs out), B logs in again: its save waits for the lock, then wins.
    while mock.counters().refresh_token_grants == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    login(&mock, &b);
    let new_login = base.load().unwrap().unwrap();
    let a_result = refreshing.join().unwrap();
    // The server answered A, so A uses its new tokens in memory (the core's rule: the old refresh token
    // is spent), and its callers are told the write failed, with the store's reason.
    match a_result.as_ref().map_err(|e| &**e) {
        Err(Error::Refresh(erpnet_oauth_core::RefreshError::Persist(failure))) => {
            assert!(failure.reason.contains("changed by another holder"), "{failure:?}");
            // Fenced: the next renewal adopts the stored tokens, so trying again is right.
            assert!(failure.retryable, "{failure:?}");
        }
        other => panic!("A's save was fenced, and its call says so: {other:?}"),
    }
    assert_eq!(base.load().unwrap(), Some(new_login.clone()), "the new login was not overwritten");
    let a_tokens = a.tokens().unwrap();
    assert_ne!(
        a_tokens.refresh_token, new_login.refresh_token,
        "A holds its own (unstored) tokens in memory"
    );

    // A's next renewal re-reads the store and adopts the new login: nothing sent, no reuse.
    mock.advance_clock(Duration::from_secs(3600));
    clock.set(mock.now());
    mock.reset_counters();
    assert_eq!(b.get(API).unwrap().status(), 200);
    assert_eq!(a.get(API).unwrap().status(), 200);
    let c = mock.counters();
    assert_eq!((c.refresh_token_grants, c.refresh_token_reuses, c.invalid_grant_errors), (1, 0, 0));
    assert_eq!(
        a.tokens().unwrap().refresh_token,
        base.load().unwrap().unwrap().refresh_token,
        "A adopted it"
    );
}
