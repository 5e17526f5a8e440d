//! `recur train`: a language model on a text file, with progress, metrics,
//! a loss plot, checkpoints, resume, and a sample at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use recur::checkpoint::{load_lm, write_atomic};
use recur::data::tokens::{tokenize_to_file, Corpus, Tokenized};
use recur::data::{Level, LmData, Vocab};
use recur::metrics::{bits_per_token, perplexity};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::model::window::{WindowConfig, WindowLm, WINDOW_FORMAT};
use recur::optim::OptimizerKind;
use recur::quant::Precision;
use recur::sample::{default_start, generate, Decoding};
use recur::train::{
    Budget, Data, MetricsLine, Observer, OnDivergence, Progress, ScheduleKind, StepReport,
    TrainConfig, Trainer,
};
use recur::{CellKind, Error};
use serde::{Deserialize, Serialize};

use crate::CliResult;

#[derive(Args)]
pub struct TrainArgs {
    /// Text file to train on (default: recur's own source, embedded; trains for a minute).
    /// With --task: the training file (label<TAB>text, .conllu, .ts or .csv), or one file per
    /// class (several files, or a folder).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub data: Vec<PathBuf>,

    /// Train a sequence model instead of a language model: classify, tag or regress.
    #[arg(long)]
    pub task: Option<String>,
    /// With --task: held-out examples for validation and early stopping
    /// [default: --val-fraction of the training examples].
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    /// Text encoding of text files: utf-8, windows-1252 or latin1.
    #[arg(long, default_value = "utf-8")]
    pub encoding: String,
    /// Tagging: the CoNLL-U column to learn, upos or xpos.
    #[arg(long, default_value = "upos")]
    pub column: String,
    /// CSV: the column to predict (name or 0-based index).
    #[arg(long)]
    pub target: Option<String>,
    /// CSV: input columns, comma-separated [default: the target alone].
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// CSV: predict this many steps ahead from each window (0: the target at every step).
    #[arg(long, default_value_t = 1)]
    pub horizon: usize,
    /// CSV: input steps per window [default: 24].
    #[arg(long)]
    pub window: Option<usize>,
    /// CSV: hold out the last N rows from training (the test that `recur eval` forecasts).
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// CSV: model the logarithm of the values.
    #[arg(long)]
    pub log: bool,
    /// CSV: inputs and targets relative to each window's last value.
    #[arg(long)]
    pub relative: bool,
    /// Sequence classification: pooling over the steps: last, mean, max or attention [default: max for text, last for series].
    #[arg(long)]
    pub pooling: Option<String>,
    /// With --task: run each layer in both directions [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub bidirectional: Option<bool>,
    /// With --task: residual connections between stacked layers.
    #[arg(long)]
    pub residual: bool,
    /// With --task: learn the initial state instead of starting from zeros.
    #[arg(long)]
    pub learned_init: bool,
    /// Class weights of the loss: balanced (n / (C·n_c)), or one number per class in label order.
    #[arg(long)]
    pub class_weights: Option<String>,
    /// With --task: stop after this many evaluations without a better validation score (0: never) [default: 5].
    #[arg(long)]
    pub patience: Option<u32>,
    /// Classification: K-fold cross-validation on the training data instead of one run.
    #[arg(long)]
    pub folds: Option<usize>,
    /// With --folds: print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Tagging: width of the character embedding [default: 32].
    #[arg(long)]
    pub char_embed: Option<usize>,
    /// Tagging: hidden units per direction of the character BiLSTM (0: no character encoder) [default: 64].
    #[arg(long)]
    pub char_hidden: Option<usize>,
    /// Text classification: first train a language model for this many epochs on the training
    /// texts (one on the reversed texts too for a bidirectional layer), and start the embedding
    /// and first layer from it (Dai & Le 2015) [default: 0, none].
    #[arg(long, default_value_t = 0)]
    pub pretrain: usize,
    /// .ts series: feed the network this many consecutive steps at a time (patches)
    /// [default: enough that the network runs at most 32 steps on the longest training series].
    #[arg(long)]
    pub patch: Option<usize>,
    /// Series: the standard deviation of Gaussian noise added to the standardised inputs in
    /// training (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Word dropout: a training word seen c times becomes <unk> with chance α/(α + c) [default: 0.25 for tagging, 0 otherwise].
    #[arg(long)]
    pub word_dropout: Option<f64>,
    /// Tokens: char (Unicode scalar values) or word (whitespace-separated, <eos> per line; for
    /// seq2seq, punctuation split off) [default: char; word for seq2seq].
    #[arg(long)]
    pub level: Option<String>,
    /// Seq2seq: attention of the decoder: none, bahdanau, general or dot.
    #[arg(long, default_value = "bahdanau")]
    pub attention: String,
    /// Seq2seq with general or dot attention: feed the attentional state into the next step.
    #[arg(long)]
    pub input_feeding: bool,
    /// Seq2seq: read each source reversed (Sutskever et al. 2014).
    #[arg(long)]
    pub reverse_source: bool,
    /// Seq2seq: encoder layers [default: --layers].
    #[arg(long)]
    pub encoder_layers: Option<usize>,
    /// Train a decoder conditioned on a feature vector per sequence: `label` (--data holds
    /// labelled texts, as for --task classify), or a file with one condition per line of --data:
    /// a .csv of numbers, a .safetensors tensor [N, C], or a text file of labels.
    #[arg(long, value_name = "label|FILE")]
    pub condition: Option<String>,
    /// With --condition: where it enters the decoder: init (the initial state, through a learned
    /// Linear + tanh), first-step (an extra first input) or every-step (joined to every input).
    #[arg(long, default_value = "init")]
    pub condition_mode: String,
    /// Seq2seq: teacher forcing: a ratio in [0, 1], or scheduled sampling as linear:K[:FLOOR],
    /// exponential:K or inverse-sigmoid:K over the training steps.
    #[arg(long, default_value = "1")]
    pub teacher_forcing: String,
    /// Seq2seq: label smoothing ε of the loss [default: 0.1 for words, 0 for characters].
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Seq2seq: keep at most this many tokens per side's vocabulary (the rest read as <unk>).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Seq2seq: leave out training pairs with a side longer than this many tokens [default: 50 words, 200 characters; 0: none].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Word level: words seen fewer times become <unk>.
    #[arg(long, default_value_t = 1)]
    pub min_count: usize,

