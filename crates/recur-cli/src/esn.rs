//! `recur esn`: echo state networks on a CSV time series.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use clap::{Args, Subcommand};
use recur::checkpoint::write_atomic;
use recur::data::{read_column, Column};
use recur::esn::{Esn, EsnConfig};
use recur::metrics::{nrmse, r2};

use crate::CliResult;
use recur::plot::{line_plot, Series};

#[derive(Subcommand)]
pub enum EsnCommand {
    /// Build a reservoir and fit its ridge-regression readout.
    Fit(FitArgs),
    /// Predict with a fitted model: H steps ahead over a file, or closed loop.
    Predict(PredictArgs),
}

#[derive(Args)]
pub struct FitArgs {
    /// CSV file with the series.
    #[arg(long, value_name = "FILE.csv")]
    data: PathBuf,
    /// Column name or 0-based index (default: the last column).
    #[arg(long)]
    column: Option<String>,
    /// Reservoir units N.
    #[arg(long, default_value_t = 100)]
    units: usize,
    /// Density of the recurrent matrix W.
    #[arg(long, default_value_t = 0.1)]
    connectivity: f64,
    /// Largest eigenvalue magnitude W is scaled to.
    #[arg(long, default_value_t = 1.25, allow_negative_numbers = true)]
    spectral_radius: f64,
    /// Leak rate in (0, 1].
    #[arg(long, default_value_t = 0.3)]
    leak: f64,
    /// Scale of the input weights.
    #[arg(long, default_value_t = 1.0)]
    input_scaling: f64,
    /// Density of the input weights.
    #[arg(long, default_value_t = 0.2)]
    input_connectivity: f64,
    /// Scale of the bias.
    #[arg(long, default_value_t = 0.0)]
    bias: f64,
    /// Feed the previous output back into the reservoir.
    #[arg(long)]
    feedback: bool,
    /// Leave the input out of the readout's features (state and constant only, as ReservoirPy's default).
    #[arg(long)]
    no_input_readout: bool,
    /// Ridge λ.
    #[arg(long, default_value_t = 1e-8)]
    ridge: f64,
    /// Leading steps left out of the fit.
    #[arg(long, default_value_t = 100)]
    washout: usize,
    /// Predict u_{t+H}.
    #[arg(long, default_value_t = 1)]
    horizon: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of the series, from its end, held out for the reported NRMSE and R².
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Where to write the model.
    #[arg(long, value_name = "MODEL.safetensors")]
    out: PathBuf,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PredictArgs {
    /// A fitted model.
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    /// CSV file with the series.
    #[arg(long, value_name = "FILE.csv")]
    data: PathBuf,
    /// Column name or 0-based index (default: the last column).
    #[arg(long)]
    column: Option<String>,
    /// Points that drive the reservoir before predictions are written.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Run closed loop for K steps after the warm-up instead.
    #[arg(long, value_name = "K")]
    generate: Option<usize>,
    /// Where to write step,prediction rows (default: standard output).
    #[arg(long, value_name = "PRED.csv")]
    out: Option<PathBuf>,
}

pub fn run(cmd: EsnCommand) -> CliResult {
    match cmd {
        EsnCommand::Fit(a) => fit(a),
        EsnCommand::Predict(a) => predict(a),
    }
}

fn column(c: &Option<String>) -> Column {
    c.as_deref().map_or(Column::Last, Column::parse)
}

fn plot_dir(out: &Path) -> PathBuf {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn fit(a: FitArgs) -> CliResult {
    let started = Instant::now();
    let (name, series) = read_column(&a.data, &column(&a.column))?;
    if !(0.0..1.0).contains(&a.test_fraction) {
        bail!("--test-fraction must be in [0, 1), got {}", a.test_fraction);
    }
    let n_test = (series.len() as f64 * a.test_fraction).round() as usize;
    let n_train = series.len() - n_test;
    if n_train < a.washout + a.horizon + 1 {
        bail!(
            "{}: column '{name}' has {} rows ({n_train} for training), fewer than washout {} + horizon {} + 1",
            a.data.display(),
            series.len(),
            a.washout,
            a.horizon
        );
    }
    let cfg = EsnConfig {
        units: a.units,
        connectivity: a.connectivity,
        spectral_radius: a.spectral_radius,
        leak: a.leak,
        input_scaling: a.input_scaling,
        input_connectivity: a.input_connectivity,
        bias: a.bias,
        feedback: a.feedback,
        feedback_scaling: 1.0,
        ridge: a.ridge,
        washout: a.washout,
        horizon: a.horizon,
        seed: a.seed,
        input_in_readout: !a.no_input_readout,
    };
    let mut esn = Esn::new(cfg, 1, 1)?;
    esn.fit(&series[..n_train])?;
    esn.save(&a.out)?;
    // Test: run the whole series from a zero state, score the predictions
    // whose targets lie in the held-out tail.
    let h = a.horizon;
    let mut metrics = serde_json::json!({"train_rows": n_train, "test_rows": n_test, "units": a.units, "horizon": h});
    if n_test > h {
        let pred = esn.predict_ahead(&series);
        let first = n_train.max(a.washout);
        let idx: Vec<usize> = (first..series.len() - h).collect();
        let truth: Vec<f64> = idx.iter().map(|&t| series[t + h]).collect();
        let p: Vec<f64> = idx.iter().map(|&t| pred[t]).collect();
        let (e, r) = (nrmse(&truth, &p), r2(&truth, &p));
        metrics["test_nrmse"] = e.into();
        metrics["test_r2"] = r.into();
        let pts = |v: &[f64]| {
            idx.iter()
                .zip(v)
                .map(|(&t, &y)| ((t + h) as f64, y))
                .collect::<Vec<_>>()
        };
        line_plot(
            &plot_dir(&a.out).join("prediction.svg"),
            &format!("recur esn: {h}-step-ahead prediction on the test tail (NRMSE {e:.2e})"),
            "step",
            &name,
            &[
                Series {
                    label: "truth",
                    points: pts(&truth),
                    color: (31, 119, 180),
                },
                Series {
                    label: "prediction",
                    points: pts(&p),
                    color: (214, 39, 40),
                },
            ],
        )?;
    }
    metrics["seconds"] = started.elapsed().as_secs_f64().into();
    if a.json {
        println!("{metrics}");
    } else {
        println!(
            "fitted a {}-unit reservoir on {n_train} rows of '{name}' → {}",
            a.units,
            a.out.display()
        );
        if let (Some(e), Some(r)) = (metrics["test_nrmse"].as_f64(), metrics["test_r2"].as_f64()) {
            println!("test ({n_test} rows, {h} step(s) ahead): NRMSE {e:.3e}  R² {r:.6}");
        }
    }
    Ok(())
}

fn predict(a: PredictArgs) -> CliResult {
    let mut esn = Esn::load(&a.model)?;
    let (name, series) = read_column(&a.data, &column(&a.column))?;
    let h = esn.config().horizon;
    let mut rows: Vec<(usize, f64)> = Vec::new();
    let mut truth: Vec<(f64, f64)> = Vec::new();
    match a.generate {
        Some(k) => {
            if a.warmup == 0 || a.warmup > series.len() {
                bail!(
                    "--warmup must be between 1 and the {} rows of {}",
                    series.len(),
                    a.data.display()
                );
            }
            let gen = esn.generate(&series[..a.warmup], k)?;
            rows.extend(gen.iter().enumerate().map(|(i, &v)| (a.warmup + i, v)));
            truth.extend(
                series
                    .iter()
                    .enumerate()
                    .skip(a.warmup)
                    .take(k)
                    .map(|(i, &v)| (i as f64, v)),
            );
        }
        None => {
            if a.warmup >= series.len() {
                bail!(
                    "--warmup {} leaves none of the {} rows of {} to predict",
                    a.warmup,
                    series.len(),
                    a.data.display()
                );
            }
            let pred = esn.predict_ahead(&series);
            rows.extend((a.warmup..series.len()).map(|t| (t + h, pred[t])));
            truth.extend(
                series
                    .iter()
                    .enumerate()
                    .skip(a.warmup + h)
                    .map(|(i, &v)| (i as f64, v)),
            );
        }
    }
    let mut csv = String::from("step,prediction\n");
    for (s, v) in &rows {
        csv += &format!("{s},{v}\n");
    }
    match &a.out {
        Some(p) => {
            write_atomic(p, csv.as_bytes())?;
            line_plot(
                &plot_dir(p).join("prediction.svg"),
                "recur esn: truth and prediction",
                "step",
                &name,
                &[
                    Series {
                        label: "truth",
                        points: truth,
                        color: (31, 119, 180),
                    },
                    Series {
                        label: "prediction",
                        points: rows.iter().map(|&(s, v)| (s as f64, v)).collect(),
                        color: (214, 39, 40),
                    },
                ],
            )?;
        }
        None => print!("{csv}"),
    }
    Ok(())
}
