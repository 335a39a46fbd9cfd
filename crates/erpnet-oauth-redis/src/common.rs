//! What the blocking and the async store share: settings, the scripts, encoding, errors, the backoff.

use crate::crypto::{self, EncryptionKey};
use crate::keys::{self, InvalidLoginId, Keys, LoginId};
use crate::redact::RedactedUrl;
use erpnet_oauth_core::store::{IssuedTo, StoreError, StoreFile};
use erpnet_oauth_core::{ClientConfig, TokenSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The default lease of the lock: 70 s, enough for a renewal's token request and JWKS request at the
/// sessions' default HTTP timeout of 30 s each, plus 10 s.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(70);
/// The shortest lease accepted.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// The longest lease accepted.
pub const MAX_LEASE: Duration = Duration::from_secs(600);
/// The default lifetime of the stored tokens in Redis: 30 days, ERP.net's refresh token lifetime for
/// confidential applications (public ones get 24 h: set [`crate::RedisStore::ttl`] to match).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The default bound on connecting to Redis and on each of its answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL is not a Redis URL this build can use (the message shows it with its password redacted).
    #[error("invalid Redis URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The login id breaks the rule of [`LoginId`].
    #[error(transparent)]
    LoginId(#[from] InvalidLoginId),
    /// The key prefix breaks its rule (see [`crate::RedisStore::prefix`]).
    #[error("invalid key prefix: {0}")]
    Prefix(String),
    /// A duration is out of its range.
    #[error("{0}")]
    Duration(String),
}

/// The settings of one store, shared by its clones.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The URL (password redacted), and its password to scrub from errors.
    pub(crate) url: RedactedUrl,
    pub(crate) prefix: String,
    pub(crate) login: LoginId,
    pub(crate) keys: Keys,
    pub(crate) issued_to: Option<IssuedTo>,
    pub(crate) encryption: Option<EncryptionKey>,
    pub(crate) lease: Duration,
    pub(crate) lock_wait: Option<Duration>,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
}

impl Settings {
    pub(crate) fn new(url: &str, login: LoginId) -> Result<(Settings, redis::Client), ConfigError> {
        let shown = RedactedUrl::new(url);
        let redacted = shown.to_string();
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::Url { url: redacted.clone(), reason: e.to_string() })?;
        match parsed.scheme() {
            "redis" | "redis+unix" | "unix" => {}
            "rediss" if cfg!(feature = "tls") => {}
            "rediss" => {
                return Err(ConfigError::Url {
                    url: redacted,
                    reason: "rediss:// needs the `tls` feature of erpnet-oauth-redis".to_owned(),
                });
            }
            other => {
                return Err(ConfigError::Url {
                    url: redacted,
                    reason: format!(
                        "the scheme must be redis or rediss, not {}",
                        erpnet_oauth_core::escape(other)
                    ),
                });
            }
        }
        #[cfg(feature = "tls")]
        if parsed.scheme() == "rediss" {
            // Only when the application installed no provider of its own.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::Url { url: redacted.clone(), reason: shown.scrub(&e.to_string()) })?;
        let prefix = keys::DEFAULT_PREFIX.to_owned();
        let keys = Keys::new(&prefix, &login);
        Ok((
            Settings {
                url: shown,
                prefix,
                login,
                keys,
                issued_to: None,
                encryption: None,
                lease: DEFAULT_LEASE,
                lock_wait: None,
                ttl: DEFAULT_TTL,
                timeout: DEFAULT_TIMEOUT,
            },
            client,
        ))
    }

    pub(crate) fn set_prefix(&mut self, prefix: &str) -> Result<(), ConfigError> {
        keys::check_prefix(prefix).map_err(ConfigError::Prefix)?;
        self.prefix = prefix.to_owned();
        self.keys = Keys::new(&self.prefix, &self.login);
        Ok(())
    }

    pub(crate) fn set_login(&mut self, login: LoginId) {
        self.keys = Keys::new(&self.prefix, &login);
        self.login = login;
    }

