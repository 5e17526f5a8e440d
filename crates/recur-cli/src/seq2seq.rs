//! Sequence to sequence: `recur train --task seq2seq`, `recur translate`,
//! `recur eval` of an encoder–decoder, and `recur bleu`.

use recur::quant::Precision;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recur::bleu::{corpus_bleu, corpus_chrf, Bleu, Chrf};
use recur::checkpoint::{load_seq2seq, write_atomic};
use recur::data::pairs::{
    join_tokens, pair_batches, pairs_by_length, parse_pairs, parse_parallel, split_tokens,
    PairData, PairExample, PairVocab, UNK_ID,
};
use recur::data::Level;
use recur::layer::attention::AttentionKind;
use recur::model::seq2seq::{
    Condition, ConditionMode, Decode, Hypothesis, Search, Seq2Seq, Seq2SeqConfig, Seq2SeqMeta,
    Seq2SeqTraining, Seq2SeqWs, TeacherForcing,
};
use recur::plot::attention_plot;
use recur::train::{Budget, Data, Trainer};
use serde::{Deserialize, Serialize};

use crate::train::{parse_cell, train_config, write_run_file, Progressbar, TrainArgs};
use crate::CliResult;

/// What `--resume` needs besides the library's state: `OUT/run.json`.
#[derive(Serialize, Deserialize)]
struct PairRunFile {
    task: String,
    data: Vec<PathBuf>,
    valid: Option<PathBuf>,
    level: String,
    min_count: usize,
    vocab: usize,
    max_tokens: usize,
    budget: Budget,
    eval_every: Option<u64>,
    batch: usize,
    val_fraction: f64,
    seed: u64,
    /// A conditioned decoder: `label` or the condition file, and how the
    /// labelled texts were read.
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    read: Option<crate::seqdata::ReadSettings>,
}

/// Whether `dir` holds a run of an encoder–decoder or a conditioned decoder.
pub fn is_run(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| {
            matches!(
                v.get("task").and_then(|t| t.as_str()),
                Some("seq2seq" | "conditioned")
            )
        })
}

/// Reads the training examples (and the held-out ones of `--valid`): pairs,
/// or sequences with conditions; with the label names of a label condition.
fn read_examples(
    data: &[PathBuf],
    valid: Option<&PathBuf>,
    condition: Option<&str>,
    rs: Option<&crate::seqdata::ReadSettings>,
    level: Level,
    labels: Option<&[String]>,
) -> anyhow::Result<(Tokenized, Option<Tokenized>, Vec<String>)> {
    let Some(spec) = condition else {
        let all = tokenize_pairs(&read_pairs(data)?, level);
        let valid = match valid {
            Some(v) => Some(tokenize_pairs(&read_pairs(std::slice::from_ref(v))?, level)),
            None => None,
        };
        return Ok((all, valid, Vec::new()));
    };
    let rs = rs.context("reader settings of a label condition")?;
    let (all, names) = read_conditioned(data, spec, level, rs, labels)?;
    let valid = match valid {
        Some(v) if spec == "label" => {
            Some(read_conditioned(std::slice::from_ref(v), spec, level, rs, Some(&names))?.0)
        }
        Some(_) => bail!("--valid: with --condition FILE, hold out with --val-fraction instead"),
        None => None,
    };
    Ok((all, valid, names))
}

/// Reads pairs: one `source<TAB>target` file, or two parallel files.
fn read_pairs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let read = |p: &Path| -> anyhow::Result<String> {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
        String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not UTF-8 text (invalid byte at offset {})",
                p.display(),
                e.utf8_error().valid_up_to()
            )
        })
    };
    Ok(match files {
        [one] => parse_pairs(&read(one)?, &one.display().to_string())?,
        [src, tgt] => parse_parallel(
            &read(src)?,
            &read(tgt)?,
            (&src.display().to_string(), &tgt.display().to_string()),
        )?,
        _ => bail!(
            "--data: expected one file of source<TAB>target lines, or two parallel files (source, target); got {}",
            files.len()
        ),
    })
}

fn parse_level(s: &str) -> anyhow::Result<Level> {
    Level::from_name(s).with_context(|| format!("--level: expected char or word, got '{s}'"))
}

/// One example as tokens: a source (empty for a decoder alone), a
/// target, and a condition (empty without).
#[derive(Clone)]
struct Ex {
    src: Vec<String>,
    tgt: Vec<String>,
    cond: Vec<f32>,
}

type Tokenized = Vec<Ex>;

/// Tokens of each pair; every non-empty side has at least one token.
fn tokenize_pairs(pairs: &[(String, String)], level: Level) -> Tokenized {
    pairs
        .iter()
        .map(|(s, t)| Ex {
            src: split_tokens(s, level),
            tgt: split_tokens(t, level),
            cond: Vec::new(),
        })
        .collect()
}

fn encode(pairs: &Tokenized, meta: &(PairVocab, PairVocab)) -> Vec<PairExample> {
    pairs
        .iter()
        .map(|x| PairExample {
            src: meta.0.ids(&x.src),
            tgt: meta.1.ids(&x.tgt),
            cond: x.cond.clone(),
        })
        .collect()
}

