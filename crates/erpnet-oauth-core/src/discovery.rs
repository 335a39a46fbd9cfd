//! OpenID Connect Discovery: the request for `{issuer}/.well-known/openid-configuration`, the strict
//! parsing of the answer (the issuer must be the one expected, catalogue H5), and a [`ClientConfig`] built
//! from it.
//!
//! Discovery is optional: without it the client uses ERP.net's fixed paths under `{instance}/id`
//! ([`crate::Endpoints::erpnet`]), the default of [`ClientConfig::builder`].

use crate::config::{ClientConfig, ClientConfigBuilder, ConfigError, Endpoints, get_json};
use crate::error::excerpt;
use crate::jwks::SigningAlg;
use crate::safe_text::escape;
use serde_json::{Map, Value};
use url::Url;

/// Why a discovery document was refused. `Display` shows the document's text escaped ([`crate::escape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The discovery URL answered with a redirect; it is not followed (catalogue H1).
    #[error("the discovery URL answered with a redirect (HTTP {status}); it is not followed")]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// An error status.
    #[error("the discovery URL answered HTTP {status} ({length} bytes)")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The body's length.
        length: usize,
    },
    /// The body is not a JSON object.
    #[error("the discovery document is malformed: {}", escape(.reason))]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A required member is missing.
    #[error("the discovery document has no `{0}`")]
    MissingField(&'static str),
    /// A member has the wrong type, or is not a valid URL.
    #[error("the discovery document's `{field}` is invalid: {}", escape(.reason))]
    InvalidField {
        /// The member.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The document's issuer is not the one expected (catalogue H5): it could be another server's
    /// configuration (a mix-up), and none of it is used.
    #[error("the discovery document's issuer is `{}`, expected `{}`", escape(.found), escape(.expected))]
    IssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// The issuer found.
        found: String,
    },
}

impl DiscoveryError {
    /// Whether trying again later may succeed (5xx, 429). Meanwhile ERP.net's fixed paths work.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DiscoveryError::Http { status, .. } if *status >= 500 || *status == 429)
    }
}

/// A validated discovery document (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// `issuer`, identical to the expected issuer.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Url,
    /// `token_endpoint`.
    pub token_endpoint: Url,
    /// `jwks_uri`.
    pub jwks_uri: Url,
    /// `userinfo_endpoint`.
    pub userinfo_endpoint: Option<Url>,
    /// `revocation_endpoint` (RFC 7009 / RFC 8414).
    pub revocation_endpoint: Option<Url>,
    /// `end_session_endpoint` (OpenID Connect RP-Initiated Logout).
    pub end_session_endpoint: Option<Url>,
    /// `id_token_signing_alg_values_supported`, as listed (names this client does not support included).
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `scopes_supported`.
    pub scopes_supported: Vec<String>,
    /// `response_types_supported`.
    pub response_types_supported: Vec<String>,
    /// `code_challenge_methods_supported`.
    pub code_challenge_methods_supported: Vec<String>,
    /// `token_endpoint_auth_methods_supported`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207); `false` when absent.
    pub authorization_response_iss_parameter_supported: bool,
    /// Every member as received.
    pub raw: Map<String, Value>,
}

impl ProviderMetadata {
    /// Parses the discovery response and checks that its `issuer` is exactly `expected_issuer`
    /// (catalogue H5; OpenID Connect Discovery §4.3). Required: `issuer`, `authorization_endpoint`,
    /// `token_endpoint`, `jwks_uri`; every endpoint must be an absolute URL. Only `200 OK` is an answer
    /// (Discovery §4.2): any other status, a `204` or a `201` included, is [`DiscoveryError::Http`].
    pub fn parse<B: AsRef<[u8]>>(
        response: &http::Response<B>,
        expected_issuer: &str,
    ) -> Result<ProviderMetadata, DiscoveryError> {
        let status = response.status();
        let body = response.body().as_ref();
        if status.is_redirection() {
            return Err(DiscoveryError::Redirect { status: status.as_u16() });
        }
        if status != http::StatusCode::OK {
            return Err(DiscoveryError::Http { status: status.as_u16(), length: body.len() });
        }
        Self::from_json(body, expected_issuer)
    }

