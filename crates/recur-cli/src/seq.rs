//! `recur train --task classify|tag|regress`, K-fold cross-validation, and
//! `eval` and `predict` for the sequence models.

use recur::quant::Precision;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recur::checkpoint::{load_seq, write_atomic};
use recur::data::read::{write_conllu, TagColumn, TsData};
use recur::data::seq::{batches_of, by_length, SeqData, SeqEncoder, SeqExample};
use recur::metrics::Confusion;
use recur::model::seq::{
    argmax, CharConfig, Pooling, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask,
};
use recur::plot::{confusion_plot, line_plot, Series};
use recur::train::{Budget, Data, Model, Quiet, Trainer};
use serde::{Deserialize, Serialize};

use crate::seqdata::{encode, fit, read_items, Item, Items, Part, ReadSettings};
use crate::train::{parse_cell, train_config, write_run_file, Progressbar, TrainArgs};
use crate::CliResult;

/// What `--resume` needs besides the library's state: `OUT/run.json`.
#[derive(Serialize, Deserialize)]
struct SeqRunFile {
    task: String,
    data: Vec<PathBuf>,
    valid: Option<PathBuf>,
    read: ReadSettings,
    budget: Budget,
    eval_every: Option<u64>,
    batch: usize,
    val_fraction: f64,
    word_dropout: f64,
    min_count: usize,
    seed: u64,
}

/// Whether `dir` holds a sequence-model run (its run.json names a task).
pub fn is_seq_run(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("task").is_some())
}

/// Settings that depend on the task and the data.
struct Defaults {
    embed: usize,
    hidden: usize,
    layers: usize,
    dropout: f64,
    epochs: usize,
    patience: u32,
    batch: usize,
    lr: f32,
    pooling: Pooling,
    char_embed: usize,
    char_hidden: usize,
    word_dropout: f64,
}

fn defaults(task: SeqTask, kind: &str) -> Defaults {
    let text = matches!(kind, "text" | "class-files" | "conllu");
    match (task, text) {
        (SeqTask::Tag, _) => Defaults {
            embed: 128,
            hidden: 128,
            layers: 2,
            dropout: 0.5,
            epochs: 20,
            patience: 5,
            batch: 32,
            lr: 2e-3,
            pooling: Pooling::Last,
            char_embed: 32,
            char_hidden: 64,
            word_dropout: 0.25,
        },
        (_, true) => Defaults {
            embed: 128,
            hidden: 128,
            layers: 1,
            dropout: 0.5,
            epochs: 10,
            patience: 3,
            batch: 32,
            lr: 2e-3,
            pooling: Pooling::Max,
            char_embed: 0,
            char_hidden: 0,
            word_dropout: 0.0,
        },
        (_, false) => Defaults {
            embed: 0,
            hidden: 64,
            layers: 1,
            dropout: 0.0,
            epochs: 500,
            patience: 50,
            batch: 16,
            lr: 1e-3,
            pooling: Pooling::Last,
            char_embed: 0,
            char_hidden: 0,
            word_dropout: 0.0,
        },
    }
}

fn parse_task(a: &TrainArgs) -> anyhow::Result<SeqTask> {
    let t = a.task.as_deref().unwrap_or("classify");
    SeqTask::from_name(t)
        .with_context(|| format!("--task: unknown task '{t}': expected classify, tag or regress"))
}

/// The most steps the network runs on a `.ts` series by default: longer
/// ones are fed in patches (an LSTM trained on a few dozen series of 150
/// or more steps often does not learn at all).
const MAX_SERIES_STEPS: usize = 32;

fn read_settings(a: &TrainArgs, task: SeqTask) -> anyhow::Result<ReadSettings> {
    if a.data.is_empty() {
        bail!("--task {} needs --data: the training file(s)", task.name());
    }
    let kind = ReadSettings::detect_kind(&a.data);
    let mut rs = read_settings_of(a, kind)?;
    if kind == "ts" && rs.patch == 0 {
        let ts = recur::data::read::read_ts(&a.data[0])?;
        let longest = ts.series.iter().map(|s| s.steps).max().unwrap_or(1);
        rs.patch = longest.div_ceil(MAX_SERIES_STEPS).max(1);
    }
    if rs.patch == 0 {
        rs.patch = 1;
    }
    Ok(rs)
}

pub(crate) fn read_settings_of(a: &TrainArgs, kind: &str) -> anyhow::Result<ReadSettings> {
    Ok(ReadSettings {
        kind: kind.to_string(),
        encoding: a.encoding.clone(),
        column: a.column.clone(),
        target: a.target.clone(),
        features: a.features.clone(),
        window: a.window.unwrap_or(24),
        horizon: a.horizon,
        holdout: a.holdout,
        log: a.log,
        relative: a.relative,
        lowercase: kind == "conllu",
        patch: a.patch.unwrap_or(0),
    })
}