/// What a conditioned decoder trains on: the sequences, their
/// conditions, and (for labels) the label names.
fn read_conditioned(
    a_data: &[PathBuf],
    spec: &str,
    level: Level,
    rs: &crate::seqdata::ReadSettings,
    labels: Option<&[String]>,
) -> anyhow::Result<(Tokenized, Vec<String>)> {
    if spec == "label" {
        // Labelled texts in any of the classifier's formats; one-hot labels.
        let items = crate::seqdata::read_items(
            a_data,
            recur::model::seq::SeqTask::Classify,
            rs,
            crate::seqdata::Part::Train,
            true,
        )?;
        let names: Vec<String> = match labels {
            Some(l) => l.to_vec(),
            None => {
                let mut l: Vec<String> =
                    items.items.iter().filter_map(|i| i.label.clone()).collect();
                l.sort();
                l.dedup();
                l
            }
        };
        let mut out = Vec::with_capacity(items.items.len());
        for (it, text) in items.items.iter().zip(&items.texts) {
            let label = it.label.clone().unwrap_or_default();
            let Some(k) = names.iter().position(|n| *n == label) else {
                bail!(
                    "{}:{}: label '{label}' is not one of the model's {names:?}",
                    items.source,
                    it.line
                );
            };
            let mut cond = vec![0.0; names.len()];
            cond[k] = 1.0;
            out.push(Ex {
                src: Vec::new(),
                tgt: split_tokens(text, level),
                cond,
            });
        }
        return Ok((out, names));
    }
    let [data] = a_data else {
        bail!("--data: with --condition FILE, one text file of sequences, one per line");
    };
    let text = std::fs::read_to_string(data)
        .with_context(|| format!("{}: cannot read as UTF-8 text", data.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let conds = read_condition_rows(Path::new(spec), labels)?;
    if conds.0.len() != lines.len() {
        bail!(
            "--condition {spec}: has {} rows but {} has {} lines: one condition per sequence",
            conds.0.len(),
            data.display(),
            lines.len()
        );
    }
    let mut out = Vec::new();
    for (i, (line, cond)) in lines.iter().zip(conds.0).enumerate() {
        let tgt = split_tokens(line.trim_end_matches('\r'), level);
        if tgt.is_empty() {
            bail!("{}:{}: the sequence is empty", data.display(), i + 1);
        }
        out.push(Ex {
            src: Vec::new(),
            tgt,
            cond,
        });
    }
    Ok((out, conds.1))
}

/// Condition rows from a `.csv` (numbers; a header row is skipped), a
/// `.safetensors` file (one 2-D tensor `[N, C]`), or a text file of labels,
/// one per line (one-hot, in the order `labels` gives or sorted).
fn read_condition_rows(
    path: &Path,
    labels: Option<&[String]>,
) -> anyhow::Result<(Vec<Vec<f32>>, Vec<String>)> {
    let name = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "safetensors" {
        let t = recur::checkpoint::read_tensors(path)?;
        let mut it = t.tensors.iter();
        let (Some((tname, (shape, values))), None) = (it.next(), it.next()) else {
            bail!(
                "{name}: expected exactly one tensor [N, C] of conditions, found {}",
                t.tensors.len()
            );
        };
        let [n, c] = shape[..] else {
            bail!("{name}: tensor '{tname}' has shape {shape:?}; expected [N, C]");
        };
        if c == 0 {
            bail!("{name}: tensor '{tname}' has no features (shape {shape:?})");
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{name}: tensor '{tname}': row {} has a value that is not a finite number",
                i / c + 1
            );
        }
        return Ok((
            values
                .chunks(c.max(1))
                .take(n)
                .map(<[f32]>::to_vec)
                .collect(),
            Vec::new(),
        ));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{name}: cannot read as UTF-8 text"))?;
    if ext == "csv" {
        let mut rows = Vec::new();
        let mut width = None;
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let nums: Result<Vec<f32>, _> = fields.iter().map(|f| f.parse::<f32>()).collect();
            match nums {
                Err(_) if i == 0 => continue,
                Err(_) => bail!(
                    "{name}:{}: expected {} comma-separated numbers, got {line:?}",
                    i + 1,
                    width.unwrap_or(fields.len())
                ),
                Ok(v) => {
                    if v.iter().any(|x| !x.is_finite()) {
                        bail!("{name}:{}: a value is not a finite number", i + 1);
                    }
                    if *width.get_or_insert(v.len()) != v.len() {
                        bail!(
                            "{name}:{}: {} values; the rows above have {}",
                            i + 1,
                            v.len(),
                            width.unwrap_or(0)
                        );
                    }
                    rows.push(v);
                }
            }
        }
        return Ok((rows, Vec::new()));
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let numeric = |l: &&str| l.split(',').all(|f| f.trim().parse::<f64>().is_ok());
    if !lines.is_empty() && lines.iter().all(numeric) {
        bail!("{name}: every line is numbers; name the file .csv to read them as features (a text file of labels is read as one label per line)");
    }
    let names: Vec<String> = match labels {
        Some(l) => l.to_vec(),
        None => {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            l.sort();
            l.dedup();
            l
        }
    };
    let mut rows = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(k) = names.iter().position(|n| n == l) else {
            bail!("{name}:{}: label '{l}' is not one of {names:?}", i + 1);
        };
        let mut v = vec![0.0; names.len()];
        v[k] = 1.0;
        rows.push(v);
    }
    Ok((rows, names))
}

/// The training pairs (filtered by length) and the held-out ones.
fn split(
    all: Tokenized,
    valid: Option<Tokenized>,
    val_fraction: f64,
    max_tokens: usize,
    seed: u64,
) -> anyhow::Result<(Tokenized, Tokenized, usize)> {
    let (mut train, valid) = match valid {
        Some(v) => (all, v),
        None => {
            if !(0.0..1.0).contains(&val_fraction) {
                bail!("--val-fraction: expected a number in [0, 1), got {val_fraction}");
            }
            let mut order: Vec<usize> = (0..all.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7061_6972));
            let n_val = (all.len() as f64 * val_fraction).round() as usize;
            let mut held = vec![false; all.len()];
            order[..n_val].iter().for_each(|&i| held[i] = true);
            let (mut tr, mut va) = (Vec::new(), Vec::new());
            for (i, p) in all.into_iter().enumerate() {
                if held[i] {
                    va.push(p);
                } else {
                    tr.push(p);
                }
            }
            (tr, va)
        }
    };
    let before = train.len() + valid.len();
    let mut valid = valid;
    if max_tokens > 0 {
        // Held-out pairs too: no longer than anything trained on.
        let fits = |x: &Ex| x.src.len() <= max_tokens && x.tgt.len() <= max_tokens;
        train.retain(fits);
        valid.retain(fits);
    }
    if train.is_empty() {
        bail!(
            "no training pairs left: --max-tokens {max_tokens} and --val-fraction {val_fraction} left none"
        );
    }
    let before = before - valid.len();
    let dropped = before - train.len();
    Ok((train, valid, dropped))
}

