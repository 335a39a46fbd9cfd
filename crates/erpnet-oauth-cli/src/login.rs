//! `erpnet-oauth login`: the authorization code flow with PKCE, state and nonce, through the system
//! browser and a listener on the loopback redirect URI.

use crate::commands::discover;
use crate::errors::failure;
use crate::exit::Failure;
use crate::saved_secret::SecretPlace;
use crate::settings::{self, SavedProfile, SecretSource, Settings};
use crate::store::Store;
use erpnet_oauth_core::{AuthorizationRequest, is_loopback};
use erpnet_oauth_ureq::{
    HttpClient, HttpOptions, LoginOutcome, RedirectListener, Session, StoreError, TokenStore as _,
};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// Logs in. The client secret in effect is saved with the profile unless `no_save_secret` (which deletes
/// one saved before).
pub fn run(
    settings: &Settings,
    no_browser: bool,
    wait: Duration,
    no_save_secret: bool,
) -> Result<(), Failure> {
    settings.instance()?;
    settings.client_id()?;
    let redirect = settings.redirect_uri.as_deref().ok_or_else(|| {
        Failure::usage(
            "no redirect URI: pass --redirect-uri URI or set ERPNET_REDIRECT_URI (a loopback address \
             registered in the trusted application's ImpersonateLoginUrl, e.g. http://127.0.0.1:8400/signin-callback)",
        )
    })?;
    check_redirect(redirect)?;
    settings.store.prepare_login()?;
    // A token file that holds no tokens (or tokens this store key cannot decrypt) is what a login is for:
    // it is replaced once the login succeeds (the login's store reads it as empty), after saying so.
    match settings.unbound_token_store().load() {
        Err(StoreError::Corrupt { reason, .. }) => eprintln!(
            "erpnet-oauth: warning: the token {} {} is corrupt ({}); this login replaces it",
            if matches!(settings.store, Store::Redis(_)) { "key" } else { "file" },
            settings.token_path().display(),
            erpnet_oauth_core::escape(&reason)
        ),
        Err(StoreError::Decrypt { reason, .. }) => eprintln!(
            "erpnet-oauth: warning: the tokens at {} in {} could not be decrypted ({}); this login replaces them",
            settings.token_path().display(),
            settings.store.describe(),
            erpnet_oauth_core::escape(&reason)
        ),
        _ => {}
    }

    // Listen before the browser is sent anywhere.
    let listener = RedirectListener::bind(redirect).map_err(failure)?.timeout(wait);
    let cancel = listener.cancel_handle();
    // Ctrl-C: while waiting for the browser it stops the wait cleanly (no tokens stored, exit 3); while
    // talking to the server it ends the process at once, also with nothing stored (exit 3); once the
    // tokens are being stored it is ignored, so the store is never left half-done.
    let phase = Arc::new(AtomicU8::new(BUSY));
    let handler_phase = phase.clone();
    let _ = ctrlc::set_handler(move || match handler_phase.load(Ordering::SeqCst) {
        WAITING => cancel.cancel(),
        BUSY => {
            eprintln!("erpnet-oauth: login cancelled; no tokens were stored");
            std::process::exit(crate::exit::Code::LoginRequired as i32);
        }
        _ => {}
    });

    let options = HttpOptions::default().timeout(settings.timeout).connect_timeout(settings.timeout);
    let http = HttpClient::new(options.clone());
    let discovered = discover(settings, &http)?;
    let client = settings.client(discovered.as_ref().map(|(m, _)| m), true)?;
    let session = Session::builder(client.clone())
        .store(settings.login_store(&client))
        .http_options(options)
        .build()
        .map_err(failure)?;
    let pending = session.start_login(AuthorizationRequest::new().scope(&settings.scope)).map_err(failure)?;

    if no_browser {
        eprintln!("{}", pending.authorize_url());
    } else {
        eprintln!("Opening the ERP.net login page in your browser. If it does not open, visit:");
        eprintln!("{}", pending.authorize_url());
        if let Err(e) = open_browser(pending.authorize_url()) {
            eprintln!("(could not start a browser: {e})");
        }
    }

    let spinner = Spinner::start("Waiting for the login in the browser (Ctrl-C to cancel)");
    phase.store(WAITING, Ordering::SeqCst);
    let received = listener.wait(&pending);
    phase.store(BUSY, Ordering::SeqCst);
    spinner.stop();
    let callback = received.map_err(failure)?;
    // finish_login stores the tokens last, after every check and request, and the file store replaces its
    // file atomically: a Ctrl-C in this phase leaves either no tokens or the whole new set.
    let login = match session.finish_login(pending, callback.as_callback()) {
        Ok(login) => login,
        Err(e) => {
            let failed = failure(e);
            // The browser's page says what the terminal says (escaped there), not "logged in".
            listener.reply(LoginOutcome::Failed { reason: &failed.message });
            return Err(failed);
        }
    };
    phase.store(STORING, Ordering::SeqCst);

    // The secret first, then the profile that says where it is.
    let secret = settings.secret()?;
    let previous = settings.saved.as_ref().and_then(|s| s.secret);
    let (place, secret_error) = save_secret(settings, secret, previous, no_save_secret);
    let saved = SavedProfile {
        instance: settings.instance()?.to_owned(),
        client_id: settings.client_id()?.to_owned(),
        redirect_uri: Some(redirect.to_owned()),
        no_discovery: settings.no_discovery,
        scope: Some(settings.scope.clone()),
        discovery: discovered.map(|(_, raw)| raw),
        confidential: secret.is_some(),
        secret: place,
    };
    settings::write_profile(settings, &saved)?;
    if let Some(e) = secret_error {
        listener.reply(LoginOutcome::LoggedIn { user: login.claims.as_ref().map(|c| c.sub.as_str()) });
        // The code of what failed: 2 for a file or keyring, 5 for a Redis store that stopped answering.
        return Err(Failure {
            code: e.code,
            message: format!(
                "the login succeeded and its tokens are stored, but {}: pass --client-secret-file PATH or set \
                 ERPNET_CLIENT_SECRET on later commands",
                e.message
            ),
        });
    }
    match (place, secret) {
        (Some(SecretPlace::Keyring), Some((_, source)))
            if source != SecretSource::Saved(SecretPlace::Keyring) =>
        {
            eprintln!("Saved the client secret in the OS keyring (`erpnet-oauth logout --forget` deletes it)")
        }
        (Some(SecretPlace::File), Some((_, source))) if source != SecretSource::Saved(SecretPlace::File) => {
            eprintln!(
                "Saved the client secret in {} (mode 0600; `erpnet-oauth logout --forget` deletes it)",
                settings.saved_secret.file().display()
            )
        }
        (Some(SecretPlace::Redis), Some((_, source)))
            if source != SecretSource::Saved(SecretPlace::Redis) =>
        {
            eprintln!(
                "Saved the client secret in {}, encrypted with the store key (`erpnet-oauth logout --forget` \
                 deletes it)",
                settings.store.describe()
            )
        }
        (None, Some(_)) if !no_save_secret => eprintln!(
            "erpnet-oauth: warning: the client secret was not saved: a Redis store keeps it only encrypted, with \
             --store-key-file PATH (ERPNET_OAUTH_STORE_KEY_FILE); pass --client-secret-file PATH or set \
             ERPNET_CLIENT_SECRET on later commands"
        ),
        (None, Some(_)) => eprintln!(
            "The client secret was not saved (--no-save-secret): pass --client-secret-file or set \
             ERPNET_CLIENT_SECRET on later commands"
        ),
        _ => {}
    }
    if login.tokens.refresh_token.is_none() {
        // Without a refresh token the login lasts as long as this access token: say so now, not in an hour.
        let why = if settings.scope.split_whitespace().any(|s| s == "offline_access") {
            "offline_access was asked for but not granted"
        } else {
            "add offline_access to --scope to get one"
        };
        eprintln!(
            "erpnet-oauth: warning: the server issued no refresh token ({why}): when the access token expires, run \
             `erpnet-oauth login` again"
        );
    }
    let subject = login.claims.as_ref().map(|c| c.sub.clone()).unwrap_or_else(|| "(no ID token)".to_owned());
    // Only now, verified and stored, does the browser hear that the login succeeded.
    listener.reply(LoginOutcome::LoggedIn { user: login.claims.as_ref().map(|c| c.sub.as_str()) });
    // The subject is the server's text: escaped, it cannot drive the terminal (issue 13).
    eprintln!("Logged in as {}", erpnet_oauth_core::escape(&subject));
    Ok(())
}

