//! `recur eval`: cross-entropy of a model on a text file.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use recur::data::{read_text, tokenize};
use recur::metrics::{bits_per_token, perplexity};
use recur::model::any::AnyLm;

use crate::CliResult;

#[derive(Args)]
pub struct EvalArgs {
    /// A recur model (any language model, sequence model or seq2seq model).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The text to evaluate on.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    seq: crate::seq::SeqEvalArgs,
    #[command(flatten)]
    decode: crate::seq2seq::DecodeArgs,
    #[command(flatten)]
    precision: crate::PrecisionArg,
}

pub fn run(a: EvalArgs) -> CliResult {
    let precision = a.precision.get()?;
    let format = recur::checkpoint::file_format(&a.model)?;
    if format == recur::model::seq::SEQ_FORMAT {
        return crate::seq::eval(&a.model, &a.data, a.json, &a.seq, precision);
    }
    if format == recur::model::seq2seq::SEQ2SEQ_FORMAT {
        return crate::seq2seq::eval(&a.model, &a.data, a.json, &a.decode, precision);
    }
    let (mut model, vocab) = AnyLm::load(&a.model)?;
    model
        .set_precision(precision)
        .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    let text = read_text(&a.data)?;
    let ids = vocab.encode(&tokenize(&text, vocab.level), &a.data.display().to_string())?;
    if ids.len() < 2 {
        bail!(
            "{}: has {} tokens; at least 2 are needed to predict one",
            a.data.display(),
            ids.len()
        );
    }
    // One stream, every token predicted from all those before it.
    let (ce, predictions) = model.cross_entropy(&ids)?;
    let (ppl, bits) = (perplexity(ce), bits_per_token(ce));
    if a.json {
        let v = serde_json::json!({
            "tokens": ids.len(), "predictions": predictions, "mean_cross_entropy": ce,
            "perplexity": ppl, "bits_per_token": bits,
        });
        println!("{v}");
    } else {
        println!("tokens              {}", ids.len());
        println!("mean cross-entropy  {ce:.6} nats");
        println!("perplexity          {ppl:.4}");
        println!(
            "bits per {:<10} {bits:.4}",
            if vocab.level == recur::data::Level::Char {
                "char"
            } else {
                "token"
            }
        );
    }
    Ok(())
}