type Started = (
    PathBuf,
    Trainer<Seq2Seq<f32>, PairData>,
    PairRunFile,
    crate::runlock::RunLock,
    Tokenized,
);

/// `recur train --task seq2seq`.
pub fn train(a: TrainArgs) -> CliResult {
    let (out, mut trainer, rf, _lock, valid) = match &a.resume {
        Some(dir) => resume(&a, dir)?,
        None => start(&a)?,
    };
    let spe = trainer.data.steps_per_epoch().unwrap_or(1);
    let eval_every = rf.eval_every.unwrap_or(spe.min(1000) as u64).max(1);
    let c = trainer.model.config().clone();
    let shape = match c.condition {
        Some(cond) if c.decoder_only => format!(
            "a {}-layer {} decoder conditioned on {} feature(s) ({}) ({} hidden, {} parameters) on {} sequences of {}",
            c.layers,
            c.cell.name(),
            cond.features,
            format!("{:?}", cond.mode).to_lowercase(),
            c.hidden,
            trainer.model.num_params(),
            trainer.data.examples().len(),
            rf.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        ),
        _ => format!(
            "a {}-layer {}{} encoder and {}-layer decoder ({} hidden, {} attention{}, {} parameters) on {} pairs of {}",
            c.encoder_layers,
            if c.bidirectional { "bidirectional " } else { "" },
            c.cell.name(),
            c.layers,
            c.hidden,
            format!("{:?}", c.attention).to_lowercase(),
            if c.reverse_source { ", reversed source" } else { "" },
            trainer.model.num_params(),
            trainer.data.examples().len(),
            rf.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        ),
    };
    println!(
        "training {shape}, {} held out; target vocabulary {}; {} steps per epoch of {}",
        valid.len(),
        c.tgt_vocab,
        spe,
        rf.batch,
    );
    let mut bar = Progressbar::new(rf.budget, Some(spe), trainer.progress(), false, true);
    crate::train::run_watched(&mut trainer, rf.budget, eval_every, &out, &mut bar)?;
    let p = trainer.progress();
    println!(
        "done: {} steps ({} epochs) in {:.1} s; best validation loss {}",
        p.step,
        p.epoch,
        bar.started.elapsed().as_secs_f64(),
        p.best_score
            .or(p.best_val)
            .map_or("n/a".into(), |s| format!("{s:.4}")),
    );
    // The held-out pairs, and how the best model translates them.
    let level = parse_level(&rf.level)?;
    if !c.decoder_only {
        let tsv: String = valid
            .iter()
            .map(|x| {
                format!(
                    "{}\t{}\n",
                    join_tokens(&x.src, level),
                    join_tokens(&x.tgt, level)
                )
            })
            .collect();
        write_atomic(&out.join("valid.tsv"), tsv.as_bytes())?;
    }
    if !valid.is_empty() && !c.decoder_only {
        let best = load_seq2seq(&out.join("model.safetensors"))?;
        let sources: Vec<String> = valid.iter().map(|x| join_tokens(&x.src, level)).collect();
        let refs: Vec<String> = valid.iter().map(|x| join_tokens(&x.tgt, level)).collect();
        let hyps = translate_all(&best, &sources, &Decode::default(), true)?;
        let text: Vec<String> = hyps.iter().map(|h| h[0].text.clone()).collect();
        let bleu = corpus_bleu(&text, &refs);
        println!(
            "held-out greedy BLEU {:.2}, chrF {:.2}, exact match {:.3}",
            bleu.score,
            corpus_chrf(&text, &refs).score,
            exact_match(&text, &refs)
        );
        for (i, h) in hyps.iter().take(3).enumerate() {
            println!(
                "  {}  →  {}  (reference: {})",
                sources[i], h[0].text, refs[i]
            );
        }
    }
    println!(
        "wrote {}/model.safetensors (the best), last.safetensors, metrics.jsonl, loss.svg{}",
        out.display(),
        if c.decoder_only { "" } else { ", valid.tsv" }
    );
    Ok(())
}