    /// Language models: rnn (the recurrent model), window (the fixed-window neural model of
    /// Bengio et al. 2003) or ngram (interpolated modified Kneser-Ney).
    #[arg(long, default_value = "rnn")]
    pub model: String,
    /// --model ngram: the order N (each token predicted from the N − 1 before it).
    #[arg(long, default_value_t = 5)]
    pub order: usize,
    /// --model window: the tokens K the model sees.
    #[arg(long, default_value_t = 8)]
    pub context: usize,
    /// --model window: dropout on the concatenated embeddings (--dropout is the hidden layer's) [default: 0].
    #[arg(long)]
    pub embed_dropout: Option<f64>,
    /// Cell: lstm, gru, gru-reset-before, rnn-tanh, rnn-relu [default: lstm].
    #[arg(long)]
    pub cell: Option<String>,
    /// One-layer Elman language models (--cell rnn-tanh or rnn-relu --layers 1): weight of the
    /// gradient-decay regulariser (Pascanu et al. 2013), which penalises ‖dL/dh_{t−1}‖ shrinking
    /// from ‖dL/dh_t‖ at every step; 0 turns it off.
    #[arg(long, allow_negative_numbers = true)]
    pub gradient_regulariser: Option<f64>,
    /// Stacked layers [default: 2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden units per layer [default: 512; 256 on the built-in corpus].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Embedding width [default: 128].
    #[arg(long)]
    pub embed: Option<usize>,
    /// Dropout on embeddings, between layers and on the output [default: 0.2; 0.1 on the built-in corpus].
    #[arg(long)]
    pub dropout: Option<f64>,

    /// Steps of truncated backpropagation through time per batch [default: 100; 64 on the built-in corpus].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Sequences per batch [default: 64; 32 on the built-in corpus].
    #[arg(long)]
    pub batch: Option<usize>,

    /// sgd, adam, adamw, rmsprop or adagrad.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate [default: 0.002; 0.003 on the built-in corpus].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Momentum (sgd, rmsprop).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Weight decay (decoupled for adamw).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Learning-rate schedule: constant, step (Zaremba: ×--lr-decay each epoch from --decay-start), cosine, or plateau (×--lr-decay after each evaluation that does not improve the validation loss, down to --min-lr).
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Step schedule: factor per epoch; plateau: factor per evaluation without improvement.
    #[arg(long, default_value_t = 0.5)]
    pub lr_decay: f32,
    /// Step schedule: first decayed epoch (0-based).
    #[arg(long, default_value_t = 4)]
    pub decay_start: usize,
    /// Cosine schedule: final learning rate; plateau: the lowest.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f32,
    /// Clip the global gradient norm (0: off).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub clip_norm: f32,
    /// Clip each gradient element to ±this (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub clip_value: f32,

    /// Train for this many epochs [default: 10; 1 minute with no --data].
    #[arg(long, group = "budget")]
    pub epochs: Option<usize>,
    /// Train for this many steps.
    #[arg(long, group = "budget")]
    pub steps: Option<u64>,
    /// Train for this many minutes.
    #[arg(long, group = "budget")]
    pub time: Option<f64>,

