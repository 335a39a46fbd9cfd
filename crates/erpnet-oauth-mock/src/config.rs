//! The mock's configuration: trusted applications, users, clock, lifetimes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The seed's trusted application: `ApplicationUri` (the OAuth `client_id`).
pub const DEMO_CLIENT_ID: &str = "my.trusted.app/first";
/// The plain secret of [`DEMO_CLIENT_ID`] (the seed writes it as `<my_plain_app_secret>`). The mock stores only
/// its hash, `base64(sha256(secret))`.
pub const DEMO_CLIENT_SECRET: &str = "my_plain_app_secret";
/// The seed's `ImpersonateLoginUrl`, the first redirect URI of the demo applications (port 80, which only a
/// privileged user may bind: tests that only play the browser use it).
pub const DEMO_REDIRECT_URI: &str = "http://localhost/signin-callback";
/// The redirect URI of the `erpnet-oauth` command's guide and README, registered with the demo applications
/// too: a loopback port anyone may bind.
pub const DEMO_LOOPBACK_REDIRECT_URI: &str = "http://127.0.0.1:8400/signin-callback";
/// [`DEMO_LOOPBACK_REDIRECT_URI`] with the host name `localhost`, registered with the demo applications too
/// (matching is exact: `localhost` and `127.0.0.1` are different redirect URIs).
pub const DEMO_LOCALHOST_REDIRECT_URI: &str = "http://localhost:8400/signin-callback";
/// Every redirect URI of the demo applications, compared exactly: [`DEMO_REDIRECT_URI`],
/// [`DEMO_LOOPBACK_REDIRECT_URI`] and [`DEMO_LOCALHOST_REDIRECT_URI`].
pub const DEMO_REDIRECT_URIS: [&str; 3] =
    [DEMO_REDIRECT_URI, DEMO_LOOPBACK_REDIRECT_URI, DEMO_LOCALHOST_REDIRECT_URI];
/// The post-logout redirect URI registered for the demo applications.
pub const DEMO_POST_LOGOUT_REDIRECT_URI: &str = "http://localhost/signout-callback";
/// A public (PKCE, no secret) demo application, present in the default configuration.
pub const DEMO_PUBLIC_CLIENT_ID: &str = "my.trusted.app/public";
/// A confidential service application with a system user (client credentials), present in the default
/// configuration. Its secret is [`DEMO_CLIENT_SECRET`] too.
pub const DEMO_SERVICE_CLIENT_ID: &str = "my.trusted.app/service";
/// The demo user's login name (the seed's `sub`).
pub const DEMO_USER: &str = "admin";
/// The demo user's password.
pub const DEMO_PASSWORD: &str = "admin-password";
/// The database name put in the tokens' `db` claim.
pub const DEMO_DATABASE: &str = "demodb";
/// Where [`MockConfig::seed_manual_clock`] starts its manual clock: the seed's `iat`, 2022-06-12T18:15:24Z.
pub const MANUAL_CLOCK_START_UNIX: u64 = 1_655_057_724;

/// The scopes the demo applications may ask for.
pub const DEMO_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", "DomainApi"];

