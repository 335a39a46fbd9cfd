//! `cargo xtask conformance [--filter SUBSTR]`: runs the conformance cases in `fixtures/` against the
//! core and prints `PASS id` / `FAIL id: why` per case, then `N passed, M failed`.

use std::process::ExitCode;
use xtask::conformance::{self, CoreDriver, Driver};

const USAGE: &str = "usage: cargo xtask conformance [--filter SUBSTR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => conformance_task(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn conformance_task(args: &[String]) -> ExitCode {
    let mut filter = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.clone().next()) {
            ("--filter", Some(value)) => {
                filter = Some(value.clone());
                it.next();
            }
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let dir = conformance::fixtures_dir();
    let report = match conformance::run(&dir, filter.as_deref(), &mut || {
        Box::new(CoreDriver::new()) as Box<dyn Driver>
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for line in report.lines() {
        println!("{line}");
    }
    if report.failed() > 0 || report.results.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
