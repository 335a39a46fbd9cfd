//! A shared token store on Redis (or Valkey), for ERP.net integrations that run as several instances:
//! many processes on many machines share one login and refresh it **once** between them, so a rotated
//! refresh token is never sent twice (which ERP.net would take as reuse, ending the login).
//!
//! - [`RedisStore`] (feature `blocking`): implements `erpnet_oauth_ureq::TokenStore`.
//! - [`AsyncRedisStore`] (feature `async`): implements `erpnet_oauth_async::TokenStore` on tokio, never
//!   blocking a runtime thread.
//!
//! Both are on by default; take one with `default-features = false, features = ["blocking"]` (or
//! `"async"`). The feature `tls` adds `rediss://` URLs (rustls with its ring provider and the system's
//! root certificates; no system library). The two stores read and write the same keys in the same
//! format, so blocking and async instances share a login.
//!
//! ```no_run
//! # #[cfg(feature = "blocking")] {
//! use erpnet_oauth_redis::{EncryptionKey, RedisStore};
//! use erpnet_oauth_ureq::{ClientConfig, Session};
//! use std::time::Duration;
//!
//! let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first").build()?;
//! let store = RedisStore::open("redis://:password@redis.internal:6379/0", "user-42")?
//!     .for_client(&client) // tokens of another instance or client are refused
//!     .encryption_key(EncryptionKey::new([0x42; 32])) // from your secret manager
//!     .lease(Duration::from_secs(70))?; // >= 2 × the session's HTTP timeout (30 s) + margin
//! let session = Session::builder(client).store(store).build()?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Keys
//!
//! With the prefix `P` (default `erpnet-oauth:tokens:`) and the application's own id for the login `ID`
//! ([`LoginId`]: 1 to 200 characters of `A-Z a-z 0-9 . _ - @ + =`, anything else refused, or any
//! bytes through [`LoginId::digest`]):
//!
//! | Key | Type | What |
//! | --- | --- | --- |
//! | `P` `ID` | hash | `generation` (an integer, + 1 on every write) and `tokens`: the same JSON store file as `FileStore` writes (`{"version": 1, "issued_to": ..., "tokens": ...}`), or its ciphertext |
//! | `P` `ID` `:lock` | string | the lock holder's random owner value, with the lease as its expiry |
//!
//! A login id holds no `:`, so no id names another login's lock key.
//!
//! # The lock, and the reload under it
//!
//! Every renewal of a session runs `LockStore → LoadStore → (send the refresh request, unless the tokens
//! re-read are already newer than the ones held: another instance refreshed meanwhile, and they are
//! adopted) → SaveStore | ClearStore → UnlockStore`, a logout `LockStore → LoadStore → (revoke) →
//! ClearStore → UnlockStore`, a login's save `LockStore → SaveStore → UnlockStore`: the core's lifecycle,
//! unchanged. Here `LockStore` is `SET P ID:lock OWNER NX PX LEASE` with 128 random bits as
//! the owner, retried with a bounded backoff (2 ms doubling to 50 ms, jittered, never past the lease's
//! end) for at most [`RedisStore::lock_wait`] (default: the lease plus 5 s), then
//! [`StoreError::LockTimeout`], retryable. No refresh is ever sent without the lock. The release is an
//! atomic compare-and-delete (a Lua script): a holder never deletes a lock that another owner took after
//! its own lease ran out.
//!
//! The **lease** (default 70 s) must outlast a whole renewal: the token request and, when the ID token
//! is signed with a new key, a JWKS request, each bounded by the session's HTTP timeout (30 s by
//! default). Set it to at least twice that timeout plus a margin. It is also how long a holder that died
//! keeps the others waiting.
//!
//! # Fencing
//!
//! Every save and delete is a compare-and-set on the `generation` (a Lua script). Taking the lock reads
//! the generation in the same step; a save under that lock succeeds only if the generation is still the
//! same, and writes generation + 1. A holder whose lease ran out while it was slow (a stalled process, a
//! request longer than the lease), after which another holder took the lock and stored newer tokens,
//! gets [`StoreError::Fenced`] instead of overwriting them with older ones; a delete (after
//! `invalid_grant`) is fenced the same way, so it cannot delete tokens another holder stored meanwhile.
//!
//! What a fenced holder's new tokens become: the server answered its refresh, so they are live at the
//! server, and the session keeps them in memory and uses them (the core's rule for a failed save: the old
//! refresh token is spent), reporting the failed write to its callers (`RefreshError::Persist`,
//! retryable). They are not stored: the store keeps the other holder's tokens. Its next renewal re-reads
//! the store, finds the other holder's tokens and adopts them without sending anything. With ERP.net's
//! one-time refresh tokens, only one of two refreshes with the same refresh token can succeed, so the
//! other holder's write means either a new login (which wins) or a server that accepted both; either way
//! the stored tokens are the ones to keep. When the lease is long enough (above), fencing only acts on
//! stalled processes.
//!
//! A save without the lock (a login driven by hand, a tool) replaces what is stored and bumps the
//! generation, so any holder that read before it is fenced: a fresh login wins. (A session's login
//! takes the lock for its save.) A delete leaves the generation behind (with the TTL), so a holder fenced
//! before the delete stays fenced after it.
//!
//! # Redis unreachable
//!
//! Every call is bounded by [`RedisStore::timeout`] (default 5 s) and fails with
//! [`StoreError::Unavailable`], which is retryable (`StoreError::is_retryable`,
//! `erpnet_oauth_core::Error::is_retryable`). Then no refresh is sent (the lock could not be taken),
//! calls whose access token is still valid go on from memory, and nothing already stored is touched.
//! Connections are made again on the next call (see "Redis restarted" below). No message shows the URL's
//! password: URLs are shown as `redis://:[redacted]@host:port/db` (a Unix socket's
//! `redis+unix:///path?pass=...` as `pass=[redacted]`), and the password is scrubbed from the texts of
//! Redis's errors ([`RedactedUrl`] does the same for an application's own messages).
//!
//! A Redis that **refuses** this client is not unreachable: a wrong password (`WRONGPASS`), none where
//! one is required (`NOAUTH`), or an ACL that forbids a command the store runs (`NOPERM`; the store needs
//! the commands listed under "Redis settings required", scripts included) is `StoreError::Other`, not
//! retryable, saying "refused this client" and to check the user and password in the URL and the
//! server's ACL. So is a URL the `redis` crate cannot use.
//!
//! # Redis restarted
//!
//! The stores keep their connections (the blocking one a small pool, the async one a multiplexed
//! connection). When Redis restarts, or closes an idle connection, a call on a kept connection finds it
//! dropped: closed, reset, refused or ended before any answer. That call is then run **once more on a new
//! connection** (the pool's other idle connections let go too), so the first call after a restart
//! succeeds as any other, and a renewal that meets the restart sends one refresh, as without it. Not
//! after a timeout (the command may still be carried out) nor after an answer of the server. A call run
//! twice is safe because each one is idempotent on its own:
//!
//! - reads (`HGET`) change nothing;
//! - the lock's script, finding the lock held by its own owner value (the first attempt was carried out
//!   but its answer was lost), holds it with its lease started again; no other holder has that value;
//! - the release is a compare-and-delete: run twice, the second finds nothing of its own to delete;
//! - a save under the lock that finds the generation already at expected + 1 with exactly its own value
//!   stored (its first attempt was carried out) is done, not [`StoreError::Fenced`]; any other value
//!   there is still fenced. (Another holder storing the very same bytes would leave the same tokens
//!   stored, so taking it as done is right too; encrypted values never repeat.) A delete under the lock
//!   likewise, when the generation is at expected + 1 and no tokens are stored. A save without the lock
//!   replaces what is stored anyway: run twice, it stores the same value as generation + 2.
//!
//! If the new connection fails too (Redis still down), the call fails with
//! [`StoreError::Unavailable`], as above.
//!
//! # Encryption at rest
//!
//! Optional ([`RedisStore::encryption_key`]): AES-256-GCM (ring) with a 32-byte key of the
//! application's, a fresh random 96-bit nonce per write, the key name as associated data (a ciphertext
//! copied to another login's key does not decrypt), stored as `0x01 ‖ nonce ‖ ciphertext ‖ tag`. A wrong
//! key, a changed or moved ciphertext, plain tokens where encrypted ones are expected or the reverse are
//! [`StoreError::Decrypt`], never garbage. `Debug` never shows the key. Rotating the key means logging in
//! again (or re-saving the tokens through a store with the new key after reading them with the old).
//!
//! The same format is there for the application's own values (a client secret kept next to the
//! tokens, as the `erpnet-oauth` command does): [`EncryptionKey::seal`] and [`EncryptionKey::open`],
//! with the name the value is stored under as the associated data.
//!
//! # Expiry
//!
//! Each save sets the token key's TTL ([`RedisStore::ttl`], default 30 days: ERP.net's refresh token
//! lifetime for confidential applications; 24 h for public ones), so logins nobody uses do not pile up.
//! The lock key lives only as long as its lease.
//!
//! # Redis settings required
//!
//! - **Persistence**: `appendonly yes`. With `appendfsync always` a save that returned `Ok` survives a
//!   crash of Redis; with `everysec` (Redis's default) a crash of the Redis machine can lose the last
//!   second of writes, which may include a rotated refresh token: that login must then log in again.
//!   Without persistence, a Redis restart logs everyone out.
//! - **Eviction**: `maxmemory-policy noeviction` (a full Redis refuses writes: a save fails, visibly).
//!   `volatile-*` and `allkeys-*` policies may evict token keys (they all have a TTL) before they expire:
//!   a silent logout. Use a Redis of its own for tokens if the cache next to it needs eviction.
//! - **Replicas and failover**: writes are acknowledged by the primary alone. If the primary fails
//!   before a write reaches a replica that is then promoted, that write is lost (the previous refresh
//!   token comes back: the next refresh sends an already rotated one and the login ends), and a lock
//!   held on the old primary is gone, so a second holder may take it while the first still works:
//!   fencing then keeps the stores' content ordered, but both may send a refresh with the same token and
//!   the server's reuse detection ends the login. Failover costs at most the logins refreshing at that
//!   moment, never a wrong user's tokens. Redis Cluster is not supported (the two keys of a login need
//!   not be in one slot). The store uses only `SET NX PX`, `HGET`, `HSET`, `HDEL`, `PEXPIRE`, `PTTL`,
//!   `GET`, `DEL`, `EXISTS` and Lua scripts (`EVALSHA`, then `EVAL`), which Valkey implements as Redis does;
//!   the tests run against Redis 7 only.
//!
//! A lock whose `SET` reached Redis but whose answer was lost (a timeout, or an async `lock` future
//! dropped while waiting for it) is not known to be held: it stays until its lease ends, which delays the
//! next renewal of that login by at most the lease.

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[cfg(feature = "async")]
mod asynchronous;
#[cfg(feature = "blocking")]
mod blocking;
mod common;
mod crypto;
mod keys;
mod redact;
/// Test support (feature `test-util`): a real redis-server for tests. Never in production.
#[cfg(feature = "test-util")]
pub mod test_util;

#[cfg(feature = "async")]
pub use asynchronous::AsyncRedisStore;
#[cfg(feature = "blocking")]
pub use blocking::RedisStore;
pub use common::{ConfigError, DEFAULT_LEASE, DEFAULT_TIMEOUT, DEFAULT_TTL, MAX_LEASE, MIN_LEASE};
pub use crypto::{DecryptError, EncryptionKey, InvalidKeyLength, SealError};
pub use erpnet_oauth_core::store::{StoreError, StoreLock};
pub use keys::{DEFAULT_PREFIX, InvalidLoginId, LoginId, MAX_LOGIN_ID_LEN, MAX_PREFIX_LEN};
pub use redact::{RedactedUrl, redact_url};

/// The README's example, run as a doctest.
#[cfg(all(doctest, feature = "blocking"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
