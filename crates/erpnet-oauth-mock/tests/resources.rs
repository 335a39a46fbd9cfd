//! The Domain API, userinfo and revocation.

mod common;

use common::*;
use erpnet_oauth_mock::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SERVICE_CLIENT_ID, FAIL_FILTER};

#[test]
fn domain_api_pages_deterministic_customers() {
    let mock = start_with(|c| c.customers = 25);
    let agent = agent();
    let token = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["openid", "DomainApi"]).unwrap();
    let auth = bearer(&token);
    let h = [("Authorization", auth.as_str())];
    let all = get(&agent, &customers_url(&mock, ""), &h);
    assert_eq!(all.status, 200);
    assert!(all.header("content-type").unwrap().starts_with("application/json"));
    let all = all.json()["value"].as_array().unwrap().clone();
    assert_eq!(all.len(), 25);
    let first = &all[0];
    assert_eq!(first["Number"], "C00001");
    assert!(first["Id"].as_str().unwrap().len() == 36);
    assert!(first["PartyName"].is_string());
    let page = get(&agent, &customers_url(&mock, "?$top=5&$skip=20"), &h).json();
    assert_eq!(page["value"].as_array().unwrap().as_slice(), &all[20..25]);
    let page = get(&agent, &customers_url(&mock, "?$skip=30"), &h).json();
    assert_eq!(page["value"].as_array().unwrap().len(), 0);
    let page = get(&agent, &customers_url(&mock, "?$top=0&$select=Id"), &h).json();
    assert_eq!(page["value"].as_array().unwrap().len(), 0);
    // Same data from another mock.
    let other = start_with(|c| c.customers = 25);
    let t2 = other.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let again = get(&agent, &customers_url(&other, "?$top=1"), &[("Authorization", &bearer(&t2))]).json();
    assert_eq!(again["value"][0], all[0]);
    // A token of one mock is refused by another.
    assert_eq!(get(&agent, &customers_url(&other, ""), &h).status, 401);
}

#[test]
fn domain_api_server_driven_paging_follows_odata() {
    // `page_size`: at most that many rows per answer, the rest behind `@odata.nextLink` (an absolute URL
    // on the instance, the other query options kept), none on the last page.
    let mock = start_with(|c| {
        c.customers = 25;
        c.page_size = Some(10);
    });
    let agent = agent();
    let token = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let auth = bearer(&token);
    let h = [("Authorization", auth.as_str())];
    let mut url = customers_url(&mock, "?$select=Id,Number");
    let mut rows = Vec::new();
    let mut links = Vec::new();
    loop {
        let page = get(&agent, &url, &h).json();
        let value = page["value"].as_array().unwrap();
        assert!(value.len() <= 10);
        rows.extend(value.iter().map(|r| r["Number"].as_str().unwrap().to_owned()));
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                links.push(next.to_owned());
                url = next.to_owned();
            }
            None => break,
        }
    }
    let base = format!("{}/api/domain/odata/Crm_Customers", mock.base_url());
    assert_eq!(
        links,
        [format!("{base}?$select=Id,Number&$skip=10"), format!("{base}?$select=Id,Number&$skip=20")]
    );
    let expected: Vec<String> = (1..=25).map(|i| format!("C{i:05}")).collect();
    assert_eq!(rows, expected);
    // `$top` and `$skip` of the client: the pages stop at `$top` rows.
    let page = get(&agent, &customers_url(&mock, "?$top=12&$skip=3"), &h).json();
    assert_eq!(page["value"].as_array().unwrap().len(), 10);
    assert_eq!(page["@odata.nextLink"], format!("{base}?$top=2&$skip=13"));
    let last = get(&agent, page["@odata.nextLink"].as_str().unwrap(), &h).json();
    assert_eq!(last["value"].as_array().unwrap().len(), 2);
    assert_eq!(last["value"][1]["Number"], "C00015");
    assert!(last.get("@odata.nextLink").is_none());
    // Exactly one page's worth: no link.
    let page = get(&agent, &customers_url(&mock, "?$top=10"), &h).json();
    assert!(page.get("@odata.nextLink").is_none());
    // Without `page_size` (the default) every row comes at once.
    let whole = start_with(|c| c.customers = 25);
    let t = whole.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let all = get(&agent, &customers_url(&whole, ""), &[("Authorization", &bearer(&t))]).json();
    assert_eq!(all["value"].as_array().unwrap().len(), 25);
    assert!(all.get("@odata.nextLink").is_none());
}

#[test]
fn domain_api_business_errors_are_500_json() {
    let mock = start();
    let agent = agent();
    let token = mock.mint_access_token(None, DEMO_SERVICE_CLIENT_ID, &["DomainApi"]).unwrap();
    let auth = bearer(&token);
    let h = [("Authorization", auth.as_str())];
    for path in [
        format!("{}/api/domain/odata/Crm_Nothing", mock.base_url()),
        customers_url(&mock, "?$top=ten"),
        customers_url(&mock, "?$top=-1"),
        customers_url(&mock, "?$skip=1.5"),
        customers_url(&mock, &format!("?$filter={FAIL_FILTER}")),
        customers_url(&mock, "?$top=1&$top=2"),
    ] {
        let r = get(&agent, &path, &h);
        assert_eq!(r.status, 500, "{path}");
        let e = r.json();
        for k in ["message", "code", "type", "info"] {
            assert!(e[k].is_string(), "{path}: {k} in {e}");
        }
    }
    let n = mock.counters();
    assert_eq!((n.api_calls, n.api_business_errors, n.api_ok), (6, 6, 0));
}

