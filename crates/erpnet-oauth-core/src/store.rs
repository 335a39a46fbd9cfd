//! What the adapters' token stores share: the error a store reports and the cross-process lock it hands
//! out. The store traits themselves are the adapters' (one blocking, one async); the file format is
//! [`crate::TokenSet::to_store_file`]. Plain types: the core reads and writes no file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, syncing, renaming or deleting failed.
    #[error("the token store {path} could not be {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`read`, `written`, `locked`, `deleted`).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but does not hold tokens. It is left as it is: the next successful login
    /// replaces it, or delete it (the store's `clear`).
    #[error("the token store {path} is corrupt ({reason}); log in again to replace it, or delete it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong (no token appears here).
        reason: String,
    },
    /// A store of your own failed (or an async file store's task did not complete).
    #[error("the token store failed: {0}")]
    Other(String),
}

/// A held cross-process lock of a store; released when dropped.
pub struct StoreLock {
    guard: Option<Box<dyn Send>>,
}

impl StoreLock {
    /// A lock that holds nothing (stores used by one process only).
    pub fn unlocked() -> Self {
        StoreLock { guard: None }
    }

    /// A lock released when `guard` is dropped (e.g. a file holding an advisory lock).
    pub fn new(guard: impl Send + 'static) -> Self {
        StoreLock { guard: Some(Box::new(guard)) }
    }

    /// Whether something is actually locked.
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock").field("held", &self.is_held()).finish()
    }
}
