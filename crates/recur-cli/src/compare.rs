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
use recur::train::{Budget, Data, Model, Quiet, TrainConfig, Trainer};
use recur::CellKind;

use crate::CliResult;

/// `recur compare`'s options.
#[derive(Args)]
pub struct CompareArgs {
    /// The text (UTF-8); the last --val-fraction is held out for every model.
    #[arg(long)]
    pub data: PathBuf,
    /// Minutes for the whole comparison. The n-grams take seconds; of what they leave, the
    /// fixed-window model gets 15%, the Elman RNN 25%, the GRU 20% and the LSTM 40%.
    #[arg(long, default_value_t = 15.0)]
    pub time: f64,
    /// char or word.
    #[arg(long, default_value = "char")]
    pub level: String,
    /// The n-gram orders; the best on the held-out part is marked.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6,7,8")]
    pub orders: Vec<usize>,
    /// Tokens the fixed-window model sees.
    #[arg(long, default_value_t = 16)]
    pub context: usize,
    /// Hidden units of the neural models.
    #[arg(long, default_value_t = 512)]
    pub hidden: usize,
    /// Embedding width of the neural models.
    #[arg(long, default_value_t = 64)]
    pub embed: usize,
    /// Dropout of the fixed-window model's hidden layer.
    #[arg(long, default_value_t = 0.2)]
    pub window_dropout: f64,
    /// Products of the recurrent nets' training: f32, or bf16 (with f32
    /// master weights; fast where the CPU has AVX512-BF16). The window
    /// model stays f32.
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Batch B of the neural models.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Steps T of truncated BPTT (and of the window model's batches).
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
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

/// Trains `model` on `data` for `minutes` with Adam (lr 2e-3, clip 5) and
/// its products in `precision`, and gives its best held-out loss.
fn neural<M: Model<Batch = recur::data::LmBatch>>(
    model: M,
    data: LmData,
    minutes: f64,
    seed: u64,
    precision: Precision,
) -> anyhow::Result<(f64, usize)> {
    let params = model.store().len();
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, 2e-3);
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
    if !(0.0..1.0).contains(&a.window_dropout) {
        bail!(
            "--window-dropout: expected a probability in [0, 1), got {}",
            a.window_dropout
        );
    }
    let precision = match crate::parse_precision(&a.precision)? {
        Precision::Int8 => bail!("--precision: training runs in f32 or bf16, not int8"),
        p => p,
    };
    let level = Level::from_name(&a.level)
        .with_context(|| format!("--level: expected char or word, got '{}'", a.level))?;
    let text = read_text(&a.data)?;
    let source = a.data.display().to_string();
    let tokens = tokenize(&text, level);
    let vocab = Vocab::build(level, &tokens, 1)?;
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
    // Of the time left: window, Elman, GRU, LSTM. The window model
    // overfits within its share (even with dropout); the LSTM, the one
    // closest to the n-grams, gains most from more.
    let left = (a.time - started.elapsed().as_secs_f64() / 60.0).max(0.05);
    let share = [0.15, 0.25, 0.20, 0.40].map(|f| f * left);
    let data = || {
        LmData::new(
            &ids,
            vocab.clone(),
            a.batch,
            a.seq_len,
            a.val_fraction,
            &source,
        )
    };
    let t0 = Instant::now();
    let window = WindowLm::<f32>::new(
        WindowConfig {
            vocab_size: v,
            context: a.context,
            embed: a.embed,
            hidden: a.hidden,
            dropout: a.window_dropout,
        },
        a.seed,
    )
    .context("--context, --embed, --hidden, --window-dropout")?;
    let (loss, params) = neural(window, data()?, share[0], a.seed, Precision::F32)?;
    rows.push(Row {
        model: format!("fixed window (K = {})", a.context),
        best: false,
        val_loss: loss,
        params,
        seconds: t0.elapsed().as_secs_f64(),
    });
    for (name, cell, minutes) in [
        ("Elman RNN (tanh)", CellKind::RnnTanh, share[1]),
        ("GRU", CellKind::Gru, share[2]),
        ("LSTM", CellKind::Lstm, share[3]),
    ] {
        let t0 = Instant::now();
        let m = LanguageModel::new(
            LmConfig {
                cell,
                vocab_size: v,
                embed: a.embed,
                hidden: a.hidden,
                layers: 1,
                dropout: 0.0,
            },
            a.seed,
        )?;
        let (loss, params) = neural(m, data()?, minutes, a.seed, precision)?;
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
