//! The `recur` command as a library: the binary's `main`, and the Python
//! package, run the same command line through [`run`].
//!
//! Everything here is the command's own glue over the `recur` library:
//! reading files into examples, run folders, progress and reports.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod compare;
pub mod convert;
pub mod corpus;
pub mod data;
pub mod esn;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod predict;
pub mod runlock;
pub mod seq;
pub mod seq2seq;
pub mod seqdata;
pub mod serve;
pub mod task;
pub mod train;

/// recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU.
#[derive(Parser)]
#[command(name = "recur", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// What a language model's units do: phrases' final states on their principal components
    /// (--pca), a unit's activation over a text (--unit), the units that track a pattern (--top).
    Inspect(Box<inspect::InspectArgs>),
    /// Train n-gram, fixed-window, Elman, GRU and LSTM language models on one split within one
    /// time budget, and compare their held-out loss, parameters and time.
    Compare(Box<compare::CompareArgs>),
    /// Serve models over HTTP: a JSON API under /v1 and a playground at /.
    Serve(Box<serve::ServeArgs>),
}

/// Every failure reaches the user as one message (with its context) and exit code 2.
pub type CliResult = anyhow::Result<()>;

/// `--precision`, shared by the commands that run a trained model.
#[derive(clap::Args, Clone, Debug)]
pub struct PrecisionArg {
    /// Number format of the weight products: f32 (exact), bf16, or int8 (a scale per output
    /// channel, activations quantised per row). bf16 and int8 run faster where the CPU has
    /// AVX512-BF16 / AVX512-VNNI and change results slightly (docs/performance.md).
    #[arg(long, default_value = "f32", value_name = "f32|bf16|int8")]
    pub precision: String,
}

impl PrecisionArg {
    /// The precision asked for; where this CPU lacks its instruction, says
    /// once on stderr that the portable path runs it.
    pub fn get(&self) -> anyhow::Result<recur::quant::Precision> {
        parse_precision(&self.precision)
    }
}

/// The precision `--precision` names; where this CPU lacks its
/// instruction, says once on stderr that the portable path runs it.
pub fn parse_precision(name: &str) -> anyhow::Result<recur::quant::Precision> {
    use recur::quant::{native, Precision};
    let p = Precision::from_name(name)
        .map_err(|_| anyhow::anyhow!("--precision: expected f32, bf16 or int8, got '{name}'"))?;
    if !native(p) {
        let isa = if p == Precision::Bf16 {
            "AVX512-BF16"
        } else {
            "AVX512-VNNI"
        };
        eprintln!("note: this CPU lacks {isa}; {p} products run on the portable path (same results, slower than f32)");
    }
    Ok(p)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
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
        Command::Serve(a) => serve::run(*a),
        Command::Inspect(a) => inspect::inspect(*a),
        Command::Compare(a) => compare::compare(*a),
        Command::Task(a) => task::run_task(*a),
        Command::Diagnose(a) => task::run_diagnose(*a),
    }
}

/// The exit code of a failure: 3 when training diverged (the last
/// checkpoint is kept), 130 when interrupted (the state is saved), 2 for
/// anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<recur::Error>() {
        Some(recur::Error::Diverged { .. }) => 3,
        Some(recur::Error::Interrupted { .. }) => 130,
        _ => 2,
    }
}
