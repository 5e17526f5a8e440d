//! Users' files for the sequence tasks, read as they have them, and turned
//! into examples with a model's vocabularies and statistics.
//!
//! - text classification: `label<TAB>text` per line, or one file per class
//!   (a folder, or several files) with one example per line;
//! - tagging: CoNLL-U, tags from the UPOS or XPOS column;
//! - series: sktime/UEA `.ts` files (classes or numeric targets);
//! - forecasting and per-step regression: CSV columns, cut into windows.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use recur::data::read::{self, ConlluSentence, Encoding, Labeled, TagColumn, TsData, TsTarget};
use recur::data::seq::{SeqEncoder, SeqExample};
use recur::model::seq::{SeqMeta, SeqTask};
use serde::{Deserialize, Serialize};

/// How the files are read; saved in the model so that `eval` and
/// `predict` read new files the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadSettings {
    /// text, class-files, conllu, ts or csv.
    pub kind: String,
    /// Text encoding of text files.
    pub encoding: String,
    /// Tagging: upos or xpos.
    pub column: String,
    /// CSV: the column to predict.
    pub target: Option<String>,
    /// CSV: the input columns (empty: the target alone).
    pub features: Vec<String>,
    /// CSV: steps of input per window.
    pub window: usize,
    /// CSV: values predicted per window, the next `horizon` steps (0: the
    /// target at every step of the window, from the features).
    pub horizon: usize,
    /// CSV: the last `holdout` rows are never trained on (the test).
    pub holdout: usize,
    /// CSV: model the logarithm of the values.
    pub log: bool,
    /// CSV: inputs and targets relative to the window's last target value.
    pub relative: bool,
    /// Words are looked up lowercased (the characters keep their case).
    pub lowercase: bool,
    /// `.ts` series: each step of the network reads this many consecutive
    /// steps of the series (their channels side by side); the last patch
    /// repeats the series' last step.
    #[serde(default = "one")]
    pub patch: usize,
}

fn one() -> usize {
    1
}

impl ReadSettings {
    /// The file kind for `paths`: several files or a folder are class
    /// files; otherwise by extension.
    pub fn detect_kind(paths: &[PathBuf]) -> &'static str {
        if paths.len() > 1 || paths.first().is_some_and(|p| p.is_dir()) {
            return "class-files";
        }
        match paths
            .first()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("conllu") => "conllu",
            Some("ts") => "ts",
            Some("csv") => "csv",
            _ => "text",
        }
    }

    fn encoding(&self) -> anyhow::Result<Encoding> {
        Encoding::from_name(&self.encoding).with_context(|| {
            format!(
                "--encoding: unknown encoding '{}': expected utf-8, windows-1252 or latin1",
                self.encoding
            )
        })
    }

    fn column(&self) -> anyhow::Result<TagColumn> {
        TagColumn::from_name(&self.column)
            .with_context(|| format!("--column: expected upos or xpos, got '{}'", self.column))
    }
}

/// One example before encoding.
#[derive(Clone, Debug, Default)]
pub struct Item {
    /// Words (text, tagging).
    pub tokens: Vec<String>,
    /// `[T, C]` features (series).
    pub features: Vec<f32>,
    /// T.
    pub steps: usize,
    /// The class, when the file gives one.
    pub label: Option<String>,
    /// A tag per word (tagging).
    pub tags: Vec<String>,
    /// `[O]` values per sequence (regress).
    pub targets: Vec<f32>,
    /// `[T, O]` values per step (regress per step).
    pub step_targets: Vec<f32>,
    /// Forecasting: what the values are relative to (after the log), to
    /// undo the transform.
    pub base: f64,
    /// Where it came from, for errors.
    pub line: usize,
    /// Tagging: each word's line, for errors.
    pub word_lines: Vec<usize>,
}

/// The examples of a file, and what predicting on it needs to write back.
pub struct Items {
    /// The examples.
    pub items: Vec<Item>,
    /// The file's name, for messages.
    pub source: String,
    /// Text: the texts, for the predictions' TSV.
    pub texts: Vec<String>,
    /// Tagging: the sentences, written back with the predicted column.
    pub sentences: Vec<ConlluSentence>,
    /// CSV: the row (0-based, in the file's data rows) of each example's
    /// first prediction.
    pub first_row: Vec<usize>,
    /// CSV: each example's first row not predicted by an earlier one (a
    /// last per-step window may overlap the one before).
    pub first_new: Vec<usize>,
    /// Forecasting: the target column, untransformed, for the baselines.
    pub series: Vec<f64>,
}

