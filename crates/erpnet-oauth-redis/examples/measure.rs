//! Measurements for docs/PERFORMANCE.md: token reads per second through the Redis store and through the
//! file store, in the same run; the lock wait (p50, p99, max) with 64 callers contending, through the
//! blocking and the async store. Starts its own redis-server (no persistence, loopback) and removes it.
//!
//! `cargo run --release -p erpnet-oauth-redis --example measure`
//!
//! (The refresh grants per expiry come from the 4-process test:
//! `cargo test -p erpnet-oauth-redis --test processes -- four_processes`.)

use erpnet_oauth_redis::test_util as redis_server;

use erpnet_oauth_core::{AccessToken, RefreshToken, Scopes, TokenSet};
use erpnet_oauth_redis::{AsyncRedisStore, EncryptionKey, RedisStore};
use erpnet_oauth_store::FileStore;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, UNIX_EPOCH};

const READS: usize = 20_000;
const CALLERS: usize = 64;
const ROUNDS: usize = 20;

fn tokens() -> TokenSet {
    TokenSet {
        access_token: AccessToken::new("a".repeat(900)),
        expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        issued_at: None,
        refresh_token: Some(RefreshToken::new("r".repeat(43))),
        id_token: None,
        scopes: Scopes::default(),
    }
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn reads(name: &str, threads: usize, load: impl Fn() + Send + Sync + 'static) {
    let load = Arc::new(load);
    for _ in 0..200 {
        load();
    }
    let per = READS / threads;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let load = load.clone();
            std::thread::spawn(move || {
                for _ in 0..per {
                    load();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "  {name:<32} {threads:>2} thread(s): {:>7.0} reads/s ({:.1} µs per read in each thread)",
        per_second(per * threads, elapsed),
        elapsed.as_secs_f64() * 1e6 / (per * threads) as f64 * threads as f64
    );
}

fn main() {
    let redis = redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "erpnet-oauth-redis measurements (redis-server on loopback, no persistence; {READS} reads each)"
    );
    println!("token reads (load: read, decode, check the binding):");

    let file = FileStore::new(dir.path().join("tokens.json"));
    file.save(&tokens()).unwrap();
    let redis_store = RedisStore::open(&redis.url(), "reader").unwrap();
    redis_store.save(&tokens()).unwrap();
    let encrypted =
        RedisStore::open(&redis.url(), "encrypted").unwrap().encryption_key(EncryptionKey::new([9; 32]));
    encrypted.save(&tokens()).unwrap();
    for threads in [1, 8] {
        let f = file.clone();
        reads("FileStore::load", threads, move || assert!(f.load().unwrap().is_some()));
        let r = redis_store.clone();
        reads("RedisStore::load", threads, move || assert!(r.load().unwrap().is_some()));
        let e = encrypted.clone();
        reads("RedisStore::load (AES-256-GCM)", threads, move || assert!(e.load().unwrap().is_some()));
    }

    println!(
        "lock wait: {CALLERS} callers ask for one login's lock at the same moment (a barrier), {ROUNDS} rounds; \
         under the lock: load + save"
    );
    let store = RedisStore::open(&redis.url(), "contended").unwrap();
    store.save(&tokens()).unwrap();
    let barrier = Arc::new(Barrier::new(CALLERS));
    let start = Instant::now();
    let handles: Vec<_> = (0..CALLERS)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut waits = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait();
                    let asked = Instant::now();
                    let lock = store.lock().unwrap();
                    waits.push(asked.elapsed());
                    let t = store.load().unwrap().unwrap();
                    store.save(&t).unwrap();
                    drop(lock);
                }
                waits
            })
        })
        .collect();
    let mut waits: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    report("RedisStore, 64 threads", &mut waits, start.elapsed());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let url = redis.url();
    let (mut waits, elapsed) = runtime.block_on(async move {
        let store = AsyncRedisStore::open(&url, "contended-async").unwrap();
        store.save(&tokens()).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let store = store.clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                let mut waits = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait().await;
                    let asked = Instant::now();
                    let lock = store.lock().await.unwrap();
                    waits.push(asked.elapsed());
                    let t = store.load().await.unwrap().unwrap();
                    store.save(&t).await.unwrap();
                    drop(lock);
                }
                waits
            });
        }
        let mut all = Vec::new();
        while let Some(w) = tasks.join_next().await {
            all.extend(w.unwrap());
        }
        (all, start.elapsed())
    });
    report("AsyncRedisStore, 64 tasks, 4 threads", &mut waits, elapsed);
}

fn report(name: &str, waits: &mut [Duration], elapsed: Duration) {
    waits.sort();
    let n = waits.len();
    println!(
        "  {name:<38} {n} locks in {:.2} s ({:.0} locks/s): wait p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        per_second(n, elapsed),
        percentile(waits, 0.50).as_secs_f64() * 1e3,
        percentile(waits, 0.99).as_secs_f64() * 1e3,
        waits.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
