//! `recur compare`: the lectures' story in numbers. On one split of the
//! user's text, within one time budget: n-gram models (Kneser–Ney) of
//! several orders, the fixed-window neural model, an Elman RNN, a GRU and
//! an LSTM, with their held-out loss, parameters and training time, as a
//! table, an SVG chart and JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use recur::data::{read_text, split_train_val, tokenize, Level, LmData, Vocab};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::model::ngram::{Ngram, NgramConfig};
use recur::model::window::{WindowConfig, WindowLm};
use recur::optim::OptimizerKind;
use recur::plot::bar_plot;
use recur::quant::Precision;
use recur::train::{Budget, Data, Model, Quiet, ScheduleKind, TrainConfig, Trainer};
use recur::CellKind;

use crate::CliResult;

/// `recur compare`'s options.
#[derive(Args)]
pub struct CompareArgs {
    /// The text (UTF-8); the last --val-fraction is held out for every model.
    #[arg(long)]
    pub data: PathBuf,
    /// Minutes for the whole comparison. The n-grams take seconds; of what they leave, the
    /// fixed-window model gets 15%, the Elman RNN 25%, the GRU 20% and the LSTM 40%. A neural
    /// model stops after 3 evaluations without improvement and leaves its time to the next.
    #[arg(long, default_value_t = 15.0)]
    pub time: f64,
    /// char or word (whitespace-separated, <eos> per line).
    #[arg(long, default_value = "char")]
    pub level: String,
    /// Word level: words seen fewer times become <unk>, for every model [default: 3 at word level].
    #[arg(long)]
    pub min_count: Option<usize>,
    /// The n-gram orders; the best on the held-out part is marked.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6,7,8")]
    pub orders: Vec<usize>,
    /// Tokens the fixed-window model sees [default: 16 characters, 3 words].
    #[arg(long)]
    pub context: Option<usize>,
    /// Hidden units of the neural models.
    #[arg(long, default_value_t = 512)]
    pub hidden: usize,
    /// Embedding width of the neural models [default: 64 for characters, 128 for words].
    #[arg(long)]
    pub embed: Option<usize>,
    /// Dropout of the recurrent nets (embeddings and output) [default: 0 for characters, 0.5 for words].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Dropout of the fixed-window model's hidden layer [default: 0.2 for characters, 0.5 for words].
    #[arg(long)]
    pub window_dropout: Option<f64>,
    /// Dropout of the fixed-window model's embeddings [default: 0 for characters, 0.2 for words].
    #[arg(long)]
    pub window_embed_dropout: Option<f64>,
    /// Products of the neural models' training: f32, or bf16 (with f32
    /// master weights; fast where the CPU has AVX512-BF16).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Adam's learning rate for the neural models [default: 0.002 for characters, 0.001 for words].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Batch B of the neural models [default: 64 for characters, 32 for words].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Steps T of truncated BPTT (and of the window model's batches) [default: 100 for characters, 35 for words].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Held-out fraction.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Seed of every model.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where compare.svg and compare.json go.
    #[arg(long, default_value = "compare")]
    pub out: PathBuf,
    /// Print one JSON object per model instead of the table.
    #[arg(long)]
    pub json: bool,
}

struct Row {
    model: String,
    /// The n-gram with the lowest held-out loss.
    best: bool,
    val_loss: f64,
    params: usize,
    seconds: f64,
}

/// The settings that depend on the level, with the user's choices in.
struct Settings {
    min_count: usize,
    context: usize,
    embed: usize,
    dropout: f64,
    window_dropout: f64,
    window_embed_dropout: f64,
    batch: usize,
    seq_len: usize,
    lr: f32,
}

