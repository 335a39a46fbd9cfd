//! The CLI on a shared store (issue 15, item 2): `--store redis://...` keeps a profile's settings,
//! tokens and (encrypted, with a store key) client secret in a real redis-server, so that other
//! "machines" (an empty HOME and no flag but the store) use the same login and refresh it once between
//! them. Every test reads the raw Redis keys to check what became of the stored data.

mod common;

use common::*;
use erpnet_oauth_redis::test_util::{Persistence, RedisServer};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const CUSTOMERS: &str = "/api/domain/odata/Crm_Customers?$top=2";
const PROFILE_KEY: &str = "erpnet-oauth:cli:profile:default";
const TOKENS_KEY: &str = "erpnet-oauth:cli:tokens:default";
const SECRET_KEY: &str = "erpnet-oauth:cli:secret:default";

fn conn(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn get(url: &str, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(&mut conn(url)).unwrap()
}

fn hget(url: &str, key: &str, field: &str) -> Option<Vec<u8>> {
    redis::cmd("HGET").arg(key).arg(field).query(&mut conn(url)).unwrap()
}

/// Every key the CLI wrote.
fn cli_keys(url: &str) -> BTreeSet<String> {
    redis::cmd("KEYS").arg("erpnet-oauth:cli:*").query(&mut conn(url)).unwrap()
}

/// The raw bytes of every key the CLI wrote (hash fields included).
fn raw_values(url: &str) -> Vec<Vec<u8>> {
    let mut c = conn(url);
    let mut values = Vec::new();
    for key in cli_keys(url) {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        if kind == "hash" {
            let fields: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&key).query(&mut c).unwrap();
            values.extend(fields);
        } else {
            values.push(redis::cmd("GET").arg(&key).query(&mut c).unwrap());
        }
    }
    values
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The profile's stored token record (unencrypted stores), as JSON.
fn record(url: &str, profile: &str) -> Option<serde_json::Value> {
    let bytes = hget(url, &format!("erpnet-oauth:cli:tokens:{profile}"), "tokens")?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn stored_token(url: &str, name: &str) -> Option<String> {
    record(url, "default").and_then(|j| j["tokens"][name].as_str().map(str::to_owned))
}

/// Adds the tokens stored in Redis (unencrypted, every profile) to the values no stream may show.
fn remember(h: &Harness, url: &str) {
    for key in cli_keys(url) {
        if key.strip_prefix("erpnet-oauth:cli:tokens:").is_none_or(|p| p.contains(':')) {
            continue;
        }
        let Some(bytes) = hget(url, &key, "tokens") else { continue };
        let Ok(j) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        for name in ["access_token", "refresh_token", "id_token"] {
            if let Some(t) = j["tokens"][name].as_str() {
                h.secret(t);
            }
        }
    }
}

/// Makes the stored access token one that expired 10 s ago (the CLI judges on its own clock).
fn expire(url: &str) {
    let mut j = record(url, "default").unwrap();
    let now = now_unix();
    j["tokens"]["expires_at"] = (now - 10).into();
    j["tokens"]["issued_at"] = (now - 3610).into();
    let _: () = redis::cmd("HSET")
        .arg(TOKENS_KEY)
        .arg("tokens")
        .arg(serde_json::to_vec(&j).unwrap())
        .query(&mut conn(url))
        .unwrap();
}

/// `erpnet-oauth --store STORE ARGS` on the machine whose HOME is `home` (nothing of the host's
/// environment, the keyring kept out).
fn on(home: &Path, store: &str, args: &[&str]) -> Command {
    let mut cmd = bare(home);
    cmd.args(["--store", store]).args(args);
    cmd
}

/// A complete `login` on `home` with `args` (client id, key file...) and `secret` in ERPNET_CLIENT_SECRET.
fn login(h: &Harness, home: &Path, store: &str, args: &[&str], secret: Option<&str>) -> Outcome {
    let mut cmd = on(home, store, &["--instance", &h.instance(), "--redirect-uri", &h.redirect_uri]);
    cmd.args(args).args(["login", "--no-browser"]);
    if let Some(secret) = secret {
        cmd.env("ERPNET_CLIENT_SECRET", secret);
    }
    let run = h.start_login(cmd);
    assert!(run.browse(h).contains("Logged in"));
    let o = run.finish();
    remember(h, store);
    h.check_streams(&o, true);
    o.assert_success();
    assert_eq!(o.stderr_lines().last().copied(), Some(format!("Logged in as {}", h.subject()).as_str()));
    o
}

/// A key file of 32 random bytes in base64, mode 0600.
fn key_file(dir: &Path, name: &str) -> std::path::PathBuf {
    use base64::Engine as _;
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", base64::engine::general_purpose::STANDARD.encode(bytes))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn json(o: &Outcome) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:#?}"))
}