/// Defaults that depend on the token level: words overfit sooner.
fn word_level(a: &TrainArgs) -> bool {
    a.level.as_deref().unwrap_or("word") == "word"
}

fn model_config(
    a: &TrainArgs,
    src_vocab: usize,
    tgt_vocab: usize,
) -> anyhow::Result<Seq2SeqConfig> {
    let mut c = Seq2SeqConfig::new(src_vocab, tgt_vocab);
    c.cell = parse_cell(Some(a.cell.as_deref().unwrap_or("gru")))?;
    c.embed = a.embed.unwrap_or(128);
    c.hidden = a.hidden.unwrap_or(256);
    c.layers = a.layers.unwrap_or(1);
    c.encoder_layers = a.encoder_layers.unwrap_or(c.layers);
    c.bidirectional = a.bidirectional.unwrap_or(false);
    c.attention = AttentionKind::from_name(&a.attention).with_context(|| {
        format!(
            "--attention: expected none, bahdanau, general or dot, got '{}'",
            a.attention
        )
    })?;
    c.input_feeding = a.input_feeding;
    c.reverse_source = a.reverse_source;
    c.dropout = a.dropout.unwrap_or(if word_level(a) { 0.3 } else { 0.0 });
    Ok(c)
}

fn training_options(a: &TrainArgs) -> anyhow::Result<Seq2SeqTraining> {
    let smoothing = a
        .label_smoothing
        .unwrap_or(if word_level(a) { 0.1 } else { 0.0 });
    if !(0.0..1.0).contains(&smoothing) {
        bail!("--label-smoothing: expected a number in [0, 1), got {smoothing}");
    }
    Ok(Seq2SeqTraining {
        teacher_forcing: TeacherForcing::parse(&a.teacher_forcing).context("--teacher-forcing")?,
        label_smoothing: smoothing,
    })
}

