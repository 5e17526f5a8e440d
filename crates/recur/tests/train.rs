//! The trainer at the library level: a resumed run continues bit for bit
//! (dropout on, stopped in the middle of an epoch), for the language model
//! and for a task net whose batches come from a random stream.

use recur::data::{tokenize, Level, LmData, Vocab};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::optim::OptimizerKind;
use recur::task::{TaskCell, TaskConfig, TaskData, TaskKind, TaskNet};
use recur::train::{Budget, Data, Model, Quiet, ScheduleKind, TrainConfig, Trainer};
use recur::CellKind;

const TEXT: &str = "It is a truth universally acknowledged, that a single man in possession \
of a good fortune, must be in want of a wife. However little known the feelings or views of \
such a man may be on his first entering a neighbourhood, this truth is so well fixed in the \
minds of the surrounding families, that he is considered the rightful property of some one or \
other of their daughters.";

fn lm_parts() -> (LanguageModel, LmData) {
    let tokens = tokenize(TEXT, Level::Char);
    let vocab = Vocab::build(Level::Char, &tokens, 1).unwrap();
    let ids = vocab.encode(&tokens, "the text").unwrap();
    let cfg = LmConfig {
        cell: CellKind::Lstm,
        vocab_size: vocab.len(),
        embed: 8,
        hidden: 16,
        layers: 2,
        dropout: 0.3,
    };
    let model = LanguageModel::new(cfg, 7).unwrap();
    let data = LmData::new(&ids, vocab, 4, 10, 0.1, "the text").unwrap();
    (model, data)
}

fn lm_config() -> TrainConfig {
    let mut c = TrainConfig::new(OptimizerKind::Adam, 3e-3);
    c.clip_norm = 1.0;
    c.clip_value = 0.5;
    c.schedule = ScheduleKind::Cosine;
    c.total_steps = Some(20);
    c.seed = 5;
    c
}

/// Runs `total` steps straight, and `first` steps then a resume from the
/// saved folder and the rest; returns the final parameters of both.
fn straight_and_resumed<M, D>(
    parts: impl Fn() -> (M, D),
    config: TrainConfig,
    first: u64,
    total: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f64>, Vec<f64>)
where
    M: Model,
    D: Data<Batch = M::Batch>,
{
    let (m, d) = parts();
    let mut a = Trainer::new(m, d, config.clone()).unwrap();
    let mut losses_a = Vec::new();
    for _ in 0..total {
        losses_a.push(a.train_step().unwrap().loss);
    }
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = parts();
    let mut b = Trainer::new(m, d, config).unwrap();
    b.run(Budget::Steps(first), first, Some(dir.path()), &mut Quiet)
        .unwrap();
    let mut losses_b = Vec::new();
    let (m, d) = parts();
    let mut c = Trainer::resume(dir.path(), m, d, None).unwrap();
    assert_eq!(c.progress().step, first);
    for _ in first..total {
        losses_b.push(c.train_step().unwrap().loss);
    }
    (
        a.model.store().params.clone(),
        c.model.store().params.clone(),
        losses_a[first as usize..].to_vec(),
        losses_b,
    )
}

#[test]
fn language_model_resumes_bit_for_bit_mid_epoch() {
    let (_, data) = lm_parts();
    let spe = data.steps_per_epoch().unwrap() as u64;
    assert!(spe >= 4, "{spe} steps per epoch");
    // Stop inside the second epoch, so the carried state and the epoch
    // position both matter.
    let first = spe + spe / 2;
    let total = 2 * spe + 2;
    let (a, b, la, lb) = straight_and_resumed(lm_parts, lm_config(), first, total);
    assert_eq!(la, lb, "losses after the resume");
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "weights differ"
    );
}

#[test]
fn task_net_resumes_bit_for_bit() {
    let cfg = TaskConfig {
        batch: 8,
        test_size: 8,
        ..TaskConfig::new(TaskKind::BinaryAddition, TaskCell::Lstm)
    };
    let parts = || {
        (
            TaskNet::new(cfg.clone()).unwrap(),
            TaskData::new(&cfg).unwrap(),
        )
    };
    let mut tc = TrainConfig::new(OptimizerKind::Adam, 1e-2);
    tc.clip_norm = 1.0;
    let (a, b, la, lb) = straight_and_resumed(parts, tc, 7, 15);
    assert_eq!(la, lb, "losses after the resume");
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn resume_refuses_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = lm_parts();
    let mut t = Trainer::new(m, d, lm_config()).unwrap();
    t.run(Budget::Steps(2), 2, Some(dir.path()), &mut Quiet)
        .unwrap();
    let (m, _) = lm_parts();
    let tokens = tokenize(&TEXT.replace('a', "e"), Level::Char);
    let vocab = Vocab::build(Level::Char, &tokenize(TEXT, Level::Char), 1).unwrap();
    let ids = vocab.encode(&tokens, "other").unwrap();
    let other = LmData::new(&ids, vocab, 4, 10, 0.1, "other").unwrap();
    let e = Trainer::resume(dir.path(), m, other, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("different data"), "{e}");
}

