//! The commands.

use crate::args::{Cli, Command};
use crate::errors::{discovery_failure, failure};
use crate::exit::Failure;
use crate::settings::Settings;
use erpnet_oauth_core::{ProviderMetadata, TokenSet, escape};
use erpnet_oauth_ureq::{Error, HttpOptions, Session};
use std::io::{Read as _, Write as _};
use std::time::{Duration, UNIX_EPOCH};

/// Runs the command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let env = |k: &str| std::env::var(k).ok();
    if cli.global.verbose {
        // Each HTTP exchange's method, URI and status (the adapter never logs headers or bodies, where
        // tokens and secrets travel).
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // Colours only on a terminal: a redirected log stays plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_max_level(tracing::Level::DEBUG)
            .with_target(false)
            .without_time()
            .try_init();
    }
    match cli.command {
        Command::HashSecret => hash_secret(),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error, a closed stdout included.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "erpnet-oauth", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&script).and_then(|()| out.flush()).map_err(Failure::stdout)
        }
        Command::Mock { port, config } => {
            crate::demo::mock(port, config.as_deref(), cli.global.redirect_uri.as_deref())
        }
        Command::Demo => crate::demo::run(cli.global.verbose),
        Command::Login { no_browser, wait, no_save_secret } => {
            let settings = Settings::resolve(&cli.global, env)?;
            crate::login::run(&settings, no_browser, Duration::from_secs(wait), no_save_secret)
        }
        Command::Token { json, min_validity } => {
            token(&Settings::resolve(&cli.global, env)?, json, Duration::from_secs(min_validity))
        }
        Command::Refresh => {
            let session = open_session(&Settings::resolve(&cli.global, env)?)?;
            session.refresh().map_err(failure)?;
            eprintln!("Refreshed the access token{}", expiry_note(session.tokens().as_ref()));
            Ok(())
        }
        Command::Call { method, url, data, data_raw, headers, include, paginate } => {
            let settings = Settings::resolve(&cli.global, env)?;
            let request = crate::call::CallRequest::parse(&method, &url, data, data_raw, &headers, paginate)?;
            let session = open_session(&settings)?;
            crate::call::run(&session, request, include)
        }
        Command::Status { json, all } => crate::status::run(&cli.global, env, json, all),
        Command::Logout { forget } => crate::logout::run(&Settings::resolve(&cli.global, env)?, forget),
    }
}

pub(crate) fn print_line(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    // A closed stdout (EPIPE) ends the command quietly with status 0.
    writeln!(out, "{s}").and_then(|()| out.flush()).map_err(Failure::stdout)
}

fn http_options(settings: &Settings) -> HttpOptions {
    HttpOptions::default().timeout(settings.timeout).connect_timeout(settings.timeout)
}

/// The session of the profile, on its file store. Fails with "login required" when nothing is stored.
pub fn open_session(settings: &Settings) -> Result<Session, Failure> {
    open_session_with(settings, DEFAULT_MIN_VALIDITY)
}

/// A token valid for less than this is refreshed before use, unless `token --min-validity` says otherwise.
const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(60);

/// [`open_session`], refreshing a token valid for less than `min_validity` before use (at most half its
/// lifetime: the core's rule, [`erpnet_oauth_core::TokenSet::margin`]).
fn open_session_with(settings: &Settings, min_validity: Duration) -> Result<Session, Failure> {
    // A link counts as there (and is refused when read), even one that leads nowhere.
    if settings.saved.is_none() && !settings.tokens_present()? {
        return Err(Failure::login_required(format!(
            "not logged in (profile `{}`): run `erpnet-oauth login`",
            settings.profile
        )));
    }
    settings.check_saved_matches()?;
    let discovery = settings.saved_discovery();
    let client = settings.client(discovery.as_ref(), false)?;
    // Bound to this client: tokens issued to another instance or client are refused here, before any
    // request, whatever the flags say.
    let session = Session::builder(client.clone())
        .store(settings.token_store(&client))
        .http_options(http_options(settings))
        .skew(min_validity)
        .build()
        .map_err(|e| match &e {
            Error::Store(store) => settings.store_failure(store).unwrap_or_else(|| failure(e)),
            _ => failure(e),
        })?;
    if !session.is_logged_in() {
        return Err(Failure::login_required(format!(
            "not logged in (profile `{}`): run `erpnet-oauth login`",
            settings.profile
        )));
    }
    Ok(session)
}

