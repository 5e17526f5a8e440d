//! Encoder–decoders: finite-difference checks in f64 of every attention
//! form, input feeding, the bridge, reversed sources, label smoothing and
//! dropout, through the store; and the properties of beam search.

mod common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recur::data::pairs::{PairBatch, PairExample};
use recur::layer::attention::AttentionKind;
use recur::model::seq2seq::{Decode, Search, Seq2Seq, Seq2SeqConfig, Seq2SeqMeta, Seq2SeqWs};
use recur::CellKind;

use common::Lcg;

const VS: usize = 9;
const VT: usize = 8;

/// A ragged batch: sources of 4, 2, 5 tokens (none for a decoder alone),
/// targets of 3, 5, 1, and the config's condition features.
fn batch(config: &Seq2SeqConfig, rng: &mut Lcg) -> PairBatch {
    let c = config.condition.map_or(0, |c| c.features);
    let ex: Vec<PairExample> = [(4, 3), (2, 5), (5, 1)]
        .iter()
        .map(|&(s, t)| PairExample {
            src: match config.decoder_only {
                true => Vec::new(),
                false => (0..s).map(|_| 3 + rng.below(VS - 3) as u32).collect(),
            },
            tgt: (0..t).map(|_| 3 + rng.below(VT - 3) as u32).collect(),
            cond: (0..c).map(|_| rng.next() as f32).collect(),
        })
        .collect();
    let mut b = PairBatch::default();
    b.fill(&ex, &[0, 1, 2]).unwrap();
    b
}

fn config(cell: CellKind, attention: AttentionKind) -> Seq2SeqConfig {
    let mut c = Seq2SeqConfig::new(VS, VT);
    c.cell = cell;
    c.attention = attention;
    c.embed = 3;
    c.hidden = 4;
    c
}

fn gradcheck(name: &str, config: Seq2SeqConfig, smoothing: f64) {
    let mut rng = Lcg(0x5eed ^ name.len() as u64);
    let mut m = Seq2Seq::<f64>::new(config.clone(), Seq2SeqMeta::default(), 3).unwrap();
    m.training.label_smoothing = smoothing;
    for p in m.store.params.iter_mut() {
        *p = rng.next() * 0.6;
    }
    let b = batch(&config, &mut rng);
    let mut ws = Seq2SeqWs::default();
    // Dropout draws the same masks on every pass from a fresh generator.
    let dropout = config.dropout > 0.0;
    let gen = || ChaCha8Rng::seed_from_u64(11);
    let mut g = gen();
    m.forward_backward_with(&mut ws, &b, 1.0, dropout.then_some(&mut g as _))
        .unwrap();
    let grads = m.store.grads.clone();
    common::check_gradients(
        name,
        &mut m,
        |m| &mut m.store,
        &grads,
        |m| {
            let mut g = gen();
            m.forward(&mut ws, &b, 1.0, dropout.then_some(&mut g as _))
                .unwrap();
            m.loss(&mut ws, &b, smoothing, false)
        },
    );
}

#[test]
fn every_attention_form_has_exact_gradients() {
    use AttentionKind::*;
    gradcheck("gru, no attention", config(CellKind::Gru, None), 0.0);
    gradcheck("gru, bahdanau", config(CellKind::Gru, Bahdanau), 0.0);
    gradcheck("lstm, bahdanau", config(CellKind::Lstm, Bahdanau), 0.0);
    gradcheck("rnn-tanh, general", config(CellKind::RnnTanh, General), 0.0);
    gradcheck("lstm, dot", config(CellKind::Lstm, Dot), 0.0);
    let mut c = config(CellKind::Lstm, General);
    c.input_feeding = true;
    gradcheck("lstm, general, input feeding", c, 0.0);
    let mut c = config(CellKind::Gru, Dot);
    c.input_feeding = true;
    c.layers = 2;
    c.encoder_layers = 2;
    c.reverse_source = true;
    gradcheck("gru, dot, feeding, 2 layers, reversed source", c, 0.0);
}