    pub(crate) fn set_lease(&mut self, lease: Duration) -> Result<(), ConfigError> {
        if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
            return Err(ConfigError::Duration(format!(
                "the lock's lease must be between {MIN_LEASE:?} and {MAX_LEASE:?}, not {lease:?}"
            )));
        }
        self.lease = lease;
        Ok(())
    }

    pub(crate) fn set_ttl(&mut self, ttl: Duration) -> Result<(), ConfigError> {
        if ttl < Duration::from_secs(60) {
            return Err(ConfigError::Duration(format!("the tokens' TTL must be at least 60 s, not {ttl:?}")));
        }
        self.ttl = ttl;
        Ok(())
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) -> Result<(), ConfigError> {
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            return Err(ConfigError::Duration(format!(
                "the Redis timeout must be within (0, 300 s], not {timeout:?}"
            )));
        }
        self.timeout = timeout;
        Ok(())
    }

    /// How long a lock is waited for: the lease and 5 s, unless set.
    pub(crate) fn lock_wait(&self) -> Duration {
        self.lock_wait.unwrap_or(self.lease + Duration::from_secs(5))
    }

    /// The store as errors name it: the URL (password redacted) and the key.
    pub(crate) fn name(&self) -> String {
        format!("{} key {}", self.url, self.keys.tokens)
    }

    pub(crate) fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// A Redis error as a store error, with the password scrubbed from its text.
    pub(crate) fn error(&self, e: &redis::RedisError, doing: &str) -> StoreError {
        use redis::{ErrorKind, ServerErrorKind};
        let reason = format!("{doing}: {}", self.url.scrub(&e.to_string()));
        let reason = erpnet_oauth_core::escape(&reason).into_owned();
        let transient_server =
            matches!(
                e.kind(),
                ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
            ) || matches!(e.code(), Some("LOADING" | "BUSY" | "MISCONF" | "OOM" | "MASTERDOWN" | "READONLY"));
        // Redis refused this client: a wrong password (AUTH answered WRONGPASS), none where one is required
        // (NOAUTH), or an ACL that forbids a command this store runs (NOPERM). Configuration, not a passing
        // trouble: retrying changes nothing.
        let refused =
            matches!(e.kind(), ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm))
                || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if refused {
            return StoreError::Other(format!(
                "the token store {} refused this client ({reason}): check the user and password in the URL and \
                 the server's ACL",
                self.name()
            ));
        }
        if e.code() == Some("WRONGTYPE") {
            return StoreError::Corrupt {
                path: PathBuf::from(&self.keys.tokens),
                reason: "the key holds another Redis type than this store's hash".to_owned(),
            };
        }
        let lost = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || matches!(e.kind(), ErrorKind::Io | ErrorKind::Client);
        // A TLS failure (an unknown CA, a name mismatch, a failed handshake) reaches here as an I/O error
        // whose source redis-rs keeps out of reach: told by its text, on a rediss:// URL only. Not a passing
        // trouble.
        let text = e.to_string().to_ascii_lowercase();
        if self.url.as_str().starts_with("rediss://")
            && (text.contains("certificate") || text.contains("handshake"))
        {
            return StoreError::Other(format!(
                "the token store {} could not be used over TLS ({reason})",
                self.name()
            ));
        }
        match e.kind() {
            ErrorKind::InvalidClientConfig => StoreError::Other(format!(
                "the token store {} cannot be used with this configuration ({reason})",
                self.name()
            )),
            _ if lost || transient_server => StoreError::Unavailable { store: self.name(), reason },
            // A script error, an unexpected answer: not a passing trouble.
            _ => StoreError::Other(format!("the token store {} failed ({reason})", self.name())),
        }
    }

    /// The bytes stored for `tokens`: the store file (bound to the client when the store is), encrypted
    /// when the store has a key.
    pub(crate) fn encode(&self, tokens: &TokenSet) -> Result<Vec<u8>, StoreError> {
        let file = StoreFile { issued_to: self.issued_to.clone(), tokens: tokens.clone() };
        let bytes = file.to_bytes().map_err(|e| StoreError::Other(e.to_string()))?;
        match &self.encryption {
            None => Ok(bytes),
            Some(key) => key.seal(&self.keys.tokens, &bytes).map_err(|e| StoreError::Other(e.to_string())),
        }
    }

    /// The tokens in `stored`: decrypted, parsed and checked against the client the store is bound to.
    pub(crate) fn decode(&self, stored: &[u8]) -> Result<TokenSet, StoreError> {
        let plain = crypto::open_tokens(self.encryption.as_ref(), &self.keys.tokens, stored)
            .map_err(|e| StoreError::Decrypt { store: self.name(), reason: e.to_string() })?;
        let file = StoreFile::from_bytes(&plain).map_err(|e| StoreError::Corrupt {
            path: PathBuf::from(&self.keys.tokens),
            reason: e.to_string(),
        })?;
        match &self.issued_to {
            None => Ok(file.tokens),
            Some(expected) => file.tokens_for(expected).map_err(|stored| StoreError::IssuedToAnother {
                path: PathBuf::from(&self.keys.tokens),
                stored,
                expected: expected.clone(),
            }),
        }
    }

    pub(crate) fn bind(&mut self, client: &ClientConfig) {
        self.issued_to = Some(IssuedTo::of(client));
    }
}

/// The lock currently held through one store value (its lease may have run out meanwhile).
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) owner: String,
    /// The generation found when the lock was taken (then the last one this holder wrote).
    pub(crate) generation: i64,
}

