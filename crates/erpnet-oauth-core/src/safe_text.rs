//! Text from a server, made safe to show (issue 13).
//!
//! Whatever a server sends (an `error_description`, an issuer, a `kid`, a claim such as `sub`) may hold
//! characters that a terminal or a log viewer obeys instead of showing: ESC starting an ANSI sequence
//! that clears the screen or retitles the window, a newline forging a log line, a bidi override reversing
//! what follows. [`escape`] replaces each of them with visible text, `\u{1b}` for ESC (Rust's
//! [`char::escape_unicode`] form), and leaves everything else as it is, non-ASCII letters included.
//!
//! The core's error types show server text only through [`escape`], so their `Display` is safe to print
//! as it is; applications printing a claim themselves call it too.

use std::borrow::Cow;

/// Whether [`escape`] replaces `c`: the C0 controls (U+0000-U+001F, newline and tab included), DEL
/// (U+007F), the C1 controls (U+0080-U+009F), the Unicode bidi controls (U+061C, U+200E, U+200F,
/// U+202A-U+202E, U+2066-U+2069) and the line and paragraph separators (U+2028, U+2029).
pub fn needs_escape(c: char) -> bool {
    // `is_control` is the general category Cc: exactly C0, DEL and C1.
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// `s` with every character of [`needs_escape`] written as `\u{..}` (lowercase hex, as
/// [`char::escape_unicode`] writes it): ESC becomes the six characters `\u{1b}`, U+202E the eight
/// characters `\u{202e}`. Everything else is kept; text with nothing to escape is returned as it is,
/// without a copy.
///
/// The result holds no character of [`needs_escape`]; escaping it again changes nothing (a backslash is
/// not escaped, so `\u{1b}` in the input and ESC give the same text: this is for showing, not a
/// reversible encoding); it is at most 6 times as long as `s` in bytes.
///
/// ```
/// use erpnet_oauth_core::escape;
/// assert_eq!(escape("\x1b[2J root\x07"), r"\u{1b}[2J root\u{7}");
/// assert_eq!(escape("Пешо\u{202e}gpj.exe"), r"Пешо\u{202e}gpj.exe");
/// assert!(matches!(escape("admin"), std::borrow::Cow::Borrowed("admin")));
/// ```
pub fn escape(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(needs_escape) else {
        return Cow::Borrowed(s);
    };
    let (clean, rest) = s.split_at(first);
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(clean);
    for c in rest.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_example() {
        let hostile = "\x1b[2J\x1b[1;1H  Logged in as root\x1b]0;pwned\x07";
        assert_eq!(escape(hostile), r"\u{1b}[2J\u{1b}[1;1H  Logged in as root\u{1b}]0;pwned\u{7}");
    }

    #[test]
    fn every_class_is_escaped_and_letters_are_kept() {
        for (c, shown) in [
            ('\0', r"\u{0}"),
            ('\n', r"\u{a}"),
            ('\t', r"\u{9}"),
            ('\u{7f}', r"\u{7f}"),
            ('\u{85}', r"\u{85}"),
            ('\u{9b}', r"\u{9b}"),
            ('\u{61c}', r"\u{61c}"),
            ('\u{200e}', r"\u{200e}"),
            ('\u{200f}', r"\u{200f}"),
            ('\u{202a}', r"\u{202a}"),
            ('\u{202e}', r"\u{202e}"),
            ('\u{2066}', r"\u{2066}"),
            ('\u{2069}', r"\u{2069}"),
            ('\u{2028}', r"\u{2028}"),
        ] {
            assert!(needs_escape(c), "{c:?}");
            assert_eq!(escape(&format!("a{c}b")), format!("a{shown}b"));
        }
        for kept in ["admin", "Иван Петров", "山田", "café ☕", "a\\u{1b}b", "\u{200d}", "\u{a0}"]
        {
            assert!(matches!(escape(kept), Cow::Borrowed(k) if k == kept), "{kept:?}");
        }
    }
}
