//! Classifiers and taggers against PyTorch (`fixtures/torch-models`, whose
//! README defines the modules): logits at the valid steps, the loss and
//! every parameter's gradient, in f64 to 1e-9 and in f32 to 1e-5 relative
//! (|a − b| / max(|b|, 1)).
//!
//! The cases come from `$RECUR_TORCH_MODELS` when set, otherwise from the
//! project's copy; one line per case checked is printed.

use std::collections::HashMap;
use std::path::PathBuf;

use recur::data::seq::SeqBatch;
use recur::model::seq::{Pooling, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask, SeqWorkspace};
use recur::{CellKind, Float, ParamStore};

type Tensors64 = HashMap<String, (Vec<usize>, Vec<f64>)>;
use safetensors::{Dtype, SafeTensors};

fn cases_dir() -> PathBuf {
    match std::env::var_os("RECUR_TORCH_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch-models"),
    }
}

/// Every tensor of a file as f64, by name.
fn tensors(path: &PathBuf) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let d = v.data();
            let vals: Vec<f64> = match v.dtype() {
                Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Dtype::I64 => d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: dtype {other:?}"),
            };
            (name, (v.shape().to_vec(), vals))
        })
        .collect()
}

struct Case {
    name: String,
    config: SeqConfig,
    params: HashMap<String, (Vec<usize>, Vec<f64>)>,
    batch: SeqBatch,
    expected: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

fn load(name: &str) -> Case {
    let dir = cases_dir().join(name);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let u = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}")) as usize;
    let task = SeqTask::from_name(j["model"].as_str().unwrap()).unwrap();
    let cell = CellKind::from_name(j["cell"].as_str().unwrap()).unwrap();
    let mut config = SeqConfig::new(
        task,
        SeqInput::Tokens {
            vocab: u("vocab"),
            embed: u("embed"),
        },
        u("classes"),
    );
    config.cell = cell;
    config.hidden = u("hidden");
    config.layers = u("layers");
    config.bidirectional = j["bidirectional"].as_bool().unwrap();
    if let Some(p) = j["pooling"].as_str() {
        config.pooling = Pooling::from_name(p).unwrap();
    }
    let inputs = tensors(&dir.join("inputs.safetensors"));
    let (shape, tokens) = &inputs["tokens"];
    let (bn, tn) = (shape[0], shape[1]);
    let lengths: Vec<usize> = inputs["lengths"].1.iter().map(|&v| v as usize).collect();
    // Batch-first → time-major.
    let mut batch = SeqBatch::default();
    batch.steps = tn;
    batch.lengths = lengths.clone();
    batch.ids = vec![0; tn * bn];
    for b in 0..bn {
        for t in 0..tn {
            batch.ids[t * bn + b] = tokens[b * tn + t] as u32;
        }
    }
    let labels = &inputs["labels"].1;
    batch.labels = if task == SeqTask::Tag {
        let mut l = vec![0; tn * bn];
        for b in 0..bn {
            for t in 0..lengths[b] {
                l[t * bn + b] = labels[b * tn + t] as u32;
            }
        }
        l
    } else {
        labels.iter().map(|&v| v as u32).collect()
    };
    batch.rows = (0..bn).collect();
    Case {
        name: name.into(),
        config,
        params: tensors(&dir.join("state_dict.safetensors")),
        batch,
        expected: tensors(&dir.join("expected.safetensors")),
    }
}

fn check(name: &str, what: &str, got: f64, want: f64, tol: f64, worst: &mut f64) {
    let err = (got - want).abs() / want.abs().max(1.0);
    assert!(
        err <= tol,
        "{name}: {what}: recur {got}, PyTorch {want} (error {err:.2e} > {tol:.0e})"
    );
    *worst = worst.max(err);
}

/// Sets every tensor of `store` from PyTorch's of the same name and shape,
/// and checks that every PyTorch tensor is used.
fn load_params<T: Float>(store: &mut ParamStore<T>, params: &Tensors64, case: &str) {
    for p in store.info().to_vec() {
        let (shape, v) = params
            .get(&p.name)
            .unwrap_or_else(|| panic!("{case}: PyTorch has no {}", p.name));
        assert_eq!(shape, &p.shape, "{case}: shape of {}", p.name);
        for (d, s) in store.params[p.range()].iter_mut().zip(v) {
            *d = T::from_f64(*s);
        }
    }
    assert_eq!(
        store.info().len(),
        params.len(),
        "{case}: every PyTorch tensor is used"
    );
}

/// Every parameter's gradient against PyTorch's `grad.<name>`.
fn check_grads<T: Float>(
    store: &ParamStore<T>,
    expected: &Tensors64,
    case: &str,
    tol: f64,
    worst: &mut f64,
) {
    for p in store.info() {
        let (_, want) = &expected[&format!("grad.{}", p.name)];
        for (i, (g, w)) in store.grads[p.range()].iter().zip(want).enumerate() {
            check(
                case,
                &format!("grad {}[{i}]", p.name),
                g.to_f64(),
                *w,
                tol,
                worst,
            );
        }
    }
}