/// The model's settings from the arguments and the task's defaults.
fn model_config(
    a: &TrainArgs,
    task: SeqTask,
    d: &Defaults,
    meta: &SeqMeta,
    first: &Item,
) -> anyhow::Result<SeqConfig> {
    let input = if first.tokens.is_empty() {
        SeqInput::Features {
            features: first.features.len() / first.steps.max(1),
        }
    } else {
        SeqInput::Tokens {
            vocab: meta.words.len(),
            embed: a.embed.unwrap_or(d.embed),
        }
    };
    let outputs = match task {
        SeqTask::Regress => first
            .targets
            .len()
            .max(first.step_targets.len() / first.steps.max(1)),
        _ => meta.labels.len(),
    };
    if task != SeqTask::Regress && outputs < 2 {
        bail!(
            "the training data has {} class(es) ({}): a classifier needs at least 2",
            outputs,
            meta.labels.join(", ")
        );
    }
    let mut c = SeqConfig::new(task, input, outputs);
    c.cell = parse_cell(a.cell.as_deref())?;
    c.hidden = a.hidden.unwrap_or(d.hidden);
    c.layers = a.layers.unwrap_or(d.layers);
    c.bidirectional = a.bidirectional.unwrap_or(true);
    c.dropout = a.dropout.unwrap_or(d.dropout);
    c.residual = a.residual;
    c.learned_init = a.learned_init;
    c.input_noise = a.noise;
    c.per_step = task == SeqTask::Tag || !first.step_targets.is_empty();
    c.pooling = match &a.pooling {
        None => d.pooling,
        Some(p) => Pooling::from_name(p).with_context(|| {
            format!("--pooling: unknown pooling '{p}': expected last, mean, max or attention")
        })?,
    };
    let char_hidden = a.char_hidden.unwrap_or(d.char_hidden);
    if char_hidden > 0 && !first.tokens.is_empty() {
        c.chars = Some(CharConfig {
            vocab: meta.chars.len(),
            embed: a.char_embed.unwrap_or(d.char_embed.max(16)),
            hidden: char_hidden,
        });
    }
    Ok(c)
}

/// Class weights from `--class-weights`: balanced, or one per class.
fn class_weights(
    spec: Option<&str>,
    meta: &SeqMeta,
    train: &[SeqExample],
    task: SeqTask,
) -> anyhow::Result<Vec<f64>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let c = meta.labels.len();
    if task == SeqTask::Regress {
        bail!("--class-weights: a regressor has no classes");
    }
    if spec == "balanced" {
        let mut n = vec![0usize; c];
        for e in train {
            if task == SeqTask::Tag {
                e.tags.iter().for_each(|&t| n[t as usize] += 1);
            } else {
                n[e.label as usize] += 1;
            }
        }
        let total: usize = n.iter().sum();
        return Ok(n
            .iter()
            .map(|&k| {
                if k == 0 {
                    0.0
                } else {
                    total as f64 / (c as f64 * k as f64)
                }
            })
            .collect());
    }
    let w: Vec<f64> = spec
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "--class-weights: expected 'balanced' or numbers separated by commas, got '{spec}'"
            )
        })?;
    if w.len() != c || w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        bail!(
            "--class-weights: expected {c} weights ≥ 0, one per class in the order {}; got '{spec}'",
            meta.labels.join(", ")
        );
    }
    Ok(w)
}

/// Splits off validation items: the last `fraction` of windows for a
/// series read in time order, else a seeded random `fraction`.
fn split_valid(
    items: Vec<Item>,
    fraction: f64,
    chronological_gap: Option<usize>,
    seed: u64,
) -> anyhow::Result<(Vec<Item>, Vec<Item>)> {
    if !(0.0..1.0).contains(&fraction) {
        bail!("--val-fraction: expected a number in [0, 1), got {fraction}");
    }
    let n_val = ((items.len() as f64) * fraction).round() as usize;
    if n_val == 0 {
        return Ok((items, Vec::new()));
    }
    if n_val >= items.len() {
        bail!(
            "--val-fraction {fraction} leaves no training examples of {}",
            items.len()
        );
    }
    let n = items.len();
    let mut idx: Vec<usize> = (0..n).collect();
    let gap = chronological_gap.unwrap_or(0);
    if chronological_gap.is_none() {
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7a11d));
    } else if n_val + gap >= n {
        bail!("--val-fraction {fraction} leaves no training windows of {n} once the {gap} windows overlapping the held-out ones are left out");
    }
    let val_set: std::collections::HashSet<usize> = idx[n - n_val..].iter().copied().collect();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, it) in items.into_iter().enumerate() {
        if val_set.contains(&i) {
            val.push(it);
        } else if chronological_gap.is_none() || i + n_val + gap < n {
            train.push(it);
        }
    }
    Ok((train, val))
}

/// The training items and the held-out ones (`valid`'s, or a split of the
/// training data), with their sources' names.
fn read_train_valid(
    data: &[PathBuf],
    valid: Option<&Path>,
    task: SeqTask,
    rs: &ReadSettings,
    val_fraction: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Item>, Vec<Item>, String, String)> {
    let items = read_items(data, task, rs, Part::Train, true)?;
    Ok(match valid {
        Some(v) => {
            let vi = read_items(&[v.to_path_buf()], task, rs, Part::Train, true)?;
            (items.items, vi.items, items.source, v.display().to_string())
        }
        None => {
            // Consecutive CSV windows overlap: a gap of window + horizon − 1
            // windows keeps the held-out targets out of training.
            let gap = (rs.kind == "csv").then(|| (rs.window.max(1) + rs.horizon).saturating_sub(1));
            let (t, v) = split_valid(items.items, val_fraction, gap, seed)?;
            (t, v, items.source.clone(), items.source)
        }
    })
}

