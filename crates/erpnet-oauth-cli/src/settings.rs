//! Where the settings come from: flag, else environment variable, else what `login` saved for the profile.

use crate::args::Global;
use crate::exit::Failure;
use crate::saved_secret::{SavedSecret, SecretPlace};
use crate::store::{Store, Tokens};
use erpnet_oauth_core::{ClientConfig, ClientSecret, IssuedTo, ProviderMetadata, TokenSet};
use erpnet_oauth_ureq::{StoreError, StoreLock, TokenStore};
use serde::{Deserialize, Serialize};
use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default scopes: the seed's.
pub const DEFAULT_SCOPE: &str = "openid profile offline_access DomainApi";

/// What `login` remembers about a profile, so that later commands need no flags. No secret, no token:
/// only where the secret is saved, if it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedProfile {
    pub instance: String,
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Logged in with `--no-discovery`: ERP.net's fixed paths, and no discovery at the next `login` either.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_discovery: bool,
    #[serde(default)]
    pub scope: Option<String>,
    /// The discovery document fetched at login, as received (validated again on every use).
    #[serde(default)]
    pub discovery: Option<serde_json::Value>,
    /// Whether the login used a client secret: later commands need one too (saved, or given again).
    #[serde(default)]
    pub confidential: bool,
    /// Where the client secret is saved; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretPlace>,
}

/// Where the client secret of this invocation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `--client-secret-file`.
    File,
    /// `ERPNET_CLIENT_SECRET`.
    Env,
    /// What `login` saved for the profile.
    Saved(SecretPlace),
}

/// The settings given by flags or environment variables in this invocation (clap fills each from the
/// flag, else the variable), before the profile's saved ones fill the gaps.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub instance: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
}

/// The resolved settings of one invocation.
#[derive(Debug)]
pub struct Settings {
    pub instance: Option<String>,
    pub client_id: Option<String>,
    /// The secret given now (`--client-secret-file`, else `ERPNET_CLIENT_SECRET`); see [`Settings::secret`]
    /// for the one in effect.
    pub secret: Option<ClientSecret>,
    /// Where [`Self::secret`] came from.
    pub given_secret: Option<SecretSource>,
    pub redirect_uri: Option<String>,
    pub scope: String,
    /// Where the profile lives: a directory, or a Redis.
    pub store: Store,
    pub profile: String,
    pub timeout: Duration,
    pub allow_insecure_http: bool,
    /// `login` uses ERP.net's fixed paths, without discovery: --no-discovery, else ERPNET_NO_DISCOVERY,
    /// else what the profile's last login did.
    pub no_discovery: bool,
    pub saved: Option<SavedProfile>,
    /// What flags and environment variables said.
    pub given: Given,
    /// The profile's saved client secret (read only when a command needs it).
    pub saved_secret: SavedSecret,
    loaded_secret: OnceCell<Option<ClientSecret>>,
}

impl Settings {
    /// Resolves the settings. `env` looks up environment variables (a parameter so tests can pass a map).
    pub fn resolve(global: &Global, env: impl Fn(&str) -> Option<String>) -> Result<Settings, Failure> {
        check_profile_name(&global.profile)?;
        let store = Store::resolve(global, &env)?;
        Self::resolve_in(global, env, store)
    }

    /// [`Self::resolve`] in a store already resolved (`status --all`: each profile of one store).
    pub fn resolve_in(
        global: &Global,
        env: impl Fn(&str) -> Option<String>,
        store: Store,
    ) -> Result<Settings, Failure> {
        let profile = global.profile.clone();
        check_profile_name(&profile)?;
        let saved = store.read_profile(&profile)?;
        let (secret, given_secret) = match &global.client_secret_file {
            Some(path) => (Some(read_secret_file(path)?), Some(SecretSource::File)),
            None => match env("ERPNET_CLIENT_SECRET").filter(|s| !s.is_empty()) {
                Some(s) => (Some(ClientSecret::new(s)), Some(SecretSource::Env)),
                None => (None, None),
            },
        };
        let saved_secret = SavedSecret::in_store(&store, &profile, &env);
        let instance = global.instance.clone().or_else(|| saved.as_ref().map(|s| s.instance.clone()));
        let client_id = global.client_id.clone().or_else(|| saved.as_ref().map(|s| s.client_id.clone()));
        let redirect_uri =
            global.redirect_uri.clone().or_else(|| saved.as_ref().and_then(|s| s.redirect_uri.clone()));
        let scope = global
            .scope
            .clone()
            .or_else(|| saved.as_ref().and_then(|s| s.scope.clone()))
            .unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
        // The saved choice holds for the saved instance only.
        let no_discovery = global.no_discovery.unwrap_or_else(|| {
            saved.as_ref().is_some_and(|s| {
                s.no_discovery && instance.as_deref().is_some_and(|i| same_instance(&s.instance, i))
            })
        });
        Ok(Settings {
            instance,
            client_id,
            secret,
            given_secret,
            redirect_uri,
            scope,
            store,
            profile,
            timeout: Duration::from_secs(global.timeout),
            allow_insecure_http: global.allow_insecure_http,
            no_discovery,
            saved,
            given: Given {
                instance: global.instance.clone(),
                client_id: global.client_id.clone(),
                redirect_uri: global.redirect_uri.clone(),
                scope: global.scope.clone(),
            },
            saved_secret,
            loaded_secret: OnceCell::new(),
        })
    }