/// Sequences of tokens held in memory (the server's and the Python
/// package's inputs) as items, one per sequence.
pub fn token_items(list: Vec<Vec<String>>, source: &str) -> Items {
    Items {
        items: list
            .into_iter()
            .enumerate()
            .map(|(i, tokens)| Item {
                steps: tokens.len(),
                word_lines: vec![i + 1; tokens.len()],
                tokens,
                line: i + 1,
                ..Default::default()
            })
            .collect(),
        source: source.into(),
        texts: Vec::new(),
        sentences: Vec::new(),
        first_row: Vec::new(),
        first_new: Vec::new(),
        series: Vec::new(),
    }
}

/// Which part of a CSV series to cut into windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every window whose predictions lie before the held-out rows.
    Train,
    /// Forecasts of the held-out rows: one window per `horizon` rows.
    Test,
}

/// Reads `paths` for `task` as `s` says.
/// With `labeled`, text lines must be `label<TAB>text`; without, a line
/// may be the text alone.
pub fn read_items(
    paths: &[PathBuf],
    task: SeqTask,
    s: &ReadSettings,
    part: Part,
    labeled: bool,
) -> anyhow::Result<Items> {
    let source = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Items {
        items: Vec::new(),
        source: source.clone(),
        texts: Vec::new(),
        sentences: Vec::new(),
        first_row: Vec::new(),
        first_new: Vec::new(),
        series: Vec::new(),
    };
    let one = || -> anyhow::Result<&Path> {
        match paths {
            [p] => Ok(p.as_path()),
            _ => bail!("expected one {} file, got {}", s.kind, paths.len()),
        }
    };
    match s.kind.as_str() {
        "text" | "class-files" => {
            if task == SeqTask::Tag {
                bail!("{source}: tagging reads CoNLL-U files (.conllu), not text lines");
            }
            let labeled = if s.kind == "text" {
                read_text_lines(one()?, s.encoding()?, labeled)?
            } else {
                read::read_class_files(paths, s.encoding()?)?
            };
            for l in labeled {
                let tokens = read::words(&l.text);
                if tokens.is_empty() {
                    bail!(
                        "{}:{}: the text has no words: expected at least one",
                        l.source,
                        l.line
                    );
                }
                // Regression on text reads `value<TAB>text`.
                let targets = match task {
                    SeqTask::Regress if !l.label.is_empty() => {
                        vec![l
                            .label
                            .trim()
                            .parse::<f32>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .with_context(|| {
                                format!(
                                    "{}:{}: target '{}': expected a number before the tab",
                                    l.source, l.line, l.label
                                )
                            })?]
                    }
                    _ => Vec::new(),
                };
                out.items.push(Item {
                    steps: tokens.len(),
                    tokens,
                    targets,
                    label: (!l.label.is_empty()).then_some(l.label),
                    line: l.line,
                    ..Default::default()
                });
                out.texts.push(l.text);
            }
        }
        "conllu" => {
            let column = s.column()?;
            let sentences = read::read_conllu(one()?)?;
            for st in &sentences {
                out.items.push(Item {
                    steps: st.words.len(),
                    tokens: st.words.iter().map(|w| w.form.clone()).collect(),
                    tags: st.words.iter().map(|w| w.tag(column).to_string()).collect(),
                    word_lines: st.words.iter().map(|w| w.line).collect(),
                    line: st.words.first().map_or(0, |w| w.line),
                    ..Default::default()
                });
            }
            out.sentences = sentences;
        }
        "ts" => {
            let ts = read::read_ts(one()?)?;
            series_items(&ts, task, s.patch.max(1), &mut out)?;
        }
        "csv" => csv_items(one()?, task, s, part, &mut out)?,
        other => bail!("unknown file kind '{other}'"),
    }
    if out.items.is_empty() {
        bail!("{source}: no examples");
    }
    Ok(out)
}

/// Text lines for classification: `label<TAB>text`, or for prediction
/// (not `labeled`) plain lines too (a line with a tab keeps what follows
/// the first tab).
fn read_text_lines(path: &Path, enc: Encoding, labeled: bool) -> anyhow::Result<Vec<Labeled>> {
    let text = read::read_decoded(path, enc)?;
    let source = path.display().to_string();
    if labeled {
        return Ok(read::parse_label_tab_text(&text, &source)?);
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Labeled {
            label: String::new(),
            text: l.split_once('\t').map_or(l, |(_, t)| t).trim().to_string(),
            source: source.clone(),
            line: i + 1,
        })
        .collect())
}

