//! The client secret `login` saves with a profile, so that a confidential app logs in once: in the OS
//! keyring where one is usable (macOS Keychain, Windows Credential Manager), else in `NAME.secret` in the
//! store directory (mode 0600, written atomically, never through a symbolic link, like the token file next
//! to it). The profile file records where it is (`"secret": "keyring" | "file"`), never the secret itself.
//!
//! On Linux and the BSDs the file is used: the Secret Service (the desktop keyring over D-Bus) needs either
//! the system's libdbus or an async D-Bus stack of a hundred crates, and on the servers and CI machines where
//! this command mostly runs there is no Secret Service to talk to; the kernel keyring forgets its keys at
//! reboot. `ERPNET_OAUTH_NO_KEYRING=1` keeps the keyring out everywhere (tests set it, so they never touch a
//! user's keyring): the secret is then saved in the file, and a secret saved in the keyring is not read.
//!
//! A profile in a Redis store (`--store redis://...`) keeps its secret in Redis, encrypted with the store
//! key (`--store-key-file`), and nowhere without one (see [`crate::store`]).

use crate::exit::Failure;
use crate::store::{Redis, Store};
use erpnet_oauth_core::{ClientSecret, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The environment variable that keeps the OS keyring out (any value but empty or `0`).
pub const NO_KEYRING_ENV: &str = "ERPNET_OAUTH_NO_KEYRING";

/// Where a profile's client secret is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretPlace {
    /// The OS keyring: service `erpnet-oauth`, account `PROFILE@STORE_DIR`.
    Keyring,
    /// `NAME.secret` in the store directory.
    File,
    /// The Redis store, encrypted with the store key (`erpnet-oauth:cli:secret:NAME`).
    Redis,
}

impl SecretPlace {
    /// The name used in the profile file and in `status --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretPlace::Keyring => "keyring",
            SecretPlace::File => "file",
            SecretPlace::Redis => "redis",
        }
    }
}

/// The saved secret of one profile of one store directory.
#[derive(Debug, Clone)]
pub struct SavedSecret {
    store_dir: PathBuf,
    profile: String,
    keyring: bool,
    /// The Redis store the profile is in, if it is.
    redis: Option<Rc<Redis>>,
}

impl SavedSecret {
    /// The saved secret of `profile` in `store_dir`; `env` looks up [`NO_KEYRING_ENV`].
    pub fn new(store_dir: &Path, profile: &str, env: impl Fn(&str) -> Option<String>) -> SavedSecret {
        let opted_out = env(NO_KEYRING_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        SavedSecret {
            store_dir: store_dir.to_path_buf(),
            profile: profile.to_owned(),
            keyring: os_keyring::SUPPORTED && !opted_out,
            redis: None,
        }
    }

    /// The saved secret of `profile` in `store`: a directory (see [`Self::new`]) or a Redis.
    pub fn in_store(store: &Store, profile: &str, env: impl Fn(&str) -> Option<String>) -> SavedSecret {
        match store {
            Store::Dir(dir) => Self::new(dir, profile, env),
            Store::Redis(redis) => SavedSecret {
                store_dir: PathBuf::new(),
                profile: profile.to_owned(),
                keyring: false,
                redis: Some(redis.clone()),
            },
        }
    }

    /// Whether a secret can be saved: always in a directory; in Redis only with the store key.
    pub fn can_save(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.has_key())
    }

    /// Whether the secret the profile records at `place` is there (a file that is gone, a key deleted
    /// from Redis, or a Redis secret without the key to read it, is not).
    pub fn present(&self, place: SecretPlace) -> Result<bool, Failure> {
        match (&self.redis, place) {
            (Some(redis), SecretPlace::Redis) => Ok(redis.has_key() && redis.secret_present(&self.profile)?),
            (Some(_), _) => Ok(false),
            (None, SecretPlace::File) => Ok(std::fs::symlink_metadata(self.file()).is_ok()),
            (None, SecretPlace::Keyring) => Ok(true),
            (None, SecretPlace::Redis) => Ok(false),
        }
    }

    /// The file the secret is saved in when the keyring is not used.
    pub fn file(&self) -> PathBuf {
        self.store_dir.join(format!("{}.secret", self.profile))
    }

