//! Where the profiles live: a directory of files (the default), or a Redis that several machines share
//! (`--store redis://...`, `rediss://`, `redis+unix://`), so that their scripts use one login and refresh
//! it once between them.
//!
//! # The Redis layout
//!
//! Everything under the prefix [`REDIS_PREFIX`] (`erpnet-oauth:cli:`), keyed by the profile name (letters,
//! digits, `-`, `_` and `.`: never a `:`, so no profile names another's key):
//!
//! | Key | Type | What |
//! | --- | --- | --- |
//! | `erpnet-oauth:cli:profile:NAME` | string | the profile's settings: the JSON of a store directory's `NAME.profile.json` (no secret, no token; no expiry) |
//! | `erpnet-oauth:cli:tokens:NAME` | hash | the tokens, kept by `erpnet_oauth_redis::RedisStore` (fields `generation` and `tokens`; bound to the instance and client; encrypted with the store key when there is one; expires 30 days after the last save) |
//! | `erpnet-oauth:cli:tokens:NAME:lock` | string | the refresh lock while a process holds it (its lease) |
//! | `erpnet-oauth:cli:secret:NAME` | string | the client secret `login` saved: sealed with the store key in the tokens' format (`EncryptionKey::seal`, the key name as associated data), never written without one |
//!
//! The client secret never reaches Redis in clear: with a store key (`--store-key-file`) it is saved
//! there encrypted, as the tokens are; without one it is not saved at all (`login` says so), because a
//! copy kept on one machine for a profile that another machine may log in again elsewhere could be sent
//! to another instance. Later commands then take it from `--client-secret-file` or
//! `ERPNET_CLIENT_SECRET`.

use crate::args::Global;
use crate::exit::Failure;
use crate::settings::{self, SavedProfile};
use erpnet_oauth_core::{ClientConfig, ClientSecret, IssuedTo, StoreError, StoreFile, TokenSet};
use erpnet_oauth_redis::{EncryptionKey, LoginId, MAX_LEASE, MIN_LEASE, RedactedUrl, RedisStore, redact_url};
use erpnet_oauth_ureq::{FileStore, StoreLock, TokenStore};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// The prefix of every key the CLI writes in a Redis store.
pub const REDIS_PREFIX: &str = "erpnet-oauth:cli:";
const TOKENS_PREFIX: &str = "erpnet-oauth:cli:tokens:";
const PROFILE_PREFIX: &str = "erpnet-oauth:cli:profile:";
const SECRET_PREFIX: &str = "erpnet-oauth:cli:secret:";
/// The URL schemes of a Redis store.
const REDIS_SCHEMES: &[&str] = &["redis", "rediss", "redis+unix"];
/// The bound on connecting to Redis and on each of its answers (or `--timeout`, when shorter).
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the profiles of this invocation live.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory: `NAME.profile.json`, `NAME.tokens.json`, `NAME.secret`.
    Dir(PathBuf),
    /// A Redis shared by several machines (see the module docs for its keys).
    Redis(Rc<Redis>),
}

impl Store {
    /// The store of `--store` (or `ERPNET_OAUTH_STORE`, which clap reads into it): a Redis URL, else a
    /// directory (the platform's default when neither is given).
    pub fn resolve(global: &Global, env: &impl Fn(&str) -> Option<String>) -> Result<Store, Failure> {
        let given = global.store.as_deref().and_then(Path::to_str);
        if let Some(url) = given.filter(|s| scheme_of(s).is_some()) {
            let scheme = scheme_of(url).unwrap_or_default();
            if !REDIS_SCHEMES.contains(&scheme.as_str()) {
                return Err(Failure::usage(format!(
                    "--store {} is neither a directory nor a Redis URL (redis://, rediss:// or redis+unix://)",
                    redact_url(url)
                )));
            }
            let key = global.store_key_file.as_deref().map(read_key_file).transpose()?;
            return Ok(Store::Redis(Rc::new(Redis::open(url, key, Duration::from_secs(global.timeout))?)));
        }
        if let Some(path) = &global.store_key_file {
            return Err(Failure::usage(format!(
                "--store-key-file {} (ERPNET_OAUTH_STORE_KEY_FILE) is for a Redis store (--store redis://...); \
                 a store directory is protected by its permissions instead",
                path.display()
            )));
        }
        Ok(Store::Dir(settings::store_dir(global, env)?))
    }