/// Fits the vocabularies and statistics on `train`, encodes both sets and
/// builds a fresh model and its data.
fn prepare(
    a: &TrainArgs,
    task: SeqTask,
    rs: &ReadSettings,
    train: &[Item],
    valid: &[Item],
    source: (&str, &str),
) -> anyhow::Result<(SeqModel<f32>, SeqData, f64)> {
    let d = defaults(task, &rs.kind);
    // One rule with `model_config`: a character encoder for token input
    // whenever it has units.
    let chars = a.char_hidden.unwrap_or(d.char_hidden) > 0
        && train.first().is_some_and(|i| !i.tokens.is_empty());
    let mut meta = SeqMeta::default();
    let counts = fit(&mut meta, train, task, rs, chars, a.min_count);
    meta.data.insert(
        "read".into(),
        serde_json::to_string(rs).expect("settings serialise"),
    );
    let mut enc = SeqEncoder::new(&meta, rs.lowercase);
    let train_ex = encode(train, &mut enc, task, chars, true, source.0)?;
    let valid_ex = encode(valid, &mut enc, task, chars, true, source.1)?;
    meta.class_weights = class_weights(a.class_weights.as_deref(), &meta, &train_ex, task)?;
    let config = model_config(a, task, &d, &meta, &train[0])?;
    let mut model = SeqModel::new(config, meta, a.seed)?;
    if a.pretrain > 0 {
        let c = model.config().clone();
        let dirs: &[bool] = if c.bidirectional {
            &[false, true]
        } else {
            &[false]
        };
        for &reverse in dirs {
            let lm = recur::model::seq::pretrain_lm(
                &train_ex,
                &model.meta.words,
                &c,
                a.pretrain,
                a.seed,
                reverse,
            )?;
            model.init_from_lm(&lm, reverse)?;
        }
    }
    let word_dropout = a.word_dropout.unwrap_or(d.word_dropout);
    let data = SeqData::new(
        train_ex,
        &valid_ex,
        enc.table,
        a.batch.unwrap_or(d.batch),
        a.seed,
    )?
    .with_unk_chance(unk_chance(&counts, word_dropout));
    Ok((model, data, word_dropout))
}

/// Word dropout's chance per id: α / (α + count) (never for the reserved ids).
fn unk_chance(counts: &[usize], alpha: f64) -> Vec<f32> {
    if alpha <= 0.0 {
        return Vec::new();
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < 2 || c == 0 {
                0.0
            } else {
                (alpha / (alpha + c as f64)) as f32
            }
        })
        .collect()
}

fn budget(a: &TrainArgs, d: &Defaults) -> anyhow::Result<Budget> {
    Ok(match (a.epochs, a.steps, a.time) {
        (Some(e), _, _) => Budget::Epochs(e),
        (_, Some(s), _) => Budget::Steps(s),
        (_, _, Some(m)) if m.is_finite() && m > 0.0 => Budget::Minutes(m),
        (_, _, Some(m)) => bail!("--time: expected a number of minutes > 0, got {m}"),
        _ => Budget::Epochs(d.epochs),
    })
}

/// `recur train --task …`.
pub fn train(a: TrainArgs) -> CliResult {
    if let Some(k) = a.folds {
        return cross_validate(&a, k);
    }
    let (out, mut trainer, rf, _lock) = match &a.resume {
        Some(dir) => resume(&a, dir)?,
        None => start(&a)?,
    };
    let spe = trainer.data.steps_per_epoch().unwrap_or(1);
    let eval_every = rf.eval_every.unwrap_or(spe as u64).max(1);
    let c = trainer.model.config().clone();
    println!(
        "training a {} {}: {}-layer {}{} ({} hidden, {} parameters) on {} examples of {}, {} held out; {} steps per epoch of {}",
        c.task.name(),
        match c.task {
            SeqTask::Regress => format!("of {} value(s)", c.outputs),
            _ => format!("of {} classes", c.outputs),
        },
        c.layers,
        if c.bidirectional { "bidirectional " } else { "" },
        c.cell.name(),
        c.hidden,
        trainer.model.num_params(),
        trainer.data.examples().len(),
        rf.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        trainer.data.validation().iter().map(|b| b.batch()).sum::<usize>(),
        spe,
        rf.batch,
    );
    if c.task != SeqTask::Regress {
        let labels = &trainer.model.meta.labels;
        let shown: Vec<&str> = labels.iter().take(30).map(String::as_str).collect();
        println!(
            "classes, in the order of --class-weights: {}{}",
            shown.join(", "),
            if labels.len() > 30 { ", …" } else { "" }
        );
    }
    let mut bar = Progressbar::new(rf.budget, Some(spe), trainer.progress(), false, true);
    crate::train::run_watched(&mut trainer, rf.budget, eval_every, &out, &mut bar)?;
    let p = trainer.progress();
    let stopped = rf
        .budget
        .total_steps(Some(spe))
        .is_some_and(|end| p.step < end);
    println!(
        "done: {} steps ({} epochs{}) in {:.1} s; best validation {}",
        p.step,
        p.epoch,
        if stopped { ", stopped early" } else { "" },
        bar.started.elapsed().as_secs_f64(),
        match (trainer.model.selection(), p.best_score) {
            (Some(m), Some(s)) => format!("{m} {s:.4}"),
            (None, Some(s)) => format!("loss {s:.4}"),
            _ => "n/a".into(),
        }
    );
    write_figures(&out, &trainer)?;
    println!(
        "wrote {}/model.safetensors (the best), last.safetensors, metrics.jsonl, loss.svg{}",
        out.display(),
        if trainer.model.config().task == SeqTask::Regress {
            ""
        } else {
            ", accuracy.svg, confusion.svg"
        }
    );
    Ok(())
}