#[test]
fn a_login_in_redis_serves_another_machine_with_no_flag_but_the_store() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", PUBLIC_CLIENT_ID], None);
    assert_eq!(cli_keys(&url), BTreeSet::from([PROFILE_KEY.to_owned(), TOKENS_KEY.to_owned()]));
    let profile: serde_json::Value = serde_json::from_slice(&get(&url, PROFILE_KEY).unwrap()).unwrap();
    assert_eq!(profile["instance"], h.instance());
    assert_eq!(profile["client_id"], PUBLIC_CLIENT_ID);
    assert_eq!(profile["confidential"], false);
    let stored = record(&url, "default").unwrap();
    assert_eq!(stored["issued_to"]["client_id"], PUBLIC_CLIENT_ID, "bound to the client: {stored}");
    assert!(files_under(h.dir.path()).is_empty(), "nothing on the login machine's disk");

    // Another machine: an empty HOME, no flag but the store (or its environment variable).
    let b = tempfile::tempdir().unwrap();
    h.mock().reset_counters();
    let o = h.run_token(on(b.path(), &url, &["token"]));
    o.assert_success();
    assert_eq!(o.stdout.trim_end(), stored_token(&url, "access_token").unwrap());
    assert_eq!(o.stderr, "");
    let mut cmd = bare(b.path());
    cmd.env("ERPNET_OAUTH_STORE", &url).args(["call", "GET", CUSTOMERS]);
    let o = h.run(cmd);
    o.assert_success();
    assert!(o.stdout.contains("\"value\""), "{o:#?}");
    let o = h.run(on(b.path(), &url, &["status", "--json"]));
    o.assert_success();
    let v = json(&o);
    assert_eq!(v["logged_in"], true, "{v}");
    assert_eq!(v["instance"], h.instance());
    assert_eq!(v["client_id"], PUBLIC_CLIENT_ID);
    assert_eq!(v["subject"], h.subject());
    assert_eq!(v["secret"], serde_json::Value::Null);
    let o = h.run(on(b.path(), &url, &["status"]));
    o.assert_success();
    assert!(o.stdout.lines().any(|l| l == "logged in:     yes"), "{o:#?}");
    assert_eq!(h.mock().counters().refresh_token_grants, 0);
    assert_eq!(h.mock().counters().api_ok, 1);
    assert!(files_under(b.path()).is_empty(), "nothing on the other machine's disk");

    // A profile nobody logged in to is "not logged in" there too, with the store named nowhere else.
    h.run(on(b.path(), &url, &["--profile", "other", "token"]))
        .assert_only_error(3, &["not logged in (profile `other`)"]);
}