    /// The store as messages name it: the directory, or the URL with its password redacted.
    pub fn describe(&self) -> String {
        match self {
            Store::Dir(dir) => dir.display().to_string(),
            Store::Redis(redis) => redis.url.to_string(),
        }
    }

    /// The saved settings of `profile`; `None` when there are none.
    pub fn read_profile(&self, profile: &str) -> Result<Option<SavedProfile>, Failure> {
        match self {
            Store::Dir(dir) => settings::read_profile_file(dir, profile),
            Store::Redis(redis) => {
                let key = format!("{PROFILE_PREFIX}{profile}");
                let bytes: Option<Vec<u8>> =
                    redis.with("reading the profile", |c| redis::cmd("GET").arg(&key).query(c))?;
                bytes
                    .map(|b| {
                        serde_json::from_slice(&b).map_err(|e| {
                            Failure::usage(format!(
                                "the profile `{profile}` in {} (key {key}) is not valid ({e}); delete the key \
                                 (redis-cli DEL {key}) and run `erpnet-oauth login`",
                                redis.url
                            ))
                        })
                    })
                    .transpose()
            }
        }
    }

    /// Saves the settings of `profile` (atomically: a file renamed into place, or one `SET`).
    pub fn write_profile(&self, profile: &str, saved: &SavedProfile) -> Result<(), Failure> {
        match self {
            Store::Dir(dir) => settings::write_profile_file(dir, profile, saved),
            Store::Redis(redis) => {
                let json = serde_json::to_vec_pretty(saved).map_err(|e| Failure::usage(e.to_string()))?;
                let key = format!("{PROFILE_PREFIX}{profile}");
                redis.with("saving the profile", |c| redis::cmd("SET").arg(&key).arg(json).query::<()>(c))
            }
        }
    }

    /// Deletes the settings of `profile` (`logout --forget`).
    pub fn remove_profile(&self, profile: &str) -> Result<(), Failure> {
        match self {
            Store::Dir(dir) => settings::remove_profile_file(dir, profile),
            Store::Redis(redis) => redis.del("deleting the profile", &format!("{PROFILE_PREFIX}{profile}")),
        }
    }

    /// Deletes whatever is left of `profile`'s tokens once they are cleared (`logout --forget`): in Redis,
    /// the hash that keeps the generation after a clear. (The lock key, if another process holds it,
    /// expires with its lease.)
    pub fn forget_tokens(&self, profile: &str) -> Result<(), Failure> {
        match self {
            Store::Dir(_) => Ok(()),
            Store::Redis(redis) => redis.del("deleting the tokens", &format!("{TOKENS_PREFIX}{profile}")),
        }
    }

    /// Every profile of the store: each name with saved settings or stored tokens, sorted.
    pub fn profiles(&self) -> Result<BTreeSet<String>, Failure> {
        match self {
            Store::Dir(dir) => settings::profiles_in_dir(dir),
            Store::Redis(redis) => {
                let mut names = BTreeSet::new();
                for prefix in [PROFILE_PREFIX, TOKENS_PREFIX] {
                    for key in redis.scan(&format!("{prefix}*"))? {
                        // Lock keys (`NAME:lock`) and anything else not a profile name are left out.
                        if let Some(name) =
                            key.strip_prefix(prefix).filter(|n| settings::valid_profile_name(n))
                        {
                            names.insert(name.to_owned());
                        }
                    }
                }
                Ok(names)
            }
        }
    }

    /// Checks, before `login` sends the browser anywhere, that its result can be stored: the directory
    /// is created (0700) and writable; Redis answers.
    pub fn prepare_login(&self) -> Result<(), Failure> {
        match self {
            Store::Dir(dir) => {
                settings::create_store_dir(dir)?;
                settings::check_writable(dir)
            }
            Store::Redis(redis) => {
                redis.with("connecting", |c| redis::cmd("PING").query::<String>(c)).map(drop)
            }
        }
    }

