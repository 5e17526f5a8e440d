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
    /// Keras's addition problem as sentence pairs ("123+45<TAB>168"): DIR/train.tsv and
    /// DIR/test.tsv, whose questions never appear in training.
    Addition(AdditionArgs),
}

#[derive(Args)]
pub struct AdditionArgs {
    /// Most digits per number.
    #[arg(long, default_value_t = 3)]
    digits: u32,
    /// Training pairs.
    #[arg(long, default_value_t = 50000)]
    train: usize,
    /// Held-out pairs.
    #[arg(long, default_value_t = 5000)]
    test: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The folder to write train.tsv and test.tsv into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
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
        DataCommand::Addition(a) => {
            let (train, test) = recur::data::addition_pairs(a.digits, a.train, a.test, a.seed)?;
            std::fs::create_dir_all(&a.out)?;
            for (name, pairs) in [("train.tsv", train), ("test.tsv", test)] {
                let tsv: String = pairs.iter().map(|(q, s)| format!("{q}\t{s}\n")).collect();
                write_atomic(&a.out.join(name), tsv.as_bytes())?;
            }
            println!(
                "wrote {0}/train.tsv ({1} pairs) and {0}/test.tsv ({2})",
                a.out.display(),
                a.train,
                a.test
            );
            Ok(())
        }
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