#[test]
fn bridges_smoothing_and_dropout_have_exact_gradients() {
    use AttentionKind::*;
    let mut c = config(CellKind::Lstm, Bahdanau);
    c.bidirectional = true;
    gradcheck("lstm, bidirectional encoder, bridge", c, 0.0);
    let mut c = config(CellKind::Gru, General);
    c.encoder_layers = 2;
    c.layers = 3;
    c.bidirectional = true;
    c.input_feeding = true;
    gradcheck("gru, 2-layer bi encoder, 3-layer decoder, bridge", c, 0.0);
    let mut c = config(CellKind::Lstm, None);
    c.encoder_layers = 3;
    gradcheck("lstm, 3-layer encoder into 1 layer, bridge", c, 0.0);
    gradcheck(
        "gru, bahdanau, label smoothing 0.1",
        config(CellKind::Gru, Bahdanau),
        0.1,
    );
    let mut c = config(CellKind::Lstm, General);
    c.layers = 2;
    c.encoder_layers = 2;
    c.input_feeding = true;
    c.dropout = 0.3;
    gradcheck("lstm, general, feeding, dropout", c, 0.0);
}

#[test]
fn every_conditioning_mode_has_exact_gradients() {
    use recur::model::seq2seq::{Condition, ConditionMode};
    for (mode, cell) in [
        (ConditionMode::Init, CellKind::Lstm),
        (ConditionMode::FirstStep, CellKind::Gru),
        (ConditionMode::EveryStep, CellKind::Lstm),
    ] {
        let mut c = config(cell, AttentionKind::None);
        c.decoder_only = true;
        c.layers = 2;
        c.condition = Some(Condition { features: 3, mode });
        gradcheck(&format!("decoder alone, {mode:?} condition"), c, 0.0);
    }
    // With an encoder: the condition as the first step or at every step.
    let mut c = config(CellKind::Gru, AttentionKind::Bahdanau);
    c.condition = Some(Condition {
        features: 2,
        mode: ConditionMode::FirstStep,
    });
    gradcheck("bahdanau, first-step condition", c, 0.0);
    let mut c = config(CellKind::Lstm, AttentionKind::General);
    c.input_feeding = true;
    c.condition = Some(Condition {
        features: 2,
        mode: ConditionMode::EveryStep,
    });
    gradcheck("general, feeding, every-step condition", c, 0.0);
    let mut c = config(CellKind::Gru, AttentionKind::None);
    c.condition = Some(Condition {
        features: 2,
        mode: ConditionMode::Init,
    });
    assert!(Seq2Seq::<f64>::zeros(c, Seq2SeqMeta::default()).is_err());
}

#[test]
fn conditioned_decoders_decode_per_condition() {
    use recur::model::seq2seq::{Condition, ConditionMode};
    for mode in [
        ConditionMode::Init,
        ConditionMode::FirstStep,
        ConditionMode::EveryStep,
    ] {
        let mut c = config(CellKind::Gru, AttentionKind::None);
        c.decoder_only = true;
        c.condition = Some(Condition { features: 2, mode });
        let mut m = Seq2Seq::<f64>::new(c, Seq2SeqMeta::default(), 4).unwrap();
        let mut rng = Lcg(3);
        for p in m.store.params.iter_mut() {
            *p = rng.next() * 1.5;
        }
        let mut ws = Seq2SeqWs::default();
        let how = Decode {
            max_len: 6,
            ..Decode::default()
        };
        let conds = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let out = m
            .decode(&mut ws, &[vec![], vec![], vec![]], &conds, &[], &how)
            .unwrap();
        // The same condition gives the same greedy output, batched or alone.
        assert_eq!(out[0][0].tokens, out[2][0].tokens, "{mode:?}");
        let alone = m
            .decode(&mut ws, &[vec![]], &conds[2..4], &[], &how)
            .unwrap();
        assert_eq!(alone[0][0].tokens, out[1][0].tokens, "{mode:?}");
        // Greedy decoding scores what teacher forcing scores.
        let h = &out[0][0];
        let mut b = PairBatch::default();
        b.fill(
            &[PairExample {
                src: vec![],
                tgt: h.tokens.clone(),
                cond: conds[..2].to_vec(),
            }],
            &[0],
        )
        .unwrap();
        if !h.finished {
            continue;
        }
        m.forward(&mut ws, &b, 1.0, None).unwrap();
        let lp = -m.loss(&mut ws, &b, 0.0, false) * b.tgt_lengths[0] as f64;
        assert!(
            (lp - h.log_prob).abs() < 1e-9,
            "{mode:?}: {lp} vs {}",
            h.log_prob
        );
        assert!(
            m.decode(&mut ws, &[vec![]], &[1.0], &[], &how).is_err(),
            "wrong width"
        );
    }
}

