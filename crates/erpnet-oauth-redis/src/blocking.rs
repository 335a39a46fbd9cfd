//! The blocking store.

use crate::common::{self, ConfigError, Held, HeldSlot, Scripts, Settings, Shared};
use crate::crypto::EncryptionKey;
use crate::keys::LoginId;
use erpnet_oauth_core::store::{IssuedTo, StoreError, StoreLock};
use erpnet_oauth_core::{ClientConfig, TokenSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idle connections kept per store (and its [`RedisStore::for_login`] siblings).
const MAX_IDLE: usize = 32;

struct Pool {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    scripts: Scripts,
}

/// A token store in Redis (or Valkey), blocking: for [`erpnet_oauth_ureq::Session`] and the CLI.
///
/// One login's tokens live in the hash `{prefix}{login_id}` (fields `generation` and `tokens`: the JSON
/// store file of [`erpnet_oauth_core::store::StoreFile`], or its AES-256-GCM ciphertext), its lock in
/// `{prefix}{login_id}:lock`. See the [crate docs](crate) for the lock, fencing, expiry and the Redis
/// settings required.
///
/// Every call blocks on the network, bounded by [`Self::timeout`] (connect, and each answer); the lock
/// is waited for with a bounded backoff up to [`Self::lock_wait`]. Connections come from a small pool
/// shared by clones and by [`Self::for_login`] siblings; a connection that failed is dropped, and the next
/// call connects again; a call whose pooled connection Redis dropped (a restart) runs once more on a new
/// one, so the first call after a restart succeeds (see the crate docs, "Redis restarted"). `Debug`
/// shows the URL with its password redacted and the key, never a token or the encryption key.
pub struct RedisStore {
    settings: Settings,
    pool: Arc<Pool>,
    held: Shared,
}

impl Clone for RedisStore {
    /// The same login on the same connections; the clone holds no lock of its own.
    fn clone(&self) -> Self {
        RedisStore {
            settings: self.settings.clone(),
            pool: self.pool.clone(),
            held: Arc::new(HeldSlot::default()),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.settings.url.as_str())
            .field("key", &self.settings.keys.tokens)
            .field("issued_to", &self.settings.issued_to)
            .field("encrypted", &self.settings.encryption.is_some())
            .field("lease", &self.settings.lease)
            .field("ttl", &self.settings.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for the login `login_id` (checked by [`LoginId::new`]) in the Redis at `url`
    /// (`redis://[:password@]host[:port][/db]`, `rediss://` with the `tls` feature, `redis+unix:///path`).
    /// No connection is made until the first call.
    pub fn open(url: &str, login_id: &str) -> Result<RedisStore, ConfigError> {
        Self::open_login(url, LoginId::new(login_id)?)
    }

    /// A store for `login` in the Redis at `url` (see [`Self::open`]).
    pub fn open_login(url: &str, login: LoginId) -> Result<RedisStore, ConfigError> {
        let (settings, client) = Settings::new(url, login)?;
        let pool = Arc::new(Pool { client, idle: Mutex::new(Vec::new()), scripts: Scripts::new() });
        Ok(RedisStore { settings, pool, held: Arc::new(HeldSlot::default()) })
    }

    /// The same Redis, connections and settings, for another login (a web application: one store per
    /// user or session).
    pub fn for_login(&self, login: LoginId) -> RedisStore {
        let mut settings = self.settings.clone();
        settings.set_login(login);
        RedisStore { settings, pool: self.pool.clone(), held: Arc::new(HeldSlot::default()) }
    }

    /// This store, for the tokens of `client` only: saves record its issuer and client id, and loads
    /// refuse tokens issued to another ([`StoreError::IssuedToAnother`], whose `path` is the key), as
    /// `FileStore::for_client` does.
    pub fn for_client(mut self, client: &ClientConfig) -> Self {
        self.settings.bind(client);
        self
    }

    /// This store, for tokens issued to `issued_to` only.
    pub fn bound_to(mut self, issued_to: IssuedTo) -> Self {
        self.settings.issued_to = Some(issued_to);
        self
    }

    /// Encrypts the tokens at rest with `key` (AES-256-GCM, see the crate docs). Tokens stored without
    /// encryption are then refused ([`StoreError::Decrypt`]); a login replaces them.
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.settings.encryption = Some(key);
        self
    }

    /// The key prefix (default `erpnet-oauth:tokens:`): at most 100 bytes of printable ASCII without
    /// space, `{`, `}`, `*`, `?`, `[` or `]`; end it with `:`.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.settings.set_prefix(prefix)?;
        Ok(self)
    }

    /// The lock's lease (default 70 s, 1 s to 10 min): how long a holder that died keeps others out.
    /// It must outlast a whole renewal: at least twice the session's HTTP timeout (the token request
    /// and a JWKS request), plus a margin. A holder still working when its lease runs out is fenced
    /// (see the crate docs).
    pub fn lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        self.settings.set_lease(lease)?;
        Ok(self)
    }

    /// How long [`Self::lock`] waits for another holder (default: the lease plus 5 s) before
    /// [`StoreError::LockTimeout`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = Some(wait);
        self
    }

    /// How long the tokens live in Redis after the last save (default 30 days, ERP.net's refresh token
    /// lifetime for confidential applications; 24 h suits public ones). At least 60 s.
    pub fn ttl(mut self, ttl: Duration) -> Result<Self, ConfigError> {
        self.settings.set_ttl(ttl)?;
        Ok(self)
    }

    /// The bound on connecting and on each answer (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.settings.set_timeout(timeout)?;
        Ok(self)
    }

    /// The key holding the tokens.
    pub fn key(&self) -> &str {
        &self.settings.keys.tokens
    }

    /// The key of the lock.
    pub fn lock_key(&self) -> &str {
        &self.settings.keys.lock
    }

    /// Whom the tokens must have been issued to, when bound.
    pub fn issued_to(&self) -> Option<&IssuedTo> {
        self.settings.issued_to.as_ref()
    }

    fn connect(&self) -> Result<redis::Connection, StoreError> {
        let c = self
            .pool
            .client
            .get_connection_with_timeout(self.settings.timeout)
            .map_err(|e| self.settings.error(&e, "connecting"))?;
        let t = Some(self.settings.timeout);
        c.set_read_timeout(t)
            .and_then(|()| c.set_write_timeout(t))
            .map_err(|e| self.settings.error(&e, "connecting"))?;
        Ok(c)
    }

    /// Runs `f` on an idle connection of the pool, or a new one. When an idle connection turns out
    /// dropped (Redis restarted, or closed it: see `common::dropped`), the other idle ones are let go
    /// too (they went the same way) and `f` runs once more on a new connection: every call of this store
    /// is safe to run twice (see the crate docs, "Redis restarted").
    fn with_conn<T>(
        &self,
        doing: &str,
        f: impl Fn(&mut redis::Connection, &Scripts) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let idle = self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let (mut conn, pooled) = match idle {
            Some(c) => (c, true),
            None => (self.connect()?, false),
        };
        let mut result = f(&mut conn, &self.pool.scripts);
        if pooled && result.as_ref().is_err_and(common::dropped) {
            self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
            conn = self.connect()?;
            result = f(&mut conn, &self.pool.scripts);
        }
        match result {
            Ok(v) => {
                let mut idle = self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                Ok(v)
            }
            // The connection is dropped: it may be broken, or an answer may still be on its way.
            Err(e) => Err(self.settings.error(&e, doing)),
        }
    }

    /// The stored tokens; `None` when there are none. Fails with [`StoreError::Unavailable`] when Redis
    /// cannot be reached, [`StoreError::Decrypt`], [`StoreError::Corrupt`] or
    /// [`StoreError::IssuedToAnother`]: never silently empty.
    pub fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let stored: Option<Vec<u8>> = self.with_conn("reading the tokens", |c, _| {
            redis::cmd("HGET").arg(&self.settings.keys.tokens).arg("tokens").query(c)
        })?;
        stored.map(|bytes| self.settings.decode(&bytes)).transpose()
    }

    /// Stores `tokens` (generation + 1, TTL renewed). Under this store's lock the write is
    /// compare-and-set on the generation found when the lock was taken: if another holder wrote since
    /// (this lock's lease ran out), nothing is written and the result is [`StoreError::Fenced`].
    /// Without the lock (a login driven by hand) it replaces whatever is stored, and fences any holder
    /// that read before it.
    pub fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let value = self.settings.encode(tokens)?;
        let held = self.held.get();
        let (ok, generation): (i64, i64) = self.with_conn("storing the tokens", |c, s| {
            s.save
                .key(&self.settings.keys.tokens)
                .arg(common::expected(held.as_ref()))
                .arg(&value)
                .arg(self.settings.ttl_ms())
                .invoke(c)
        })?;
        self.written(held.as_ref(), ok, generation)
    }

    /// Deletes the stored tokens, on the same condition as [`Self::save`] (the generation is kept, with
    /// the TTL, so that a holder fenced before stays fenced).
    pub fn clear(&self) -> Result<(), StoreError> {
        let held = self.held.get();
        let (ok, generation): (i64, i64) = self.with_conn("deleting the tokens", |c, s| {
            s.clear
                .key(&self.settings.keys.tokens)
                .arg(common::expected(held.as_ref()))
                .arg(self.settings.ttl_ms())
                .invoke(c)
        })?;
        self.written(held.as_ref(), ok, generation)
    }

    fn written(&self, held: Option<&Held>, ok: i64, generation: i64) -> Result<(), StoreError> {
        if ok != 1 {
            return Err(StoreError::Fenced { store: self.settings.name() });
        }
        if let Some(h) = held {
            self.held.advance(&h.owner, generation);
        }
        Ok(())
    }

    /// Takes the login's lock: `SET {key}:lock owner NX PX lease` with a random owner, retried with a
    /// bounded backoff (2 ms doubling to 50 ms, jittered) until [`Self::lock_wait`], then
    /// [`StoreError::LockTimeout`]. Released when the [`StoreLock`] is dropped, by a compare-and-delete
    /// that never deletes another owner's lock (a blocking call, bounded by [`Self::timeout`]; a release
    /// that fails leaves the lock to expire with its lease).
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let owner = common::new_owner()?;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let (got, value): (i64, i64) = self.with_conn("taking the lock", |c, s| {
                s.lock
                    .key(&self.settings.keys.lock)
                    .key(&self.settings.keys.tokens)
                    .arg(&owner)
                    .arg(self.settings.lease_ms())
                    .invoke(c)
            })?;
            if got == 1 {
                self.held.set(Held { owner: owner.clone(), generation: value });
                return Ok(StoreLock::new(Guard { store: self.clone_sharing_held(), owner }));
            }
            let waited = started.elapsed();
            if waited >= self.settings.lock_wait() {
                return Err(StoreError::LockTimeout { store: self.settings.name(), waited });
            }
            let pause = common::backoff(attempt, value).min(self.settings.lock_wait().saturating_sub(waited));
            std::thread::sleep(pause.max(Duration::from_millis(1)));
            attempt = attempt.saturating_add(1);
        }
    }

    fn clone_sharing_held(&self) -> RedisStore {
        RedisStore { settings: self.settings.clone(), pool: self.pool.clone(), held: self.held.clone() }
    }

    fn unlock(&self, owner: &str) {
        self.held.release(owner);
        let _ = self.with_conn("releasing the lock", |c, s| {
            s.unlock.key(&self.settings.keys.lock).arg(owner).invoke::<i64>(c)
        });
    }
}

/// The held lock: released (compare-and-delete) when dropped.
struct Guard {
    store: RedisStore,
    owner: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.store.unlock(&self.owner);
    }
}

/// Shared between processes and machines: [`erpnet_oauth_ureq::TokenStore::lock`] is the Redis lock.
impl erpnet_oauth_ureq::TokenStore for RedisStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        RedisStore::load(self)
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        RedisStore::save(self, tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        RedisStore::clear(self)
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        RedisStore::lock(self)
    }
}
