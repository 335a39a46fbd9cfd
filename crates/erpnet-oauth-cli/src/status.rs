//! `erpnet-oauth status`: the stored login of a profile (its saved settings and tokens, never a token or
//! secret), where the flags and environment disagree with it, and whether `token` could use it; with
//! `--all`, every profile of the store.

use crate::args::Global;
use crate::commands::{json_line, print_line};
use crate::errors::failure;
use crate::exit::Failure;
use crate::saved_secret::SecretPlace;
use crate::settings::{Settings, same_instance};
use crate::store::Store;
use crate::time::rfc3339;
use erpnet_oauth_core::id_token::UnverifiedClaims;
use erpnet_oauth_core::{Error, IssuedTo, StoreError, StoreFile, escape};
use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `status` (`all`: every profile of the store).
pub fn run(
    global: &Global,
    env: impl Fn(&str) -> Option<String>,
    json: bool,
    all: bool,
) -> Result<(), Failure> {
    if all {
        return run_all(global, env, json);
    }
    let settings = Settings::resolve(global, env)?;
    let report = Report::of(&settings, true)?;
    if json {
        print_line(&json_line(&report.json()))?;
    } else {
        print_line(&report.human())?;
    }
    match report.problem {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// `status --all`: each profile judged by its own saved settings (the flags and environment variables that
/// name a login are not compared with each); exit 0 whatever their state.
fn run_all(global: &Global, env: impl Fn(&str) -> Option<String>, json: bool) -> Result<(), Failure> {
    let store = Store::resolve(global, &env)?;
    let mut reports = Vec::new();
    for name in store.profiles()? {
        let mut one = global.clone();
        one.profile = name.clone();
        (one.instance, one.client_id, one.redirect_uri, one.scope, one.client_secret_file) =
            (None, None, None, None, None);
        let env = |k: &str| (k != "ERPNET_CLIENT_SECRET").then(|| env(k)).flatten();
        let report = Settings::resolve_in(&one, env, store.clone()).and_then(|s| Report::of(&s, false));
        match report {
            Ok(report) => reports.push(report),
            // One broken profile does not hide the others.
            Err(e) => eprintln!("erpnet-oauth: warning: profile `{name}`: {e}"),
        }
    }
    if json {
        let array = serde_json::Value::Array(reports.iter().map(Report::json).collect());
        print_line(&json_line(&array))
    } else if reports.is_empty() {
        eprintln!("No profiles in {}: run `erpnet-oauth login`", store.describe());
        Ok(())
    } else {
        let blocks: Vec<String> = reports.iter().map(Report::human).collect();
        print_line(&blocks.join("\n\n"))
    }
}

/// A setting given by a flag or an environment variable that differs from the stored login's.
#[derive(Debug)]
struct Mismatch {
    setting: &'static str,
    stored: String,
    given: String,
}

/// What `status` says about one profile.
#[derive(Debug)]
struct Report {
    profile: String,
    instance: Option<String>,
    client_id: Option<String>,
    subject: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<u64>,
    has_tokens: bool,
    has_refresh_token: bool,
    secret: Option<SecretPlace>,
    secret_file: String,
    confidential: bool,
    mismatches: Vec<Mismatch>,
    /// Why the stored tokens cannot be used now (then `logged_in` is false), as the failure `status`
    /// ends with: exit 3 for "log in", exit 2 for settings that do not fit the stored login.
    problem: Option<Failure>,
    /// The problem in a few words, for the human form.
    why_not: &'static str,
}

impl Report {
    /// The report on `settings`' profile; `compare`: list the flags' and environment's disagreements with it.
    fn of(settings: &Settings, compare: bool) -> Result<Report, Failure> {
        let saved = settings.saved.as_ref();
        let file = read_token_file(settings)?;
        let record = file.as_ref().and_then(|f| {
            f.issued_to.clone().or_else(|| f.tokens.id_token.as_ref().and_then(IssuedTo::from_id_token))
        });
        // The stored login: what the profile says, else what the token file records.
        let instance = saved.map(|s| s.instance.clone()).or_else(|| {
            record.as_ref().map(|r| r.issuer.strip_suffix("/id").unwrap_or(&r.issuer).to_owned())
        });
        let client_id =
            saved.map(|s| s.client_id.clone()).or_else(|| record.as_ref().map(|r| r.client_id.clone()));
        let tokens = file.as_ref().map(|f| &f.tokens);
        let subject = tokens
            .and_then(|t| t.id_token.as_ref())
            .and_then(|t| UnverifiedClaims::decode(t).ok())
            .and_then(|c| c.value.get("sub").and_then(|s| s.as_str()).map(str::to_owned));
        let scopes: Vec<String> =
            tokens.map(|t| t.scopes.iter().map(str::to_owned).collect()).unwrap_or_default();
        let expires_at = tokens.and_then(|t| t.expires_at).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let has_refresh_token = tokens.is_some_and(|t| t.refresh_token.is_some());
        let secret_file = settings.saved_secret.file();
        // Where the secret is, as the profile records it (a file that is gone is not there).
        let secret = match saved.and_then(|s| s.secret) {
            Some(place) if settings.saved_secret.present(place)? => Some(place),
            _ => None,
        };

        let mut mismatches = Vec::new();
        if compare {
            let given = &settings.given;
            let mut differ = |setting,
                              stored: Option<&str>,
                              given: Option<&str>,
                              same: fn(&str, &str) -> bool| {
                if let (Some(stored), Some(given)) = (stored, given)
                    && !same(stored, given)
                {
                    mismatches.push(Mismatch { setting, stored: stored.to_owned(), given: given.to_owned() });
                }
            };
            differ("instance", instance.as_deref(), given.instance.as_deref(), same_instance);
            differ("client_id", client_id.as_deref(), given.client_id.as_deref(), |a, b| a == b);
            differ("scope", saved.and_then(|s| s.scope.as_deref()), given.scope.as_deref(), |a, b| {
                a.split_whitespace().collect::<BTreeSet<_>>() == b.split_whitespace().collect::<BTreeSet<_>>()
            });
            differ(
                "redirect_uri",
                saved.and_then(|s| s.redirect_uri.as_deref()),
                given.redirect_uri.as_deref(),
                |a, b| a == b,
            );
        }

        let has_tokens = tokens.is_some();
        let (problem, why_not) = match problem(settings, file, &mismatches, secret) {
            Some((problem, why)) => (Some(problem), why),
            None => (None, ""),
        };
        Ok(Report {
            profile: settings.profile.clone(),
            instance,
            client_id,
            subject,
            scopes,
            expires_at: expires_at.map(|d| d.as_secs()),
            has_tokens,
            has_refresh_token,
            secret,
            secret_file: secret_file.display().to_string(),
            confidential: saved.is_some_and(|s| s.confidential),
            mismatches,
            problem,
            why_not,
        })
    }

    fn logged_in(&self) -> bool {
        self.problem.is_none()
    }

    fn json(&self) -> serde_json::Value {
        let mismatches: Vec<serde_json::Value> = self
            .mismatches
            .iter()
            .map(|m| serde_json::json!({"setting": m.setting, "stored": m.stored, "given": m.given}))
            .collect();
        serde_json::json!({
            "profile": self.profile,
            "logged_in": self.logged_in(),
            "instance": self.instance,
            "client_id": self.client_id,
            "subject": self.subject,
            "scopes": self.scopes,
            "access_token_expires_at": self.expires_at,
            "access_token_expires_at_rfc3339": self.expires_at.map(rfc3339),
            "has_refresh_token": self.has_refresh_token,
            "secret": self.secret.map(SecretPlace::as_str),
            "mismatches": mismatches,
        })
    }

    fn human(&self) -> String {
        let or_none =
            |v: Option<&str>| v.map_or_else(|| "(none stored)".to_owned(), |v| escape(v).into_owned());
        let mut lines = vec![
            format!("profile:       {}", self.profile),
            format!("instance:      {}", or_none(self.instance.as_deref())),
            format!("client id:     {}", or_none(self.client_id.as_deref())),
        ];
        if self.has_tokens {
            // The subject and the scopes are the server's text (issue 13).
            let subject = self.subject.as_deref().map_or("(unknown: no ID token)".into(), escape);
            lines.push(format!("subject:       {subject}"));
            lines.push(format!("scopes:        {}", escape(&self.scopes.join(" "))));
            lines.push(format!(
                "access token:  {}",
                match self.expires_at {
                    Some(at) => {
                        let now =
                            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                        if at > now {
                            format!("expires at {at} (Unix time, {}), in {} s", rfc3339(at), at - now)
                        } else {
                            format!("expired at {at} (Unix time, {}); the next use refreshes it", rfc3339(at))
                        }
                    }
                    None => "expiry unknown".to_owned(),
                }
            ));
            lines.push(format!("refresh token: {}", if self.has_refresh_token { "held" } else { "none" }));
        }
        lines.push(format!(
            "client secret: {}",
            match self.secret {
                Some(SecretPlace::Keyring) => "saved in the OS keyring".to_owned(),
                Some(SecretPlace::File) => format!("saved in {}", self.secret_file),
                Some(SecretPlace::Redis) => "saved in the Redis store, encrypted".to_owned(),
                None if self.confidential => {
                    "not saved: pass --client-secret-file PATH or set ERPNET_CLIENT_SECRET".to_owned()
                }
                None => "none".to_owned(),
            }
        ));
        lines.push(format!(
            "logged in:     {}",
            match &self.problem {
                None => "yes".to_owned(),
                Some(_) => format!("no ({})", self.why_not),
            }
        ));
        for m in &self.mismatches {
            lines.push(format!(
                "mismatch:      {}: stored {}, given {}",
                m.setting,
                escape(&m.stored),
                escape(&m.given)
            ));
        }
        lines.join("\n")
    }
}

/// Why `token` could not use the stored tokens with the settings in effect (`None`: it could), with the
/// reason in a few words. `secret`: where the profile's secret is saved (and is there).
fn problem(
    settings: &Settings,
    file: Option<StoreFile>,
    mismatches: &[Mismatch],
    secret: Option<SecretPlace>,
) -> Option<(Failure, &'static str)> {
    const ANOTHER_LOGIN: &str = "the stored login is not the one the settings given name";
    const LOG_IN: &str = "run `erpnet-oauth login`";
    let not_logged_in = || {
        Failure::login_required(format!(
            "not logged in (profile `{}`): run `erpnet-oauth login`",
            settings.profile
        ))
    };
    let Some(file) = file else { return Some((not_logged_in(), LOG_IN)) };
    if mismatches.iter().any(|m| matches!(m.setting, "instance" | "client_id"))
        && let Err(e) = settings.check_saved_matches()
    {
        return Some((e, ANOTHER_LOGIN));
    }
    // Without an instance and a client id, `token` could not use the tokens either.
    let Some(expected) = settings.issued_to() else {
        let e = settings.instance().and_then(|_| settings.client_id()).err().unwrap_or_else(not_logged_in);
        return Some((e, "no instance or client id: pass them"));
    };
    let tokens = match file.tokens_for(&expected) {
        Ok(tokens) => tokens,
        Err(stored) => {
            let e = StoreError::IssuedToAnother { path: settings.token_path(), stored, expected };
            return settings.store_failure(&e).map(|e| (e, ANOTHER_LOGIN));
        }
    };
    // A confidential login with no secret given and none saved: `token` stops before any request.
    let confidential = settings.saved_for_this_client().is_some_and(|s| s.confidential);
    if confidential && settings.given_secret.is_none() && secret.is_none() {
        return Some((settings.needs_secret(), "its client secret is needed: see the error line"));
    }
    let expired = tokens.expires_at.is_some_and(|at| at <= SystemTime::now());
    if expired && tokens.refresh_token.is_none() {
        let e = Failure::login_required(
            "the access token has expired and there is no refresh token: run `erpnet-oauth login`",
        );
        return Some((e, LOG_IN));
    }
    None
}

/// The profile's stored tokens, unbound (the report judges whom they were issued to); `None` when there
/// are none. A store that cannot be read or holds no tokens is an error, as for every other command.
fn read_token_file(settings: &Settings) -> Result<Option<StoreFile>, Failure> {
    settings
        .store
        .token_record(&settings.profile, settings.issued_to().as_ref())
        .map_err(|e| failure(Error::Store(e)))
}