    /// Where the tokens of `profile` are: the token file, or the Redis key (errors name it).
    pub fn token_location(&self, profile: &str) -> PathBuf {
        match self {
            Store::Dir(dir) => dir.join(format!("{profile}.tokens.json")),
            Store::Redis(_) => PathBuf::from(format!("{TOKENS_PREFIX}{profile}")),
        }
    }

    /// The token store of `profile`, for `client`'s tokens only when given (tokens issued to another
    /// instance or client are refused before any request).
    pub fn token_store(&self, profile: &str, client: Option<&ClientConfig>) -> Tokens {
        match self {
            Store::Dir(_) => {
                let file = FileStore::new(self.token_location(profile));
                Tokens::File(match client {
                    Some(client) => file.for_client(client),
                    None => file,
                })
            }
            Store::Redis(redis) => {
                let store = redis.tokens.for_login(login_id(profile));
                Tokens::Redis(Box::new(RedisTokens {
                    store: match client {
                        Some(client) => store.for_client(client),
                        None => store,
                    },
                    shown: redis.url.to_string(),
                }))
            }
        }
    }

    /// Whether tokens are stored for `profile` (a link in a directory counts: it is refused when read).
    pub fn tokens_present(&self, profile: &str) -> Result<bool, Failure> {
        match self {
            Store::Dir(_) => Ok(std::fs::symlink_metadata(self.token_location(profile)).is_ok()),
            Store::Redis(redis) => {
                let key = format!("{TOKENS_PREFIX}{profile}");
                redis.with("reading the tokens", |c| redis::cmd("HEXISTS").arg(&key).arg("tokens").query(c))
            }
        }
    }

    /// The stored tokens of `profile` with whom they were issued to, unbound (`status` judges it); for a
    /// Redis store whom is read by loading them bound to `expected` when given.
    pub fn token_record(
        &self,
        profile: &str,
        expected: Option<&IssuedTo>,
    ) -> Result<Option<StoreFile>, StoreError> {
        match self {
            Store::Dir(_) => {
                let path = self.token_location(profile);
                let Some(bytes) = erpnet_oauth_store::read_private_file(&path)? else { return Ok(None) };
                StoreFile::from_bytes(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt { path, reason: e.to_string() })
            }
            Store::Redis(redis) => {
                let store = redis.tokens.for_login(login_id(profile));
                let named = |e| name_corrupt(e, redis.url.as_str());
                let Some(tokens) = store.load().map_err(named)? else { return Ok(None) };
                let issued_to = match expected {
                    None => None,
                    Some(expected) => match store.bound_to(expected.clone()).load() {
                        Ok(_) => Some(expected.clone()),
                        Err(StoreError::IssuedToAnother { stored, .. }) => Some(stored),
                        Err(e) => return Err(named(e)),
                    },
                };
                Ok(Some(StoreFile { issued_to, tokens }))
            }
        }
    }
}

/// The scheme of `s` when it reads as a URL (`scheme://...`).
fn scheme_of(s: &str) -> Option<String> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// A profile name as a Redis login id (profile names always are one; the digest is never needed).
fn login_id(profile: &str) -> LoginId {
    LoginId::new(profile).unwrap_or_else(|_| LoginId::digest(profile))
}

