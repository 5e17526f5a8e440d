//! `recur task` and `recur diagnose`: the long-memory tasks, and how the
//! gradient flows back through time while a net learns one.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use recur::init::RecurrentInit;
use recur::layer::rnn::Leak;
use recur::optim::OptimizerKind;
use recur::task::{GradientFlow, TaskCell, TaskConfig, TaskKind, TaskMetrics, TaskNet, TaskRun};
use recur::train::{Budget, MetricsLine, Observer, Progress, StepReport};

use crate::CliResult;
use recur::plot::gradient_flow_plot;

/// Settings shared by `task` and `diagnose`; unset ones take the task's defaults.
#[derive(Args)]
pub struct NetArgs {
    /// tanh, relu, irnn (relu + identity W_hh), jordan (output fed back), lstm, gru or phased
    /// (phased LSTM: a time gate driven by the time stamps).
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Hidden units H [binary-addition 16, adding and copy 128].
    #[arg(long)]
    hidden: Option<usize>,
    /// adding: sequence length T [100]; copy: blank steps T [50].
    #[arg(long)]
    length: Option<usize>,
    /// Training steps [binary-addition 2000, adding and copy 4000].
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per batch [binary-addition 32, adding and copy 50].
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of initialisation, training data and test data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// sgd, adam, adamw, rmsprop or adagrad.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate [binary-addition 0.01, adding and copy 0.001].
    #[arg(long)]
    lr: Option<f32>,
    /// Clip the global gradient norm to this; 0 turns it off.
    #[arg(long, default_value_t = 1.0)]
    clip_norm: f32,
    /// Clip each gradient element to ±this; 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    clip_value: f32,
    /// Recurrent weights: uniform, orthogonal or identity [identity for irnn, else uniform].
    #[arg(long)]
    init: Option<String>,
    /// LSTM forget-gate bias at the start.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    forget_bias: f64,
    /// Leaky units: h_t = (1−α)·h_{t−1} + α·f(…) with this α in (0, 1].
    #[arg(long)]
    leak: Option<f64>,
    /// Learn α per unit, starting from --leak (default 0.5).
    #[arg(long)]
    learn_leak: bool,
    /// Skip connection in time: h_{t−d} also feeds step t (d ≥ 2).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Jordan net: feed the target back in training instead of the prediction.
    #[arg(long)]
    teacher_forcing: bool,
    /// Elman nets: weight of the gradient-decay regulariser (Pascanu et al. 2013), which
    /// penalises ‖dL/dh_{t−1}‖ shrinking from ‖dL/dh_t‖ at every step; 0 turns it off.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    gradient_regulariser: f64,
    /// binary-addition: the target is the sum bit this many steps later.
    #[arg(long, default_value_t = 0)]
    delay: usize,
    /// binary-addition: bits of the training numbers.
    #[arg(long, default_value_t = 8)]
    train_bits: usize,
    /// binary-addition: bits of the test numbers.
    #[arg(long, default_value_t = 64)]
    test_bits: usize,
    /// Test sequences [binary-addition and adding 1000, copy 500].
    #[arg(long)]
    test_size: Option<usize>,
    /// Evaluate every this many steps [steps/20].
    #[arg(long)]
    eval_every: Option<usize>,
}

