//! The clock and the random source the adapter reads (the core never does).

use std::time::SystemTime;

/// Where the session gets the time from. [`SystemClock`] in production; tests can pass their own (a
/// closure `Fn() -> SystemTime` is a clock).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F: Fn() -> SystemTime + Send + Sync> Clock for F {
    fn now(&self) -> SystemTime {
        self()
    }
}

/// The operating system's random source, for state, nonce and PKCE verifiers.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl erpnet_oauth_core::RandomSource for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), erpnet_oauth_core::RandomError> {
        getrandom::fill(dest).map_err(|e| erpnet_oauth_core::RandomError(e.to_string()))
    }
}
