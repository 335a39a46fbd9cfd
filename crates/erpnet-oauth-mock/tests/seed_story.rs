//! The seed document, exchange by exchange: login form, code, token (client_secret_post), Domain API,
//! expiry by the manual clock, 401, refresh with rotation, reuse detection.

mod common;

use std::time::Duration;

use common::*;
use erpnet_oauth_mock::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI, MANUAL_CLOCK_START_UNIX};

#[test]
fn the_seed_story_works_end_to_end() {
    let mock = start();
    let agent = agent();

    // Authorize endpoint: the seed's GET, then the login page, then the redirect back to the app.
    let cb = login(&agent, &mock, &seed_authorize_url(&mock));
    assert_eq!(cb["state"], "xyz");
    assert_eq!(cb["iss"], mock.issuer());
    let code = cb["code"].clone();
    assert_eq!(code.len(), 43);
    // Hybrid: a front-channel id_token bound to the code and the nonce.
    let front = jwt_claims(&cb["id_token"]);
    assert_eq!(front["nonce"], "abc");
    assert_eq!(front["aud"], DEMO_CLIENT_ID);
    assert_eq!(front["c_hash"], half_hash(&code));
    assert_eq!(front["s_hash"], half_hash("xyz"));

    // Token endpoint: the seed's body, byte for byte (one parameter per line).
    let body = format!(
        "client_id=my.trusted.app/first&\nclient_secret={DEMO_CLIENT_SECRET}&\ngrant_type=authorization_code&\ncode={code}&\nredirect_uri={DEMO_REDIRECT_URI}"
    );
    let r = post_raw(&agent, &token_url(&mock), "application/x-www-form-urlencoded", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let t = r.json();
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile DomainApi offline_access");
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh_token = t["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh_token.len(), 43);
    assert!(refresh_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // Token shapes.
    let h = jwt_header(&access);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["kid"], mock.signing_kid());
    let c = jwt_claims(&access);
    assert_eq!(c["iss"], mock.issuer());
    assert_eq!(c["aud"], "DomainApi");
    assert_eq!(c["client_id"], DEMO_CLIENT_ID);
    assert_eq!(c["sub"], "admin");
    assert_eq!(c["user_type"], "InternalUser");
    assert_eq!(c["name"], "SPS");
    assert_eq!(c["email"], "admin@mail.com");
    assert_eq!(c["db"], "demodb");
    assert_eq!(c["idp"], "local");
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    assert_eq!(c["scope"], serde_json::json!(["openid", "profile", "DomainApi", "offline_access"]));
    assert_eq!(c["iat"], MANUAL_CLOCK_START_UNIX);
    assert_eq!(c["nbf"], MANUAL_CLOCK_START_UNIX);
    assert_eq!(c["exp"], MANUAL_CLOCK_START_UNIX + 3600);
    assert_eq!(c["id"], "9da64839-a8d0-491d-aebb-4d18fa42b014");
    assert!(c["jti"].is_string() && c["sid"].is_string() && c["auth_time"].is_u64());
    let id = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(jwt_header(t["id_token"].as_str().unwrap())["typ"], "JWT");
    assert_eq!(id["aud"], DEMO_CLIENT_ID);
    assert_eq!(id["iss"], mock.issuer());
    assert_eq!(id["nonce"], "abc");
    assert_eq!(id["sub"], "admin");
    assert_eq!(id["sid"], c["sid"]);
    assert_eq!(id["exp"], MANUAL_CLOCK_START_UNIX + 300);
    assert_eq!(id["at_hash"], half_hash(&access));
    assert_eq!(id["idp"], "local");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));

    // Authorized Domain API call.
    let api = customers_url(&mock, "?$top=10");
    let r = get(&agent, &api, &[("Authorization", &bearer(&access))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["value"].as_array().unwrap().len(), 10);
    assert_eq!(v["@odata.context"], format!("{}/api/domain/odata/$metadata#Crm_Customers", mock.base_url()));

    // One hour later every request returns 401.
    mock.advance_clock(Duration::from_secs(3600));
    let r = get(&agent, &api, &[("Authorization", &bearer(&access))]);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("error_description=\"The token is expired\""), "{challenge}");

    // Access token renewal: the seed's refresh request, byte for byte.
    let body = format!(
        "client_id=my.trusted.app/first&\nclient_secret={DEMO_CLIENT_SECRET}&\ngrant_type=refresh_token&\nrefresh_token={refresh_token}"
    );
    let r = post_raw(&agent, &token_url(&mock), "application/x-www-form-urlencoded", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t2 = r.json();
    let access2 = t2["access_token"].as_str().unwrap().to_owned();
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh_token);
    assert_eq!(refresh2.len(), 43);
    assert_eq!(t2["expires_in"], 3600);
    assert_eq!(t2["scope"], "openid profile DomainApi offline_access");
    let id2 = jwt_claims(t2["id_token"].as_str().unwrap());
    assert_eq!((&id2["iss"], &id2["sub"], &id2["aud"]), (&id["iss"], &id["sub"], &id["aud"]));
    assert_eq!(jwt_claims(&access2)["exp"], MANUAL_CLOCK_START_UNIX + 7200);
    let r = get(&agent, &api, &[("Authorization", &bearer(&access2))]);
    assert_eq!(r.status, 200);

    // "Older tokens will be revoked": the old refresh token is refused, and its reuse revokes the grant.
    let r = refresh(&agent, &mock, &refresh_token);
    r.assert_oauth_error(400, "invalid_grant");
    let r = refresh(&agent, &mock, &refresh2);
    r.assert_oauth_error(400, "invalid_grant");
    let r = get(&agent, &api, &[("Authorization", &bearer(&access2))]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("revoked"));

    let n = mock.counters();
    assert_eq!(n.authorize_requests, 1);
    assert_eq!(n.logins, 1);
    assert_eq!(n.token_requests, 4);
    assert_eq!(n.authorization_code_grants, 1);
    assert_eq!(n.refresh_token_grants, 1);
    assert_eq!(n.invalid_grant_errors, 2);
    assert_eq!(n.refresh_token_reuses, 1);
    assert_eq!(n.grants_revoked, 1);
    assert_eq!(n.api_calls, 4);
    assert_eq!(n.api_ok, 2);
    assert_eq!(n.api_unauthorized, 2);
}

fn half_hash(v: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(v.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..16])
}
