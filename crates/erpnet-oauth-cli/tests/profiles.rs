//! Profiles (issue 14): `ERPNET_PROFILE`, `status` reporting the stored login and where the flags or the
//! environment disagree with it, `status --all`, and recovery from a corrupt token file.

mod common;

use common::*;
use erpnet_oauth_mock::Counters;

/// The store's files of profile `name`: (profile, tokens, secret), each `true` when it exists.
fn files_of(h: &Harness, name: &str) -> (bool, bool, bool) {
    let s = h.store();
    (
        s.join(format!("{name}.profile.json")).exists(),
        s.join(format!("{name}.tokens.json")).exists(),
        s.join(format!("{name}.secret")).exists(),
    )
}

fn json(o: &Outcome) -> serde_json::Value {
    assert_eq!(o.stdout_lines().len(), 1, "one JSON document on one line: {o:#?}");
    serde_json::from_str(&o.stdout).unwrap()
}

#[test]
fn erpnet_profile_selects_the_profile_and_the_flag_wins_over_it() {
    let h = Harness::new();
    let mut cmd = h.cli(&["login", "--no-browser"]);
    cmd.env("ERPNET_PROFILE", "work");
    let run = h.start_login(cmd);
    assert!(run.browse(&h).contains("Logged in"));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    assert_eq!(files_of(&h, "work"), (true, true, true), "the login went to profile `work`");
    assert_eq!(files_of(&h, "default"), (false, false, false));

    let with_env = |args: &[&str]| {
        let mut cmd = h.store_only(args);
        cmd.env("ERPNET_PROFILE", "work");
        cmd
    };
    let v = json(&h.run(with_env(&["status", "--json"])));
    assert_eq!((v["profile"].as_str(), v["logged_in"].as_bool()), (Some("work"), Some(true)), "{v}");
    let o = h.run_token(with_env(&["token"]));
    o.assert_success();
    assert_eq!(o.stderr, "");
    assert!(!o.stdout.trim().is_empty());

    // --profile wins over ERPNET_PROFILE.
    let o = h.run(with_env(&["--profile", "default", "status", "--json"]));
    o.assert_only_error(3, &["not logged in (profile `default`)"]);
    assert_eq!(json(&o)["profile"], "default");
    h.run(with_env(&["token", "--profile", "other"])).assert_only_error(3, &["`other`"]);
    // The default without either.
    h.run(h.store_only(&["token"])).assert_only_error(3, &["`default`"]);
    // A bad name from the environment is refused like one from the flag.
    let mut cmd = h.store_only(&["status"]);
    cmd.env("ERPNET_PROFILE", "../escape");
    h.run(cmd).assert_only_error(2, &["`../escape` is not allowed"]);
}

#[test]
fn status_reports_the_stored_login_not_the_flags() {
    let h = Harness::new();
    h.login();
    // No flag at all: everything comes from the store.
    let mut cmd = h.bare();
    cmd.arg("--store").arg(h.store()).arg("status");
    let o = h.run(cmd);
    o.assert_success();
    assert!(o.stdout.lines().any(|l| l == format!("instance:      {}", h.instance())), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l == format!("client id:     {CLIENT_ID}")), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l == "logged in:     yes"), "{o:#?}");
}

