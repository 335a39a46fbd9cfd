//! The client secret `login` saves with the profile (issue 14): a confidential app logs in once and
//! `token`, `call`, `refresh` and `logout` use the saved secret; `--no-save-secret` opts out; a profile
//! that needs a secret and has none is a usage error before any request. The tests keep the OS keyring out
//! (`ERPNET_OAUTH_NO_KEYRING=1`, set by the harness), so the secret goes to the store's 0600 file.

mod common;

use common::*;
use erpnet_oauth_mock::Counters;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=2";

const NEEDS_SECRET: &str = "profile default needs its client secret: pass --client-secret-file PATH or set \
                            ERPNET_CLIENT_SECRET (or log in again to save it)";

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A client secret file holding the demo secret, mode 0600.
fn secret_file(h: &Harness) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let file = h.dir.path().join("client-secret.txt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// The profile file as JSON.
fn profile(h: &Harness) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(h.profile_file()).unwrap()).unwrap()
}

/// `args` on the saved profile alone: `--store`, no other flag, no secret in the environment.
fn no_secret(h: &Harness, args: &[&str]) -> std::process::Command {
    let mut cmd = h.store_only(args);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    cmd
}

#[test]
fn a_confidential_login_saves_the_secret_and_an_hour_later_token_and_call_need_none() {
    let h = Harness::new();
    let file = secret_file(&h);
    let mut cmd = h.cli(&["login", "--no-browser"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET").arg("--client-secret-file").arg(&file);
    let o = h.login_with(cmd);
    let saved_line = format!(
        "Saved the client secret in {} (mode 0600; `erpnet-oauth logout --forget` deletes it)",
        h.secret_file().display()
    );
    assert!(o.stderr.lines().any(|l| l == saved_line), "{o:#?}");
    // The secret as given (the file's newline trimmed), in a private file; the profile says where.
    assert_eq!(std::fs::read(h.secret_file()).unwrap(), SECRET.as_bytes());
    assert_eq!(mode(&h.secret_file()), 0o600);
    let p = profile(&h);
    assert_eq!((p["confidential"].as_bool(), p["secret"].as_str()), (Some(true), Some("file")), "{p}");
    assert!(!std::fs::read_to_string(h.profile_file()).unwrap().contains(SECRET));

    // An hour later (past the access token's lifetime at the server and for the CLI): `token` refreshes
    // with the saved secret, once.
    h.mock().advance_clock(Duration::from_secs(3601));
    h.set_expires_at(now_unix() - 10);
    let at0 = h.access_token().unwrap();
    let o = h.run_token(no_secret(&h, &["token"]));
    o.assert_success();
    let at1 = h.access_token().unwrap();
    assert_ne!(at1, at0);
    assert_eq!(o.stdout, format!("{at1}\n"));
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.invalid_client_errors, c.token_errors), (1, 0, 0), "{c:#?}");

    // Another hour: the server refuses the access token the CLI still thinks good; `call` refreshes once
    // with the saved secret and retries (logged with --verbose: no secret in the log).
    h.mock().advance_clock(Duration::from_secs(3601));
    h.mock().reset_counters();
    let o = h.run(no_secret(&h, &["--verbose", "call", "GET", CUSTOMERS]));
    o.assert_success();
    let json: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(json["value"].as_array().map(Vec::len), Some(2));
    assert!(o.stderr.contains("status=401") && o.stderr.contains("status=200"), "{o:#?}");
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.api_unauthorized, c.api_ok, c.invalid_client_errors), (1, 1, 1, 0));

    // `refresh` and `logout` too.
    h.run(no_secret(&h, &["refresh"])).assert_success();
    let o = h.run(no_secret(&h, &["logout"]));
    o.assert_success();
    let c = h.mock().counters();
    assert_eq!((c.refresh_token_grants, c.revocations, c.invalid_client_errors), (2, 1, 0), "{c:#?}");
    assert!(!h.token_file().exists());
}

