//! `recur train`: a language model on a text file, with progress, metrics,
//! a loss plot, checkpoints, resume, and a sample at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use recur::checkpoint::{load_lm, write_atomic};
use recur::data::{read_text, tokenize, Level, LmData, Vocab};
use recur::metrics::{bits_per_token, perplexity};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::optim::OptimizerKind;
use recur::sample::{default_start, generate, Decoding};
use recur::train::{
    Budget, Data, MetricsLine, Observer, Progress, ScheduleKind, StepReport, TrainConfig, Trainer,
};
use recur::{CellKind, Error};
use serde::{Deserialize, Serialize};

use crate::CliResult;

#[derive(Args)]
pub struct TrainArgs {
    /// Text file to train on (default: recur's own source, embedded; trains for a minute).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Tokens: char (Unicode scalar values) or word (whitespace-separated, <eos> per line).
    #[arg(long, default_value = "char")]
    level: String,
    /// Word level: words seen fewer times become <unk>.
    #[arg(long, default_value_t = 1)]
    min_count: usize,

    /// Cell: lstm, gru, gru-reset-before, rnn-tanh, rnn-relu [default: lstm].
    #[arg(long)]
    cell: Option<String>,
    /// Stacked layers [default: 2].
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden units per layer [default: 512; 256 on the built-in corpus].
    #[arg(long)]
    hidden: Option<usize>,
    /// Embedding width [default: 128].
    #[arg(long)]
    embed: Option<usize>,
    /// Dropout on embeddings, between layers and on the output [default: 0.2; 0.1 on the built-in corpus].
    #[arg(long)]
    dropout: Option<f64>,

    /// Steps of truncated backpropagation through time per batch [default: 100; 64 on the built-in corpus].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Sequences per batch [default: 64; 32 on the built-in corpus].
    #[arg(long)]
    batch: Option<usize>,

    /// sgd, adam, adamw, rmsprop or adagrad.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate [default: 0.002; 0.003 on the built-in corpus].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Momentum (sgd, rmsprop).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    momentum: f32,
    /// Weight decay (decoupled for adamw).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f32,
    /// Learning-rate schedule: constant, step (Zaremba: ×--lr-decay each epoch from --decay-start) or cosine.
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Step schedule: factor per epoch.
    #[arg(long, default_value_t = 0.5)]
    lr_decay: f32,
    /// Step schedule: first decayed epoch (0-based).
    #[arg(long, default_value_t = 4)]
    decay_start: usize,
    /// Cosine schedule: final learning rate.
    #[arg(long, default_value_t = 0.0)]
    min_lr: f32,
    /// Clip the global gradient norm (0: off).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    clip_norm: f32,
    /// Clip each gradient element to ±this (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    clip_value: f32,

    /// Train for this many epochs [default: 10; 1 minute with no --data].
    #[arg(long, group = "budget")]
    epochs: Option<usize>,
    /// Train for this many steps.
    #[arg(long, group = "budget")]
    steps: Option<u64>,
    /// Train for this many minutes.
    #[arg(long, group = "budget")]
    time: Option<f64>,

    /// Fraction of the text, from its end, held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Evaluate, log and checkpoint every N steps [default: each epoch, at most 200 steps apart].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Seed of the weights and of dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads for matrix products (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Output folder.
    #[arg(long, default_value = "recur-run", value_name = "DIR")]
    out: PathBuf,
    /// Continue the run saved in DIR with its own settings (a new --epochs/--steps/--time, --eval-every or --sample-length may be given).
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "init_from", "cell", "layers", "hidden", "embed", "dropout", "data", "level", "min_count",
        "seq_len", "batch", "optimizer", "lr", "momentum", "weight_decay", "schedule", "lr_decay",
        "decay_start", "min_lr", "clip_norm", "clip_value", "val_fraction", "seed", "out",
    ])]
    resume: Option<PathBuf>,
    /// Start from the weights (and vocabulary) of this recur model.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["cell", "layers", "hidden", "embed"])]
    init_from: Option<PathBuf>,
    /// Tokens of the sample printed at the end (0: none) [default: 400].
    #[arg(long)]
    sample_length: Option<usize>,
}

