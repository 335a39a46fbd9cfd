//! The token response parser: `parse_token_response` (success and §5.2 error bodies) and the code
//! exchange's `TokenExchange::handle_response`. The first two bytes pick the status.
#![no_main]

use erpnet_oauth_core::{Scopes, TokenSet, http, parse_token_response};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else { return };
    let status = 100 + u16::from_be_bytes([*a, *b]) % 500;
    let mut response = http::Response::new(body.to_vec());
    if let Ok(s) = http::StatusCode::from_u16(status) {
        *response.status_mut() = s;
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_655_057_724);
    match parse_token_response(&response, now, &Scopes::erpnet_default()) {
        Ok(tokens) => {
            let _ = format!("{tokens:?}");
            let _ = tokens.is_fresh(now, Duration::from_secs(60));
            let _ = tokens.refreshed(TokenSet { ..tokens.clone() });
        }
        Err(e) => {
            let _ = (e.to_string(), e.is_invalid_grant(), e.is_retryable());
        }
    }
});