#[test]
fn six_call_processes_on_six_machines_after_the_expiry_make_one_refresh_grant() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID], Some(SECRET));
    expire(&url);
    let before = stored_token(&url, "access_token").unwrap();
    let old_refresh = stored_token(&url, "refresh_token").unwrap();
    h.mock().reset_counters();

    // A holder that died holding the lock for 2 s more: the six start, find the token expired and wait
    // for the lock together, so they contend for it when its lease runs out.
    let _: () = redis::cmd("SET")
        .arg(format!("{TOKENS_KEY}:lock"))
        .arg("a-holder-that-died")
        .arg("PX")
        .arg(2000)
        .query(&mut conn(&url))
        .unwrap();
    let homes: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let children: Vec<_> = homes
        .iter()
        .map(|home| {
            let mut cmd = on(home.path(), &url, &["call", "GET", CUSTOMERS]);
            // Not saved without a store key: each machine has it from its own secret manager.
            cmd.env("ERPNET_CLIENT_SECRET", SECRET);
            std::thread::spawn(move || run(cmd))
        })
        .collect();
    let outcomes: Vec<Outcome> = children.into_iter().map(|c| c.join().unwrap()).collect();
    remember(&h, &url);
    for o in &outcomes {
        h.check_streams(o, true);
        o.assert_success();
        assert!(o.stdout.contains("\"value\""), "{o:#?}");
    }
    let counters = h.mock().counters();
    assert_eq!(counters.refresh_token_grants, 1, "one refresh between the six: {counters:?}");
    assert_eq!(get(&url, &format!("{TOKENS_KEY}:lock")), None, "the lock is released");
    assert_eq!(counters.refresh_token_reuses, 0, "{counters:?}");
    assert_eq!(counters.api_ok, 6, "{counters:?}");

    // The rotated refresh token is stored in Redis, with a fresh access token.
    let new_refresh = stored_token(&url, "refresh_token").unwrap();
    assert_ne!(new_refresh, old_refresh);
    assert_ne!(stored_token(&url, "access_token").unwrap(), before);
    let expires = record(&url, "default").unwrap()["tokens"]["expires_at"].as_u64().unwrap();
    assert!(expires > now_unix(), "a live access token is stored");
    // (In this order: presenting the spent one first would end the grant, the stored one with it.)
    assert_eq!(h.refresh_at_the_mock(&new_refresh).0, 200, "the stored one is live");
    assert_eq!(h.refresh_at_the_mock(&old_refresh).0, 400, "the old refresh token is spent");
}

#[test]
fn redis_down_is_exit_5_with_no_refresh_sent_and_the_tokens_kept() {
    let h = Harness::new();
    let mut redis = RedisServer::start_with(Persistence::AofAlways);
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID], Some(SECRET));
    expire(&url);
    let saved = hget(&url, TOKENS_KEY, "tokens").unwrap();
    h.mock().reset_counters();

    redis.kill();
    let b = tempfile::tempdir().unwrap();
    let shown = format!("redis://127.0.0.1:{}/", redis.port());
    for args in [&["call", "GET", CUSTOMERS][..], &["token"], &["status"], &["logout"]] {
        let mut cmd = on(b.path(), &url, args);
        cmd.env("ERPNET_CLIENT_SECRET", SECRET);
        let o = h.run(cmd);
        o.assert_only_error(5, &["the Redis store", &shown, "unavailable", "try again later"]);
        assert!(o.stdout.is_empty(), "{o:#?}");
    }
    // A login stops before the browser is sent anywhere.
    let mut cmd = on(b.path(), &url, &["--instance", &h.instance(), "--client-id", CLIENT_ID]);
    cmd.args(["--redirect-uri", &h.redirect_uri, "login", "--no-browser"])
        .env("ERPNET_CLIENT_SECRET", SECRET);
    h.run(cmd).assert_only_error(5, &[&shown, "unavailable"]);
    assert_eq!(h.mock().counters(), Default::default(), "nothing was sent to the server");

    redis.restart();
    assert_eq!(hget(&url, TOKENS_KEY, "tokens").unwrap(), saved, "the tokens survived");
    let mut cmd = on(b.path(), &url, &["call", "GET", CUSTOMERS]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    let o = h.run(cmd);
    remember(&h, &url);
    o.assert_success();
    assert_eq!(h.mock().counters().refresh_token_grants, 1, "refreshed once Redis was back");
}