    /// Fraction of the text, from its end, held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Evaluate, log and checkpoint every N steps [default: each epoch, at most 200 steps apart].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Seed of the weights and of dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads for matrix products (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output folder.
    #[arg(long, default_value = "recur-run", value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run saved in DIR with its own settings (a new --epochs/--steps/--time, --eval-every or --sample-length may be given).
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "init_from", "cell", "layers", "hidden", "embed", "dropout", "data", "level", "min_count",
        "seq_len", "batch", "optimizer", "lr", "momentum", "weight_decay", "schedule", "lr_decay",
        "decay_start", "min_lr", "clip_norm", "clip_value", "val_fraction", "seed", "out",
        "task", "valid", "encoding", "column", "target", "features", "horizon", "window",
        "holdout", "log", "relative", "pooling", "bidirectional", "residual", "learned_init",
        "class_weights", "patience", "folds", "overwrite", "attention", "input_feeding",
        "reverse_source", "encoder_layers", "teacher_forcing", "label_smoothing", "vocab", "max_tokens",
        "condition", "condition_mode", "on_divergence", "char_embed", "char_hidden", "word_dropout", "noise", "patch", "pretrain",
        "model", "order", "context", "embed_dropout", "gradient_regulariser", "precision",
    ])]
    pub resume: Option<PathBuf>,
    /// When a batch's loss or gradient diverges (not finite, or above 10× the loss of uniform
    /// prediction): stop (exit code 3, the last checkpoint kept) or skip the batch and halve the
    /// learning rate (stopping after 10 skips in a row).
    #[arg(long, default_value = "stop")]
    pub on_divergence: String,
    /// Train into an --out folder that already holds a run, replacing it.
    #[arg(long)]
    pub overwrite: bool,
    /// Number format of training's weight products: f32, or bf16 (products of bf16-rounded
    /// operands added in f32; master weights, gradients and optimiser state stay f32). bf16 runs
    /// faster where the CPU has AVX512-BF16 (docs/performance.md).
    #[arg(long, default_value = "f32", value_name = "f32|bf16")]
    pub precision: String,
    /// Start from the weights (and vocabulary) of this recur model.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["cell", "layers", "hidden", "embed"])]
    pub init_from: Option<PathBuf>,
    /// Tokens of the sample printed at the end (0: none) [default: 400].
    #[arg(long)]
    pub sample_length: Option<usize>,
}

/// What `--resume` needs besides the library's state: `OUT/run.json`.
#[derive(Serialize, Deserialize)]
struct RunFile {
    data: Option<PathBuf>,
    #[serde(default)]
    gradient_regulariser: f64,
    level: String,
    min_count: usize,
    budget: Budget,
    eval_every: Option<u64>,
    sample_length: usize,
    batch: usize,
    seq_len: usize,
    val_fraction: f64,
}

