//! The memory store.

use erpnet_oauth_core::TokenSet;
use erpnet_oauth_core::store::StoreError;
use std::sync::{Mutex, MutexGuard};

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

    /// The stored tokens; `None` when there are none. Never fails.
    pub fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.slot().clone())
    }

    /// Replaces the stored tokens. Never fails.
    pub fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        *self.slot() = Some(tokens.clone());
        Ok(())
    }

    /// Forgets the stored tokens. Never fails.
    pub fn clear(&self) -> Result<(), StoreError> {
        *self.slot() = None;
        Ok(())
    }

    /// The tokens, even if a thread panicked holding them (an `Option` cannot be left half written).
    fn slot(&self) -> MutexGuard<'_, Option<TokenSet>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erpnet_oauth_core::{AccessToken, Scopes};

    #[test]
    fn saves_loads_and_clears() {
        let tokens = TokenSet {
            access_token: AccessToken::new("at"),
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            id_token: None,
            scopes: Scopes::default(),
        };
        let store = MemoryStore::new();
        assert_eq!(store.load().unwrap(), None);
        store.save(&tokens).unwrap();
        assert_eq!(store.load().unwrap(), Some(tokens.clone()));
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
        assert_eq!(MemoryStore::with_tokens(tokens.clone()).load().unwrap(), Some(tokens));
    }
}
