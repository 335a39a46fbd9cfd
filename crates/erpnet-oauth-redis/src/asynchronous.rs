//! The async store (tokio).

use crate::common::{self, ConfigError, Held, HeldSlot, Scripts, Settings, Shared};
use crate::crypto::EncryptionKey;
use crate::keys::LoginId;
use erpnet_oauth_async::BoxFuture;
use erpnet_oauth_core::store::{IssuedTo, StoreError, StoreLock};
use erpnet_oauth_core::{ClientConfig, TokenSet};
use redis::aio::MultiplexedConnection;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

struct Conn {
    client: redis::Client,
    current: Mutex<Option<MultiplexedConnection>>,
    scripts: Scripts,
}

/// A token store in Redis (or Valkey), async on tokio: for [`erpnet_oauth_async::Session`] and web
/// applications. The same keys, format, lock and fencing as [`crate::RedisStore`] (the two share a
/// login), and the same builder methods.
///
/// Calls never block a runtime thread: they use one multiplexed connection (shared by clones and
/// [`Self::for_login`] siblings, made again after a failure; a call on it that finds it dropped by Redis,
/// a restart, runs once more on a new one: see the crate docs, "Redis restarted"), every answer bounded by
/// [`Self::timeout`]; the lock is waited for with `tokio::time::sleep`. Dropping the [`StoreLock`]
/// spawns the release (compare-and-delete) on the current runtime instead of waiting for it (outside a
/// runtime, on a thread of its own); a release that fails, or that has not run when the process exits or
/// Redis stops, leaves the lock to expire with its lease (with `appendonly`, a lock taken before a Redis
/// restart comes back with the data).
pub struct AsyncRedisStore {
    settings: Settings,
    conn: Arc<Conn>,
    held: Shared,
}

impl Clone for AsyncRedisStore {
    /// The same login on the same connection; the clone holds no lock of its own.
    fn clone(&self) -> Self {
        AsyncRedisStore {
            settings: self.settings.clone(),
            conn: self.conn.clone(),
            held: Arc::new(HeldSlot::default()),
        }
    }
}

impl fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field("url", &self.settings.url.as_str())
            .field("key", &self.settings.keys.tokens)
            .field("issued_to", &self.settings.issued_to)
            .field("encrypted", &self.settings.encryption.is_some())
            .field("lease", &self.settings.lease)
            .field("ttl", &self.settings.ttl)
            .finish_non_exhaustive()
    }
}

impl AsyncRedisStore {
    /// As [`crate::RedisStore::open`]. No connection is made until the first call.
    pub fn open(url: &str, login_id: &str) -> Result<AsyncRedisStore, ConfigError> {
        Self::open_login(url, LoginId::new(login_id)?)
    }

    /// As [`crate::RedisStore::open_login`].
    pub fn open_login(url: &str, login: LoginId) -> Result<AsyncRedisStore, ConfigError> {
        let (settings, client) = Settings::new(url, login)?;
        let conn = Arc::new(Conn { client, current: Mutex::new(None), scripts: Scripts::new() });
        Ok(AsyncRedisStore { settings, conn, held: Arc::new(HeldSlot::default()) })
    }

    /// As [`crate::RedisStore::for_login`]: another login on the same connection.
    pub fn for_login(&self, login: LoginId) -> AsyncRedisStore {
        let mut settings = self.settings.clone();
        settings.set_login(login);
        AsyncRedisStore { settings, conn: self.conn.clone(), held: Arc::new(HeldSlot::default()) }
    }

    /// As [`crate::RedisStore::for_client`].
    pub fn for_client(mut self, client: &ClientConfig) -> Self {
        self.settings.bind(client);
        self
    }

    /// As [`crate::RedisStore::bound_to`].
    pub fn bound_to(mut self, issued_to: IssuedTo) -> Self {
        self.settings.issued_to = Some(issued_to);
        self
    }

