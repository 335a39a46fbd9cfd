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

/// Settings shared by every command (flag, or environment variable when the flag is absent). Each
/// subcommand's help lists them after its own options, under "Global options".
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
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
    // No `default_value`: without the flag or the variable the scopes `login` saved are used. The help
    // names the default all the same.
    #[arg(long, global = true, env = "ERPNET_SCOPE", value_name = "SCOPES",
          help = format!("The scopes to request [default: {}]", crate::settings::DEFAULT_SCOPE))]
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
    /// login: use ERP.net's fixed paths under {instance}/id, with no discovery request (remembered for the
    /// profile; --no-discovery=false turns it off).
    #[arg(long, global = true, env = "ERPNET_NO_DISCOVERY", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_discovery: Option<bool>,
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
    Token {
        /// One JSON object on stdout: access_token, expires_at (Unix seconds or null), expires_at_rfc3339,
        /// scopes, token_type.
        #[arg(long)]
        json: bool,
        /// Refresh first when the token is valid for less than this. A token is never renewed while more
        /// than half its lifetime remains: a larger value gets a warning, not a refresh at every call.
        #[arg(long, default_value_t = 60, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
        min_validity: u64,
    },
    /// Refresh the access token now.
    Refresh,
    /// Send an authorized request; print the response body on stdout (an error status: the body, then
    /// exit 4).
    Call {
        /// The HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
        method: String,
        /// An absolute URL, or a path relative to the instance such as
        /// /api/domain/odata/Crm_Customers?$top=10.
        url: String,
        /// The request body; @FILE reads it from a file, @- from stdin (bytes as they are).
        #[arg(long, short = 'd', value_name = "BODY", conflicts_with = "data_raw")]
        data: Option<String>,
        /// The request body exactly as given, even when it starts with '@'.
        #[arg(long, value_name = "BODY")]
        data_raw: Option<String>,
        /// An extra header, 'Name: value' (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Print the status line and the response headers, a blank line, then the body.
        #[arg(long, short = 'i')]
        include: bool,
        /// GET every page: follow @odata.nextLink (same instance only, at most 1000 pages) and print one
        /// JSON document {"value": [...]} with every page's rows.
        #[arg(long, conflicts_with_all = ["data", "data_raw", "include"])]
        paginate: bool,
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
