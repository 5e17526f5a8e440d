//! `recur train`: a language model on a text file, with progress, metrics,
//! a loss plot, checkpoints, resume, and a sample at the end.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;
use rand::SeedableRng;
use recur::checkpoint::{load_lm, write_atomic};
use recur::data::{read_text, tokenize, Level, Vocab};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::sample::{default_start, generate, Decoding};
use recur::train::{TrainConfig, Trainer};
use serde::{Deserialize, Serialize};

use crate::plot::{line_plot, Series};
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
    /// Continue the run saved in DIR (same data; a new --epochs/--steps/--time may be given).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["init_from", "cell", "layers", "hidden", "embed", "dropout"])]
    resume: Option<PathBuf>,
    /// Start from the weights (and vocabulary) of this recur model.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["cell", "layers", "hidden", "embed"])]
    init_from: Option<PathBuf>,
    /// Tokens of the sample printed at the end (0: none).
    #[arg(long, default_value_t = 400)]
    sample_length: usize,
}

/// How long to train.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
enum Budget {
    Epochs(usize),
    Steps(u64),
    Minutes(f64),
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
}

/// One line of `OUT/metrics.jsonl`.
#[derive(Serialize, Deserialize)]
struct Metrics {
    step: u64,
    epoch: usize,
    tokens: u64,
    train_loss: f64,
    val_loss: Option<f64>,
    val_perplexity: Option<f64>,
    val_bits_per_char: Option<f64>,
    lr: f32,
    tokens_per_s: f64,
    elapsed_s: f64,
}

fn load_data(data: Option<&Path>) -> Result<(String, String), String> {
    match data {
        Some(p) => {
            let text = read_text(p).map_err(|e| e.to_string())?;
            if text.is_empty() {
                return Err(format!("{}: the file is empty", p.display()));
            }
            Ok((text, p.display().to_string()))
        }
        None => Ok((
            crate::corpus::text(),
            "the built-in corpus (recur's own source)".to_string(),
        )),
    }
}