/// The run's corpus tokenised into `out/tokens.bin` (memory-mapped, so a
/// corpus larger than memory trains in bounded memory), reusing the file
/// when the source is unchanged; with `vocab`, encoded by it. Also gives
/// the name messages use.
fn load_data(
    data: Option<&Path>,
    out: &Path,
    level: Level,
    vocab: Option<&Vocab>,
    min_count: usize,
) -> anyhow::Result<(Tokenized, String)> {
    let builtin;
    let corpus = match data {
        Some(p) => {
            // Fails early, naming the file, when it is missing or a folder.
            let meta = std::fs::metadata(p).with_context(|| format!("--data {}", p.display()))?;
            if meta.is_dir() {
                bail!("--data {}: is a folder, expected a text file", p.display());
            }
            if meta.len() == 0 {
                bail!("{}: the file is empty", p.display());
            }
            Corpus::File(p)
        }
        None => {
            builtin = crate::corpus::text();
            Corpus::Text(&builtin, "the built-in corpus (recur's own source)")
        }
    };
    let path = out.join("tokens.bin");
    let started = Instant::now();
    let t = tokenize_to_file(&corpus, level, vocab, min_count, &path)?;
    if t.reused {
        println!("reusing {} ({} tokens)", path.display(), t.tokens.len());
    } else {
        println!(
            "tokenised {} into {} ({} tokens, {:.1} s)",
            corpus.name(),
            path.display(),
            t.tokens.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok((t, corpus.name()))
}

/// The progress bar and the log lines of a run.
pub struct Progressbar {
    pub pb: ProgressBar,
    start_step: u64,
    start_tokens: u64,
    limit_s: Option<f64>,
    /// The run's last step, when known.
    total: Option<u64>,
    pub started: Instant,
    /// Language models: whether to show bits per character.
    char_level: bool,
    /// Sequence models: show every held-out metric instead of perplexity.
    metrics: bool,
}

impl Progressbar {
    /// A bar for a run of `budget` from `progress`, `spe` steps per epoch.
    pub fn new(
        budget: Budget,
        spe: Option<usize>,
        progress: &Progress,
        char_level: bool,
        metrics: bool,
    ) -> Progressbar {
        let limit_s = match budget {
            Budget::Minutes(m) => Some(m * 60.0),
            _ => None,
        };
        let pb = match (budget.total_steps(spe), limit_s) {
            (Some(end), _) => ProgressBar::new(end.saturating_sub(progress.step)),
            (None, Some(s)) => ProgressBar::new(s.ceil() as u64),
            _ => ProgressBar::hidden(),
        };
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {percent:>3}% [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progressbar {
            pb,
            start_step: progress.step,
            start_tokens: progress.tokens_seen,
            limit_s,
            total: budget.total_steps(spe),
            started: Instant::now(),
            char_level,
            metrics,
        }
    }

    pub fn say(&self, msg: &str) {
        if self.pb.is_hidden() {
            println!("{msg}");
        } else {
            self.pb.println(msg);
        }
    }
}

impl<M> Observer<M> for Progressbar {
    fn step(&mut self, _: &M, r: &StepReport, p: &Progress) -> recur::Result<()> {
        let tok_s = (p.tokens_seen - self.start_tokens) as f64
            / self.started.elapsed().as_secs_f64().max(1e-9);
        self.pb.set_message(format!(
            "step {} epoch {} loss {:.4} {tok_s:.0} tok/s",
            p.step, p.epoch, r.loss
        ));
        match self.limit_s {
            Some(_) => self
                .pb
                .set_position(self.started.elapsed().as_secs_f64() as u64),
            None => self.pb.set_position(p.step - self.start_step),
        }
        call_hook(&HookEvent::Step {
            step: p.step,
            epoch: p.epoch,
            loss: r.loss,
            total: self.total,
        });
        Ok(())
    }

    fn evaluated(&mut self, m: &MetricsLine) {
        call_hook(&HookEvent::Evaluated(m));
        let mut line = format!(
            "step {:>6}  epoch {:>3}  train {:.4}",
            m.step, m.epoch, m.train_loss
        );
        if self.metrics {
            if let Some(v) = m.val_loss {
                line += &format!("  val {v:.4}");
            }
            for (k, v) in &m.val {
                line += &format!("  {} {v:.4}", k.trim_start_matches("val_"));
            }
        } else if let Some(v) = m.val_loss {
            line += &format!("  val {v:.4}  ppl {:.3}", perplexity(v));
            if self.char_level {
                line += &format!("  bpc {:.4}", bits_per_token(v));
            }
        }
        line += &format!("  {:.0} tok/s", m.tokens_per_s);
        self.say(&line);
    }
}

pub fn run(a: TrainArgs) -> CliResult {
    recur::gemm::set_threads(a.threads);
    if a.gradient_regulariser.unwrap_or(0.0) != 0.0 && (a.task.is_some() || a.condition.is_some()) {
        bail!("--gradient-regulariser is for one-layer Elman language models here (and for `recur task`), not sequence models");
    }
    if a.task.as_deref() == Some("seq2seq")
        || a.condition.is_some()
        || a.resume.as_ref().is_some_and(|d| crate::seq2seq::is_run(d))
    {
        return crate::seq2seq::train(a);
    }
    if a.task.is_some() || a.resume.as_ref().is_some_and(|d| crate::seq::is_seq_run(d)) {
        return crate::seq::train(a);
    }
    if a.data.len() > 1 {
        bail!(
            "--data: a language model trains on one text file, got {}",
            a.data.len()
        );
    }
    let explicit_budget = match (a.epochs, a.steps, a.time) {
        (Some(e), _, _) => Some(Budget::Epochs(e)),
        (_, Some(s), _) => Some(Budget::Steps(s)),
        (_, _, Some(m)) => Some(Budget::Minutes(m)),
        _ => None,
    };
    if let Some(Budget::Minutes(m)) = explicit_budget {
        if !(m.is_finite() && m > 0.0) {
            bail!("--time: expected a number of minutes > 0, got {m}");
        }
    }
    match a.model.as_str() {
        "ngram" => return train_ngram(&a),
        "window" => {
            if a.cell.is_some() || a.layers.is_some() {
                bail!("--cell and --layers are for --model rnn; the fixed-window model has --context, --embed, --hidden and --dropout");
            }
            return run_lm::<WindowLm<f32>>(a, explicit_budget);
        }
        "rnn" => {
            // Checked before any data is read (an --init-from model is
            // checked once loaded).
            let elman = matches!(a.cell.as_deref(), Some("rnn-tanh" | "rnn-relu"));
            if a.gradient_regulariser.unwrap_or(0.0) != 0.0
                && a.init_from.is_none()
                && !(elman && a.layers == Some(1))
            {
                bail!("--gradient-regulariser: for one-layer Elman models: give --cell rnn-tanh (or rnn-relu) and --layers 1");
            }
        }
        other => bail!("--model: unknown model '{other}': expected rnn, window or ngram"),
    }
    if a.embed_dropout.is_some() {
        bail!("--embed-dropout is for --model window; the recurrent model's --dropout covers its embeddings");
    }
    match &a.resume {
        Some(dir)
            if recur::checkpoint::file_format(&dir.join("last.safetensors"))
                .ok()
                .as_deref()
                == Some(WINDOW_FORMAT) =>
        {
            run_lm::<WindowLm<f32>>(a, explicit_budget)
        }
        _ => run_lm::<LanguageModel>(a, explicit_budget),
    }
}

/// A language model `recur train` fits by gradient descent on the token
/// stream: the recurrent model or the fixed-window model.
pub trait TrainedLm: recur::train::Model<Batch = recur::data::LmBatch> + Sized {
    /// Loads a model file of this kind with its vocabulary.
    fn load(path: &Path) -> recur::Result<(Self, Vocab)>;
    /// A fresh model for `vocab_size` tokens from the options.
    fn create(a: &TrainArgs, vocab_size: usize, demo: bool) -> anyhow::Result<Self>;
    /// The model's shape, for the first line of a run.
    fn describe(&self) -> String;
    /// Sets the dropout probabilities given (fine-tuning with --init-from):
    /// `p` (--dropout) and the window model's `embed` (--embed-dropout).
    fn set_dropout(&mut self, p: Option<f64>, embed: Option<f64>) -> anyhow::Result<()>;
    /// Sets the weight of the gradient-decay regulariser in training.
    fn set_gradient_regulariser(&mut self, weight: f64) -> anyhow::Result<()>;
    /// `length` tokens after `prime`, sampled as `how` says.
    fn sample(
        &self,
        prime: &[u32],
        length: usize,
        how: Decoding,
        rng: &mut dyn rand::RngCore,
    ) -> recur::Result<Vec<u32>>;
}

impl TrainedLm for LanguageModel {
    fn load(path: &Path) -> recur::Result<(Self, Vocab)> {
        load_lm(path)
    }
    fn create(a: &TrainArgs, vocab_size: usize, demo: bool) -> anyhow::Result<Self> {
        let cfg = LmConfig {
            cell: parse_cell(a.cell.as_deref())?,
            vocab_size,
            embed: a.embed.unwrap_or(128),
            hidden: a.hidden.unwrap_or(if demo { 256 } else { 512 }),
            layers: a.layers.unwrap_or(2),
            dropout: a.dropout.unwrap_or(if demo { 0.1 } else { 0.2 }),
        };
        Ok(LanguageModel::new(cfg, a.seed)?)
    }
    fn describe(&self) -> String {
        let c = self.config();
        format!(
            "a {}-layer {} ({} hidden, {} embed, {} parameters)",
            c.layers,
            c.cell.name(),
            c.hidden,
            c.embed,
            self.num_params()
        )
    }
    fn set_dropout(&mut self, p: Option<f64>, _embed: Option<f64>) -> anyhow::Result<()> {
        match p {
            Some(p) => Ok(LanguageModel::set_dropout(self, p).context("--dropout")?),
            None => Ok(()),
        }
    }
    fn set_gradient_regulariser(&mut self, weight: f64) -> anyhow::Result<()> {
        LanguageModel::set_gradient_regulariser(self, weight).context("--gradient-regulariser")
    }
    fn sample(
        &self,
        prime: &[u32],
        length: usize,
        how: Decoding,
        rng: &mut dyn rand::RngCore,
    ) -> recur::Result<Vec<u32>> {
        generate(self, prime, length, how, rng, &mut |_| {})
    }
}

impl TrainedLm for WindowLm<f32> {
    fn load(path: &Path) -> recur::Result<(Self, Vocab)> {
        recur::checkpoint::load_window(path)
    }
    fn create(a: &TrainArgs, vocab_size: usize, demo: bool) -> anyhow::Result<Self> {
        let cfg = WindowConfig {
            vocab_size,
            context: a.context,
            embed: a.embed.unwrap_or(64),
            hidden: a.hidden.unwrap_or(if demo { 256 } else { 512 }),
            dropout: a.dropout.unwrap_or(0.0),
            embed_dropout: a.embed_dropout.unwrap_or(0.0),
        };
        WindowLm::new(cfg, a.seed)
            .context("--context, --embed, --hidden, --dropout, --embed-dropout")
    }
    fn describe(&self) -> String {
        let c = self.config();
        format!(
            "a fixed-window model (K = {} tokens, {} embed, {} hidden, dropout {} on the hidden layer and {} on the embeddings, {} parameters)",
            c.context,
            c.embed,
            c.hidden,
            c.dropout,
            c.embed_dropout,
            self.store.len()
        )
    }
    fn set_dropout(&mut self, p: Option<f64>, embed: Option<f64>) -> anyhow::Result<()> {
        let c = self.config();
        let (p, e) = (p.unwrap_or(c.dropout), embed.unwrap_or(c.embed_dropout));
        WindowLm::set_dropout(self, p, e).context("--dropout, --embed-dropout")
    }
    fn set_gradient_regulariser(&mut self, weight: f64) -> anyhow::Result<()> {
        if weight != 0.0 {
            bail!("--gradient-regulariser: the fixed-window model has no recurrence to regularise");
        }
        Ok(())
    }
    fn sample(
        &self,
        prime: &[u32],
        length: usize,
        how: Decoding,
        rng: &mut dyn rand::RngCore,
    ) -> recur::Result<Vec<u32>> {
        self.generate_with(prime, length, how, rng, &mut |_, _| true)
    }
}

/// Trains (or resumes) a gradient-descent language model of kind `M`.
fn run_lm<M: TrainedLm>(a: TrainArgs, explicit_budget: Option<Budget>) -> CliResult {
    let (out, mut trainer, run_file, _lock) = match &a.resume {
        Some(dir) => resume::<M>(dir, explicit_budget, a.eval_every, a.sample_length)?,
        None => start::<M>(&a, explicit_budget)?,
    };

    let spe = trainer.data.steps_per_epoch().unwrap_or(1) as u64;
    let eval_every = run_file.eval_every.unwrap_or(spe.min(200)).max(1);
    println!(
        "training {} on {} tokens of {}, vocab {}; {} steps per epoch of {}×{}",
        trainer.model.describe(),
        spe as usize * trainer.data.batch() * trainer.data.seq_len(),
        run_file
            .data
            .as_ref()
            .map_or("the built-in corpus".to_string(), |p| p
                .display()
                .to_string()),
        trainer.data.vocab().len(),
        spe,
        trainer.data.batch(),
        trainer.data.seq_len(),
    );
    let mut bar = Progressbar::new(
        run_file.budget,
        Some(spe as usize),
        trainer.progress(),
        trainer.data.vocab().level == Level::Char,
        false,
    );
    crate::train::run_watched(&mut trainer, run_file.budget, eval_every, &out, &mut bar)?;
    println!(
        "done: {} steps, {} tokens in {:.1} s; best validation loss {}; wrote {}/model.safetensors, last.safetensors, metrics.jsonl, loss.svg",
        trainer.progress().step,
        trainer.progress().tokens_seen,
        bar.started.elapsed().as_secs_f64(),
        trainer.progress().best_val.map_or("n/a".to_string(), |v| format!("{v:.4}")),
        out.display()
    );
    if run_file.sample_length > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trainer.config().seed);
        let vocab = trainer.data.vocab();
        let how = Decoding::Sample {
            temperature: 0.8,
            top_k: None,
            top_p: None,
        };
        let ids = trainer.model.sample(
            &[default_start(vocab)],
            run_file.sample_length,
            how,
            &mut rng,
        )?;
        println!(
            "--- sample (temperature 0.8) ---\n{}\n---",
            vocab.decode(&ids)
        );
    }
    Ok(())
}

type Started<M> = (
    PathBuf,
    Trainer<M, LmData>,
    RunFile,
    crate::runlock::RunLock,
);

pub fn write_run_file<R: Serialize>(path: &Path, rf: &R) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(rf).expect("run file serialises");
    Ok(write_atomic(path, json.as_bytes())?)
}

