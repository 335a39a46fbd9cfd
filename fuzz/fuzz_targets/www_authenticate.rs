//! The `WWW-Authenticate` parser: `parse_challenges` on the header values, `bearer_challenge` on a header
//! map. The input is split into header values at newlines.
#![no_main]

use erpnet_oauth_core::{bearer_challenge, http, parse_challenges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let _ = format!("{:?}", parse_challenges(values.iter().copied()));
    let mut headers = http::HeaderMap::new();
    for value in data.split(|&b| b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            headers.append(http::header::WWW_AUTHENTICATE, v);
        }
    }
    let _ = format!("{:?}", bearer_challenge(&headers));
});
