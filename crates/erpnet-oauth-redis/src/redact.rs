//! Redis URLs in messages: the password never shown.
//!
//! A Redis URL carries its password in one of two places, as the `redis` crate reads them: the user-info
//! part (`redis://user:PASSWORD@host/`, `rediss://`), percent-decoded; or, for a Unix socket
//! (`redis+unix:///path?db=0&user=u&pass=PASSWORD`, `unix:///path?pass=...`), the `pass` query parameter,
//! form-decoded. Both are redacted, in every scheme (a `pass` parameter is hidden even where the `redis`
//! crate ignores it), and every form of them (as written, and decoded) is scrubbed from texts.

use std::fmt;

/// What replaces a password.
const REDACTED: &str = "[redacted]";

/// A Redis URL as messages may show it: the password (user-info, or a `pass` query parameter) replaced
/// by `[redacted]`, and what it takes to scrub that password from any other text (a `redis` error's, for
/// one). `Display` and [`Self::as_str`] show the redacted URL; `Debug` shows nothing more. Cloning
/// copies the password.
///
/// ```
/// use erpnet_oauth_redis::RedactedUrl;
///
/// let url = RedactedUrl::new("redis+unix:///run/redis.sock?db=1&pass=s%40cret");
/// assert_eq!(url.as_str(), "redis+unix:///run/redis.sock?db=1&pass=[redacted]");
/// assert_eq!(url.scrub("AUTH s@cret failed"), "AUTH [redacted] failed");
/// ```
#[derive(Clone)]
pub struct RedactedUrl {
    shown: String,
    /// Each form of the password (as written, and decoded), longest first; none empty.
    secrets: Vec<String>,
}

impl RedactedUrl {
    /// The URL `url` redacted (a URL that cannot be parsed is shown as its scheme alone, or not at all).
    pub fn new(url: &str) -> RedactedUrl {
        let Ok(mut parsed) = url::Url::parse(url) else {
            let shown = match url.split_once("://") {
                Some((scheme, _)) if scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') => {
                    format!("{scheme}://[unreadable]")
                }
                _ => "[unreadable URL]".to_owned(),
            };
            // Nothing of it is shown, so nothing needs scrubbing from the URL; a text could still hold
            // the whole URL.
            return RedactedUrl { shown, secrets: vec![url.to_owned()] };
        };
        let mut secrets = Vec::new();
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
            secrets.push(percent_decode(password));
            let _ = parsed.set_password(Some(REDACTED));
        }
        if let Some(query) = parsed.query() {
            let mut redacted = Vec::new();
            let mut changed = false;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some((name, value)) if form_decode(name) == "pass" => {
                        secrets.push(value.to_owned());
                        secrets.push(form_decode(value));
                        redacted.push(format!("{name}={REDACTED}"));
                        changed = true;
                    }
                    _ => redacted.push(pair.to_owned()),
                }
            }
            if changed {
                parsed.set_query(Some(&redacted.join("&")));
            }
        }
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let shown = parsed.to_string().replace("%5Bredacted%5D", REDACTED);
        RedactedUrl { shown, secrets }
    }

    /// The URL, its password redacted.
    pub fn as_str(&self) -> &str {
        &self.shown
    }

    /// Whether the URL holds a password.
    pub fn has_password(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// `text` with every form of the URL's password (as written in the URL, and decoded) replaced by
    /// `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedactedUrl").field(&self.shown).finish()
    }
}

/// `url` with its password replaced by `[redacted]`: the user-info password, and a `pass` query
/// parameter (where the `redis` crate reads a Unix socket URL's password); unreadable URLs are reduced to
/// their scheme. See [`RedactedUrl`] to scrub the password from other texts too.
pub fn redact_url(url: &str) -> String {
    RedactedUrl::new(url).shown
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query component decoded as `url::Url::query_pairs` (what the `redis` crate uses) decodes it.
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_passwords_are_redacted() {
        assert_eq!(redact_url("redis://:s3cret@host:6379/0"), "redis://:[redacted]@host:6379/0");
        assert_eq!(redact_url("redis://user:s3cret@host/"), "redis://user:[redacted]@host/");
        assert_eq!(redact_url("rediss://user:s3cret@host:6380/1"), "rediss://user:[redacted]@host:6380/1");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("redis://user@host/"), "redis://user@host/", "no password");
        assert_eq!(redact_url("redis://:pa ss@ho st"), "redis://[unreadable]");
        assert_eq!(redact_url("no url at all s3cret"), "[unreadable URL]");
        assert!(!RedactedUrl::new("redis://host/").has_password());
    }

    #[test]
    fn query_passwords_are_redacted() {
        // What redis 1.8's `url_to_unix_connection_info` reads: `db`, `user`, `pass` (and `protocol`).
        assert_eq!(
            redact_url("redis+unix:///run/r.sock?db=1&pass=s3cret"),
            "redis+unix:///run/r.sock?db=1&pass=[redacted]"
        );
        assert_eq!(
            redact_url("unix:///run/r.sock?pass=s3cret&user=u"),
            "unix:///run/r.sock?pass=[redacted]&user=u"
        );
        assert_eq!(
            redact_url("redis+unix:///run/r.sock?pass=a&pass=b&db=2"),
            "redis+unix:///run/r.sock?pass=[redacted]&pass=[redacted]&db=2",
            "every occurrence"
        );
        assert_eq!(
            redact_url("redis+unix:///run/r.sock?%70ass=s3cret"),
            "redis+unix:///run/r.sock?%70ass=[redacted]"
        );
        assert_eq!(redact_url("redis+unix:///run/r.sock?db=1"), "redis+unix:///run/r.sock?db=1");
        assert_eq!(redact_url("redis+unix:///run/r.sock?password=x"), "redis+unix:///run/r.sock?password=x");
        // Hidden in a TCP URL too, where the `redis` crate ignores it.
        assert_eq!(redact_url("redis://h:1/0?pass=s3cret"), "redis://h:1/0?pass=[redacted]");
        let both = RedactedUrl::new("redis://:one@h/?pass=two");
        assert_eq!(both.as_str(), "redis://:[redacted]@h/?pass=[redacted]");
        assert_eq!(both.scrub("one two"), "[redacted] [redacted]");
    }

    #[test]
    fn every_form_of_the_password_is_scrubbed() {
        let url = RedactedUrl::new("redis://:p%40ss@h/");
        assert_eq!(url.scrub("AUTH p@ss failed p%40ss"), "AUTH [redacted] failed [redacted]");
        let url = RedactedUrl::new("redis+unix:///s?pass=s%40c+ret%2B");
        assert_eq!(url.scrub("s@c ret+ / s%40c+ret%2B"), "[redacted] / [redacted]");
        assert_eq!(url.to_string(), "redis+unix:///s?pass=[redacted]");
        assert_eq!(format!("{url:?}"), "RedactedUrl(\"redis+unix:///s?pass=[redacted]\")");
        assert!(url.has_password());
        assert_eq!(RedactedUrl::new("redis://h/").scrub("nothing to hide"), "nothing to hide");
        assert_eq!(RedactedUrl::new("redis://:@h/?pass=").scrub("x"), "x", "empty passwords");
        let unreadable = RedactedUrl::new("redis://:pa ss@ho st");
        assert_eq!(unreadable.scrub("bad URL redis://:pa ss@ho st"), "bad URL [redacted]");
        assert_eq!(percent_decode("a%40b%zz"), "a@b%zz");
    }
}
