//! Scripted responses: a hook that sees every request before the normal handlers and may answer it
//! instead of them, close the connection, or never answer.

use std::fmt;
use std::sync::{Arc, RwLock};

/// What an [`Interceptor`] decides for one request.
pub enum Intercepted {
    /// The mock handles the request as usual (injected faults included).
    Pass,
    /// Answer with this response instead (status, headers and body exactly as given; the server adds
    /// `content-length` and `date` when absent).
    Respond(http::Response<Vec<u8>>),
    /// Close the connection without sending any response.
    Drop,
    /// Never answer; the connection stays open until the client gives up or the mock stops.
    Hang,
}

impl fmt::Debug for Intercepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intercepted::Pass => f.write_str("Pass"),
            Intercepted::Respond(r) => f.debug_tuple("Respond").field(&r.status()).finish(),
            Intercepted::Drop => f.write_str("Drop"),
            Intercepted::Hang => f.write_str("Hang"),
        }
    }
}

/// The hook: sees the whole request (method, path and query, headers, body bytes) and decides.
///
/// It runs on a blocking thread of the server's runtime, once per request, possibly for several
/// requests at the same time.
pub type Interceptor = Arc<dyn Fn(&http::Request<Vec<u8>>) -> Intercepted + Send + Sync>;

/// The mock's slot for the hook.
#[derive(Default)]
pub(crate) struct InterceptorSlot(RwLock<Option<Interceptor>>);

impl InterceptorSlot {
    pub(crate) fn set(&self, hook: Option<Interceptor>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    pub(crate) fn get(&self) -> Option<Interceptor> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