#[test]
fn a_lock_held_elsewhere_past_the_wait_is_exit_5_with_no_refresh_sent() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID], Some(SECRET));
    expire(&url);
    let saved = hget(&url, TOKENS_KEY, "tokens").unwrap();
    // Another machine's refresh, stuck (a lease of a minute).
    let _: () = redis::cmd("SET")
        .arg(format!("{TOKENS_KEY}:lock"))
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query(&mut conn(&url))
        .unwrap();
    h.mock().reset_counters();
    // --timeout 1: a lease of 12 s, waited for 17 s at most.
    let mut cmd = on(h.dir.path(), &url, &["--timeout", "1", "token"]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    let o = h.run(cmd);
    o.assert_only_error(5, &["stayed locked by another holder", TOKENS_KEY, "try again later"]);
    assert_eq!(h.mock().counters().refresh_token_grants, 0, "no refresh without the lock");
    assert_eq!(hget(&url, TOKENS_KEY, "tokens").unwrap(), saved);
    assert_eq!(get(&url, &format!("{TOKENS_KEY}:lock")).unwrap(), b"someone-else", "not taken over");
}

#[test]
fn a_password_protected_redis_never_shows_its_password() {
    let h = Harness::new();
    let password = "pw-Zq81xK-s3cret";
    h.secret(password);
    let redis = RedisServer::builder().password(password).start();
    let url = redis.url_with_password();
    assert_eq!(url, format!("redis://:{password}@127.0.0.1:{}/", redis.port()));
    let shown = format!("redis://:[redacted]@127.0.0.1:{}/", redis.port());
    let mut cmd =
        on(h.dir.path(), &url, &["--verbose", "--instance", &h.instance(), "--client-id", CLIENT_ID]);
    cmd.args(["--redirect-uri", &h.redirect_uri, "login", "--no-browser"])
        .env("ERPNET_CLIENT_SECRET", SECRET);
    let run = h.start_login(cmd);
    assert!(run.browse(&h).contains("Logged in"));
    let o = run.finish();
    remember(&h, &url);
    h.check_streams(&o, true);
    o.assert_success();
    expire(&url);
    let mut cmd = on(h.dir.path(), &url, &["--verbose", "token"]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    let o = h.run_token(cmd);
    remember(&h, &url);
    o.assert_success();
    assert!(o.stderr.contains("/id/connect/token"), "the refresh is logged: {o:#?}");
    assert!(!o.stderr.contains(password));
    let mut cmd = on(h.dir.path(), &url, &["status"]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    h.run(cmd).assert_success();

    // `--help` names the variable but never shows its value.
    for args in [&["--help"][..], &["token", "--help"]] {
        let mut cmd = bare(h.dir.path());
        cmd.env("ERPNET_OAUTH_STORE", &url).args(args);
        let o = h.run(cmd);
        o.assert_success();
        assert!(o.stdout.contains("ERPNET_OAUTH_STORE"), "{o:#?}");
    }
    // A wrong password, or none: refused (configuration, exit 2), the password never shown.
    let wrong = format!("redis://:{password}-wrong@127.0.0.1:{}/", redis.port());
    h.secret(&format!("{password}-wrong"));
    h.run(on(h.dir.path(), &wrong, &["token"])).assert_only_error(
        2,
        &["refused this client", &format!("redis://:[redacted]@127.0.0.1:{}/", redis.port())],
    );
    h.run(on(h.dir.path(), &redis.url(), &["token"])).assert_only_error(2, &["refused this client"]);
    // Down: exit 5, naming the redacted URL.
    drop(redis);
    for args in [&["--verbose", "token"][..], &["status", "--all"]] {
        h.run(on(h.dir.path(), &url, args)).assert_only_error(5, &[&shown, "unavailable"]);
    }
}

#[test]
fn with_a_store_key_the_tokens_and_the_secret_are_encrypted_in_redis() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    let key = key_file(h.dir.path(), "store.key");
    let key_arg = key.to_str().unwrap();
    let o =
        login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID, "--store-key-file", key_arg], Some(SECRET));
    assert!(o.stderr.contains("Saved the client secret in redis://127.0.0.1"), "{o:#?}");
    assert!(o.warnings().is_empty(), "{o:#?}");
    assert_eq!(
        cli_keys(&url),
        BTreeSet::from([PROFILE_KEY.to_owned(), TOKENS_KEY.to_owned(), SECRET_KEY.to_owned()])
    );
    let profile: serde_json::Value = serde_json::from_slice(&get(&url, PROFILE_KEY).unwrap()).unwrap();
    assert_eq!((profile["secret"].as_str(), profile["confidential"].as_bool()), (Some("redis"), Some(true)));

    // Another machine with the key (from the environment) and no secret: the saved one is used.
    let b = tempfile::tempdir().unwrap();
    let b_key = b.path().join("key");
    std::fs::copy(&key, &b_key).unwrap();
    let with_key = |args: &[&str]| {
        let mut cmd = on(b.path(), &url, args);
        cmd.env("ERPNET_OAUTH_STORE_KEY_FILE", &b_key);
        cmd
    };
    let o = h.run_token(with_key(&["token"]));
    o.assert_success();
    let access = o.stdout.trim_end().to_owned();
    h.secret(&access);
    h.mock().reset_counters();
    let o = h.run(with_key(&["refresh"]));
    o.assert_success();
    assert_eq!(h.mock().counters().refresh_token_grants, 1, "refreshed with the secret saved in Redis");
    let o = h.run_token(with_key(&["token"]));
    o.assert_success();
    let refreshed = o.stdout.trim_end().to_owned();
    h.secret(&refreshed);
    assert_ne!(refreshed, access);
    let v = json(&h.run(with_key(&["status", "--json"])));
    assert_eq!((v["logged_in"].as_bool(), v["secret"].as_str()), (Some(true), Some("redis")), "{v}");

    // At rest: no plain secret and no plain token in any value; no token JSON where they are kept.
    for value in raw_values(&url) {
        for plain in [SECRET, &access, &refreshed] {
            assert!(!holds(&value, plain), "{plain} is readable in Redis");
        }
    }
    let sealed = [hget(&url, TOKENS_KEY, "tokens").unwrap(), get(&url, SECRET_KEY).unwrap()];
    for value in &sealed {
        for plain in ["access_token", "refresh_token", "issued_to"] {
            assert!(!holds(value, plain), "{plain} is readable in Redis");
        }
    }
    assert_eq!(get(&url, SECRET_KEY).unwrap().first(), Some(&1u8), "the sealed format");

    // No key, or another one: exit 2, saying what to pass; nothing is sent, nothing changes.
    let before = raw_values(&url);
    h.mock().reset_counters();
    h.run(on(b.path(), &url, &["token"])).assert_only_error(2, &["saved encrypted in", "--store-key-file"]);
    h.run(on(b.path(), &url, &["status"])).assert_failure(2, &["could not be decrypted", "--store-key-file"]);
    let other = key_file(b.path(), "other.key");
    for args in [&["token"][..], &["status"], &["call", "GET", CUSTOMERS]] {
        let mut cmd = on(b.path(), &url, args);
        cmd.arg("--store-key-file").arg(&other);
        h.run(cmd).assert_only_error(2, &["could not be decrypted", "--store-key-file"]);
    }
    assert_eq!(h.mock().counters(), Default::default());
    assert_eq!(raw_values(&url), before);

    // A key file others can read: a warning; one that is not a key: exit 2, without its content.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&b_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = h.run_token(with_key(&["token"]));
        o.assert_success();
        assert_eq!(o.warnings().len(), 1, "{o:#?}");
        assert!(o.warnings()[0].contains("is accessible to other users (mode 0644): chmod 600"), "{o:#?}");
    }
    std::fs::write(&b_key, "NOT-A-KEY-Zx81").unwrap();
    let o = h.run(with_key(&["token"]));
    o.assert_failure(2, &["does not hold a 32-byte key in base64"]);
    assert!(!o.stderr.contains("NOT-A-KEY"), "{o:#?}");
    // A key with a directory store is refused: it would protect nothing there.
    let mut cmd = bare(b.path());
    cmd.args(["--store", b.path().join("dir").to_str().unwrap(), "--store-key-file", key_arg, "status"]);
    h.run(cmd).assert_only_error(2, &["is for a Redis store"]);

    // Logging in again with another key replaces the tokens (key rotation), after a warning.
    let new_key = key_file(h.dir.path(), "new.key");
    let o = login(
        &h,
        h.dir.path(),
        &url,
        &["--client-id", CLIENT_ID, "--store-key-file", new_key.to_str().unwrap()],
        Some(SECRET),
    );
    assert!(
        o.warnings()
            .iter()
            .any(|w| w.contains("could not be decrypted") && w.ends_with("this login replaces them")),
        "{o:#?}"
    );
    let mut cmd = on(b.path(), &url, &["token", "--store-key-file", new_key.to_str().unwrap()]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    h.run_token(cmd).assert_success();
}