/// A Redis store: the URL (never shown: it may hold a password), one connection for the profiles and
/// the saved secret, and the token store the sessions use.
pub struct Redis {
    /// The URL as messages show it (password redacted), and its password to scrub from error texts.
    url: RedactedUrl,
    client: redis::Client,
    conn: RefCell<Option<redis::Connection>>,
    /// The store key: the token store's encryption key, and the saved secret's (sealed under its key
    /// name, in the token store's format).
    key: Option<EncryptionKey>,
    timeout: Duration,
    /// The token store (bound to a profile and a client for each use).
    tokens: RedisStore,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.url.as_str())
            .field("encrypted", &self.key.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// The Redis at `url`; `key` encrypts the tokens and the saved secret; `http_timeout` is `--timeout`,
    /// from which the lock's lease is set: long enough for a renewal's token and JWKS requests.
    fn open(url: &str, key: Option<EncryptionKey>, http_timeout: Duration) -> Result<Redis, Failure> {
        let shown = RedactedUrl::new(url);
        let invalid =
            |reason: String| Failure::usage(format!("invalid Redis URL {shown}: {}", shown.scrub(&reason)));
        let client = redis::Client::open(url).map_err(|e| invalid(e.to_string()))?;
        let timeout = http_timeout.min(REDIS_TIMEOUT);
        let lease = (http_timeout.saturating_mul(2) + Duration::from_secs(10)).clamp(MIN_LEASE, MAX_LEASE);
        let mut tokens = RedisStore::open(url, "default")
            .and_then(|s| s.prefix(TOKENS_PREFIX))
            .and_then(|s| s.lease(lease))
            .and_then(|s| s.timeout(timeout))
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(key) = &key {
            tokens = tokens.encryption_key(key.clone());
        }
        Ok(Redis { url: shown, client, conn: RefCell::new(None), key, timeout, tokens })
    }

    /// Whether a store key was given.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Runs `f` on the connection (made on first use, again after a failure).
    fn with<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Failure> {
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|e| self.failure(&e, "connecting"))?;
            let t = Some(self.timeout);
            conn.set_read_timeout(t)
                .and_then(|()| conn.set_write_timeout(t))
                .map_err(|e| self.failure(&e, "connecting"))?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(Failure::network(format!("the Redis store {} is unavailable", self.url)));
        };
        f(conn).map_err(|e| {
            *slot = None;
            self.failure(&e, doing)
        })
    }

    fn del(&self, doing: &str, key: &str) -> Result<(), Failure> {
        self.with(doing, |c| redis::cmd("DEL").arg(key).query::<i64>(c)).map(drop)
    }

    /// The keys matching `pattern` (`SCAN`, never `KEYS`, which blocks the server).
    fn scan(&self, pattern: &str) -> Result<Vec<String>, Failure> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = self.with("listing the profiles", |c| {
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(200).query(c)
            })?;
            keys.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// A Redis error as a failure: exit 5 (retryable) when Redis could not be reached or answered late,
    /// exit 2 when it refused this client (password, ACL) or holds something else at the key. The text
    /// never holds the password.
    fn failure(&self, e: &redis::RedisError, doing: &str) -> Failure {
        use redis::{ErrorKind, ServerErrorKind};
        let reason = self.url.scrub(&e.to_string());
        let refused = matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::InvalidClientConfig
                | ErrorKind::Server(ServerErrorKind::NoPerm)
        ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if refused {
            Failure::usage(format!(
                "the Redis store {} refused this client ({doing}: {reason}): check the user and password in \
                 the URL and the server's ACL",
                self.url
            ))
        } else if e.code() == Some("WRONGTYPE") {
            Failure::usage(format!(
                "the Redis store {} holds a key of another type where erpnet-oauth keeps its data ({doing}: \
                 {reason}); keys under {REDIS_PREFIX} are erpnet-oauth's",
                self.url
            ))
        } else {
            Failure::network(format!(
                "the Redis store {} is unavailable ({doing}: {reason}); try again later",
                self.url
            ))
        }
    }

    fn secret_key(profile: &str) -> String {
        format!("{SECRET_PREFIX}{profile}")
    }

    /// Saves `secret` for `profile`, encrypted with the store key (there must be one).
    pub fn save_secret(&self, profile: &str, secret: &ClientSecret) -> Result<(), Failure> {
        let Some(key) = &self.key else {
            return Err(Failure::usage(
                "a Redis store saves the client secret only encrypted: pass --store-key-file PATH",
            ));
        };
        let name = Self::secret_key(profile);
        let sealed = key
            .seal(&name, secret.secret().as_bytes())
            .map_err(|e| Failure::usage(format!("saving the client secret: {e}")))?;
        self.with("saving the client secret", |c| redis::cmd("SET").arg(&name).arg(sealed).query::<()>(c))
    }

    /// The secret saved for `profile`; `None` when there is none. Without the store key, or with
    /// another one, an error that says what to pass.
    pub fn load_secret(&self, profile: &str) -> Result<Option<ClientSecret>, Failure> {
        let name = Self::secret_key(profile);
        let stored: Option<Vec<u8>> =
            self.with("reading the client secret", |c| redis::cmd("GET").arg(&name).query(c))?;
        let Some(stored) = stored else { return Ok(None) };
        let Some(key) = &self.key else {
            return Err(Failure::usage(format!(
                "the client secret of the profile `{profile}` is saved encrypted in {}: pass \
                 --store-key-file PATH (or set ERPNET_OAUTH_STORE_KEY_FILE) with the store's key, or pass \
                 --client-secret-file PATH or set ERPNET_CLIENT_SECRET",
                self.url
            )));
        };
        let plain = key.open(&name, &stored).map_err(|_| {
            Failure::usage(format!(
                "the client secret saved in {} (key {name}) could not be decrypted: the store key \
                 (--store-key-file) is not the one it was saved with, or the value was changed; pass the right \
                 key, or log in again to replace it",
                self.url
            ))
        })?;
        let text = String::from_utf8(plain).ok().filter(|t| !t.is_empty()).ok_or_else(|| {
            Failure::usage(format!(
                "the client secret saved in {} (key {name}) is not usable: log in again to replace it",
                self.url
            ))
        })?;
        Ok(Some(ClientSecret::new(text)))
    }

    /// Whether a secret is saved for `profile`.
    pub fn secret_present(&self, profile: &str) -> Result<bool, Failure> {
        let name = Self::secret_key(profile);
        self.with("reading the client secret", |c| redis::cmd("EXISTS").arg(&name).query::<i64>(c))
            .map(|n| n > 0)
    }

    /// Deletes the secret saved for `profile`.
    pub fn remove_secret(&self, profile: &str) -> Result<(), Failure> {
        self.del("deleting the client secret", &Self::secret_key(profile))
    }
}

