//! Encoding helpers shared by the request builders.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is percent-encoded: `/` in client ids, `:` in
/// redirect URIs and spaces in scopes (as `%20`, never the ambiguous `+`).
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Joins pairs into a query string with RFC 3986 encoding.
pub(crate) fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        // Encoded straight into `out`: no string per component.
        out.extend(utf8_percent_encode(k, QUERY_COMPONENT));
        out.push('=');
        out.extend(utf8_percent_encode(v, QUERY_COMPONENT));
    }
    out
}

/// An `application/x-www-form-urlencoded` body (WHATWG form encoding, spaces as `+`).
pub(crate) fn form_body<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish().into_bytes()
}

/// Parses `application/x-www-form-urlencoded` (or a query string) into pairs, in order.
pub(crate) fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_and_redirects_are_encoded() {
        assert_eq!(
            query_string([("client_id", "my.trusted.app/first"), ("scope", "openid profile")]),
            "client_id=my.trusted.app%2Ffirst&scope=openid%20profile"
        );
        assert_eq!(form_body([("a", "x y/z")]), b"a=x+y%2Fz");
        assert_eq!(parse_form(b"a=x+y%2Fz&b"), vec![("a".into(), "x y/z".into()), ("b".into(), "".into())]);
    }
}