#[test]
fn without_a_store_key_the_secret_is_saved_nowhere() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    let o = login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID], Some(SECRET));
    assert_eq!(o.warnings().len(), 1, "{o:#?}");
    assert!(
        o.warnings()[0].contains("the client secret was not saved")
            && o.warnings()[0].contains("--store-key-file")
    );
    assert_eq!(cli_keys(&url), BTreeSet::from([PROFILE_KEY.to_owned(), TOKENS_KEY.to_owned()]));
    for value in raw_values(&url) {
        assert!(!holds(&value, SECRET), "the secret is not in Redis");
    }
    assert!(files_under(h.dir.path()).is_empty(), "nor on the disk: {:?}", files_under(h.dir.path()));
    let profile: serde_json::Value = serde_json::from_slice(&get(&url, PROFILE_KEY).unwrap()).unwrap();
    assert_eq!(profile["confidential"], true);
    assert!(profile.get("secret").is_none(), "{profile}");

    // Then every command needs it given; with it, the login is used.
    h.run(on(h.dir.path(), &url, &["token"]))
        .assert_only_error(2, &["profile default needs its client secret", "--store-key-file"]);
    let v = json(&h.run(on(h.dir.path(), &url, &["status", "--json"])));
    assert_eq!((v["logged_in"].as_bool(), v["secret"].is_null()), (Some(false), true), "{v}");
    let mut cmd = on(h.dir.path(), &url, &["token"]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    h.run_token(cmd).assert_success();
}

