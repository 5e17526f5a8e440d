//! `recur generate`: text from a trained model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use rand::SeedableRng;
use recur::data::tokenize;
use recur::model::any::AnyLm;
use recur::sample::{default_start, Decoding};

use crate::CliResult;

#[derive(Args)]
pub struct GenerateArgs {
    /// A recur model.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Text to start from (default: a newline, or <eos> for word models).
    #[arg(long)]
    prime: Option<String>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 500)]
    length: usize,
    /// Softmax temperature.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample only from the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only from the most likely tokens up to cumulative probability p.
    #[arg(long)]
    top_p: Option<f64>,
    /// Always take the most likely token.
    #[arg(long, conflicts_with_all = ["beam", "top_k", "top_p"])]
    greedy: bool,
    /// Beam search with this many beams.
    #[arg(long, conflicts_with_all = ["top_k", "top_p"])]
    beam: Option<usize>,
    /// Seed of the sampling stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A conditioned model: the condition, a label name or comma-separated numbers.
    #[arg(long, value_name = "ROW|LABEL")]
    condition: Option<String>,
    /// A conditioned model: sequences to write, one per line.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[command(flatten)]
    precision: crate::PrecisionArg,
}

pub fn run(a: GenerateArgs) -> CliResult {
    let precision = a.precision.get()?;
    if recur::checkpoint::file_format(&a.model)? == recur::model::seq2seq::SEQ2SEQ_FORMAT {
        use recur::model::seq2seq::Search;
        if a.prime.is_some() {
            bail!("--prime: a conditioned decoder starts from its condition; give --condition instead");
        }
        let (search, nbest) = if a.greedy {
            (Search::Greedy, 1)
        } else if let Some(width) = a.beam {
            (Search::Beam { width, alpha: 0.6 }, 1)
        } else {
            (
                Search::Sample {
                    temperature: a.temperature,
                    top_k: a.top_k,
                    top_p: a.top_p,
                    seed: a.seed,
                },
                1,
            )
        };
        return crate::seq2seq::generate(
            &a.model,
            a.condition.as_deref(),
            a.count,
            a.length,
            search,
            nbest,
            precision,
        );
    }
    if a.condition.is_some() {
        bail!(
            "--condition: {} is a language model without a condition",
            a.model.display()
        );
    }
    let (mut model, vocab) = AnyLm::load(&a.model)?;
    model
        .set_precision(precision)
        .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    let prime = match &a.prime {
        Some(p) if !p.is_empty() => vocab.encode(&tokenize(p, vocab.level), "--prime")?,
        _ => vec![default_start(&vocab)],
    };
    if prime.is_empty() {
        bail!("--prime: the text has no tokens");
    }
    let how = if a.greedy {
        Decoding::Greedy
    } else if let Some(width) = a.beam {
        Decoding::Beam { width }
    } else {
        Decoding::Sample {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(p) = &a.prime {
        let _ = write!(out, "{p}");
    }
    let level = vocab.level;
    let mut first = true;
    model.generate_with(&prime, a.length, how, &mut rng, &mut |t, _| {
        let tok = &vocab.tokens[t as usize];
        let piece = match level {
            recur::data::Level::Char => tok.clone(),
            recur::data::Level::Word if tok == recur::data::EOS => "\n".to_string(),
            recur::data::Level::Word => {
                let sep = if first && a.prime.is_none() { "" } else { " " };
                format!("{sep}{tok}")
            }
        };
        first = false;
        let _ = write!(out, "{piece}");
        let _ = out.flush();
        true
    })?;
    let _ = writeln!(out);
    Ok(())
}