#[test]
fn domain_api_401_and_403() {
    let mock = start();
    let agent = agent();
    let url = customers_url(&mock, "?$top=1");
    let r = get(&agent, &url, &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = get(&agent, &url, &[("Authorization", "Basic abc")]);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let good = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for bad in ["Bearer", "Bearer garbage", "Bearer a.b.c", &format!("Bearer {tampered}")] {
        let r = get(&agent, &url, &[("Authorization", bad)]);
        assert_eq!(r.status, 401, "{bad}");
        let c = r.header("www-authenticate").unwrap();
        assert!(c.starts_with("Bearer error=\"invalid_token\", error_description=\""), "{c}");
    }
    // The token in the query string is not a bearer token.
    let r = get(&agent, &format!("{url}&access_token={good}"), &[]);
    assert_eq!(r.status, 401);
    // Without DomainApi: 403 insufficient_scope.
    let no_api = mock.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["openid", "profile"]).unwrap();
    let r = get(&agent, &url, &[("Authorization", &bearer(&no_api))]);
    assert_eq!(r.status, 403);
    let c = r.header("www-authenticate").unwrap();
    assert!(c.starts_with("Bearer error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"DomainApi\""), "{c}");
    // Case-insensitive scheme.
    assert_eq!(get(&agent, &url, &[("Authorization", &format!("bearer {good}"))]).status, 200);
    // API clock skew.
    let skewed = start_with(|c| c.api_clock_skew = std::time::Duration::from_secs(300));
    let t = skewed.mint_access_token(Some("admin"), DEMO_CLIENT_ID, &["DomainApi"]).unwrap();
    skewed.advance_clock(std::time::Duration::from_secs(3600 + 299));
    let u = customers_url(&skewed, "");
    assert_eq!(get(&agent, &u, &[("Authorization", &bearer(&t))]).status, 200);
    skewed.advance_clock(std::time::Duration::from_secs(1));
    assert_eq!(get(&agent, &u, &[("Authorization", &bearer(&t))]).status, 401);
    let n = mock.counters();
    assert_eq!((n.api_calls, n.api_unauthorized, n.api_forbidden, n.api_ok), (9, 7, 1, 1));
}

#[test]
fn userinfo_returns_the_users_claims() {
    let mock = start();
    let agent = agent();
    let t = seed_tokens(&agent, &mock);
    let access = t["access_token"].as_str().unwrap();
    let url = format!("{}/connect/userinfo", mock.issuer());
    let r = get(&agent, &url, &[("Authorization", &bearer(access))]);
    assert_eq!(r.status, 200);
    let u = r.json();
    assert_eq!(u["sub"], "admin");
    assert_eq!(u["name"], "SPS");
    assert_eq!(u["email"], "admin@mail.com");
    let r = read(agent.post(&url).header("Authorization", &bearer(access)).send_empty());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sub"], "admin");
    let r = get(&agent, &url, &[]);
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")));
    let r = get(&agent, &url, &[("Authorization", "Bearer nope")]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("invalid_token"));
    let cc = mock.mint_access_token(None, DEMO_SERVICE_CLIENT_ID, &["DomainApi"]).unwrap();
    let r = get(&agent, &url, &[("Authorization", &bearer(&cc))]);
    assert_eq!(r.status, 403);
    mock.advance_clock(std::time::Duration::from_secs(3600));
    assert_eq!(get(&agent, &url, &[("Authorization", &bearer(access))]).status, 401);
    assert_eq!(mock.counters().userinfo_calls, 6);
}

#[test]
fn revocation_endpoint() {
    let mock = start();
    let agent = agent();
    let url = format!("{}/connect/revocation", mock.issuer());
    let t = seed_tokens(&agent, &mock);
    let rt = t["refresh_token"].as_str().unwrap();
    let at = t["access_token"].as_str().unwrap();
    let auth = [("client_id", DEMO_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET)];
    let with = |extra: &[(&str, &str)]| {
        let mut f = auth.to_vec();
        f.extend_from_slice(extra);
        post_form(&agent, &url, &[], &f)
    };
    // Bad client, missing token, bad hint, another client's token.
    let r =
        post_form(&agent, &url, &[], &[("client_id", DEMO_CLIENT_ID), ("client_secret", "x"), ("token", rt)]);
    r.assert_oauth_error(401, "invalid_client");
    with(&[]).assert_oauth_error(400, "invalid_request");
    with(&[("token", rt), ("token_type_hint", "id_token")]).assert_oauth_error(400, "unsupported_token_type");
    let r = post_form(
        &agent,
        &url,
        &[],
        &[("client_id", DEMO_SERVICE_CLIENT_ID), ("client_secret", DEMO_CLIENT_SECRET), ("token", rt)],
    );
    r.assert_oauth_error(400, "unauthorized_client");
    // Unknown token: 200 anyway.
    assert_eq!(with(&[("token", "unknown"), ("token_type_hint", "refresh_token")]).status, 200);
    // Revoking the refresh token revokes the grant: refresh and the access token stop working.
    let r = with(&[("token", rt), ("token_type_hint", "refresh_token")]);
    assert_eq!(r.status, 200);
    refresh(&agent, &mock, rt).assert_oauth_error(400, "invalid_grant");
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(at))]).status, 401);
    // Access token revocation affects that token only.
    let t = seed_tokens(&agent, &mock);
    let at2 = t["access_token"].as_str().unwrap();
    assert_eq!(with(&[("token", at2), ("token_type_hint", "access_token")]).status, 200);
    assert_eq!(get(&agent, &customers_url(&mock, ""), &[("Authorization", &bearer(at2))]).status, 401);
    assert_eq!(refresh(&agent, &mock, t["refresh_token"].as_str().unwrap()).status, 200);
    assert_eq!(mock.counters().revocations, 3);
}