    /// Saves `secret`: in the keyring when a store-then-read round trip works there, else in the file.
    /// The copy in the other place, if any, is deleted.
    pub fn save(&self, secret: &ClientSecret) -> Result<SecretPlace, Failure> {
        if let Some(redis) = &self.redis {
            redis.save_secret(&self.profile, secret)?;
            return Ok(SecretPlace::Redis);
        }
        if self.keyring {
            match os_keyring::store(&self.account(), secret) {
                Ok(()) => {
                    self.remove_file()?;
                    return Ok(SecretPlace::Keyring);
                }
                Err(why) => {
                    tracing::debug!(
                        "the OS keyring is not usable ({why}); saving the client secret in a file"
                    );
                    let _ = os_keyring::delete(&self.account());
                }
            }
        }
        erpnet_oauth_store::write_private_file(&self.file(), secret.secret().as_bytes()).map_err(|e| {
            Failure::usage(format!(
                "cannot save the client secret in {}: {}",
                self.file().display(),
                store_error_text(e)
            ))
        })?;
        Ok(SecretPlace::File)
    }

    /// The secret saved at `place`; `None` when it is not there (or is in a keyring this process does not
    /// use).
    pub fn load(&self, place: SecretPlace) -> Result<Option<ClientSecret>, Failure> {
        if let Some(redis) = &self.redis {
            return match place {
                SecretPlace::Redis => redis.load_secret(&self.profile),
                // Never saved on this machine for a Redis profile.
                SecretPlace::Keyring | SecretPlace::File => Ok(None),
            };
        }
        match place {
            SecretPlace::Redis => Ok(None),
            SecretPlace::Keyring if !self.keyring => Ok(None),
            SecretPlace::Keyring => os_keyring::load(&self.account()).map_err(|why| {
                Failure::usage(format!(
                    "cannot read the client secret of the profile `{}` from the OS keyring ({why}): pass \
                     --client-secret-file PATH or set ERPNET_CLIENT_SECRET",
                    self.profile
                ))
            }),
            SecretPlace::File => self.load_file(),
        }
    }

    fn load_file(&self) -> Result<Option<ClientSecret>, Failure> {
        let path = self.file();
        let unusable = |why: String| {
            Failure::usage(format!(
                "the saved client secret {} is not usable ({why}): delete it and log in again, or pass \
                 --client-secret-file PATH",
                path.display()
            ))
        };
        let bytes = match erpnet_oauth_store::read_private_file(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e @ StoreError::Symlink { .. }) => return Err(Failure::usage(e.to_string())),
            Err(e) => return Err(unusable(store_error_text(e))),
        };
        // The error says what is wrong with the file, never what it holds.
        let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8 text".to_owned()))?;
        if text.is_empty() {
            return Err(unusable("empty".to_owned()));
        }
        Ok(Some(ClientSecret::new(text)))
    }

    /// Deletes the saved secret: the file, and the keyring entry when `place` says it is there.
    pub fn remove(&self, place: Option<SecretPlace>) -> Result<(), Failure> {
        if let Some(redis) = &self.redis {
            return redis.remove_secret(&self.profile);
        }
        if place == Some(SecretPlace::Keyring) && self.keyring {
            os_keyring::delete(&self.account()).map_err(|why| {
                Failure::usage(format!(
                    "cannot delete the client secret of the profile `{}` from the OS keyring ({why})",
                    self.profile
                ))
            })?;
        }
        self.remove_file()
    }

    /// Deletes the file (a symbolic link there is deleted, not its target).
    fn remove_file(&self) -> Result<(), Failure> {
        match std::fs::remove_file(self.file()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failure::usage(format!("cannot delete {}: {e}", self.file().display()))),
        }
    }

    /// The keyring account: the profile and the store directory, so that two stores keep their secrets
    /// apart.
    fn account(&self) -> String {
        let dir = std::path::absolute(&self.store_dir).unwrap_or_else(|_| self.store_dir.clone());
        format!("{}@{}", self.profile, dir.display())
    }
}