#[test]
fn a_rejected_refresh_token_is_exit_3_and_deletes_the_tokens_in_redis() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", PUBLIC_CLIENT_ID], None);
    expire(&url);
    // Spent elsewhere: the stored refresh token is dead at the server.
    let rt = stored_token(&url, "refresh_token").unwrap();
    let mut answer = browser()
        .post(&format!("{}/id/connect/token", h.instance()))
        .send_form([
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", PUBLIC_CLIENT_ID),
        ])
        .unwrap();
    let body = answer.body_mut().read_to_string().unwrap();
    assert_eq!(answer.status(), 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    for t in ["access_token", "refresh_token", "id_token"] {
        if let Some(v) = body[t].as_str() {
            h.secret(v);
        }
    }
    let o = h.run(on(h.dir.path(), &url, &["token"]));
    o.assert_only_error(3, &["the refresh token was rejected", "erpnet-oauth login"]);
    assert_eq!(hget(&url, TOKENS_KEY, "tokens"), None, "the tokens are deleted in Redis");
    assert!(get(&url, PROFILE_KEY).is_some(), "the profile is kept");
    h.run(on(h.dir.path(), &url, &["status"])).assert_failure(3, &["not logged in"]);
}

#[test]
fn logout_deletes_the_tokens_and_forget_every_key_of_the_profile() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    let key = key_file(h.dir.path(), "store.key");
    let key_arg = key.to_str().unwrap();
    login(&h, h.dir.path(), &url, &["--client-id", CLIENT_ID, "--store-key-file", key_arg], Some(SECRET));
    h.mock().reset_counters();
    let b = tempfile::tempdir().unwrap();
    let o = h.run(on(b.path(), &url, &["--store-key-file", key_arg, "logout"]));
    o.assert_success();
    assert_eq!(h.mock().counters().revocations, 1, "revoked with the secret saved in Redis");
    assert_eq!(hget(&url, TOKENS_KEY, "tokens"), None);
    assert!(get(&url, PROFILE_KEY).is_some() && get(&url, SECRET_KEY).is_some(), "the profile is kept");
    h.run(on(b.path(), &url, &["--store-key-file", key_arg, "token"]))
        .assert_only_error(3, &["not logged in"]);

    // The next login needs no flag but the store and its key: the saved settings and secret.
    let mut cmd = on(h.dir.path(), &url, &["--store-key-file", key_arg, "login", "--no-browser"]);
    cmd.env_remove("ERPNET_CLIENT_SECRET");
    let run = h.start_login(cmd);
    assert!(run.browse(&h).contains("Logged in"));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();

    assert!(get(&url, SECRET_KEY).is_some());

    // `login --no-save-secret` deletes the secret saved in Redis.
    let mut cmd =
        on(h.dir.path(), &url, &["--store-key-file", key_arg, "login", "--no-save-secret", "--no-browser"]);
    cmd.env("ERPNET_CLIENT_SECRET", SECRET);
    let run = h.start_login(cmd);
    assert!(run.browse(&h).contains("Logged in"));
    let o = run.finish();
    h.check_streams(&o, true);
    o.assert_success();
    assert!(o.stderr.contains("was not saved (--no-save-secret)"), "{o:#?}");
    assert_eq!(get(&url, SECRET_KEY), None);
    let profile: serde_json::Value = serde_json::from_slice(&get(&url, PROFILE_KEY).unwrap()).unwrap();
    assert!(profile.get("secret").is_none() && profile["confidential"] == true, "{profile}");

    // Corrupt tokens: refused (exit 2); logout deletes them after a warning.
    let _: () =
        redis::cmd("HSET").arg(TOKENS_KEY).arg("tokens").arg("{GARBAGE").query(&mut conn(&url)).unwrap();
    for (key, needle) in [(Some(key_arg), "could not be decrypted"), (None, "is corrupt")] {
        let mut cmd = on(b.path(), &url, &["token"]);
        if let Some(key) = key {
            cmd.args(["--store-key-file", key]);
        }
        cmd.env("ERPNET_CLIENT_SECRET", SECRET);
        let o = h.run(cmd);
        o.assert_only_error(2, &[needle, "log in", &format!("{url} key {TOKENS_KEY}")]);
        assert!(!o.stderr.contains("writable directory"), "{o:#?}");
    }
    let o = h.run(on(b.path(), &url, &["logout", "--forget"]));
    o.assert_success();
    assert_eq!(o.warnings().len(), 1, "{o:#?}");
    assert!(
        o.warnings()[0].contains("cannot be read") && o.warnings()[0].contains("nothing was revoked"),
        "{o:#?}"
    );
    assert_eq!(cli_keys(&url), BTreeSet::new(), "every key of the profile is gone");
    assert!(files_under(b.path()).is_empty());
}

