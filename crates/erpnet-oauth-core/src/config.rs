//! Client configuration: the instance, its endpoints, the trusted application and how it authenticates.

use crate::jwks::SigningAlg;
use crate::safe_text::escape;
use crate::secret::ClientSecret;
use std::time::Duration;
use url::Url;

/// The clock skew allowed by default when checking an ID token's `exp`, `iat` and `nbf`: 60 s.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Errors in the configuration, found before anything is sent. URLs may come from a discovery document:
/// `Display` shows their parts escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL could not be parsed.
    #[error("{what} is not a valid URL: {}", escape(.reason))]
    InvalidUrl {
        /// Which setting.
        what: &'static str,
        /// What the URL parser said.
        reason: String,
    },
    /// The URL is neither `https` nor `http`.
    #[error("{what} must be an http or https URL, not `{}:`", escape(.scheme))]
    UnsupportedScheme {
        /// Which setting.
        what: &'static str,
        /// The scheme found.
        scheme: String,
    },
    /// Plain `http://` to a host that is not a loopback address (catalogue H4).
    #[error(
        "{what} uses plain http to `{}`, which is not a loopback address; tokens would cross the \
         network unencrypted (allow it explicitly if you must)",
        escape(.host)
    )]
    InsecureHttp {
        /// Which setting.
        what: &'static str,
        /// The host.
        host: String,
    },
    /// The instance URL has a query or fragment.
    #[error("the instance URL must be a plain base URL such as https://demodb.my.erp.net")]
    InstanceNotABaseUrl,
    /// The client id is empty.
    #[error("the client id (the trusted application's ApplicationUri) is empty")]
    EmptyClientId,
    /// A public client (no secret) was configured with a secret-based authentication method.
    #[error("client authentication {0:?} needs a client secret, and none was given")]
    MissingSecret(AuthMethod),
    /// An API request is addressed to another origin than the instance's: the access token is not sent
    /// there (it is the instance's credential, and would leak).
    #[error(
        "the request goes to {}, not to the instance ({}); the access token is only sent to the instance",
        escape(.origin),
        escape(.instance)
    )]
    ForeignOrigin {
        /// The origin the request was addressed to.
        origin: String,
        /// The instance's origin.
        instance: String,
    },
    /// A request needs an endpoint that the configuration does not have (e.g. a provider whose
    /// discovery document lists no revocation endpoint).
    #[error("{what} is not configured")]
    NoEndpoint {
        /// Which endpoint.
        what: &'static str,
    },
    /// A token given to build a request cannot be carried in an HTTP header (control characters,
    /// non-ASCII).
    #[error("the {what} has characters an HTTP header cannot carry")]
    InvalidToken {
        /// Which token.
        what: &'static str,
    },
    /// No ID token signing algorithm is accepted.
    #[error("at least one ID token signing algorithm must be accepted")]
    NoSigningAlgorithm,
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_id` and `client_secret` in the form body: ERP.net's documented way, the seed's.
    #[default]
    ClientSecretPost,
    /// HTTP Basic with the id and secret form-encoded first (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// A public client: `client_id` in the body and no secret; PKCE is mandatory.
    None,
}

/// The identity server's endpoints. [`Endpoints::erpnet`] gives ERP.net's fixed paths; discovery may
/// replace them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `/id/connect/authorize`
    pub authorization: Url,
    /// `/id/connect/token`
    pub token: Url,
    /// `/id/connect/userinfo`
    pub userinfo: Option<Url>,
    /// `/id/connect/revocation`
    pub revocation: Option<Url>,
    /// `/id/connect/endsession`
    pub end_session: Option<Url>,
    /// `/id/.well-known/openid-configuration/jwks`
    pub jwks: Option<Url>,
}

impl Endpoints {
    /// ERP.net's endpoints under `{instance}/id`.
    pub fn erpnet(instance: &Url) -> Self {
        let at = |path: &str| {
            let mut url = instance.clone();
            let base = instance.path().trim_end_matches('/');
            url.set_path(&format!("{base}{path}"));
            url
        };
        Endpoints {
            authorization: at("/id/connect/authorize"),
            token: at("/id/connect/token"),
            userinfo: Some(at("/id/connect/userinfo")),
            revocation: Some(at("/id/connect/revocation")),
            end_session: Some(at("/id/connect/endsession")),
            jwks: Some(at("/id/.well-known/openid-configuration/jwks")),
        }
    }
}

/// Everything the core needs to know about the instance and the trusted application.
///
/// Built with [`ClientConfig::builder`]. The client secret lives here and nowhere else; `Debug` redacts it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) instance: Url,
    pub(crate) issuer: String,
    pub(crate) endpoints: Endpoints,
    pub(crate) client_id: String,
    pub(crate) secret: Option<ClientSecret>,
    pub(crate) auth_method: AuthMethod,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) iss_parameter_supported: bool,
    pub(crate) allow_insecure_http: bool,
    pub(crate) clock_skew: Duration,
    pub(crate) id_token_algs: Vec<SigningAlg>,
    /// The endpoints as `http::Uri`, converted once when built.
    pub(crate) uris: Uris,
}

/// Endpoint URIs converted once, so that building a request cannot fail.
#[derive(Debug, Clone)]
pub(crate) struct Uris {
    pub(crate) token: http::Uri,
    pub(crate) userinfo: Option<http::Uri>,
    pub(crate) revocation: Option<http::Uri>,
    pub(crate) jwks: Option<http::Uri>,
    pub(crate) discovery: http::Uri,
}

impl ClientConfig {
    /// Starts a configuration for the instance at `instance` (e.g. `https://demodb.my.erp.net`) and the
    /// trusted application whose ApplicationUri is `client_id` (e.g. `my.trusted.app/first`).
    pub fn builder(instance: &str, client_id: &str) -> ClientConfigBuilder {
        ClientConfigBuilder {
            instance: instance.to_owned(),
            client_id: client_id.to_owned(),
            secret: None,
            auth_method: None,
            redirect_uri: None,
            endpoints: None,
            issuer: None,
            iss_parameter_supported: false,
            allow_insecure_http: false,
            clock_skew: DEFAULT_CLOCK_SKEW,
            id_token_algs: SigningAlg::ALL.to_vec(),
        }
    }

    /// A builder holding this configuration's settings, to change some of them (for example with
    /// [`ClientConfigBuilder::provider`] after discovery).
    pub fn to_builder(&self) -> ClientConfigBuilder {
        ClientConfigBuilder {
            instance: self.instance.as_str().to_owned(),
            client_id: self.client_id.clone(),
            secret: self.secret.clone(),
            auth_method: Some(self.auth_method),
            redirect_uri: self.redirect_uri.clone(),
            endpoints: Some(self.endpoints.clone()),
            issuer: Some(self.issuer.clone()),
            iss_parameter_supported: self.iss_parameter_supported,
            allow_insecure_http: self.allow_insecure_http,
            clock_skew: self.clock_skew,
            id_token_algs: self.id_token_algs.clone(),
        }
    }

    /// The instance base URL.
    pub fn instance(&self) -> &Url {
        &self.instance
    }

    /// The expected issuer, `{instance}/id` unless set otherwise.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The client id (ApplicationUri).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The registered redirect URI, if this client logs users in.
    pub fn redirect_uri(&self) -> Option<&str> {
        self.redirect_uri.as_deref()
    }

    /// How the client authenticates.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }

    /// Whether this is a public client (no secret).
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    /// Whether the server advertises RFC 9207 `iss` in authorization responses.
    pub fn iss_parameter_supported(&self) -> bool {
        self.iss_parameter_supported
    }

    /// Whether plain http to non-loopback hosts was explicitly allowed.
    pub fn allows_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The clock skew allowed when checking an ID token's times ([`DEFAULT_CLOCK_SKEW`] unless set).
    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    /// The algorithms an ID token may be signed with (RS256, PS256 and ES256 unless narrowed).
    pub fn id_token_signing_algs(&self) -> &[SigningAlg] {
        &self.id_token_algs
    }

    /// The token endpoint as an `http::Uri`.
    pub(crate) fn token_uri(&self) -> http::Uri {
        self.uris.token.clone()
    }

    /// Checks that an API request goes to the instance (same scheme, host and port) before an adapter
    /// attaches the access token to it: the token is never sent elsewhere.
    pub fn check_api_target(&self, uri: &http::Uri) -> Result<(), ConfigError> {
        let origin = |scheme: Option<&str>, host: Option<&str>, port: Option<u16>| {
            let scheme = scheme.unwrap_or("").to_ascii_lowercase();
            let port = port.or(match scheme.as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            });
            (scheme, host.unwrap_or("").trim_matches(['[', ']']).to_ascii_lowercase(), port)
        };
        let want = origin(Some(self.instance.scheme()), self.instance.host_str(), self.instance.port());
        let got = origin(uri.scheme_str(), uri.host(), uri.port_u16());
        if want == got {
            return Ok(());
        }
        let show = |(s, h, p): &(String, String, Option<u16>)| match p {
            Some(p) => format!("{s}://{h}:{p}"),
            None => format!("{s}://{h}"),
        };
        Err(ConfigError::ForeignOrigin { origin: show(&got), instance: show(&want) })
    }

    /// Resolves `target` (an absolute URL, or a path such as `/api/domain/odata/Crm_Customers?$top=10`)
    /// against the instance, and applies the same transport rule (H4) as the configuration.
    pub fn resolve(&self, target: &str) -> Result<Url, ConfigError> {
        let url = match Url::parse(target) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                let mut base = self.instance.clone();
                if !base.path().ends_with('/') {
                    let path = format!("{}/", base.path());
                    base.set_path(&path);
                }
                base.join(target.trim_start_matches('/')).map_err(|e| invalid("the request URL", e))?
            }
            Err(e) => return Err(invalid("the request URL", e)),
        };
        check_transport("the request URL", &url, self.allow_insecure_http)?;
        Ok(url)
    }
}

