//! The `recur` command: a thin layer over the `recur` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;

/// recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU.
#[derive(Parser)]
#[command(name = "recur", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