/// Continues the run in `dir`.
/// Continues the run in `dir`, with a new budget, evaluation interval or
/// sample length when given (written back to its `run.json`).
fn resume<M: TrainedLm>(
    dir: &Path,
    budget: Option<Budget>,
    eval_every: Option<u64>,
    sample_length: Option<usize>,
) -> anyhow::Result<Started<M>> {
    let rf_path = dir.join("run.json");
    let text = std::fs::read_to_string(&rf_path).with_context(|| {
        format!(
            "--resume {}: not a recur run folder ({}); expected the --out folder of an earlier `recur train`",
            dir.display(),
            rf_path.display()
        )
    })?;
    let rf: RunFile =
        serde_json::from_str(&text).with_context(|| format!("{}", rf_path.display()))?;
    let lock = crate::runlock::lock(dir)?;
    let (mut model, vocab) = M::load(&dir.join("last.safetensors"))?;
    model.set_gradient_regulariser(rf.gradient_regulariser)?;
    let (tok, source) = load_data(rf.data.as_deref(), dir, vocab.level, Some(&vocab), 1)?;
    let rf = RunFile {
        budget: budget.unwrap_or(rf.budget),
        eval_every: eval_every.or(rf.eval_every),
        sample_length: sample_length.unwrap_or(rf.sample_length),
        ..rf
    };
    write_run_file(&rf_path, &rf)?;
    let data = lm_data(tok, rf.batch, rf.seq_len, rf.val_fraction, &source)?;
    let total = rf.budget.total_steps(data.steps_per_epoch());
    let t = Trainer::resume(dir, model, data, total.map(Some))?;
    Ok((dir.to_path_buf(), t, rf, lock))
}

