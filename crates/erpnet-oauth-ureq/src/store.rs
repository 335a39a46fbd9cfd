//! Token stores: where a session keeps its tokens between runs.
//!
//! [`MemoryStore`] forgets them when the process ends; [`FileStore`] keeps them in a JSON file, written
//! atomically with mode 0600, and shares them safely between processes with an advisory lock. Both are
//! `erpnet-oauth-store`'s (the async adapter uses the same ones); this module adds the [`TokenStore`] trait
//! a session holds them by, and implements it for them by calling them directly.

use erpnet_oauth_core::TokenSet;
pub use erpnet_oauth_core::store::{StoreError, StoreLock};
pub use erpnet_oauth_store::{FileStore, MemoryStore};

/// Where a session keeps its tokens.
///
/// A store that other processes may share implements [`Self::lock`]: every renewal (and every logout)
/// runs under the lock after re-reading the store, so that one process refreshes and the others use what
/// it stored (a rotated refresh token is never sent twice).
pub trait TokenStore: Send + Sync {
    /// The stored tokens; `None` when there are none. A store that cannot be read is an error, never
    /// silently empty.
    fn load(&self) -> Result<Option<TokenSet>, StoreError>;
    /// Replaces the stored tokens. When this returns `Ok`, the tokens must survive a crash.
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError>;
    /// Deletes the stored tokens.
    fn clear(&self) -> Result<(), StoreError>;
    /// Takes the cross-process lock held across "re-read, refresh, write" (blocking until it is free).
    /// The default holds nothing.
    fn lock(&self) -> Result<StoreLock, StoreError> {
        Ok(StoreLock::unlocked())
    }
}

impl<S: TokenStore + ?Sized> TokenStore for std::sync::Arc<S> {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        (**self).load()
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        (**self).save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        (**self).clear()
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        (**self).lock()
    }
}

/// In memory: one process only, no lock.
impl TokenStore for MemoryStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        MemoryStore::load(self)
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        MemoryStore::save(self, tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        MemoryStore::clear(self)
    }
}

/// Shared between processes: [`TokenStore::lock`] is the file's advisory lock ([`FileStore::lock`]).
impl TokenStore for FileStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        FileStore::load(self)
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        FileStore::save(self, tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        FileStore::clear(self)
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        FileStore::lock(self)
    }
}