fn store_error_text(e: StoreError) -> String {
    match e {
        StoreError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The OS keyring through the `keyring` crate. Compiled everywhere (so it is checked everywhere), used only
/// where [`SUPPORTED`](os_keyring::SUPPORTED) says so. Its errors are reduced to the OS's own message:
/// nothing here ever formats a secret.
mod os_keyring {
    use erpnet_oauth_core::ClientSecret;

    /// Whether this build talks to an OS keyring (see the module docs of the parent for why not on Linux).
    pub const SUPPORTED: bool = cfg!(any(target_os = "macos", target_os = "windows"));

    const SERVICE: &str = "erpnet-oauth";

    fn entry(account: &str) -> Result<keyring::Entry, String> {
        keyring::Entry::new(SERVICE, account).map_err(describe)
    }

    /// Stores `secret`, then reads it back: the keyring is usable only if the round trip gives it back.
    pub fn store(account: &str, secret: &ClientSecret) -> Result<(), String> {
        let entry = entry(account)?;
        entry.set_password(secret.secret()).map_err(describe)?;
        let back = entry.get_password().map_err(describe)?;
        if back != secret.secret() {
            return Err("the secret read back differs from the one stored".to_owned());
        }
        Ok(())
    }

    pub fn load(account: &str) -> Result<Option<ClientSecret>, String> {
        match entry(account)?.get_password() {
            Ok(secret) if !secret.is_empty() => Ok(Some(ClientSecret::new(secret))),
            Ok(_) | Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(describe(e)),
        }
    }

    pub fn delete(account: &str) -> Result<(), String> {
        match entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(describe(e)),
        }
    }

    /// What went wrong, without the keyring's Debug (`BadEncoding` holds the bytes it read).
    fn describe(e: keyring::Error) -> String {
        let text = match e {
            keyring::Error::PlatformFailure(e) | keyring::Error::NoStorageAccess(e) => e.to_string(),
            keyring::Error::NoEntry => "no entry".to_owned(),
            keyring::Error::BadEncoding(_) => "the stored value is not UTF-8".to_owned(),
            keyring::Error::TooLong(name, _) => format!("the {name} is too long for this keyring"),
            keyring::Error::Invalid(name, _) => format!("the {name} is not valid for this keyring"),
            keyring::Error::Ambiguous(_) => "several entries match".to_owned(),
            _ => "an unknown keyring error".to_owned(),
        };
        erpnet_oauth_core::escape(&text).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_keyring(k: &str) -> Option<String> {
        (k == NO_KEYRING_ENV).then(|| "1".to_owned())
    }

    #[test]
    fn the_keyring_is_kept_out_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!SavedSecret::new(dir.path(), "p", no_keyring).keyring);
        for off in ["", "0"] {
            let env = |k: &str| (k == NO_KEYRING_ENV).then(|| off.to_owned());
            assert_eq!(SavedSecret::new(dir.path(), "p", env).keyring, os_keyring::SUPPORTED, "{off:?}");
        }
    }

    #[test]
    fn saved_in_a_private_file_read_back_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedSecret::new(dir.path(), "work", no_keyring);
        assert_eq!(saved.file(), dir.path().join("work.secret"));
        assert_eq!(saved.load(SecretPlace::File).unwrap().map(|s| s.secret().to_owned()), None);
        let place = saved.save(&ClientSecret::new("s3cret value")).unwrap();
        assert_eq!(place, SecretPlace::File);
        assert_eq!(std::fs::read(saved.file()).unwrap(), b"s3cret value", "as is, no newline");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(saved.file()).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let back = saved.load(SecretPlace::File).unwrap().unwrap();
        assert_eq!(back.secret(), "s3cret value");
        assert!(!format!("{saved:?} {back:?}").contains("s3cret"), "Debug shows no secret");
        // In a keyring this process does not use: not there.
        assert!(saved.load(SecretPlace::Keyring).unwrap().is_none());
        saved.remove(Some(SecretPlace::File)).unwrap();
        assert!(!saved.file().exists());
        saved.remove(None).unwrap();
    }

    #[test]
    fn an_unusable_file_is_an_error_that_does_not_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedSecret::new(dir.path(), "p", no_keyring);
        std::fs::write(saved.file(), b"").unwrap();
        let e = saved.load(SecretPlace::File).unwrap_err();
        assert_eq!(e.code, crate::exit::Code::Usage);
        assert!(e.message.contains("empty") && e.message.contains("p.secret"), "{e}");
        std::fs::write(saved.file(), b"s3cret\xff").unwrap();
        let e = saved.load(SecretPlace::File).unwrap_err();
        assert!(e.message.contains("not UTF-8") && !e.message.contains("s3cret"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let saved = SavedSecret::new(dir.path(), "p", no_keyring);
        std::os::unix::fs::symlink(&target, saved.file()).unwrap();
        let e = saved.load(SecretPlace::File).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        // Saving replaces the link, never writes through it; removing deletes the link, not its target.
        saved.save(&ClientSecret::new("new")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(saved.file()).unwrap().file_type().is_symlink());
        std::fs::remove_file(saved.file()).unwrap();
        std::os::unix::fs::symlink(&target, saved.file()).unwrap();
        saved.remove(Some(SecretPlace::File)).unwrap();
        assert!(std::fs::symlink_metadata(saved.file()).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn the_place_is_named_in_the_profile_file() {
        assert_eq!(serde_json::to_string(&SecretPlace::Keyring).unwrap(), "\"keyring\"");
        assert_eq!(serde_json::from_str::<SecretPlace>("\"file\"").unwrap(), SecretPlace::File);
        assert_eq!(SecretPlace::File.as_str(), "file");
        assert_eq!(serde_json::to_string(&SecretPlace::Redis).unwrap(), "\"redis\"");
    }
}