fn expiry_note(tokens: Option<&TokenSet>) -> String {
    match tokens.and_then(|t| t.expires_at).and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => format!(" (expires at {} Unix time)", d.as_secs()),
        None => String::new(),
    }
}

/// `value` as one line of JSON that no terminal obeys: serde_json escapes the C0 controls; the other
/// characters [`escape`] replaces (DEL, C1, bidi controls, line separators) are written `\uXXXX` too, which
/// JSON reads as the same string (all are in the Basic Multilingual Plane, and outside strings JSON text
/// is ASCII).
pub(crate) fn json_line(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if erpnet_oauth_core::needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn hash_secret() -> Result<(), Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::usage(format!("cannot read the secret from stdin: {e}")))?;
    let secret = input.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&input);
    if secret.is_empty() {
        return Err(Failure::usage(
            "no secret on stdin (try: printf '%s' \"$SECRET\" | erpnet-oauth hash-secret)",
        ));
    }
    print_line(&erpnet_oauth_core::ClientSecret::new(secret).erpnet_hash())
}

/// Fetches and validates the discovery document, with the raw JSON to save for later commands; `None`
/// with `--no-discovery` (ERP.net's fixed paths, no request sent). Any other outcome than a valid document
/// for the instance's issuer (catalogue H5) is an error naming the discovery URL: exit 4 for an answer
/// other than 200 or a document refused by the core's checks, exit 5 when no answer came.
pub fn discover(
    settings: &Settings,
    http: &erpnet_oauth_ureq::HttpClient,
) -> Result<Option<(ProviderMetadata, serde_json::Value)>, Failure> {
    if settings.no_discovery {
        return Ok(None);
    }
    let base = settings.client(None, false)?;
    let request = base.discovery_request();
    let url = request.uri().to_string();
    let response = http.send_token_request(&request).map_err(|e| discovery_failure(&url, e))?;
    let metadata =
        ProviderMetadata::parse(&response, base.issuer()).map_err(|e| discovery_failure(&url, e.into()))?;
    let raw = serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
    Ok(Some((metadata, raw)))
}

/// `token`: a valid access token on stdout (refreshed first when valid for less than `min_validity`), or
/// with `json` one object with its expiry and scopes. A token still short of `min_validity` after that
/// (one whose whole lifetime is shorter than twice `min_validity` is not renewed at every call) gets a
/// warning on stderr.
fn token(settings: &Settings, json: bool, min_validity: Duration) -> Result<(), Failure> {
    let session = open_session_with(settings, min_validity)?;
    let token = session.access_token().map_err(failure)?;
    let tokens = session.tokens();
    let expires_at = tokens.as_ref().and_then(|t| t.expires_at);
    let expires_unix = expires_at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
    let left = expires_at.map(|t| t.duration_since(session.now()).unwrap_or_default());
    if let Some(left) = left.filter(|left| *left < min_validity) {
        let lifetime = tokens
            .as_ref()
            .and_then(|t| Some(t.expires_at?.duration_since(t.issued_at?).unwrap_or_default()))
            .map(|l| format!(" (the server issues them for {} s)", l.as_secs()))
            .unwrap_or_default();
        eprintln!(
            "erpnet-oauth: warning: the access token is valid for {} s, less than --min-validity {} s: a \
             token is renewed only once less than half its lifetime remains{lifetime}",
            left.as_secs(),
            min_validity.as_secs()
        );
    }
    if json {
        let scopes: Vec<&str> = tokens.as_ref().map(|t| t.scopes.iter().collect()).unwrap_or_default();
        let value = serde_json::json!({
            "access_token": token.secret(),
            "expires_at": expires_unix,
            "expires_at_rfc3339": expires_unix.map(crate::time::rfc3339),
            "scopes": scopes,
            "token_type": "Bearer",
        });
        return print_line(&json_line(&value));
    }
    // A usable token is printable ASCII, unchanged by `escape`; a hostile one cannot drive the terminal
    // (issue 13).
    print_line(&escape(token.secret()))
}