    /// Parses a discovery document (the body alone) with the same checks as [`Self::parse`].
    pub fn from_json(body: &[u8], expected_issuer: &str) -> Result<ProviderMetadata, DiscoveryError> {
        let raw = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(DiscoveryError::Malformed { reason: "expected a JSON object".to_owned() }),
            Err(e) => return Err(DiscoveryError::Malformed { reason: format!("not JSON ({e})") }),
        };
        let string = |field: &'static str| -> Result<Option<&str>, DiscoveryError> {
            match raw.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(DiscoveryError::InvalidField { field, reason: "not a string".to_owned() }),
            }
        };
        let url = |field: &'static str| -> Result<Option<Url>, DiscoveryError> {
            string(field)?
                .map(|s| {
                    Url::parse(s).map_err(|e| DiscoveryError::InvalidField { field, reason: e.to_string() })
                })
                .transpose()
        };
        let required = |field: &'static str| url(field)?.ok_or(DiscoveryError::MissingField(field));
        let list = |field: &'static str| -> Result<Vec<String>, DiscoveryError> {
            match raw.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| DiscoveryError::InvalidField {
                            field,
                            reason: "not an array of strings".to_owned(),
                        })
                    })
                    .collect(),
                Some(_) => Err(DiscoveryError::InvalidField { field, reason: "not an array".to_owned() }),
            }
        };
        let issuer = string("issuer")?.ok_or(DiscoveryError::MissingField("issuer"))?;
        if issuer != expected_issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: expected_issuer.to_owned(),
                found: excerpt(issuer, 200),
            });
        }
        let iss_supported = match raw.get("authorization_response_iss_parameter_supported") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(DiscoveryError::InvalidField {
                    field: "authorization_response_iss_parameter_supported",
                    reason: "not a boolean".to_owned(),
                });
            }
        };
        Ok(ProviderMetadata {
            issuer: issuer.to_owned(),
            authorization_endpoint: required("authorization_endpoint")?,
            token_endpoint: required("token_endpoint")?,
            jwks_uri: required("jwks_uri")?,
            userinfo_endpoint: url("userinfo_endpoint")?,
            revocation_endpoint: url("revocation_endpoint")?,
            end_session_endpoint: url("end_session_endpoint")?,
            id_token_signing_alg_values_supported: list("id_token_signing_alg_values_supported")?,
            scopes_supported: list("scopes_supported")?,
            response_types_supported: list("response_types_supported")?,
            code_challenge_methods_supported: list("code_challenge_methods_supported")?,
            token_endpoint_auth_methods_supported: list("token_endpoint_auth_methods_supported")?,
            authorization_response_iss_parameter_supported: iss_supported,
            raw: raw.clone(),
        })
    }

    /// The document's endpoints.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            authorization: self.authorization_endpoint.clone(),
            token: self.token_endpoint.clone(),
            userinfo: self.userinfo_endpoint.clone(),
            revocation: self.revocation_endpoint.clone(),
            end_session: self.end_session_endpoint.clone(),
            jwks: Some(self.jwks_uri.clone()),
        }
    }

    /// The ID token algorithms both this client and the provider support, in this client's order. When the
    /// document lists none this client supports, RS256 (which OpenID Connect requires every provider to
    /// support).
    pub fn signing_algs(&self) -> Vec<SigningAlg> {
        if self.id_token_signing_alg_values_supported.is_empty() {
            return SigningAlg::ALL.to_vec();
        }
        let algs: Vec<SigningAlg> = SigningAlg::ALL
            .into_iter()
            .filter(|a| self.id_token_signing_alg_values_supported.iter().any(|s| s == a.as_str()))
            .collect();
        if algs.is_empty() { vec![SigningAlg::Rs256] } else { algs }
    }
}

impl ClientConfig {
    /// The GET for `{issuer}/.well-known/openid-configuration`. The adapter must not follow redirects
    /// (catalogue H1); parse the answer with [`ProviderMetadata::parse`] and `self.issuer()`.
    pub fn discovery_request(&self) -> http::Request<Vec<u8>> {
        get_json(&self.uris.discovery)
    }

    /// This configuration with the endpoints, issuer, RFC 9207 support and ID token algorithms of a
    /// validated discovery document (the same checks as building, H4 included).
    pub fn with_provider(&self, provider: &ProviderMetadata) -> Result<ClientConfig, ConfigError> {
        self.to_builder().provider(provider).build()
    }
}

impl ClientConfigBuilder {
    /// Takes the endpoints, the issuer, `authorization_response_iss_parameter_supported` and the ID token
    /// algorithms (narrowed to those the provider lists) from a validated discovery document.
    pub fn provider(self, provider: &ProviderMetadata) -> Self {
        self.endpoints(provider.endpoints())
            .issuer(&provider.issuer)
            .iss_parameter_supported(provider.authorization_response_iss_parameter_supported)
            .id_token_signing_algs(&provider.signing_algs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of ERP.net's (IdentityServer's) document.
    fn erpnet_document(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/openid-configuration/jwks"),
            "authorization_endpoint": format!("{issuer}/connect/authorize"),
            "token_endpoint": format!("{issuer}/connect/token"),
            "userinfo_endpoint": format!("{issuer}/connect/userinfo"),
            "end_session_endpoint": format!("{issuer}/connect/endsession"),
            "revocation_endpoint": format!("{issuer}/connect/revocation"),
            "scopes_supported": ["openid", "profile", "DomainApi", "offline_access"],
            "response_types_supported": ["code", "code id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "authorization_response_iss_parameter_supported": true,
        })
        .to_string()
    }

