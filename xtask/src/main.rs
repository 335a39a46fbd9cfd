//! `cargo xtask conformance [--driver core|ureq|all] [--filter SUBSTR]`: runs the conformance cases in
//! `fixtures/` through the core and/or the ureq adapter (default: both) and prints `PASS [driver] id` /
//! `FAIL [driver] id: why` / `SKIP [driver] id: why` per case, then `N passed, M failed, K skipped`.

mod bench;
mod deps;
mod fuzz;

use std::process::ExitCode;
use xtask::conformance::{self, CoreDriver, Driver, Report, UreqDriver};

const USAGE: &str = "usage: cargo xtask conformance [--driver core|ureq|all] [--filter SUBSTR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => conformance_task(args.get(1..).unwrap_or_default()),
        Some("bench") => bench::main(args.get(1..).unwrap_or_default()),
        Some("deps") => deps::main(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz::main(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn conformance_task(args: &[String]) -> ExitCode {
    let mut filter = None;
    let mut drivers = vec!["core", "ureq"];
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.clone().next().map(String::as_str)) {
            ("--filter", Some(value)) => {
                filter = Some(value.to_owned());
                it.next();
            }
            ("--driver", Some(value @ ("core" | "ureq" | "all"))) => {
                drivers = if value == "all" { vec!["core", "ureq"] } else { vec![value] };
                it.next();
            }
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let dir = conformance::fixtures_dir();
    let mut report = Report::default();
    for name in drivers {
        let mut make = || -> Box<dyn Driver> {
            if name == "core" { Box::new(CoreDriver::new()) } else { Box::new(UreqDriver::new()) }
        };
        match conformance::run(&dir, filter.as_deref(), &mut make) {
            Ok(r) => report.extend(r),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for line in report.lines() {
        println!("{line}");
    }
    if report.failed() > 0 || report.passed() == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
