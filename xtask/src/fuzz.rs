//! `cargo xtask fuzz [--smoke | --seconds N] [--target NAME]`: runs the cargo-fuzz targets in `fuzz/`.
//!
//! Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing. The targets are built with
//! AddressSanitizer through the stable toolchain's bootstrap switch (`RUSTC_BOOTSTRAP=1`), so no nightly
//! toolchain is needed. `--smoke` runs each target for 10 s (CI); `--seconds N` for N seconds each
//! (default 60). Prints the executions of each target and fails when one finds a crash (its input is saved
//! under `fuzz/artifacts/<target>/`).

use crate::bench::{cargo, workspace_root};
use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask fuzz [--smoke | --seconds N] [--target NAME]";

/// Runs the task.
pub fn main(args: &[String]) -> ExitCode {
    let mut seconds = 60u64;
    let mut only = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.clone().next()) {
            ("--smoke", _) => seconds = 10,
            ("--seconds", Some(n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                seconds = n.parse().unwrap_or(60);
                it.next();
            }
            ("--target", Some(name)) => {
                only = Some(name.clone());
                it.next();
            }
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let root = workspace_root();
    let installed =
        Command::new(cargo()).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        let ok = Command::new(cargo()).args(["install", "cargo-fuzz", "--locked"]).status();
        if !matches!(ok, Ok(s) if s.success()) {
            eprintln!("cargo install cargo-fuzz failed");
            return ExitCode::FAILURE;
        }
    }
    let fuzz = |args: &[&str]| {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(&root).env("RUSTC_BOOTSTRAP", "1").arg("fuzz").args(args);
        cmd
    };
    let targets = match fuzz(&["list"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && only.as_deref().is_none_or(|o| o == *t))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        _ => {
            eprintln!("cargo fuzz list failed");
            return ExitCode::FAILURE;
        }
    };
    if targets.is_empty() {
        eprintln!("no fuzz target to run");
        return ExitCode::FAILURE;
    }
    if !matches!(fuzz(&["build"]).status(), Ok(s) if s.success()) {
        eprintln!("cargo fuzz build failed");
        return ExitCode::FAILURE;
    }
    let built = started.elapsed();
    let mut failed = Vec::new();
    for target in &targets {
        let max_time = format!("-max_total_time={seconds}");
        let out = fuzz(&["run", target, "--", &max_time, "-print_final_stats=1"]).output();
        let Ok(out) = out else {
            eprintln!("{target}: could not run cargo fuzz");
            failed.push(target.clone());
            continue;
        };
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = executions(&log).map_or_else(|| "?".to_owned(), |n| n.to_string());
        if out.status.success() {
            println!("{target:<20} {runs:>10} executions in {seconds} s, no crash");
        } else {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            println!(
                "{target:<20} {runs:>10} executions: CRASH (input saved under fuzz/artifacts/{target}/)"
            );
            failed.push(target.clone());
        }
    }
    println!(
        "{} targets, {} crashed; build {:.0} s, total {:.0} s",
        targets.len(),
        failed.len(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The executions libFuzzer reports (`stat::number_of_executed_units: N`, or `Done N runs`).
pub fn executions(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            return n.trim().parse().ok();
        }
        line.strip_prefix("Done ")?.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_executions() {
        assert_eq!(executions("#2 INITED\nDone 21006 runs in 6 second(s)\n"), Some(21006));
        assert_eq!(executions("stat::number_of_executed_units: 99\nstat::peak_rss_mb: 40\n"), Some(99));
        assert_eq!(executions("==1== ERROR: AddressSanitizer"), None);
    }
}