fn start(a: &TrainArgs) -> anyhow::Result<Started> {
    let level = parse_level(a.level.as_deref().unwrap_or("word"))?;
    let training = training_options(a)?;
    // Settings are checked before any data is read.
    model_config(a, 4, 4)?.param_count();
    crate::runlock::check_free(&a.out, a.overwrite)?;
    let mut cfg = train_config(a, a.lr.unwrap_or(2e-3))?;
    cfg.patience = a.patience.unwrap_or(0);
    cfg.check()?;
    if a.data.is_empty() {
        bail!(
            "--data: give the pairs to train on (source<TAB>target lines, or two parallel files)"
        );
    }
    let rs = match &a.condition {
        Some(_) => Some(crate::seq::read_settings_of(
            a,
            crate::seqdata::ReadSettings::detect_kind(&a.data),
        )?),
        None => None,
    };
    let (all, valid, labels) = read_examples(
        &a.data,
        a.valid.as_ref(),
        a.condition.as_deref(),
        rs.as_ref(),
        level,
        None,
    )?;
    let max_tokens = a
        .max_tokens
        .unwrap_or(if level == Level::Word { 50 } else { 200 });
    let (train, valid, dropped) = split(all, valid, a.val_fraction, max_tokens, a.seed)?;
    if dropped > 0 {
        println!("{dropped} pair(s) longer than {max_tokens} tokens left out (--max-tokens)");
    }
    let vocab = a.vocab.unwrap_or(0);
    let vocabs = (
        PairVocab::fit(train.iter().map(|p| &p.src[..]), a.min_count, vocab),
        PairVocab::fit(train.iter().map(|p| &p.tgt[..]), a.min_count, vocab),
    );
    let mut config = model_config(a, vocabs.0.len(), vocabs.1.len())?;
    config.src_vocab = vocabs.0.len();
    if a.condition.is_some() {
        config.decoder_only = true;
        config.attention = AttentionKind::None;
        let mode = ConditionMode::from_name(&a.condition_mode).with_context(|| {
            format!(
                "--condition-mode: expected init, first-step or every-step, got '{}'",
                a.condition_mode
            )
        })?;
        config.condition = Some(Condition {
            features: train[0].cond.len(),
            mode,
        });
    }
    let longest = train.iter().map(|p| p.src.len()).max().unwrap_or(1);
    let mut meta = Seq2SeqMeta {
        src_tokens: if config.decoder_only {
            Vec::new()
        } else {
            vocabs.0.tokens.clone()
        },
        tgt_tokens: vocabs.1.tokens.clone(),
        level: level.name().into(),
        condition_labels: labels,
        ..Seq2SeqMeta::default()
    };
    meta.data
        .insert("max_source".into(), (2 * longest).max(32).to_string());
    let mut model = Seq2Seq::new(config, meta, a.seed)?;
    model.training = training;
    let batch = a.batch.unwrap_or(64);
    let data = PairData::new(
        encode(&train, &vocabs),
        &encode(&valid, &vocabs),
        batch,
        a.seed,
    )?;
    let budget = match (a.epochs, a.steps, a.time) {
        (Some(e), _, _) => Budget::Epochs(e),
        (_, Some(s), _) => Budget::Steps(s),
        (_, _, Some(m)) if m.is_finite() && m > 0.0 => Budget::Minutes(m),
        (_, _, Some(m)) => bail!("--time: expected a number of minutes > 0, got {m}"),
        _ => Budget::Epochs(10),
    };
    cfg.total_steps = budget.total_steps(data.steps_per_epoch());
    let t = Trainer::new(model, data, cfg)?;
    let lock = crate::runlock::claim(&a.out)?;
    let rf = PairRunFile {
        task: if a.condition.is_some() {
            "conditioned"
        } else {
            "seq2seq"
        }
        .into(),
        condition: a.condition.clone(),
        read: rs,
        data: a.data.clone(),
        valid: a.valid.clone(),
        level: level.name().into(),
        min_count: a.min_count,
        vocab,
        max_tokens,
        budget,
        eval_every: a.eval_every,
        batch,
        val_fraction: a.val_fraction,
        seed: a.seed,
    };
    write_run_file(&a.out.join("run.json"), &rf)?;
    let _ = std::fs::remove_file(a.out.join("metrics.jsonl"));
    Ok((a.out.clone(), t, rf, lock, valid))
}

/// Continues the run in `dir`: the data is read again and encoded with the
/// saved model's vocabularies.
fn resume(a: &TrainArgs, dir: &Path) -> anyhow::Result<Started> {
    let rf_path = dir.join("run.json");
    let text = std::fs::read_to_string(&rf_path)
        .with_context(|| format!("--resume {}: not a recur run folder", dir.display()))?;
    let mut rf: PairRunFile =
        serde_json::from_str(&text).with_context(|| format!("{}", rf_path.display()))?;
    let lock = crate::runlock::lock(dir)?;
    match (a.epochs, a.steps, a.time) {
        (Some(e), _, _) => rf.budget = Budget::Epochs(e),
        (_, Some(s), _) => rf.budget = Budget::Steps(s),
        (_, _, Some(m)) if m.is_finite() && m > 0.0 => rf.budget = Budget::Minutes(m),
        (_, _, Some(m)) => bail!("--time: expected a number of minutes > 0, got {m}"),
        _ => {}
    }
    rf.eval_every = a.eval_every.or(rf.eval_every);
    write_run_file(&rf_path, &rf)?;
    let level = parse_level(&rf.level)?;
    let model = load_seq2seq(&dir.join("last.safetensors"))?;
    let labels =
        (!model.meta.condition_labels.is_empty()).then_some(&model.meta.condition_labels[..]);
    let (all, valid, _) = read_examples(
        &rf.data,
        rf.valid.as_ref(),
        rf.condition.as_deref(),
        rf.read.as_ref(),
        level,
        labels,
    )?;
    let (train, valid, _) = split(all, valid, rf.val_fraction, rf.max_tokens, rf.seed)?;
    let vocabs = vocabs_of(&model.meta)?;
    let data = PairData::new(
        encode(&train, &vocabs),
        &encode(&valid, &vocabs),
        rf.batch,
        rf.seed,
    )?;
    let total = rf.budget.total_steps(data.steps_per_epoch());
    let t = Trainer::resume(dir, model, data, total.map(Some))?;
    Ok((dir.to_path_buf(), t, rf, lock, valid))
}

/// A model's vocabularies (a decoder alone has only the reserved source tokens).
fn vocabs_of(meta: &Seq2SeqMeta) -> anyhow::Result<(PairVocab, PairVocab)> {
    let src = if meta.src_tokens.is_empty() {
        PairVocab::fit(std::iter::empty(), 1, 0)
    } else {
        PairVocab::from_tokens(meta.src_tokens.clone())?
    };
    Ok((src, PairVocab::from_tokens(meta.tgt_tokens.clone())?))
}

