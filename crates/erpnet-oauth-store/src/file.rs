//! The file store.

use erpnet_oauth_core::TokenSet;
use erpnet_oauth_core::store::{StoreError, StoreLock};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keeps the tokens in a JSON file.
///
/// - Written atomically: a temporary file in the same directory is written, fsynced and renamed over the
///   store, then the directory is fsynced. A process killed at any moment leaves either the old file or
///   the new one, never a partial one. Temporary files that such a kill leaves behind (they hold tokens)
///   are removed by a later save once they are ten minutes old.
/// - Created with mode 0600 (Unix): the file holds a refresh token, as secret as a password.
/// - Shared between processes: [`Self::lock`] takes an exclusive advisory lock on a separate
///   `<file>.lock`, so processes sharing the file refresh one at a time and re-read it first. (The
///   adapters' `TokenStore` implementations report the store as shared.)
/// - A file that exists but cannot be parsed is reported as [`StoreError::Corrupt`] and left untouched
///   until the next login replaces it (or [`Self::clear`] deletes it).
///
/// Every method blocks on the file system. Cloning copies the two paths (no file is opened until a
/// method is called), so an async caller can move a clone onto a blocking thread.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
}

/// Makes the temporary file names of one process's concurrent saves distinct.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// A store at `path` (the file need not exist; its directory must).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        FileStore { path, lock_path }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file next to it.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The stored tokens; `None` when the file does not exist. A file that cannot be read is
    /// [`StoreError::Io`], one that does not hold tokens [`StoreError::Corrupt`]: never silently empty.
    pub fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read")(e)),
        };
        TokenSet::from_store_file(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), reason: e.to_string() })
    }

    /// Replaces the stored tokens atomically. When this returns `Ok`, the new file and its directory
    /// entry are on disk: the tokens survive a crash.
    pub fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let bytes = tokens.to_store_file().map_err(|e| StoreError::Other(e.to_string()))?;
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = self.dir().join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = self.write_temp(&temp, &bytes) {
            let _ = fs::remove_file(&temp);
            return Err(self.io("written")(e));
        }
        if let Err(e) = fs::rename(&temp, &self.path) {
            let _ = fs::remove_file(&temp);
            return Err(self.io("written")(e));
        }
        self.sync_dir().map_err(self.io("written"))?;
        self.remove_stale_temps(&name);
        Ok(())
    }

    /// Deletes the store file (a missing one is not an error). The lock file is left: another process
    /// may be waiting on it.
    pub fn clear(&self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => self.sync_dir().map_err(self.io("deleted")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("deleted")(e)),
        }
    }

    /// Takes the exclusive advisory lock on [`Self::lock_path`] (created with mode 0600 if missing),
    /// blocking until no other holder has it, in this process or another. Released when the returned
    /// [`StoreLock`] is dropped.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
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

    /// Removes temporary files that a process killed in the middle of a save left behind (they hold tokens).
    /// Only files older than any save could take are removed, so a concurrent writer is never disturbed.
    fn remove_stale_temps(&self, name: &str) {
        const STALE: Duration = Duration::from_secs(600);
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

    fn write_temp(&self, temp: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};

    fn tokens() -> TokenSet {
        TokenSet {
            access_token: AccessToken::new("at"),
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            id_token: None,
            scopes: Scopes::default(),
        }
    }

    #[test]
    fn a_save_removes_stale_temporary_files_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        let stale = dir.path().join(".tokens.json.4242.0.tmp");
        let fresh = dir.path().join(".tokens.json.4243.0.tmp");
        let other = dir.path().join(".other.json.4244.0.tmp");
        for p in [&stale, &fresh, &other] {
            fs::write(p, b"{}").unwrap();
        }
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        for p in [&stale, &other] {
            File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        }
        let tokens = tokens();
        store.save(&tokens).unwrap();
        assert!(!stale.exists(), "a stale temporary file of this store is removed");
        assert!(fresh.exists(), "a fresh one may be another writer's: kept");
        assert!(other.exists(), "another store's files are not touched");
        assert_eq!(store.load().unwrap(), Some(tokens));
    }

    #[test]
    fn saves_loads_clears_and_reports_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        assert_eq!(store.lock_path(), dir.path().join("tokens.json.lock"));
        assert_eq!(store.load().unwrap(), None, "no file: no tokens");
        store.save(&tokens()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(store.clone().load().unwrap(), Some(tokens()), "a clone is the same store");
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.clear().unwrap();

        fs::write(store.path(), b"not json").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
        assert_eq!(fs::read(store.path()).unwrap(), b"not json", "left untouched");
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        let held = store.lock().unwrap();
        assert!(held.is_held());
        // A second open file description of the lock file: what another process would hold.
        let other = File::options().write(true).open(store.lock_path()).unwrap();
        assert!(matches!(other.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(held);
        assert!(other.try_lock().is_ok(), "released when dropped");
    }
}