/// Reads the store key: 32 bytes in base64 (`head -c 32 /dev/urandom | base64`), with a warning when
/// other users may read the file. No message ever shows what the file holds.
fn read_key_file(path: &Path) -> Result<EncryptionKey, Failure> {
    use base64::Engine as _;
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read the store key file {}: {e}", path.display())))?;
    let bad = || {
        Failure::usage(format!(
            "the store key file {} does not hold a 32-byte key in base64 (make one with: head -c 32 \
             /dev/urandom | base64 > FILE)",
            path.display()
        ))
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| bad())?;
    if raw.len() != 32 {
        return Err(bad());
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "erpnet-oauth: warning: the store key file {0} is accessible to other users (mode {1:04o}): \
                 chmod 600 {0}",
                path.display(),
                mode & 0o7777
            );
        }
    }
    EncryptionKey::from_slice(&raw).map_err(|_| bad())
}

/// A store error with corrupt tokens named by the store's URL (`shown`, the password redacted) and key,
/// not by the key alone. (The token store's errors hold no password: it scrubs them itself.)
fn name_corrupt(e: StoreError, shown: &str) -> StoreError {
    match e {
        StoreError::Corrupt { path, reason } => {
            StoreError::Corrupt { path: PathBuf::from(format!("{shown} key {}", path.display())), reason }
        }
        other => other,
    }
}

/// A profile's token store: a file, or Redis.
#[derive(Debug)]
pub enum Tokens {
    File(FileStore),
    Redis(Box<RedisTokens>),
}

/// The Redis token store, its corrupt tokens named by the URL and failed saves recorded.
#[derive(Debug)]
pub struct RedisTokens {
    store: RedisStore,
    /// The URL, password redacted.
    shown: String,
}

impl RedisTokens {
    fn named(&self, e: StoreError) -> StoreError {
        name_corrupt(e, &self.shown)
    }
}

