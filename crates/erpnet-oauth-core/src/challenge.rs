//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1, RFC 6750 §3) that survives anything a server sends:
//! scheme case, several challenges in one header or several headers, quoted and unquoted values,
//! token68, and junk (skipped, never a panic).

/// One challenge: a scheme and its parameters (or a token68).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare case-insensitively).
    pub scheme: String,
    /// The parameters, names as sent, values unquoted.
    pub params: Vec<(String, String)>,
    /// A token68 in place of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// A parameter by name, case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A `Bearer` challenge (RFC 6750 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `error`: `invalid_token`, `insufficient_scope`, `invalid_request`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
    /// `scope`: the scope needed.
    pub scope: Option<String>,
    /// `realm`.
    pub realm: Option<String>,
}

/// Parses every challenge of every `WWW-Authenticate` value given.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        Parser { s: v.as_bytes(), i: 0 }.challenges(&mut out);
    }
    out
}

/// The first `Bearer` challenge among the response's `WWW-Authenticate` headers, if any.
pub fn bearer_challenge(headers: &http::HeaderMap) -> Option<BearerChallenge> {
    let values = headers.get_all(http::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
    parse_challenges(values).into_iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer")).map(|c| {
        BearerChallenge {
            error: c.param("error").map(str::to_owned),
            error_description: c.param("error_description").map(str::to_owned),
            scope: c.param("scope").map(str::to_owned),
            realm: c.param("realm").map(str::to_owned),
        }
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn text(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(self.s.get(from..to).unwrap_or_default()).into_owned()
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        self.text(start, self.i)
    }

    /// Whether a parameter (`token BWS "=" BWS value`) starts at the cursor.
    fn at_param(&self) -> bool {
        let mut j = self.i;
        let start = j;
        while self.peek_at(j).is_some_and(is_tchar) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while matches!(self.peek_at(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if self.peek_at(j) != Some(b'=') {
            return false;
        }
        j += 1;
        while matches!(self.peek_at(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        matches!(self.peek_at(j), Some(b) if b == b'"' || (is_tchar(b) && b != b'='))
    }

    fn skip_junk(&mut self) {
        while self.peek().is_some_and(|b| b != b',') {
            self.i += 1;
        }
    }

    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn param(&mut self) -> (String, String) {
        let name = self.token();
        self.skip_ws();
        self.i += 1; // '=' (checked by at_param)
        self.skip_ws();
        let value = if self.peek() == Some(b'"') { self.quoted() } else { self.token() };
        (name, value)
    }

    fn challenges(&mut self, out: &mut Vec<Challenge>) {
        loop {
            self.skip_ws_and_commas();
            if self.peek().is_none() {
                return;
            }
            let scheme = self.token();
            if scheme.is_empty() {
                self.i += 1;
                self.skip_junk();
                continue;
            }
            let mut challenge = Challenge { scheme, params: Vec::new(), token68: None };
            self.skip_ws();
            if !self.at_param() && self.peek().is_some_and(is_token68) {
                let start = self.i;
                while self.peek().is_some_and(is_token68) {
                    self.i += 1;
                }
                while self.peek() == Some(b'=') {
                    self.i += 1;
                }
                challenge.token68 = Some(self.text(start, self.i));
                self.skip_ws();
                if self.peek().is_some_and(|b| b != b',') {
                    self.skip_junk();
                }
            } else {
                loop {
                    self.skip_ws();
                    if self.at_param() {
                        let p = self.param();
                        challenge.params.push(p);
                        self.skip_ws();
                        if self.peek().is_some_and(|b| b != b',') {
                            self.skip_junk();
                        }
                    }
                    // At ',' or the end: another parameter of this challenge, or the next challenge.
                    let save = self.i;
                    self.skip_ws_and_commas();
                    if self.peek().is_none() {
                        break;
                    }
                    if !self.at_param() {
                        self.i = save;
                        break;
                    }
                }
            }
            out.push(challenge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6750_example() {
        let c = parse_challenges([
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        assert_eq!(c[0].param("ERROR_description"), Some("The access token expired"));
    }

    #[test]
    fn several_challenges_and_forms() {
        let c = parse_challenges([
            r#"Basic realm="a\"b", bEaReR error=invalid_token,scope="x y", Negotiate abc+/==, Bearer"#,
        ]);
        let schemes: Vec<_> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "bEaReR", "Negotiate", "Bearer"]);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert_eq!(c[1].param("scope"), Some("x y"));
        assert_eq!(c[2].token68.as_deref(), Some("abc+/=="));
        assert!(c[3].params.is_empty());
    }

    #[test]
    fn junk_never_panics() {
        for s in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer =",
            "Bearer error=\"unterminated",
            "Bearer a=b=c, ,=x",
            "\u{ff}\u{fe} Bearer",
        ] {
            let _ = parse_challenges([s]);
        }
        let c = parse_challenges(["Bearer error=\"unterminated"]);
        assert_eq!(c[0].param("error"), Some("unterminated"));
    }
}
