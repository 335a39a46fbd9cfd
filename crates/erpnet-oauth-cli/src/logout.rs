//! `erpnet-oauth logout`: revokes the refresh token where the server offers revocation, then deletes the
//! stored tokens, whatever the server said. The profile's settings (and saved secret) stay for the next
//! `login`; `--forget` deletes them too.

use crate::commands::open_session;
use crate::errors::failure;
use crate::exit::{Code, Failure};
use crate::settings::{self, Settings};
use crate::store::Store;
use erpnet_oauth_ureq::{Error, Revocation, StoreError, TokenStore as _};

/// Logs the profile out; `forget`: its settings and saved secret go too.
pub fn run(settings: &Settings, forget: bool) -> Result<(), Failure> {
    let store = settings.unbound_token_store();
    let mut corrupt = false;
    let revocation = match store.load() {
        Ok(None) => None,
        // Nothing in it can be revoked; deleting it is what the user can do about it.
        Err(StoreError::Corrupt { reason, .. } | StoreError::Decrypt { reason, .. }) => {
            let what = match &settings.store {
                Store::Dir(_) => format!("the token file {} is corrupt", settings.token_path().display()),
                Store::Redis(_) => format!(
                    "the tokens at {} in {} cannot be read",
                    settings.token_path().display(),
                    settings.store.describe()
                ),
            };
            eprintln!(
                "erpnet-oauth: warning: {what} ({}): deleting {}; nothing was revoked at the server",
                erpnet_oauth_core::escape(&reason),
                if matches!(settings.store, Store::Dir(_)) { "it" } else { "them" }
            );
            store.clear().map_err(|e| failure(e.into()))?;
            corrupt = true;
            None
        }
        Err(e) => return Err(failure(e.into())),
        Ok(Some(_)) => {
            // Everything that can stop the logout is checked before anything is deleted: tokens of another
            // login, a confidential profile's missing secret (revoking without it would fail, leaving the
            // refresh token live).
            let session = open_session(settings)?;
            Some(session.logout().map_err(failure)?.revocation)
        }
    };
    if forget {
        let place = settings.saved.as_ref().and_then(|s| s.secret);
        settings.saved_secret.remove(place)?;
        settings::remove_profile(settings)?;
        settings.store.forget_tokens(&settings.profile)?;
    }
    let kept = if forget {
        "its settings and saved client secret were deleted too"
    } else {
        "its settings are kept for the next `erpnet-oauth login` (`logout --forget` deletes them)"
    };
    let not_revoked = match revocation {
        None if corrupt => {
            eprintln!(
                "Logged out (profile `{}`): the {} deleted; {kept}",
                settings.profile,
                if matches!(settings.store, Store::Dir(_)) {
                    "corrupt token file was"
                } else {
                    "unreadable tokens were"
                }
            );
            return Ok(());
        }
        None => {
            eprintln!("Not logged in (profile `{}`): no tokens to delete; {kept}", settings.profile);
            return Ok(());
        }
        Some(Revocation::Revoked) => {
            eprintln!("Revoked the refresh token at the server");
            None
        }
        Some(Revocation::NotOffered) => {
            eprintln!(
                "erpnet-oauth: warning: the server offers no revocation endpoint: the refresh token may still be \
                 live there until it expires"
            );
            None
        }
        Some(Revocation::Failed(e)) => Some(e),
        Some(_) => None,
    };
    eprintln!("Logged out (profile `{}`): the stored tokens were deleted; {kept}", settings.profile);
    match not_revoked {
        None => Ok(()),
        Some(e) => {
            // 5: the server could not be reached; 4: it answered with an error.
            let unreachable = matches!(
                e,
                Error::Dns(_) | Error::Connect(_) | Error::Tls(_) | Error::Timeout(_) | Error::Io(_)
            );
            let code = if unreachable { Code::Network } else { Code::Server };
            Err(Failure {
                code,
                message: format!(
                    "the refresh token could not be revoked at the server ({e}): it may still be live there until \
                     it expires; the stored tokens were deleted locally"
                ),
            })
        }
    }
}