/// `base64(sha256(secret))`: the form ERP.net stores in `ApplicationSecretHash`.
pub fn secret_hash(secret: &str) -> String {
    STANDARD.encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a trusted application can keep a secret (ERP.net's `ClientType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientType {
    /// Cannot keep a secret: no client authentication, PKCE required.
    #[serde(alias = "public")]
    Public,
    /// Authenticates with its secret at the token and revocation endpoints.
    #[serde(alias = "confidential")]
    Confidential,
}

/// A trusted application, with the attributes of ERP.net's record of that name.
///
/// In the JSON config file the fields are written in snake_case as here; ERP.net's attribute names
/// (`Name`, `ApplicationUri`, `IsEnabled`, `ClientType`, `ApplicationSecretHash`, `ImpersonateLoginUrl`,
/// `ImpersonateAsInternalUserAllowed`, `SystemUser`) are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedApp {
    /// A user-friendly name (shown on the login page).
    #[serde(alias = "Name")]
    pub name: String,
    /// The application's unique identifier, used as the OAuth `client_id` (may contain `/`).
    #[serde(alias = "ApplicationUri")]
    pub application_uri: String,
    /// A disabled application is refused everywhere (`invalid_client`, or an error page at authorize).
    #[serde(alias = "IsEnabled", default = "yes")]
    pub is_enabled: bool,
    /// Public or confidential.
    #[serde(alias = "ClientType")]
    pub client_type: ClientType,
    /// `base64(sha256(secret))`; required for confidential applications. See [`secret_hash`].
    #[serde(alias = "ApplicationSecretHash", default)]
    pub application_secret_hash: Option<String>,
    /// The allowed redirect URIs, compared exactly and case-sensitively.
    #[serde(alias = "ImpersonateLoginUrl", default)]
    pub impersonate_login_urls: Vec<String>,
    /// Whether internal users may log in through this application; when false a login ends in
    /// `error=access_denied`.
    #[serde(alias = "ImpersonateAsInternalUserAllowed", default = "yes")]
    pub impersonate_as_internal_user_allowed: bool,
    /// The scopes this application may request.
    #[serde(default = "demo_scopes")]
    pub allowed_scopes: Vec<String>,
    /// The user a client-credentials token acts as; `None` refuses the client_credentials grant
    /// (`unauthorized_client`).
    #[serde(alias = "SystemUser", default)]
    pub system_user: Option<String>,
    /// The allowed `post_logout_redirect_uri` values of the end-session endpoint (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// This application's access token lifetime, overriding [`MockConfig::access_token_lifetime`] (`None`,
    /// the default). It applies to every access token issued to the application (authorization_code,
    /// refresh_token and client_credentials grants, and [`crate::MockErpNet::mint_access_token`]): the
    /// JWT's `exp`, the token response's `expires_in` and the Domain API's and userinfo's expiry check
    /// all follow it. Whole seconds (a fraction is dropped); at least 1 s.
    #[serde(with = "opt_secs", default)]
    pub access_token_lifetime: Option<Duration>,
    /// Leave `expires_in` out of this application's token responses (default false), as servers that do
    /// not announce a lifetime do. The access token still carries its real `exp` and the Domain API still
    /// refuses it once expired.
    #[serde(default)]
    pub omit_expires_in: bool,
}

fn yes() -> bool {
    true
}

fn demo_scopes() -> Vec<String> {
    DEMO_SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

impl TrustedApp {
    /// The seed's application: `my.trusted.app/first`, confidential, secret [`DEMO_CLIENT_SECRET`], the
    /// redirect URIs [`DEMO_REDIRECT_URIS`] (the seed's, and the CLI guide's on port 8400), internal users
    /// allowed, no system user.
    pub fn demo() -> Self {
        TrustedApp {
            name: "My first trusted app".to_owned(),
            application_uri: DEMO_CLIENT_ID.to_owned(),
            is_enabled: true,
            client_type: ClientType::Confidential,
            application_secret_hash: Some(secret_hash(DEMO_CLIENT_SECRET)),
            impersonate_login_urls: DEMO_REDIRECT_URIS.iter().map(|u| (*u).to_owned()).collect(),
            impersonate_as_internal_user_allowed: true,
            allowed_scopes: demo_scopes(),
            system_user: None,
            post_logout_redirect_uris: vec![DEMO_POST_LOGOUT_REDIRECT_URI.to_owned()],
            access_token_lifetime: None,
            omit_expires_in: false,
        }
    }

    /// A public application [`DEMO_PUBLIC_CLIENT_ID`] (no secret, PKCE required), same redirect URIs.
    pub fn demo_public() -> Self {
        TrustedApp {
            name: "My public app".to_owned(),
            application_uri: DEMO_PUBLIC_CLIENT_ID.to_owned(),
            client_type: ClientType::Public,
            application_secret_hash: None,
            ..TrustedApp::demo()
        }
    }

    /// A confidential service application [`DEMO_SERVICE_CLIENT_ID`] with secret [`DEMO_CLIENT_SECRET`] and
    /// system user [`DEMO_USER`]: it may use the client_credentials grant.
    pub fn demo_service() -> Self {
        TrustedApp {
            name: "My service app".to_owned(),
            application_uri: DEMO_SERVICE_CLIENT_ID.to_owned(),
            system_user: Some(DEMO_USER.to_owned()),
            ..TrustedApp::demo()
        }
    }
}

/// An ERP.net internal user who can log in on the mock's login page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockUser {
    /// Login name; also the tokens' `sub`.
    pub username: String,
    /// Plain password (it is a mock).
    pub password: String,
    /// The user's GUID, the tokens' `id` claim.
    pub id: String,
    /// Display name (`name` claim).
    pub name: String,
    /// `email` claim.
    pub email: String,
    /// `locale` claim.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// A disabled user cannot log in.
    #[serde(default = "yes")]
    pub is_enabled: bool,
}

