//! Token stores: where a session keeps its tokens between runs.
//!
//! [`MemoryStore`] forgets them when the process ends; [`FileStore`] keeps them in a JSON file, written
//! atomically with mode 0600, shared safely between processes with an advisory lock. Both are
//! `erpnet-oauth-store`'s (the blocking adapter uses the same ones, so both read and write the same
//! files); this module adds the async [`TokenStore`] trait a session holds them by.
//!
//! Through [`TokenStore`], the file store's blocking system calls run on tokio's blocking pool
//! (`spawn_blocking`, on a clone of the store), never on a runtime thread. The stores' inherent methods,
//! which a method call on a `FileStore` or `MemoryStore` value picks first (`store.load()`), are the
//! synchronous ones: in async code, call `TokenStore::load(&store).await`.

use crate::transport::BoxFuture;
use erpnet_oauth_core::TokenSet;
pub use erpnet_oauth_core::store::{StoreError, StoreLock};
pub use erpnet_oauth_store::{FileStore, MemoryStore};
use std::sync::Arc;

/// Where a session keeps its tokens, asynchronously. The methods return boxed futures so that a session
/// can hold any store as `dyn TokenStore`.
///
/// A store that other processes may share implements [`Self::lock`]: every renewal (and every logout)
/// runs under the lock after re-reading the store, so that one process refreshes and the others use what
/// it stored (a rotated refresh token is never sent twice).
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
}

/// In memory: each call completes at once (a mutex held for a clone), when it is made; no lock.
impl TokenStore for MemoryStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        let result = MemoryStore::load(self);
        Box::pin(async move { result })
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = MemoryStore::save(self, tokens);
        Box::pin(async move { result })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = MemoryStore::clear(self);
        Box::pin(async move { result })
    }
}

/// Shared between processes: [`TokenStore::lock`] is the file's advisory lock ([`FileStore::lock`]),
/// waited for on the blocking pool. Every call runs on the blocking pool when the future is first polled.
impl TokenStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, StoreError>> {
        blocking(self, FileStore::load)
    }
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), StoreError>> {
        let tokens = tokens.clone();
        blocking(self, move |store| FileStore::save(store, &tokens))
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        blocking(self, FileStore::clear)
    }
    fn lock(&self) -> BoxFuture<'_, Result<StoreLock, StoreError>> {
        blocking(self, FileStore::lock)
    }
}

/// Runs `f` on a clone of `store` on tokio's blocking pool. A task that does not complete (it panicked,
/// or the runtime is shutting down) is [`StoreError::Other`].
fn blocking<T: Send + 'static>(
    store: &FileStore,
    f: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let store = store.clone();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Other(format!("the file store task did not complete: {e}")))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};
    use std::sync::mpsc::RecvTimeoutError;
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

    #[tokio::test]
    async fn the_file_store_round_trips_through_the_async_trait() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path().join("tokens.json")));
        assert_eq!(store.load().await.unwrap(), None);
        store.save(&tokens()).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(tokens()));
        let lock = store.lock().await.unwrap();
        assert!(lock.is_held());
        assert!(dir.path().join("tokens.json.lock").exists());
        drop(lock);
        store.clear().await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        assert!(!dir.path().join("tokens.json").exists());
    }

    #[tokio::test]
    async fn the_memory_store_round_trips_through_the_async_trait() {
        let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
        store.save(&tokens()).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(tokens()));
        assert!(!store.lock().await.unwrap().is_held());
        store.clear().await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
    }

    /// On a runtime with one thread, a task waits for the file lock while another still runs and then
    /// releases it: the wait is on the blocking pool. (Were it on the runtime thread, nothing would run
    /// again; the bound turns that hang into a failure.)
    #[test]
    fn waiting_for_the_file_lock_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("tokens.json"));
        let (done, finished) = std::sync::mpsc::channel();
        let scenario = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async move {
                let held = TokenStore::lock(&store).await.unwrap();
                let other = store.clone();
                let waiter = tokio::spawn(async move { TokenStore::lock(&other).await.map(|l| l.is_held()) });
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                assert!(!waiter.is_finished(), "the lock is held: the waiter waits");
                drop(held);
                done.send(waiter.await.unwrap().unwrap()).unwrap();
            });
        });
        let outcome = finished.recv_timeout(Duration::from_secs(60));
        if let Err(RecvTimeoutError::Disconnected) = outcome {
            // The scenario failed: its own panic message says why.
            std::panic::resume_unwind(scenario.join().err().unwrap_or_else(|| Box::new("no result")));
        }
        let held = outcome.expect("the runtime thread is blocked waiting for the lock");
        assert!(held, "the waiter got the lock once it was released");
    }
}
