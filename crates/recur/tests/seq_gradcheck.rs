//! Finite-difference checks in f64 of the sequence models, through the
//! store, so every parameter any part registers is checked: the
//! character-word encoder, every pooling, the masked and class-weighted
//! losses, regression per sequence and per step, residual connections and
//! the learned initial state, on ragged batches.

mod common;

use recur::data::seq::{SeqBatch, SeqExample};
use recur::model::seq::{
    CharConfig, Pooling, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask, SeqWorkspace,
};
use recur::CellKind;

use common::Lcg;

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
    common::check_gradients(
        name,
        &mut m,
        |m| &mut m.store,
        &grads,
        |m| {
            m.forward(&mut ws, &b, None).unwrap();
            m.loss(&mut ws, &b, false).unwrap()
        },
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

/// Padding never changes a result: each example of a ragged batch gets the
/// outputs, loss and gradients it gets alone (B = 1, no padding), for
/// every pooling and head, bidirectional, with characters.
#[test]
fn padding_never_changes_a_result() {
    let mut configs = Vec::new();
    for pooling in [
        Pooling::Last,
        Pooling::Mean,
        Pooling::Max,
        Pooling::Attention,
    ] {
        let mut c = tokens(SeqTask::Classify, 3);
        c.pooling = pooling;
        c.bidirectional = true;
        c.layers = 2;
        c.residual = true;
        configs.push(c);
    }
    let mut tag = tokens(SeqTask::Tag, 4);
    tag.bidirectional = true;
    tag.chars = Some(CharConfig {
        vocab: CHARS,
        embed: 2,
        hidden: 3,
    });
    configs.push(tag);
    let mut reg = SeqConfig::new(SeqTask::Regress, SeqInput::Features { features: 2 }, 2);
    reg.per_step = true;
    reg.bidirectional = true;
    reg.hidden = 4;
    configs.push(reg);
    for config in configs {
        let mut rng = Lcg(11);
        let mut m = SeqModel::<f64>::new(config.clone(), SeqMeta::default(), 5).unwrap();
        let b = batch(&config, &mut rng);
        let mut ws = SeqWorkspace::default();
        m.forward_backward_with(&mut ws, &b, None).unwrap();
        let (whole_grads, whole_out) = (m.store.grads.clone(), m.predict(&b).unwrap());
        let o = config.outputs;
        let bn = b.batch();
        let mut summed = vec![0.0; whole_grads.len()];
        let mut weight_total = 0.0;
        for (i, &len) in b.lengths.iter().enumerate() {
            // Example i alone: its steps, its spellings renumbered.
            let mut one = SeqBatch::default();
            one.steps = len;
            one.lengths = vec![len];
            one.rows = vec![0];
            one.ids = (0..len).map(|t| b.ids[t * bn + i]).collect();
            let c = b.features.len() / (b.steps * bn);
            one.features = (0..len)
                .flat_map(|t| b.features[(t * bn + i) * c..][..c].to_vec())
                .collect();
            one.labels = if config.task == SeqTask::Tag {
                (0..len).map(|t| b.labels[t * bn + i]).collect()
            } else if config.task == SeqTask::Classify {
                vec![b.labels[i]]
            } else {
                Vec::new()
            };
            one.targets = if config.task != SeqTask::Regress {
                Vec::new()
            } else if config.per_step {
                (0..len)
                    .flat_map(|t| b.targets[(t * bn + i) * o..][..o].to_vec())
                    .collect()
            } else {
                b.targets
                    .get(i * o..(i + 1) * o)
                    .map(<[f32]>::to_vec)
                    .unwrap_or_default()
            };
            if config.chars.is_some() {
                for t in 0..len {
                    let sp = b.word_spelling[t * bn + i] as usize;
                    let chars =
                        &b.spellings.chars[b.spellings.offsets[sp]..b.spellings.offsets[sp + 1]];
                    one.word_spelling.push(one.spellings.push(chars));
                }
            }
            let out = m.predict(&one).unwrap();
            let rows = if config.steps_out() { len } else { 1 };
            for r in 0..rows {
                let whole_row = if config.steps_out() { r * bn + i } else { i };
                for k in 0..o {
                    let (a, w) = (out[r * o + k], whole_out[whole_row * o + k]);
                    assert!(
                        (a - w).abs() < 1e-12,
                        "{:?}: example {i} row {r}: alone {a}, in the batch {w}",
                        config.pooling
                    );
                }
            }
            m.forward_backward_with(&mut ws, &one, None).unwrap();
            // The batch's loss is the mean over its rows (or valid steps).
            let w = (rows
                * if config.task == SeqTask::Regress {
                    o
                } else {
                    1
                }) as f64;
            weight_total += w;
            for (s, g) in summed.iter_mut().zip(&m.store.grads) {
                *s += g * w;
            }
        }
        for (k, (s, g)) in summed.iter().zip(&whole_grads).enumerate() {
            let s = s / weight_total;
            assert!(
                (s - g).abs() < 1e-12 * g.abs().max(1.0),
                "{:?}: gradient {k}: examples {s}, batch {g}",
                config.task
            );
        }
        println!(
            "{:?} {:?}: padding changes nothing",
            config.task, config.pooling
        );
    }
}