fn default_locale() -> String {
    "en".to_owned()
}

impl MockUser {
    /// The demo user [`DEMO_USER`] / [`DEMO_PASSWORD`] (named "SPS", like the seed's token).
    pub fn demo() -> Self {
        MockUser {
            username: DEMO_USER.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
            id: "9da64839-a8d0-491d-aebb-4d18fa42b014".to_owned(),
            name: "SPS".to_owned(),
            email: "admin@mail.com".to_owned(),
            locale: default_locale(),
            is_enabled: true,
        }
    }
}

/// Where the mock's time comes from.
///
/// JSON: `{"mode": "system"}` or `{"mode": "manual", "start_unix": 1655057724}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ClockModeRepr", into = "ClockModeRepr")]
pub enum ClockMode {
    /// The system clock (plus whatever [`crate::MockErpNet::advance_clock`] added).
    System,
    /// A clock that stands still except when advanced by [`crate::MockErpNet::advance_clock`] or the admin
    /// path.
    Manual {
        /// The time the clock shows at start.
        start: SystemTime,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum ClockModeRepr {
    System,
    Manual { start_unix: u64 },
}

impl From<ClockModeRepr> for ClockMode {
    fn from(r: ClockModeRepr) -> Self {
        match r {
            ClockModeRepr::System => ClockMode::System,
            ClockModeRepr::Manual { start_unix } => {
                ClockMode::Manual { start: UNIX_EPOCH + Duration::from_secs(start_unix) }
            }
        }
    }
}

impl From<ClockMode> for ClockModeRepr {
    fn from(c: ClockMode) -> Self {
        match c {
            ClockMode::System => ClockModeRepr::System,
            ClockMode::Manual { start } => ClockModeRepr::Manual {
                start_unix: start.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            },
        }
    }
}

/// Refresh-token policy (IdentityServer's `RefreshTokenUsage` / `RefreshTokenExpiration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshPolicy {
    /// Lifetime of a grant's refresh tokens for confidential clients, counted from the login (30 days).
    #[serde(with = "secs")]
    pub absolute_lifetime_confidential: Duration,
    /// The same for public clients (24 hours).
    #[serde(with = "secs")]
    pub absolute_lifetime_public: Duration,
    /// When set, each refresh token also expires this long after it was issued (never beyond the
    /// absolute lifetime).
    #[serde(with = "opt_secs")]
    pub sliding_lifetime: Option<Duration>,
    /// One-time-only rotation (default): each refresh issues a new refresh token and revokes the old one.
    /// When false the same refresh token is returned again and stays valid.
    pub one_time_only: bool,
    /// Reuse of a rotated (revoked) refresh token revokes the whole grant: every refresh token and access
    /// token of that login (default true).
    pub reuse_detection: bool,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            absolute_lifetime_confidential: Duration::from_secs(30 * 24 * 3600),
            absolute_lifetime_public: Duration::from_secs(24 * 3600),
            sliding_lifetime: None,
            one_time_only: true,
            reuse_detection: true,
        }
    }
}

/// Everything the mock serves. Build it in code (`MockConfig { customers: 5, ..MockConfig::default() }`) or
/// read a JSON file ([`MockConfig::from_file`]); see the crate docs for the file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// The trusted applications.
    pub apps: Vec<TrustedApp>,
    /// The users who can log in.
    pub users: Vec<MockUser>,
    /// System or manual clock.
    pub clock: ClockMode,
    /// Access token lifetime (3600 s), also the token response's `expires_in`. An application may override
    /// it ([`TrustedApp::access_token_lifetime`]).
    #[serde(with = "secs")]
    pub access_token_lifetime: Duration,
    /// ID token lifetime (300 s).
    #[serde(with = "secs")]
    pub id_token_lifetime: Duration,
    /// Authorization code lifetime (300 s); also how long a login page stays usable.
    #[serde(with = "secs")]
    pub code_lifetime: Duration,
    /// Refresh-token rotation, reuse detection and lifetimes.
    pub refresh: RefreshPolicy,
    /// How many fake `Crm_Customers` the Domain API serves (50).
    pub customers: usize,
    /// Server-driven paging (OData v4 Protocol §11.2.6.7): at most this many rows per response, the rest
    /// behind an `@odata.nextLink` (the request's URL with `$skip` advanced and `$top` reduced, as ASP.NET
    /// OData writes it). `None` (the default): every row at once.
    pub page_size: Option<usize>,
    /// The database name in the tokens' `db` claim.
    pub database: String,
    /// Accept `code_challenge_method=plain` (default false: S256 only).
    pub allow_plain_pkce: bool,
    /// A second use of an authorization code also revokes the grant issued from its first use (RFC 6749
    /// §4.1.2; default true).
    pub revoke_grant_on_code_reuse: bool,
    /// Clock skew the Domain API and userinfo allow past an access token's `exp` (default 0; ASP.NET's
    /// JWT bearer handler uses 5 minutes).
    #[serde(with = "secs")]
    pub api_clock_skew: Duration,
    /// On [`crate::MockErpNet::rotate_signing_key`], keep the old keys in the JWKS (default true). When
    /// false, tokens signed by a dropped key are refused by the Domain API.
    pub keep_old_keys_on_rotation: bool,
    /// Largest request body accepted, in bytes (64 KiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Tokio worker threads serving requests (default: the number of cores, at most 4).
    pub worker_threads: Option<usize>,
}