/// Runs a case in T; returns the worst error.
fn run<T: Float>(c: &Case, tol: f64) -> f64 {
    let mut m = SeqModel::<T>::zeros(c.config.clone(), SeqMeta::default()).unwrap();
    load_params(&mut m.store, &c.params, &c.name);
    let mut ws = SeqWorkspace::default();
    m.forward(&mut ws, &c.batch, None).unwrap();
    let logits_t = m.predict(&c.batch).unwrap();
    let loss = m.forward_backward_with(&mut ws, &c.batch, None).unwrap();
    let mut worst = 0.0;
    check(
        &c.name,
        "loss",
        loss,
        c.expected["loss"].1[0],
        tol,
        &mut worst,
    );
    // Logits: [B, C] or, tagging, [B, T, C] at the valid steps.
    let (shape, want) = &c.expected["logits"];
    let (bn, tn, o) = (c.batch.batch(), c.batch.steps, c.config.outputs);
    for b in 0..bn {
        let steps = if shape.len() == 3 {
            c.batch.lengths[b]
        } else {
            1
        };
        for t in 0..steps {
            for k in 0..o {
                let (got, w) = if shape.len() == 3 {
                    (logits_t[(t * bn + b) * o + k], want[(b * tn + t) * o + k])
                } else {
                    (logits_t[b * o + k], want[b * o + k])
                };
                check(
                    &c.name,
                    &format!("logits[{b}, {t}, {k}]"),
                    got.to_f64(),
                    w,
                    tol,
                    &mut worst,
                );
            }
        }
    }
    check_grads(&m.store, &c.expected, &c.name, tol, &mut worst);
    worst
}

const CASES: [&str; 7] = [
    "classify_lstm_1l_last",
    "classify_lstm_2l_bi_last",
    "classify_gru_1l_bi_mean",
    "classify_rnn_tanh_2l_max",
    "tag_lstm_1l_bi",
    "tag_lstm_2l_bi",
    "tag_gru_1l",
];

#[test]
fn classifiers_and_taggers_match_pytorch() {
    println!("cases from {}", cases_dir().display());
    for name in CASES {
        let c = load(name);
        let w64 = run::<f64>(&c, 1e-9);
        let w32 = run::<f32>(&c, 1e-5);
        println!(
            "{name}: loss, logits and {} gradients match; worst error f64 {w64:.1e}, f32 {w32:.1e}",
            c.params.len()
        );
    }
}

