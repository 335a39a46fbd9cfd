//! OpenID Connect through the adapter, against the mock: ID token verification across a signing-key
//! rotation, UserInfo, revocation, and static reference tokens.

mod common;

use common::*;
use erpnet_oauth_core::{IdTokenError, ReferenceToken};
use erpnet_oauth_mock::{DEMO_CLIENT_ID, DEMO_USER};
use erpnet_oauth_ureq::{AuthorizationRequest, Callback, Error, Session};
use std::time::Duration;

#[test]
fn a_login_succeeds_across_a_rotation_of_the_signing_key() {
    let mock = mock();
    let session = Session::builder(client(&mock, REDIRECT_URI)).clock(mock_clock(&mock)).build().unwrap();
    login(&mock, &session);
    assert_eq!(mock.counters().jwks_fetches, 1);
    let old_kid = mock.signing_kid();

    // The server rotates its signing key: the next ID token carries a kid the session has not seen.
    let new_kid = mock.rotate_signing_key();
    assert_ne!(old_kid, new_kid);
    // The core allows one JWKS refetch a minute; a minute passes.
    mock.advance_clock(Duration::from_secs(61));
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url());
    let logged_in = session.finish_login(pending, Callback::Url(&location)).unwrap();
    assert_eq!(logged_in.claims.as_ref().map(|c| c.sub.as_str()), Some(DEMO_USER));
    assert_eq!(
        mock.counters().jwks_fetches,
        2,
        "the unknown kid made the session fetch the keys again, once"
    );

    // Calls go on with the new login's token.
    assert_eq!(session.get("/api/domain/odata/Crm_Customers?$top=1").unwrap().status(), 200);
}

#[test]
fn an_unknown_kid_within_the_refetch_interval_is_rejected_without_storing() {
    let mock = mock();
    let session = Session::builder(client(&mock, REDIRECT_URI)).clock(mock_clock(&mock)).build().unwrap();
    login(&mock, &session);
    let first = session.tokens().unwrap();
    mock.rotate_signing_key();
    // No time passes: the keys were fetched just now, so no second fetch; the new kid stays unknown.
    let pending = session.start_login(AuthorizationRequest::new()).unwrap();
    let location = browser_login(&mock, pending.authorize_url());
    match session.finish_login(pending, Callback::Url(&location)) {
        Err(Error::IdToken(IdTokenError::UnknownKey { .. })) => {}
        other => panic!("expected an unknown key, got {other:?}"),
    }
    assert_eq!(mock.counters().jwks_fetches, 1);
    assert_eq!(session.tokens(), Some(first), "the refused login stored nothing");
}

#[test]
fn userinfo_returns_the_users_claims() {
    let mock = mock();
    let session = Session::new(client(&mock, REDIRECT_URI)).unwrap();
    login(&mock, &session);
    let info = session.userinfo().unwrap();
    assert_eq!(info.sub, DEMO_USER);
    assert_eq!(mock.counters().userinfo_calls, 1);
}

#[test]
fn a_reference_token_is_a_static_bearer_credential() {
    let mock = mock();
    // A personal access token: here one the mock minted for the demo user, as ERP.net would issue an enrt_.
    let token = mock.mint_access_token(Some(DEMO_USER), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let session = Session::builder(client(&mock, REDIRECT_URI))
        .reference_token(ReferenceToken::new(token.clone()))
        .build()
        .unwrap();
    assert_eq!(session.get("/api/domain/odata/Crm_Customers?$top=2").unwrap().status(), 200);
    // It is never refreshed: when the server refuses it, the caller is told.
    mock.advance_clock(Duration::from_secs(10 * 3600));
    let err = session.get("/api/domain/odata/Crm_Customers?$top=2").unwrap_err();
    assert!(err.is_login_required(), "{err:?}");
    assert_eq!(mock.counters().token_requests, 0);
    assert_eq!(mock.counters().api_unauthorized, 1, "one 401, no retry loop");
    assert!(!format!("{session:?} {err:?} {err}").contains(&token), "no token in Debug or errors");
}
