//! The file store.

use crate::files::{dir_of, open_lock_file, read_private_file, sync_dir, write_private_file};
use erpnet_oauth_core::store::{IssuedTo, StoreError, StoreFile, StoreLock};
use erpnet_oauth_core::{ClientConfig, TokenSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Keeps the tokens in a JSON file.
///
/// - Written atomically: a temporary file in the same directory is written, fsynced and renamed over the
///   store, then the directory is fsynced. A process killed at any moment leaves either the old file or
///   the new one, never a partial one. Temporary files that such a kill leaves behind (they hold tokens)
///   are removed by a later save once they are ten minutes old.
/// - Created with mode 0600 (Unix): the file holds a refresh token, as secret as a password.
/// - No symbolic link is followed: a token file or lock file that is a link is refused
///   ([`StoreError::Symlink`]) and its target left untouched; a save replaces a link, never writes
///   through it. (Check the directory itself with [`crate::check_directory`].)
/// - Shared between processes: [`Self::lock`] takes an exclusive advisory lock on a separate
///   `<file>.lock`, so processes sharing the file refresh one at a time and re-read it first.
/// - Bound to one client ([`Self::for_client`]): the file records the instance (issuer) and client the
///   tokens were issued to, and a load refuses tokens issued to another
///   ([`StoreError::IssuedToAnother`]), so a session configured for another instance fails instead of
///   sending them there. Files without the record (written before it existed, or by an unbound store)
///   are judged by their ID token's `iss` and `aud` when they have one, and otherwise still load.
/// - A file that exists but cannot be parsed is reported as [`StoreError::Corrupt`] and left untouched
///   until the next login replaces it (or [`Self::clear`] deletes it).
///
/// Every method blocks on the file system. Cloning copies the two paths (no file is opened until a
/// method is called), so an async caller can move a clone onto a blocking thread.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    issued_to: Option<IssuedTo>,
}

