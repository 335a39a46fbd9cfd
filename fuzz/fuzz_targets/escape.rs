//! The escaping of server text for terminals and logs (issue 13): `escape` on any string (the bytes read as
//! UTF-8, lossily). The output holds no control or bidi character, escaping it again changes nothing, text
//! without special characters comes back as it is, and the output is at most 6 times the input's bytes.
#![no_main]

use erpnet_oauth_core::{escape, needs_escape};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

/// Written out on its own, so that a mistake in `needs_escape` is caught rather than mirrored.
fn special(c: char) -> bool {
    matches!(
        c as u32,
        0x00..=0x1F | 0x7F..=0x9F | 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 | 0x2028 | 0x2029
    )
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let out = escape(&input);
    assert!(!out.chars().any(special), "{input:?} -> {out:?}");
    assert!(!out.chars().any(needs_escape));
    assert!(out.len() <= 6 * input.len(), "{} bytes -> {}", input.len(), out.len());
    let again = escape(&out);
    assert_eq!(again, out, "escaping is idempotent");
    assert!(matches!(again, Cow::Borrowed(_)));
    let has_special = input.chars().any(special);
    assert_eq!(matches!(out, Cow::Borrowed(_)), !has_special, "{input:?}");
    if !has_special {
        assert_eq!(out, input);
    }
    // Every character kept, in order: the output is the input with each special one spelled out.
    let expected: String = input
        .chars()
        .map(|c| if special(c) { c.escape_unicode().collect() } else { c.to_string() })
        .collect();
    assert_eq!(out, expected);
});
