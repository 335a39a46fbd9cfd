//! `erpnet-oauth logout`: revokes the refresh token where the server offers revocation, then deletes the
//! stored tokens, whatever the server said. The profile's settings (and saved secret) stay for the next
//! `login`; `--forget` deletes them too.

use crate::commands::open_session;
use crate::errors::failure;
use crate::exit::{Code, Failure};
use crate::settings::{self, Settings};
use erpnet_oauth_ureq::{Error, FileStore, Revocation, StoreError};

/// Logs the profile out; `forget`: its settings and saved secret go too.
pub fn run(settings: &Settings, forget: bool) -> Result<(), Failure> {
    let store = FileStore::new(settings.token_path());
    let mut corrupt = false;
    let revocation = match store.load() {
        Ok(None) => None,
        // Nothing in it can be revoked; deleting it is what the user can do about it.
        Err(StoreError::Corrupt { reason, .. }) => {
            eprintln!(
                "erpnet-oauth: warning: the token file {} is corrupt ({}): deleting it; nothing was revoked at \
                 the server",
                settings.token_path().display(),
                erpnet_oauth_core::escape(&reason)
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
    }
    let kept = if forget {
        "its settings and saved client secret were deleted too"
    } else {
        "its settings are kept for the next `erpnet-oauth login` (`logout --forget` deletes them)"
    };
    let not_revoked = match revocation {
        None if corrupt => {
            eprintln!(
                "Logged out (profile `{}`): the corrupt token file was deleted; {kept}",
                settings.profile
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
