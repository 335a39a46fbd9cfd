//! Issue 13: the `Debug` of the blocking adapter's values (the session and its builder, the HTTP client,
//! a memory store, a pending login, a received callback) shows no secret: not the client secret, no
//! token, no state, nonce, code or PKCE verifier. No server is needed: nothing is sent.

use erpnet_oauth_core::{AccessToken, AuthorizationRequest, IdToken, RefreshToken, Scopes, TokenSet};
use erpnet_oauth_ureq::{ClientConfig, ClientSecret, MemoryStore, ReceivedCallback, Session};
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn debug_never_shows_a_secret() {
    let client = ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first")
        .client_secret(ClientSecret::new("client-secret-S1"))
        .redirect_uri("http://127.0.0.1:8400/signin-callback")
        .build()
        .unwrap();
    let tokens = TokenSet {
        access_token: AccessToken::new("access-S2"),
        expires_at: Some(UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
        issued_at: None,
        refresh_token: Some(RefreshToken::new("refresh-S3")),
        id_token: Some(IdToken::new("eyJhbGciOiJSUzI1NiJ9.id-token-S4.signature-S5")),
        scopes: Scopes::erpnet_default(),
    };
    let builder = Session::builder(client).store(MemoryStore::with_tokens(tokens.clone()));
    let mut shown = vec![format!("{builder:?}"), format!("{:?}", MemoryStore::with_tokens(tokens))];
    let session = builder.build().unwrap();
    assert!(session.is_logged_in());
    let pending =
        session.start_login(AuthorizationRequest::new().state("state-S6").nonce("nonce-S7")).unwrap();
    let callback = ReceivedCallback::Query("code=code-S8&state=state-S6".to_owned());
    shown.extend([
        format!("{session:?}"),
        format!("{:?}", session.http()),
        format!("{pending:?}"),
        format!("{callback:?}"),
        format!("{:?}", session.tokens()),
    ]);
    for text in &shown {
        for secret in
            ["client-secret-S1", "access-S2", "refresh-S3", "S4", "S5", "state-S6", "nonce-S7", "S8"]
        {
            assert!(!text.contains(secret), "{secret} is shown in {text}");
        }
    }
}