/// Saves the secret used by the login (or, with `no_save_secret` or no secret, deletes the one saved
/// before, at `previous`). Returns where it is now, and the error that kept it from being saved.
fn save_secret(
    settings: &Settings,
    secret: Option<(&erpnet_oauth_core::ClientSecret, SecretSource)>,
    previous: Option<SecretPlace>,
    no_save_secret: bool,
) -> (Option<SecretPlace>, Option<Failure>) {
    match secret {
        // Already saved there, and read from there for this login.
        Some((_, SecretSource::Saved(place))) if !no_save_secret => (Some(place), None),
        // A Redis store without a key: the secret is not saved anywhere (and one saved before goes).
        Some(_) if !no_save_secret && !settings.saved_secret.can_save() => {
            (None, settings.saved_secret.remove(previous).err())
        }
        Some((secret, _)) if !no_save_secret => match settings.saved_secret.save(secret) {
            Ok(place) => (Some(place), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, settings.saved_secret.remove(previous).err()),
    }
}

const BUSY: u8 = 0;
const WAITING: u8 = 1;
const STORING: u8 = 2;

/// The redirect URI must be plain http on a loopback address, with a real port, and the path `login`
/// listens on.
fn check_redirect(redirect: &str) -> Result<(), Failure> {
    let url = url::Url::parse(redirect)
        .map_err(|e| Failure::usage(format!("the redirect URI `{redirect}` is not a URL ({e})")))?;
    if url.port() == Some(0) {
        return Err(Failure::usage(format!(
            "the redirect URI `{redirect}` has port 0; give the port registered in ImpersonateLoginUrl"
        )));
    }
    if url.scheme() != "http" || !is_loopback(&url) {
        return Err(Failure::usage(format!(
            "the redirect URI `{redirect}` is not a loopback http address; `login` listens on it, so it must \
             be http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH (registered as is in ImpersonateLoginUrl)"
        )));
    }
    Ok(())
}

/// Opens `url` in the user's browser through the OS's own way of opening a link (`ShellExecuteW` on
/// Windows, `open` on macOS, `xdg-open` elsewhere: the `opener` crate), never through a shell, so the URL
/// reaches the browser whole whatever it holds (`&`, quotes...). Only an `https` URL, or plain `http` to a
/// loopback host, is opened: the authorize URL may come from a discovery document.
fn open_browser(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let allowed = parsed.scheme() == "https" || (parsed.scheme() == "http" && is_loopback(&parsed));
    if !allowed {
        return Err(format!(
            "not opening a `{}:` URL; only https (or http to this machine) is opened",
            parsed.scheme()
        ));
    }
    opener::open_browser(url).map_err(|e| e.to_string())
}

/// A progress line on stderr while waiting, only when stderr is a terminal.
struct Spinner {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start(message: &'static str) -> Spinner {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let frames = ['|', '/', '-', '\\'];
                let mut i = 0usize;
                while !done.load(Ordering::Relaxed) {
                    eprint!("\r{} {message}", frames.get(i % frames.len()).copied().unwrap_or('|'));
                    i += 1;
                    std::thread::sleep(Duration::from_millis(120));
                }
                eprint!("\r{}\r", " ".repeat(message.len() + 2));
            })
        });
        Spinner { done, thread }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