/// Builder for [`ClientConfig`].
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    instance: String,
    client_id: String,
    secret: Option<ClientSecret>,
    auth_method: Option<AuthMethod>,
    redirect_uri: Option<String>,
    endpoints: Option<Endpoints>,
    issuer: Option<String>,
    iss_parameter_supported: bool,
    allow_insecure_http: bool,
    clock_skew: Duration,
    id_token_algs: Vec<SigningAlg>,
}

impl ClientConfigBuilder {
    /// The plain client secret of a confidential application. Without one the client is public.
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The authentication method; default `client_secret_post` with a secret, `none` without.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.auth_method = Some(method);
        self
    }

    /// The redirect URI, exactly as registered in ImpersonateLoginUrl (compared byte for byte).
    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uri = Some(uri.to_owned());
        self
    }

    /// Endpoints other than ERP.net's defaults (for example from discovery).
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = Some(endpoints);
        self
    }

    /// An issuer other than `{instance}/id` (for example from a validated discovery document).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Whether the server sends RFC 9207 `iss` in authorization responses (from discovery's
    /// `authorization_response_iss_parameter_supported`); then a callback without `iss` is rejected.
    pub fn iss_parameter_supported(mut self, supported: bool) -> Self {
        self.iss_parameter_supported = supported;
        self
    }

    /// Allows plain `http://` to hosts that are not loopback addresses. Off by default (catalogue H4).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The clock skew allowed when checking an ID token's `exp`, `iat` and `nbf` (catalogue D4);
    /// default [`DEFAULT_CLOCK_SKEW`].
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The algorithms an ID token may be signed with; any other, `none` and `HS256` included, is
    /// rejected (catalogue D2). Default: RS256, PS256 and ES256. An empty list is refused when building.
    pub fn id_token_signing_algs(mut self, algs: &[SigningAlg]) -> Self {
        self.id_token_algs = algs.to_vec();
        self
    }

    /// Checks and builds the configuration.
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        let mut instance = Url::parse(self.instance.trim()).map_err(|e| invalid("the instance URL", e))?;
        if instance.query().is_some() || instance.fragment().is_some() || instance.cannot_be_a_base() {
            return Err(ConfigError::InstanceNotABaseUrl);
        }
        check_transport("the instance URL", &instance, self.allow_insecure_http)?;
        let trimmed = instance.path().trim_end_matches('/').to_owned();
        instance.set_path(&trimmed);
        if self.client_id.is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        if self.id_token_algs.is_empty() {
            return Err(ConfigError::NoSigningAlgorithm);
        }
        let auth_method = match (self.auth_method, &self.secret) {
            (Some(AuthMethod::None), _) => AuthMethod::None,
            (Some(method), Some(_)) => method,
            (Some(method), None) => return Err(ConfigError::MissingSecret(method)),
            (None, Some(_)) => AuthMethod::ClientSecretPost,
            (None, None) => AuthMethod::None,
        };
        let endpoints = self.endpoints.unwrap_or_else(|| Endpoints::erpnet(&instance));
        for (what, url) in [
            ("the authorization endpoint", Some(&endpoints.authorization)),
            ("the token endpoint", Some(&endpoints.token)),
            ("the userinfo endpoint", endpoints.userinfo.as_ref()),
            ("the revocation endpoint", endpoints.revocation.as_ref()),
            ("the end-session endpoint", endpoints.end_session.as_ref()),
            ("the JWKS URI", endpoints.jwks.as_ref()),
        ] {
            if let Some(url) = url {
                check_transport(what, url, self.allow_insecure_http)?;
            }
        }
        let issuer = self.issuer.unwrap_or_else(|| format!("{}/id", instance.as_str().trim_end_matches('/')));
        let discovery =
            Url::parse(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))
                .map_err(|e| invalid("the issuer", e))?;
        let uris = Uris {
            token: to_uri("the token endpoint", &endpoints.token)?,
            userinfo: endpoints.userinfo.as_ref().map(|u| to_uri("the userinfo endpoint", u)).transpose()?,
            revocation: endpoints
                .revocation
                .as_ref()
                .map(|u| to_uri("the revocation endpoint", u))
                .transpose()?,
            jwks: endpoints.jwks.as_ref().map(|u| to_uri("the JWKS URI", u)).transpose()?,
            discovery: to_uri("the discovery URL", &discovery)?,
        };
        Ok(ClientConfig {
            instance,
            issuer,
            endpoints,
            client_id: self.client_id,
            secret: if auth_method == AuthMethod::None { None } else { self.secret },
            auth_method,
            redirect_uri: self.redirect_uri,
            iss_parameter_supported: self.iss_parameter_supported,
            allow_insecure_http: self.allow_insecure_http,
            clock_skew: self.clock_skew,
            id_token_algs: self.id_token_algs,
            uris,
        })
    }
}