/// The learning curve of the held-out metric and the best model's
/// confusion matrix on the held-out data.
fn write_figures(out: &Path, trainer: &Trainer<SeqModel<f32>, SeqData>) -> anyhow::Result<()> {
    if trainer.model.config().task == SeqTask::Regress || trainer.data.validation().is_empty() {
        return Ok(());
    }
    let points: Vec<(f64, f64)> = trainer
        .history()
        .iter()
        .filter_map(|m| m.val.get("val_accuracy").map(|v| (m.step as f64, *v)))
        .collect();
    line_plot(
        &out.join("accuracy.svg"),
        "recur: held-out accuracy",
        "training steps",
        "accuracy",
        &[Series {
            label: "validation",
            points,
            color: (214, 39, 40),
        }],
    )?;
    let mut best = load_seq(&out.join("model.safetensors"))?;
    let (_, conf) = best.measure(trainer.data.validation())?;
    if let Some(conf) = conf {
        confusion_plot(
            &out.join("confusion.svg"),
            "recur: confusion matrix of the best model on the held-out data",
            &best.meta.labels,
            &conf,
        )?;
    }
    Ok(())
}

type Started = (
    PathBuf,
    Trainer<SeqModel<f32>, SeqData>,
    SeqRunFile,
    crate::runlock::RunLock,
);

fn start(a: &TrainArgs) -> anyhow::Result<Started> {
    let task = parse_task(a)?;
    let rs = read_settings(a, task)?;
    crate::runlock::check_free(&a.out, a.overwrite)?;
    let d = defaults(task, &rs.kind);
    let lr = a.lr.unwrap_or(d.lr);
    let mut cfg = train_config(a, lr)?;
    cfg.patience = a.patience.unwrap_or(d.patience);
    cfg.check()?;
    let budget = budget(a, &d)?;
    let (train, valid, source, vsource) = read_train_valid(
        &a.data,
        a.valid.as_deref(),
        task,
        &rs,
        a.val_fraction,
        a.seed,
    )?;
    let (model, data, word_dropout) = prepare(a, task, &rs, &train, &valid, (&source, &vsource))?;
    cfg.total_steps = budget.total_steps(data.steps_per_epoch());
    let batch = data.batch();
    let t = Trainer::new(model, data, cfg)?;
    let lock = crate::runlock::claim(&a.out)?;
    let rf = SeqRunFile {
        task: task.name().into(),
        data: a.data.clone(),
        valid: a.valid.clone(),
        read: rs,
        budget,
        eval_every: a.eval_every,
        batch,
        val_fraction: a.val_fraction,
        word_dropout,
        min_count: a.min_count,
        seed: a.seed,
    };
    write_run_file(&a.out.join("run.json"), &rf)?;
    let _ = std::fs::remove_file(a.out.join("metrics.jsonl"));
    Ok((a.out.clone(), t, rf, lock))
}

/// Continues the run in `dir`: the data is read again and encoded with
/// the saved model's vocabularies.
fn resume(a: &TrainArgs, dir: &Path) -> anyhow::Result<Started> {
    let rf_path = dir.join("run.json");
    let text = std::fs::read_to_string(&rf_path)
        .with_context(|| format!("--resume {}: not a recur run folder", dir.display()))?;
    let mut rf: SeqRunFile =
        serde_json::from_str(&text).with_context(|| format!("{}", rf_path.display()))?;
    let lock = crate::runlock::lock(dir)?;
    if let Some(b) = match (a.epochs, a.steps, a.time) {
        (None, None, None) => None,
        _ => Some(budget(a, &defaults(SeqTask::Classify, "text"))?),
    } {
        rf.budget = b;
    }
    rf.eval_every = a.eval_every.or(rf.eval_every);
    write_run_file(&rf_path, &rf)?;
    let task = SeqTask::from_name(&rf.task)
        .with_context(|| format!("{}: task '{}'", rf_path.display(), rf.task))?;
    let model = load_seq(&dir.join("last.safetensors"))?;
    let chars = model.chars().is_some();
    let (train, valid, source, vsource) = read_train_valid(
        &rf.data,
        rf.valid.as_deref(),
        task,
        &rf.read,
        rf.val_fraction,
        rf.seed,
    )?;
    let mut scratch = SeqMeta::default();
    let counts = fit(&mut scratch, &train, task, &rf.read, chars, rf.min_count);
    if scratch.words != model.meta.words {
        bail!(
            "--resume {}: the training data no longer gives the model's vocabulary",
            dir.display()
        );
    }
    let mut enc = SeqEncoder::new(&model.meta, rf.read.lowercase);
    let train_ex = encode(&train, &mut enc, task, chars, true, &source)?;
    let valid_ex = encode(&valid, &mut enc, task, chars, true, &vsource)?;
    let data = SeqData::new(train_ex, &valid_ex, enc.table, rf.batch, rf.seed)?
        .with_unk_chance(unk_chance(&counts, rf.word_dropout));
    let total = rf.budget.total_steps(data.steps_per_epoch());
    let t = Trainer::resume(dir, model, data, total.map(Some))?;
    Ok((dir.to_path_buf(), t, rf, lock))
}