fn trained_ish(attention: AttentionKind, seed: u64) -> Seq2Seq<f64> {
    let mut c = config(CellKind::Gru, attention);
    c.hidden = 6;
    let mut m = Seq2Seq::<f64>::new(c, Seq2SeqMeta::default(), seed).unwrap();
    let mut rng = Lcg(seed);
    for p in m.store.params.iter_mut() {
        *p = rng.next() * 1.5;
    }
    m
}

fn sources() -> Vec<Vec<u32>> {
    vec![vec![3, 4, 5], vec![6], vec![7, 8, 3, 4, 5, 6]]
}

#[test]
fn a_beam_of_one_is_greedy() {
    for att in [
        AttentionKind::Bahdanau,
        AttentionKind::General,
        AttentionKind::None,
    ] {
        let m = trained_ish(att, 5);
        let mut ws = Seq2SeqWs::default();
        let greedy = m
            .translate(&mut ws, &sources(), &Decode::default())
            .unwrap();
        let beam1 = Decode {
            search: Search::Beam {
                width: 1,
                alpha: 0.0,
            },
            ..Decode::default()
        };
        let beam = m.translate(&mut ws, &sources(), &beam1).unwrap();
        for (g, b) in greedy.iter().zip(&beam) {
            assert_eq!(g[0].tokens, b[0].tokens, "{att:?}");
            assert!((g[0].log_prob - b[0].log_prob).abs() < 1e-12);
        }
        // Batched decoding gives each source what it gets alone.
        for (i, s) in sources().iter().enumerate() {
            let alone = m
                .translate(&mut ws, &[s.clone()], &Decode::default())
                .unwrap();
            assert_eq!(alone[0][0].tokens, greedy[i][0].tokens);
        }
    }
}

/// Every hypothesis of at most `len` tokens: finished ones (ending in
/// `<eos>`) and, at the limit, unfinished ones; the best log p.
fn exhaustive(m: &Seq2Seq<f64>, src: &[u32], len: usize) -> (Vec<u32>, f64) {
    // Score a prefix by teacher-forcing it (the loss is −mean log p).
    let score = |tgt: &[u32], end: bool| -> f64 {
        let mut b = PairBatch::default();
        b.fill(
            &[PairExample {
                src: src.to_vec(),
                tgt: tgt.to_vec(),
                cond: Vec::new(),
            }],
            &[0],
        )
        .unwrap();
        let mut ws = Seq2SeqWs::default();
        if !end {
            // Drop the <eos> step from the loss: score the tokens only.
            m.forward(&mut ws, &b, 1.0, None).unwrap();
            b.tgt_lengths[0] -= 1;
            if b.tgt_lengths[0] == 0 {
                return 0.0;
            }
            return -m.loss(&mut ws, &b, 0.0, false) * b.tgt_lengths[0] as f64;
        }
        m.forward(&mut ws, &b, 1.0, None).unwrap();
        -m.loss(&mut ws, &b, 0.0, false) * b.tgt_lengths[0] as f64
    };
    let mut best = (Vec::new(), f64::NEG_INFINITY);
    let mut stack: Vec<Vec<u32>> = vec![Vec::new()];
    while let Some(p) = stack.pop() {
        // End here with <eos> (p.len() + 1 ≤ len steps).
        if p.len() < len {
            let s = score(&p, true);
            if s > best.1 {
                best = (p.clone(), s);
            }
            for t in 0..VT as u32 {
                if t != 2 {
                    let mut q = p.clone();
                    q.push(t);
                    stack.push(q);
                }
            }
        } else {
            let s = score(&p, false);
            if s > best.1 {
                best = (p, s);
            }
        }
    }
    best
}

