//! Token stores: where a session keeps its tokens between runs.
//!
//! [`MemoryStore`] forgets them when the process ends; [`FileStore`] keeps them in a JSON file (the same
//! format as the blocking adapter's, so both can share one), written atomically with mode 0600, shared
//! safely between processes with an advisory lock. The file store's blocking system calls run on
//! tokio's blocking pool (`spawn_blocking`), never on a runtime thread.

use crate::transport::BoxFuture;
use erpnet_oauth_core::TokenSet;
pub use erpnet_oauth_core::store::{StoreError, StoreLock};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where a session keeps its tokens, asynchronously. The methods return boxed futures so that a session
/// can hold any store as `dyn TokenStore`.
///
/// A store shared by several processes says so with [`Self::is_shared`] and implements [`Self::lock`]: the
/// session then refreshes under the lock, re-reading the store first, so that one process refreshes and
/// the others use what it stored (a rotated refresh token is never sent twice).
pub trait TokenStore: Send + Sync {
    /// The stored tokens; `None` when there are none. A store that cannot be read is an error, never
    /// silently empty.
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>>;
    /// Replaces the stored tokens. When the future completes with `Ok`, the tokens must survive a crash.
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Deletes the stored tokens.
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Takes the cross-process lock held across "re-read, refresh, write". The default holds nothing.
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        Box::pin(async { Ok(StoreLock::unlocked()) })
    }
    /// Whether other processes may change the store, so that it must be re-read under [`Self::lock`]
    /// before a refresh. Default false.
    fn is_shared(&self) -> bool {
        false
    }
}

impl<S: TokenStore + ?Sized> TokenStore for Arc<S> {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        (**self).load()
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(tokens)
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).clear()
    }
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        (**self).lock()
    }
    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
}

/// Keeps the tokens in memory only: a login lasts as long as the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: Mutex<Option<TokenSet>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `tokens`.
    pub fn with_tokens(tokens: TokenSet) -> Self {
        MemoryStore { tokens: Mutex::new(Some(tokens)) }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<TokenSet>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        let tokens = self.slot().clone();
        Box::pin(async move { Ok(tokens) })
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        *self.slot() = Some(tokens.clone());
        Box::pin(async { Ok(()) })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        *self.slot() = None;
        Box::pin(async { Ok(()) })
    }
}

/// Keeps the tokens in a JSON file.
///
/// - Written atomically: a temporary file in the same directory is written, fsynced and renamed over the
///   store, then the directory is fsynced. A process killed at any moment leaves either the old file or
///   the new one, never a partial one. Temporary files that such a kill leaves behind (they hold tokens)
///   are removed by a later save once they are ten minutes old.
/// - Created with mode 0600 (Unix): the file holds a refresh token, as secret as a password.
/// - Shared between processes: [`TokenStore::lock`] takes an exclusive advisory lock on a separate
///   `<file>.lock` (on the blocking pool), so processes sharing the file refresh one at a time and
///   re-read it first.
/// - A file that exists but cannot be parsed is reported as [`StoreError::Corrupt`] and left untouched.
#[derive(Debug, Clone)]
pub struct FileStore {
    paths: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    path: PathBuf,
    lock_path: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// A store at `path` (the file need not exist; its directory must).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        FileStore { paths: Arc::new(Paths { path, lock_path }) }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.paths.path
    }

    /// The lock file next to it.
    pub fn lock_path(&self) -> &Path {
        &self.paths.lock_path
    }

    /// Runs `f` on the blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Paths) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let paths = self.paths.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&paths))
                .await
                .map_err(|e| StoreError::Other(format!("the file store task did not complete: {e}")))?
        })
    }
}

impl Paths {
    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io { path: self.path.clone(), action, source }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(self.dir())?.sync_all()
    }

    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read")(e)),
        };
        TokenSet::from_store_file(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), reason: e.to_string() })
    }

    fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = self.dir().join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            return Err(self.io("written")(e));
        }
        self.sync_dir().map_err(self.io("written"))?;
        self.remove_stale_temps(&name);
        Ok(())
    }

    /// Removes temporary files that a process killed in the middle of a save left behind (they hold tokens).
    /// Only files older than any save could take are removed, so a concurrent writer is never disturbed.
    fn remove_stale_temps(&self, name: &str) {
        const STALE: std::time::Duration = std::time::Duration::from_secs(600);
        let prefix = format!(".{name}.");
        let Ok(entries) = fs::read_dir(self.dir()) else { return };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if !(file_name.starts_with(&prefix) && file_name.ends_with(".tmp")) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn clear(&self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => self.sync_dir().map_err(self.io("deleted")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("deleted")(e)),
        }
    }

    fn lock(&self) -> Result<StoreLock, StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let err = |source| StoreError::Io { path: self.lock_path.clone(), action: "locked", source };
        let file = options.open(&self.lock_path).map_err(err)?;
        file.lock().map_err(err)?;
        Ok(StoreLock::new(file))
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        self.blocking(Paths::load)
    }

    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        let bytes = tokens.to_store_file().map_err(|e| StoreError::Other(e.to_string()));
        match bytes {
            Ok(bytes) => self.blocking(move |p| p.save(&bytes)),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.blocking(Paths::clear)
    }

    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        self.blocking(Paths::lock)
    }

    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod stale_temp_tests {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};

    #[tokio::test]
    async fn a_save_removes_stale_temporary_files_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        let stale = dir.path().join(".tokens.json.4242.0.tmp");
        let fresh = dir.path().join(".tokens.json.4243.0.tmp");
        let other = dir.path().join(".other.json.4244.0.tmp");
        for p in [&stale, &fresh, &other] {
            fs::write(p, b"{}").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&stale, &other] {
            File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        }
        let tokens = TokenSet {
            access_token: AccessToken::new("at"),
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            id_token: None,
            scopes: Scopes::default(),
        };
        store.save(&tokens).await.unwrap();
        assert!(!stale.exists(), "a stale temporary file of this store is removed");
        assert!(fresh.exists(), "a fresh one may be another writer's: kept");
        assert!(other.exists(), "another store's files are not touched");
        assert_eq!(store.load().await.unwrap(), Some(tokens));
    }
}