#[test]
fn no_save_secret_leaves_no_secret_and_a_later_refresh_names_the_flag_without_sending_anything() {
    let h = Harness::new();
    // A first login saves the secret; a second one with --no-save-secret deletes it.
    h.login();
    assert!(h.secret_file().exists());
    let o = h.login_with(h.cli(&["login", "--no-browser", "--no-save-secret"]));
    assert!(
        o.stderr.contains("The client secret was not saved (--no-save-secret)"),
        "the login says what later commands need: {o:#?}"
    );
    assert!(!h.secret_file().exists(), "the secret saved before is deleted");
    let p = profile(&h);
    assert_eq!(p["confidential"], true, "{p}");
    assert!(p.get("secret").is_none(), "{p}");

    // Exit 2 before any request, naming the flag: with a valid access token too, so that a script does not
    // work for an hour and then fail at the first refresh.
    h.mock().reset_counters();
    let tokens = std::fs::read(h.token_file()).unwrap();
    h.run_token(no_secret(&h, &["token"])).assert_only_error(2, &[NEEDS_SECRET]);
    h.set_expires_at(now_unix() - 10);
    let tokens_expired = std::fs::read(h.token_file()).unwrap();
    assert_ne!(tokens, tokens_expired);
    for args in [&["token"][..], &["call", "GET", CUSTOMERS], &["refresh"]] {
        let o = h.run_token(no_secret(&h, args));
        o.assert_only_error(2, &[NEEDS_SECRET]);
        assert!(o.stdout.is_empty(), "{o:#?}");
    }
    let tokens = tokens_expired;
    assert_eq!(h.mock().counters(), Counters::default(), "no request was sent");
    assert_eq!(std::fs::read(h.token_file()).unwrap(), tokens, "the tokens are kept");
    // `status` agrees: not usable as things are, and why.
    let o = h.run(no_secret(&h, &["status", "--json"]));
    o.assert_only_error(2, &[NEEDS_SECRET]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (v["logged_in"].as_bool(), v["has_refresh_token"].as_bool()),
        (Some(false), Some(true)),
        "{v}"
    );
    assert!(v["secret"].is_null(), "{v}");
    let o = h.run(no_secret(&h, &["status"]));
    o.assert_only_error(2, &[NEEDS_SECRET]);
    let line = "client secret: not saved: pass --client-secret-file PATH or set ERPNET_CLIENT_SECRET";
    assert!(o.stdout.lines().any(|l| l == line), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l.starts_with("logged in:     no (its client secret")), "{o:#?}");
    // With the secret in the environment, the login is usable.
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_success();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["logged_in"], true);

    // Given again, it works (and is still not saved).
    let mut cmd = no_secret(&h, &["token"]);
    cmd.arg("--client-secret-file").arg(secret_file(&h));
    h.run_token(cmd).assert_success();
    assert_eq!(h.mock().counters().refresh_token_grants, 1);
    assert!(!h.secret_file().exists());
}

#[test]
fn a_secret_given_now_wins_over_the_saved_one() {
    let h = Harness::new();
    h.login();
    let wrong = "wrong-secret-Vb7Rk2";
    h.secret(wrong);
    // ERPNET_CLIENT_SECRET before the saved secret.
    let mut cmd = h.store_only(&["refresh"]);
    cmd.env("ERPNET_CLIENT_SECRET", wrong);
    h.run(cmd).assert_only_error(4, &["invalid_client", "ERPNET_CLIENT_SECRET"]);
    // --client-secret-file before ERPNET_CLIENT_SECRET.
    let mut cmd = h.store_only(&["refresh"]);
    cmd.env("ERPNET_CLIENT_SECRET", wrong).arg("--client-secret-file").arg(secret_file(&h));
    h.run(cmd).assert_success();
    let c = h.mock().counters();
    assert_eq!((c.invalid_client_errors, c.refresh_token_grants), (1, 1), "{c:#?}");
    // The saved secret is untouched by commands other than login.
    assert_eq!(std::fs::read(h.secret_file()).unwrap(), SECRET.as_bytes());
}