/// `export_torch_seq` writes exactly PyTorch's state_dict: the same names,
/// shapes and values as the fixture's (so `load_state_dict(strict=True)`
/// takes it; `bench/check_export.py` does that with PyTorch installed).
#[test]
fn export_gives_pytorch_state_dicts() {
    for name in CASES {
        let c = load(name);
        let mut m = SeqModel::<f32>::zeros(c.config.clone(), SeqMeta::default()).unwrap();
        for p in m.store.info().to_vec() {
            for (d, s) in m.store.params[p.range()]
                .iter_mut()
                .zip(&c.params[&p.name].1)
            {
                *d = *s as f32;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        recur::checkpoint::export_torch_seq(dir.path(), &m).unwrap();
        let got = tensors(&dir.path().join("state_dict.safetensors"));
        assert_eq!(got.len(), c.params.len(), "{name}");
        for (k, (shape, v)) in &c.params {
            let (gs, gv) = got
                .get(k)
                .unwrap_or_else(|| panic!("{name}: export lacks {k}"));
            assert_eq!(gs, shape, "{name}: {k}");
            assert_eq!(gv, v, "{name}: {k}");
        }
        println!("{name}: export holds PyTorch's {} tensors", got.len());
    }
}

// ---------------------------------------------------------------------------
// Encoder–decoders: the PyTorch tutorial's GRU with Bahdanau attention.

use recur::data::pairs::PairBatch;
use recur::layer::attention::AttentionKind;
use recur::model::seq2seq::{Decode, Seq2Seq, Seq2SeqConfig, Seq2SeqMeta, Seq2SeqWs};

struct PairCase {
    name: String,
    config: Seq2SeqConfig,
    params: HashMap<String, (Vec<usize>, Vec<f64>)>,
    batch: PairBatch,
    expected: HashMap<String, (Vec<usize>, Vec<f64>)>,
    greedy: Vec<u32>,
    source0: Vec<u32>,
}

fn load_pairs(name: &str) -> PairCase {
    let dir = cases_dir().join(name);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let u = |k: &str| j[k].as_u64().unwrap() as usize;
    let mut config = Seq2SeqConfig::new(u("src_vocab"), u("tgt_vocab"));
    config.cell = CellKind::from_name(j["cell"].as_str().unwrap()).unwrap();
    config.embed = u("embed");
    config.hidden = u("hidden");
    config.attention = AttentionKind::from_name(j["attention"].as_str().unwrap()).unwrap();
    let inputs = tensors(&dir.join("inputs.safetensors"));
    // Batch-first → time-major.
    let tm = |name: &str| -> (usize, Vec<u32>) {
        let (shape, v) = &inputs[name];
        let (bn, tn) = (shape[0], shape[1]);
        let mut out = vec![0u32; tn * bn];
        for b in 0..bn {
            for t in 0..tn {
                out[t * bn + b] = v[b * tn + t].max(0.0) as u32;
            }
        }
        (tn, out)
    };
    let lens = |name: &str| -> Vec<usize> { inputs[name].1.iter().map(|&v| v as usize).collect() };
    let (sn, src) = tm("src");
    let (un, tgt_in) = tm("tgt_in");
    let (_, tgt_out) = tm("tgt_out");
    let src_lengths = lens("src_lengths");
    let bn = src_lengths.len();
    let batch = PairBatch {
        src_steps: sn,
        src_lengths: src_lengths.clone(),
        src: src.clone(),
        tgt_steps: un,
        tgt_lengths: lens("tgt_lengths").iter().map(|l| l + 1).collect(),
        tgt_in,
        tgt_out,
        rows: (0..bn).collect(),
        cond: Vec::new(),
    };
    let source0 = (0..src_lengths[0]).map(|t| src[t * bn]).collect();
    let greedy = j["greedy_source0"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    PairCase {
        name: name.into(),
        config,
        params: tensors(&dir.join("state_dict.safetensors")),
        batch,
        expected: tensors(&dir.join("expected.safetensors")),
        greedy,
        source0,
    }
}

fn run_pairs<T: Float>(c: &PairCase, tol: f64) -> f64 {
    let mut m = Seq2Seq::<T>::zeros(c.config.clone(), Seq2SeqMeta::default()).unwrap();
    load_params(&mut m.store, &c.params, &c.name);
    let mut ws = Seq2SeqWs::default();
    let b = &c.batch;
    let (bn, un, sn, v) = (b.batch(), b.tgt_steps, b.src_steps, c.config.tgt_vocab);
    let mut worst = 0.0;
    // Logits and attention at the valid target steps, before the loss
    // overwrites the logits with their gradient.
    m.forward(&mut ws, b, 1.0, None).unwrap();
    let loss_only = m.loss(&mut ws, b, 0.0, false);
    check(
        &c.name,
        "loss",
        loss_only,
        c.expected["loss"].1[0],
        tol,
        &mut worst,
    );
    let alpha = m.attention_weights(&ws).to_vec();
    let loss = m.forward_backward_with(&mut ws, b, 1.0, None).unwrap();
    check(
        &c.name,
        "loss (train)",
        loss,
        c.expected["loss"].1[0],
        tol,
        &mut worst,
    );
    let want_logits = &c.expected["logits"].1;
    let want_att = &c.expected["attention"].1;
    let mut fresh = Seq2SeqWs::default();
    m.forward(&mut fresh, b, 1.0, None).unwrap();
    let got_logits = m.logits(&fresh).to_vec();
    for bb in 0..bn {
        for u in 0..b.tgt_lengths[bb] {
            for k in 0..v {
                check(
                    &c.name,
                    &format!("logits[{bb}, {u}, {k}]"),
                    got_logits[(u * bn + bb) * v + k].to_f64(),
                    want_logits[(bb * un + u) * v + k],
                    tol,
                    &mut worst,
                );
            }
            for s in 0..sn {
                check(
                    &c.name,
                    &format!("attention[{bb}, {u}, {s}]"),
                    alpha[(u * bn + bb) * sn + s].to_f64(),
                    want_att[(bb * un + u) * sn + s],
                    tol,
                    &mut worst,
                );
            }
        }
    }
    check_grads(&m.store, &c.expected, &c.name, tol, &mut worst);
    // Greedy decoding of source 0, at most 8 tokens, as the fixture's.
    // PyTorch's greedy search does not mask <pad> and <sos>.
    let how = Decode {
        max_len: 8,
        mask_reserved: false,
        ..Decode::default()
    };
    let hyp = &m.translate(&mut ws, &[c.source0.clone()], &how).unwrap()[0][0];
    let mut got = hyp.tokens.clone();
    if hyp.finished {
        got.push(2);
    }
    assert_eq!(got, c.greedy, "{}: greedy decoding of source 0", c.name);
    worst
}

#[test]
fn encoder_decoders_match_pytorch() {
    println!("cases from {}", cases_dir().display());
    for name in ["seq2seq_gru", "seq2seq_gru_1"] {
        let c = load_pairs(name);
        let w64 = run_pairs::<f64>(&c, 1e-9);
        let w32 = run_pairs::<f32>(&c, 1e-5);
        println!(
            "{name}: loss, logits, attention, {} gradients and the greedy decoding match; worst error f64 {w64:.1e}, f32 {w32:.1e}",
            c.params.len()
        );
    }
}