/// The language-model data over a tokenised corpus.
fn lm_data(
    tok: Tokenized,
    batch: usize,
    seq_len: usize,
    val_fraction: f64,
    source: &str,
) -> recur::Result<LmData> {
    LmData::from_tokens(
        tok.tokens,
        tok.fingerprint,
        tok.vocab,
        batch,
        seq_len,
        val_fraction,
        source,
    )
}

/// Starts a new run into `--out`.
fn start<M: TrainedLm>(a: &TrainArgs, budget: Option<Budget>) -> anyhow::Result<Started<M>> {
    // The built-in demo trains for a minute: a smaller, faster model
    // learns more in that time.
    let demo = a.data.is_empty();
    let seq_len = a.seq_len.unwrap_or(if demo { 64 } else { 100 });
    let batch = a.batch.unwrap_or(if demo { 32 } else { 64 });
    let lr = a.lr.unwrap_or(if demo { 3e-3 } else { 2e-3 });
    let level_name = a.level.as_deref().unwrap_or("char");
    let level = Level::from_name(level_name)
        .with_context(|| format!("--level: expected char or word, got '{level_name}'"))?;
    let mut cfg = train_config(a, lr)?;
    // Settings are checked before any data is read.
    cfg.check()?;
    crate::runlock::check_free(&a.out, a.overwrite)?;
    let budget = budget.unwrap_or(if demo {
        Budget::Minutes(1.0)
    } else {
        Budget::Epochs(10)
    });
    // The token file goes beside the run, so the folder is claimed first;
    // a folder made here is removed again if the data cannot be read.
    let created = !a.out.exists();
    let lock = crate::runlock::claim(&a.out)?;
    let started = (|| -> anyhow::Result<_> {
        let data_path = a.data.first().map(PathBuf::as_path);
        let (mut model, tok, source) = match &a.init_from {
            Some(m) => {
                let (mut model, vocab) = M::load(m)?;
                model.set_dropout(a.dropout, a.embed_dropout)?;
                let (tok, source) = load_data(data_path, &a.out, vocab.level, Some(&vocab), 1)?;
                (model, tok, source)
            }
            None => {
                let (tok, source) = load_data(data_path, &a.out, level, None, a.min_count)?;
                let model = M::create(a, tok.vocab.len(), demo)?;
                (model, tok, source)
            }
        };
        model.set_gradient_regulariser(a.gradient_regulariser.unwrap_or(0.0))?;
        let data = lm_data(tok, batch, seq_len, a.val_fraction, &source)?;
        cfg.total_steps = budget.total_steps(data.steps_per_epoch());
        let t = Trainer::new(model, data, cfg)?;
        let rf = RunFile {
            data: a.data.first().cloned(),
            gradient_regulariser: a.gradient_regulariser.unwrap_or(0.0),
            level: level_name.to_string(),
            min_count: a.min_count,
            budget,
            eval_every: a.eval_every,
            sample_length: a.sample_length.unwrap_or(400),
            batch,
            seq_len,
            val_fraction: a.val_fraction,
        };
        write_run_file(&a.out.join("run.json"), &rf)?;
        let _ = std::fs::remove_file(a.out.join("metrics.jsonl"));
        Ok((t, rf))
    })();
    match started {
        Ok((t, rf)) => Ok((a.out.clone(), t, rf, lock)),
        Err(e) => {
            if created {
                drop(lock);
                let _ = std::fs::remove_dir_all(&a.out);
            }
            Err(e)
        }
    }
}