    /// The saved profile when it is the login of the instance and client in effect (its saved secret
    /// is never sent to another instance or as another client's).
    pub fn saved_for_this_client(&self) -> Option<&SavedProfile> {
        let saved = self.saved.as_ref()?;
        let same = same_instance(&saved.instance, self.instance.as_deref()?)
            && self.client_id.as_deref() == Some(saved.client_id.as_str());
        same.then_some(saved)
    }

    /// The client secret in effect, and where it comes from: `--client-secret-file`, else
    /// `ERPNET_CLIENT_SECRET`, else the one `login` saved for this profile's instance and client. A profile
    /// that logged in with a secret and has none now is a usage error, before any request.
    pub fn secret(&self) -> Result<Option<(&ClientSecret, SecretSource)>, Failure> {
        if let (Some(secret), Some(source)) = (&self.secret, self.given_secret) {
            return Ok(Some((secret, source)));
        }
        let Some(saved) = self.saved_for_this_client() else { return Ok(None) };
        let loaded = match self.loaded_secret.get() {
            Some(loaded) => loaded,
            None => {
                let loaded = match saved.secret {
                    Some(place) => self.saved_secret.load(place)?,
                    None => None,
                };
                self.loaded_secret.get_or_init(|| loaded)
            }
        };
        match (loaded, saved.secret) {
            (Some(secret), Some(place)) => Ok(Some((secret, SecretSource::Saved(place)))),
            _ if saved.confidential => Err(self.needs_secret()),
            _ => Ok(None),
        }
    }

    /// The failure of a profile that logged in with a client secret and has none now.
    pub fn needs_secret(&self) -> Failure {
        let again = match &self.store {
            Store::Redis(redis) if !redis.has_key() => {
                "log in again with --store-key-file PATH to save it, encrypted, in the Redis store"
            }
            _ => "or log in again to save it",
        };
        Failure::usage(format!(
            "profile {} needs its client secret: pass --client-secret-file PATH or set ERPNET_CLIENT_SECRET \
             ({again})",
            self.profile
        ))
    }

    /// Where the profile's tokens are: its token file, or its Redis key.
    pub fn token_path(&self) -> PathBuf {
        self.store.token_location(&self.profile)
    }

    /// The profile's token store, for `client`'s tokens only: the store records the instance (issuer) and
    /// client of the tokens, and tokens issued to another are refused before any request.
    pub fn token_store(&self, client: &ClientConfig) -> Tokens {
        self.store.token_store(&self.profile, Some(client))
    }

    /// The profile's token store, unbound: `logout` and `login` read what it holds whoever it was
    /// issued to.
    pub fn unbound_token_store(&self) -> Tokens {
        self.store.token_store(&self.profile, None)
    }

    /// Whether tokens are stored for the profile.
    pub fn tokens_present(&self) -> Result<bool, Failure> {
        self.store.tokens_present(&self.profile)
    }

    /// The profile's token store for `login`: bound to the client logging in, except that tokens of
    /// another login found there are not loaded (the new login replaces them once it succeeds).
    pub fn login_store(&self, client: &ClientConfig) -> LoginStore {
        LoginStore(self.token_store(client))
    }

    /// Whom the tokens must have been issued to, when the instance and client id are known.
    pub fn issued_to(&self) -> Option<IssuedTo> {
        Some(IssuedTo::new(expected_issuer(self.instance.as_deref()?), self.client_id.as_deref()?))
    }

