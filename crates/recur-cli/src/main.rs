//! The `recur` command: a thin layer over the `recur` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod corpus;
mod data;
mod esn;
mod eval;
mod generate;
mod predict;
mod runlock;
mod seq;
mod seq2seq;
mod seqdata;
mod task;
mod train;

/// recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU.
#[derive(Parser)]
#[command(name = "recur", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a language model on a text file (or on recur's own source, with no --data), or with
    /// --task a classifier, tagger, regressor or encoder-decoder (seq2seq).
    Train(Box<train::TrainArgs>),
    /// Write text with a trained model.
    Generate(generate::GenerateArgs),
    /// Measure a model on a file: a language model's cross-entropy, perplexity and bits per
    /// token; a classifier's or tagger's accuracy and F1; a regressor's errors.
    Eval(eval::EvalArgs),
    /// Write a sequence model's predictions for a file: labels, tags or values.
    Predict(predict::PredictArgs),
    /// Translate lines with an encoder-decoder (greedy, beam search or sampling).
    Translate(Box<seq2seq::TranslateArgs>),
    /// Corpus BLEU and chrF of a hypothesis file against a reference file (sacreBLEU's defaults).
    Bleu(seq2seq::BleuArgs),
    /// Turn a PyTorch word_language_model state_dict into a recur model.
    Import(convert::ImportArgs),
    /// Write a recur model as a PyTorch state_dict and vocab.json.
    Export(convert::ExportArgs),
    /// Echo state networks: fit a reservoir's readout, predict, generate.
    #[command(subcommand)]
    Esn(esn::EsnCommand),
    /// Write generated data sets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train and test a net on a long-memory task: binary-addition, adding or copy.
    Task(Box<task::TaskArgs>),
    /// Record how gradients flow back through time while a net learns a task, and plot it.
    Diagnose(Box<task::DiagnoseArgs>),
    /// Measure throughput: the PyTorch baseline's language-model configs, or `bench layer`.
    Bench(bench::BenchArgs),
}

/// Every failure reaches the user as one message (with its context) and exit code 2.
pub type CliResult = anyhow::Result<()>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Generate(a) => generate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Translate(a) => seq2seq::translate(*a),
        Command::Bleu(a) => seq2seq::bleu(a),
        Command::Import(a) => convert::import(a),
        Command::Export(a) => convert::export(a),
        Command::Esn(cmd) => esn::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Bench(a) => bench::run_args(a),
        Command::Task(a) => task::run_task(*a),
        Command::Diagnose(a) => task::run_diagnose(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 3: training diverged (the last checkpoint is kept); 130:
            // interrupted (the state is saved); 2: anything else.
            match e.downcast_ref::<recur::Error>() {
                Some(recur::Error::Diverged { .. }) => ExitCode::from(3),
                Some(recur::Error::Interrupted { .. }) => ExitCode::from(130),
                _ => ExitCode::from(2),
            }
        }
    }
}
