//! The commands.

use crate::args::{Cli, Command};
use crate::errors::failure;
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
            clap_complete::generate(shell, &mut cmd, "erpnet-oauth", &mut std::io::stdout());
            Ok(())
        }
        Command::Mock { port, config } => crate::demo::mock(port, config.as_deref()),
        Command::Demo => crate::demo::run(cli.global.verbose),
        Command::Login { no_browser, wait, no_save_secret } => {
            let settings = Settings::resolve(&cli.global, env)?;
            crate::login::run(&settings, no_browser, Duration::from_secs(wait), no_save_secret)
        }
        Command::Token => {
            let session = open_session(&Settings::resolve(&cli.global, env)?)?;
            let token = session.access_token().map_err(failure)?;
            // A usable token is printable ASCII, unchanged by `escape`; a hostile one cannot drive the
            // terminal (issue 13).
            print_line(&escape(token.secret()))
        }
        Command::Refresh => {
            let session = open_session(&Settings::resolve(&cli.global, env)?)?;
            session.refresh().map_err(failure)?;
            eprintln!("Refreshed the access token{}", expiry_note(session.tokens().as_ref()));
            Ok(())
        }
        Command::Call { method, url, data, headers } => {
            let session = open_session(&Settings::resolve(&cli.global, env)?)?;
            call(&session, &method, &url, data, &headers)
        }
        Command::Status { json, all } => crate::status::run(&cli.global, env, json, all),
        Command::Logout { forget } => crate::logout::run(&Settings::resolve(&cli.global, env)?, forget),
    }
}

pub(crate) fn print_line(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::usage(format!("cannot write to stdout: {e}")))
}

fn http_options(settings: &Settings) -> HttpOptions {
    HttpOptions::default().timeout(settings.timeout).connect_timeout(settings.timeout)
}

/// The session of the profile, on its file store. Fails with "login required" when nothing is stored.
pub fn open_session(settings: &Settings) -> Result<Session, Failure> {
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

fn call(
    session: &Session,
    method: &str,
    url: &str,
    data: Option<String>,
    headers: &[String],
) -> Result<(), Failure> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::usage(format!("`{method}` is not an HTTP method")))?;
    let url = session.client().resolve(url).map_err(|e| Failure::usage(e.to_string()))?;
    // The access token goes to the instance only, never to a URL elsewhere (which would leak it).
    let instance = session.client().instance().origin();
    if url.origin() != instance {
        return Err(Failure::usage(format!(
            "{url} is not on the instance {}: `call` sends the access token to the instance only",
            instance.ascii_serialization()
        )));
    }
    let mut builder = http::Request::builder().method(method).uri(url.as_str());
    let mut has_accept = false;
    let mut has_content_type = false;
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| Failure::usage(format!("the header `{h}` is not of the form 'Name: value'")))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Failure::usage(format!("`{}` is not a header name", name.trim())))?;
        if name == http::header::AUTHORIZATION {
            return Err(Failure::usage("the Authorization header is set by erpnet-oauth itself"));
        }
        has_accept |= name == http::header::ACCEPT;
        has_content_type |= name == http::header::CONTENT_TYPE;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| Failure::usage(format!("the value of the header `{name}` is not allowed")))?;
        builder = builder.header(name, value);
    }
    if !has_accept {
        builder = builder.header(http::header::ACCEPT, "application/json");
    }
    if data.is_some() && !has_content_type {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(data.map(String::into_bytes).unwrap_or_default())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let response = session.send(request).map_err(failure)?;
    let mut out = std::io::stdout().lock();
    out.write_all(response.body())
        .and_then(|()| if response.body().ends_with(b"\n") { Ok(()) } else { out.write_all(b"\n") })
        .and_then(|()| out.flush())
        .map_err(|e| Failure::usage(format!("cannot write to stdout: {e}")))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(Failure::server(format!("the server answered HTTP {}", response.status())))
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

/// Fetches and validates the discovery document, with the raw JSON to save for later commands; `None` when
/// the instance has none (ERP.net's fixed paths are used then). A document whose issuer is not the
/// instance's is an error (catalogue H5).
pub fn discover(
    settings: &Settings,
    http: &erpnet_oauth_ureq::HttpClient,
) -> Result<Option<(ProviderMetadata, serde_json::Value)>, Failure> {
    let base = settings.client(None, false)?;
    let response = http.send_token_request(&base.discovery_request()).map_err(failure)?;
    if response.status() == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let metadata = ProviderMetadata::parse(&response, base.issuer()).map_err(|e| failure(e.into()))?;
    let raw = serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
    Ok(Some((metadata, raw)))
}