#[test]
fn status_names_each_disagreement_with_the_stored_login() {
    let h = Harness::new();
    h.login();
    h.mock().reset_counters();
    let other = "http://127.0.0.1:9";
    let files =
        |h: &Harness| [h.token_file(), h.profile_file(), h.secret_file()].map(|f| std::fs::read(f).unwrap());
    let before = files(&h);

    // Another instance, by flag: the tokens cannot be used with it.
    let o = h.run(h.cli_without(&["--instance"], &["--instance", other, "status", "--json"]));
    o.assert_only_error(2, &["--profile", "erpnet-oauth login"]);
    let v = json(&o);
    assert_eq!(v["logged_in"], false);
    assert_eq!(v["instance"], h.instance(), "the stored instance, not the flag's");
    assert_eq!(v["subject"], "admin");
    assert_eq!(
        v["mismatches"],
        serde_json::json!([{"setting": "instance", "stored": h.instance(), "given": other}])
    );
    // The same through ERPNET_INSTANCE, in human form.
    let mut cmd = h.cli_without(&["--instance"], &["status"]);
    cmd.env("ERPNET_INSTANCE", other);
    let o = h.run(cmd);
    o.assert_only_error(2, &["--profile"]);
    let expected = format!("mismatch:      instance: stored {}, given {other}", h.instance());
    assert!(o.stdout.lines().any(|l| l == expected), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l.starts_with("logged in:     no")), "{o:#?}");
    assert!(o.stdout.lines().any(|l| l == format!("instance:      {}", h.instance())), "{o:#?}");

    // Another client id.
    let o = h.run(h.cli_without(&["--client-id"], &["--client-id", "someone/else", "status", "--json"]));
    o.assert_only_error(2, &["someone/else"]);
    let v = json(&o);
    assert_eq!(v["logged_in"], false);
    assert_eq!(
        v["mismatches"],
        serde_json::json!([{"setting": "client_id", "stored": CLIENT_ID, "given": "someone/else"}])
    );

    // Other scopes and another redirect URI: said, but the tokens still serve (the next login uses them).
    let redirect = "http://127.0.0.1:1/elsewhere";
    let o = h.run(h.cli_without(
        &["--redirect-uri"],
        &["--redirect-uri", redirect, "--scope", "openid DomainApi", "status", "--json"],
    ));
    o.assert_success();
    let v = json(&o);
    assert_eq!(v["logged_in"], true);
    let settings: Vec<&str> =
        v["mismatches"].as_array().unwrap().iter().map(|m| m["setting"].as_str().unwrap()).collect();
    assert_eq!(settings, ["scope", "redirect_uri"], "{v}");
    assert_eq!(v["mismatches"][1]["given"], redirect);
    // The same scopes in another order are no disagreement.
    let o = h.run(h.cli(&["--scope", "DomainApi offline_access profile openid", "status", "--json"]));
    o.assert_success();
    assert_eq!(json(&o)["mismatches"], serde_json::json!([]));
    // The instance with a trailing slash is the same instance.
    let slash = format!("{}/", h.instance());
    let o = h.run(h.cli_without(&["--instance"], &["--instance", &slash, "status", "--json"]));
    o.assert_success();
    assert_eq!(json(&o)["mismatches"], serde_json::json!([]));

    assert_eq!(h.mock().counters(), Counters::default(), "status asks the server nothing");
    assert!(files(&h) == before, "and changes nothing in the store");
}

#[test]
fn status_says_not_logged_in_when_the_access_token_expired_without_a_refresh_token() {
    let h = Harness::new();
    h.login_with(h.cli(&["--scope", "openid profile DomainApi", "login", "--no-browser"]));
    h.run(h.store_only(&["status"])).assert_success();
    h.set_expires_at(now_unix() - 10);
    let o = h.run(h.store_only(&["status", "--json"]));
    o.assert_only_error(3, &["no refresh token", "erpnet-oauth login"]);
    let v = json(&o);
    assert_eq!((v["logged_in"].as_bool(), v["has_refresh_token"].as_bool()), (Some(false), Some(false)));
}