#[test]
fn status_all_lists_the_profiles_in_redis_and_tokens_of_another_login_are_refused() {
    let h = Harness::new();
    let redis = RedisServer::start();
    let url = redis.url();
    login(&h, h.dir.path(), &url, &["--client-id", PUBLIC_CLIENT_ID, "--profile", "alpha"], None);
    login(&h, h.dir.path(), &url, &["--client-id", PUBLIC_CLIENT_ID, "--profile", "beta.2"], None);
    // A lock key is not a profile.
    redis.command(&["SET", "erpnet-oauth:cli:tokens:alpha:lock", "x", "PX", "60000"]);
    let b = tempfile::tempdir().unwrap();
    let o = h.run(on(b.path(), &url, &["status", "--all", "--json"]));
    o.assert_success();
    let v = json(&o);
    let names: Vec<_> =
        v.as_array().unwrap().iter().map(|p| p["profile"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["alpha", "beta.2"]);
    assert!(v.as_array().unwrap().iter().all(|p| p["logged_in"] == true), "{v}");
    let o = h.run(on(b.path(), &url, &["status", "--all"]));
    o.assert_success();
    assert_eq!(o.stdout.matches("logged in:     yes").count(), 2, "{o:#?}");
    let empty = RedisServer::start();
    let o = h.run(on(b.path(), &empty.url(), &["status", "--all"]));
    o.assert_success();
    assert!(o.stderr.contains("No profiles in redis://127.0.0.1"), "{o:#?}");

    // Profile `gamma` says another instance, and holds alpha's tokens: refused before any request.
    let mut other =
        serde_json::from_slice::<serde_json::Value>(&get(&url, "erpnet-oauth:cli:profile:alpha").unwrap())
            .unwrap();
    other["instance"] = "http://127.0.0.1:9".into();
    other["discovery"] = serde_json::Value::Null;
    let tokens = hget(&url, "erpnet-oauth:cli:tokens:alpha", "tokens").unwrap();
    let mut c = conn(&url);
    let _: () = redis::cmd("SET")
        .arg("erpnet-oauth:cli:profile:gamma")
        .arg(serde_json::to_vec(&other).unwrap())
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("erpnet-oauth:cli:tokens:gamma")
        .arg("generation")
        .arg(1)
        .arg("tokens")
        .arg(tokens)
        .query(&mut c)
        .unwrap();
    h.mock().reset_counters();
    h.run(on(b.path(), &url, &["--profile", "gamma", "token"]))
        .assert_only_error(2, &["the profile `gamma` holds tokens issued to", "http://127.0.0.1:9/id"]);
    let v = json(&h.run(on(b.path(), &url, &["--profile", "gamma", "status", "--json"])));
    assert_eq!(v["logged_in"], false, "{v}");
    assert_eq!(h.mock().counters(), Default::default());
}

#[test]
fn a_unix_socket_url_works_and_its_query_password_is_never_shown() {
    let h = Harness::new();
    let password = "unix-pw-Kq27vB";
    h.secret(password);
    let redis = RedisServer::builder().password(password).unix_socket().start();
    let socket = redis.socket().unwrap();
    let url = redis.unix_url().unwrap();
    assert_eq!(url, format!("redis+unix://{}?pass={password}", socket.display()));
    let shown = format!("redis+unix://{}?pass=[redacted]", socket.display());
    login(&h, h.dir.path(), &url, &["--client-id", PUBLIC_CLIENT_ID, "--verbose"], None);
    assert_eq!(
        cli_keys(&url),
        BTreeSet::from([PROFILE_KEY.to_owned(), TOKENS_KEY.to_owned()]),
        "the same layout over the socket"
    );
    let b = tempfile::tempdir().unwrap();
    h.run_token(on(b.path(), &url, &["token"])).assert_success();
    // A wrong password: refused, exit 2; Redis gone: exit 5. Neither message shows a password.
    let wrong = format!("redis+unix://{}?pass={password}-wrong", socket.display());
    h.run(on(b.path(), &wrong, &["token"])).assert_only_error(2, &["refused this client", "pass=[redacted]"]);
    drop(redis);
    h.run(on(b.path(), &url, &["--verbose", "token"])).assert_only_error(5, &[&shown, "unavailable"]);
}