    /// The failure for a store error: tokens of another login name both logins and what to do.
    pub fn store_failure(&self, error: &StoreError) -> Option<Failure> {
        match error {
            StoreError::IssuedToAnother { stored, expected, .. } => Some(Failure::usage(format!(
                "the profile `{}` holds tokens issued to {stored}, not to {expected}; they are never sent \
                 elsewhere: run `erpnet-oauth login` to log in again, or use the --profile of that login",
                self.profile
            ))),
            _ => None,
        }
    }

    pub fn instance(&self) -> Result<&str, Failure> {
        self.instance.as_deref().ok_or_else(|| {
            Failure::usage(
                "no instance: pass --instance URL or set ERPNET_INSTANCE (e.g. https://demodb.my.erp.net)",
            )
        })
    }

    pub fn client_id(&self) -> Result<&str, Failure> {
        self.client_id.as_deref().ok_or_else(|| {
            Failure::usage("no client id: pass --client-id ID or set ERPNET_CLIENT_ID (the trusted application's ApplicationUri)")
        })
    }

    /// Whether the saved login belongs to the instance and client given now.
    pub fn check_saved_matches(&self) -> Result<(), Failure> {
        if let Some(saved) = &self.saved {
            let instance = self.instance()?;
            if !same_instance(&saved.instance, instance) || saved.client_id != self.client_id()? {
                return Err(Failure::usage(format!(
                    "the profile `{}` holds a login to {} as {}, not {} as {}: run `erpnet-oauth login` or use another --profile",
                    self.profile,
                    saved.instance,
                    saved.client_id,
                    instance,
                    self.client_id()?
                )));
            }
        }
        Ok(())
    }

    /// The client configuration. `discovered` (from this login, or saved by it) replaces ERP.net's default
    /// endpoints.
    pub fn client(
        &self,
        discovered: Option<&ProviderMetadata>,
        with_redirect: bool,
    ) -> Result<ClientConfig, Failure> {
        let instance = self.instance()?;
        let mut builder =
            ClientConfig::builder(instance, self.client_id()?).allow_insecure_http(self.allow_insecure_http);
        if let Some((secret, _)) = self.secret()? {
            builder = builder.client_secret(secret.clone());
        }
        if with_redirect {
            let redirect = self.redirect_uri.as_deref().ok_or_else(|| {
                Failure::usage(
                    "no redirect URI: pass --redirect-uri URI or set ERPNET_REDIRECT_URI \
                     (a loopback address registered in the trusted application's ImpersonateLoginUrl, \
                     e.g. http://127.0.0.1:8400/signin-callback)",
                )
            })?;
            builder = builder.redirect_uri(redirect);
        }
        if let Some(d) = discovered {
            builder = builder.provider(d);
        }
        builder.build().map_err(|e| Failure::usage(e.to_string()))
    }

    /// The saved discovery document of this profile, validated again, when it is for the instance in use.
    pub fn saved_discovery(&self) -> Option<ProviderMetadata> {
        let saved = self.saved.as_ref()?;
        let instance = self.instance.as_deref()?;
        if !same_instance(&saved.instance, instance) {
            return None;
        }
        let doc = serde_json::to_vec(saved.discovery.as_ref()?).ok()?;
        ProviderMetadata::from_json(&doc, &expected_issuer(instance)).ok()
    }
}

fn check_profile_name(profile: &str) -> Result<(), Failure> {
    if valid_profile_name(profile) {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "the profile name `{profile}` is not allowed: use letters, digits, '-', '_' and '.'"
    )))
}

/// Whether `name` may name a profile: letters, digits, `-`, `_` and `.`, not first, at most 64 bytes (so a
/// profile's files stay inside the store directory).
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// The store directory (`--store`, `ERPNET_OAUTH_STORE`, else the platform's), refused when others can
/// change it. (A Redis URL there is [`Store::resolve`]'s.)
pub fn store_dir(global: &Global, env: &impl Fn(&str) -> Option<String>) -> Result<PathBuf, Failure> {
    let dir = match &global.store {
        Some(dir) => dir.clone(),
        None => default_store_dir(env).ok_or_else(|| {
            Failure::usage("no store directory: pass --store DIR or set ERPNET_OAUTH_STORE")
        })?,
    };
    check_store_dir(&dir)?;
    Ok(dir)
}

/// ERP.net's issuer for an instance: `{instance}/id`, as the core computes it.
pub fn expected_issuer(instance: &str) -> String {
    ClientConfig::builder(instance, "-")
        .allow_insecure_http(true)
        .build()
        .map(|c| c.issuer().to_owned())
        .unwrap_or_else(|_| format!("{}/id", instance.trim_end_matches('/')))
}