/// What `--resume` needs besides the library's state: `OUT/run.json`.
#[derive(Serialize, Deserialize)]
struct RunFile {
    data: Option<PathBuf>,
    level: String,
    min_count: usize,
    budget: Budget,
    eval_every: Option<u64>,
    sample_length: usize,
    batch: usize,
    seq_len: usize,
    val_fraction: f64,
}

fn load_data(data: Option<&Path>) -> anyhow::Result<(String, String)> {
    match data {
        Some(p) => {
            let text = read_text(p)?;
            if text.is_empty() {
                bail!("{}: the file is empty", p.display());
            }
            Ok((text, p.display().to_string()))
        }
        None => Ok((
            crate::corpus::text(),
            "the built-in corpus (recur's own source)".to_string(),
        )),
    }
}

/// The progress bar and the log lines of a run.
struct Progressbar {
    pb: ProgressBar,
    start_step: u64,
    start_tokens: u64,
    limit_s: Option<f64>,
    started: Instant,
    char_level: bool,
}

impl Progressbar {
    fn say(&self, msg: &str) {
        if self.pb.is_hidden() {
            println!("{msg}");
        } else {
            self.pb.println(msg);
        }
    }
}

impl Observer<LanguageModel> for Progressbar {
    fn step(&mut self, _: &LanguageModel, r: &StepReport, p: &Progress) -> recur::Result<()> {
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
        Ok(())
    }

