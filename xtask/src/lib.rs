//! Project tasks, as a library so that `cargo test` runs them too.
//!
//! - [`conformance`]: the fixtures in `fixtures/`, one case per file, run against the core and through the
//!   ureq adapter against the mock ERP.net.

pub mod conformance;