/// Whether two instance URLs name the same instance (a trailing `/` aside).
pub fn same_instance(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn profile_path(dir: &Path, profile: &str) -> PathBuf {
    dir.join(format!("{profile}.profile.json"))
}

/// Reads the profile file (never through a symbolic link).
pub fn read_profile_file(dir: &Path, profile: &str) -> Result<Option<SavedProfile>, Failure> {
    let path = profile_path(dir, profile);
    match erpnet_oauth_store::read_private_file(&path) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Failure::usage(format!(
                "{} is not a valid profile file ({e}); remove it and run `erpnet-oauth login`",
                path.display()
            ))
        }),
        Ok(None) => Ok(None),
        Err(e @ StoreError::Symlink { .. }) => Err(Failure::usage(e.to_string())),
        Err(StoreError::Io { source, .. }) => {
            Err(Failure::usage(format!("cannot read {}: {source}", path.display())))
        }
        Err(e) => Err(Failure::usage(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Saves the profile's settings in its store.
pub fn write_profile(settings: &Settings, profile: &SavedProfile) -> Result<(), Failure> {
    settings.store.write_profile(&settings.profile, profile)
}

/// Deletes the profile's settings (`logout --forget`).
pub fn remove_profile(settings: &Settings) -> Result<(), Failure> {
    settings.store.remove_profile(&settings.profile)
}

/// Writes the profile file atomically (temporary file, then rename; mode 0600; a symbolic link there is
/// replaced, never written through).
pub fn write_profile_file(dir: &Path, name: &str, profile: &SavedProfile) -> Result<(), Failure> {
    let path = profile_path(dir, name);
    create_store_dir(dir)?;
    let json = serde_json::to_vec_pretty(profile).map_err(|e| Failure::usage(e.to_string()))?;
    erpnet_oauth_store::write_private_file(&path, &json).map_err(|e| {
        let e = match e {
            StoreError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        Failure::usage(format!(
            "cannot write {}: {e}; check that --store points to a writable directory",
            path.display()
        ))
    })
}

/// Removes the profile file.
pub fn remove_profile_file(dir: &Path, name: &str) -> Result<(), Failure> {
    let path = profile_path(dir, name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::usage(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// The profiles of a store directory: every name with a profile file or a token file, sorted.
pub fn profiles_in_dir(dir: &Path) -> Result<BTreeSet<String>, Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => {
            return Err(Failure::usage(format!("cannot read the store directory {}: {e}", dir.display())));
        }
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Failure::usage(format!("cannot read the store directory {}: {e}", dir.display())))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let name = file.strip_suffix(".profile.json").or_else(|| file.strip_suffix(".tokens.json"));
        if let Some(name) = name.filter(|n| valid_profile_name(n)) {
            names.insert(name.to_owned());
        }
    }
    Ok(names)
}

/// Creates the store directory (mode 0700 on Unix) when it is missing; refuses one that others can change.
pub fn create_store_dir(dir: &Path) -> Result<(), Failure> {
    erpnet_oauth_store::create_directory(dir).map_err(|e| match e {
        StoreError::Io { action: "created", source, .. } => Failure::usage(format!(
            "cannot create the store directory {}: {source}; pass --store DIR with a writable directory",
            dir.display()
        )),
        other => Failure::usage(other.to_string()),
    })
}

/// Refuses an existing store directory that others can change (group- or world-writable, or owned by
/// another user), with what to do; a missing one is created by `login`.
fn check_store_dir(dir: &Path) -> Result<(), Failure> {
    match erpnet_oauth_store::check_directory(dir) {
        Ok(()) => Ok(()),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(StoreError::Io { source, .. }) => Err(Failure::usage(format!(
            "cannot use the store directory {}: {source}; pass --store DIR with a writable directory",
            dir.display()
        ))),
        Err(e) => Err(Failure::usage(e.to_string())),
    }
}

/// Checks that a file can be created in the store directory. The probe is created anew (`create_new`:
/// whatever is in its place, a symbolic link included, makes it fail), never opened through a link.
pub fn check_writable(dir: &Path) -> Result<(), Failure> {
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    let result = created.and_then(|file| {
        drop(file);
        std::fs::remove_file(&probe)
    });
    result.map_err(|e| {
        if std::fs::symlink_metadata(&probe).is_ok_and(|m| m.file_type().is_symlink()) {
            return Failure::usage(StoreError::Symlink { path: probe.clone() }.to_string());
        }
        Failure::usage(format!(
            "the store directory {} is not writable ({e}); pass --store DIR with a writable directory",
            dir.display()
        ))
    })
}

fn read_secret_file(path: &Path) -> Result<ClientSecret, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read the client secret file {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(Failure::usage(format!("the client secret file {} is empty", path.display())));
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Some(warning) = secret_file_warning(path, meta.permissions().mode()) {
            eprintln!("erpnet-oauth: warning: {warning}");
        }
    }
    Ok(ClientSecret::new(secret))
}

/// What to say about a client secret file of permission `mode`: a warning when users other than its
/// owner may read or change it (the secret is still used).
#[cfg_attr(not(unix), allow(dead_code))]
fn secret_file_warning(path: &Path, mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "the client secret file {0} is accessible to other users (mode {1:04o}): chmod 600 {0}",
            path.display(),
            mode & 0o7777
        )
    })
}