#[test]
fn a_wide_beam_finds_the_exhaustive_optimum() {
    let len = 3;
    for seed in 1..4 {
        let m = trained_ish(AttentionKind::Bahdanau, seed);
        let src = vec![3, 5, 7];
        let (want, want_lp) = exhaustive(&m, &src, len);
        let how = Decode {
            search: Search::Beam {
                width: VT.pow(len as u32),
                alpha: 0.0,
            },
            nbest: 1,
            max_len: len,
            max_ratio: 10.0,
            mask_reserved: false,
        };
        let mut ws = Seq2SeqWs::default();
        let got = &m.translate(&mut ws, &[src], &how).unwrap()[0][0];
        assert_eq!(got.tokens, want, "seed {seed}");
        assert!(
            (got.log_prob - want_lp).abs() < 1e-9,
            "{} vs {want_lp}",
            got.log_prob
        );
    }
}

#[test]
fn nbest_lists_are_sorted_by_penalised_score() {
    let m = trained_ish(AttentionKind::General, 9);
    for alpha in [0.0, 0.6, 1.0] {
        let how = Decode {
            search: Search::Beam { width: 5, alpha },
            nbest: 5,
            ..Decode::default()
        };
        let mut ws = Seq2SeqWs::default();
        for list in m.translate(&mut ws, &sources(), &how).unwrap() {
            assert!(!list.is_empty() && list.len() <= 5);
            for w in list.windows(2) {
                assert!(w[0].score >= w[1].score);
            }
            for h in &list {
                let len = h.tokens.len() + usize::from(h.finished);
                let lp = ((5.0 + len as f64) / 6.0).powf(alpha);
                assert!((h.score - h.log_prob / lp).abs() < 1e-12);
                // One attention row per output step, each summing to 1.
                assert_eq!(h.attention.len() % len, 0);
            }
        }
    }
    let bad = Decode {
        search: Search::Beam {
            width: 0,
            alpha: 0.0,
        },
        ..Decode::default()
    };
    let mut ws = Seq2SeqWs::default();
    let e = m.translate(&mut ws, &sources(), &bad).unwrap_err();
    assert!(e.to_string().contains("beam width"), "{e}");
}

/// With a teacher-forcing ratio of 0, each step after the first is fed the
/// model's own argmax: the same logits as teacher-forcing that sequence.
#[test]
fn scheduled_sampling_feeds_the_models_own_predictions() {
    use recur::model::seq2seq::TeacherForcing;
    let m = trained_ish(AttentionKind::Bahdanau, 7);
    let mut rng = Lcg(1);
    let b = batch(m.config(), &mut rng);
    let (un, bn, v) = (b.tgt_steps, b.batch(), VT);
    let mut ws = Seq2SeqWs::default();
    let mut g = ChaCha8Rng::seed_from_u64(1);
    m.forward(&mut ws, &b, 0.0, Some(&mut g)).unwrap();
    let free = m.logits(&ws).to_vec();
    let argmax = |row: &[f64]| {
        (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best }) as u32
    };
    let mut fed = b.clone();
    for u in 1..un {
        for r in 0..bn {
            fed.tgt_in[u * bn + r] = argmax(&free[((u - 1) * bn + r) * v..][..v]);
        }
    }
    m.forward(&mut ws, &fed, 1.0, None).unwrap();
    let forced = m.logits(&ws);
    for (a, b) in free.iter().zip(forced) {
        assert!((a - b).abs() < 1e-12);
    }
    assert_ne!(
        fed.tgt_in, b.tgt_in,
        "the predictions differ from the targets somewhere"
    );
    // Schedules.
    let tf = TeacherForcing::parse("inverse-sigmoid:100").unwrap();
    assert!(tf.ratio(0) > 0.99 && tf.ratio(1000) < 0.01);
    assert!((TeacherForcing::parse("linear:100:0.2").unwrap().ratio(50) - 0.5).abs() < 1e-12);
    assert_eq!(
        TeacherForcing::parse("linear:100:0.2").unwrap().ratio(500),
        0.2
    );
    assert!((TeacherForcing::parse("exponential:0.99").unwrap().ratio(2) - 0.9801).abs() < 1e-12);
    assert!(TeacherForcing::parse("1.5").is_err() && TeacherForcing::parse("cosine:3").is_err());
}
