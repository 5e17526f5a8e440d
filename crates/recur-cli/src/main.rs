//! The `recur` command: a thin layer over the `recur` library.

use std::process::ExitCode;

use clap::Parser;
use recur_cli::{exit_code, run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
