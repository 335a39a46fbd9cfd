//! Each command's `--help`: its own options first, the global ones under `Global options`, defaults and
//! `[env: ...]` names shown. Snapshotted (insta), so that any change to the help is seen in review.

mod common;

use common::*;

const COMMANDS: &[&str] =
    &["login", "token", "refresh", "call", "status", "logout", "hash-secret", "demo", "mock", "completions"];

fn help(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = bare(home.path());
    cmd.args(args);
    let o = run(cmd);
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(o.stderr.is_empty(), "{o:#?}");
    o.stdout
}

/// The options listed under `heading` (the `--name` of each).
fn options_under(text: &str, heading: &str) -> Vec<String> {
    let Some((_, rest)) = text.split_once(&format!("\n{heading}:\n")) else { return Vec::new() };
    rest.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').split(['=', '[']).next().unwrap_or(w).to_owned())
        .collect()
}

const GLOBAL: &[&str] = &[
    "--instance",
    "--client-id",
    "--client-secret-file",
    "--redirect-uri",
    "--scope",
    "--store",
    "--store-key-file",
    "--profile",
    "--timeout",
    "--allow-insecure-http",
    "--verbose",
    "--no-discovery",
];

#[test]
fn own_options_first_then_the_global_ones() {
    for command in COMMANDS {
        let text = help(&[command, "--help"]);
        insta::assert_snapshot!(format!("help-{command}"), text);
        let own = text.find("\nOptions:\n").unwrap_or_else(|| panic!("{command}: no Options: {text}"));
        let global = text.find("\nGlobal options:\n").unwrap_or_else(|| panic!("{command}: {text}"));
        assert!(own < global, "{command}: its own options come first: {text}");
        let globals = options_under(&text, "Global options");
        for flag in GLOBAL {
            assert!(globals.iter().any(|g| g == flag), "{command}: {flag} under Global options: {globals:?}");
        }
        for flag in options_under(&text, "Options") {
            assert!(!GLOBAL.contains(&flag.as_str()), "{command}: {flag} is global, listed as its own");
        }
        // Defaults and environment variables.
        assert!(text.contains("[default: openid profile offline_access DomainApi]"), "{command}: {text}");
        assert!(text.contains("[default: default]") && text.contains("[default: 30]"), "{command}: {text}");
        for var in [
            "ERPNET_INSTANCE",
            "ERPNET_CLIENT_ID",
            "ERPNET_REDIRECT_URI",
            "ERPNET_SCOPE",
            "ERPNET_OAUTH_STORE_KEY_FILE",
            "ERPNET_NO_DISCOVERY",
            "ERPNET_PROFILE",
        ] {
            assert!(text.contains(&format!("[env: {var}=]")), "{command}: {var}: {text}");
        }
        // A Redis URL may hold a password: the variable is named, its value never shown.
        assert!(text.contains("[env: ERPNET_OAUTH_STORE]"), "{command}: {text}");
    }
}

#[test]
fn the_commands_own_options() {
    let own = |command: &str| options_under(&help(&[command, "--help"]), "Options");
    assert_eq!(own("token"), ["--json", "--min-validity", "--help", "--version"]);
    assert_eq!(
        own("call"),
        ["--data", "--data-raw", "--header", "--include", "--paginate", "--help", "--version"]
    );
    assert_eq!(own("login"), ["--no-browser", "--wait", "--no-save-secret", "--help", "--version"]);
    assert_eq!(own("status"), ["--json", "--all", "--help", "--version"]);
    assert_eq!(own("logout"), ["--forget", "--help", "--version"]);
    let token = help(&["token", "--help"]);
    assert!(token.contains("--min-validity <SECONDS>") && token.contains("[default: 60]"), "{token}");
    let call = help(&["call", "--help"]);
    assert!(call.contains("-d, --data <BODY>") && call.contains("-i, --include"), "{call}");
}

#[test]
fn the_top_level_help() {
    let text = help(&["--help"]);
    insta::assert_snapshot!("help", text);
    assert!(text.contains("\nGlobal options:\n"), "{text}");
    assert_eq!(help(&["help", "call"]), help(&["call", "--help"]));
}