#[test]
fn status_all_lists_every_profile() {
    let h = Harness::new();
    // An empty store: nothing to list, not an error.
    let o = h.run(h.store_only(&["status", "--all", "--json"]));
    o.assert_success();
    assert_eq!(json(&o), serde_json::json!([]));

    h.login();
    let mut cmd = h.public_cli(&["--profile", "pub", "login", "--no-browser"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    let run = h.start_login(cmd);
    run.browse(&h);
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    // `pub` logged out: its profile stays, and is listed.
    let mut cmd = h.store_only(&["--profile", "pub", "logout"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    h.run(cmd).assert_success();

    assert_eq!(files_of(&h, "default"), (true, true, true));
    assert_eq!(files_of(&h, "pub"), (true, false, false), "logged out, settings kept, no secret");

    // Flags naming one login are not compared with every profile.
    let o = h.run(
        h.cli_without(&["--instance"], &["--instance", "http://127.0.0.1:9", "status", "--all", "--json"]),
    );
    o.assert_success();
    let all = json(&o);
    let list = all.as_array().unwrap();
    assert_eq!(list.len(), 2, "{all}");
    let (d, p) = (&list[0], &list[1]);
    assert_eq!(
        (d["profile"].as_str(), p["profile"].as_str()),
        (Some("default"), Some("pub")),
        "sorted by name"
    );
    assert_eq!((d["logged_in"].as_bool(), p["logged_in"].as_bool()), (Some(true), Some(false)));
    assert_eq!((d["client_id"].as_str(), p["client_id"].as_str()), (Some(CLIENT_ID), Some(PUBLIC_CLIENT_ID)));
    assert_eq!((d["secret"].as_str(), p["secret"].as_str()), (Some("file"), None));
    assert_eq!(d["subject"], "admin");
    assert_eq!(
        (d["has_refresh_token"].as_bool(), p["has_refresh_token"].as_bool()),
        (Some(true), Some(false))
    );
    for one in list {
        assert_eq!(one["mismatches"], serde_json::json!([]));
        assert_eq!(one["instance"], h.instance());
    }

    let o = h.run(h.store_only(&["status", "--all"]));
    o.assert_success();
    let blocks: Vec<&str> = o.stdout.trim_end().split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "one block per profile: {o:#?}");
    assert!(blocks[0].starts_with("profile:       default\n") && blocks[0].contains("logged in:     yes"));
    assert!(blocks[1].starts_with("profile:       pub\n") && blocks[1].contains("logged in:     no"));
    assert!(blocks[1].contains("client secret: none"), "{o:#?}");
    assert_eq!((files_of(&h, "default"), files_of(&h, "pub")), ((true, true, true), (true, false, false)));
}

#[test]
fn login_replaces_a_corrupt_token_file_after_a_warning_and_logout_removes_one() {
    let h = Harness::new();
    h.login();
    let garbage = "{\"refresh_token\": \"GARBAGE-CONTENT-Zx81\"";
    h.secret("GARBAGE-CONTENT-Zx81");
    std::fs::write(h.token_file(), garbage).unwrap();
    // Other commands refuse it and say how to recover.
    h.run(h.store_only(&["token"])).assert_only_error(2, &["corrupt", "log in again"]);

    let o = h.login();
    let warning = format!("{WARN}the token file {} is corrupt", h.token_file().display());
    assert!(
        o.warnings().iter().any(|w| w.starts_with(&warning) && w.ends_with("this login replaces it")),
        "{o:#?}"
    );
    assert!(h.access_token().is_some(), "replaced by the new login's tokens");
    h.run_token(h.store_only(&["token"])).assert_success();

    std::fs::write(h.token_file(), garbage).unwrap();
    h.mock().reset_counters();
    let o = h.run(h.store_only(&["logout"]));
    o.assert_success();
    assert_eq!(o.warnings().len(), 1, "{o:#?}");
    assert!(
        o.warnings()[0].starts_with(&warning) && o.warnings()[0].contains("nothing was revoked"),
        "{o:#?}"
    );
    assert!(!h.token_file().exists(), "removed");
    assert!(h.profile_file().exists() && h.secret_file().exists(), "the profile is kept");
    assert_eq!(h.mock().counters(), Counters::default(), "there was nothing to revoke");
    // And the next login needs no flag.
    let mut cmd = h.store_only(&["login", "--no-browser"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    h.login_with(cmd);
}
