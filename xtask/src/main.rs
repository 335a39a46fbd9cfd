//! `cargo xtask conformance [--driver core|ureq|async|all] [--filter SUBSTR]`: runs the conformance cases
//! in `fixtures/` through the core, the ureq adapter and/or the async adapter (default: all three) and
//! prints `PASS [driver] id` / `FAIL [driver] id: why` per case, then `[driver] N passed, M failed` per
//! driver, then the totals `N passed, M failed`.

mod bench;
mod ci;
mod deps;
mod fuzz;
mod package;

use std::process::ExitCode;
use xtask::conformance::{self, AsyncDriver, CoreDriver, Driver, Report, UreqDriver};

const USAGE: &str = "usage: cargo xtask conformance [--driver core|ureq|async|all] [--filter SUBSTR]
       cargo xtask ci | bench [--quick] | deps | fuzz [--smoke | --seconds N] | package [--allow-dirty]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => conformance_task(args.get(1..).unwrap_or_default()),
        Some("bench") => bench::main(args.get(1..).unwrap_or_default()),
        Some("deps") => deps::main(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz::main(args.get(1..).unwrap_or_default()),
        Some("ci") => ci::main(args.get(1..).unwrap_or_default()),
        Some("package") => package::main(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn conformance_task(args: &[String]) -> ExitCode {
    let mut filter = None;
    let mut drivers = vec!["core", "ureq", "async"];
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.clone().next().map(String::as_str)) {
            ("--filter", Some(value)) => {
                filter = Some(value.to_owned());
                it.next();
            }
            ("--driver", Some(value @ ("core" | "ureq" | "async" | "all"))) => {
                drivers = if value == "all" { vec!["core", "ureq", "async"] } else { vec![value] };
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
            match name {
                "core" => Box::new(CoreDriver::new()),
                "ureq" => Box::new(UreqDriver::new()),
                _ => Box::new(AsyncDriver::new()),
            }
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