impl TokenStore for Tokens {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        match self {
            Tokens::File(f) => f.load(),
            Tokens::Redis(r) => r.store.load().map_err(|e| r.named(e)),
        }
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        match self {
            Tokens::File(f) => f.save(tokens),
            Tokens::Redis(r) => r.store.save(tokens).map_err(|e| r.named(e)),
        }
    }
    fn clear(&self) -> Result<(), StoreError> {
        match self {
            Tokens::File(f) => f.clear(),
            Tokens::Redis(r) => r.store.clear().map_err(|e| r.named(e)),
        }
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        match self {
            Tokens::File(f) => TokenStore::lock(f),
            Tokens::Redis(r) => r.store.lock().map_err(|e| r.named(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_tokens_are_named_by_the_store_url() {
        let e = name_corrupt(
            StoreError::Corrupt { path: PathBuf::from(TOKENS_PREFIX), reason: "x".into() },
            "redis+unix:///s?pass=[redacted]",
        );
        assert!(
            e.to_string().contains("redis+unix:///s?pass=[redacted] key erpnet-oauth:cli:tokens:"),
            "{e}"
        );
        let fenced = || StoreError::Fenced { store: "s".into() };
        assert_eq!(name_corrupt(fenced(), "u").to_string(), fenced().to_string());
    }

    #[test]
    fn store_urls_and_directories_are_told_apart() {
        assert_eq!(scheme_of("redis://h"), Some("redis".to_owned()));
        assert_eq!(scheme_of("REDISS://h"), Some("rediss".to_owned()));
        assert_eq!(scheme_of("redis+unix:///s"), Some("redis+unix".to_owned()));
        assert_eq!(scheme_of("/home/u/.config/erpnet-oauth"), None);
        assert_eq!(scheme_of("./a://b"), None);
        let global = |args: &[&str]| {
            use clap::Parser as _;
            let mut full = vec!["erpnet-oauth"];
            full.extend_from_slice(args);
            full.push("status");
            crate::args::Cli::parse_from(full).global
        };
        let e = Store::resolve(&global(&["--store", "valkey://:pw@h/"]), &|_| None).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("valkey://:[redacted]@h/") && !e.message.contains("pw"), "{e:?}");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "AAAA").unwrap();
        let d = dir.path().to_str().unwrap();
        let e =
            Store::resolve(&global(&["--store", d, "--store-key-file", key.to_str().unwrap()]), &|_| None)
                .unwrap_err();
        assert!(e.message.contains("is for a Redis store"), "{e:?}");
        let e = Store::resolve(
            &global(&["--store", "redis://127.0.0.1:1/", "--store-key-file", key.to_str().unwrap()]),
            &|_| None,
        )
        .unwrap_err();
        assert!(e.message.contains("does not hold a 32-byte key in base64"), "{e:?}");
        let store = Store::resolve(&global(&["--store", "redis://:pw@127.0.0.1:1/"]), &|_| None).unwrap();
        assert!(!format!("{store:?}").contains("pw@"), "{store:?}");
        assert_eq!(store.describe(), "redis://:[redacted]@127.0.0.1:1/");
        let store = Store::resolve(&global(&["--store", "redis+unix:///run/r.sock?db=1&pass=pw"]), &|_| None)
            .unwrap();
        assert_eq!(store.describe(), "redis+unix:///run/r.sock?db=1&pass=[redacted]");
        assert!(!format!("{store:?}").contains("pw"), "{store:?}");
    }

    #[test]
    fn shared_store_errors_have_their_exit_codes() {
        use crate::errors::failure;
        use crate::exit::Code;
        use erpnet_oauth_core::{Error, PersistFailure, RefreshError};
        let store = || "redis://:[redacted]@h:6379/ key erpnet-oauth:cli:tokens:default".to_owned();
        // Retryable: Redis unreachable, the lock held too long, a save fenced by a newer one.
        for e in [
            StoreError::Unavailable { store: store(), reason: "connecting: refused".into() },
            StoreError::LockTimeout { store: store(), waited: Duration::from_secs(17) },
            StoreError::Fenced { store: store() },
        ] {
            let f = failure(Error::Store(e));
            assert_eq!(f.code, Code::Network, "{f:?}");
            assert!(f.message.contains("redis://:[redacted]@h:6379/"), "{f:?}");
        }
        let f = failure(Error::Store(StoreError::Decrypt { store: store(), reason: "wrong key".into() }));
        assert_eq!(f.code, Code::Usage, "{f:?}");
        assert!(f.message.contains("--store-key-file"), "{f:?}");
        let f = failure(Error::Store(StoreError::Other("refused this client".into())));
        assert_eq!(f.code, Code::Usage, "{f:?}");
        // A failed save after the refresh: the exit code follows what the store reported.
        let persist = |retryable| {
            Error::Refresh(RefreshError::Persist(PersistFailure {
                reason: "the token store ... was changed".into(),
                retryable,
            }))
        };
        assert_eq!(failure(persist(true)).code, Code::Network);
        assert_eq!(failure(persist(false)).code, Code::Usage);
    }
}
