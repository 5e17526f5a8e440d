//! `recur predict`: a sequence model's predictions for a file.

use std::path::PathBuf;

use clap::Args;

use crate::CliResult;

#[derive(Args)]
pub struct PredictArgs {
    /// A recur classifier, tagger or regressor.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The file to predict for, in the format the model trained on (text lines may omit the label).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Write here instead of to standard output (TSV, CoNLL-U or CSV).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    seq: crate::seq::SeqEvalArgs,
    #[command(flatten)]
    precision: crate::PrecisionArg,
}

pub fn run(a: PredictArgs) -> CliResult {
    let precision = a.precision.get()?;
    crate::seq::predict(&a.model, &a.data, a.out.as_deref(), &a.seq, precision)
}
