//! The state several instances share, in Redis: the signed-in sessions, the pending logins, and (through
//! [`AsyncRedisStore`]) each signed-in session's tokens. Every call is bounded by the backend's timeout;
//! a Redis that cannot be reached is a [`StoreError::Unavailable`] (retryable), never a panic.

use erpnet_oauth_async::StoreError;
use erpnet_oauth_redis::{AsyncRedisStore, ConfigError, EncryptionKey, LoginId, redact_url};
use redis::aio::MultiplexedConnection;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The prefix of every key the example writes in Redis.
pub const REDIS_PREFIX: &str = "erpnet-example:";

/// A signed-in session lives this long in Redis after its last request (30 days: ERP.net's refresh
/// token lifetime for confidential applications, and the token store's own TTL).
pub const SESSION_TTL: Duration = erpnet_oauth_redis::DEFAULT_TTL;

/// Stores a pending login and keeps their number bounded, atomically. The index is a sorted set of the
/// pending logins' keys by their start (ms, the application's clock): the expired ones are deleted, then
/// the oldest until there is room for the new one, which is never the one dropped.
///
/// KEYS[1] the pending login's key, KEYS[2] the index; ARGV[1] the value, ARGV[2] the lifetime (ms),
/// ARGV[3] now (ms), ARGV[4] the bound.
const PUT_PENDING: &str = r"
local lifetime = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - lifetime)
for _, key in ipairs(expired) do redis.call('DEL', key) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lifetime)
redis.call('ZREM', KEYS[2], KEYS[1])
local n = redis.call('ZCARD', KEYS[2])
if n >= max then
  local oldest = redis.call('ZPOPMIN', KEYS[2], n - max + 1)
  for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', lifetime)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('PEXPIRE', KEYS[2], lifetime)
return 1
";

/// Takes a pending login: read and deleted in one step (`GETDEL`), so that of several callbacks carrying
/// it, on any instances, one gets it. KEYS[1] the pending login's key, KEYS[2] the index.
const TAKE_PENDING: &str = r"
local value = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return value
";

/// Keeps the example's state in Redis, so that several instances of it serve the same users: open it
/// with a Redis URL (the `REDIS_URL` of `main`) and pass it as [`crate::SessionBackend::Redis`].
///
/// | Key | Type | What | Expires |
/// | --- | --- | --- | --- |
/// | `erpnet-example:session:` digest of the session id | string | `{"login": LOGIN, "name": ...}`: the signed-in session's login id and display name | [`SESSION_TTL`] after its last request |
/// | `erpnet-example:pending:` digest of the session id | string | `{"started": ms, "login": ...}`: the serialized `PendingLogin` (state, nonce, PKCE verifier) | `Options::pending_login_lifetime`; taken once (`GETDEL`) |
/// | `erpnet-example:pending-index` | sorted set | the pending logins' keys by start, to bound their number (`Options::max_pending_logins`) | with the newest pending login |
/// | `erpnet-example:tokens:` LOGIN (and `...:lock`) | hash | the session's tokens, through [`AsyncRedisStore`] (lock, reload, fencing; encrypted with [`Self::encryption_key`]) | 30 days after the last refresh |
///
/// A session id is named by its SHA-256 (`sha256-` and 64 hex digits, [`LoginId::digest`]), never
/// stored itself: whoever reads Redis learns no cookie. LOGIN is 256 random bits in hex, drawn afresh for
/// each signed-in session: one login id per signed-in browser session, never per user, so that signing
/// out in one browser leaves the user's other browsers signed in, as with the in-memory backend.
#[derive(Clone)]
pub struct RedisBackend {
    /// The URL with its password redacted, for messages.
    url: String,
    client: redis::Client,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    timeout: Duration,
    /// The tokens' store for a placeholder login; each session's is `for_login` of it.
    tokens: AsyncRedisStore,
    encrypted: bool,
    scripts: Arc<Scripts>,
}

struct Scripts {
    put_pending: redis::Script,
    take_pending: redis::Script,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// The backend on the Redis at `url` (`redis://[:password@]host:port/db`, the forms the `redis`
    /// crate takes). No connection is made until the first request; a malformed URL is an error here
    /// (its password redacted).
    pub fn open(url: &str) -> Result<RedisBackend, ConfigError> {
        let tokens = AsyncRedisStore::open(url, "placeholder")?.prefix(&format!("{REDIS_PREFIX}tokens:"))?;
        let client = redis::Client::open(url).map_err(|e| ConfigError::Url {
            url: redact_url(url),
            reason: format!("not a Redis URL ({:?})", e.kind()),
        })?;
        Ok(RedisBackend {
            url: redact_url(url),
            client,
            conn: Arc::new(Mutex::new(None)),
            timeout: erpnet_oauth_redis::DEFAULT_TIMEOUT,
            tokens,
            encrypted: false,
            scripts: Arc::new(Scripts {
                put_pending: redis::Script::new(PUT_PENDING),
                take_pending: redis::Script::new(TAKE_PENDING),
            }),
        })
    }

