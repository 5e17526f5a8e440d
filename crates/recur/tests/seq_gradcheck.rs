//! Finite-difference checks in f64 of the sequence models, through the
//! store, so every parameter any part registers is checked: the
//! character-word encoder, every pooling, the masked and class-weighted
//! losses, regression per sequence and per step, residual connections and
//! the learned initial state, on ragged batches.

use recur::data::seq::{SeqBatch, SeqExample};
use recur::model::seq::{
    CharConfig, Pooling, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask, SeqWorkspace,
};
use recur::CellKind;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() + 1.0) / 2.0 * n as f64) as usize % n
    }
}

const V: usize = 9;
const CHARS: usize = 7;

/// A ragged batch of 3 examples (lengths 4, 2, 5) for `config`.
fn batch(config: &SeqConfig, rng: &mut Lcg) -> SeqBatch {
    let lens = [4, 2, 5];
    let o = config.outputs;
    let mut table: Vec<Vec<u32>> = Vec::new();
    let examples: Vec<SeqExample> = lens
        .iter()
        .map(|&t| {
            let mut e = SeqExample {
                steps: t,
                ..Default::default()
            };
            match config.input {
                SeqInput::Tokens { .. } => {
                    e.tokens = (0..t).map(|_| 1 + rng.below(V - 1) as u32).collect();
                    if config.chars.is_some() {
                        for &tok in &e.tokens {
                            // Spellings of 1–3 characters; equal tokens share one.
                            let len = 1 + tok as usize % 3;
                            let s: Vec<u32> = (0..len)
                                .map(|i| 1 + ((tok as usize + i) % (CHARS - 1)) as u32)
                                .collect();
                            e.spellings.push(table.len() as u32);
                            table.push(s);
                        }
                    }
                }
                SeqInput::Features { features } => {
                    e.features = (0..t * features)
                        .map(|_| rng.next() * 2.0)
                        .map(|v| v as f32)
                        .collect();
                }
            }
            match config.task {
                SeqTask::Classify => e.label = rng.below(o) as u32,
                SeqTask::Tag => e.tags = (0..t).map(|_| rng.below(o) as u32).collect(),
                SeqTask::Regress if config.per_step => {
                    e.step_targets = (0..t * o).map(|_| rng.next() as f32).collect()
                }
                SeqTask::Regress => e.targets = (0..o).map(|_| rng.next() as f32 * 3.0).collect(),
            }
            e
        })
        .collect();
    let mut b = SeqBatch::default();
    b.fill(&examples, &[0, 1, 2], &table).unwrap();
    b
}

fn gradcheck(name: &str, config: SeqConfig, meta: SeqMeta) {
    let mut rng = Lcg(0x5eed ^ name.len() as u64);
    let mut m = SeqModel::<f64>::new(config.clone(), meta, 3).unwrap();
    // Larger weights than the default init, so no gradient is negligible.
    for p in m.store.params.iter_mut() {
        *p = rng.next() * 0.6;
    }
    let b = batch(&config, &mut rng);
    let mut ws = SeqWorkspace::default();
    m.forward_backward_with(&mut ws, &b, None).unwrap();
    let grads = m.store.grads.clone();
    let loss = |m: &SeqModel<f64>, ws: &mut SeqWorkspace<f64>| {
        m.forward(ws, &b, None).unwrap();
        m.loss(ws, &b, false).unwrap()
    };
    let eps = 1e-6;
    let mut worst = 0.0f64;
    for info in m.store.info().to_vec() {
        for i in info.range() {
            let v = m.store.params[i];
            m.store.params[i] = v + eps;
            let up = loss(&m, &mut ws);
            m.store.params[i] = v - eps;
            let down = loss(&m, &mut ws);
            m.store.params[i] = v;
            let num = (up - down) / (2.0 * eps);
            let err = (num - grads[i]).abs() / num.abs().max(grads[i].abs()).max(1e-3);
            assert!(
                err < 1e-6,
                "{name}: {}[{}]: analytic {} numeric {num} (error {err:.1e})",
                info.name,
                i - info.offset,
                grads[i]
            );
            worst = worst.max(err);
        }
    }
    println!(
        "{name}: {} parameters, worst error {worst:.1e}",
        m.store.len()
    );
}

fn tokens(task: SeqTask, outputs: usize) -> SeqConfig {
    let mut c = SeqConfig::new(task, SeqInput::Tokens { vocab: V, embed: 3 }, outputs);
    c.hidden = 4;
    c
}

#[test]
fn every_pooling() {
    for (pooling, cell, bi) in [
        (Pooling::Last, CellKind::Lstm, true),
        (Pooling::Mean, CellKind::Gru, true),
        (Pooling::Max, CellKind::RnnTanh, false),
        (Pooling::Attention, CellKind::Lstm, true),
    ] {
        let mut c = tokens(SeqTask::Classify, 3);
        c.pooling = pooling;
        c.cell = cell;
        c.bidirectional = bi;
        gradcheck(
            &format!("classify {pooling:?} {}", cell.name()),
            c,
            SeqMeta::default(),
        );
    }
}

#[test]
fn class_weighted_tagger_with_characters() {
    let mut c = tokens(SeqTask::Tag, 4);
    c.bidirectional = true;
    c.chars = Some(CharConfig {
        vocab: CHARS,
        embed: 2,
        hidden: 3,
    });
    let meta = SeqMeta {
        class_weights: vec![0.5, 2.0, 1.0, 1.5],
        ..Default::default()
    };
    gradcheck("tag, char-word encoder, class weights", c, meta);
}

#[test]
fn residual_layers_and_learned_initial_state() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let mut c = tokens(SeqTask::Classify, 2);
        c.cell = cell;
        c.layers = 3;
        c.bidirectional = true;
        c.residual = true;
        c.learned_init = true;
        c.pooling = Pooling::Mean;
        gradcheck(
            &format!("residual, learned h0 {}", cell.name()),
            c,
            SeqMeta::default(),
        );
    }
}

#[test]
fn regression_per_sequence_and_per_step() {
    let meta = SeqMeta {
        feature_mean: vec![0.5, -1.0],
        feature_std: vec![2.0, 0.5],
        target_mean: vec![1.0, 0.0],
        target_std: vec![3.0, 1.0],
        ..Default::default()
    };
    let mut c = SeqConfig::new(SeqTask::Regress, SeqInput::Features { features: 2 }, 2);
    c.hidden = 4;
    c.pooling = Pooling::Attention;
    gradcheck("regress per sequence, attention", c.clone(), meta.clone());
    c.per_step = true;
    c.bidirectional = true;
    c.learned_init = true;
    gradcheck("regress per step", c, meta);
}
