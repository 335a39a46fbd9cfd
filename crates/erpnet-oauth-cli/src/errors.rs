//! From the adapter's typed errors to the documented exit codes, with a hint of what to do next.

use crate::exit::{Code, Failure};
use erpnet_oauth_core::{LoginRequired, RefreshError, TokenError};
use erpnet_oauth_ureq::{Error, StoreError};

/// The failure for `error`: its exit code and one line.
pub fn failure(error: Error) -> Failure {
    match &error {
        Error::Refresh(RefreshError::LoginRequired(reason)) => Failure::login_required(match reason {
            LoginRequired::Rejected(e) => format!(
                "the refresh token was rejected ({}): run `erpnet-oauth login` again",
                erpnet_oauth_core::escape(&e.error)
            ),
            LoginRequired::NoTokens => "not logged in: run `erpnet-oauth login`".to_owned(),
            LoginRequired::NoRefreshToken => {
                "the access token has expired and there is no refresh token (was `offline_access` requested?): \
                 run `erpnet-oauth login`"
                    .to_owned()
            }
            _ => format!("{error}: run `erpnet-oauth login`"),
        }),
        // A refreshed ID token failed a security check: the server broke the protocol, and the login was
        // ended (the stored tokens were deleted).
        Error::Refresh(RefreshError::IdTokenRejected(_)) => {
            Failure::server(format!("{error}: run `erpnet-oauth login` again"))
        }
        Error::Refresh(RefreshError::Transport(_)) => Failure::network(format!("{error}; try again")),
        // A shared store (Redis) unreachable, locked by another process for too long, or changed by
        // another process while this one's lock had run out: nothing was lost; retry.
        Error::Store(e) if e.is_retryable() => Failure::network(error.to_string()),
        Error::Refresh(RefreshError::Persist(f)) if f.retryable => {
            Failure::network(format!("{error}; try again"))
        }
        Error::Store(StoreError::Decrypt { .. }) => Failure::usage(format!(
            "{error}; pass the store key they were saved with (--store-key-file or \
             ERPNET_OAUTH_STORE_KEY_FILE), or run `erpnet-oauth login` to replace them"
        )),
        // Corrupt tokens: the message says to log in again (which replaces them) or delete them.
        Error::Store(StoreError::Other(_) | StoreError::Corrupt { .. }) => Failure::usage(error.to_string()),
        // A link in the store directory, a directory others can change, tokens of another login: the
        // message says what to do.
        Error::Store(
            StoreError::Symlink { .. }
            | StoreError::DirectoryWritableByOthers { .. }
            | StoreError::DirectoryOwnedByOther { .. }
            | StoreError::NotADirectory { .. }
            | StoreError::IssuedToAnother { .. },
        ) => Failure::usage(error.to_string()),
        Error::Refresh(RefreshError::Persist(_)) | Error::Store(_) => {
            Failure::usage(format!("{error}; check that --store points to a writable directory"))
        }
        _ if is_invalid_client(&error) => Failure::server(format!(
            "{error}; check the client secret (ERPNET_CLIENT_SECRET or --client-secret-file) and --client-id"
        )),
        Error::Refresh(_) | Error::Token(_) | Error::Callback(_) | Error::Api(_) | Error::BodyTooLarge { .. } => {
            Failure::server(error.to_string())
        }
        Error::Dns(_) | Error::Connect(_) | Error::Tls(_) | Error::Timeout(_) | Error::Io(_) => {
            Failure::network(format!("{error}; check --instance and the network (--timeout sets the limit)"))
        }
        Error::Config(_) | Error::Build(_) | Error::Listener(_) => Failure::usage(error.to_string()),
        Error::LoginTimeout(_) => Failure::login_required(format!("{error}; run `erpnet-oauth login` again")),
        Error::Cancelled => Failure::login_required("login cancelled; no tokens were stored"),
        _ => Failure::server(error.to_string()),
    }
}

/// Whether the token endpoint refused the client itself (a wrong or missing secret, an unknown client id).
fn is_invalid_client(error: &Error) -> bool {
    match error {
        Error::Token(t) | Error::Refresh(RefreshError::Token(t)) => {
            matches!(t, TokenError::OAuth { error, .. } if error.is("invalid_client"))
        }
        _ => false,
    }
}

/// The failure for a discovery document that could not be had from `url`: exit 5 when no answer came
/// (network), else exit 4 (an answer other than 200, or a document refused); the line names the URL and
/// what to do.
pub fn discovery_failure(url: &str, error: Error) -> Failure {
    let what = error.to_string();
    if failure(error).code == Code::Network {
        Failure::network(format!(
            "cannot fetch the discovery document {url}: {what}; check --instance and the network \
             (--timeout sets the limit)"
        ))
    } else {
        Failure::server(format!(
            "no valid discovery document at {url}: {what}; check --instance (the instance's base URL, \
             e.g. https://demodb.my.erp.net, without /id), or pass --no-discovery to use ERP.net's fixed paths"
        ))
    }
}