/// The token store `login` uses: see [`Settings::login_store`]. Its `save` replaces the file whatever it
/// held.
#[derive(Debug)]
pub struct LoginStore(Tokens);

impl TokenStore for LoginStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        match self.0.load() {
            // Tokens of another login, a file that holds none, tokens this store key cannot decrypt
            // (`login` warned about it): the new login replaces them.
            Err(
                StoreError::IssuedToAnother { .. } | StoreError::Corrupt { .. } | StoreError::Decrypt { .. },
            ) => Ok(None),
            other => other,
        }
    }
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.0.save(tokens)
    }
    fn clear(&self) -> Result<(), StoreError> {
        self.0.clear()
    }
    fn lock(&self) -> Result<StoreLock, StoreError> {
        self.0.lock()
    }
}

/// The platform's config directory, `erpnet-oauth/` inside it.
fn default_store_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        non_empty("APPDATA")
    } else if cfg!(target_os = "macos") {
        non_empty("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        non_empty("XDG_CONFIG_HOME").or_else(|| non_empty("HOME").map(|h| h.join(".config")))
    }?;
    Some(base.join("erpnet-oauth"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> Global {
        let mut full = vec!["erpnet-oauth"];
        full.extend_from_slice(args);
        full.push("status");
        crate::args::Cli::parse_from(full).global
    }

    #[test]
    fn default_store_dir_follows_xdg() {
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x/conf".to_owned()),
            "HOME" => Some("/home/u".to_owned()),
            _ => None,
        };
        if cfg!(all(unix, not(target_os = "macos"))) {
            assert_eq!(default_store_dir(&env), Some(PathBuf::from("/x/conf/erpnet-oauth")));
            let home_only = |k: &str| (k == "HOME").then(|| "/home/u".to_owned());
            assert_eq!(default_store_dir(&home_only), Some(PathBuf::from("/home/u/.config/erpnet-oauth")));
        }
    }

    #[test]
    fn profile_names_cannot_escape_the_store() {
        for bad in ["../x", "a/b", ".hidden", ""] {
            let g = global(&["--store", "/tmp/none", "--profile", bad]);
            assert_eq!(Settings::resolve(&g, |_| None).unwrap_err().code, crate::exit::Code::Usage, "{bad}");
        }
    }

    #[test]
    fn secret_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let g = global(&["--store", dir.path().to_str().unwrap()]);
        let s =
            Settings::resolve(&g, |k| (k == "ERPNET_CLIENT_SECRET").then(|| "s3cret".to_owned())).unwrap();
        assert_eq!(s.secret.as_ref().map(|s| s.secret()), Some("s3cret"));
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let g = global(&[
            "--store",
            dir.path().to_str().unwrap(),
            "--client-secret-file",
            file.to_str().unwrap(),
        ]);
        let s = Settings::resolve(&g, |_| Some("ignored".to_owned())).unwrap();
        assert_eq!(s.secret.as_ref().map(|s| s.secret()), Some("from-file"));
        assert!(!format!("{s:?}").contains("from-file"));
    }

    #[test]
    fn the_saved_secret_comes_last_and_only_for_its_own_instance_and_client() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().to_str().unwrap();
        let no_keyring = |k: &str| (k == crate::saved_secret::NO_KEYRING_ENV).then(|| "1".to_owned());
        let profile = |secret: Option<SecretPlace>| SavedProfile {
            instance: "https://a.example".to_owned(),
            client_id: "app/one".to_owned(),
            confidential: true,
            secret,
            ..SavedProfile::default()
        };
        let g = global(&["--store", store]);
        let settings = Settings::resolve(&g, no_keyring).unwrap();
        write_profile(&settings, &profile(Some(SecretPlace::File))).unwrap();
        settings.saved_secret.save(&ClientSecret::new("saved-one")).unwrap();

        let resolve = |args: &[&str], env: &dyn Fn(&str) -> Option<String>| {
            let mut all = vec!["--store", store];
            all.extend_from_slice(args);
            Settings::resolve(&global(&all), |k| env(k).or_else(|| no_keyring(k))).unwrap()
        };
        let secret_of = |s: &Settings| s.secret().map(|o| o.map(|(s, src)| (s.secret().to_owned(), src)));
        let s = resolve(&[], &|_| None);
        assert_eq!(
            secret_of(&s).unwrap(),
            Some(("saved-one".to_owned(), SecretSource::Saved(SecretPlace::File)))
        );
        assert!(!format!("{s:?}").contains("saved-one"), "loaded, and still not in Debug");
        let s = resolve(&[], &|k| (k == "ERPNET_CLIENT_SECRET").then(|| "from-env".to_owned()));
        assert_eq!(secret_of(&s).unwrap(), Some(("from-env".to_owned(), SecretSource::Env)));
        // Another instance or client: the saved secret is not theirs.
        let s = resolve(&["--instance", "https://b.example"], &|_| None);
        assert_eq!(secret_of(&s).unwrap(), None);
        let s = resolve(&["--client-id", "app/two"], &|_| None);
        assert_eq!(secret_of(&s).unwrap(), None);
        // The same instance written with a trailing slash is the same login.
        let s = resolve(&["--instance", "https://a.example/"], &|_| None);
        assert!(secret_of(&s).unwrap().is_some());
        // Confidential, and the secret gone: a usage error naming what to pass.
        settings.saved_secret.remove(Some(SecretPlace::File)).unwrap();
        let e = secret_of(&resolve(&[], &|_| None)).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert_eq!(
            e.message,
            "profile default needs its client secret: pass --client-secret-file PATH or set \
             ERPNET_CLIENT_SECRET (or log in again to save it)"
        );
        write_profile(&settings, &profile(None)).unwrap();
        assert!(secret_of(&resolve(&[], &|_| None)).is_err());
        // A public client's profile needs none.
        write_profile(&settings, &SavedProfile { confidential: false, ..profile(None) }).unwrap();
        assert_eq!(secret_of(&resolve(&[], &|_| None)).unwrap(), None);
    }

    #[test]
    fn secret_files_others_can_access_are_warned_about() {
        let path = Path::new("/s/secret");
        assert_eq!(secret_file_warning(path, 0o100600), None);
        assert_eq!(secret_file_warning(path, 0o100400), None);
        assert_eq!(
            secret_file_warning(path, 0o100644).as_deref(),
            Some(
                "the client secret file /s/secret is accessible to other users (mode 0644): chmod 600 /s/secret"
            )
        );
        assert!(secret_file_warning(path, 0o100620).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn the_write_probe_is_never_opened_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        check_writable(dir.path()).unwrap();
        let probe = dir.path().join(format!(".write-test-{}", std::process::id()));
        assert!(!probe.exists(), "the probe is removed");
        std::os::unix::fs::symlink(&target, &probe).unwrap();
        let e = check_writable(dir.path()).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("symbolic link") && e.message.contains(".write-test-"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious", "the link's target is untouched");
        // A dangling link: following it would create the file it names.
        let missing = elsewhere.path().join("created-through-the-link");
        std::fs::remove_file(&probe).unwrap();
        std::os::unix::fs::symlink(&missing, &probe).unwrap();
        assert!(check_writable(dir.path()).is_err());
        assert!(!missing.exists(), "nothing is created through the link");
    }

    #[cfg(unix)]
    #[test]
    fn a_store_directory_others_can_write_is_refused_before_anything_is_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        create_store_dir(&store).unwrap();
        assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
        let g = global(&["--store", store.to_str().unwrap()]);
        let e = Settings::resolve(&g, |_| None).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("(mode 0777): chmod 700"), "{e}");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
        Settings::resolve(&g, |_| None).unwrap();
        let missing = global(&["--store", dir.path().join("missing").to_str().unwrap()]);
        Settings::resolve(&missing, |_| None).unwrap();
    }
}