#[test]
fn the_saved_secret_is_never_sent_to_another_instance() {
    let a = Harness::new();
    a.login();
    // Another mock with the same app and the same secret: had the CLI sent A's saved secret, B's code
    // exchange would succeed.
    let b = Harness::new();
    let mut cmd =
        b.cli_without(&["--store"], &["--store", a.store().to_str().unwrap(), "login", "--no-browser"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    let run = b.start_login(cmd);
    run.browse(&b);
    let o = run.finish();
    a.check_streams(&o, true);
    o.assert_failure(4, &["invalid_client"]);
    assert_eq!(b.mock().counters().invalid_client_errors, 1, "no secret was sent to B");
    // A's login is intact.
    assert_eq!(std::fs::read(a.secret_file()).unwrap(), SECRET.as_bytes());
    a.run_token(no_secret(&a, &["token"])).assert_success();
}

#[test]
fn a_saved_secret_file_that_is_a_link_is_refused_and_its_target_untouched() {
    let h = Harness::new();
    h.login();
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "precious").unwrap();
    std::fs::remove_file(h.secret_file()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, h.secret_file()).unwrap();
    h.set_expires_at(now_unix() - 10);
    h.mock().reset_counters();
    let o = h.run_token(no_secret(&h, &["token"]));
    o.assert_only_error(2, &[h.secret_file().to_str().unwrap(), "symbolic link"]);
    assert_eq!(h.mock().counters(), Counters::default(), "nothing was sent");
    // A new login replaces the link with a file; the link's target is never written.
    h.login();
    assert!(!std::fs::symlink_metadata(h.secret_file()).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(h.secret_file()).unwrap(), SECRET.as_bytes());
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "precious");
}

#[test]
fn an_emptied_secret_file_is_a_usage_error_that_names_it() {
    let h = Harness::new();
    h.login();
    std::fs::write(h.secret_file(), "").unwrap();
    h.set_expires_at(now_unix() - 10);
    h.mock().reset_counters();
    let o = h.run_token(no_secret(&h, &["token"]));
    o.assert_only_error(2, &[h.secret_file().to_str().unwrap(), "empty", "--client-secret-file"]);
    assert_eq!(h.mock().counters(), Counters::default());
}

#[test]
fn logout_keeps_the_profile_for_a_login_without_flags_and_forget_deletes_it_with_the_secret() {
    let h = Harness::new();
    h.login();
    h.run(no_secret(&h, &["logout"])).assert_success();
    assert!(!h.token_file().exists());
    assert!(h.profile_file().exists() && h.secret_file().exists(), "kept");

    // The next login needs no flag and no secret: all saved.
    let o = h.login_with(no_secret(&h, &["login", "--no-browser"]));
    assert!(!o.stderr.contains("Saved the client secret"), "nothing new to save: {o:#?}");
    let c = h.mock().counters();
    assert_eq!((c.authorization_code_grants, c.invalid_client_errors), (2, 0), "{c:#?}");
    assert_eq!(std::fs::read(h.secret_file()).unwrap(), SECRET.as_bytes());

    // --forget: the tokens, the profile and the saved secret are gone.
    let rt = h.refresh_token().unwrap();
    let o = h.run(no_secret(&h, &["logout", "--forget"]));
    o.assert_success();
    assert!(
        o.stderr.lines().last().unwrap().contains("settings and saved client secret were deleted"),
        "{o:#?}"
    );
    assert!(!h.token_file().exists() && !h.profile_file().exists() && !h.secret_file().exists());
    assert_eq!(
        std::fs::read_dir(h.store())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| { !e.file_name().to_string_lossy().ends_with(".lock") })
            .count(),
        0,
        "only the lock file is left"
    );
    let (status, _) = h.refresh_at_the_mock(&rt);
    assert_eq!(status, 400, "revoked first");
    // Now a login needs its flags again.
    let o = h.run(no_secret(&h, &["login", "--no-browser"]));
    o.assert_only_error(2, &["no instance"]);
    // --forget with no tokens left still forgets.
    h.login();
    h.run(h.store_only(&["logout"])).assert_success();
    h.run(h.store_only(&["logout", "--forget"])).assert_success();
    assert!(!h.profile_file().exists() && !h.secret_file().exists());
}