/// How to decode, shared by `translate` and `eval`.
#[derive(Args, Clone)]
pub struct DecodeArgs {
    /// Beam search of this width (1: greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Hypotheses printed per source (at most the beam width).
    #[arg(long, default_value_t = 1)]
    pub nbest: usize,
    /// Beam search's GNMT length penalty α: scores are log p / ((5 + |Y|) / 6)^α.
    #[arg(long, default_value_t = 0.6)]
    pub length_penalty: f64,
    /// Sample each token instead (with --temperature, --top-k, --top-p, --seed).
    #[arg(long, conflicts_with = "beam")]
    pub sample: bool,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0, requires = "sample")]
    pub temperature: f64,
    /// Sampling: keep the k most likely tokens.
    #[arg(long, requires = "sample")]
    pub top_k: Option<usize>,
    /// Sampling: keep the most likely tokens up to probability p.
    #[arg(long, requires = "sample")]
    pub top_p: Option<f64>,
    /// Sampling seed (each source draws from its own stream of it).
    #[arg(long, default_value_t = 1, requires = "sample")]
    pub seed: u64,
    /// At most ceil(RATIO × source length) + 5 output tokens.
    #[arg(long, default_value_t = 2.0)]
    pub max_ratio: f64,
    /// Keep <unk> in the output instead of copying the source token that
    /// the output attends to most (Luong et al. 2015's unknown-word replacement).
    #[arg(long)]
    pub keep_unk: bool,
    /// Sources decoded together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

impl DecodeArgs {
    /// The decoding these options describe.
    pub fn decode(&self) -> anyhow::Result<Decode> {
        if self.beam == 0 {
            bail!("--beam: the beam width must be at least 1");
        }
        if self.nbest == 0 || self.nbest > self.beam {
            bail!(
                "--nbest: expected 1 to the beam width ({}), got {}",
                self.beam,
                self.nbest
            );
        }
        if !(self.max_ratio.is_finite() && self.max_ratio > 0.0) {
            bail!("--max-ratio: expected a number > 0, got {}", self.max_ratio);
        }
        let search = if self.sample {
            Search::Sample {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            }
        } else if self.beam > 1 {
            Search::Beam {
                width: self.beam,
                alpha: self.length_penalty,
            }
        } else {
            Search::Greedy
        };
        Ok(Decode {
            search,
            nbest: self.nbest,
            max_ratio: self.max_ratio,
            max_len: 1000,
            mask_reserved: true,
        })
    }
}

/// One translation, as text.
pub struct Translation {
    /// The detokenised output.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<String>,
    /// The source's tokens.
    pub source: Vec<String>,
    /// The search's hypothesis.
    pub hyp: Hypothesis,
}

/// Translates `sources` (text) in batches of 64, sorted by length; each
/// source's n-best list in input order. With `replace_unk`, an output
/// `<unk>` becomes the source token it attends to most.
pub fn translate_all(
    model: &Seq2Seq<f32>,
    sources: &[String],
    how: &Decode,
    replace_unk: bool,
) -> anyhow::Result<Vec<Vec<Translation>>> {
    translate_batched(model, sources, how, replace_unk, 64, "the sources")
}

