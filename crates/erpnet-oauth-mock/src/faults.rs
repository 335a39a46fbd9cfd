//! Fault injection and counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An endpoint of the mock, as a target for [`Fault`]s.
///
/// In the admin path's JSON: `discovery`, `jwks`, `authorize`, `login`, `token`, `user_info`, `revocation`,
/// `end_session`, `domain_api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /id/.well-known/openid-configuration`
    Discovery,
    /// `GET /id/.well-known/openid-configuration/jwks`
    Jwks,
    /// `GET /id/connect/authorize`
    Authorize,
    /// `GET|POST /id/account/login`
    Login,
    /// `POST /id/connect/token`
    Token,
    /// `GET|POST /id/connect/userinfo`
    UserInfo,
    /// `POST /id/connect/revocation`
    Revocation,
    /// `GET|POST /id/connect/endsession`
    EndSession,
    /// Everything under `/api/`.
    DomainApi,
}

impl Endpoint {
    /// The endpoint a request path belongs to; `None` for the admin path and unknown paths.
    pub(crate) fn for_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/id/.well-known/openid-configuration" => Endpoint::Discovery,
            "/id/.well-known/openid-configuration/jwks" => Endpoint::Jwks,
            "/id/connect/authorize" => Endpoint::Authorize,
            "/id/account/login" => Endpoint::Login,
            "/id/connect/token" => Endpoint::Token,
            "/id/connect/userinfo" => Endpoint::UserInfo,
            "/id/connect/revocation" => Endpoint::Revocation,
            "/id/connect/endsession" => Endpoint::EndSession,
            p if p.starts_with("/api/") => Endpoint::DomainApi,
            _ => return None,
        })
    }
}

/// What an endpoint does instead of (or before) answering normally.
///
/// Admin-path JSON (the `fault` member): `{"kind": "delay", "ms": 250}`, `{"kind": "status", "status": 503}`,
/// `{"kind": "malformed_body"}`, `{"kind": "drop_connection"}`,
/// `{"kind": "rate_limited", "retry_after_secs": 7}`, `{"kind": "hang"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FaultRepr", into = "FaultRepr")]
pub enum Fault {
    /// Wait this long (real time, not the mock clock), then answer normally.
    Delay(Duration),
    /// Answer with this status and a small HTML body (`text/html`), as a proxy or a crashed server would.
    /// An invalid code becomes 500.
    Status(u16),
    /// `200 OK`, `Content-Type: application/json`, and a truncated JSON body (`{"access_token": "ey`).
    MalformedBody,
    /// Close the connection without sending any response.
    DropConnection,
    /// `429 Too Many Requests` with `Retry-After: <secs>` and a JSON body.
    RateLimited {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// Never answer; the connection stays open until the client gives up or the mock stops (stopping is not
    /// delayed by it).
    Hang,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultRepr {
    Delay { ms: u64 },
    Status { status: u16 },
    MalformedBody,
    DropConnection,
    RateLimited { retry_after_secs: u64 },
    Hang,
}

impl From<FaultRepr> for Fault {
    fn from(r: FaultRepr) -> Self {
        match r {
            FaultRepr::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
            FaultRepr::Status { status } => Fault::Status(status),
            FaultRepr::MalformedBody => Fault::MalformedBody,
            FaultRepr::DropConnection => Fault::DropConnection,
            FaultRepr::RateLimited { retry_after_secs } => Fault::RateLimited { retry_after_secs },
            FaultRepr::Hang => Fault::Hang,
        }
    }
}

impl From<Fault> for FaultRepr {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Delay(d) => FaultRepr::Delay { ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX) },
            Fault::Status(status) => FaultRepr::Status { status },
            Fault::MalformedBody => FaultRepr::MalformedBody,
            Fault::DropConnection => FaultRepr::DropConnection,
            Fault::RateLimited { retry_after_secs } => FaultRepr::RateLimited { retry_after_secs },
            Fault::Hang => FaultRepr::Hang,
        }
    }
}

/// The body of `POST /_mock/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultRequest {
    pub(crate) endpoint: Endpoint,
    pub(crate) fault: Fault,
    #[serde(default)]
    pub(crate) times: Option<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    any: AtomicBool,
    map: Mutex<HashMap<Endpoint, (Fault, Option<u32>)>>,
}

impl FaultTable {
    pub(crate) fn set(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if times == Some(0) {
            map.remove(&endpoint);
        } else {
            map.insert(endpoint, (fault, times));
        }
        self.any.store(!map.is_empty(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.clear();
        self.any.store(false, Ordering::Release);
    }

    /// Takes one application of the fault set on `endpoint`, if any.
    pub(crate) fn take(&self, endpoint: Endpoint) -> Option<Fault> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (fault, remaining) = map.get_mut(&endpoint)?;
        let fault = fault.clone();
        if let Some(n) = remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&endpoint);
            }
        }
        self.any.store(!map.is_empty(), Ordering::Release);
        Some(fault)
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A snapshot of what the mock has served since start or the last reset.
        ///
        /// A request answered by a [`Fault`] (other than [`Fault::Delay`]) never reaches its handler and is
        /// counted only in `faults_applied`.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct CounterCells {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl CounterCells {
            pub(crate) fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            pub(crate) fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters! {
    /// `GET /id/.well-known/openid-configuration` answered.
    discovery_fetches,
    /// JWKS answered.
    jwks_fetches,
    /// Requests to the authorize endpoint.
    authorize_requests,
    /// Successful password logins on the login form.
    logins,
    /// Login attempts refused (wrong user or password).
    failed_logins,
    /// Requests to the token endpoint (every grant type, successful or not).
    token_requests,
    /// Authorization codes exchanged successfully.
    authorization_code_grants,
    /// Refresh-token grants that issued tokens.
    refresh_token_grants,
    /// Client-credentials grants that issued tokens.
    client_credentials_grants,
    /// Token requests answered `invalid_grant`.
    invalid_grant_errors,
    /// Token and revocation requests answered `invalid_client`.
    invalid_client_errors,
    /// Token requests answered with any error.
    token_errors,
    /// Rotated refresh tokens presented again (each revoked its grant when reuse detection is on).
    refresh_token_reuses,
    /// Grants revoked (reuse detection, code reuse, revocation endpoint, `revoke_all_grants_of`).
    grants_revoked,
    /// Domain API requests (every outcome).
    api_calls,
    /// Domain API requests answered 200.
    api_ok,
    /// Domain API requests answered 401.
    api_unauthorized,
    /// Domain API requests answered 403.
    api_forbidden,
    /// Domain API requests answered with a business error (500).
    api_business_errors,
    /// Userinfo requests (every outcome).
    userinfo_calls,
    /// Revocation requests answered 200.
    revocations,
    /// End-session requests.
    end_sessions,
    /// Requests answered (or delayed) by an injected fault.
    faults_applied,
}
