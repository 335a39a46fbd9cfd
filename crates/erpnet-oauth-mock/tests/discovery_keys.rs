//! Discovery, JWKS, signature verification against the JWKS (with ring), key rotation, configuration.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use erpnet_oauth_mock::{ClockMode, DEMO_CLIENT_ID, MockConfig, MockErpNet};
use serde_json::Value;

fn jwks(agent: &ureq::Agent, mock: &MockErpNet) -> Value {
    let r = get(agent, &format!("{}/.well-known/openid-configuration/jwks", mock.issuer()), &[]);
    assert_eq!(r.status, 200);
    r.json()
}

/// Verifies an RS256 JWT against a JWKS, as a relying party would.
fn verify(token: &str, jwks: &Value) -> bool {
    let kid = jwt_header(token)["kid"].as_str().unwrap().to_owned();
    let Some(key) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()) else {
        return false;
    };
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap();
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
        .is_ok()
}

#[test]
fn discovery_document_shape() {
    let mock = start();
    let agent = agent();
    let r = get(&agent, &format!("{}/id/.well-known/openid-configuration", mock.base_url()), &[]);
    assert_eq!(r.status, 200);
    let d = r.json();
    let iss = mock.issuer();
    assert_eq!(iss, format!("{}/id", mock.base_url()));
    assert_eq!(d["issuer"], iss.as_str());
    assert_eq!(d["jwks_uri"], format!("{iss}/.well-known/openid-configuration/jwks"));
    assert_eq!(d["authorization_endpoint"], format!("{iss}/connect/authorize"));
    assert_eq!(d["token_endpoint"], format!("{iss}/connect/token"));
    assert_eq!(d["userinfo_endpoint"], format!("{iss}/connect/userinfo"));
    assert_eq!(d["revocation_endpoint"], format!("{iss}/connect/revocation"));
    assert_eq!(d["end_session_endpoint"], format!("{iss}/connect/endsession"));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(d["response_types_supported"], serde_json::json!(["code", "code id_token"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_post", "client_secret_basic"])
    );
    for s in ["openid", "profile", "offline_access", "DomainApi"] {
        assert!(d["scopes_supported"].as_array().unwrap().iter().any(|x| x == s), "{s}");
    }
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(d["grant_types_supported"].as_array().unwrap().iter().any(|x| x == g), "{g}");
    }
    assert_eq!(mock.counters().discovery_fetches, 1);
}

#[test]
fn issued_tokens_verify_against_the_jwks_and_rotation_keeps_or_drops_old_keys() {
    let mock = start();
    let agent = agent();
    let set = jwks(&agent, &mock);
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!((&k["kty"], &k["use"], &k["alg"]), (&"RSA".into(), &"sig".into(), &"RS256".into()));
    assert_eq!(k["kid"], mock.signing_kid());
    assert_eq!(URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap().len(), 256);
    assert_eq!(k["e"], "AQAB");

    let t = seed_tokens(&agent, &mock);
    let (at, id) = (t["access_token"].as_str().unwrap(), t["id_token"].as_str().unwrap());
    assert!(verify(at, &set));
    assert!(verify(id, &set));
    let mut forged = jwt_claims(at);
    forged["sub"] = "someone-else".into();
    let parts: Vec<&str> = at.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
    assert!(!verify(&forged, &set));

    // Rotation (keep): a new kid signs, both keys are published, old tokens still work.
    let old_kid = mock.signing_kid();
    let new_kid = mock.rotate_signing_key();
    assert_ne!(new_kid, old_kid);
    let set2 = jwks(&agent, &mock);
    let kids: Vec<&str> =
        set2["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![new_kid.as_str(), old_kid.as_str()]);
    let t2 = refresh(&agent, &mock, t["refresh_token"].as_str().unwrap()).json();
    let at2 = t2["access_token"].as_str().unwrap();
    assert_eq!(jwt_header(at2)["kid"], new_kid.as_str());
    assert!(verify(at2, &set2));
    assert!(!verify(at2, &set));
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(at))]).status, 200);

    // Rotation (drop), through the admin path: tokens signed by the old key are refused.
    let mock = start_with(|c| c.keep_old_keys_on_rotation = false);
    let old = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let r = read(agent.post(&format!("{}/_mock/rotate-key", mock.base_url())).send_empty());
    assert_eq!(r.status, 200);
    let kid = r.json()["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid, mock.signing_kid());
    let set = jwks(&agent, &mock);
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);
    assert_eq!(set["keys"][0]["kid"], kid.as_str());
    let r = get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(&old))]);
    assert_eq!(r.status, 401);
    assert_eq!(mock.counters().jwks_fetches, 1);
}

