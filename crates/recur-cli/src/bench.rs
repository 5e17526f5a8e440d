//! `recur bench`: throughput of the recurrent layer against the GEMM rate.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rand::SeedableRng;
use recur::data::LmBatch;
use recur::gemm::{gemm, set_threads, threads, Trans};
use recur::model::lm::{LanguageModel, LmConfig, LmWorkspace};
use recur::optim::OptimizerKind;
use recur::quant::Precision;
use recur::sample::{generate, Decoding};
use recur::train::{Data, TrainConfig, Trainer};
use recur::{CellKind, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};

/// `recur bench`: the language-model configs of `../shared/bench/pytorch_baseline.py`,
/// or `recur bench layer`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Configs to run (default: all): char-lstm-128x2, char-lstm-512x2, char-gru-512x2,
    /// char-rnn-512x2, word-lstm-200x2, word-lstm-650x2, char-lstm-1024x1.
    #[arg(long = "config", value_name = "NAME")]
    configs: Vec<String>,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Timed training and inference steps per config, after 2 warm-up steps; the median is reported.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Print one JSON object per config.
    #[arg(long)]
    json: bool,
    /// Precision of inference, generation and (bf16 only) training, as the PyTorch
    /// baseline's --precision: its int8 is quantize_dynamic (training in f32), its bf16 autocast.
    #[command(flatten)]
    precision: crate::PrecisionArg,
}