/// `--folds K`: K-fold cross-validation; prints one line per fold, or one
/// JSON object with `--json`.
fn cross_validate(a: &TrainArgs, k: usize) -> CliResult {
    let task = parse_task(a)?;
    if task != SeqTask::Classify {
        bail!("--folds: cross-validation is for --task classify");
    }
    if k < 2 {
        bail!("--folds: expected at least 2 folds, got {k}");
    }
    if a.valid.is_some() || a.resume.is_some() {
        bail!("--folds splits the training data itself: it takes neither --valid nor --resume");
    }
    let rs = read_settings(a, task)?;
    let d = defaults(task, &rs.kind);
    let budget = budget(a, &d)?;
    crate::runlock::check_free(&a.out, a.overwrite)?;
    let items = read_items(&a.data, task, &rs, Part::Train, true)?;
    let n = items.items.len();
    let _lock = crate::runlock::claim(&a.out)?;
    if n < k {
        bail!("--folds {k}: the data has only {n} examples");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed ^ 0xf01d5));
    let started = std::time::Instant::now();
    let mut accs = Vec::new();
    for f in 0..k {
        let (lo, hi) = (f * n / k, (f + 1) * n / k);
        let test: Vec<Item> = order[lo..hi]
            .iter()
            .map(|&i| items.items[i].clone())
            .collect();
        let rest: Vec<Item> = order[..lo]
            .iter()
            .chain(&order[hi..])
            .map(|&i| items.items[i].clone())
            .collect();
        let (train, valid) = split_valid(rest, a.val_fraction, None, a.seed + f as u64)?;
        let (model, data, _) =
            prepare(a, task, &rs, &train, &valid, (&items.source, &items.source))?;
        let mut cfg = train_config(a, a.lr.unwrap_or(d.lr))?;
        cfg.patience = a.patience.unwrap_or(d.patience);
        cfg.total_steps = budget.total_steps(data.steps_per_epoch());
        let spe = data.steps_per_epoch().unwrap_or(1) as u64;
        let dir = a.out.join(format!("fold-{f}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join("metrics.jsonl"));
        let mut t = Trainer::new(model, data, cfg)?;
        t.run(
            budget,
            a.eval_every.unwrap_or(spe).max(1),
            Some(&dir),
            &mut Quiet,
        )?;
        let mut best = load_seq(&dir.join("model.safetensors"))?;
        let mut enc = SeqEncoder::new(&best.meta, rs.lowercase);
        let test_ex = encode(
            &test,
            &mut enc,
            task,
            best.chars().is_some(),
            true,
            &items.source,
        )?;
        let batches = batches_of(&test_ex, &by_length(&test_ex), &enc.table, 64)?;
        let (e, _) = best.measure(&batches)?;
        let acc = e.metrics["accuracy"];
        if !a.json {
            println!(
                "fold {}/{k}: test accuracy {acc:.4} ({} test, {} training examples; {} steps, {:.0} s so far)",
                f + 1,
                test.len(),
                train.len(),
                t.progress().step,
                started.elapsed().as_secs_f64()
            );
        }
        accs.push(acc);
    }
    let mean = accs.iter().sum::<f64>() / k as f64;
    let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k as f64).sqrt();
    let result = serde_json::json!({"folds": k, "mean_accuracy": mean, "std_accuracy": std,
        "fold_accuracies": accs, "examples": n, "seconds": started.elapsed().as_secs_f64()});
    write_atomic(&a.out.join("folds.json"), result.to_string().as_bytes())?;
    if a.json {
        println!("{result}");
    } else {
        println!("{k}-fold cross-validation: mean accuracy {mean:.4} (std {std:.4})");
    }
    Ok(())
}

/// Options of `eval` and `predict` for sequence models.
#[derive(Args, Clone, Default)]
pub struct SeqEvalArgs {
    /// Forecasting: the last N rows to forecast [default: the model's --holdout].
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Forecasting: the season's length, for the seasonal-naive baseline.
    #[arg(long)]
    pub period: Option<usize>,
}