#[test]
fn a_diverging_run_stops_before_the_update() {
    let (m, d) = lm_parts();
    let mut c = lm_config();
    c.optimizer = OptimizerKind::Sgd;
    c.lr = 1e30;
    c.clip_norm = 0.0;
    c.clip_value = 0.0;
    let mut t = Trainer::new(m, d, c).unwrap();
    let mut err = None;
    for _ in 0..20 {
        if let Err(e) = t.train_step() {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("the loss diverges");
    assert!(matches!(e, recur::Error::Diverged { .. }), "{e}");
    let (diverged_at, before) = (t.progress().step, t.model.store().params.clone());
    assert!(t.train_step().is_err());
    assert_eq!(t.progress().step, diverged_at, "no step was counted");
    assert!(before
        .iter()
        .zip(&t.model.store().params)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn resume_refuses_a_half_saved_pair() {
    // A crash between the two renames leaves last.safetensors from one step
    // and train_state.safetensors from another: resume must refuse it.
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = lm_parts();
    let mut t = Trainer::new(m, d, lm_config()).unwrap();
    t.run(Budget::Steps(2), 2, Some(dir.path()), &mut Quiet)
        .unwrap();
    let early = std::fs::read(dir.path().join("last.safetensors")).unwrap();
    t.run(Budget::Steps(4), 2, Some(dir.path()), &mut Quiet)
        .unwrap();
    std::fs::write(dir.path().join("last.safetensors"), early).unwrap();
    let (m, d) = lm_parts();
    let e = Trainer::resume(dir.path(), m, d, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("step 2") && e.contains("step 4"), "{e}");
}

#[test]
fn a_loss_far_above_uniform_stops_or_is_skipped() {
    // SGD at a huge rate: the loss soon passes 10 × ln V (finite), which
    // counts as divergence, with the bound in the message.
    let (m, d) = lm_parts();
    let mut c = lm_config();
    c.optimizer = OptimizerKind::Sgd;
    c.lr = 1e6;
    c.clip_norm = 0.0;
    let mut t = Trainer::new(m, d, c.clone()).unwrap();
    let e = (0..50)
        .find_map(|_| t.train_step().err())
        .expect("the run diverges");
    let msg = e.to_string();
    assert!(
        matches!(e, recur::Error::Diverged { loss, .. } if loss.is_finite())
            && msg.contains("bound"),
        "{msg}"
    );
    // Skipping: the bad batches are passed over with the rate halved each
    // time, until the run learns again, or stops after MAX_SKIPS in a row.
    c.lr = 300.0;
    c.on_divergence = recur::train::OnDivergence::Skip;
    let (m, d) = lm_parts();
    let mut t = Trainer::new(m, d, c).unwrap();
    for _ in 0..60 {
        if t.train_step().is_err() {
            break;
        }
    }
    let p = t.progress().clone();
    assert!(p.skipped > 0, "{p:?}");
    assert!(
        p.lr_scale < 1.0 && p.lr_scale == 0.5f32.powi(p.skipped as i32),
        "{p:?}"
    );
    assert!(p.skips_in_a_row < recur::train::MAX_SKIPS, "{p:?}");
    assert!(p.step > p.skipped, "it went on learning: {p:?}");
}

/// The plateau schedule: × lr_decay after every evaluation that does not
/// improve the best validation loss, never below min_lr; its factor is
/// saved with the run, and a resumed run goes on at the cut rate.
#[test]
fn the_plateau_schedule_cuts_the_rate_after_each_evaluation_without_improvement() {
    let mut c = TrainConfig::new(OptimizerKind::Adam, 0.05);
    c.schedule = ScheduleKind::Plateau;
    c.lr_decay = 0.5;
    c.min_lr = 0.01;
    c.clip_norm = 1.0;
    let (m, d) = lm_parts();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(m, d, c.clone()).unwrap();
    // A rate this high on a paragraph overfits within a few evaluations.
    t.run(Budget::Steps(30), 1, Some(dir.path()), &mut Quiet)
        .unwrap();
    let (mut best, mut scale, mut misses) = (f64::INFINITY, 1.0f32, 0);
    for line in t.history() {
        // The rate logged is the one this evaluation's step used.
        assert_eq!(line.lr, (0.05 * scale).max(0.01), "at step {}", line.step);
        let v = line.val_loss.unwrap();
        if v < best {
            best = v;
        } else {
            scale *= 0.5;
            misses += 1;
        }
    }
    assert!(misses >= 3, "{misses} evaluations without improvement");
    assert_eq!(t.progress().plateau_scale, scale);
    assert_eq!(t.train_step().unwrap().lr, 0.01, "the floor");
    let (m, d) = lm_parts();
    let mut r = Trainer::resume(dir.path(), m, d, None).unwrap();
    assert_eq!(r.progress().plateau_scale, scale);
    assert_eq!(r.train_step().unwrap().lr, 0.01);
    // Other schedules leave the factor alone; a factor above 1 is refused.
    let (m, d) = lm_parts();
    let mut constant = Trainer::new(m, d, TrainConfig::new(OptimizerKind::Adam, 0.05)).unwrap();
    constant
        .run(Budget::Steps(10), 1, None, &mut Quiet)
        .unwrap();
    assert_eq!(constant.progress().plateau_scale, 1.0);
    c.lr_decay = 1.5;
    let (m, d) = lm_parts();
    assert!(Trainer::new(m, d, c).is_err());
}
