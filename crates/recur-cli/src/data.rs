//! `recur data`: generated data sets.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use recur::checkpoint::write_atomic;
use recur::data::mackey_glass;

use crate::CliResult;

#[derive(Subcommand)]
pub enum DataCommand {
    /// The Mackey–Glass delay differential equation, as a CSV with columns t,x.
    MackeyGlass(MackeyGlassArgs),
}

#[derive(Args)]
pub struct MackeyGlassArgs {
    /// Samples to write.
    #[arg(long)]
    length: usize,
    /// Delay τ.
    #[arg(long, default_value_t = 17.0)]
    tau: f64,
    /// Integration step.
    #[arg(long, default_value_t = 0.1)]
    dt: f64,
    /// Keep every k-th integration step (the sampling interval is dt·k).
    #[arg(long, default_value_t = 10)]
    subsample: usize,
    /// Perturb the initial history (0: x0 = 1.2 exactly).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (default: standard output).
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

pub fn run(cmd: DataCommand) -> CliResult {
    match cmd {
        DataCommand::MackeyGlass(a) => {
            let x = mackey_glass(a.length, a.tau, a.dt, a.subsample, a.seed)?;
            let step = a.dt * a.subsample as f64;
            let mut csv = String::from("t,x\n");
            for (i, v) in x.iter().enumerate() {
                csv += &format!("{},{v}\n", i as f64 * step);
            }
            match a.out {
                Some(p) => write_atomic(&p, csv.as_bytes())?,
                None => std::io::stdout().write_all(csv.as_bytes())?,
            }
            Ok(())
        }
    }
}