/// Reads `data` as the model was trained to read it.
fn model_items(
    model: &SeqModel<f32>,
    data: &Path,
    holdout: Option<usize>,
    labeled: bool,
) -> anyhow::Result<(ReadSettings, Items)> {
    let mut rs: ReadSettings =
        serde_json::from_str(model.meta.data.get("read").map_or("", String::as_str))
            .context("the model has no reader settings ('read' in its metadata)")?;
    if let Some(h) = holdout {
        rs.holdout = h;
    }
    let paths = vec![data.to_path_buf()];
    // A model trained on class files reads another folder of them, or a
    // file of text lines.
    if rs.kind == "class-files" && !data.is_dir() {
        rs.kind = "text".into();
    }
    let c = model.config();
    if c.task != SeqTask::Regress && model.meta.labels.len() != c.outputs {
        bail!(
            "the model names {} labels for its {} classes: is it a recur classifier or tagger file?",
            model.meta.labels.len(),
            c.outputs
        );
    }
    let items = read_items(&paths, c.task, &rs, Part::Test, labeled)?;
    Ok((rs, items))
}

/// Predictions `[N, O]` for every item, in the items' order, and the rows
/// they came from (N = items, or the sum of their steps per step).
fn run_model(
    model: &mut SeqModel<f32>,
    items: &Items,
    labels: bool,
    rs: &ReadSettings,
) -> anyhow::Result<(Vec<SeqExample>, Vec<Vec<f32>>)> {
    let task = model.config().task;
    let chars = model.chars().is_some();
    let mut enc = SeqEncoder::new(&model.meta, rs.lowercase);
    let ex = encode(&items.items, &mut enc, task, chars, labels, &items.source)?;
    check_features(model, &ex, &items.source)?;
    let order = by_length(&ex);
    let batches = batches_of(&ex, &order, &enc.table, 64)?;
    let o = model.config().outputs;
    let mut out = vec![Vec::new(); ex.len()];
    for b in &batches {
        let pred = model.predict(b)?;
        let bn = b.batch();
        for (i, &r) in b.rows.iter().enumerate() {
            if model.config().steps_out() {
                out[r] = (0..b.lengths[i])
                    .flat_map(|t| pred[(t * bn + i) * o..][..o].to_vec())
                    .collect();
            } else {
                out[r] = pred[i * o..][..o].to_vec();
            }
        }
    }
    Ok((ex, out))
}

/// Predictions for items built in memory (the Python package's inputs),
/// read as the model read its training files: `[O]` per item, or `[T, O]`
/// flattened per step.
pub fn predict_items(model: &mut SeqModel<f32>, items: &Items) -> anyhow::Result<Vec<Vec<f32>>> {
    let rs: ReadSettings =
        serde_json::from_str(model.meta.data.get("read").map_or("", String::as_str))
            .context("the model has no reader settings ('read' in its metadata)")?;
    Ok(run_model(model, items, false, &rs)?.1)
}

/// Series held in memory as the model's items (patched as in training).
pub fn series_to_items(model: &SeqModel<f32>, ts: &TsData) -> anyhow::Result<Vec<Item>> {
    let rs: ReadSettings =
        serde_json::from_str(model.meta.data.get("read").map_or("", String::as_str))
            .context("the model has no reader settings ('read' in its metadata)")?;
    let mut out = Items {
        items: Vec::new(),
        source: "the inputs".into(),
        texts: Vec::new(),
        sentences: Vec::new(),
        first_row: Vec::new(),
        first_new: Vec::new(),
        series: Vec::new(),
    };
    crate::seqdata::series_items(ts, model.config().task, rs.patch.max(1), &mut out)?;
    Ok(out.items)
}

fn check_features(model: &SeqModel<f32>, ex: &[SeqExample], source: &str) -> anyhow::Result<()> {
    if let SeqInput::Features { features } = model.config().input {
        if let Some((i, e)) = ex
            .iter()
            .enumerate()
            .find(|(_, e)| e.features.len() != e.steps * features)
        {
            bail!(
                "{source}: example {} has {} channel(s) per step, but the model reads {features}",
                i + 1,
                e.features.len() / e.steps.max(1)
            );
        }
    }
    Ok(())
}

/// `recur eval` of a sequence model.
pub fn eval(
    model_path: &Path,
    data: &Path,
    json: bool,
    opts: &SeqEvalArgs,
    precision: Precision,
) -> CliResult {
    let mut model = load_seq(model_path)?;
    model.set_precision(precision).context("--precision")?;
    let (rs, items) = model_items(&model, data, opts.holdout, true)?;
    let task = model.config().task;
    let (ex, pred) = run_model(&mut model, &items, true, &rs)?;
    let result = match task {
        SeqTask::Classify | SeqTask::Tag => {
            let mut conf = Confusion::new(model.config().outputs);
            let o = model.config().outputs;
            for (e, p) in ex.iter().zip(&pred) {
                if task == SeqTask::Tag {
                    for (t, row) in p.chunks_exact(o).enumerate() {
                        conf.add(e.tags[t] as usize, argmax(row));
                    }
                } else {
                    conf.add(e.label as usize, argmax(p));
                }
            }
            let labels = &model.meta.labels;
            let per_class: serde_json::Map<String, serde_json::Value> = (0..o)
                .map(|c| {
                    (
                        labels[c].clone(),
                        serde_json::to_value(conf.scores(c)).expect("scores"),
                    )
                })
                .collect();
            serde_json::json!({
                "task": task.name(), "examples": ex.len(), "predictions": conf.total(),
                "accuracy": conf.accuracy(), "macro_f1": conf.macro_f1(), "per_class": per_class,
            })
        }
        SeqTask::Regress => regression_report(&model, &rs, &items, &pred, opts)?,
    };
    if json {
        println!("{result}");
    } else {
        print_report(&result);
    }
    Ok(())
}

