//! `cargo run -p erpnet-oauth-web-example`: the web example, against the embedded mock ERP.net by default,
//! or against a real instance with `--instance`, `--client-id`, `--redirect-uri`, and the secret in
//! `ERPNET_CLIENT_SECRET` or a file (`--client-secret-file`): never on the command line, which other users
//! of the machine can read.
//!
//! With `REDIS_URL` set, the sessions, pending logins and tokens are kept in Redis, so that several
//! instances serve the same users; `TOKEN_ENCRYPTION_KEY_FILE` (or `--token-encryption-key-file`) then
//! encrypts the tokens there. The URL is read from the environment only (it may hold a password).

use clap::{CommandFactory, Parser};
use erpnet_oauth_mock::{
    ClockMode, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PASSWORD, DEMO_USER, MockConfig, MockErpNet,
};
use erpnet_oauth_web_example::{AppConfig, EncryptionKey, Options, RedisBackend, SessionBackend, WebApp};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The environment variable holding the client secret (the same as the `erpnet-oauth` CLI's).
const SECRET_ENV: &str = "ERPNET_CLIENT_SECRET";

/// The environment variable naming the Redis that keeps the sessions and tokens (several instances).
const REDIS_ENV: &str = "REDIS_URL";

/// An axum web application that signs users in through ERP.net and lists their customers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The ERP.net instance URL (e.g. https://demodb.my.erp.net). Without it, an embedded mock ERP.net is
    /// started on a loopback port and used.
    #[arg(long, env = "ERPNET_INSTANCE")]
    instance: Option<String>,
    /// The trusted application's ApplicationUri (client id). Default with the mock: my.trusted.app/first.
    #[arg(long, env = "ERPNET_CLIENT_ID")]
    client_id: Option<String>,
    /// A file holding the application secret (else the environment variable ERPNET_CLIENT_SECRET; neither:
    /// a public client). Default with the mock: the demo secret. There is deliberately no flag for the
    /// secret itself: a command line is visible to every user of the machine.
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
    /// Refused: the secret goes in ERPNET_CLIENT_SECRET or --client-secret-file.
    #[arg(long = "client-secret", hide = true, num_args = 0..=1, allow_hyphen_values = true)]
    refused_client_secret: Option<Option<String>>,
    /// The redirect URI registered as the application's ImpersonateLoginUrl. Default:
    /// http://127.0.0.1:PORT/signin-callback on the port listened on.
    #[arg(long, env = "ERPNET_REDIRECT_URI")]
    redirect_uri: Option<String>,
    /// The address to listen on (port 0: chosen by the OS).
    #[arg(long, env = "ERPNET_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// With REDIS_URL: a file holding the key that encrypts the tokens in Redis (AES-256-GCM): 64 hex
    /// digits (e.g. from `openssl rand -hex 32`) or 32 raw bytes. Every instance needs the same key.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEY_FILE", value_name = "PATH")]
    token_encryption_key_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    if args.refused_client_secret.is_some() {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--client-secret is not accepted: a command line is visible to other users of this \
                     machine. Put the secret in the environment variable {SECRET_ENV} or in a file given \
                     with --client-secret-file PATH"
                ),
            )
            .exit();
    }
    let from_env = std::env::var_os(SECRET_ENV);
    let client_secret = match client_secret(args.client_secret_file.as_deref(), from_env) {
        Ok(secret) => secret,
        Err(message) => Args::command().error(clap::error::ErrorKind::ValueValidation, message).exit(),
    };
    let backend = match backend(std::env::var_os(REDIS_ENV), args.token_encryption_key_file.as_deref()) {
        Ok(backend) => backend,
        Err(message) => Args::command().error(clap::error::ErrorKind::ValueValidation, message).exit(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let redirect_uri = args.redirect_uri.clone().unwrap_or_else(|| format!("http://{addr}/signin-callback"));

    // Kept alive until the server stops.
    let mut mock: Option<MockErpNet> = None;
    let config = match &args.instance {
        Some(instance) => AppConfig {
            instance: instance.clone(),
            client_id: args
                .client_id
                .clone()
                .ok_or("--client-id (ERPNET_CLIENT_ID) is required with --instance")?,
            client_secret,
            redirect_uri,
        },
        None => {
            // A manual clock starting now: tokens expire only when the mock's clock is advanced
            // (POST /_mock/clock/advance?seconds=3600), which shows the refresh.
            let mut config =
                MockConfig { clock: ClockMode::Manual { start: SystemTime::now() }, ..MockConfig::default() };
            for app in &mut config.apps {
                app.impersonate_login_urls.push(redirect_uri.clone());
            }
            let started = MockErpNet::start(config)?;
            eprintln!(
                "Mock ERP.net at {} (user `{DEMO_USER}`, password `{DEMO_PASSWORD}`)",
                started.base_url()
            );
            eprintln!(
                "Expire the access token: curl -X POST '{}/_mock/clock/advance?seconds=3600'",
                started.base_url()
            );
            let config = AppConfig {
                instance: started.base_url(),
                client_id: args.client_id.clone().unwrap_or_else(|| DEMO_CLIENT_ID.to_owned()),
                client_secret: Some(client_secret.unwrap_or_else(|| DEMO_CLIENT_SECRET.to_owned())),
                redirect_uri,
            };
            mock = Some(started);
            config
        }
    };
    if let SessionBackend::Redis(redis) = &backend {
        eprintln!(
            "Sessions, pending logins and tokens in Redis at {} (tokens {})",
            redis.url(),
            if redis.encrypts_tokens() { "encrypted with the key file" } else { "not encrypted" }
        );
    }
    let app = WebApp::new(&config, Options { backend, ..Options::default() })?.router();
    println!("Open http://{addr}/ in your browser");
    axum::serve(listener, app).await?;
    drop(mock);
    Ok(())
}

/// The client secret: the file's content (without its final line break) when a file is given, else the
/// environment variable's value; `None` when neither is given (or the variable is empty).
fn client_secret(file: Option<&Path>, env: Option<std::ffi::OsString>) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the client secret file {}: {e}", path.display()))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(format!("the client secret file {} is empty", path.display()));
        }
        return Ok(Some(secret.to_owned()));
    }
    match env {
        None => Ok(None),
        Some(value) => match value.into_string() {
            Ok(secret) if secret.is_empty() => Ok(None),
            Ok(secret) => Ok(Some(secret)),
            Err(_) => Err(format!("{SECRET_ENV} is not valid UTF-8")),
        },
    }
}