fn say(pb: &ProgressBar, msg: &str) {
    if pb.is_hidden() {
        println!("{msg}");
    } else {
        pb.println(msg);
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
            return Err(format!("--time: expected a number of minutes > 0, got {m}"));
        }
    }
    let (out, mut trainer, run_file, mut metrics_history) = if let Some(dir) = &a.resume {
        let rf: RunFile = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).map_err(|e| {
            format!(
                "--resume {}: not a recur run folder ({}: {e}); expected the --out folder of an earlier `recur train`",
                dir.display(),
                dir.join("run.json").display()
            )
        })?)
        .map_err(|e| format!("{}: {e}", dir.join("run.json").display()))?;
        let (text, source) = load_data(rf.data.as_deref())?;
        let (_, vocab) = load_lm(&dir.join("last.safetensors")).map_err(|e| e.to_string())?;
        let ids = vocab
            .encode(&tokenize(&text, vocab.level), &source)
            .map_err(|e| e.to_string())?;
        let budget = explicit_budget.unwrap_or(rf.budget);
        let rf = RunFile { budget, ..rf };
        let total = total_steps_hint(budget, None);
        let t = Trainer::resume(dir, &ids, &source, total.map(Some)).map_err(|e| e.to_string())?;
        let history = read_metrics(&dir.join("metrics.jsonl"));
        (dir.clone(), t, rf, history)
    } else {
        // The built-in demo trains for a minute: a smaller, faster model
        // learns more in that time.
        let demo = a.data.is_none();
        let seq_len = a.seq_len.unwrap_or(if demo { 64 } else { 100 });
        let batch = a.batch.unwrap_or(if demo { 32 } else { 64 });
        let lr = a.lr.unwrap_or(if demo { 3e-3 } else { 2e-3 });
        let level = Level::from_name(&a.level)
            .ok_or_else(|| format!("--level: expected char or word, got '{}'", a.level))?;
        let (text, source) = load_data(a.data.as_deref())?;
        let budget = explicit_budget.unwrap_or(if a.data.is_none() {
            Budget::Minutes(1.0)
        } else {
            Budget::Epochs(10)
        });
        let (model, vocab, ids) = match &a.init_from {
            Some(m) => {
                let (mut model, vocab) = load_lm(m).map_err(|e| e.to_string())?;
                model
                    .set_dropout(a.dropout.unwrap_or(model.config().dropout))
                    .map_err(|e| format!("--dropout: {e}"))?;
                let ids = vocab
                    .encode(&tokenize(&text, vocab.level), &source)
                    .map_err(|e| e.to_string())?;
                (model, vocab, ids)
            }
            None => {
                let tokens = tokenize(&text, level);
                let vocab = Vocab::build(level, &tokens, a.min_count).map_err(|e| e.to_string())?;
                let ids = vocab.encode(&tokens, &source).map_err(|e| e.to_string())?;
                let cfg = LmConfig {
                    cell: a.cell.clone().unwrap_or_else(|| "lstm".into()),
                    vocab_size: vocab.len(),
                    embed: a.embed.unwrap_or(128),
                    hidden: a.hidden.unwrap_or(if demo { 256 } else { 512 }),
                    layers: a.layers.unwrap_or(2),
                    dropout: a.dropout.unwrap_or(if demo { 0.1 } else { 0.2 }),
                };
                let model = LanguageModel::new(cfg, a.seed).map_err(|e| e.to_string())?;
                (model, vocab, ids)
            }
        };
        let train_len =
            ids.len() - (ids.len() as f64 * a.val_fraction.clamp(0.0, 1.0)).round() as usize;
        let steps_per_epoch = (train_len / batch.max(1)).saturating_sub(1) / seq_len.max(1);
        let cfg = TrainConfig {
            seq_len,
            batch,
            optimizer: a.optimizer.clone(),
            lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            schedule: a.schedule.clone(),
            lr_decay: a.lr_decay,
            decay_start: a.decay_start,
            min_lr: a.min_lr,
            total_steps: total_steps_hint(budget, Some(steps_per_epoch)),
            clip_norm: a.clip_norm,
            clip_value: a.clip_value,
            val_fraction: a.val_fraction,
            seed: a.seed,
        };
        let t = Trainer::new(model, vocab, &ids, &source, cfg).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
        let rf = RunFile {
            data: a.data.clone(),
            level: a.level.clone(),
            min_count: a.min_count,
            budget,
            eval_every: a.eval_every,
            sample_length: a.sample_length,
        };
        write_atomic(
            &a.out.join("run.json"),
            serde_json::to_string_pretty(&rf).unwrap().as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(a.out.join("metrics.jsonl"));
        (a.out.clone(), t, rf, Vec::new())
    };

    let spe = trainer.steps_per_epoch() as u64;
    let eval_every = run_file.eval_every.unwrap_or(spe.min(200)).max(1);
    let c = trainer.model.config().clone();
    let start_step = trainer.progress.step;
    let end_step = match run_file.budget {
        Budget::Epochs(e) => Some(e as u64 * spe),
        Budget::Steps(s) => Some(s),
        Budget::Minutes(_) => None,
    };
    let limit_s = match run_file.budget {
        Budget::Minutes(m) => Some(m * 60.0),
        _ => None,
    };
    println!(
        "training a {}-layer {} ({} hidden, {} embed, {} parameters) on {} tokens of {}, vocab {}; {} steps per epoch of {}×{}",
        c.layers,
        c.cell,
        c.hidden,
        c.embed,
        trainer.model.num_params(),
        trainer.steps_per_epoch() * trainer.config().batch * trainer.config().seq_len,
        run_file.data.as_ref().map_or("the built-in corpus".to_string(), |p| p.display().to_string()),
        trainer.vocab.len(),
        spe,
        trainer.config().batch,
        trainer.config().seq_len,
    );
    let pb = match (end_step, limit_s) {
        (Some(end), _) => ProgressBar::new(end.saturating_sub(start_step)),
        (None, Some(s)) => ProgressBar::new(s.ceil() as u64),
        _ => ProgressBar::hidden(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {percent:>3}% [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let (mut loss_sum, mut loss_n) = (0.0f64, 0u64);
    let mut last_eval_tokens = trainer.progress.tokens_seen;
    let mut last_eval_time = Instant::now();
    let mut last_lr = trainer.config().lr;
    let char_level = trainer.vocab.level == Level::Char;
    let finished = |t: &Trainer| {
        end_step.is_some_and(|e| t.progress.step >= e)
            || limit_s.is_some_and(|l| started.elapsed().as_secs_f64() >= l)
    };
    while !finished(&trainer) {
        let r = trainer.train_step().map_err(|e| e.to_string())?;
        if !r.loss.is_finite() {
            say(
                &pb,
                &format!(
                    "step {}: the loss is {}; stopping (try a lower --lr or --clip-norm)",
                    trainer.progress.step, r.loss
                ),
            );
            break;
        }
        loss_sum += r.loss;
        loss_n += 1;
        last_lr = r.lr;
        let p = &trainer.progress;
        let elapsed = started.elapsed().as_secs_f64();
        let tok_s = (p.tokens_seen - last_eval_tokens) as f64
            / last_eval_time.elapsed().as_secs_f64().max(1e-9);
        pb.set_message(format!(
            "step {} epoch {} loss {:.4} {:.0} tok/s",
            p.step, p.epoch, r.loss, tok_s
        ));
        match limit_s {
            Some(_) if end_step.is_none() => pb.set_position(elapsed as u64),
            _ => pb.set_position(p.step - start_step),
        }
        if p.step % eval_every == 0 || finished(&trainer) {
            let m = evaluate(
                &mut trainer,
                loss_sum / loss_n.max(1) as f64,
                r.lr,
                char_level,
                tok_s,
                elapsed,
                &out,
                &pb,
            )?;
            metrics_history.push(m);
            loss_sum = 0.0;
            loss_n = 0;
            last_eval_tokens = trainer.progress.tokens_seen;
            last_eval_time = Instant::now();
        }
    }
    if loss_n > 0 {
        let m = evaluate(
            &mut trainer,
            loss_sum / loss_n as f64,
            last_lr,
            char_level,
            0.0,
            started.elapsed().as_secs_f64(),
            &out,
            &pb,
        )?;
        metrics_history.push(m);
    }
    pb.finish_and_clear();
    plot_losses(&out.join("loss.svg"), &metrics_history)?;
    println!(
        "done: {} steps, {} tokens in {:.1} s; best validation loss {}; wrote {}/model.safetensors, last.safetensors, metrics.jsonl, loss.svg",
        trainer.progress.step,
        trainer.progress.tokens_seen,
        started.elapsed().as_secs_f64(),
        trainer.progress.best_val.map_or("n/a".to_string(), |v| format!("{v:.4}")),
        out.display()
    );
    if run_file.sample_length > 0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trainer.config().seed);
        let start = [default_start(&trainer.vocab)];
        let how = Decoding::Sample {
            temperature: 0.8,
            top_k: None,
            top_p: None,
        };
        let ids = generate(
            &trainer.model,
            &start,
            run_file.sample_length,
            how,
            &mut rng,
            &mut |_| {},
        )
        .map_err(|e| e.to_string())?;
        println!(
            "--- sample (temperature 0.8) ---\n{}\n---",
            trainer.vocab.decode(&ids)
        );
    }
    Ok(())
}

/// The run length in steps, for the cosine schedule.
fn total_steps_hint(b: Budget, steps_per_epoch: Option<usize>) -> Option<u64> {
    match b {
        Budget::Steps(s) => Some(s),
        Budget::Epochs(e) => steps_per_epoch.map(|s| (e * s) as u64),
        Budget::Minutes(_) => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    t: &mut Trainer,
    train_loss: f64,
    lr: f32,
    char_level: bool,
    tok_s: f64,
    elapsed: f64,
    out: &Path,
    pb: &ProgressBar,
) -> Result<Metrics, String> {
    let before = t.progress.best_val;
    let val = t.validate().map_err(|e| e.to_string())?;
    let p = &t.progress;
    let m = Metrics {
        step: p.step,
        epoch: p.epoch,
        tokens: p.tokens_seen,
        train_loss,
        val_loss: val,
        val_perplexity: val.map(f64::exp),
        val_bits_per_char: val
            .filter(|_| char_level)
            .map(|v| v / std::f64::consts::LN_2),
        lr,
        tokens_per_s: tok_s,
        elapsed_s: elapsed,
    };
    let mut line = format!(
        "step {:>6}  epoch {:>3}  train {:.4}",
        m.step, m.epoch, m.train_loss
    );
    if let Some(v) = val {
        line += &format!("  val {v:.4}  ppl {:.3}", v.exp());
        if let Some(b) = m.val_bits_per_char {
            line += &format!("  bpc {b:.4}");
        }
    }
    say(pb, &line);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", out.join("metrics.jsonl").display()))?;
    writeln!(f, "{}", serde_json::to_string(&m).unwrap()).map_err(|e| e.to_string())?;
    t.save(out).map_err(|e| e.to_string())?;
    let improved = match (val, before) {
        (Some(v), Some(b)) => v < b,
        (Some(_), None) => true,
        (None, _) => true, // no validation data: the latest model is the best we know
    };
    if improved {
        t.save_best(out).map_err(|e| e.to_string())?;
    }
    Ok(m)
}

fn read_metrics(path: &Path) -> Vec<Metrics> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn plot_losses(path: &Path, m: &[Metrics]) -> CliResult {
    let train: Vec<(f64, f64)> = m.iter().map(|m| (m.tokens as f64, m.train_loss)).collect();
    let val: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.tokens as f64, v)))
        .collect();
    line_plot(
        path,
        "recur: loss against tokens seen",
        "training tokens",
        "cross-entropy (nats per token)",
        &[
            Series {
                label: "train",
                points: train,
                color: RGBColor(31, 119, 180),
            },
            Series {
                label: "validation",
                points: val,
                color: RGBColor(214, 39, 40),
            },
        ],
    )
}