impl Settings {
    /// Characters: no vocabulary to thin, a window of 16, light dropout.
    /// Words: the rare words as <unk> (a vocabulary of 7,034 on
    /// tinyshakespeare), a window of 3 (the n-grams gain nothing past
    /// trigrams there), and the dropout small word corpora need.
    fn new(a: &CompareArgs, level: Level) -> anyhow::Result<Settings> {
        let word = level == Level::Word;
        let pick =
            |given: Option<f64>, char: f64, w: f64| given.unwrap_or(if word { w } else { char });
        let s = Settings {
            min_count: a.min_count.unwrap_or(if word { 3 } else { 1 }),
            context: a.context.unwrap_or(if word { 3 } else { 16 }),
            embed: a.embed.unwrap_or(if word { 128 } else { 64 }),
            dropout: pick(a.dropout, 0.0, 0.5),
            window_dropout: pick(a.window_dropout, 0.2, 0.5),
            window_embed_dropout: pick(a.window_embed_dropout, 0.0, 0.2),
            batch: a.batch.unwrap_or(if word { 32 } else { 64 }),
            seq_len: a.seq_len.unwrap_or(if word { 35 } else { 100 }),
            lr: a.lr.unwrap_or(if word { 1e-3 } else { 2e-3 }),
        };
        if !(s.lr.is_finite() && s.lr > 0.0) {
            bail!("--lr: expected a learning rate > 0, got {}", s.lr);
        }
        for (flag, p) in [
            ("--dropout", s.dropout),
            ("--window-dropout", s.window_dropout),
            ("--window-embed-dropout", s.window_embed_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                bail!("{flag}: expected a probability in [0, 1), got {p}");
            }
        }
        if level == Level::Char && a.min_count.is_some_and(|m| m > 1) {
            bail!("--min-count is for --level word: every character is kept");
        }
        Ok(s)
    }
}

/// Evaluations without a better held-out loss after which a neural model
/// stops, leaving the rest of its time to the models after it.
const PATIENCE: u32 = 3;

/// Trains `model` on `data` for at most `minutes` with Adam at `lr` (clip
/// 5, the rate halved after every evaluation that does not improve on the
/// best, stopping after [`PATIENCE`] such) and its products in
/// `precision`, and gives its best held-out loss.
fn neural<M: Model<Batch = recur::data::LmBatch>>(
    model: M,
    data: LmData,
    minutes: f64,
    lr: f32,
    seed: u64,
    precision: Precision,
) -> anyhow::Result<(f64, usize)> {
    let params = model.store().len();
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, lr);
    cfg.schedule = ScheduleKind::Plateau;
    cfg.patience = PATIENCE;
    cfg.clip_norm = 5.0;
    cfg.seed = seed;
    cfg.precision = precision;
    let spe = data.steps_per_epoch().unwrap_or(1) as u64;
    let mut t = Trainer::new(model, data, cfg)?;
    t.run(
        Budget::Minutes(minutes),
        spe.clamp(1, 200),
        None,
        &mut Quiet,
    )?;
    let last = t.evaluate()?.context("no held-out data")?.loss;
    Ok((t.progress().best_val.map_or(last, |b| b.min(last)), params))
}