impl NetArgs {
    fn config(&self, task: &str) -> anyhow::Result<TaskConfig> {
        let kind = TaskKind::from_name(task).with_context(|| {
            format!(
                "unknown task '{task}': expected one of {}",
                names(TaskKind::ALL.map(|(n, _)| n))
            )
        })?;
        let cell = TaskCell::from_name(&self.cell).with_context(|| {
            format!(
                "--cell: unknown cell '{}': expected one of {}",
                self.cell,
                names(TaskCell::ALL.map(|(n, _)| n))
            )
        })?;
        let mut c = TaskConfig::new(kind, cell);
        c.hidden = self.hidden.unwrap_or(c.hidden);
        c.length = self.length.unwrap_or(c.length);
        c.train_steps = self.steps.unwrap_or(c.train_steps);
        c.batch = self.batch.unwrap_or(c.batch);
        c.seed = self.seed;
        c.optimizer = OptimizerKind::from_name(&self.optimizer).with_context(|| {
            format!("--optimizer: unknown optimiser '{}': expected sgd, adam, adamw, rmsprop or adagrad", self.optimizer)
        })?;
        c.lr = self.lr.unwrap_or(c.lr);
        c.clip_norm = self.clip_norm;
        c.clip_value = self.clip_value;
        if let Some(init) = &self.init {
            c.init = RecurrentInit::from_name(init).with_context(|| {
                format!("--init: unknown initialisation '{init}': expected uniform, orthogonal or identity")
            })?;
        }
        c.forget_bias = self.forget_bias;
        c.leak = match (self.leak, self.learn_leak) {
            (None, false) => Leak::None,
            (Some(a), false) => Leak::Fixed(a),
            (a, true) => Leak::Learned(a.unwrap_or(0.5)),
        };
        c.skip = self.skip;
        c.teacher_forcing = self.teacher_forcing;
        c.gradient_regulariser = self.gradient_regulariser;
        c.delay = self.delay;
        c.train_bits = self.train_bits;
        c.test_bits = self.test_bits;
        c.test_size = self.test_size.unwrap_or(c.test_size);
        c.eval_every = self.eval_every.unwrap_or((c.train_steps / 20).max(1));
        Ok(c)
    }
}

#[derive(Args)]
pub struct TaskArgs {
    /// binary-addition, adding, copy or frequency.
    #[arg(value_name = "NAME")]
    task: String,
    #[command(flatten)]
    net: NetArgs,
    /// Print only the final metrics, as one JSON object.
    #[arg(long)]
    json: bool,
    /// Fresh starts allowed when the net has not solved the check set by
    /// --steps [binary-addition 10, adding and copy 0]. With any, training
    /// stops as soon as the check set (drawn apart from the test set) is
    /// solved.
    #[arg(long)]
    restarts: Option<u64>,
}

#[derive(Args)]
pub struct DiagnoseArgs {
    /// binary-addition, adding, copy or frequency.
    #[arg(long, default_value = "adding")]
    task: String,
    #[command(flatten)]
    net: NetArgs,
    /// Where gradients.jsonl and gradient_flow.svg go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How many times over training to record the gradient flow.
    #[arg(long, default_value_t = 8)]
    records: usize,
}

fn names<const N: usize>(all: [&str; N]) -> String {
    all.join(", ")
}

/// One line describing the test metrics.
fn metrics_line(m: &TaskMetrics) -> String {
    let mut s = format!(
        "step {:>6}  train loss {:.4}  test loss {:.4}",
        m.step, m.train_loss, m.test_loss
    );
    if let Some(a) = m.test_accuracy {
        s += &format!("  test accuracy {a:.4}");
    }
    if let Some(e) = m.test_mse {
        s += &format!("  test mse {e:.5}");
    }
    if let Some(b) = m.baseline {
        s += &format!("  (baseline {b:.4})");
    }
    s
}

/// What `task` and `diagnose` watch while the trainer runs: the metrics
/// of each evaluation, the first step that solved the task, and a hook on
/// every step.
struct Watch<'a> {
    quiet: bool,
    solved_at: Option<usize>,
    last: Option<TaskMetrics>,
    hook: &'a mut dyn FnMut(&TaskNet, u64) -> recur::Result<()>,
}

impl Observer<TaskNet> for Watch<'_> {
    fn step(&mut self, net: &TaskNet, _: &StepReport, p: &Progress) -> recur::Result<()> {
        (self.hook)(net, p.step)
    }

    fn evaluated(&mut self, line: &MetricsLine) {
        let val = line
            .val
            .iter()
            .map(|(k, v)| (k.trim_start_matches("val_").to_string(), *v))
            .collect();
        let m = TaskMetrics::new(
            line.step as usize,
            line.train_loss,
            line.val_loss.unwrap_or(f64::NAN),
            &val,
        );
        if m.solved && self.solved_at.is_none() {
            self.solved_at = Some(m.step);
        }
        if !self.quiet {
            eprintln!("{}", metrics_line(&m));
        }
        self.last = Some(m);
    }
}