#[test]
fn config_from_json_and_validation() {
    let text = r#"{
        "apps": [{
            "Name": "From ERP.net",
            "ApplicationUri": "json/app",
            "ClientType": "Confidential",
            "ApplicationSecretHash": "HASH",
            "ImpersonateLoginUrl": ["http://localhost:9999/cb"],
            "allowed_scopes": ["openid", "DomainApi"]
        }],
        "clock": {"mode": "manual", "start_unix": 1000000000},
        "access_token_lifetime": 60,
        "customers": 3
    }"#
    .replace("HASH", &erpnet_oauth_mock::secret_hash("pw"));
    let c = MockConfig::from_json_str(&text).unwrap();
    assert_eq!(c.apps[0].application_uri, "json/app");
    assert!(c.apps[0].is_enabled && c.apps[0].impersonate_as_internal_user_allowed);
    assert_eq!(c.access_token_lifetime, std::time::Duration::from_secs(60));
    assert_eq!(c.id_token_lifetime, std::time::Duration::from_secs(300));
    assert_eq!(c.users, MockConfig::default().users);
    assert!(matches!(c.clock, ClockMode::Manual { .. }));
    // Round trip through a file.
    let dir = std::env::temp_dir().join(format!("erpnet-oauth-mock-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mock.json");
    std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let back = MockConfig::from_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back, c);
    // It serves what it says.
    let mock = MockErpNet::start(c).unwrap();
    let t = mock.mint_access_token(Some("admin"), "json/app", &["DomainApi"]).unwrap();
    assert_eq!(jwt_claims(&t)["exp"], 1_000_000_060);
    let r = get(&agent(), &customers_url(&mock, ""), &[("Authorization", &bearer(&t))]);
    assert_eq!(r.json()["value"].as_array().unwrap().len(), 3);

    // Invalid configurations.
    for bad in [
        r#"{"apps": [{"name": "x", "application_uri": "a", "client_type": "Confidential"}]}"#,
        r#"{"apps": [{"name": "x", "application_uri": "a", "client_type": "Public"},
                     {"name": "y", "application_uri": "a", "client_type": "Public"}]}"#,
        r#"{"unknown_field": 1}"#,
        r#"{"clock": {"mode": "sundial"}}"#,
        r#"{"access_token_lifetime": "1h"}"#,
        "not json",
    ] {
        assert!(MockConfig::from_json_str(bad).is_err(), "{bad}");
    }
    assert!(MockConfig::from_file("/nonexistent/mock.json").is_err());
    let mut invalid = MockConfig::default();
    invalid.apps[0].application_secret_hash = None;
    let e = MockErpNet::start(invalid).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = MockErpNet::start_on(MockConfig::default(), "0.0.0.0:0".parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn clock_modes() {
    let manual = start();
    let t0 = manual.now();
    assert_eq!(
        t0,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(erpnet_oauth_mock::MANUAL_CLOCK_START_UNIX)
    );
    manual.advance_clock(std::time::Duration::from_secs(10));
    assert_eq!(manual.now(), t0 + std::time::Duration::from_secs(10));
    let system = MockErpNet::start_on(MockConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let before = system.now();
    system.advance_clock(std::time::Duration::from_secs(86_400));
    assert!(system.now() >= before + std::time::Duration::from_secs(86_400));
    assert!(system.addr().ip().is_loopback());
    assert_eq!(system.base_url(), format!("http://{}", system.addr()));
}

#[test]
fn sign_jwt_signs_a_tests_claims_with_the_published_key() {
    let agent = agent();
    let mock = start();
    let claims = serde_json::json!({ "iss": mock.issuer(), "sub": "someone", "exp": 1 });
    let token = mock.sign_jwt(&claims, None).unwrap();
    assert_eq!(jwt_header(&token)["kid"], mock.signing_kid().as_str());
    assert_eq!(jwt_header(&token)["alg"], "RS256");
    assert_eq!(jwt_claims(&token), claims, "the claims exactly as given");
    let set = jwks(&agent, &mock);
    assert!(verify(&token, &set), "verifies against the JWKS");
    // Another kid in the header, the same key signing: a relying party finds no key for it.
    let other = mock.sign_jwt(&claims, Some("not-published")).unwrap();
    assert_eq!(jwt_header(&other)["kid"], "not-published");
    assert!(!set["keys"].as_array().unwrap().iter().any(|k| k["kid"] == "not-published"));
    assert_eq!(other.rsplit_once('.').unwrap().1.len(), token.rsplit_once('.').unwrap().1.len());
}