impl FileStore {
    /// A store at `path` (the file need not exist; its directory must), not bound to a client: see
    /// [`Self::for_client`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        FileStore { path, lock_path, issued_to: None }
    }

    /// This store, for the tokens of `client` only: saves record its issuer and client id, and loads
    /// refuse tokens issued to another ([`StoreError::IssuedToAnother`]).
    ///
    /// ```
    /// # use erpnet_oauth_core::ClientConfig;
    /// # use erpnet_oauth_store::FileStore;
    /// let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first").build()?;
    /// let store = FileStore::new("tokens.json").for_client(&client);
    /// assert_eq!(store.issued_to().map(|i| i.issuer.as_str()), Some("https://demodb.my.erp.net/id"));
    /// # Ok::<_, erpnet_oauth_core::ConfigError>(())
    /// ```
    pub fn for_client(self, client: &ClientConfig) -> Self {
        self.bound_to(IssuedTo::of(client))
    }

    /// This store, for tokens issued to `issued_to` only (see [`Self::for_client`]).
    pub fn bound_to(mut self, issued_to: IssuedTo) -> Self {
        self.issued_to = Some(issued_to);
        self
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file next to it.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Whom the tokens of this store must have been issued to, when it is bound.
    pub fn issued_to(&self) -> Option<&IssuedTo> {
        self.issued_to.as_ref()
    }

    /// The stored tokens; `None` when the file does not exist. A file that cannot be read is
    /// [`StoreError::Io`], a link [`StoreError::Symlink`], one that does not hold tokens
    /// [`StoreError::Corrupt`]: never silently empty. A bound store refuses tokens issued to another
    /// client or instance ([`StoreError::IssuedToAnother`]).
    pub fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let Some(bytes) = read_private_file(&self.path)? else { return Ok(None) };
        let file = StoreFile::from_bytes(&bytes)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        match &self.issued_to {
            None => Ok(Some(file.tokens)),
            Some(expected) => file.tokens_for(expected).map(Some).map_err(|stored| {
                StoreError::IssuedToAnother { path: self.path.clone(), stored, expected: expected.clone() }
            }),
        }
    }

    /// Replaces the stored tokens atomically (with the record of whom they were issued to, when the store
    /// is bound). When this returns `Ok`, the new file and its directory entry are on disk: the tokens
    /// survive a crash.
    pub fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let file = StoreFile { issued_to: self.issued_to.clone(), tokens: tokens.clone() };
        let bytes = file.to_bytes().map_err(|e| StoreError::Other(e.to_string()))?;
        write_private_file(&self.path, &bytes)
    }

    /// Deletes the store file (a missing one is not an error; a link is deleted, not its target). The
    /// lock file is left: another process may be waiting on it.
    pub fn clear(&self) -> Result<(), StoreError> {
        let err = |source| StoreError::Io { path: self.path.clone(), action: "deleted", source };
        match fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&dir_of(&self.path)).map_err(err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Takes the exclusive advisory lock on [`Self::lock_path`] (created with mode 0600 if missing; a
    /// link is refused, [`StoreError::Symlink`]), blocking until no other holder has it, in this process
    /// or another. Released when the returned [`StoreLock`] is dropped.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let file = open_lock_file(&self.lock_path)?;
        file.lock().map_err(|source| StoreError::Io {
            path: self.lock_path.clone(),
            action: "locked",
            source,
        })?;
        Ok(StoreLock::new(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};
    use std::fs::File;
    use std::time::Duration;

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

#[cfg(test)]
#[cfg(unix)]
mod links {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};
    use std::os::unix::fs::symlink;

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

    /// A store directory, and a file elsewhere holding something a planted link must not reach.
    fn world() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        fs::write(&target, tokens().to_store_file().unwrap()).unwrap();
        (dir, elsewhere, target)
    }

    #[test]
    fn a_token_file_that_is_a_link_is_refused_and_its_target_untouched() {
        let (dir, _elsewhere, target) = world();
        let before = fs::read(&target).unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        symlink(&target, store.path()).unwrap();
        let r = store.load();
        assert!(matches!(&r, Err(StoreError::Symlink { path }) if path == store.path()), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("tokens.json is a symbolic link"));
        store.save(&tokens()).unwrap();
        assert_eq!(fs::read(&target).unwrap(), before, "a save replaces the link, never writes through it");
        assert!(!fs::symlink_metadata(store.path()).unwrap().file_type().is_symlink());
        symlink(&target, dir.path().join("other.json")).unwrap();
        FileStore::new(dir.path().join("other.json")).clear().unwrap();
        assert_eq!(fs::read(&target).unwrap(), before, "a clear deletes the link, not its target");
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
        let (dir, elsewhere, target) = world();
        let before = fs::read(&target).unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        symlink(&target, store.lock_path()).unwrap();
        let r = store.lock();
        assert!(matches!(&r, Err(StoreError::Symlink { path }) if path == store.lock_path()), "{r:?}");
        assert_eq!(fs::read(&target).unwrap(), before);
        // A dangling link: following it would create the file it names.
        let missing = elsewhere.path().join("created-through-the-link");
        fs::remove_file(store.lock_path()).unwrap();
        symlink(&missing, store.lock_path()).unwrap();
        assert!(matches!(store.lock(), Err(StoreError::Symlink { .. })));
        assert!(!missing.exists(), "nothing is created through the link");
    }

    #[test]
    fn a_bound_store_records_whom_and_refuses_tokens_issued_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let a = IssuedTo::new("https://a.example/id", "app");
        let b = IssuedTo::new("https://b.example/id", "app");
        FileStore::new(&path).bound_to(a.clone()).save(&tokens()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["issued_to"]["issuer"], "https://a.example/id");
        assert_eq!(FileStore::new(&path).bound_to(a.clone()).load().unwrap(), Some(tokens()));
        let r = FileStore::new(&path).bound_to(b.clone()).load();
        assert!(
            matches!(&r, Err(StoreError::IssuedToAnother { path: p, stored, expected })
                if *p == path && *stored == a && *expected == b),
            "{r:?}"
        );
        assert_eq!(FileStore::new(&path).load().unwrap(), Some(tokens()), "an unbound store reads any");
        // A file written before the record existed still loads.
        fs::write(&path, tokens().to_store_file().unwrap()).unwrap();
        assert_eq!(FileStore::new(&path).bound_to(b).load().unwrap(), Some(tokens()));
    }
}