pub fn series_items(
    ts: &TsData,
    task: SeqTask,
    patch: usize,
    out: &mut Items,
) -> anyhow::Result<()> {
    for (i, s) in ts.series.iter().enumerate() {
        let c = s.channels;
        let steps = s.steps.div_ceil(patch);
        let features = (0..steps * patch)
            .flat_map(|t| {
                let t = t.min(s.steps - 1);
                s.values[t * c..][..c].iter().copied()
            })
            .collect();
        let mut it = Item {
            steps,
            features,
            line: i + 1,
            ..Default::default()
        };
        match (&ts.target, task) {
            (TsTarget::Class(l), _) => it.label = Some(l[i].clone()),
            (TsTarget::Value(v), SeqTask::Regress) => it.targets = vec![v[i] as f32],
            _ => {}
        }
        out.items.push(it);
    }
    if task == SeqTask::Tag {
        bail!(
            "{}: tagging reads CoNLL-U files, not .ts series",
            out.source
        );
    }
    Ok(())
}

/// Windows of a CSV table.
fn csv_items(
    path: &Path,
    task: SeqTask,
    s: &ReadSettings,
    part: Part,
    out: &mut Items,
) -> anyhow::Result<()> {
    if task != SeqTask::Regress {
        bail!("{}: CSV series are for --task regress", path.display());
    }
    let source = path.display().to_string();
    let table = read::read_csv_table(path)?;
    let target_name = s
        .target
        .as_deref()
        .context("CSV data needs --target, the column to predict")?;
    let target: Vec<f64> = table.column(target_name, &source)?.to_vec();
    let names: Vec<&str> = if s.features.is_empty() {
        vec![target_name]
    } else {
        s.features.iter().map(String::as_str).collect()
    };
    let mut cols = Vec::new();
    for n in &names {
        cols.push(table.column(n, &source)?.to_vec());
    }
    let t_idx = table.column_index(target_name, &source)?;
    let target_in = names
        .iter()
        .position(|n| table.column_index(n, &source).ok() == Some(t_idx));
    if s.horizon == 0 && target_in.is_some() {
        bail!("--horizon 0 predicts the target at every step from the features, so --features must not include the target '{target_name}'");
    }
    if s.horizon == 0 && s.relative {
        bail!("--relative measures values from the window's last target, which --horizon 0 predicts: use one or the other");
    }
    let tr = |v: f64, line: usize| -> anyhow::Result<f64> {
        if s.log {
            if v <= 0.0 {
                bail!("{source}:{line}: --log needs positive values, got {v}");
            }
            Ok(v.ln())
        } else {
            Ok(v)
        }
    };
    let rows = target.len();
    let (w, h) = (s.window.max(1), s.horizon);
    let c = cols.len();
    if s.holdout >= rows {
        bail!(
            "{source}: --holdout {} leaves nothing of its {rows} rows to train on",
            s.holdout
        );
    }
    let end = rows - s.holdout;
    let span = w + h;
    // Windows as (start, first new row): training windows end before the
    // held-out rows; test windows forecast them, `horizon` at a time, or
    // (per step) cover them with windows of `window` rows, the last moved
    // back to end at the last row, its rows already predicted skipped.
    let starts: Vec<(usize, usize)> = match part {
        Part::Train => {
            if end < span {
                bail!("{source}: {end} rows before the held-out ones, but a window needs {span} (--window {w} + --horizon {h})");
            }
            (0..=end - span).map(|st| (st, st + w)).collect()
        }
        Part::Test => {
            if s.holdout == 0 {
                bail!(
                    "{source}: nothing is held out: give --holdout N to forecast the last N rows"
                );
            }
            if rows < span {
                bail!("{source}: {rows} rows, but a window needs {span} (--window {w} + --horizon {h})");
            }
            if h == 0 {
                let mut out = Vec::new();
                let mut covered = end;
                while covered < rows {
                    let st = covered.min(rows - w);
                    out.push((st, covered));
                    covered = st + w;
                }
                out
            } else {
                (end..rows)
                    .step_by(h)
                    .filter(|&o| o >= w)
                    .map(|o| (o - w, o))
                    .collect()
            }
        }
    };
    // Data rows start on line 2 (after the header).
    let line = |r: usize| r + 2;
    for (st, first_new) in starts {
        let base = if s.relative {
            tr(target[st + w - 1], line(st + w - 1))?
        } else {
            0.0
        };
        let mut it = Item {
            steps: w,
            base,
            line: line(st),
            ..Default::default()
        };
        for r in st..st + w {
            for (j, col) in cols.iter().enumerate() {
                let mut v = col[r];
                if Some(j) == target_in {
                    v = tr(v, line(r))? - base;
                }
                it.features.push(v as f32);
            }
        }
        if h == 0 {
            for r in st..st + w {
                it.step_targets
                    .push((tr(target[r], line(r))? - base) as f32);
            }
            out.first_row.push(st);
        } else {
            for r in st + w..(st + w + h).min(rows) {
                it.targets.push((tr(target[r], line(r))? - base) as f32);
            }
            // A last forecast past the file's end predicts what it can check.
            it.targets.resize(h, f32::NAN);
            out.first_row.push(st + w);
        }
        out.first_new.push(first_new);
        debug_assert_eq!(it.features.len(), w * c);
        out.items.push(it);
    }
    out.series = target;
    Ok(())
}