/// `recur compare`.
pub fn compare(a: CompareArgs) -> CliResult {
    if !(a.time.is_finite() && a.time > 0.0) {
        bail!("--time: expected minutes > 0, got {}", a.time);
    }
    if a.orders.is_empty() || a.orders.contains(&0) {
        bail!("--orders: expected orders of at least 1, such as 2,3,5");
    }
    let precision = match crate::parse_precision(&a.precision)? {
        Precision::Int8 => bail!("--precision: training runs in f32 or bf16, not int8"),
        p => p,
    };
    let level = Level::from_name(&a.level)
        .with_context(|| format!("--level: expected char or word, got '{}'", a.level))?;
    let set = Settings::new(&a, level)?;
    let text = read_text(&a.data)?;
    let source = a.data.display().to_string();
    let tokens = tokenize(&text, level);
    let vocab = Vocab::build(level, &tokens, set.min_count)?;
    let ids = vocab.encode(&tokens, &source)?;
    let (train, val) = split_train_val(&ids, a.val_fraction);
    if val.len() < 2 {
        bail!(
            "{source}: the held-out part has {} tokens; expected at least 2 (raise --val-fraction)",
            val.len()
        );
    }
    let v = vocab.len();
    let started = Instant::now();
    let mut rows = Vec::new();
    for &order in &a.orders {
        let t0 = Instant::now();
        let ng = Ngram::fit(
            NgramConfig {
                order,
                vocab_size: v,
            },
            train,
        )?;
        // Predictions continue from the training text, as the neural
        // models' held-out stream does from its own start.
        let (ce, _) = ng.cross_entropy(val)?;
        rows.push(Row {
            model: format!("{order}-gram (Kneser-Ney)"),
            best: false,
            val_loss: ce,
            params: ng.num_ngrams(),
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    // The best n-gram, which the neural models are measured against.
    let best = (0..rows.len())
        .min_by(|&i, &j| rows[i].val_loss.total_cmp(&rows[j].val_loss))
        .expect("at least one order");
    rows[best].best = true;
    // Of the time left: window, Elman, GRU, LSTM, in these proportions.
    // The window model overfits soonest; the LSTM, the one closest to the
    // n-grams on characters, gains most from more. A model that stops
    // early leaves its time to those after it.
    let weights = [0.15, 0.25, 0.20, 0.40];
    let share = |i: usize| {
        let left = (a.time - started.elapsed().as_secs_f64() / 60.0).max(0.05);
        left * weights[i] / weights[i..].iter().sum::<f64>()
    };
    let data = || {
        LmData::new(
            &ids,
            vocab.clone(),
            set.batch,
            set.seq_len,
            a.val_fraction,
            &source,
        )
    };
    let t0 = Instant::now();
    let window = WindowLm::<f32>::new(
        WindowConfig {
            vocab_size: v,
            context: set.context,
            embed: set.embed,
            hidden: a.hidden,
            dropout: set.window_dropout,
            embed_dropout: set.window_embed_dropout,
        },
        a.seed,
    )
    .context("--context, --embed, --hidden")?;
    let (loss, params) = neural(window, data()?, share(0), set.lr, a.seed, precision)?;
    rows.push(Row {
        model: format!("fixed window (K = {})", set.context),
        best: false,
        val_loss: loss,
        params,
        seconds: t0.elapsed().as_secs_f64(),
    });
    for (i, name, cell) in [
        (1, "Elman RNN (tanh)", CellKind::RnnTanh),
        (2, "GRU", CellKind::Gru),
        (3, "LSTM", CellKind::Lstm),
    ] {
        let t0 = Instant::now();
        let m = LanguageModel::new(
            LmConfig {
                cell,
                vocab_size: v,
                embed: set.embed,
                hidden: a.hidden,
                layers: 1,
                dropout: set.dropout,
            },
            a.seed,
        )?;
        let (loss, params) = neural(m, data()?, share(i), set.lr, a.seed, precision)?;
        rows.push(Row {
            model: name.into(),
            best: false,
            val_loss: loss,
            params,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let unit = if level == Level::Char {
        "bits per character"
    } else {
        "perplexity"
    };
    let shown = |l: f64| {
        if level == Level::Char {
            l / std::f64::consts::LN_2
        } else {
            l.exp()
        }
    };
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut j = serde_json::json!({"model": r.model, "val_loss": r.val_loss, "params": r.params, "seconds": r.seconds});
            if r.best {
                j["best_ngram"] = true.into();
            }
            j
        })
        .collect();
    recur::checkpoint::write_atomic(
        &a.out.join("compare.json"),
        serde_json::Value::from(json.clone()).to_string().as_bytes(),
    )?;
    let labels: Vec<String> = rows.iter().map(|r| r.model.clone()).collect();
    let values: Vec<f64> = rows.iter().map(|r| shown(r.val_loss)).collect();
    bar_plot(
        &a.out.join("compare.svg"),
        &format!(
            "held-out {unit} on {} ({} tokens, {:.0} min)",
            a.data.display(),
            ids.len(),
            a.time
        ),
        &labels,
        &values,
        unit,
    )?;
    if a.json {
        for j in json {
            println!("{j}");
        }
    } else {
        println!(
            "{:<24} {:>10} {:>12} {:>12} {:>9}",
            "model",
            "val loss",
            unit.split(' ').next().unwrap_or(unit),
            "parameters",
            "seconds"
        );
        for r in &rows {
            println!(
                "{:<24} {:>10.4} {:>12.4} {:>12} {:>9.1}",
                format!("{}{}", r.model, if r.best { " *" } else { "" }),
                r.val_loss,
                shown(r.val_loss),
                r.params,
                r.seconds
            );
        }
        println!(
            "(* the best n-gram; an n-gram's parameters are its stored n-grams) wrote {}/compare.svg and compare.json",
            a.out.display()
        );
    }
    Ok(())
}
