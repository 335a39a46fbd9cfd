//! `cargo xtask deps [--no-compare] [--build-time]`: the normal dependency count of each crate, and of oauth2-rs
//! and openidconnect-rs for comparison; with `--build-time`, the clean build time of the core vs oauth2-rs.
//!
//! A crate's count is the number of unique crates in `cargo tree -p X -e normal --prefix none` (the `(*)`
//! markers stripped, duplicates removed), the crate itself included (as the issue's figures for oauth2-rs count it). oauth2-rs and openidconnect-rs are
//! measured the same way in throwaway cargo projects in a temporary directory (they need crates.io).

use crate::bench::{cargo, workspace_root};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

const OURS: &[&str] = &["erpnet-oauth-core", "erpnet-oauth-ureq", "erpnet-oauth-cli", "erpnet-oauth-mock"];

/// The comparison projects: label, package, dependency line.
const THEIRS: &[(&str, &str, &str)] = &[
    ("oauth2-rs 5, no default features", "oauth2", r#"oauth2 = { version = "5", default-features = false }"#),
    (
        "oauth2-rs 5, ureq",
        "oauth2",
        r#"oauth2 = { version = "5", default-features = false, features = ["ureq"] }"#,
    ),
    (
        "openidconnect-rs 4, no default features",
        "openidconnect",
        r#"openidconnect = { version = "4", default-features = false }"#,
    ),
    (
        "openidconnect-rs 4, ureq",
        "openidconnect",
        r#"openidconnect = { version = "4", default-features = false, features = ["ureq"] }"#,
    ),
];

const USAGE: &str = "usage: cargo xtask deps [--no-compare] [--build-time]";

/// Runs the task.
pub fn main(args: &[String]) -> ExitCode {
    let (mut compare, mut build_time) = (true, false);
    for arg in args {
        match arg.as_str() {
            "--no-compare" => compare = false,
            "--build-time" => build_time = true,
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let root = workspace_root();
    println!(
        "normal dependency tree sizes (unique crates of `cargo tree -e normal`, the crate itself included):"
    );
    let mut failed = false;
    for package in OURS {
        match count(&root, package) {
            Ok(n) => {
                let goal = match *package {
                    "erpnet-oauth-core" => Some(60),
                    "erpnet-oauth-ureq" => Some(80),
                    _ => None,
                };
                let verdict = goal
                    .map(|g| format!(" (goal <= {g}: {})", if n <= g { "met" } else { "MISSED" }))
                    .unwrap_or_default();
                println!("  {package:<42} {n:>4}{verdict}");
            }
            Err(e) => {
                eprintln!("{package}: {e}");
                failed = true;
            }
        }
    }
    let scratch = std::env::temp_dir().join(format!("xtask-deps-{}", std::process::id()));
    if compare {
        println!("for comparison (measured now in throwaway projects under {}):", scratch.display());
        for (i, (label, package, dependency)) in THEIRS.iter().enumerate() {
            let dir = scratch.join(format!("p{i}"));
            match project(&dir, dependency).and_then(|()| count(&dir, package)) {
                Ok(n) => println!("  {label:<42} {n:>4}"),
                Err(e) => {
                    eprintln!("{label}: {e}");
                    failed = true;
                }
            }
        }
    }
    if build_time {
        match build_times(&root, &scratch) {
            Ok((ours, theirs)) => println!(
                "clean debug build (`cargo build`, fresh target dir, dependencies at opt-level 1 for both as in the \
                 root workspace, same run): erpnet-oauth-core {ours:.1} s, \
                 oauth2-rs (no default features) {theirs:.1} s; core / oauth2-rs = {:.2}",
                ours / theirs
            ),
            Err(e) => {
                eprintln!("build time: {e}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The unique crates of `cargo tree -p package -e normal --prefix none` in `dir`, the package included.
fn count(dir: &Path, package: &str) -> Result<usize, String> {
    let out = Command::new(cargo())
        .current_dir(dir)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(unique_crates(&String::from_utf8_lossy(&out.stdout)))
}

/// Counts the unique `name version` pairs of `cargo tree --prefix none` output.
pub fn unique_crates(tree: &str) -> usize {
    let crates: BTreeSet<(&str, &str)> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .collect();
    crates.len()
}

/// A throwaway binary project depending on `dependency`.
fn project(dir: &Path, dependency: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    let manifest = format!(
        "[package]\nname = \"deps-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\n{dependency}\n\n[workspace]\n\n\
         # The root workspace's dev profile, so that both builds optimise dependencies alike.\n\
         [profile.dev.package.\"*\"]\nopt-level = 1\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").map_err(|e| e.to_string())?;
    Ok(())
}

/// Clean debug builds, each in a fresh target directory: the core, then oauth2-rs without default features.
fn build_times(root: &Path, scratch: &Path) -> Result<(f64, f64), String> {
    let theirs_dir = scratch.join("build-oauth2");
    project(&theirs_dir, THEIRS.first().map(|t| t.2).unwrap_or_default())?;
    // Fetch first, so that downloads are not timed.
    for dir in [root, theirs_dir.as_path()] {
        run(Command::new(cargo()).current_dir(dir).arg("fetch"))?;
    }
    let time = |cmd: &mut Command| -> Result<f64, String> {
        let start = Instant::now();
        run(cmd)?;
        Ok(start.elapsed().as_secs_f64())
    };
    let ours = time(
        Command::new(cargo()).current_dir(root).env("CARGO_TARGET_DIR", scratch.join("target-core")).args([
            "build",
            "-p",
            "erpnet-oauth-core",
        ]),
    )?;
    let theirs = time(
        Command::new(cargo())
            .current_dir(&theirs_dir)
            .env("CARGO_TARGET_DIR", scratch.join("target-oauth2"))
            .arg("build"),
    )?;
    Ok((ours, theirs))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_unique_crates() {
        let tree = "erpnet-oauth-core v0.1.0 (/x)\nhttp v1.3.1\nbytes v1.10.1\nserde v1.0.219\nbytes v1.10.1 (*)\n\
                    itoa v1.0.15\nserde v1.0.219 (*)\n\n";
        assert_eq!(unique_crates(tree), 5);
    }
}
