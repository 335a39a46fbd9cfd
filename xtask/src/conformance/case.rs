//! The case file: one TOML document per case in `fixtures/`, data only.
//!
//! See `fixtures/README.md` for the format. The steps are kept as TOML values until they run, because
//! their strings may refer (`${name}`) to values captured by earlier steps; each step is nevertheless
//! decoded once when the case is loaded, so a malformed step fails the case before anything runs.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The seed's `iat` (2022-06-12T18:08:44Z): the default clock of a case.
pub const DEFAULT_NOW: u64 = 1_655_057_724;

/// One conformance case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The case id: the catalogue id first (`C2-expires-in-string`), or `seed-...`. Equal to the file stem.
    pub id: String,
    /// What the case shows, in one sentence.
    pub title: String,
    /// Where the behaviour comes from (catalogue line, RFC section, the seed's step).
    #[serde(default)]
    pub source: String,
    /// The instance and trusted application.
    pub client: ClientSpec,
    /// The clock at the start, in Unix seconds.
    #[serde(default = "default_now")]
    pub now: u64,
    /// Where the random bytes come from.
    #[serde(default)]
    pub random: RandomSpec,
    /// Named values, usable as `${name}` in every step's strings.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Unsigned JWTs built from these claims, usable as `${name}` like vars.
    #[serde(default)]
    pub jwt: BTreeMap<String, toml::Table>,
    /// Tokens already stored when the case starts (a user who logged in earlier).
    pub tokens: Option<StoredTokens>,
    /// The token manager's settings.
    #[serde(default)]
    pub manager: ManagerSpec,
    /// The steps, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<toml::Value>,
    /// The client must refuse the configuration with this error (`Debug`); such a case has no steps.
    pub config_error: Option<String>,
}

fn default_now() -> u64 {
    DEFAULT_NOW
}

/// The `[client]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// `https://demodb.my.erp.net`.
    pub instance: String,
    /// The trusted application's ApplicationUri.
    pub client_id: String,
    /// The plain secret of a confidential application.
    pub client_secret: Option<String>,
    /// `client_secret_post` (default with a secret), `client_secret_basic` or `none`.
    pub auth_method: Option<String>,
    /// The registered redirect URI.
    pub redirect_uri: Option<String>,
    /// An issuer other than `{instance}/id`.
    pub issuer: Option<String>,
    /// Whether discovery advertises `authorization_response_iss_parameter_supported`.
    #[serde(default)]
    pub iss_parameter_supported: bool,
    /// An adapter's HTTP timeout for a whole request, in milliseconds (cases whose server never answers);
    /// the core has no timeouts and ignores it.
    pub timeout_ms: Option<u64>,
}

/// The `[random]` table: a `SeededRandom` seed, or fixed bytes in hex (an error once used up).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    /// The seed of a deterministic stream (default 0).
    pub seed: Option<u64>,
    /// Exactly these bytes, then failure.
    pub hex: Option<String>,
}

/// The `[tokens]` table: tokens stored before the case starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
    /// The ID token, if any.
    pub id_token: Option<String>,
    /// Expiry in Unix seconds.
    pub expires_at: Option<u64>,
    /// Expiry relative to the case's start (or, in a `shared_store` step, to the step's time), in seconds
    /// (may be negative: already expired).
    pub expires_in: Option<i64>,
    /// When the token endpoint issued them, in Unix seconds: with the expiry, the token's lifetime, which
    /// bounds the refresh margin (catalogue E9). Absent: unknown (the margin is the skew).
    pub issued_at: Option<u64>,
    /// Granted scopes.
    pub scopes: Option<String>,
}

/// The `[manager]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSpec {
    /// The refresh skew in seconds (default 60).
    pub skew: Option<u64>,
    /// `refresh_token` (default) or `client_credentials`.
    pub renewal: Option<String>,
    /// The scopes asked for by `client_credentials`.
    pub scopes: Option<String>,
    /// The lifetime given to tokens whose token response has no `expires_in`, in seconds (default 300,
    /// catalogue E12).
    pub fallback_lifetime: Option<u64>,
}