/// Fits a model's vocabularies, labels and statistics on training items.
/// Returns each word id's training count (for word dropout).
pub fn fit(
    meta: &mut SeqMeta,
    items: &[Item],
    task: SeqTask,
    s: &ReadSettings,
    chars: bool,
    min_count: usize,
) -> Vec<usize> {
    let mut counts = Vec::new();
    if items.iter().any(|i| !i.tokens.is_empty()) {
        counts = meta.fit_words(items.iter().map(|i| &i.tokens[..]), min_count, s.lowercase);
        if chars {
            meta.fit_chars(items.iter().map(|i| &i.tokens[..]));
        }
    }
    match task {
        SeqTask::Classify => meta.fit_labels(items.iter().filter_map(|i| i.label.as_deref())),
        SeqTask::Tag => {
            meta.fit_labels(items.iter().flat_map(|i| i.tags.iter().map(String::as_str)))
        }
        SeqTask::Regress => {}
    }
    if let Some(first) = items.first() {
        let c = first.features.len() / first.steps.max(1);
        if c > 0 {
            (meta.feature_mean, meta.feature_std) =
                SeqMeta::column_stats(items.iter().map(|i| &i.features[..]), c);
        }
        let (o_seq, o_step) = (
            first.targets.len(),
            first.step_targets.len() / first.steps.max(1),
        );
        if o_seq > 0 {
            (meta.target_mean, meta.target_std) =
                SeqMeta::column_stats(items.iter().map(|i| &i.targets[..]), o_seq);
        } else if o_step > 0 {
            (meta.target_mean, meta.target_std) =
                SeqMeta::column_stats(items.iter().map(|i| &i.step_targets[..]), o_step);
        }
    }
    counts
}

/// Encodes items with a model's vocabularies; `labels` says whether the
/// targets are needed (training, evaluation) or not (prediction).
pub fn encode(
    items: &[Item],
    enc: &mut SeqEncoder,
    task: SeqTask,
    chars: bool,
    labels: bool,
    source: &str,
) -> anyhow::Result<Vec<SeqExample>> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let mut e = SeqExample {
            steps: it.steps,
            features: it.features.clone(),
            ..Default::default()
        };
        if !it.tokens.is_empty() {
            e.tokens = enc.words(&it.tokens);
            if chars {
                e.spellings = enc.spellings(&it.tokens);
            }
        }
        match task {
            SeqTask::Classify if labels => {
                let l = it.label.as_deref().with_context(|| {
                    format!("{source}:{}: no label: expected `label<TAB>text`", it.line)
                })?;
                e.label = enc.label(l, source, it.line)?;
            }
            SeqTask::Tag => {
                e.tags = if labels {
                    it.tags
                        .iter()
                        .enumerate()
                        .map(|(k, t)| {
                            enc.label(t, source, it.word_lines.get(k).copied().unwrap_or(it.line))
                        })
                        .collect::<recur::Result<_>>()?
                } else {
                    vec![0; it.steps]
                };
            }
            SeqTask::Regress => {
                if labels && it.targets.is_empty() && it.step_targets.is_empty() {
                    bail!(
                        "{source}:{}: no target value: expected a numeric target",
                        it.line
                    );
                }
                e.targets = it
                    .targets
                    .iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect();
                e.step_targets = it.step_targets.clone();
            }
            _ => {}
        }
        out.push(e);
    }
    Ok(out)
}
