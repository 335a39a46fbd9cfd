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
//! - [`FileStore`] keeps them in a JSON file (the format of [`StoreFile`], so a file written
//!   through one adapter is read by the other). It guarantees:
//!   - an atomic write: a temporary file is written, fsynced and renamed over the store, then the
//!     directory is fsynced; a process killed at any moment leaves the old file or the new one, never a
//!     partial one;
//!   - mode 0600 (Unix): the file holds a refresh token, as secret as a password;
//!   - no symbolic link followed: a token or lock file that is a link is refused
//!     ([`StoreError::Symlink`]), its target never read, written or created;
//!   - bound to one client ([`FileStore::for_client`]): the file records the instance (issuer) and client
//!     the tokens were issued to ([`IssuedTo`]), and tokens issued to another are refused
//!     ([`StoreError::IssuedToAnother`]): an access token is never sent to another instance;
//!   - a cross-process lock ([`FileStore::lock`], an advisory lock on `<file>.lock`) that sessions hold
//!     across "re-read, refresh, write", so processes sharing the file refresh one at a time;
//!   - cleanup of stale temporary files: those a killed save left behind (they hold tokens) are removed
//!     by a later save once they are ten minutes old;
//!   - a corrupt file is reported ([`StoreError::Corrupt`]), never silently overwritten or read as empty.
//! - [`check_directory`] refuses a store directory that others can change (group- or world-writable, or
//!   owned by another user), as ssh refuses such a `~/.ssh`: whoever can change it can replace the token
//!   file. [`create_directory`] creates one with mode 0700, then checks it. Call one of them before
//!   using a directory for a store: the file store does not judge its directory by itself.
//! - [`read_private_file`] and [`write_private_file`] read and replace any other file kept in a store
//!   directory (an application's settings next to its tokens) by the same rules: no link followed, mode
//!   0600, replaced atomically.

#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod file;
mod files;
mod memory;

pub use erpnet_oauth_core::TokenSet;
pub use erpnet_oauth_core::store::{IssuedTo, StoreError, StoreFile, StoreLock};
pub use file::FileStore;
pub use files::{check_directory, create_directory, read_private_file, write_private_file};
pub use memory::MemoryStore;