/// One step, decoded from its table once its `${name}` references are resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Build an authorization request (front channel: no wire traffic).
    Authorize {
        /// Which login (several may be in flight).
        #[serde(default = "main")]
        login: String,
        /// `code` (default) or `code id_token`.
        response_type: Option<String>,
        /// Space-separated scopes (default: the seed's).
        scope: Option<String>,
        /// An explicit state (otherwise generated).
        state: Option<String>,
        /// An explicit nonce (otherwise generated).
        nonce: Option<String>,
        /// Send no nonce.
        #[serde(default)]
        without_nonce: bool,
        /// PKCE on (default) or off.
        #[serde(default = "yes")]
        pkce: bool,
        /// `prompt`.
        prompt: Option<String>,
        /// `query`, `form_post` or `fragment`.
        response_mode: Option<String>,
        /// Extra parameters, `[name, value]` pairs in order.
        #[serde(default)]
        extra: Vec<(String, String)>,
        /// The request the browser is sent with (method, path, decoded query, headers).
        request: Option<String>,
        /// The exact URL, byte for byte.
        url: Option<String>,
        /// The expected build error (Debug), instead of a request.
        error: Option<String>,
    },
    /// The browser comes back to the redirect URI.
    Callback {
        /// Which login.
        #[serde(default = "main")]
        login: String,
        /// The browser's request to the redirect URI: a GET with a query, or a form_post POST.
        request: String,
        /// The expected rejection (Debug); absent means the callback is accepted.
        error: Option<String>,
    },
    /// A loopback listener waits for the login's callback while these requests come (catalogue B9).
    Listen {
        /// Which login's callback it waits for.
        #[serde(default = "main")]
        login: String,
        /// The requests, in order, each with the status it must get.
        requests: Vec<ListenRequest>,
        /// The callback the last request brought, which ended the wait; absent: no request ended it.
        callback: Option<ListenedCallback>,
    },
    /// Exchange the login's code at the token endpoint.
    Exchange {
        /// Which login.
        #[serde(default = "main")]
        login: String,
        /// The exchanges on the wire, in order.
        #[serde(default)]
        wire: Vec<Wire>,
        /// The expected error (Debug); absent means success.
        error: Option<String>,
        /// What the store was asked to do (`save` once a login succeeded); absent: not checked.
        store: Option<Vec<String>>,
        /// The tokens after the step.
        tokens: Option<TokensExpect>,
    },
    /// One or several concurrent Domain API calls, driven to their end (refreshes and retries included).
    ApiCall {
        /// `METHOD path-and-query`, resolved against the instance.
        target: String,
        /// How many callers make this call at once (default 1).
        #[serde(default = "one")]
        count: usize,
        /// The exchanges on the wire, in order.
        #[serde(default)]
        wire: Vec<Wire>,
        /// The expected error of every call (Debug); absent means success.
        error: Option<String>,
        /// Whether that error is retryable.
        retryable: Option<bool>,
        /// Whether that error means "log in again".
        login_required: Option<bool>,
        /// What the store was asked to do: `save`, `clear`.
        store: Option<Vec<String>>,
        /// The tokens after the step.
        tokens: Option<TokensExpect>,
    },
    /// The clock moves on.
    Tick {
        /// By this many seconds.
        seconds: u64,
    },
    /// The timer fires: the manager's `poll_timeout` is checked, then `handle_timeout` runs.
    Timeout {
        /// The expected wake-up time (Unix seconds), or `none`.
        due: Option<toml::Value>,
        /// The exchanges on the wire, in order.
        #[serde(default)]
        wire: Vec<Wire>,
        /// The expected error of the renewal the timer ran (Debug); absent means success (or nothing due).
        error: Option<String>,
        /// What the store was asked to do.
        store: Option<Vec<String>>,
        /// The tokens after the step.
        tokens: Option<TokensExpect>,
    },
    /// Another process sharing the token store writes these tokens to it (or deletes them, `clear`),
    /// without telling the client: it renewed them, or logged out (catalogue E7, E14, G4).
    SharedStore {
        /// The tokens written (`expires_in` relative to the step's time).
        tokens: Option<StoredTokens>,
        /// Deletes the stored tokens instead.
        #[serde(default)]
        clear: bool,
    },
    /// Checks on captured values, computed by the harness itself.
    Assert {
        /// All different.
        #[serde(default)]
        distinct: Vec<String>,
        /// All equal.
        #[serde(default)]
        equal: Vec<String>,
        /// `{ verifier, challenge }`: RFC 7636 form, and challenge = BASE64URL(SHA256(verifier)).
        pkce_s256: Option<PkcePair>,
    },
    /// The OpenID Connect steps (`sign`, `jwk`, `discovery`, `verify_id_token`, `verify_front_channel`,
    /// `revoke`, `end_session`): see `oidc.rs`.
    #[serde(untagged)]
    Oidc(super::oidc::OidcStep),
}