fn translate_batched(
    model: &Seq2Seq<f32>,
    sources: &[String],
    how: &Decode,
    replace_unk: bool,
    batch: usize,
    name: &str,
) -> anyhow::Result<Vec<Vec<Translation>>> {
    let level = parse_level(&model.meta.level)?;
    if model.config().decoder_only {
        bail!("this model is a decoder without an encoder: use `recur generate --condition`");
    }
    let (src_vocab, tgt_vocab) = vocabs_of(&model.meta)?;
    let limit: usize = model
        .meta
        .data
        .get("max_source")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let tokens: Vec<Vec<String>> = sources.iter().map(|s| split_tokens(s, level)).collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            bail!("{name}: line {}: the source is empty", i + 1);
        }
        if t.len() > limit {
            bail!(
                "{name}: line {}: the source has {} tokens; this model takes at most {limit} (twice its longest training source)",
                i + 1,
                t.len()
            );
        }
    }
    let ids: Vec<Vec<u32>> = tokens.iter().map(|t| src_vocab.ids(t)).collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut out: Vec<Option<Vec<Translation>>> = (0..ids.len()).map(|_| None).collect();
    let mut ws = Seq2SeqWs::default();
    for chunk in order.chunks(batch.max(1)) {
        let srcs: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let streams: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
        let hyps = model.decode(&mut ws, &srcs, &[], &streams, how)?;
        for (&i, list) in chunk.iter().zip(hyps) {
            let src = &tokens[i];
            out[i] = Some(
                list.into_iter()
                    .map(|hyp| {
                        let s = src.len();
                        let toks: Vec<String> = hyp
                            .tokens
                            .iter()
                            .enumerate()
                            .map(|(u, &t)| {
                                let row = &hyp.attention.get(u * s..(u + 1) * s).unwrap_or(&[]);
                                if replace_unk && t == UNK_ID && !row.is_empty() {
                                    let best = (0..s)
                                        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                                        .unwrap_or(0);
                                    src[best]
                                        .trim_start_matches(recur::data::pairs::JOINER)
                                        .to_string()
                                } else {
                                    tgt_vocab.token(t).to_string()
                                }
                            })
                            .collect();
                        Translation {
                            text: join_tokens(&toks, level),
                            tokens: toks,
                            source: src.clone(),
                            hyp,
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every source decoded"))
        .collect())
}

fn exact_match(hyps: &[String], refs: &[String]) -> f64 {
    let n = hyps
        .iter()
        .zip(refs)
        .filter(|(h, r)| h.trim() == r.trim())
        .count();
    n as f64 / refs.len().max(1) as f64
}

#[derive(Args)]
pub struct TranslateArgs {
    /// A recur sequence-to-sequence model.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Sources, one per line [default: standard input].
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Write an attention heatmap (SVG) for each of these 1-based source lines into --heatmaps.
    #[arg(long, value_delimiter = ',')]
    show: Vec<usize>,
    /// The folder for --show's heatmaps.
    #[arg(long, value_name = "DIR", default_value = ".")]
    heatmaps: PathBuf,
    /// One JSON object per source: its n-best list with scores (and attention).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    precision: crate::PrecisionArg,
}

/// `recur translate`.
pub fn translate(a: TranslateArgs) -> CliResult {
    let precision = a.precision.get()?;
    let mut model = load_seq2seq(&a.model)?;
    model.set_precision(precision).context("--precision")?;
    let how = a.decode.decode()?;
    let (lines, name) = match &a.input {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            p.display().to_string(),
        ),
        None => (
            std::io::stdin()
                .lock()
                .lines()
                .collect::<Result<Vec<_>, _>>()
                .context("standard input: not UTF-8 text")?,
            "standard input".to_string(),
        ),
    };
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    let out = translate_batched(
        &model,
        &lines,
        &how,
        !a.decode.keep_unk,
        a.decode.batch,
        &name,
    )?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for (i, list) in out.iter().enumerate() {
        if a.json {
            let v = serde_json::json!({
                "source": lines[i],
                "translations": list.iter().map(|t| serde_json::json!({
                    "text": t.text, "score": t.hyp.score, "log_prob": t.hyp.log_prob,
                    "finished": t.hyp.finished, "attention": t.hyp.attention,
                })).collect::<Vec<_>>(),
            });
            writeln!(w, "{v}")?;
        } else if how.nbest > 1 {
            for t in list {
                writeln!(w, "{}\t{:.4}\t{}", i + 1, t.hyp.score, t.text)?;
            }
        } else {
            writeln!(w, "{}", list[0].text)?;
        }
    }
    w.flush()?;
    if !a.show.is_empty() && model.config().attention == AttentionKind::None {
        bail!("--show: this model has no attention to draw");
    }
    for &line in &a.show {
        let Some(list) = line.checked_sub(1).and_then(|i| out.get(i)) else {
            bail!(
                "--show: line {line} is not one of the {} sources",
                out.len()
            );
        };
        let t = &list[0];
        let mut rows = t.tokens.clone();
        if t.hyp.finished {
            rows.push("<eos>".into());
        }
        let path = a.heatmaps.join(format!("attention-{line}.svg"));
        std::fs::create_dir_all(&a.heatmaps)
            .with_context(|| format!("{}: cannot create", a.heatmaps.display()))?;
        attention_plot(
            &path,
            &format!("recur: attention, line {line}"),
            &t.source,
            &rows,
            &t.hyp.attention,
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `recur eval` of an encoder–decoder on pairs: BLEU, chrF, exact match
/// and the teacher-forced loss.
pub fn eval(
    model_path: &Path,
    data: &Path,
    json: bool,
    decode: &DecodeArgs,
    precision: Precision,
) -> CliResult {
    let mut model = load_seq2seq(model_path)?;
    model.set_precision(precision).context("--precision")?;
    let how = decode.decode()?;
    let level = parse_level(&model.meta.level)?;
    let pairs = read_pairs(&[data.to_path_buf()])?;
    let sources: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    let refs: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let name = data.display().to_string();
    let out = translate_batched(
        &model,
        &sources,
        &how,
        !decode.keep_unk,
        decode.batch,
        &name,
    )?;
    let hyps: Vec<String> = out.iter().map(|l| l[0].text.clone()).collect();
    let bleu: Bleu = corpus_bleu(&hyps, &refs);
    let chrf: Chrf = corpus_chrf(&hyps, &refs);
    let em = exact_match(&hyps, &refs);
    let vocabs = vocabs_of(&model.meta)?;
    let ex = encode(&tokenize_pairs(&pairs, level), &vocabs);
    let batches = pair_batches(&ex, &pairs_by_length(&ex), 64)?;
    let e = model.measure(&batches)?;
    if json {
        let v = serde_json::json!({
            "bleu": bleu.score, "chrf": chrf.score, "exact_match": em,
            "signature": Bleu::signature(), "chrf_signature": Chrf::signature(),
            "precisions": bleu.precisions, "bp": bleu.bp, "sys_len": bleu.sys_len, "ref_len": bleu.ref_len,
            "loss": e.loss, "perplexity": e.loss.exp(), "sentences": pairs.len(),
        });
        println!("{v}");
    } else {
        println!("sentences    {}", pairs.len());
        println!("BLEU         {:.2}  ({})", bleu.score, Bleu::signature());
        println!("chrF         {:.2}  ({})", chrf.score, Chrf::signature());
        println!("exact match  {em:.4}");
        println!(
            "loss         {:.4}  (perplexity {:.3})",
            e.loss,
            e.loss.exp()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct BleuArgs {
    /// Hypotheses, one sentence per line.
    hyp: PathBuf,
    /// References, one sentence per line.
    reference: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `recur bleu HYP REF`.
pub fn bleu(a: BleuArgs) -> CliResult {
    let read = |p: &Path| -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("{}: cannot read as UTF-8 text", p.display()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect())
    };
    let (hyps, refs) = (read(&a.hyp)?, read(&a.reference)?);
    if hyps.len() != refs.len() {
        bail!(
            "{} has {} lines but {} has {}: one hypothesis per reference line",
            a.hyp.display(),
            hyps.len(),
            a.reference.display(),
            refs.len()
        );
    }
    let b = corpus_bleu(&hyps, &refs);
    let c = corpus_chrf(&hyps, &refs);
    let em = exact_match(&hyps, &refs);
    if a.json {
        let v = serde_json::json!({
            "bleu": b.score, "chrf": c.score, "exact_match": em,
            "signature": Bleu::signature(), "chrf_signature": Chrf::signature(),
            "precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len,
        });
        println!("{v}");
    } else {
        println!(
            "BLEU = {:.2} {:.1}/{:.1}/{:.1}/{:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})  {}",
            b.score,
            b.precisions[0],
            b.precisions[1],
            b.precisions[2],
            b.precisions[3],
            b.bp,
            b.sys_len as f64 / b.ref_len.max(1) as f64,
            b.sys_len,
            b.ref_len,
            Bleu::signature()
        );
        println!("chrF2 = {:.2}  {}", c.score, Chrf::signature());
        println!("exact match = {em:.4}");
    }
    Ok(())
}

/// `recur generate` of a conditioned decoder: `count` samples for the
/// condition `spec` (a label name, or comma-separated numbers).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model_path: &Path,
    spec: Option<&str>,
    count: usize,
    length: usize,
    search: Search,
    nbest: usize,
    precision: Precision,
) -> CliResult {
    let mut model = load_seq2seq(model_path)?;
    model.set_precision(precision).context("--precision")?;
    let c = model.config();
    if !c.decoder_only {
        bail!(
            "{}: an encoder-decoder translates: use `recur translate`",
            model_path.display()
        );
    }
    let cond: Vec<f32> = match (c.condition, spec) {
        (None, None) => Vec::new(),
        (None, Some(_)) => bail!("--condition: this model takes no condition"),
        (Some(_), None) => bail!(
            "--condition: this model is conditioned; give {}",
            if model.meta.condition_labels.is_empty() {
                "its features as comma-separated numbers".to_string()
            } else {
                format!("one of the labels {:?}", model.meta.condition_labels)
            }
        ),
        (Some(cd), Some(s)) => {
            let labels = &model.meta.condition_labels;
            if let Some(k) = labels.iter().position(|l| l == s) {
                let mut v = vec![0.0; cd.features];
                v[k] = 1.0;
                v
            } else {
                let v: Vec<f32> = s
                    .split(',')
                    .map(|x| x.trim().parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        if labels.is_empty() {
                            anyhow::anyhow!(
                                "--condition: expected {} comma-separated numbers, got '{s}'",
                                cd.features
                            )
                        } else {
                            anyhow::anyhow!(
                                "--condition: '{s}' is not one of the labels {labels:?}"
                            )
                        }
                    })?;
                if v.len() != cd.features || v.iter().any(|x| !x.is_finite()) {
                    bail!(
                        "--condition: expected {} finite numbers, got {} ('{s}')",
                        cd.features,
                        v.len()
                    );
                }
                v
            }
        }
    };
    if count == 0 {
        bail!("--count: at least 1");
    }
    let level = parse_level(&model.meta.level)?;
    let (_, tgt) = vocabs_of(&model.meta)?;
    let how = Decode {
        search,
        nbest,
        max_ratio: 1.0,
        max_len: length.max(1),
        mask_reserved: true,
    };
    // Different seeds per sample: one draw each, all in one batch.
    let sources = vec![Vec::new(); count];
    let conds: Vec<f32> = (0..count).flat_map(|_| cond.iter().copied()).collect();
    let mut ws = Seq2SeqWs::default();
    let streams: Vec<u64> = (0..count as u64).collect();
    let out = model.decode(&mut ws, &sources, &conds, &streams, &how)?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for list in out {
        for h in list {
            let toks: Vec<&str> = h.tokens.iter().map(|&t| tgt.token(t)).collect();
            writeln!(w, "{}", join_tokens(&toks, level))?;
        }
    }
    w.flush()?;
    Ok(())
}
