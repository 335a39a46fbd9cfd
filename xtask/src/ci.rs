//! `cargo xtask ci`: what CI runs, and the README's test command. On a fresh machine it installs what the
//! tests need (headless Chromium and its WebDriver for the web example's browser test, through
//! `scripts/install-browser.sh`; redis-server for erpnet-oauth-redis's tests through `scripts/install-redis.sh`;
//! cargo-fuzz through `cargo xtask fuzz`), then runs every test of the workspace
//! (the conformance suite included) and a short run of each fuzz target.

use crate::bench::{cargo, workspace_root};
use std::process::{Command, ExitCode};

/// Runs the task.
pub fn main(args: &[String]) -> ExitCode {
    if let Some(arg) = args.first() {
        eprintln!("unexpected argument `{arg}`\nusage: cargo xtask ci");
        return ExitCode::from(2);
    }
    let root = workspace_root();
    let step = |name: &str, mut cmd: Command| -> bool {
        eprintln!("\n==> {name}");
        match cmd.current_dir(&root).status() {
            Ok(s) if s.success() => true,
            Ok(s) => {
                eprintln!("{name} failed ({s})");
                false
            }
            Err(e) => {
                eprintln!("{name} could not start: {e}");
                false
            }
        }
    };
    let mut browser = Command::new("bash");
    browser.arg("scripts/install-browser.sh");
    if !step("headless Chromium for the browser test", browser) {
        return ExitCode::FAILURE;
    }
    let mut redis = Command::new("bash");
    redis.arg("scripts/install-redis.sh");
    if !step("redis-server for the shared token store's tests", redis) {
        return ExitCode::FAILURE;
    }
    let mut interop = Command::new("bash");
    interop.arg("scripts/install-interop.sh");
    if !step("OpenID Connect providers for the CLI's interoperability tests", interop) {
        return ExitCode::FAILURE;
    }
    let mut tests = Command::new(cargo());
    tests.args(["test", "--workspace"]);
    if !step("cargo test --workspace", tests) {
        return ExitCode::FAILURE;
    }
    eprintln!("\n==> cargo xtask fuzz --smoke");
    crate::fuzz::main(&["--smoke".to_owned()])
}