/// (name, cell, vocab, embed, hidden, layers, batch, seq), as pytorch_baseline.py.
type Config = (
    &'static str,
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const CONFIGS: [Config; 7] = [
    ("char-lstm-128x2", "lstm", 65, 128, 128, 2, 50, 50),
    ("char-lstm-512x2", "lstm", 65, 512, 512, 2, 64, 100),
    ("char-gru-512x2", "gru", 65, 512, 512, 2, 64, 100),
    ("char-rnn-512x2", "rnn-tanh", 65, 512, 512, 2, 64, 100),
    ("word-lstm-200x2", "lstm", 10000, 200, 200, 2, 20, 20),
    ("word-lstm-650x2", "lstm", 10000, 650, 650, 2, 20, 35),
    ("char-lstm-1024x1", "lstm", 65, 1024, 1024, 1, 32, 100),
];

pub fn run_args(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(cmd) = a.command {
        return run(cmd);
    }
    set_threads(a.threads);
    let precision = a.precision.get()?;
    for name in &a.configs {
        if !CONFIGS.iter().any(|c| c.0 == name) {
            let names: Vec<&str> = CONFIGS.iter().map(|c| c.0).collect();
            bail!(
                "--config: unknown config '{name}', expected one of {}",
                names.join(", ")
            );
        }
    }
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    for &(name, cell, v, e, h, l, b, t) in &CONFIGS {
        if !a.configs.is_empty() && !a.configs.iter().any(|c| c == name) {
            continue;
        }
        let cfg = LmConfig {
            cell: CellKind::from_name(cell).expect("known cell"),
            vocab_size: v,
            embed: e,
            hidden: h,
            layers: l,
            dropout: 0.0,
        };
        let model = LanguageModel::new(cfg, 0)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        use rand::Rng;
        let mut ids =
            || -> Vec<u32> { (0..t * b).map(|_| rng.random_range(0..v as u32)).collect() };
        let batch = LmBatch {
            inputs: ids(),
            targets: ids(),
            steps: t,
            batch: b,
        };
        // The same update `recur train` makes: Adam, clip-norm 5; bf16
        // trains in bf16, int8 (inference only) in f32, as the baseline.
        let mut tc = TrainConfig::new(OptimizerKind::Adam, 2e-3);
        tc.clip_norm = 5.0;
        if precision == Precision::Bf16 {
            tc.precision = precision;
        }
        let mut trainer = Trainer::new(model, OneBatch(batch), tc)?;
        let mut train_step = || {
            trainer.train_step().unwrap();
        };
        for _ in 0..2 {
            train_step();
        }
        let t_train = median((0..a.steps).map(|_| timed(&mut train_step)).collect());
        let mut packed = trainer.model.clone();
        packed.set_precision(precision)?;
        let model = &packed;
        let x = &trainer.data.0.inputs;
        let mut iws = LmWorkspace::new();
        let mut infer = || {
            iws.reset_state();
            model.forward(&mut iws, x, t, b, None).unwrap();
        };
        for _ in 0..2 {
            infer();
        }
        let t_infer = median((0..a.steps).map(|_| timed(&mut infer)).collect());
        let n_gen = 200;
        let how = Decoding::Sample {
            temperature: 0.8,
            top_k: None,
            top_p: None,
        };
        let mut grng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut gen = || {
            generate(model, &[0], n_gen, how, &mut grng, &mut |_| {}).unwrap();
        };
        gen();
        let t_gen = median((0..3).map(|_| timed(&mut gen)).collect());
        // A training token costs about 6 FLOPs per recurrent and output weight.
        // The first layer's input weight multiplies the V embedding rows
        // once, not every token's, when T·B ≥ 2·V (`RnnInput::lookup`):
        // counted as the products actually run.
        let w_ih0 = model.rnn().config().cell.gates() * h * e;
        let weights = model.rnn().block().len + v * h;
        let weights = if t * b >= 2 * v {
            weights - w_ih0 + w_ih0 * v / (t * b)
        } else {
            weights
        };
        let tokens = (t * b) as f64;
        let train_gflops = 6.0 * weights as f64 * tokens / t_train / 1e9;
        let (train_tok_s, infer_tok_s, gen_tok_s) =
            (tokens / t_train, tokens / t_infer, n_gen as f64 / t_gen);
        if a.json {
            let o = serde_json::json!({
                "name": name, "cell": cell, "vocab": v, "embed": e, "hidden": h, "layers": l, "batch": b, "seq": t,
                "threads": threads(), "precision": precision.name(), "train_tok_s": train_tok_s, "infer_tok_s": infer_tok_s, "gen_tok_s": gen_tok_s,
                "train_gflops": train_gflops, "train_step_ms": t_train * 1e3,
            });
            println!("{o}");
        } else {
            println!(
                "{name:18} train {train_tok_s:10.0} tok/s ({train_gflops:5.1} GFLOP/s)  infer {infer_tok_s:10.0} tok/s  gen(b=1) {gen_tok_s:8.0} tok/s"
            );
        }
    }
    Ok(())
}

/// One fixed batch as the whole training data: every step is an epoch of
/// its own, so the carried state is zeroed before each, as in the baseline.
struct OneBatch(LmBatch);

impl Data for OneBatch {
    type Batch = LmBatch;
    fn steps_per_epoch(&self) -> Option<usize> {
        Some(1)
    }
    fn fill(&mut self, _: usize, _: usize, batch: &mut LmBatch) -> recur::Result<()> {
        batch.clone_from(&self.0);
        Ok(())
    }
    fn tokens_per_step(&self) -> usize {
        self.0.steps * self.0.batch
    }
    fn validation(&self) -> &[LmBatch] {
        &[]
    }
    fn fingerprint(&self) -> u64 {
        0
    }
}

fn timed(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Forward + backward time of one recurrent layer, its GFLOP/s, and the
    /// GEMM rate faer reaches on the same shapes.
    Layer(LayerArgs),
    /// Sentences/s of the default tagger (UD English EWT) and text classifier (MR), as
    /// bench/seq_baseline.py measures PyTorch's.
    Seq(crate::seq::SeqBenchArgs),
}

#[derive(Args)]
pub struct LayerArgs {
    /// Cell: lstm, gru, gru-reset-before, rnn-tanh, rnn-relu.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Hidden units H.
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Input features I (default: H).
    #[arg(long)]
    input: Option<usize>,
    /// Batch B.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Time steps T.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Timed runs after one warm-up; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Layer(a) => layer(a),
        BenchCommand::Seq(a) => crate::seq::bench(a),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f` over `repeats` runs after a warm-up.
fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// GFLOP/s of `c[m,n] = op(a) op(b)` with the given transposes.
fn gemm_rate(
    m: usize,
    n: usize,
    k: usize,
    ta: Trans,
    tb: Trans,
    repeats: usize,
    reps_inner: usize,
) -> f64 {
    let a = vec![0.01f32; m * k];
    let b = vec![0.02f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let lda = if ta == Trans::N { k } else { m };
    let ldb = if tb == Trans::N { n } else { k };
    let s = time(repeats, || {
        for _ in 0..reps_inner {
            gemm(m, n, k, &a, lda, ta, &b, ldb, tb, &mut c, n, true);
        }
    });
    2.0 * (m * n * k * reps_inner) as f64 / s / 1e9
}

fn layer(a: LayerArgs) -> anyhow::Result<()> {
    let cell = CellKind::from_name(&a.cell).with_context(|| {
        format!(
            "--cell: unknown cell '{}', expected lstm, gru, gru-reset-before, rnn-tanh or rnn-relu",
            a.cell
        )
    })?;
    if a.hidden == 0 || a.batch == 0 || a.steps == 0 {
        bail!("--hidden, --batch and --steps must be at least 1");
    }
    set_threads(a.threads);
    let (h, b, t) = (a.hidden, a.batch, a.steps);
    let i = a.input.unwrap_or(h);
    let g = cell.gates();
    let mut store = ParamStore::<f32>::new();
    let rnn = Rnn::new(store.root(), RnnConfig::new(cell, i, h))?;
    rnn.init_uniform(&mut store, 0);
    let x: Vec<f32> = (0..t * b * i)
        .map(|k| ((k % 97) as f32 / 97.0) - 0.5)
        .collect();
    let dy = vec![0.01f32; t * b * h];
    let mut ws = RnnWorkspace::new();
    let fwd = time(a.repeats, || {
        rnn.forward(&store, &mut ws, RnnInput::new(&x, t, b), None)
            .unwrap()
    });
    let both = time(a.repeats, || {
        rnn.forward(&store, &mut ws, RnnInput::new(&x, t, b), None)
            .unwrap();
        rnn.backward(&mut store, &mut ws, &dy, None, None).unwrap();
    });
    // GEMM work only: forward x·W_ihᵀ and h·W_hhᵀ; backward the same three
    // times over (dh, dW, dx). The reset-before GRU's split GEMMs add none.
    let fwd_flops = 2.0 * (t * b * g * h * (i + h)) as f64;
    let flops = 3.0 * fwd_flops;
    // The same products as single GEMMs: the recurrent one at its per-step
    // size, and the big ones over all T·B rows.
    let reps = (t / 4).max(1);
    let rate_step = gemm_rate(b, g * h, h, Trans::N, Trans::T, a.repeats, reps);
    let rate_input = gemm_rate(t * b, g * h, i, Trans::N, Trans::T, a.repeats, 1);
    let rate_dw = gemm_rate(g * h, i, t * b, Trans::T, Trans::N, a.repeats, 1);
    let rate_dh = gemm_rate(b, h, g * h, Trans::N, Trans::N, a.repeats, reps);
    // What the layer would take if every GEMM ran at its measured rate.
    let step_flops = 2.0 * (t * b * g * h * h) as f64;
    let input_flops = 2.0 * (t * b * g * h * i) as f64;
    let dw_flops = 2.0 * (t * b * g * h * (i + h)) as f64;
    let gemm_only = step_flops / rate_step
        + input_flops / rate_input
        + dw_flops / rate_dw
        + step_flops / rate_dh
        + input_flops / rate_input;
    let gemm_only = gemm_only / 1e9;
    let tok = (t * b) as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "cell": cell.name(), "input": i, "hidden": h, "batch": b, "steps": t, "threads": threads(),
                "forward_s": fwd, "forward_backward_s": both,
                "forward_gflops": fwd_flops / fwd / 1e9, "forward_backward_gflops": flops / both / 1e9,
                "train_tok_s": tok / both, "infer_tok_s": tok / fwd,
                "gemm_gflops": {"recurrent_step": rate_step, "input": rate_input, "weight_grad": rate_dw, "backward_step": rate_dh},
                "gemm_only_s": gemm_only,
            })
        );
        return Ok(());
    }
    println!(
        "{} layer, I={i} H={h} B={b} T={t}, {} thread(s), median of {} runs",
        cell.name(),
        threads(),
        a.repeats
    );
    println!(
        "  forward            {:8.1} ms  {:6.1} GFLOP/s  {:9.0} tokens/s",
        fwd * 1e3,
        fwd_flops / fwd / 1e9,
        tok / fwd
    );
    println!(
        "  forward + backward {:8.1} ms  {:6.1} GFLOP/s  {:9.0} tokens/s",
        both * 1e3,
        flops / both / 1e9,
        tok / both
    );
    println!("faer GEMM on the same shapes (GFLOP/s):");
    println!(
        "  per-step recurrent [{b}x{h}]·[{h}x{}]      {rate_step:6.1}",
        g * h
    );
    println!(
        "  input, all steps   [{}x{i}]·[{i}x{}]    {rate_input:6.1}",
        t * b,
        g * h
    );
    println!(
        "  weight gradient    [{}x{}]·[{}x{i}]    {rate_dw:6.1}",
        g * h,
        t * b,
        t * b
    );
    println!(
        "  backward per step  [{b}x{}]·[{}x{h}]      {rate_dh:6.1}",
        g * h,
        g * h
    );
    println!(
        "  the layer's GEMMs at these rates alone: {:.1} ms, so the layer runs at {:.0}% of the GEMM limit",
        gemm_only * 1e3,
        100.0 * gemm_only / both
    );
    Ok(())
}
