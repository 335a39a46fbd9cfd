//! Project tasks, as a library so that `cargo test` runs them too.
//!
//! - [`conformance`]: the fixtures in `fixtures/`, one case per file, run through the core and through the
//!   ureq and async adapters against the mock ERP.net.

pub mod conformance;
