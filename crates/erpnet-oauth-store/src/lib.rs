//! Where an ERP.net OAuth session keeps its tokens: the token stores of `erpnet-oauth-ureq` (blocking) and
//! `erpnet-oauth-async` (tokio), implemented once.
//!
//! Both adapters re-export these types as their own `FileStore` and `MemoryStore` and implement their
//! `TokenStore` trait for them: the blocking adapter calls the methods directly, the async adapter runs
//! the file store's calls on tokio's blocking pool (`spawn_blocking`), never on a runtime thread. Use
//! this crate directly only to read or write a store outside a session (a tool, a test).
//!
//! The methods here are plain blocking calls; the sans-IO core (`erpnet-oauth-core`) does no I/O, so
//! the file system is touched here and nowhere else.
//!
//! - [`MemoryStore`] keeps the tokens in memory: a login lasts as long as the process.
//! - [`FileStore`] keeps them in a JSON file (the format of [`TokenSet::to_store_file`], so a file written
//!   through one adapter is read by the other). It guarantees:
//!   - an atomic write: a temporary file is written, fsynced and renamed over the store, then the
//!     directory is fsynced; a process killed at any moment leaves the old file or the new one, never a
//!     partial one;
//!   - mode 0600 (Unix): the file holds a refresh token, as secret as a password;
//!   - a cross-process lock ([`FileStore::lock`], an advisory lock on `<file>.lock`) that sessions hold
//!     across "re-read, refresh, write", so processes sharing the file refresh one at a time;
//!   - cleanup of stale temporary files: those a killed save left behind (they hold tokens) are removed
//!     by a later save once they are ten minutes old;
//!   - a corrupt file is reported ([`StoreError::Corrupt`]), never silently overwritten or read as empty.

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod file;
mod memory;

pub use erpnet_oauth_core::TokenSet;
pub use erpnet_oauth_core::store::{StoreError, StoreLock};
pub use file::FileStore;
pub use memory::MemoryStore;