/// The optimiser, schedule and clipping settings of `a`, at `lr`.
pub fn train_config(a: &TrainArgs, lr: f32) -> anyhow::Result<TrainConfig> {
    let optimizer = OptimizerKind::from_name(&a.optimizer).with_context(|| {
        format!(
            "--optimizer: unknown optimizer '{}': expected sgd, adam, adamw, rmsprop or adagrad",
            a.optimizer
        )
    })?;
    let schedule = ScheduleKind::from_name(&a.schedule).with_context(|| {
        format!(
            "--schedule: unknown schedule '{}': expected constant, step, cosine or plateau",
            a.schedule
        )
    })?;
    Ok(TrainConfig {
        optimizer,
        lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        schedule,
        lr_decay: a.lr_decay,
        decay_start: a.decay_start,
        min_lr: a.min_lr,
        total_steps: None,
        clip_norm: a.clip_norm,
        clip_value: a.clip_value,
        seed: a.seed,
        patience: 0,
        on_divergence: OnDivergence::from_name(&a.on_divergence).with_context(|| {
            format!(
                "--on-divergence: expected stop or skip, got '{}'",
                a.on_divergence
            )
        })?,
        precision: match crate::parse_precision(&a.precision)? {
            Precision::Int8 => bail!("--precision: training runs in f32 or bf16, not int8 (int8 is for generate, eval, predict, translate and serve)"),
            p => p,
        },
    })
}

/// The cell `--cell` names (LSTM when not given).
pub fn parse_cell(c: Option<&str>) -> anyhow::Result<CellKind> {
    match c {
        None => Ok(CellKind::Lstm),
        Some(c) => CellKind::from_name(c).with_context(|| {
            format!("--cell: unknown cell '{c}': expected lstm, gru, gru-reset-before, rnn-tanh or rnn-relu")
        }),
    }
}

/// What a diverged run leaves: the last checkpoint, or none yet.
pub fn kept_checkpoint(out: &Path, step: u64) -> String {
    if out.join("last.safetensors").exists() {
        format!(
            "stopping at step {}: {} keeps the last good checkpoint (last.safetensors, and the best model in model.safetensors)",
            step + 1,
            out.display()
        )
    } else {
        format!(
            "stopping at step {}: no checkpoint had been written yet",
            step + 1
        )
    }
}

/// What a [`Hook`] is told.
pub enum HookEvent<'a> {
    /// After every update: the step, the epoch, the batch's loss and the
    /// run's last step when known.
    Step {
        /// Updates made.
        step: u64,
        /// Epoch (0-based).
        epoch: usize,
        /// The batch's loss.
        loss: f64,
        /// The step the run ends at, when the budget is in steps or epochs.
        total: Option<u64>,
    },
    /// After every evaluation.
    Evaluated(&'a MetricsLine),
}

/// Watches runs for a program that embeds the command (the Python
/// package); returning false interrupts the run as Ctrl-C does.
pub type Hook = Box<dyn FnMut(&HookEvent) -> bool + Send>;

