//! The store directory's safety: no symbolic link followed (token, lock and profile files), the
//! directory private (created 0700, refused when others can change it), a secret file others can read
//! warned about, and tokens never sent to an instance or client they were not issued to.

#![cfg(unix)]

mod common;

use common::*;
use erpnet_oauth_mock::Counters;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=1";

/// Moves `file` out of the store to a directory of its own and leaves a link to it in its place;
/// returns where it went.
fn replace_with_a_link(h: &Harness, file: &Path) -> PathBuf {
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let target = elsewhere.join(file.file_name().unwrap());
    std::fs::rename(file, &target).unwrap();
    symlink(&target, file).unwrap();
    target
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_token_file_that_is_a_link_is_refused_and_its_target_untouched() {
    let h = Harness::new();
    h.login();
    let target = replace_with_a_link(&h, &h.token_file());
    let before = std::fs::read(&target).unwrap();
    h.mock().reset_counters();
    for args in [&["token"][..], &["call", "GET", CUSTOMERS], &["status"], &["logout"]] {
        let o = h.run_token(h.store_only(args));
        o.assert_only_error(2, &[h.token_file().to_str().unwrap(), "symbolic link"]);
        assert!(o.stdout.is_empty(), "{o:#?}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), before, "the link's target is untouched");
    assert!(std::fs::symlink_metadata(h.token_file()).unwrap().file_type().is_symlink(), "left as it is");
    assert_eq!(h.mock().counters(), Counters::default(), "nothing was sent");
}

#[test]
fn a_lock_file_that_is_a_link_is_refused_and_nothing_is_created_through_it() {
    let h = Harness::new();
    h.login();
    let lock = h.store().join("default.tokens.json.lock");
    std::fs::remove_file(&lock).unwrap();
    let missing = h.dir.path().join("created-through-the-link");
    symlink(&missing, &lock).unwrap();
    // An expired token: `token` takes the lock to refresh it.
    h.set_expires_at(now_unix() - 10);
    let before = std::fs::read(h.token_file()).unwrap();
    h.mock().reset_counters();
    let o = h.run_token(h.store_only(&["token"]));
    o.assert_only_error(2, &[lock.to_str().unwrap(), "symbolic link"]);
    assert!(o.stdout.is_empty(), "no token printed: {o:#?}");
    assert!(!missing.exists(), "nothing is created through the link");
    assert_eq!(h.mock().counters().token_requests, 0, "no refresh without the lock");
    assert_eq!(std::fs::read(h.token_file()).unwrap(), before);
}

#[test]
fn a_profile_file_that_is_a_link_is_refused_and_its_target_untouched() {
    let h = Harness::new();
    h.login();
    let target = replace_with_a_link(&h, &h.profile_file());
    let before = std::fs::read(&target).unwrap();
    h.mock().reset_counters();
    for args in [&["status"][..], &["token"], &["refresh"]] {
        let o = h.run_token(h.store_only(args));
        o.assert_only_error(2, &[h.profile_file().to_str().unwrap(), "symbolic link"]);
    }
    // `login` reads the profile first too: refused before the browser is sent anywhere.
    h.run(h.cli(&["login", "--no-browser"])).assert_only_error(2, &["symbolic link"]);
    assert_eq!(std::fs::read(&target).unwrap(), before, "the link's target is untouched");
    assert_eq!(h.mock().counters(), Counters::default(), "nothing was sent");
}

#[test]
fn the_store_directory_is_created_private() {
    let h = Harness::new();
    h.login();
    assert_eq!(mode(&h.store()), 0o700);
    assert_eq!(mode(&h.token_file()), 0o600);
    assert_eq!(mode(&h.profile_file()), 0o600);
    assert_eq!(mode(&h.secret_file()), 0o600);
    let names: Vec<_> = std::fs::read_dir(h.store()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        names.len(),
        4,
        "the tokens, their lock, the profile, its secret, no temporary file: {names:?}"
    );
}

#[test]
fn a_store_directory_others_can_write_is_refused_with_advice() {
    let h = Harness::new();
    h.login();
    let store = h.store();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let advice =
        format!("the store directory {0} is writable by others (mode 0777): chmod 700 {0}", store.display());
    h.mock().reset_counters();
    for args in [&["token"][..], &["status"], &["logout"], &["call", "GET", CUSTOMERS]] {
        let o = h.run_token(h.store_only(args));
        o.assert_only_error(2, &[&advice]);
        assert!(o.stdout.is_empty(), "{o:#?}");
    }
    h.run(h.cli(&["login", "--no-browser"])).assert_only_error(2, &[&advice]);
    assert_eq!(h.mock().counters(), Counters::default(), "refused before any request");
    assert!(h.token_file().exists(), "nothing was deleted");

    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o770)).unwrap();
    h.run_token(h.store_only(&["token"])).assert_only_error(2, &["writable by others (mode 0770)"]);
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    h.run_token(h.store_only(&["token"])).assert_success();
}

#[test]
fn a_secret_file_others_can_read_is_warned_about() {
    let h = Harness::new();
    let file = h.dir.path().join("secret.txt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let login = |h: &Harness| {
        let mut cmd = h.cli(&[]);
        cmd.env_remove("ERPNET_CLIENT_SECRET").arg("--client-secret-file").arg(&file);
        cmd.args(["login", "--no-browser"]);
        h.login_with(cmd)
    };
    let o = login(&h);
    let expected = format!(
        "erpnet-oauth: warning: the client secret file {0} is accessible to other users (mode 0644): chmod 600 {0}",
        file.display()
    );
    assert_eq!(o.warnings(), [expected.as_str()], "{o:#?}");
    assert_eq!(h.mock().counters().authorization_code_grants, 1, "a warning, not an error");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = login(&h);
    assert!(o.warnings().is_empty(), "{o:#?}");
}

/// A second mock ERP.net, with the same apps as `h`'s.
fn another_instance(h: &Harness) -> Harness {
    let b = Harness::new();
    assert_ne!(b.instance(), h.instance());
    b
}

#[test]
fn tokens_of_one_instance_are_never_sent_to_another() {
    let a = Harness::new();
    a.login();
    let b = another_instance(&a);
    let tokens = std::fs::read(a.token_file()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&tokens).unwrap();
    assert_eq!(
        json["issued_to"],
        serde_json::json!({"issuer": format!("{}/id", a.instance()), "client_id": CLIENT_ID}),
        "the token file records whom its tokens were issued to"
    );
    // The profile file, which named instance A, is gone: only the flags say where to go.
    std::fs::remove_file(a.profile_file()).unwrap();
    let on_b = |args: &[&str]| {
        let mut cmd = a.cli_without(&["--instance"], &["--instance", &b.instance()]);
        cmd.args(args);
        a.run_token(cmd)
    };
    let refused = |o: &Outcome| {
        o.assert_only_error(
            2,
            &[
                &format!("{}/id", a.instance()),
                &format!("{}/id", b.instance()),
                "--profile",
                "erpnet-oauth login",
            ],
        );
        assert!(o.stdout.is_empty(), "{o:#?}");
    };
    a.mock().reset_counters();
    for args in [&["call", "GET", CUSTOMERS][..], &["token"], &["refresh"], &["logout"]] {
        refused(&on_b(args));
    }
    // `status` says the same, after the stored login (A's) and the disagreement.
    let o = on_b(&["status", "--json"]);
    o.assert_only_error(2, &[&format!("{}/id", a.instance()), &format!("{}/id", b.instance()), "--profile"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (v["logged_in"].as_bool(), v["instance"].as_str()),
        (Some(false), Some(a.instance().as_str()))
    );
    assert_eq!(v["mismatches"][0]["setting"], "instance", "{v}");
    // Expired: a refresh would send the refresh token to B.
    a.set_expires_at(now_unix() - 10);
    refused(&on_b(&["token"]));
    assert_eq!(b.mock().counters(), Counters::default(), "no request reached instance B");
    assert_eq!(a.mock().counters(), Counters::default(), "nor A");
    // Another client of the same instance is refused as well.
    let mut cmd = a.cli_without(&["--client-id"], &["--client-id", PUBLIC_CLIENT_ID, "token"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    a.run_token(cmd).assert_only_error(2, &[PUBLIC_CLIENT_ID, CLIENT_ID, "--profile"]);

    // The tokens still serve instance A.
    a.run(a.cli(&["call", "GET", CUSTOMERS])).assert_success();
    assert_eq!(b.mock().counters(), Counters::default());

    // A login to B on the same profile replaces A's tokens, and records B.
    let mut cmd = b.cli_without(&["--store"], &["--store", a.store().to_str().unwrap()]);
    cmd.args(["login", "--no-browser"]);
    let run = b.start_login(cmd);
    run.browse(&b);
    run.finish().assert_success();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(a.token_file()).unwrap()).unwrap();
    assert_eq!(json["issued_to"]["issuer"], format!("{}/id", b.instance()));
    a.run(a.store_only(&["call", "GET", CUSTOMERS])).assert_success();
    assert_eq!(b.mock().counters().api_ok, 1, "B's tokens go to B");
}

#[test]
fn token_files_written_before_the_record_are_judged_by_their_id_token() {
    let a = Harness::new();
    a.login();
    let b = another_instance(&a);
    // The file as an earlier version wrote it: no `issued_to`.
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.token_file()).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("issued_to");
    std::fs::write(a.token_file(), serde_json::to_vec(&json).unwrap()).unwrap();
    std::fs::remove_file(a.profile_file()).unwrap();
    let cmd = a.cli_without(&["--instance"], &["--instance", &b.instance(), "call", "GET", CUSTOMERS]);
    a.run(cmd).assert_only_error(2, &[&format!("{}/id", b.instance()), "--profile"]);
    assert_eq!(b.mock().counters(), Counters::default(), "no request reached instance B");
    // The old file still loads for the instance it belongs to.
    a.run(a.cli(&["call", "GET", CUSTOMERS])).assert_success();
}