/// Trains with the library's trainer, evaluating every `eval_every` steps;
/// `hook` sees the net after each step. Returns the final metrics and the
/// first step at which the test set counted as solved.
fn train(
    run: &mut TaskRun,
    quiet: bool,
    hook: &mut dyn FnMut(&TaskNet, u64) -> recur::Result<()>,
) -> anyhow::Result<(TaskMetrics, Option<usize>)> {
    let cfg = run.config().clone();
    if cfg.train_steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut watch = Watch {
        quiet,
        solved_at: None,
        last: None,
        hook,
    };
    run.trainer.run(
        Budget::Steps(cfg.train_steps as u64),
        cfg.eval_every as u64,
        None,
        &mut watch,
    )?;
    let m = watch.last.context("the run made no evaluation")?;
    Ok((m, watch.solved_at))
}

fn summary_json(
    run: &TaskRun,
    m: &TaskMetrics,
    solved_at: Option<usize>,
    seconds: f64,
) -> serde_json::Value {
    let c = run.config();
    let mut v = serde_json::json!({
        "task": c.task.name(),
        "cell": c.cell.name(),
        "hidden": c.hidden,
        "steps": c.train_steps,
        "batch": c.batch,
        "seed": c.seed,
        "optimizer": c.optimizer.name(),
        // The decimal the user wrote, not the f32 widened to f64.
        "lr": c.lr.to_string().parse::<f64>().unwrap_or(f64::from(c.lr)),
        "clip_norm": c.clip_norm,
        "init": match c.init {
            RecurrentInit::Uniform => "uniform",
            RecurrentInit::Orthogonal => "orthogonal",
            RecurrentInit::Identity(_) => "identity",
        },
        "leak": match c.leak {
            Leak::None => serde_json::Value::Null,
            Leak::Fixed(a) => a.into(),
            Leak::Learned(a) => format!("learned from {a}").into(),
        },
        "skip": c.skip,
        "gradient_regulariser": c.gradient_regulariser,
        "teacher_forcing": c.teacher_forcing,
        "params": run.param_count(),
        "train_loss": m.train_loss,
        "test_loss": m.test_loss,
        "solved": m.solved,
        "solved_at_step": solved_at,
        "seconds": seconds,
    });
    let o = v.as_object_mut().expect("object");
    match c.task {
        TaskKind::BinaryAddition => {
            o.insert("delay".into(), c.delay.into());
            o.insert("train_bits".into(), c.train_bits.into());
            o.insert("test_bits".into(), c.test_bits.into());
        }
        TaskKind::Adding | TaskKind::Copy | TaskKind::Frequency => {
            o.insert("length".into(), c.length.into());
        }
    }
    if let Some(a) = m.test_accuracy {
        o.insert("test_accuracy".into(), a.into());
    }
    if let Some(e) = m.test_mse {
        o.insert("test_mse".into(), e.into());
    }
    if let Some(b) = m.baseline {
        let key = if c.task == TaskKind::Adding {
            "baseline_mse"
        } else {
            "baseline_loss"
        };
        o.insert(key.into(), b.into());
    }
    v
}

pub fn run_task(a: TaskArgs) -> CliResult {
    let cfg = a.net.config(&a.task)?;
    let restarts = a.restarts.unwrap_or(match cfg.task {
        TaskKind::BinaryAddition => 10,
        _ => 0,
    });
    let start = Instant::now();
    let mut attempt = 0;
    let (run, m, solved_at) = loop {
        let mut run = TaskRun::new(TaskConfig {
            attempt,
            ..cfg.clone()
        })?;
        if !a.json {
            let c = run.config();
            eprintln!(
                "{} with a {} net, H = {}, {} parameters, {} steps of batch {}{}",
                c.task.name(),
                c.cell.name(),
                c.hidden,
                run.param_count(),
                c.train_steps,
                c.batch,
                if attempt > 0 {
                    format!(" (restart {attempt} of {restarts})")
                } else {
                    String::new()
                }
            );
        }
        let (m, solved_at, checked) = if restarts > 0 {
            train_until_solved(&mut run, a.json)?
        } else {
            let (m, s) = train(&mut run, a.json, &mut |_, _| Ok(()))?;
            (m, s, true)
        };
        if checked || attempt >= restarts {
            break (run, m, solved_at);
        }
        attempt += 1;
    };
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        let mut v = summary_json(&run, &m, solved_at, secs);
        v["restarts"] = attempt.into();
        println!("{v}");
    } else {
        println!("{}", metrics_line(&m));
        match solved_at {
            Some(s) => println!("solved at step {s} ({secs:.1} s)"),
            None => println!("not solved ({secs:.1} s)"),
        }
        if attempt > 0 {
            println!("after {attempt} restart(s) from fresh initialisations");
        }
    }
    Ok(())
}