static HOOK: std::sync::Mutex<Option<Hook>> = std::sync::Mutex::new(None);
static EMBEDDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets the hook of the runs that follow (none: the command's own). An
/// embedding program keeps its own signal handlers: once a hook is set,
/// [`interrupt_flag`] installs none, and the hook interrupts instead.
pub fn set_hook(hook: Option<Hook>) {
    use std::sync::atomic::Ordering;
    EMBEDDED.store(true, Ordering::SeqCst);
    interrupt_flag().store(false, Ordering::SeqCst);
    *HOOK.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

fn call_hook(e: &HookEvent) {
    if let Some(h) = HOOK.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        if !h(e) {
            interrupt_flag().store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Set by Ctrl-C or SIGTERM: the trainer saves the state at the current
/// step and stops (the handler is installed once, on first use, unless a
/// [`Hook`] was set).
pub fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // Without a handler, a signal ends the process as before: the last
        // checkpoint still stands.
        if !EMBEDDED.load(Ordering::SeqCst) {
            let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        }
        flag
    })
    .clone()
}

/// What an interrupted run tells the user.
pub fn interrupted_note(out: &Path, step: u64) -> String {
    format!(
        "interrupted at step {step}: {} holds the run as it stood; `recur train --resume {}` continues it exactly",
        out.display(),
        out.display()
    )
}

/// Runs `trainer` with the bar, stopping cleanly on Ctrl-C or SIGTERM, and
/// says what a diverged or interrupted run left, and any skipped batches.
pub fn run_watched<M: recur::train::Model, D: Data<Batch = M::Batch>>(
    trainer: &mut Trainer<M, D>,
    budget: Budget,
    eval_every: u64,
    out: &Path,
    bar: &mut Progressbar,
) -> anyhow::Result<()> {
    trainer.stop_on(interrupt_flag());
    let result = trainer.run(budget, eval_every, Some(out), bar);
    bar.pb.finish_and_clear();
    match &result {
        Err(Error::Diverged { .. }) => bar.say(&kept_checkpoint(out, trainer.progress().step)),
        Err(Error::Interrupted { step }) => bar.say(&interrupted_note(out, *step)),
        _ => {}
    }
    result?;
    let skipped = trainer.progress().skipped;
    if skipped > 0 {
        println!(
            "{skipped} diverging batch(es) skipped; the learning rate ends at ×{} of its schedule",
            trainer.progress().lr_scale
        );
    }
    Ok(())
}

/// `recur train --model ngram`: counts n-grams of the training part in one
/// pass, reports the held-out loss, writes `OUT/model.safetensors` and
/// prints a sample.
fn train_ngram(a: &TrainArgs) -> CliResult {
    use recur::model::any::AnyLm;
    use recur::model::ngram::{Ngram, NgramConfig};
    if a.resume.is_some() || a.init_from.is_some() {
        bail!("--model ngram: an n-gram model is counted in one pass; there is no run to resume or model to start from");
    }
    if a.order == 0 {
        bail!("--order: expected an order of at least 1, got 0");
    }
    if a.precision != "f32" {
        bail!("--precision: an n-gram model is counted, not trained: it has no weight products");
    }
    if a.gradient_regulariser.unwrap_or(0.0) != 0.0 {
        bail!("--gradient-regulariser: an n-gram model has no gradients");
    }
    let level_name = a.level.as_deref().unwrap_or("char");
    let level = Level::from_name(level_name)
        .with_context(|| format!("--level: expected char or word, got '{level_name}'"))?;
    crate::runlock::check_free(&a.out, a.overwrite)?;
    let _lock = crate::runlock::claim(&a.out)?;
    let (tok, source) = load_data(
        a.data.first().map(PathBuf::as_path),
        &a.out,
        level,
        None,
        a.min_count,
    )?;
    let ids = tok.tokens.to_vec(0..tok.tokens.len());
    let (train, val) = recur::data::split_train_val(&ids, a.val_fraction);
    let started = Instant::now();
    let model = Ngram::fit(
        NgramConfig {
            order: a.order,
            vocab_size: tok.vocab.len(),
        },
        train,
    )
    .with_context(|| source.clone())?;
    let path = a.out.join("model.safetensors");
    recur::checkpoint::save_ngram(&path, &model, &tok.vocab)?;
    println!(
        "counted a {}-gram model (Kneser-Ney) on {} tokens of {source} in {:.1} s: {} n-grams, {:.1} MiB; vocab {}",
        a.order,
        train.len(),
        started.elapsed().as_secs_f64(),
        model.num_ngrams(),
        model.memory_bytes() as f64 / (1 << 20) as f64,
        tok.vocab.len()
    );
    if val.len() >= 2 {
        let (ce, _) = model.cross_entropy(val)?;
        let mut line = format!(
            "validation: {} tokens, loss {ce:.4}, ppl {:.3}",
            val.len(),
            perplexity(ce)
        );
        if level == Level::Char {
            line += &format!(", bpc {:.4}", bits_per_token(ce));
        }
        println!("{line}");
    }
    println!("wrote {}", path.display());
    let length = a.sample_length.unwrap_or(400);
    if length > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let how = Decoding::Sample {
            temperature: 0.8,
            top_k: None,
            top_p: None,
        };
        let start = default_start(&tok.vocab);
        let ids =
            AnyLm::Ngram(model).generate_with(&[start], length, how, &mut rng, &mut |_, _| true)?;
        println!(
            "--- sample (temperature 0.8) ---\n{}\n---",
            tok.vocab.decode(&ids)
        );
    }
    Ok(())
}