/// Per store value: the lock it holds, if any. Clones of a store share the pool, not this.
#[derive(Debug, Default)]
pub(crate) struct HeldSlot(Mutex<Option<Held>>);

impl HeldSlot {
    pub(crate) fn get(&self) -> Option<Held> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
    pub(crate) fn set(&self, held: Held) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(held);
    }
    /// After a write under the lock: the generation it wrote.
    pub(crate) fn advance(&self, owner: &str, generation: i64) {
        if let Some(h) = self.0.lock().unwrap_or_else(PoisonError::into_inner).as_mut()
            && h.owner == owner
        {
            h.generation = generation;
        }
    }
    pub(crate) fn release(&self, owner: &str) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|h| h.owner == owner) {
            *slot = None;
        }
    }
}

pub(crate) type Shared = Arc<HeldSlot>;

/// A random lock owner: 128 bits from the OS, in hex.
pub(crate) fn new_owner() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Other(format!("the OS random source failed: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The wait before lock attempt `attempt` (0-based): 2 ms doubling to 50 ms, with jitter (the upper
/// half), and never longer than the lock's remaining lease (`pttl_ms`, when known) plus 1 ms.
pub(crate) fn backoff(attempt: u32, pttl_ms: i64) -> Duration {
    let base = 2u64.saturating_mul(1u64 << attempt.min(5)).min(50);
    let mut r = [0u8; 1];
    let jitter = if getrandom::fill(&mut r).is_ok() { u64::from(r[0]) } else { 128 };
    let ms = base / 2 + (base / 2 * jitter) / 255;
    let ms = if pttl_ms >= 0 { ms.min(u64::try_from(pttl_ms).unwrap_or(0) + 1) } else { ms };
    Duration::from_millis(ms.max(1))
}

/// Takes the lock (`SET lock owner NX PX lease`) and reads the generation of the tokens in one step.
/// Returns `{1, generation}` or `{0, the lock's remaining lease in ms}`.
///
/// Idempotent for one owner value: an attempt that finds the lock already held by its own owner (a
/// retry whose first attempt was carried out but whose answer was lost with the connection) holds it,
/// with its lease started again. No other owner ever has this 128-bit random value.
pub(crate) const LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('HGET', KEYS[2], 'generation')) or 0}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, tonumber(redis.call('HGET', KEYS[2], 'generation')) or 0}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Deletes the lock if this owner still holds it (compare-and-delete). Returns 1 when deleted. Run twice,
/// the second run finds nothing of this owner's and deletes nothing.
pub(crate) const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Stores the tokens if the generation is still the expected one (`ARGV[1]`, or any when empty), as
/// generation + 1, and sets the key's TTL. Returns `{1, new generation}` or `{0, current generation}`.
///
/// Idempotent: when the generation is already expected + 1 and the stored value is byte for byte this
/// one, the save is taken as done (`{1, generation}`) rather than fenced. That is this save's own first
/// attempt, carried out but its answer lost with the connection (a retry after Redis restarted), or
/// another holder that stored exactly the same bytes (encrypted values never repeat: each has a fresh
/// nonce); either way what is stored is what this save meant to store. Any other value at expected + 1,
/// or a generation further on, is still fenced. Without the lock (`ARGV[1]` empty), a retry writes the
/// same value once more, as generation + 2.
pub(crate) const SAVE: &str = r"
local g = tonumber(redis.call('HGET', KEYS[1], 'generation')) or 0
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= g then
  if g == tonumber(ARGV[1]) + 1 and redis.call('HGET', KEYS[1], 'tokens') == ARGV[2] then
    return {1, g}
  end
  return {0, g}
end
g = g + 1
redis.call('HSET', KEYS[1], 'generation', g, 'tokens', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, g}
";

/// Deletes the tokens under the same condition, keeping the generation (a tombstone with the TTL), so
/// that a holder fenced before the delete stays fenced after it. Returns as [`SAVE`].
///
/// Idempotent as [`SAVE`]: when the generation is already expected + 1 and no tokens are stored (this
/// delete's own first attempt was carried out, or another holder deleted them), it is taken as done.
pub(crate) const CLEAR: &str = r"
local g = tonumber(redis.call('HGET', KEYS[1], 'generation')) or 0
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= g then
  if g == tonumber(ARGV[1]) + 1 and redis.call('HEXISTS', KEYS[1], 'tokens') == 0 then
    return {1, g}
  end
  return {0, g}
end
if g == 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  return {1, 0}
end
g = g + 1
redis.call('HDEL', KEYS[1], 'tokens')
redis.call('HSET', KEYS[1], 'generation', g)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, g}
";

/// The four scripts, hashed once.
pub(crate) struct Scripts {
    pub(crate) lock: redis::Script,
    pub(crate) unlock: redis::Script,
    pub(crate) save: redis::Script,
    pub(crate) clear: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            lock: redis::Script::new(LOCK),
            unlock: redis::Script::new(UNLOCK),
            save: redis::Script::new(SAVE),
            clear: redis::Script::new(CLEAR),
        }
    }
}

