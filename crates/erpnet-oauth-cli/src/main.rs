//! `erpnet-oauth`: log in to an ERP.net instance once, then get tokens and make authorized calls.
//!
//! The command-line contract (names, environment variables, streams, exit codes) is documented in the
//! README and is stable: scripts depend on it.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![allow(clippy::result_large_err)]

mod args;
mod commands;
mod demo;
mod errors;
mod exit;
mod login;
mod logout;
mod saved_secret;
mod settings;
mod status;
mod store;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr with status 2.
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::Code::Usage as u8) } else { ExitCode::SUCCESS };
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("erpnet-oauth: {failure}");
            failure.exit_code()
        }
    }
}