    fn evaluated(&mut self, m: &MetricsLine) {
        let mut line = format!(
            "step {:>6}  epoch {:>3}  train {:.4}",
            m.step, m.epoch, m.train_loss
        );
        if let Some(v) = m.val_loss {
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
    let (out, mut trainer, run_file) = match &a.resume {
        Some(dir) => resume(dir, explicit_budget, a.eval_every, a.sample_length)?,
        None => start(&a, explicit_budget)?,
    };

    let spe = trainer.data.steps_per_epoch().unwrap_or(1) as u64;
    let eval_every = run_file.eval_every.unwrap_or(spe.min(200)).max(1);
    let c = trainer.model.config().clone();
    let start_step = trainer.progress().step;
    let limit_s = match run_file.budget {
        Budget::Minutes(m) => Some(m * 60.0),
        _ => None,
    };
    println!(
        "training a {}-layer {} ({} hidden, {} embed, {} parameters) on {} tokens of {}, vocab {}; {} steps per epoch of {}×{}",
        c.layers,
        c.cell.name(),
        c.hidden,
        c.embed,
        trainer.model.num_params(),
        spe as usize * trainer.data.batch() * trainer.data.seq_len(),
        run_file.data.as_ref().map_or("the built-in corpus".to_string(), |p| p.display().to_string()),
        trainer.data.vocab().len(),
        spe,
        trainer.data.batch(),
        trainer.data.seq_len(),
    );
    let pb = match (run_file.budget.total_steps(Some(spe as usize)), limit_s) {
        (Some(end), _) => ProgressBar::new(end.saturating_sub(start_step)),
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
    let mut bar = Progressbar {
        pb,
        start_step,
        start_tokens: trainer.progress().tokens_seen,
        limit_s,
        started: Instant::now(),
        char_level: trainer.data.vocab().level == Level::Char,
    };
    let result = trainer.run(run_file.budget, eval_every, Some(&out), &mut bar);
    bar.pb.finish_and_clear();
    if let Err(e @ Error::Diverged { .. }) = &result {
        bar.say(&format!(
            "stopping: {e}; {} holds the last good checkpoint",
            out.display()
        ));
    }
    result?;
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
        let ids = generate(
            &trainer.model,
            &[default_start(vocab)],
            run_file.sample_length,
            how,
            &mut rng,
            &mut |_| {},
        )?;
        println!(
            "--- sample (temperature 0.8) ---\n{}\n---",
            vocab.decode(&ids)
        );
    }
    Ok(())
}

type Started = (PathBuf, Trainer<LanguageModel, LmData>, RunFile);

fn write_run_file(path: &Path, rf: &RunFile) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(rf).expect("run file serialises");
    Ok(write_atomic(path, json.as_bytes())?)
}

/// Continues the run in `dir`.
/// Continues the run in `dir`, with a new budget, evaluation interval or
/// sample length when given (written back to its `run.json`).
fn resume(
    dir: &Path,
    budget: Option<Budget>,
    eval_every: Option<u64>,
    sample_length: Option<usize>,
) -> anyhow::Result<Started> {
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
    let (text, source) = load_data(rf.data.as_deref())?;
    let (model, vocab) = load_lm(&dir.join("last.safetensors"))?;
    let ids = vocab.encode(&tokenize(&text, vocab.level), &source)?;
    let rf = RunFile {
        budget: budget.unwrap_or(rf.budget),
        eval_every: eval_every.or(rf.eval_every),
        sample_length: sample_length.unwrap_or(rf.sample_length),
        ..rf
    };
    write_run_file(&rf_path, &rf)?;
    let data = LmData::new(&ids, vocab, rf.batch, rf.seq_len, rf.val_fraction, &source)?;
    let total = rf.budget.total_steps(data.steps_per_epoch());
    let t = Trainer::resume(dir, model, data, total.map(Some))?;
    Ok((dir.to_path_buf(), t, rf))
}

/// Starts a new run into `--out`.
fn start(a: &TrainArgs, budget: Option<Budget>) -> anyhow::Result<Started> {
    // The built-in demo trains for a minute: a smaller, faster model
    // learns more in that time.
    let demo = a.data.is_none();
    let seq_len = a.seq_len.unwrap_or(if demo { 64 } else { 100 });
    let batch = a.batch.unwrap_or(if demo { 32 } else { 64 });
    let lr = a.lr.unwrap_or(if demo { 3e-3 } else { 2e-3 });
    let level = Level::from_name(&a.level)
        .with_context(|| format!("--level: expected char or word, got '{}'", a.level))?;
    let optimizer = OptimizerKind::from_name(&a.optimizer).with_context(|| {
        format!(
            "--optimizer: unknown optimizer '{}': expected sgd, adam, adamw, rmsprop or adagrad",
            a.optimizer
        )
    })?;
    let schedule = ScheduleKind::from_name(&a.schedule).with_context(|| {
        format!(
            "--schedule: unknown schedule '{}': expected constant, step or cosine",
            a.schedule
        )
    })?;
    let mut cfg = TrainConfig {
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
    };
    // Settings are checked before any data is read.
    cfg.check()?;
    let (text, source) = load_data(a.data.as_deref())?;
    let budget = budget.unwrap_or(if demo {
        Budget::Minutes(1.0)
    } else {
        Budget::Epochs(10)
    });
    let (model, vocab, ids) = match &a.init_from {
        Some(m) => {
            let (mut model, vocab) = load_lm(m)?;
            model
                .set_dropout(a.dropout.unwrap_or(model.config().dropout))
                .context("--dropout")?;
            let ids = vocab.encode(&tokenize(&text, vocab.level), &source)?;
            (model, vocab, ids)
        }
        None => {
            let tokens = tokenize(&text, level);
            let vocab = Vocab::build(level, &tokens, a.min_count)?;
            let ids = vocab.encode(&tokens, &source)?;
            let cell = match &a.cell {
                None => CellKind::Lstm,
                Some(c) => CellKind::from_name(c).with_context(|| {
                    format!("--cell: unknown cell '{c}': expected lstm, gru, gru-reset-before, rnn-tanh or rnn-relu")
                })?,
            };
            let cfg = LmConfig {
                cell,
                vocab_size: vocab.len(),
                embed: a.embed.unwrap_or(128),
                hidden: a.hidden.unwrap_or(if demo { 256 } else { 512 }),
                layers: a.layers.unwrap_or(2),
                dropout: a.dropout.unwrap_or(if demo { 0.1 } else { 0.2 }),
            };
            let model = LanguageModel::new(cfg, a.seed)?;
            (model, vocab, ids)
        }
    };
    let data = LmData::new(&ids, vocab, batch, seq_len, a.val_fraction, &source)?;
    cfg.total_steps = budget.total_steps(data.steps_per_epoch());
    let t = Trainer::new(model, data, cfg)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let rf = RunFile {
        data: a.data.clone(),
        level: a.level.clone(),
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
    Ok((a.out.clone(), t, rf))
}