/// A GET for a JSON document (discovery, JWKS, userinfo).
pub(crate) fn get_json(uri: &http::Uri) -> http::Request<Vec<u8>> {
    let mut req = http::Request::new(Vec::new());
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
    req
}

/// Converts a checked URL to an `http::Uri`.
pub(crate) fn to_uri(what: &'static str, url: &Url) -> Result<http::Uri, ConfigError> {
    http::Uri::try_from(url.as_str()).map_err(|e| ConfigError::InvalidUrl { what, reason: e.to_string() })
}

fn invalid(what: &'static str, e: url::ParseError) -> ConfigError {
    ConfigError::InvalidUrl { what, reason: e.to_string() }
}

/// Checks the transport rule: https anywhere, http only to loopback unless allowed (catalogue H4).
pub(crate) fn check_transport(
    what: &'static str,
    url: &Url,
    allow_insecure: bool,
) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback(url) => Ok(()),
        "http" => Err(ConfigError::InsecureHttp { what, host: url.host_str().unwrap_or("").to_owned() }),
        other => Err(ConfigError::UnsupportedScheme { what, scheme: other.to_owned() }),
    }
}

/// Whether the URL's host is `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`).
///
/// A name under `.localhost` (`api.localhost`) is not: RFC 6761 asks resolvers to answer it with the
/// loopback address, but it is looked up like any other name, and a resolver that does not (a corporate
/// DNS, a `hosts` file) may send it anywhere. Plain http to it is refused unless allowed explicitly.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erpnet_defaults() {
        let c = ClientConfig::builder("https://demodb.my.erp.net/", "my.trusted.app/first")
            .client_secret(ClientSecret::new("s"))
            .build()
            .unwrap();
        assert_eq!(c.issuer(), "https://demodb.my.erp.net/id");
        assert_eq!(c.endpoints().token.as_str(), "https://demodb.my.erp.net/id/connect/token");
        assert_eq!(c.auth_method(), AuthMethod::ClientSecretPost);
        assert!(!format!("{c:?}").contains("\"s\""));
    }

    #[test]
    fn instance_under_a_path() {
        let c = ClientConfig::builder("https://host.example/erp", "a").build().unwrap();
        assert_eq!(c.issuer(), "https://host.example/erp/id");
        assert_eq!(c.endpoints().authorization.as_str(), "https://host.example/erp/id/connect/authorize");
        assert_eq!(
            c.resolve("/api/domain/odata/Crm_Customers?$top=10").unwrap().as_str(),
            "https://host.example/erp/api/domain/odata/Crm_Customers?$top=10"
        );
        assert!(c.is_public());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(ClientConfig::builder("http://127.0.0.1:8080", "a").build().is_ok());
        assert!(ClientConfig::builder("http://localhost", "a").build().is_ok());
        assert!(ClientConfig::builder("http://[::1]:9", "a").build().is_ok());
        assert!(ClientConfig::builder("http://LocalHost:8080", "a").build().is_ok());
        assert_eq!(
            ClientConfig::builder("http://demodb.my.erp.net", "a").build().unwrap_err(),
            ConfigError::InsecureHttp { what: "the instance URL", host: "demodb.my.erp.net".into() }
        );
        assert!(
            ClientConfig::builder("http://demodb.my.erp.net", "a").allow_insecure_http(true).build().is_ok()
        );
        assert!(matches!(
            ClientConfig::builder("ftp://x", "a").build(),
            Err(ConfigError::UnsupportedScheme { .. })
        ));
    }

    /// Issue 13: a name under `.localhost` is resolved through DNS, so it is not taken for the loopback
    /// address: plain http to it needs the explicit permission.
    #[test]
    fn a_name_under_localhost_is_not_loopback() {
        for instance in ["http://erp.localhost:8080", "http://a.b.LOCALHOST", "http://localhost.:8080"] {
            let url = Url::parse(instance).unwrap();
            assert!(!is_loopback(&url), "{instance}");
            assert!(
                matches!(
                    ClientConfig::builder(instance, "a").build(),
                    Err(ConfigError::InsecureHttp { what: "the instance URL", .. })
                ),
                "{instance}"
            );
            assert!(ClientConfig::builder(instance, "a").allow_insecure_http(true).build().is_ok());
        }
        assert!(ClientConfig::builder("https://erp.localhost", "a").build().is_ok(), "https is fine");
        for loopback in ["http://localhost/", "http://127.0.0.2:1/", "http://[::1]/"] {
            assert!(is_loopback(&Url::parse(loopback).unwrap()), "{loopback}");
        }
    }

    #[test]
    fn api_requests_go_to_the_instance_only() {
        let c = ClientConfig::builder("https://demodb.my.erp.net", "a").build().unwrap();
        let ok = |u: &str| c.check_api_target(&u.parse().unwrap());
        assert!(ok("https://demodb.my.erp.net/api/domain/odata/Crm_Customers?$top=10").is_ok());
        assert!(ok("https://DEMODB.my.erp.net:443/api").is_ok());
        assert!(ok("https://evil.example/api").is_err());
        assert!(ok("http://demodb.my.erp.net/api").is_err());
        assert!(ok("https://demodb.my.erp.net:8443/api").is_err());
        assert!(ok("/api/relative").is_err());
        let l = ClientConfig::builder("http://[::1]:8080", "a").build().unwrap();
        assert!(l.check_api_target(&"http://[::1]:8080/api".parse().unwrap()).is_ok());
        assert_eq!(
            ok("https://evil.example/api").unwrap_err().to_string(),
            "the request goes to https://evil.example:443, not to the instance (https://demodb.my.erp.net:443); \
             the access token is only sent to the instance"
        );
    }

    #[test]
    fn secret_methods_need_a_secret() {
        assert_eq!(
            ClientConfig::builder("https://x", "a")
                .auth_method(AuthMethod::ClientSecretBasic)
                .build()
                .unwrap_err(),
            ConfigError::MissingSecret(AuthMethod::ClientSecretBasic)
        );
    }
}
