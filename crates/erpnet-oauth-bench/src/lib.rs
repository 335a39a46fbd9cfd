//! Shared fixtures of the benchmarks: the seed's client, its token response and its `invalid_grant` answer.
//!
//! The benches (`benches/vs_oauth2.rs`) run this toolkit and oauth2-rs 5 on the same work in the same run;
//! `cargo xtask bench` runs them and prints the table. The `memory` binary measures the session's memory
//! per logged-in user with a counting allocator.

use erpnet_oauth_core::{ClientConfig, ClientSecret, ConfigError};

/// The seed's instance.
pub const INSTANCE: &str = "https://demodb.my.erp.net";
/// The seed's trusted application.
pub const CLIENT_ID: &str = "my.trusted.app/first";
/// A stand-in for the seed's `<my_plain_app_secret>`.
pub const CLIENT_SECRET: &str = "my-plain-app-secret";
/// The seed's redirect URI.
pub const REDIRECT_URI: &str = "http://localhost/signin-callback";
/// The seed's scopes.
pub const SCOPES: &str = "openid profile offline_access DomainApi";
/// The seed's authorization code.
pub const CODE: &str = "g0ZGZmNjVmOWI";
/// The seed's refresh token.
pub const REFRESH_TOKEN: &str = "6-Cv7vQ5ouhYzs0AWg6tsG-YK7O5xP_kb5Qb8wEJMnw";

/// The seed's token response (renew-access-token-via-refresh-token.txt), with `"token_type": "Bearer"`.
pub const TOKEN_RESPONSE: &str = include_str!("token_response.json");

/// A §5.2 `invalid_grant` error, as the token endpoint answers a refresh with a revoked refresh token.
pub const INVALID_GRANT: &str =
    r#"{"error":"invalid_grant","error_description":"The refresh token is invalid or expired."}"#;

/// The seed's client: confidential, `client_secret_post` (ERP.net's way).
pub fn seed_client() -> Result<ClientConfig, ConfigError> {
    ClientConfig::builder(INSTANCE, CLIENT_ID)
        .client_secret(ClientSecret::new(CLIENT_SECRET))
        .redirect_uri(REDIRECT_URI)
        .build()
}

/// A canned JSON answer of the token endpoint.
pub fn json_response(status: u16, body: &str) -> http::Response<Vec<u8>> {
    let mut response = http::Response::new(body.as_bytes().to_vec());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_parse() {
        let client = seed_client().expect("the seed's client");
        let scopes = erpnet_oauth_core::Scopes::parse(SCOPES);
        let now = std::time::UNIX_EPOCH;
        let tokens =
            erpnet_oauth_core::parse_token_response(&json_response(200, TOKEN_RESPONSE), now, &scopes)
                .expect("the seed's token response");
        assert_eq!(tokens.refresh_token.as_ref().map(|t| t.secret()), Some(REFRESH_TOKEN));
        let err = erpnet_oauth_core::parse_token_response(&json_response(400, INVALID_GRANT), now, &scopes)
            .expect_err("an error");
        assert!(err.is_invalid_grant());
        assert_eq!(client.client_id(), CLIENT_ID);
    }
}
