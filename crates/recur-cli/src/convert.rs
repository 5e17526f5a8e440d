//! `recur import` and `recur export`: the PyTorch round trip.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use recur::checkpoint::{export_torch_lm, import_torch_lm, load_lm, read_vocab_json, save_lm};
use recur::data::Level;
use recur::CellKind;

use crate::CliResult;

#[derive(Args)]
pub struct ImportArgs {
    /// A PyTorch RNNModel state_dict saved with safetensors.
    #[arg(long, value_name = "STATE_DICT.safetensors")]
    torch: PathBuf,
    /// JSON array of the tokens in index order.
    #[arg(long, value_name = "VOCAB.json")]
    vocab: PathBuf,
    /// Token level of the vocabulary: char or word.
    #[arg(long)]
    level: String,
    /// For a plain RNN, its nonlinearity: rnn-tanh (default) or rnn-relu.
    #[arg(long)]
    cell: Option<String>,
    /// The recur model to write.
    #[arg(long, value_name = "MODEL.safetensors")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A recur model.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Folder for state_dict.safetensors and vocab.json (meta.json for sequence models).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn import(a: ImportArgs) -> CliResult {
    let level = Level::from_name(&a.level)
        .with_context(|| format!("--level: expected char or word, got '{}'", a.level))?;
    let cell = match a.cell.as_deref() {
        None => None,
        Some(s @ ("rnn-tanh" | "rnn-relu")) => CellKind::from_name(s),
        Some(s) => bail!("--cell: expected rnn-tanh or rnn-relu (LSTM and GRU are read from the shapes), got '{s}'"),
    };
    let vocab = read_vocab_json(&a.vocab, level)?;
    let model = import_torch_lm(&a.torch, vocab.clone(), cell)?;
    save_lm(&a.out, &model, &vocab)?;
    let c = model.config();
    println!(
        "imported a {} language model: vocab {}, embed {}, hidden {}, {} layer(s), {} parameters → {}",
        c.cell.name(),
        c.vocab_size,
        c.embed,
        c.hidden,
        c.layers,
        model.num_params(),
        a.out.display()
    );
    Ok(())
}

pub fn export(a: ExportArgs) -> CliResult {
    let format = recur::checkpoint::file_format(&a.model)?;
    if format == recur::model::seq::SEQ_FORMAT || format == recur::model::seq2seq::SEQ2SEQ_FORMAT {
        if format == recur::model::seq::SEQ_FORMAT {
            let model = recur::checkpoint::load_seq(&a.model)?;
            recur::checkpoint::export_torch_seq(&a.out, &model)?;
        } else {
            let model = recur::checkpoint::load_seq2seq(&a.model)?;
            recur::checkpoint::export_torch_seq2seq(&a.out, &model)?;
        }
        println!(
            "wrote {0}/state_dict.safetensors and {0}/meta.json (config, vocabularies, labels)",
            a.out.display()
        );
        return Ok(());
    }
    let (model, vocab) = load_lm(&a.model)?;
    export_torch_lm(&a.out, &model, &vocab)?;
    println!(
        "wrote {0}/state_dict.safetensors and {0}/vocab.json",
        a.out.display()
    );
    Ok(())
}