fn print_report(v: &serde_json::Value) {
    let Some(map) = v.as_object() else { return };
    for (k, v) in map {
        match v {
            serde_json::Value::Object(per) if k == "per_class" => {
                println!(
                    "{:<16} {:>9} {:>9} {:>9} {:>9}",
                    "class", "precision", "recall", "f1", "support"
                );
                for (c, s) in per {
                    println!(
                        "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>9}",
                        c,
                        s["precision"].as_f64().unwrap_or(0.0),
                        s["recall"].as_f64().unwrap_or(0.0),
                        s["f1"].as_f64().unwrap_or(0.0),
                        s["support"]
                    );
                }
            }
            serde_json::Value::Number(n) if n.is_f64() => {
                println!("{k:<16} {:.6}", n.as_f64().unwrap_or(0.0))
            }
            other => println!("{k:<16} {other}"),
        }
    }
}

/// The predictions of CSV windows as (data row, value in the target's
/// units, the window's forecast origin), each row once, in order.
fn csv_predictions(
    rs: &ReadSettings,
    items: &Items,
    pred: &[Vec<f32>],
    o: usize,
) -> Vec<(usize, f64, usize)> {
    let mut out = Vec::new();
    let rows = items.series.len();
    for (((it, p), &first), &new) in items
        .items
        .iter()
        .zip(pred)
        .zip(&items.first_row)
        .zip(&items.first_new)
    {
        for (k, v) in p.iter().enumerate() {
            let row = if rs.horizon > 0 {
                first + k
            } else {
                first + k / o.max(1)
            };
            if row >= new && row < rows {
                out.push((row, untransform(rs, *v as f64, it.base), first));
            }
        }
    }
    out
}

/// Undoes the CSV transforms of a prediction: back from relative and log.
fn untransform(rs: &ReadSettings, v: f64, base: f64) -> f64 {
    let v = v + base;
    if rs.log {
        v.exp()
    } else {
        v
    }
}

/// RMSE and MAE of a regressor next to a naive baseline's.
fn regression_report(
    model: &SeqModel<f32>,
    rs: &ReadSettings,
    items: &Items,
    pred: &[Vec<f32>],
    opts: &SeqEvalArgs,
) -> anyhow::Result<serde_json::Value> {
    let (mut se, mut ae, mut n) = (0.0, 0.0, 0usize);
    let (mut bse, mut bae) = (0.0, 0.0);
    let o = model.config().outputs;
    let baseline;
    if rs.kind == "csv" {
        let y = &items.series;
        let period = opts.period.unwrap_or(0);
        baseline = if period > 0 {
            format!("seasonal naive (period {period})")
        } else {
            "naive (last value)".into()
        };
        for (row, guess, origin) in csv_predictions(rs, items, pred, o) {
            if row + rs.holdout < y.len() {
                continue;
            }
            let truth = y[row];
            // The baselines know what was observed before the forecast's origin.
            let last = origin.checked_sub(1).map(|r| y[r]).unwrap_or(truth);
            let h = row - origin + 1;
            let naive = if period > 0 {
                let back = period * h.div_ceil(period);
                row.checked_sub(back).map(|r| y[r]).unwrap_or(last)
            } else {
                last
            };
            se += (guess - truth).powi(2);
            ae += (guess - truth).abs();
            bse += (naive - truth).powi(2);
            bae += (naive - truth).abs();
            n += 1;
        }
    } else {
        baseline = "mean of the training targets".into();
        for (it, p) in items.items.iter().zip(pred) {
            for (k, (v, t)) in p
                .iter()
                .zip(it.targets.iter().chain(&it.step_targets))
                .enumerate()
            {
                let m = model.meta.target_mean.get(k % o).copied().unwrap_or(0.0);
                let (v, t) = (*v as f64, *t as f64);
                se += (v - t).powi(2);
                ae += (v - t).abs();
                bse += (m - t).powi(2);
                bae += (m - t).abs();
                n += 1;
            }
        }
    }
    if n == 0 {
        bail!("{}: nothing to evaluate: no target values", items.source);
    }
    let nf = n as f64;
    Ok(serde_json::json!({
        "task": "regress", "predictions": n,
        "rmse": (se / nf).sqrt(), "mae": ae / nf,
        "baseline": baseline, "baseline_rmse": (bse / nf).sqrt(), "baseline_mae": bae / nf,
    }))
}

