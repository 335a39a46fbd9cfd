//! `erpnet-oauth`: log in to an ERP.net instance once, then get tokens and make authorized calls.
//!
//! The command-line contract (names, environment variables, streams, exit codes) is documented in the
//! README and is stable: scripts depend on it.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![allow(clippy::result_large_err)]

mod args;
mod call;
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
mod time;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
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
        // The reader of stdout has gone (`erpnet-oauth status | head -1`): nothing to say, to no one.
        Err(failure) if failure.is_quiet() => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("erpnet-oauth: {failure}");
            failure.exit_code()
        }
    }
}

/// A closed stdout ends the process quietly with status 0, like ripgrep, wherever the write happened. The
/// commands' own writes turn EPIPE into [`exit::Code::StdoutClosed`]; this hook covers `println!` (the
/// demo's output), which panics on it: that panic exits 0 with no message, any other goes to the default
/// hook. Rust ignores SIGPIPE, so the write fails with EPIPE instead of killing the process.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's message: "failed printing to stdout: Broken pipe (os error 32)" (EPIPE; Windows:
        // ERROR_NO_DATA, os error 232).
        let closed = ["Broken pipe", "(os error 32)", "(os error 232)"];
        if message.starts_with("failed printing to stdout") && closed.iter().any(|c| message.contains(c)) {
            std::process::exit(0);
        }
        default(info);
    }));
}
