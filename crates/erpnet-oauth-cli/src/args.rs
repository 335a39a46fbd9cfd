//! The command line, as documented in the README: names, environment variables and defaults are a
//! contract with users' scripts.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Log in to an ERP.net instance once, then get tokens and make authorized Domain API calls.
#[derive(Debug, Parser)]
#[command(name = "erpnet-oauth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command (flag, or environment variable when the flag is absent).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The instance base URL, e.g. https://demodb.my.erp.net (identity server at {instance}/id).
    #[arg(long, global = true, env = "ERPNET_INSTANCE", value_name = "URL")]
    pub instance: Option<String>,
    /// The trusted application's ApplicationUri (may contain '/').
    #[arg(long, global = true, env = "ERPNET_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// A file holding the plain client secret of a confidential app (else ERPNET_CLIENT_SECRET, else the
    /// one `login` saved for the profile; none: a public client, PKCE only). There is deliberately no flag
    /// for the secret itself.
    #[arg(long, global = true, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,
    /// The registered redirect URI: http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH.
    #[arg(long, global = true, env = "ERPNET_REDIRECT_URI", value_name = "URI")]
    pub redirect_uri: Option<String>,
    /// The scopes to request.
    #[arg(long, global = true, env = "ERPNET_SCOPE", value_name = "SCOPES")]
    pub scope: Option<String>,
    /// Where profiles and tokens are kept: a directory (default: the platform's config directory,
    /// erpnet-oauth/), or a Redis URL (redis://, rediss://, redis+unix://) shared by several machines.
    // `--help` never shows the variable's value: a Redis URL may hold a password.
    #[arg(long, global = true, env = "ERPNET_OAUTH_STORE", hide_env_values = true, value_name = "DIR|URL")]
    pub store: Option<PathBuf>,
    /// With a Redis store: a file holding a 32-byte key in base64 (head -c 32 /dev/urandom | base64)
    /// that encrypts the tokens and the saved client secret in Redis (AES-256-GCM).
    #[arg(long, global = true, env = "ERPNET_OAUTH_STORE_KEY_FILE", value_name = "PATH")]
    pub store_key_file: Option<PathBuf>,
    /// Keeps several logins apart (each has its own settings, tokens and saved secret).
    #[arg(long, global = true, env = "ERPNET_PROFILE", default_value = "default", value_name = "NAME")]
    pub profile: String,
    /// Bound on every network call, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Permit plain http:// to an instance that is not on a loopback address.
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,
    /// Log each HTTP exchange on stderr, with secrets and tokens redacted.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with the authorization code flow (PKCE S256, state, nonce) and store the tokens.
    Login {
        /// Print the authorize URL on stderr instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// How long to wait for the browser's callback, in seconds.
        #[arg(long, default_value_t = 300, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        wait: u64,
        /// Do not save the client secret with the profile (and delete one saved before): later commands
        /// then need --client-secret-file or ERPNET_CLIENT_SECRET.
        #[arg(long)]
        no_save_secret: bool,
    },
    /// Print a valid access token on stdout, refreshing it first when needed.
    Token,
    /// Refresh the access token now.
    Refresh,
    /// Send an authorized request; print the response body on stdout.
    Call {
        /// The HTTP method.
        method: String,
        /// An absolute URL, or a path relative to the instance such as
        /// /api/domain/odata/Crm_Customers?$top=10.
        url: String,
        /// The request body.
        #[arg(long, value_name = "BODY")]
        data: Option<String>,
        /// An extra header, 'Name: value' (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// Show the stored login (never a token or secret) and where the flags disagree with it.
    Status {
        /// One JSON object on stdout (with --all: a JSON array of them).
        #[arg(long)]
        json: bool,
        /// Every profile of the store, each judged by its own saved settings.
        #[arg(long)]
        all: bool,
    },
    /// Revoke the refresh token where the server offers it, then delete the stored tokens (the profile's
    /// settings are kept for the next login).
    Logout {
        /// Also delete the profile's settings and its saved client secret.
        #[arg(long)]
        forget: bool,
    },
    /// Read a secret on stdin; print base64(sha256(secret)), the ApplicationSecretHash.
    HashSecret,
    /// Run the seed's whole story against an embedded mock ERP.net.
    Demo,
    /// Run the mock ERP.net server in the foreground.
    Mock {
        /// The loopback port to listen on (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A mock configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}
