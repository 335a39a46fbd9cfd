//! The Domain API error parser: `parse_domain_error` on the body, and `check_api_response` on a whole
//! answer (status from the first two bytes, a `Retry-After` and a `WWW-Authenticate` from the next lines).
#![no_main]

use erpnet_oauth_core::api::parse_domain_error;
use erpnet_oauth_core::{check_api_response, http};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let _ = format!("{:?}", parse_domain_error(rest));
    let mut parts = rest.splitn(3, |&c| c == b'\n');
    let (retry, challenge, body) = (parts.next(), parts.next(), parts.next());
    let mut response = http::Response::new(body.unwrap_or(rest).to_vec());
    if let Ok(s) = http::StatusCode::from_u16(100 + u16::from_be_bytes([*a, *b]) % 500) {
        *response.status_mut() = s;
    }
    for (name, value) in [(http::header::RETRY_AFTER, retry), (http::header::WWW_AUTHENTICATE, challenge)] {
        if let Some(v) = value.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
            response.headers_mut().insert(name, v);
        }
    }
    if let Err(e) = check_api_response(&response) {
        let _ = (e.to_string(), format!("{e:?}"));
    }
});