    /// As [`crate::RedisStore::encryption_key`].
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.settings.encryption = Some(key);
        self
    }

    /// As [`crate::RedisStore::prefix`].
    pub fn prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.settings.set_prefix(prefix)?;
        Ok(self)
    }

    /// As [`crate::RedisStore::lease`].
    pub fn lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        self.settings.set_lease(lease)?;
        Ok(self)
    }

    /// As [`crate::RedisStore::lock_wait`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = Some(wait);
        self
    }

    /// As [`crate::RedisStore::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Result<Self, ConfigError> {
        self.settings.set_ttl(ttl)?;
        Ok(self)
    }

    /// As [`crate::RedisStore::timeout`].
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

    /// The connection, and whether it was cached (not made just now).
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), StoreError> {
        let cached = self.conn.current.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(c) = cached {
            return Ok((c, true));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout));
        let c = self
            .conn
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.settings.error(&e, "connecting"))?;
        *self.conn.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok((c, false))
    }

    /// Runs `cmd`; once more on a new connection when the cached one turns out dropped (Redis restarted,
    /// or closed it: see `common::dropped`). Every call of this store is safe to run twice (see the crate
    /// docs, "Redis restarted").
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, doing: &str) -> Result<T, StoreError> {
        let (mut c, cached) = self.connection().await?;
        let mut result = cmd.query_async(&mut c).await;
        if cached && result.as_ref().is_err_and(common::dropped) {
            self.forget();
            let (mut c, _) = self.connection().await?;
            result = cmd.query_async(&mut c).await;
        }
        result.map_err(|e| self.failed(&e, doing))
    }

    /// Runs a script, as [`Self::query`].
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
        doing: &str,
    ) -> Result<T, StoreError> {
        let (mut c, cached) = self.connection().await?;
        let mut result = script.invoke_async(&mut c).await;
        if cached && result.as_ref().is_err_and(common::dropped) {
            self.forget();
            let (mut c, _) = self.connection().await?;
            result = script.invoke_async(&mut c).await;
        }
        result.map_err(|e| self.failed(&e, doing))
    }

    fn forget(&self) {
        *self.conn.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A failed call: the connection is made again next time unless the server answered.
    fn failed(&self, e: &redis::RedisError, doing: &str) -> StoreError {
        if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
            self.forget();
        }
        self.settings.error(e, doing)
    }

    /// As [`crate::RedisStore::load`].
    pub async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let mut get = redis::cmd("HGET");
        get.arg(&self.settings.keys.tokens).arg("tokens");
        let stored: Option<Vec<u8>> = self.query(&get, "reading the tokens").await?;
        stored.map(|bytes| self.settings.decode(&bytes)).transpose()
    }

    /// As [`crate::RedisStore::save`]: compare-and-set on the generation under the lock.
    pub async fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let value = self.settings.encode(tokens)?;
        let held = self.held.get();
        let mut save = self.conn.scripts.save.key(&self.settings.keys.tokens);
        save.arg(common::expected(held.as_ref())).arg(value).arg(self.settings.ttl_ms());
        let (ok, generation): (i64, i64) = self.invoke(&save, "storing the tokens").await?;
        self.written(held.as_ref(), ok, generation)
    }

    /// As [`crate::RedisStore::clear`].
    pub async fn clear(&self) -> Result<(), StoreError> {
        let held = self.held.get();
        let mut clear = self.conn.scripts.clear.key(&self.settings.keys.tokens);
        clear.arg(common::expected(held.as_ref())).arg(self.settings.ttl_ms());
        let (ok, generation): (i64, i64) = self.invoke(&clear, "deleting the tokens").await?;
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

    /// As [`crate::RedisStore::lock`], waiting with `tokio::time::sleep`.
    pub async fn lock(&self) -> Result<StoreLock, StoreError> {
        let owner = common::new_owner()?;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let mut take = self.conn.scripts.lock.key(&self.settings.keys.lock);
            take.key(&self.settings.keys.tokens).arg(&owner).arg(self.settings.lease_ms());
            let (got, value): (i64, i64) = self.invoke(&take, "taking the lock").await?;
            if got == 1 {
                self.held.set(Held { owner: owner.clone(), generation: value });
                let store = AsyncRedisStore {
                    settings: self.settings.clone(),
                    conn: self.conn.clone(),
                    held: self.held.clone(),
                };
                return Ok(StoreLock::new(Guard { store: Some(store), owner }));
            }
            let waited = started.elapsed();
            if waited >= self.settings.lock_wait() {
                return Err(StoreError::LockTimeout { store: self.settings.name(), waited });
            }
            let pause = common::backoff(attempt, value).min(self.settings.lock_wait().saturating_sub(waited));
            tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
            attempt = attempt.saturating_add(1);
        }
    }

    async fn unlock(&self, owner: &str) {
        let mut release = self.conn.scripts.unlock.key(&self.settings.keys.lock);
        release.arg(owner);
        let _ = self.invoke::<i64>(&release, "releasing the lock").await;
    }

    fn unlock_blocking(&self, owner: &str) {
        if let Ok(mut c) = self.conn.client.get_connection_with_timeout(self.settings.timeout) {
            let t = Some(self.settings.timeout);
            if c.set_read_timeout(t).and_then(|()| c.set_write_timeout(t)).is_ok() {
                let _ =
                    self.conn.scripts.unlock.key(&self.settings.keys.lock).arg(owner).invoke::<i64>(&mut c);
            }
        }
    }
}

/// The held lock. Dropping it forgets it at once and spawns its release.
struct Guard {
    store: Option<AsyncRedisStore>,
    owner: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else { return };
        let owner = std::mem::take(&mut self.owner);
        store.held.release(&owner);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { store.unlock(&owner).await });
            }
            Err(_) => {
                let _ = std::thread::Builder::new()
                    .name("erpnet-oauth-redis unlock".to_owned())
                    .spawn(move || store.unlock_blocking(&owner));
            }
        }
    }
}

/// Shared between processes and machines: [`erpnet_oauth_async::TokenStore::lock`] is the Redis lock.
impl erpnet_oauth_async::TokenStore for AsyncRedisStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        Box::pin(AsyncRedisStore::load(self))
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(AsyncRedisStore::save(self, tokens))
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(AsyncRedisStore::clear(self))
    }
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        Box::pin(AsyncRedisStore::lock(self))
    }
}