/// Trains in evaluation-sized chunks up to the step budget, stopping as
/// soon as the check set is solved. Gives the test metrics at that point,
/// the step the test set first counted as solved, and whether the check
/// set was solved.
fn train_until_solved(
    run: &mut TaskRun,
    quiet: bool,
) -> anyhow::Result<(TaskMetrics, Option<usize>, bool)> {
    let cfg = run.config().clone();
    if cfg.train_steps == 0 {
        bail!("--steps must be at least 1");
    }
    let every = if cfg.eval_every == 0 {
        cfg.train_steps
    } else {
        cfg.eval_every
    };
    let mut hook = |_: &TaskNet, _: u64| Ok(());
    let mut watch = Watch {
        quiet,
        solved_at: None,
        last: None,
        hook: &mut hook,
    };
    let mut step = 0;
    let mut solved = false;
    while step < cfg.train_steps && !solved {
        step = (step + every).min(cfg.train_steps);
        run.trainer
            .run(Budget::Steps(step as u64), every as u64, None, &mut watch)?;
        solved = run.check()?.solved;
    }
    let m = watch.last.context("the run made no evaluation")?;
    if !quiet && solved {
        eprintln!("the check set is solved at step {step}: stopping");
    }
    Ok((m, watch.solved_at, solved))
}

pub fn run_diagnose(a: DiagnoseArgs) -> CliResult {
    let cfg = a.net.config(&a.task)?;
    if cfg.cell == TaskCell::Jordan || cfg.skip > 0 {
        bail!("diagnose measures the step Jacobian of Elman nets (tanh, relu, irnn) and of lstm and gru cells, not of a Jordan net or skip connections");
    }
    if a.records == 0 {
        bail!("--records must be at least 1");
    }
    let title = format!(
        "{} T={}, {} H={}",
        cfg.task.name(),
        cfg.length,
        cfg.cell.name(),
        cfg.hidden
    );
    let mut run = TaskRun::new(cfg.clone())?;
    let every = (cfg.train_steps / a.records).max(1);
    run.record_gradients(every as u64)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create the folder", a.out.display()))?;
    let jsonl = a.out.join("gradients.jsonl");
    let mut file = std::fs::File::create(&jsonl).with_context(|| jsonl.display().to_string())?;
    let mut flows: Vec<GradientFlow> = Vec::new();
    let (m, solved_at) = train(&mut run, false, &mut |net, s| {
        let s = s as usize;
        if s == 1 || s.is_multiple_of(every) {
            let f = net.gradient_flow(s as u64)?;
            let line = serde_json::json!({
                "step": f.step,
                "loss": f.loss,
                "state_grad_norm": f.state_grad_norm,
                "jacobian_norm": f.jacobian_norm,
                "regulariser": net.last_regulariser(),
            });
            writeln!(file, "{line}").map_err(|e| recur::Error::Io {
                path: jsonl.display().to_string(),
                message: e.to_string(),
            })?;
            flows.push(f);
        }
        Ok(())
    })?;
    let svg = a.out.join("gradient_flow.svg");
    gradient_flow_plot(&svg, &title, &flows)?;
    println!("{}", metrics_line(&m));
    if let Some(s) = solved_at {
        println!("solved at step {s}");
    }
    println!("wrote {} and {}", jsonl.display(), svg.display());
    Ok(())
}
