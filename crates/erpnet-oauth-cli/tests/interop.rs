//! The CLI against independent OpenID Connect providers serving ERP.net's paths, each with a Domain API
//! stand-in: node-oidc-provider (OpenID Certified, Node.js) and django-oauth-toolkit (on oauthlib,
//! Python); see `common/external_op.rs`. Every scenario runs against both (the `against!` modules).
//! Nothing here is the mock's: the providers' login pages, cookies and CSRF tokens, token formats
//! (opaque access and refresh tokens), RFC 9207 `iss` in the callback, ID tokens with their own claims,
//! their rotation, reuse-detection and revocation rules, their error bodies, and their endpoint paths
//! taken from discovery.

mod common;

use common::external_op::{OpOptions, Peer};
use common::*;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=2";

/// Every scenario below, as tests against `$peer`.
macro_rules! against {
    ($module:ident, $peer:expr, [$($scenario:ident),* $(,)?]) => {
        mod $module {
            use super::Peer;
            $(
                #[test]
                fn $scenario() {
                    super::$scenario($peer)
                }
            )*
        }
    };
}

macro_rules! scenarios {
    ($($module:ident => $peer:expr),*) => {$(
        against!($module, $peer, [
            the_seed_story_runs,
            refresh_and_logout_follow_rotation_and_revocation,
            expired_token_in_many_processes_is_refreshed_once,
            a_login_revoked_elsewhere_requires_a_new_login,
            the_public_app_logs_in_with_pkce_alone,
            endpoints_come_from_discovery_not_from_fixed_paths,
            a_callback_naming_another_issuer_is_refused,
            a_wrong_client_secret_is_reported_with_what_to_check,
            a_provider_that_does_not_rotate_refresh_tokens_is_followed_too,
        ]);
    )*};
}

scenarios!(node_oidc_provider => Peer::Node, django_oauth_toolkit => Peer::Dot);

fn start(peer: Peer) -> Harness {
    Harness::external(peer, OpOptions::default())
}

fn the_seed_story_runs(peer: Peer) {
    let h = start(peer);
    h.login();
    let c = h.op().counters();
    assert_eq!((c.get("logins"), c.get("authorization_code")), (1, 1));

    // status: the subject from the verified ID token, the scope the provider granted to the access token.
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    let status: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(status["subject"], peer.subject());
    assert_eq!(status["instance"], h.instance());
    assert_eq!(status["client_id"], CLIENT_ID);
    assert_eq!(status["has_refresh_token"], true);
    assert!(status["scopes"].as_array().unwrap().contains(&"DomainApi".into()), "{status}");
    let expires_at = status["access_token_expires_at"].as_u64().unwrap();
    assert!((now_unix() + 3500..=now_unix() + 3600).contains(&expires_at), "an hour: {status}");

    // token: the stored (opaque) access token, which the Domain API accepts.
    let at0 = h.access_token().unwrap();
    let o = h.run_token(h.store_only(&["token"]));
    o.assert_success();
    assert_eq!(o.stdout, format!("{at0}\n"));
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_success();
    let body: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["value"][0]["Owner"], peer.subject());

    // The access token ends at the server: the API answers 401, the CLI refreshes once and retries once.
    let rt0 = h.refresh_token().unwrap();
    h.op().expire(&at0);
    let o = h.run(h.store_only(&["call", "GET", CUSTOMERS]));
    o.assert_success();
    let c = h.op().counters();
    assert_eq!((c.get("api_unauthorized"), c.get("refresh_token"), c.get("api_ok")), (1, 1, 2));
    let (at1, rt1) = (h.access_token().unwrap(), h.refresh_token().unwrap());
    assert_ne!(at1, at0);
    assert_ne!(rt1, rt0, "the provider rotated the refresh token and the CLI stored the new one");

    // The old refresh token is dead at the provider: the CLI never needs it again.
    let (status, body) = h.op().try_refresh(&rt0);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // Using a rotated refresh token again made the provider revoke the whole grant (its reuse
    // detection), so the login is over: the CLI says so and deletes the tokens.
    h.set_expires_at(now_unix() - 1);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["invalid_grant", "erpnet-oauth login"]);
    assert!(h.stored().is_empty(), "the rejected tokens are deleted");
}

fn refresh_and_logout_follow_rotation_and_revocation(peer: Peer) {
    let h = start(peer);
    h.login();
    let rt0 = h.refresh_token().unwrap();
    for round in 1..=3 {
        let o = h.run(h.store_only(&["refresh"]));
        o.assert_success();
        assert_eq!(h.op().counters().get("refresh_token"), round);
    }
    let rt3 = h.refresh_token().unwrap();
    assert_ne!(rt3, rt0);
    let c = h.op().counters();
    assert_eq!((c.get("invalid_grant"), c.get("token_errors"), c.get("server_errors")), (0, 0, 0));
    h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();

    // logout revokes the refresh token at the provider's revocation endpoint, then deletes the tokens.
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert!(o.stderr.contains("Revoked the refresh token at the server"), "{o:#?}");
    assert!(h.stored().is_empty());
    assert_eq!(h.op().counters().get("grants_revoked"), 1);
    let (status, body) = h.op().try_refresh(&rt3);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "revoked: {body}");
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
}

fn expired_token_in_many_processes_is_refreshed_once(peer: Peer) {
    let h = start(peer);
    h.login();
    let rt0 = h.refresh_token().unwrap();
    h.set_expires_at(now_unix() - 10);
    let outcomes = h.run_at_once(6, &["token"]);
    let at = h.access_token().unwrap();
    for o in &outcomes {
        o.assert_success();
        assert_eq!(o.stdout, format!("{at}\n"), "every process prints the one new token");
    }
    let c = h.op().counters();
    assert_eq!((c.get("refresh_token"), c.get("invalid_grant")), (1, 0), "one refresh between them: {c:?}");
    assert_ne!(h.refresh_token().unwrap(), rt0);
    h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();
}