    /// Encrypts the tokens at rest (AES-256-GCM, [`AsyncRedisStore::encryption_key`]). Every instance
    /// needs the same key; a wrong one is an error (the user signs in again), never garbage. Sessions and
    /// pending logins are not encrypted: they hold no token.
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.tokens = self.tokens.encryption_key(key);
        self.encrypted = true;
        self
    }

    /// The Redis URL, its password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the tokens are encrypted at rest ([`Self::encryption_key`]).
    pub fn encrypts_tokens(&self) -> bool {
        self.encrypted
    }

    /// The bound on connecting to Redis and on each of its answers (default 5 s), for the sessions and
    /// the tokens alike.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.tokens = self.tokens.timeout(timeout)?;
        self.timeout = timeout;
        Ok(self)
    }

    /// The tokens' store of the login `login` (see the table above), bound to `client`.
    pub(crate) fn tokens(
        &self,
        login: &str,
        client: &erpnet_oauth_async::ClientConfig,
    ) -> Result<AsyncRedisStore, StoreError> {
        let login = LoginId::new(login)
            .map_err(|_| StoreError::Other(format!("{}: a session names an invalid login id", self.url)))?;
        Ok(self.tokens.for_login(login).for_client(client))
    }

    /// The connection, and whether it was made just now (not taken from the cache).
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), StoreError> {
        let cached = self.conn.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(c) = cached {
            return Ok((c, false));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.failed(&e, "connecting"))?;
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok((c, true))
    }

    /// Whether a failed call on a cached connection is tried once more on a new one: the connection was
    /// dropped (Redis restarted, or closed an idle connection), so the command was not carried out. Not
    /// after a timeout (it may have been) nor an answer from the server.
    fn retry(fresh: bool, e: &redis::RedisError) -> bool {
        !fresh && !e.is_timeout() && !matches!(e.kind(), redis::ErrorKind::Server(_))
    }

    /// Runs `cmd`; once more on a new connection if the cached one was dropped.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd, doing: &str) -> Result<T, StoreError> {
        let (mut c, fresh) = self.connection().await?;
        match cmd.query_async(&mut c).await {
            Err(e) if Self::retry(fresh, &e) => {
                let _ = self.failed(&e, doing);
                let (mut c, _) = self.connection().await?;
                cmd.query_async(&mut c).await.map_err(|e| self.failed(&e, doing))
            }
            result => result.map_err(|e| self.failed(&e, doing)),
        }
    }

    /// Runs a script; once more on a new connection if the cached one was dropped.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
        doing: &str,
    ) -> Result<T, StoreError> {
        let (mut c, fresh) = self.connection().await?;
        match script.invoke_async(&mut c).await {
            Err(e) if Self::retry(fresh, &e) => {
                let _ = self.failed(&e, doing);
                let (mut c, _) = self.connection().await?;
                script.invoke_async(&mut c).await.map_err(|e| self.failed(&e, doing))
            }
            result => result.map_err(|e| self.failed(&e, doing)),
        }
    }

    /// A failed call as a store error: unreachable (retryable) unless the server answered. The message
    /// names the error's kind only: no text from the connection, so no password.
    fn failed(&self, e: &redis::RedisError, doing: &str) -> StoreError {
        if matches!(e.kind(), redis::ErrorKind::Server(_)) {
            return StoreError::Other(format!("{} refused {doing} ({:?})", self.url, e.kind()));
        }
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
        StoreError::Unavailable { store: self.url.clone(), reason: format!("{doing}: {:?}", e.kind()) }
    }

    fn key(kind: &str, sid: &str) -> String {
        format!("{REDIS_PREFIX}{kind}:{}", LoginId::digest(sid).as_str())
    }

    fn index_key() -> String {
        format!("{REDIS_PREFIX}pending-index")
    }

    /// Stores the pending login under `sid` (expiring after `lifetime`), dropping the expired ones and
    /// the oldest beyond `max`.
    pub(crate) async fn put_pending(
        &self,
        sid: &str,
        value: &[u8],
        lifetime: Duration,
        now_ms: u64,
        max: usize,
    ) -> Result<(), StoreError> {
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut script = self.scripts.put_pending.key(Self::key("pending", sid));
        script.key(Self::index_key()).arg(value).arg(lifetime_ms).arg(now_ms).arg(max.max(1));
        self.invoke::<i64>(&script, "storing a pending login").await?;
        Ok(())
    }

    /// Takes (reads and deletes, at once) the pending login under `sid`.
    pub(crate) async fn take_pending(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut script = self.scripts.take_pending.key(Self::key("pending", sid));
        script.key(Self::index_key());
        self.invoke(&script, "taking a pending login").await
    }

    /// The signed-in session under `sid`, its expiry pushed back to [`SESSION_TTL`] from now.
    pub(crate) async fn read_session(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(Self::key("session", sid)).arg("PX").arg(ttl_ms());
        self.query(&cmd, "reading a session").await
    }

    /// Stores the signed-in session under `sid`.
    pub(crate) async fn write_session(&self, sid: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(Self::key("session", sid)).arg(value).arg("PX").arg(ttl_ms());
        self.query(&cmd, "storing a session").await
    }

    /// Takes (reads and deletes, at once) the signed-in session under `sid`.
    pub(crate) async fn take_session(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(Self::key("session", sid));
        self.query(&cmd, "deleting a session").await
    }
}

fn ttl_ms() -> u64 {
    u64::try_from(SESSION_TTL.as_millis()).unwrap_or(u64::MAX)
}