    #[test]
    fn request_and_erpnet_document() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app").build().unwrap();
        let req = client.discovery_request();
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri(), "https://demodb.my.erp.net/id/.well-known/openid-configuration");
        let doc = erpnet_document("https://demodb.my.erp.net/id");
        let meta = ProviderMetadata::parse(&http::Response::new(doc), client.issuer()).unwrap();
        assert_eq!(meta.signing_algs(), vec![SigningAlg::Rs256]);
        let configured = client.with_provider(&meta).unwrap();
        assert!(configured.iss_parameter_supported());
        assert_eq!(configured.id_token_signing_algs(), [SigningAlg::Rs256]);
        assert_eq!(configured.endpoints(), &Endpoints::erpnet(client.instance()));
    }

    #[test]
    fn issuer_must_be_identical() {
        let doc = erpnet_document("https://evil.example/id");
        assert_eq!(
            ProviderMetadata::from_json(doc.as_bytes(), "https://demodb.my.erp.net/id"),
            Err(DiscoveryError::IssuerMismatch {
                expected: "https://demodb.my.erp.net/id".into(),
                found: "https://evil.example/id".into()
            })
        );
        let doc = erpnet_document("https://demodb.my.erp.net/id/");
        assert!(matches!(
            ProviderMetadata::from_json(doc.as_bytes(), "https://demodb.my.erp.net/id"),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn malformed_documents() {
        let iss = "https://x/id";
        let p = |body: &str| ProviderMetadata::from_json(body.as_bytes(), iss);
        assert!(matches!(p("<html>"), Err(DiscoveryError::Malformed { .. })));
        assert!(matches!(p("[]"), Err(DiscoveryError::Malformed { .. })));
        assert_eq!(p("{}"), Err(DiscoveryError::MissingField("issuer")));
        assert_eq!(
            p(r#"{"issuer":"https://x/id"}"#),
            Err(DiscoveryError::MissingField("authorization_endpoint"))
        );
        assert!(matches!(p(r#"{"issuer":7}"#), Err(DiscoveryError::InvalidField { field: "issuer", .. })));
        let mut doc: Value = serde_json::from_str(&erpnet_document(iss)).unwrap();
        doc["token_endpoint"] = "not a url".into();
        assert!(matches!(
            p(&doc.to_string()),
            Err(DiscoveryError::InvalidField { field: "token_endpoint", .. })
        ));
        let mut doc: Value = serde_json::from_str(&erpnet_document(iss)).unwrap();
        doc["scopes_supported"] = "openid".into();
        assert!(matches!(
            p(&doc.to_string()),
            Err(DiscoveryError::InvalidField { field: "scopes_supported", .. })
        ));
        let mut r = http::Response::new(Vec::new());
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        assert_eq!(ProviderMetadata::parse(&r, iss), Err(DiscoveryError::Http { status: 404, length: 0 }));
        *r.status_mut() = http::StatusCode::MOVED_PERMANENTLY;
        assert_eq!(ProviderMetadata::parse(&r, iss), Err(DiscoveryError::Redirect { status: 301 }));
    }

    #[test]
    fn plain_http_endpoints_are_refused_when_configuring() {
        let client = ClientConfig::builder("https://demodb.my.erp.net", "app").build().unwrap();
        let mut doc: Value = serde_json::from_str(&erpnet_document(client.issuer())).unwrap();
        doc["token_endpoint"] = "http://demodb.my.erp.net/id/connect/token".into();
        let meta = ProviderMetadata::from_json(doc.to_string().as_bytes(), client.issuer()).unwrap();
        assert!(matches!(client.with_provider(&meta), Err(ConfigError::InsecureHttp { .. })));
    }

    #[test]
    fn algorithms_are_narrowed() {
        let iss = "https://x/id";
        let mut doc: Value = serde_json::from_str(&erpnet_document(iss)).unwrap();
        doc["id_token_signing_alg_values_supported"] = serde_json::json!(["ES256", "HS256", "RS256"]);
        let meta = ProviderMetadata::from_json(doc.to_string().as_bytes(), iss).unwrap();
        assert_eq!(meta.signing_algs(), vec![SigningAlg::Rs256, SigningAlg::Es256]);
        doc["id_token_signing_alg_values_supported"] = serde_json::json!(["HS256"]);
        let meta = ProviderMetadata::from_json(doc.to_string().as_bytes(), iss).unwrap();
        assert_eq!(meta.signing_algs(), vec![SigningAlg::Rs256]);
    }
}