impl Default for MockConfig {
    /// The seed's trusted app ([`TrustedApp::demo`]) plus [`TrustedApp::demo_public`] and
    /// [`TrustedApp::demo_service`], the demo user, the system clock and ERP.net's lifetimes.
    fn default() -> Self {
        MockConfig {
            apps: vec![TrustedApp::demo(), TrustedApp::demo_public(), TrustedApp::demo_service()],
            users: vec![MockUser::demo()],
            clock: ClockMode::System,
            access_token_lifetime: Duration::from_secs(3600),
            id_token_lifetime: Duration::from_secs(300),
            code_lifetime: Duration::from_secs(300),
            refresh: RefreshPolicy::default(),
            customers: 50,
            page_size: None,
            database: DEMO_DATABASE.to_owned(),
            allow_plain_pkce: false,
            revoke_grant_on_code_reuse: true,
            api_clock_skew: Duration::ZERO,
            keep_old_keys_on_rotation: true,
            max_body_bytes: 64 * 1024,
            worker_threads: None,
        }
    }
}

/// Why a configuration could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a valid configuration.
    #[error("invalid JSON configuration: {0}")]
    Parse(#[from] serde_json::Error),
    /// The configuration is consistent JSON but unusable (duplicate ids, missing secret hash, ...).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl MockConfig {
    /// The default configuration with a manual clock starting at [`MANUAL_CLOCK_START_UNIX`]: what tests
    /// use to test expiry without waiting.
    pub fn seed_manual_clock() -> Self {
        MockConfig {
            clock: ClockMode::Manual { start: UNIX_EPOCH + Duration::from_secs(MANUAL_CLOCK_START_UNIX) },
            ..MockConfig::default()
        }
    }

    /// Reads a JSON configuration file (format in the crate docs); missing fields take their defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Self::from_json_str(&text)
    }

    /// Parses a JSON configuration (format in the crate docs) and validates it.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let config: MockConfig = serde_json::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: unique client ids and usernames, a valid secret hash for every
    /// confidential application, application access token lifetimes of at least 1 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        for app in &self.apps {
            if app.application_uri.is_empty() {
                return Err(ConfigError::Invalid("an application has an empty application_uri".into()));
            }
            if !ids.insert(app.application_uri.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "duplicate application_uri {:?}",
                    app.application_uri
                )));
            }
            if app.access_token_lifetime.is_some_and(|d| d.as_secs() == 0) {
                return Err(ConfigError::Invalid(format!(
                    "application {:?}: access_token_lifetime must be at least 1 second",
                    app.application_uri
                )));
            }
            if app.client_type == ClientType::Confidential {
                let ok = app
                    .application_secret_hash
                    .as_deref()
                    .and_then(|h| STANDARD.decode(h).ok())
                    .is_some_and(|b| b.len() == 32);
                if !ok {
                    return Err(ConfigError::Invalid(format!(
                        "confidential application {:?} needs application_secret_hash = base64(sha256(secret))",
                        app.application_uri
                    )));
                }
            }
        }
        let mut names = HashSet::new();
        for user in &self.users {
            if !names.insert(user.username.as_str()) {
                return Err(ConfigError::Invalid(format!("duplicate username {:?}", user.username)));
            }
        }
        if self.page_size == Some(0) {
            return Err(ConfigError::Invalid("page_size must be positive (or null: no paging)".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid("max_body_bytes must be positive".into()));
        }
        Ok(())
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_secs))
    }
}
