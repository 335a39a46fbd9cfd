//! How every driver reports the client's errors, so that one case's expected texts hold for all three.
//!
//! The core's [`Error`] is the one error type of the lifecycle operations and of both adapters. A case
//! writes an error as the phase error's `Debug` (`StateMismatch`, `OAuth { .. }`, `BadSignature { .. }`,
//! `IdTokenRejected(..)`): [`describe`] unwraps the phase (`Callback(e)`, `Token(e)`, `Refresh(e)`...). A
//! transport failure the script injected is reported as `Transport("<scripted reason>")` when the error is
//! of the matching kind (`Timeout` for a `timeout`, `Io`/`Connect`/`Http` for a dropped connection; a
//! `Refresh(Transport(..))` of a caller that waited for the failed renewal likewise); otherwise, and for
//! errors of the transport alone (`BodyTooLarge`), the error's own `Debug` shows.

use super::driver::{CallOutcome, Harness};
use erpnet_oauth_core::lifecycle::{Logout, Revocation};
use erpnet_oauth_core::{Error, RefreshError};

/// Whether a scripted transport failure is a timeout (an adapter's mock then never answers).
pub(super) fn is_timeout(reason: &str) -> bool {
    reason.contains("timeout") || reason.contains("timed out")
}

/// The scripted transport failure as the cases write it, `Transport("<reason>")`, when the last one
/// injected is of the kind the client saw (`timeout`: it timed out; otherwise: the connection failed).
pub(super) fn scripted(injected: &[String], timeout: bool) -> Option<String> {
    injected.last().filter(|r| is_timeout(r) == timeout).map(|r| format!("Transport({r:?})"))
}

/// The error the core driver feeds to the core for a scripted transport failure: what an adapter's HTTP
/// client reports for it.
pub(super) fn transport_error(reason: &str) -> Error {
    if is_timeout(reason) { Error::Timeout(reason.to_owned()) } else { Error::Io(reason.to_owned()) }
}

/// `err` as the cases write errors (see the module docs); `injected` are the transport failures the
/// script injected during the action.
pub(super) fn describe(err: &Error, injected: &[String]) -> String {
    let mapped = match err {
        Error::Config(e) => Some(format!("{e:?}")),
        Error::Build(e) => Some(format!("{e:?}")),
        Error::Callback(e) => Some(format!("{e:?}")),
        Error::Token(e) => Some(format!("{e:?}")),
        Error::IdToken(e) => Some(format!("{e:?}")),
        Error::Jwks(e) => Some(format!("{e:?}")),
        Error::Discovery(e) => Some(format!("{e:?}")),
        Error::Revocation(e) => Some(format!("{e:?}")),
        Error::Api(e) => Some(format!("{e:?}")),
        Error::Refresh(RefreshError::Transport(reason)) => scripted(injected, is_timeout(reason)),
        Error::Refresh(e) => Some(format!("{e:?}")),
        Error::Timeout(_) => scripted(injected, true),
        Error::Io(_) | Error::Connect(_) | Error::Http(_) => scripted(injected, false),
        _ => None,
    };
    mapped.unwrap_or_else(|| format!("{err:?}"))
}

/// How an API call ended, as the runner judges it.
pub(super) fn call_outcome<T>(result: &Result<T, Error>, injected: &[String]) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(e) => CallOutcome::Failed {
            error: describe(e, injected),
            retryable: e.is_retryable(),
            login_required: e.is_login_required(),
        },
    }
}

/// A logout's revocation as a `revoke` step judges it: the error and whether it is retryable. A logout
/// that failed (its store could not be locked or cleared) is a harness problem: the stores here never fail.
pub(super) fn revocation(
    result: Result<Logout, Error>,
    injected: &[String],
) -> Harness<Result<(), (String, bool)>> {
    let logout = result.map_err(|e| format!("the logout failed: {e}"))?;
    Ok(match logout.revocation {
        Revocation::Revoked => Ok(()),
        Revocation::NothingToRevoke => Err(("NoRefreshToken".to_owned(), false)),
        Revocation::NotOffered => Err(("NotOffered".to_owned(), false)),
        Revocation::Failed(e) => Err((describe(&e, injected), e.is_retryable())),
        _ => Err(("an unknown revocation outcome".to_owned(), false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripted_failure_is_reported_only_for_its_kind() {
        let timed_out = vec!["connection reset".to_owned(), "timeout".to_owned()];
        assert_eq!(scripted(&timed_out, true).as_deref(), Some(r#"Transport("timeout")"#));
        assert_eq!(scripted(&timed_out, false), None);
        assert_eq!(scripted(&[], true), None);
        let dropped = vec!["connection reset".to_owned()];
        assert_eq!(scripted(&dropped, false).as_deref(), Some(r#"Transport("connection reset")"#));
    }

    #[test]
    fn a_transport_error_is_the_scripted_one_only_when_its_kind_matches() {
        let timeout = Error::Timeout("global".to_owned());
        let io = Error::Io("connection reset by peer".to_owned());
        let closed = Error::Http("connection closed before message completed".to_owned());
        let timed_out = vec!["timeout".to_owned()];
        let dropped = vec!["connection reset".to_owned()];
        assert_eq!(describe(&timeout, &timed_out), r#"Transport("timeout")"#);
        assert_eq!(describe(&io, &dropped), r#"Transport("connection reset")"#);
        assert_eq!(describe(&closed, &dropped), r#"Transport("connection reset")"#);
        assert_eq!(
            describe(&Error::Connect("refused".to_owned()), &dropped),
            r#"Transport("connection reset")"#
        );
        // A kind other than the one injected, or nothing injected: the error's own Debug.
        assert_eq!(describe(&timeout, &dropped), r#"Timeout("global")"#);
        assert_eq!(describe(&io, &timed_out), r#"Io("connection reset by peer")"#);
        assert_eq!(describe(&io, &[]), r#"Io("connection reset by peer")"#);
        let waited = Error::Refresh(RefreshError::Transport("the request timed out (global)".to_owned()));
        assert_eq!(describe(&waited, &timed_out), r#"Transport("timeout")"#);
        assert!(describe(&waited, &dropped).starts_with("Refresh(Transport("));
        assert_eq!(describe(&Error::BodyTooLarge { limit: 9 }, &[]), "BodyTooLarge { limit: 9 }");
        // What the core driver feeds for a scripted failure is reported as the script wrote it.
        assert_eq!(describe(&transport_error("timeout"), &timed_out), r#"Transport("timeout")"#);
        assert_eq!(
            describe(&transport_error("connection reset"), &dropped),
            r#"Transport("connection reset")"#
        );
    }
}