/// The backend: Redis when `REDIS_URL` is set (and not empty), with the tokens encrypted by the key in
/// `key_file` if given; else memory. A key file without `REDIS_URL` is refused (it would do nothing).
fn backend(url: Option<std::ffi::OsString>, key_file: Option<&Path>) -> Result<SessionBackend, String> {
    let url = match url.map(|u| u.into_string()) {
        None => None,
        Some(Ok(url)) if url.is_empty() => None,
        Some(Ok(url)) => Some(url),
        Some(Err(_)) => return Err(format!("{REDIS_ENV} is not valid UTF-8")),
    };
    let Some(url) = url else {
        return match key_file {
            Some(_) => Err(format!(
                "--token-encryption-key-file (TOKEN_ENCRYPTION_KEY_FILE) needs {REDIS_ENV}: the tokens are \
                 only encrypted in Redis"
            )),
            None => Ok(SessionBackend::Memory),
        };
    };
    let mut redis = RedisBackend::open(&url).map_err(|e| format!("{REDIS_ENV}: {e}"))?;
    if let Some(path) = key_file {
        redis = redis.encryption_key(encryption_key(path)?);
    }
    Ok(SessionBackend::Redis(redis))
}

/// The key in `path`: 64 hex digits (a final line break allowed) or exactly 32 bytes. The messages never
/// show the file's content.
fn encryption_key(path: &Path) -> Result<EncryptionKey, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the token encryption key file {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map(|t| t.trim_end_matches(['\n', '\r']));
    if let Ok(hex) = text
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let key: Vec<u8> = (0..32)
            .filter_map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        return EncryptionKey::from_slice(&key).map_err(|e| format!("{}: {e}", path.display()));
    }
    if bytes.len() == 32 {
        return EncryptionKey::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    Err(format!(
        "the token encryption key file {} must hold 64 hex digits (openssl rand -hex 32) or 32 bytes",
        path.display()
    ))
}
