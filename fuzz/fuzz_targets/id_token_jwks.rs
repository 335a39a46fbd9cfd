//! ID token and JWKS parsing: `verify_id_token` against a fixed key set (the test-only keys' public
//! halves) and `JwkSet::from_json` on arbitrary bytes. The input is `jwks-bytes \0 id-token`.
#![no_main]

use erpnet_oauth_core::{ClientConfig, IdToken, IdTokenExpectations, JwkSet, verify_id_token};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

const KEYS: &[u8] = include_bytes!("../keys/jwks.test-only.json");

fn fixed() -> Option<&'static (ClientConfig, JwkSet)> {
    static FIXED: OnceLock<Option<(ClientConfig, JwkSet)>> = OnceLock::new();
    FIXED
        .get_or_init(|| {
            let client =
                ClientConfig::builder("https://demodb.my.erp.net", "my.trusted.app/first").build().ok()?;
            Some((client, JwkSet::from_json(KEYS).ok()?))
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((client, keys)) = fixed() else { return };
    let (jwks, token) = match data.iter().position(|&b| b == 0) {
        Some(i) => (data.get(..i).unwrap_or_default(), data.get(i + 1..).unwrap_or_default()),
        None => (data, data),
    };
    if let Ok(set) = JwkSet::from_json(jwks) {
        let _ = format!("{set:?}");
    }
    let token = IdToken::new(String::from_utf8_lossy(token).into_owned());
    let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
    for expect in [IdTokenExpectations::new(), IdTokenExpectations::new().nonce(Some("abc"))] {
        match verify_id_token(&token, client, keys, &expect, now) {
            Ok(claims) => {
                let _ = format!("{claims:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