/// `recur predict` of a sequence model: labels as TSV, CoNLL-U with the
/// predicted column, or values as CSV.
pub fn predict(
    model_path: &Path,
    data: &Path,
    out: Option<&Path>,
    opts: &SeqEvalArgs,
    precision: Precision,
) -> CliResult {
    let mut model = load_seq(model_path)?;
    model.set_precision(precision).context("--precision")?;
    let (rs, items) = model_items(&model, data, opts.holdout, false)?;
    let task = model.config().task;
    let (_, pred) = run_model(&mut model, &items, false, &rs)?;
    let o = model.config().outputs;
    let labels = &model.meta.labels;
    let text = match task {
        SeqTask::Tag => {
            let column = TagColumn::from_name(&rs.column).unwrap_or(TagColumn::Upos);
            let tags: Vec<Vec<String>> = pred
                .iter()
                .map(|p| {
                    p.chunks_exact(o)
                        .map(|row| labels[argmax(row)].clone())
                        .collect()
                })
                .collect();
            write_conllu(&items.sentences, &tags, column)?
        }
        SeqTask::Classify => {
            let mut s = String::from(if items.texts.is_empty() {
                "index\tlabel\tprobability\n"
            } else {
                "label\tprobability\ttext\n"
            });
            for (i, p) in pred.iter().enumerate() {
                let (best, prob) = softmax_best(p);
                match items.texts.get(i) {
                    Some(t) => s += &format!("{}\t{prob:.4}\t{t}\n", labels[best]),
                    None => s += &format!("{}\t{}\t{prob:.4}\n", i + 1, labels[best]),
                }
            }
            s
        }
        SeqTask::Regress => {
            let mut s = String::new();
            if rs.kind == "csv" {
                s += "row,prediction\n";
                for (row, guess, _) in csv_predictions(&rs, &items, &pred, o) {
                    s += &format!("{},{guess}\n", row + 1);
                }
            } else {
                s += "index,";
                s += &(0..o)
                    .map(|k| format!("prediction_{k}"))
                    .collect::<Vec<_>>()
                    .join(",");
                s += "\n";
                for (i, p) in pred.iter().enumerate() {
                    s += &format!(
                        "{},{}\n",
                        i + 1,
                        p.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                }
            }
            s
        }
    };
    match out {
        Some(path) => {
            write_atomic(path, text.as_bytes())?;
            eprintln!("wrote {} predictions to {}", pred.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The most likely class of a row of logits and its probability.
fn softmax_best(logits: &[f32]) -> (usize, f64) {
    let best = argmax(logits);
    let m = logits[best] as f64;
    let z: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
    (best, 1.0 / z)
}

/// `recur bench seq`.
#[derive(Args)]
pub struct SeqBenchArgs {
    /// The shared data folder (UD English EWT and MR).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Timed batches, after 3 warm-up batches; the median is reported.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Training and inference sentences/s of the default tagger and text
/// classifier, one JSON line each (bench/seq_baseline.py's measure).
pub fn bench(a: SeqBenchArgs) -> CliResult {
    use clap::Parser;
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    recur::gemm::set_threads(a.threads);
    let ewt = a.data.join("ud-english-ewt/en_ewt-ud-train.conllu");
    let mr = a.data.join("mr");
    let runs = [
        (
            "tagger",
            vec![
                "--task".to_string(),
                "tag".into(),
                "--data".into(),
                ewt.display().to_string(),
            ],
        ),
        (
            "classifier",
            vec![
                "--task".to_string(),
                "classify".into(),
                "--data".into(),
                mr.display().to_string(),
                "--encoding".into(),
                "windows-1252".into(),
            ],
        ),
    ];
    for (name, args) in runs {
        let cli = crate::Cli::try_parse_from(
            ["recur", "train", "--val-fraction", "0"]
                .iter()
                .map(|s| s.to_string())
                .chain(args),
        )?;
        let crate::Command::Train(ta) = cli.command else {
            unreachable!("parsed a train command")
        };
        let task = parse_task(&ta)?;
        let rs = read_settings(&ta, task)?;
        let items = read_items(&ta.data, task, &rs, Part::Train, true)?;
        let (model, data, _) = prepare(&ta, task, &rs, &items.items, &[], (&items.source, ""))?;
        let d = defaults(task, &rs.kind);
        let mut cfg = train_config(&ta, d.lr)?;
        cfg.clip_norm = 5.0;
        let mut t = Trainer::new(model, data, cfg)?;
        let warm = 3;
        let mut train = Vec::new();
        for k in 0..warm + a.steps {
            let started = std::time::Instant::now();
            t.train_step()?;
            if k >= warm {
                train.push(32.0 / started.elapsed().as_secs_f64());
            }
        }
        let mut infer = Vec::new();
        let mut batch = recur::data::seq::SeqBatch::default();
        for k in 0..warm + a.steps {
            t.data.fill(0, k, &mut batch)?;
            let started = std::time::Instant::now();
            t.model.predict(&batch)?;
            if k >= warm {
                infer.push(batch.batch() as f64 / started.elapsed().as_secs_f64());
            }
        }
        println!(
            "{}",
            serde_json::json!({"name": name, "train_sent_s": crate::bench::median(train),
                "infer_sent_s": crate::bench::median(infer), "threads": recur::gemm::threads(),
                "params": t.model.num_params()})
        );
    }
    Ok(())
}
