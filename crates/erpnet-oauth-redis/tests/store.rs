//! The stores against a real redis-server (started and stopped by each test): the lock, the
//! compare-and-delete, fencing, encryption, TTLs, key names, errors and what `Debug` shows, through
//! both the blocking and the async store.

mod common;

use common::redis_server::{RedisServer, command};
use erpnet_oauth_core::store::{IssuedTo, StoreError};
use erpnet_oauth_core::{AccessToken, RefreshToken, Scopes, TokenSet};
use erpnet_oauth_redis::{AsyncRedisStore, ConfigError, EncryptionKey, InvalidLoginId, LoginId, RedisStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn tokens(n: u32) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(format!("access-token-secret-{n}")),
        expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(n))),
        issued_at: None,
        refresh_token: Some(RefreshToken::new(format!("refresh-token-secret-{n}"))),
        id_token: None,
        scopes: Scopes::default(),
    }
}

fn raw(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap()
}

fn a_dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn round_trip_in_the_file_stores_format_with_a_generation_and_a_ttl() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "alice").unwrap().ttl(Duration::from_secs(3600)).unwrap();
    assert_eq!(store.key(), "erpnet-oauth:tokens:alice");
    assert_eq!(store.lock_key(), "erpnet-oauth:tokens:alice:lock");
    assert_eq!(store.load().unwrap(), None);
    store.save(&tokens(1)).unwrap();
    assert_eq!(store.load().unwrap(), Some(tokens(1)));
    store.save(&tokens(2)).unwrap();
    assert_eq!(store.load().unwrap(), Some(tokens(2)));

    let mut c = raw(redis.port());
    let generation: i64 = redis::cmd("HGET").arg(store.key()).arg("generation").query(&mut c).unwrap();
    assert_eq!(generation, 2, "+ 1 per write");
    let json: Vec<u8> = redis::cmd("HGET").arg(store.key()).arg("tokens").query(&mut c).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed["version"], 1, "the file store's format");
    assert_eq!(parsed["tokens"]["refresh_token"], "refresh-token-secret-2");
    let ttl: i64 = redis::cmd("PTTL").arg(store.key()).query(&mut c).unwrap();
    assert!((3_590_000..=3_600_000).contains(&ttl), "the TTL is set on save: {ttl}");
    let _: () = redis::cmd("PEXPIRE").arg(store.key()).arg(5000).query(&mut c).unwrap();
    store.save(&tokens(3)).unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(store.key()).query(&mut c).unwrap();
    assert!(ttl > 3_590_000, "and renewed on each save: {ttl}");

    // The file store's own reader takes these bytes: one format for both.
    assert_eq!(TokenSet::from_store_file(&json).unwrap(), tokens(2));

    store.clear().unwrap();
    assert_eq!(store.load().unwrap(), None);
    let generation: i64 = redis::cmd("HGET").arg(store.key()).arg("generation").query(&mut c).unwrap();
    assert_eq!(generation, 4, "a delete keeps the generation (a tombstone)");
    let ttl: i64 = redis::cmd("PTTL").arg(store.key()).query(&mut c).unwrap();
    assert!(ttl > 0, "the tombstone expires too");
    store.clear().unwrap();
}