/// Whether a call failed because its connection was dropped (Redis restarted, or closed an idle
/// connection): closed, reset, refused or ended (EOF). Not a timeout (the command may still be carried
/// out), not an answer of the server. A call on a cached connection that failed so is run once more on a
/// new connection: every call of the stores is safe to run twice (reads; [`LOCK`] for one owner;
/// [`UNLOCK`]; [`SAVE`] and [`CLEAR`]).
pub(crate) fn dropped(e: &redis::RedisError) -> bool {
    !e.is_timeout()
        && !matches!(e.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension)
        && (e.is_connection_dropped() || e.is_connection_refusal())
}

/// The expected generation argument of [`SAVE`] and [`CLEAR`].
pub(crate) fn expected(held: Option<&Held>) -> String {
    held.map(|h| h.generation.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each script run twice (a retry after a dropped connection whose first attempt was carried out)
    /// ends as run once, and fencing still holds for anything else. Against a real redis-server
    /// (`test_util`, enabled for the tests by the dev-dependency on this crate itself).
    #[cfg(feature = "test-util")]
    #[test]
    fn the_scripts_are_safe_to_run_twice() {
        let server = crate::test_util::RedisServer::start();
        let mut c = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
        let s = Scripts::new();
        let lock = |c: &mut redis::Connection, owner: &str| -> (i64, i64) {
            s.lock.key("p:a:lock").key("p:a").arg(owner).arg(60_000).invoke(c).unwrap()
        };
        assert_eq!(lock(&mut c, "o1"), (1, 0));
        let _: () = redis::cmd("PEXPIRE").arg("p:a:lock").arg(1000).query(&mut c).unwrap();
        assert_eq!(lock(&mut c, "o1"), (1, 0), "its own owner holds it");
        let pttl: i64 = redis::cmd("PTTL").arg("p:a:lock").query(&mut c).unwrap();
        assert!(pttl > 50_000, "with its lease started again: {pttl}");
        assert_eq!(lock(&mut c, "o2").0, 0, "another owner does not");

        let save = |c: &mut redis::Connection, expected: &str, value: &str| -> (i64, i64) {
            s.save.key("p:a").arg(expected).arg(value).arg(60_000).invoke(c).unwrap()
        };
        assert_eq!(save(&mut c, "0", "v1"), (1, 1));
        assert_eq!(save(&mut c, "0", "v1"), (1, 1), "a retry of a save carried out: done, not fenced");
        assert_eq!(save(&mut c, "0", "v2"), (0, 1), "another value at expected + 1: fenced");
        assert_eq!(save(&mut c, "1", "v2"), (1, 2));
        assert_eq!(save(&mut c, "0", "v1"), (0, 2), "two generations on: fenced");
        assert_eq!(save(&mut c, "1", "v2"), (1, 2));
        let stored: String = redis::cmd("HGET").arg("p:a").arg("tokens").query(&mut c).unwrap();
        assert_eq!(stored, "v2");
        assert_eq!(save(&mut c, "", "v3"), (1, 3), "without the lock");
        assert_eq!(save(&mut c, "", "v3"), (1, 4), "run twice: the same value, once more");

        let clear = |c: &mut redis::Connection, expected: &str| -> (i64, i64) {
            s.clear.key("p:a").arg(expected).arg(60_000).invoke(c).unwrap()
        };
        assert_eq!(clear(&mut c, "3"), (0, 4), "fenced");
        assert_eq!(clear(&mut c, "4"), (1, 5));
        assert_eq!(clear(&mut c, "4"), (1, 5), "a retry of a delete carried out: done");
        assert_eq!(save(&mut c, "4", "v3"), (0, 5), "a save of a holder from before the delete: fenced");
        assert_eq!(save(&mut c, "5", "v6"), (1, 6));
        assert_eq!(clear(&mut c, "4"), (0, 6), "tokens stored since: the delete is fenced");

        let unlock = |c: &mut redis::Connection, owner: &str| -> i64 {
            s.unlock.key("p:a:lock").arg(owner).invoke(c).unwrap()
        };
        assert_eq!(unlock(&mut c, "o2"), 0, "not its lock");
        assert_eq!(unlock(&mut c, "o1"), 1);
        assert_eq!(unlock(&mut c, "o1"), 0, "run twice: nothing more deleted");
    }

    #[test]
    fn the_backoff_is_bounded() {
        for attempt in 0..40 {
            let d = backoff(attempt, -2);
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(50), "{d:?}");
        }
        assert_eq!(backoff(10, 0), Duration::from_millis(1), "never past the lease's end");
    }
}