fn a_login_revoked_elsewhere_requires_a_new_login(peer: Peer) {
    let h = start(peer);
    h.login();
    // The user's session ends elsewhere (a logout, a password change): the provider revokes the grant.
    h.op().revoke(&h.refresh_token().unwrap());
    h.set_expires_at(now_unix() - 10);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["invalid_grant", "erpnet-oauth login"]);
    assert!(h.stored().is_empty(), "tokens rejected with invalid_grant are deleted");
    // A new login works.
    h.login();
    h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();
}

fn the_public_app_logs_in_with_pkce_alone(peer: Peer) {
    let h = start(peer);
    h.login_with(h.public_cli(&["login", "--no-browser"]));
    let at0 = h.access_token().unwrap();
    h.op().expire(&at0);
    let mut cmd = h.store_only(&["call", "GET", CUSTOMERS]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    h.run(cmd).assert_success();
    let c = h.op().counters();
    assert_eq!((c.get("authorization_code"), c.get("refresh_token"), c.get("api_unauthorized")), (1, 1, 1));
    assert_ne!(h.access_token().unwrap(), at0);
}

fn endpoints_come_from_discovery_not_from_fixed_paths(peer: Peer) {
    // The provider's own paths (node-oidc-provider: /id/auth, /id/token, /id/token/revocation;
    // django-oauth-toolkit: /id/o/authorize/, /id/o/token/, /id/o/revoke_token/): only discovery says
    // where they are.
    let h = Harness::external(peer, OpOptions { provider_routes: true, ..OpOptions::default() });
    let [authorize, token, revocation] =
        ["authorization_endpoint", "token_endpoint", "revocation_endpoint"].map(|e| h.op().endpoint(e));
    for (endpoint, erpnet) in [(&authorize, "authorize"), (&token, "token"), (&revocation, "revocation")] {
        assert!(endpoint.starts_with(&h.instance()), "{endpoint}");
        assert_ne!(*endpoint, format!("{}/id/connect/{erpnet}", h.instance()), "not ERP.net's path");
    }
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    assert!(run.authorize_url.starts_with(&format!("{authorize}?")), "{}", run.authorize_url);
    assert!(run.browse(&h).contains("Logged in"));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    h.op().expire(&h.access_token().unwrap());
    let o = h.run(h.store_only(&["--verbose", "call", "GET", CUSTOMERS]));
    o.assert_success();
    assert!(o.stderr.contains(&format!("uri={token} status=200")), "{o:#?}");
    let o = h.run(h.store_only(&["--verbose", "logout"]));
    o.assert_success();
    assert!(o.stderr.contains(&format!("uri={revocation} status=200")), "{o:#?}");
    let c = h.op().counters();
    assert_eq!((c.get("refresh_token"), c.get("grants_revoked")), (1, 1));
}

fn a_callback_naming_another_issuer_is_refused(peer: Peer) {
    // The provider advertises RFC 9207 and sends `iss` in the callback; a mix-up changes it.
    let h = start(peer);
    let run = h.start_login(h.cli(&["login", "--no-browser"]));
    let location = run.sign_in(&h);
    let mut url = url::Url::parse(&location).unwrap();
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(pairs.iter().any(|(k, v)| k == "iss" && *v == format!("{}/id", h.instance())), "{location}");
    url.query_pairs_mut().clear().extend_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), if k == "iss" { "https://attacker.example/id" } else { v })),
    );
    deliver(url.as_str());
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_failure(4, &["iss"]);
    assert!(h.stored().is_empty(), "nothing is stored");
    assert_eq!(h.op().counters().get("authorization_code"), 0, "the code is never sent");
}

fn a_wrong_client_secret_is_reported_with_what_to_check(peer: Peer) {
    let h = start(peer);
    h.login_with_a_wrong_secret();
    assert_eq!(h.op().counters().get("token_errors"), 1);
}

#[test]
fn node_oidc_provider_granting_no_refresh_token_gives_a_login_without_one() {
    // node-oidc-provider's default: `offline_access` without `prompt=consent` is dropped (OpenID Connect
    // Core §11), so no refresh token. The login still works for the access token's hour; after it, the
    // CLI says a new login is needed instead of failing obscurely.
    let h = Harness::external(Peer::Node, OpOptions { strict_offline_access: true, ..OpOptions::default() });
    let o = h.login();
    assert_eq!(h.refresh_token(), None);
    assert!(
        o.stderr.contains(
            "warning: the server issued no refresh token (offline_access was asked for but not granted)"
        ),
        "the login says at once that it will not last: {o:#?}"
    );
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    let status: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(status["has_refresh_token"], false, "{status}");
    h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();
    h.set_expires_at(now_unix() - 10);
    h.run(h.store_only(&["token"])).assert_only_error(3, &["erpnet-oauth login"]);
    assert_eq!(h.op().counters().get("refresh_token"), 0);
}

fn a_provider_that_does_not_rotate_refresh_tokens_is_followed_too(peer: Peer) {
    let h = Harness::external(peer, OpOptions { no_rotation: true, ..OpOptions::default() });
    h.login();
    let rt = h.refresh_token().unwrap();
    for round in 1..=2 {
        let at = h.access_token().unwrap();
        h.op().expire(&at);
        h.run(h.store_only(&["call", "GET", CUSTOMERS])).assert_success();
        assert_ne!(h.access_token().unwrap(), at);
        assert_eq!(h.refresh_token().unwrap(), rt, "the refresh token the provider kept is kept");
        let c = h.op().counters();
        assert_eq!((c.get("refresh_token"), c.get("invalid_grant")), (round, 0));
    }
}