#[test]
fn the_lock_excludes_and_its_key_lives_only_for_the_lease() {
    let redis = RedisServer::start();
    let a = RedisStore::open(&redis.url(), "alice").unwrap().lease(Duration::from_secs(30)).unwrap();
    let b = a.clone().lock_wait(Duration::from_millis(300));
    let held = a.lock().unwrap();
    assert!(held.is_held());
    let mut c = raw(redis.port());
    let ttl: i64 = redis::cmd("PTTL").arg(a.lock_key()).query(&mut c).unwrap();
    assert!((1..=30_000).contains(&ttl), "the lock expires with its lease: {ttl}");
    let owner: String = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    assert_eq!(owner.len(), 32, "128 random bits in hex");
    assert!(owner.bytes().all(|b| b.is_ascii_hexdigit()));

    let e = b.lock().unwrap_err();
    assert!(matches!(e, StoreError::LockTimeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(erpnet_oauth_core::Error::from(e).is_retryable());
    drop(held);
    let exists: i64 = redis::cmd("EXISTS").arg(a.lock_key()).query(&mut c).unwrap();
    assert_eq!(exists, 0, "released on drop");
    let again = b.lock().unwrap();
    let other: String = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    assert_ne!(other, owner, "a new random owner per lock");
    drop(again);
}

/// 16 threads each do a read-modify-write of a plain counter under the lock, 25 times: no update is lost.
#[test]
fn lock_contention_loses_no_update() {
    let redis = RedisServer::start();
    let store = Arc::new(RedisStore::open(&redis.url(), "counter").unwrap());
    let port = redis.port();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let store = RedisStore::clone(&store);
            std::thread::spawn(move || {
                let mut c = raw(port);
                for _ in 0..25 {
                    let _lock = store.lock().unwrap();
                    let n: i64 =
                        redis::cmd("GET").arg("counter").query::<Option<i64>>(&mut c).unwrap().unwrap_or(0);
                    std::thread::yield_now();
                    let _: () = redis::cmd("SET").arg("counter").arg(n + 1).query(&mut c).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n: i64 = redis::cmd("GET").arg("counter").query(&mut raw(port)).unwrap();
    assert_eq!(n, 16 * 25);
}

#[test]
fn the_release_never_deletes_another_owners_lock() {
    let redis = RedisServer::start();
    let a = RedisStore::open(&redis.url(), "alice").unwrap().lease(Duration::from_secs(1)).unwrap();
    let b = a.clone().lease(Duration::from_secs(30)).unwrap();
    let stale = a.lock().unwrap();
    let mut c = raw(redis.port());
    let first: String = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    // A's lease runs out; B takes the lock (waiting for it).
    let current = b.lock().unwrap();
    let second: String = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    assert_ne!(first, second);
    drop(stale); // A's release: compare-and-delete sees B's owner
    let after: Option<String> = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    assert_eq!(after.as_deref(), Some(second.as_str()), "B's lock survives A's release");
    b.save(&tokens(7)).unwrap();
    drop(current);
    let after: Option<String> = redis::cmd("GET").arg(a.lock_key()).query(&mut c).unwrap();
    assert_eq!(after, None, "B's own release deletes it");
}

#[test]
fn fencing_rejects_a_stale_holders_save_and_delete() {
    let redis = RedisServer::start();
    let a = RedisStore::open(&redis.url(), "alice").unwrap().lease(Duration::from_secs(1)).unwrap();
    let b = a.clone().lease(Duration::from_secs(30)).unwrap();
    a.save(&tokens(1)).unwrap();

    let slow = a.lock().unwrap(); // generation 1 seen
    assert_eq!(a.load().unwrap(), Some(tokens(1)));
    let fresh = b.lock().unwrap(); // after A's lease: the lock is B's
    assert_eq!(b.load().unwrap(), Some(tokens(1)));
    b.save(&tokens(2)).unwrap();
    drop(fresh);

    let e = a.save(&tokens(99)).unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e:?}");
    assert!(e.is_retryable());
    let e = a.clear().unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e:?}");
    assert_eq!(b.load().unwrap(), Some(tokens(2)), "the newer tokens are kept");
    drop(slow);

    // Under a lock that is still held, saves go on (each one advances the generation seen).
    let lock = a.clone().lease(Duration::from_secs(30)).unwrap();
    let held = lock.lock().unwrap();
    lock.save(&tokens(3)).unwrap();
    lock.save(&tokens(4)).unwrap();
    drop(held);
    assert_eq!(b.load().unwrap(), Some(tokens(4)));

    // A save without the lock (a login) replaces the tokens and fences a holder that read before it.
    let holder = a.clone().lease(Duration::from_secs(30)).unwrap();
    let held = holder.lock().unwrap();
    b.save(&tokens(5)).unwrap();
    assert!(matches!(holder.save(&tokens(6)), Err(StoreError::Fenced { .. })));
    drop(held);
    assert_eq!(b.load().unwrap(), Some(tokens(5)), "the login won");

    // A delete does not reset the generation: a holder that read before it stays fenced after a new login.
    let held = holder.lock().unwrap();
    b.clear().unwrap();
    b.save(&tokens(8)).unwrap();
    assert!(matches!(holder.save(&tokens(9)), Err(StoreError::Fenced { .. })));
    drop(held);
    assert_eq!(b.load().unwrap(), Some(tokens(8)));
}

#[test]
fn encryption_round_trip_wrong_key_tampered_moved_and_mixed() {
    let redis = RedisServer::start();
    let key = EncryptionKey::new([0x11; 32]);
    let alice = RedisStore::open(&redis.url(), "alice").unwrap().encryption_key(key.clone());
    alice.save(&tokens(1)).unwrap();
    assert_eq!(alice.load().unwrap(), Some(tokens(1)));
    let mut c = raw(redis.port());
    let stored: Vec<u8> = redis::cmd("HGET").arg(alice.key()).arg("tokens").query(&mut c).unwrap();
    assert_eq!(stored.first(), Some(&1), "version byte 1");
    for secret in ["access-token-secret", "refresh-token-secret", "version", "tokens"] {
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is not readable");
    }
    alice.save(&tokens(1)).unwrap();
    let again: Vec<u8> = redis::cmd("HGET").arg(alice.key()).arg("tokens").query(&mut c).unwrap();
    assert_ne!(stored, again, "a fresh nonce per write");

    let wrong = alice.clone().encryption_key(EncryptionKey::new([0x22; 32]));
    let e = wrong.load().unwrap_err();
    assert!(matches!(&e, StoreError::Decrypt { reason, .. } if reason.contains("key is wrong")), "{e:?}");
    assert!(!e.is_retryable());

    let mut tampered = again.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let _: () = redis::cmd("HSET").arg(alice.key()).arg("tokens").arg(&tampered).query(&mut c).unwrap();
    assert!(matches!(alice.load(), Err(StoreError::Decrypt { .. })), "tampered");

    // Alice's ciphertext copied under Bob's key: the key name is the associated data.
    let _: () = redis::cmd("HSET").arg(alice.key()).arg("tokens").arg(&again).query(&mut c).unwrap();
    let bob = alice.for_login(LoginId::new("bob").unwrap());
    let _: () = redis::cmd("HSET").arg(bob.key()).arg("tokens").arg(&again).query(&mut c).unwrap();
    assert_eq!(alice.load().unwrap(), Some(tokens(1)));
    let e = bob.load().unwrap_err();
    assert!(matches!(e, StoreError::Decrypt { .. }), "moved: {e:?}");

    // Encrypted where plain is expected, plain where encrypted is expected: errors, never garbage.
    let plain = RedisStore::open(&redis.url(), "alice").unwrap();
    let e = plain.load().unwrap_err();
    assert!(
        matches!(&e, StoreError::Decrypt { reason, .. } if reason.contains("no encryption key")),
        "{e:?}"
    );
    let carol = RedisStore::open(&redis.url(), "carol").unwrap();
    carol.save(&tokens(3)).unwrap();
    let e = carol.clone().encryption_key(key).load().unwrap_err();
    assert!(matches!(&e, StoreError::Decrypt { reason, .. } if reason.contains("unencrypted")), "{e:?}");
}

#[test]
fn bound_stores_refuse_another_clients_tokens() {
    let redis = RedisServer::start();
    let mine = IssuedTo::new("https://a.example/id", "app");
    let other = IssuedTo::new("https://b.example/id", "app");
    let store = RedisStore::open(&redis.url(), "alice").unwrap().bound_to(mine.clone());
    store.save(&tokens(1)).unwrap();
    assert_eq!(store.load().unwrap(), Some(tokens(1)));
    let e = store.clone().bound_to(other.clone()).load().unwrap_err();
    match e {
        StoreError::IssuedToAnother { path, stored, expected } => {
            assert_eq!(path.to_str(), Some("erpnet-oauth:tokens:alice"), "the key");
            assert_eq!((stored, expected), (mine, other));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn login_ids_prefixes_and_durations_are_checked() {
    let redis = RedisServer::start();
    assert!(matches!(
        RedisStore::open(&redis.url(), "alice:lock"),
        Err(ConfigError::LoginId(InvalidLoginId::Character { offset: 5 }))
    ));
    assert!(matches!(RedisStore::open(&redis.url(), ""), Err(ConfigError::LoginId(InvalidLoginId::Empty))));
    assert!(AsyncRedisStore::open(&redis.url(), "a\nb").is_err());
    let digest = RedisStore::open_login(&redis.url(), LoginId::digest("user:with spaces\0")).unwrap();
    assert!(digest.key().starts_with("erpnet-oauth:tokens:sha256-"), "{}", digest.key());
    let store = RedisStore::open(&redis.url(), "alice").unwrap();
    assert_eq!(store.clone().prefix("app:").unwrap().key(), "app:alice");
    assert!(matches!(store.clone().prefix("a b"), Err(ConfigError::Prefix(_))));
    assert!(matches!(store.clone().prefix("{x}:"), Err(ConfigError::Prefix(_))));
    assert!(matches!(store.clone().lease(Duration::from_millis(10)), Err(ConfigError::Duration(_))));
    assert!(matches!(store.clone().lease(Duration::from_secs(3600)), Err(ConfigError::Duration(_))));
    assert!(matches!(store.clone().ttl(Duration::from_secs(1)), Err(ConfigError::Duration(_))));
    assert!(matches!(RedisStore::open("http://x/", "a"), Err(ConfigError::Url { .. })));
    let e = RedisStore::open("mysql://user:hunter2@x/", "a").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn debug_and_errors_show_no_password_token_or_key() {
    let port = a_dead_port();
    let url = format!("redis://:hunter2-password@127.0.0.1:{port}/0");
    let store = RedisStore::open(&url, "alice")
        .unwrap()
        .encryption_key(EncryptionKey::new([0xAB; 32]))
        .timeout(Duration::from_millis(500))
        .unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("[redacted]") && debug.contains("erpnet-oauth:tokens:alice"), "{debug}");
    assert!(!debug.to_lowercase().contains("abab") && !debug.contains("171"), "no key bytes: {debug}");
    let async_store = AsyncRedisStore::open(&url, "alice").unwrap();
    assert!(!format!("{async_store:?}").contains("hunter2"));

    let e = store.save(&tokens(1)).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("secret"), "no token: {shown}");
        assert!(shown.contains("redis://:[redacted]@127.0.0.1"), "{shown}");
    }
    assert!(e.is_retryable());
    for e in [store.load().unwrap_err(), store.lock().unwrap_err(), store.clear().unwrap_err()] {
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"));
    }
    assert_eq!(
        erpnet_oauth_redis::redact_url("rediss://user:hunter2@h:6380/1"),
        "rediss://user:[redacted]@h:6380/1"
    );
}

/// A refusal (a wrong password, none, an ACL's NOPERM) is a configuration error: not retryable, not
/// `Unavailable`, saying what is wrong, never showing the password.
fn assert_refused(e: &StoreError, secret: &str) {
    assert!(matches!(e, StoreError::Other(_)), "not Unavailable: {e:?}");
    assert!(!e.is_retryable(), "a refusal is not retryable: {e:?}");
    let text = e.to_string();
    assert!(text.contains("refused this client"), "{text}");
    assert!(text.contains("check the user and password in the URL and the server's ACL"), "{text}");
    assert!(!text.contains(secret) && !format!("{e:?}").contains(secret), "{text}");
}

/// The three refusals, each with the password not to show and whether the client may read (an ACL user
/// that may not run scripts reads, but neither locks nor writes).
fn refusing_urls(redis: &RedisServer) -> [(String, &'static str, bool); 3] {
    // NOAUTH (no password), WRONGPASS (a wrong one), NOPERM (an ACL user without scripts).
    redis.command(&["ACL", "SETUSER", "limited", "on", ">limited-pass", "~*", "+@all", "-@scripting"]);
    assert_eq!(redis.command(&["CONFIG", "SET", "requirepass", "right-pass"]), "+OK");
    let port = redis.port();
    [
        (format!("redis://127.0.0.1:{port}/"), "right-pass", false),
        (format!("redis://:wrong-pass@127.0.0.1:{port}/"), "wrong-pass", false),
        (format!("redis://limited:limited-pass@127.0.0.1:{port}/"), "limited-pass", true),
    ]
}

#[test]
fn a_redis_that_refuses_the_client_is_a_configuration_error() {
    let redis = RedisServer::start();
    let refusing = refusing_urls(&redis);
    let store =
        RedisStore::open(&format!("redis://:right-pass@127.0.0.1:{}/", redis.port()), "alice").unwrap();
    store.save(&tokens(1)).unwrap();
    assert_eq!(store.load().unwrap(), Some(tokens(1)));
    for (url, secret, reads) in refusing {
        let other = RedisStore::open(&url, "alice").unwrap().lock_wait(Duration::from_millis(200));
        match other.load() {
            Ok(found) => assert!(reads && found == Some(tokens(1)), "{url}: {found:?}"),
            Err(e) => assert_refused(&e, secret),
        }
        assert_refused(&other.lock().unwrap_err(), secret);
        assert_refused(&other.save(&tokens(2)).unwrap_err(), secret);
        assert_refused(&other.clear().unwrap_err(), secret);
    }
    assert_eq!(store.load().unwrap(), Some(tokens(1)), "nothing was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_store_refused_by_redis_has_a_configuration_error() {
    let redis = RedisServer::start();
    let refusing = refusing_urls(&redis);
    let url = format!("redis://:right-pass@127.0.0.1:{}/", redis.port());
    let store = AsyncRedisStore::open(&url, "alice").unwrap();
    store.save(&tokens(1)).await.unwrap();
    for (url, secret, reads) in refusing {
        let other = AsyncRedisStore::open(&url, "alice").unwrap().lock_wait(Duration::from_millis(200));
        match other.load().await {
            Ok(found) => assert!(reads && found == Some(tokens(1)), "{url}: {found:?}"),
            Err(e) => assert_refused(&e, secret),
        }
        assert_refused(&other.lock().await.unwrap_err(), secret);
        assert_refused(&other.save(&tokens(2)).await.unwrap_err(), secret);
        assert_refused(&other.clear().await.unwrap_err(), secret);
    }
    assert_eq!(store.load().await.unwrap(), Some(tokens(1)), "nothing was changed");
}

#[test]
fn a_unix_socket_with_its_password_in_the_query_never_shows_it() {
    let redis = RedisServer::builder().password("sock-pass-Kq27").unix_socket().start();
    let url = redis.unix_url().unwrap();
    let socket = redis.socket().unwrap();
    assert_eq!(url, format!("redis+unix://{}?pass=sock-pass-Kq27", socket.display()));
    let store = RedisStore::open(&url, "alice").unwrap();
    assert!(!format!("{store:?}").contains("sock-pass"), "{store:?}");
    store.save(&tokens(1)).unwrap();
    assert_eq!(store.load().unwrap(), Some(tokens(1)));
    assert_eq!(redis.command(&["HEXISTS", store.key(), "tokens"]), ":1", "through the socket");
    let wrong = format!("redis+unix://{}?db=0&pass=sock-pass-Kq27-wrong", socket.display());
    let e = RedisStore::open(&wrong, "alice").unwrap().load().unwrap_err();
    assert_refused(&e, "sock-pass-Kq27");
    assert!(e.to_string().contains("?db=0&pass=[redacted]"), "{e}");
    drop(redis);
    let e = store.load().unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(!e.to_string().contains("sock-pass") && e.to_string().contains("pass=[redacted]"), "{e}");
}

#[test]
fn a_redis_restart_heals_the_pooled_connections() {
    let mut redis = RedisServer::start_with(common::redis_server::Persistence::AofAlways);
    let store = RedisStore::open(&redis.url(), "alice").unwrap();
    store.save(&tokens(1)).unwrap();
    redis.restart();
    // The pooled connection was dropped by the restart: the call runs once more on a new one.
    assert_eq!(store.load().unwrap(), Some(tokens(1)), "saved before the restart, found at the first call");
    redis.restart();
    let held = store.lock().unwrap();
    store.save(&tokens(2)).unwrap();
    drop(held);
    assert_eq!(redis.command(&["EXISTS", store.lock_key()]), ":0", "released");
    assert_eq!(redis.command(&["HGET", store.key(), "generation"]), "2");
    redis.restart();
    store.clear().unwrap(); // a delete, the first call after a restart
    assert_eq!(store.load().unwrap(), None);
}

// ----- the async store -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_round_trip_fencing_and_interplay_with_the_blocking_store() {
    let redis = RedisServer::start();
    let a = AsyncRedisStore::open(&redis.url(), "alice").unwrap().lease(Duration::from_secs(1)).unwrap();
    let b = a.clone().lease(Duration::from_secs(30)).unwrap();
    assert_eq!(a.load().await.unwrap(), None);
    a.save(&tokens(1)).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(tokens(1)));
    let blocking = RedisStore::open(&redis.url(), "alice").unwrap();
    let read = tokio::task::spawn_blocking(move || blocking.load()).await.unwrap();
    assert_eq!(read.unwrap(), Some(tokens(1)), "the same keys and format as the blocking store");

    let slow = a.lock().await.unwrap();
    let fresh = b.lock().await.unwrap(); // after A's lease
    b.save(&tokens(2)).await.unwrap();
    drop(fresh);
    let e = a.save(&tokens(99)).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e:?}");
    assert!(matches!(a.clear().await, Err(StoreError::Fenced { .. })));
    drop(slow);
    assert_eq!(b.load().await.unwrap(), Some(tokens(2)));

    let key = EncryptionKey::new([3; 32]);
    let enc = b.clone().encryption_key(key.clone());
    enc.save(&tokens(3)).await.unwrap();
    assert_eq!(enc.load().await.unwrap(), Some(tokens(3)));
    assert!(matches!(b.load().await, Err(StoreError::Decrypt { .. })));
    assert!(matches!(
        enc.clone().encryption_key(EncryptionKey::new([4; 32])).load().await,
        Err(StoreError::Decrypt { .. })
    ));
    let mut c = raw(redis.port());
    let ttl: i64 = redis::cmd("PTTL").arg(b.key()).query(&mut c).unwrap();
    assert!(ttl > 29 * 24 * 3600 * 1000, "the default TTL, 30 days: {ttl}");
}

/// 64 tasks contend for the lock, each incrementing a plain counter under it: no update is lost, and
/// the lock is released by drop without blocking the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_lock_contention_loses_no_update() {
    let redis = RedisServer::start();
    let store = AsyncRedisStore::open(&redis.url(), "counter").unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = store.clone();
        let client = client.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            for _ in 0..5 {
                let lock = store.lock().await.unwrap();
                let n: Option<i64> = redis::cmd("GET").arg("counter").query_async(&mut c).await.unwrap();
                tokio::task::yield_now().await;
                let _: () = redis::cmd("SET")
                    .arg("counter")
                    .arg(n.unwrap_or(0) + 1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                drop(lock);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let n: i64 = redis::cmd("GET").arg("counter").query_async(&mut c).await.unwrap();
    assert_eq!(n, 64 * 5);
    assert_eq!(done.load(Ordering::Relaxed), 320);
}

/// On a runtime with one thread, a dropped lock is released by a spawned task, and another task then
/// takes it: the drop waited for nothing.
#[test]
fn an_async_lock_dropped_on_a_single_threaded_runtime_is_released() {
    let redis = RedisServer::start();
    let url = redis.url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = AsyncRedisStore::open(&url, "alice").unwrap().lock_wait(Duration::from_secs(10));
        let held = store.lock().await.unwrap();
        let other = store.clone();
        let waiter = tokio::spawn(async move { other.lock().await.map(|l| l.is_held()) });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "the lock is held: the waiter waits");
        drop(held);
        assert!(waiter.await.unwrap().unwrap(), "the waiter got the lock once it was released");
    });
    // Dropped outside any runtime: released on a thread of its own.
    let store = AsyncRedisStore::open(&redis.url(), "bob").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let held = runtime.block_on(store.lock()).unwrap();
    drop(held);
    let mut released = false;
    for _ in 0..500 {
        if command(redis.port(), &["EXISTS", store.lock_key()]).unwrap() == ":0" {
            released = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(released, "released by its thread");
}

#[tokio::test]
async fn async_errors_when_redis_is_unreachable() {
    let url = format!("redis://:hunter2@127.0.0.1:{}/", a_dead_port());
    let store = AsyncRedisStore::open(&url, "alice").unwrap().timeout(Duration::from_millis(500)).unwrap();
    for e in [
        store.load().await.unwrap_err(),
        store.save(&tokens(1)).await.unwrap_err(),
        store.lock().await.unwrap_err(),
        store.clear().await.unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    let _ = SystemTime::now();
}

#[test]
fn a_key_of_another_type_is_reported_corrupt_and_left_alone() {
    let redis = RedisServer::start();
    let store = RedisStore::open(&redis.url(), "alice").unwrap();
    assert_eq!(redis.command(&["SET", store.key(), "not a hash"]), "+OK");
    let e = store.load().unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let e = store.save(&tokens(1)).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(redis.command(&["GET", store.key()]), "not a hash", "left as it was");
    // A hash whose tokens are not a store file.
    assert_eq!(redis.command(&["DEL", store.key()]), ":1");
    assert_eq!(redis.command(&["HSET", store.key(), "tokens", "{broken"]), ":1");
    let e = store.load().unwrap_err();
    assert!(matches!(&e, StoreError::Corrupt { path, .. } if path.to_str() == Some(store.key())), "{e:?}");
    assert!(!e.to_string().contains("broken"), "the content is never quoted: {e}");
}