fn main() -> String {
    "main".to_owned()
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

/// One request a listener receives, and the status it must answer with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenRequest {
    /// The raw request: request line, headers, a blank line and the body (see `raw_request`).
    pub request: String,
    /// The status of the answer.
    pub status: u16,
}

/// The callback a listen step's wait returned: a query string or a form body, exactly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenedCallback {
    /// A GET's query string.
    pub query: Option<String>,
    /// A `form_post` body.
    pub form_post: Option<String>,
}

/// A listen step's request as sent: lines end with CRLF, the head with a blank line; the body (after the
/// first blank line, its one trailing newline removed) is sent as written, with a `Content-Length` when
/// it has none.
pub fn raw_request(text: &str) -> Vec<u8> {
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head, body.strip_suffix('\n').unwrap_or(body)),
        None => (text.strip_suffix('\n').unwrap_or(text), ""),
    };
    let mut out = String::new();
    for line in head.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    let has_length = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
    });
    if !body.is_empty() && !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// A verifier and its challenge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkcePair {
    /// The `code_verifier`.
    pub verifier: String,
    /// The `code_challenge`.
    pub challenge: String,
}

/// One exchange on the wire: what the client must send, and what the server answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wire {
    /// The request the client must send.
    pub request: String,
    /// The server's answer.
    pub response: Option<String>,
    /// No answer: the connection failed with this reason (`timeout`, `connection reset`...).
    pub transport_error: Option<String>,
    /// The response body is padded with spaces to this many bytes (a huge answer, catalogue H3).
    pub body_size: Option<usize>,
}

/// Expected tokens after a step. Strings `none` mean absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensExpect {
    /// `false`: no tokens are held.
    #[serde(default = "yes")]
    pub present: bool,
    /// The access token.
    pub access_token: Option<String>,
    /// The refresh token, or `none`.
    pub refresh_token: Option<String>,
    /// The ID token, or `none`.
    pub id_token: Option<String>,
    /// Unix seconds, or `none` (unknown expiry).
    pub expires_at: Option<toml::Value>,
    /// The granted scopes, compared as a set.
    pub scopes: Option<String>,
}

/// Reads a case file.
pub fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let case: Case = toml::from_str(&text).map_err(|e| one_line(&format!("not a valid case: {e}")))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if case.id != stem {
        return Err(format!("the case id `{}` is not the file name `{stem}`", case.id));
    }
    for (i, step) in case.steps.iter().enumerate() {
        Step::deserialize(step.clone()).map_err(|e| one_line(&format!("step {}: {e}", i + 1)))?;
    }
    match (case.steps.is_empty(), &case.config_error) {
        (true, None) => return Err("the case has no steps".to_owned()),
        (false, Some(_)) => return Err("a case with a config_error has no steps".to_owned()),
        _ => {}
    }
    Ok(case)
}

/// Resolves the `${name}` references in every string of `value`.
pub fn substitute(value: &toml::Value, vars: &BTreeMap<String, String>) -> Result<toml::Value, String> {
    Ok(match value {
        toml::Value::String(s) => toml::Value::String(substitute_str(s, vars)?),
        toml::Value::Array(a) => {
            toml::Value::Array(a.iter().map(|v| substitute(v, vars)).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => toml::Value::Table(
            t.iter().map(|(k, v)| Ok((k.clone(), substitute(v, vars)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Resolves `${name}` in one string; an unknown name is an error (never left as text).
pub fn substitute_str(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated `${{` in `{}`", excerpt(s)))?;
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| format!("unknown value `${{{name}}}`"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The first line of a message, for error reports.
pub fn one_line(s: &str) -> String {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ")
}

fn excerpt(s: &str) -> String {
    s.chars().take(60).collect()
}
