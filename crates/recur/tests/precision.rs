//! Inference with bf16 and int8 weights (`recur::quant`) through whole
//! language models: close to f32, really reduced (not silently f32), back
//! to f32 exactly, the same at 1 and 2 threads, and refused for training.

use recur::data::LmBatch;
use recur::model::lm::{LanguageModel, LmConfig, LmWorkspace};
use recur::optim::OptimizerKind;
use recur::quant::Precision;
use recur::train::{Model, TrainConfig, Trainer};
use recur::CellKind;

/// The thread count and the portable switch are process-wide: the tests
/// take turns.
static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CELLS: [CellKind; 5] = CellKind::ALL;

/// A model whose widths are not multiples of the kernels' 64.
fn model(cell: CellKind) -> LanguageModel {
    let cfg = LmConfig {
        cell,
        vocab_size: 50,
        embed: 24,
        hidden: 72,
        layers: 2,
        dropout: 0.0,
    };
    LanguageModel::new(cfg, 7).unwrap()
}

fn ids(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 31 + seed * 17) % 50).collect()
}

fn logits(m: &LanguageModel, x: &[u32], t: usize, b: usize) -> Vec<f32> {
    let mut ws = LmWorkspace::new();
    m.forward(&mut ws, x, t, b, None).unwrap();
    ws.logits().to_vec()
}

/// The largest |a − b|, and the largest |a|.
fn diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    a.iter().zip(b).fold((0.0f32, 0.0f32), |(d, m), (x, y)| {
        (d.max((x - y).abs()), m.max(x.abs()))
    })
}

#[test]
fn reduced_precision_logits_are_close_to_f32_and_not_equal() {
    let (t, b) = (9, 3);
    let x = ids(t * b, 1);
    for cell in CELLS {
        let mut m = model(cell);
        let exact = logits(&m, &x, t, b);
        // bf16 keeps 8 significant bits and int8 about 7: products of 72
        // terms stay within a few hundredths of logits of size ~0.5.
        for (p, tol) in [(Precision::Bf16, 0.02), (Precision::Int8, 0.03)] {
            m.set_precision(p).unwrap();
            assert_eq!(m.precision(), p);
            let got = logits(&m, &x, t, b);
            let (d, scale) = diff(&got, &exact);
            assert!(
                d > 0.0,
                "{cell:?} {p}: identical to f32, so the weights were not converted"
            );
            assert!(
                d <= tol * scale.max(1.0),
                "{cell:?} {p}: logits differ by {d} (scale {scale})"
            );
        }
        m.set_precision(Precision::F32).unwrap();
        assert_eq!(
            logits(&m, &x, t, b),
            exact,
            "{cell:?}: f32 again is the model's own weights"
        );
    }
}

/// Generation runs the model one token at a time; the whole sequence at
/// once must give the same logits in every precision, also when the whole
/// sequence (T·B ≥ 2·V) multiplies the embedding table by the first
/// layer's input weight instead of each row.
#[test]
fn one_step_at_a_time_matches_the_whole_sequence() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    for (t, b) in [(6, 1), (60, 2)] {
        let x = ids(t * b, 2);
        for cell in [CellKind::Lstm, CellKind::GruResetBefore] {
            for p in [Precision::Bf16, Precision::Int8] {
                let mut m = model(cell);
                m.set_precision(p).unwrap();
                let whole = logits(&m, &x, t, b);
                let mut ws = LmWorkspace::new();
                let mut steps = Vec::new();
                for row in x.chunks_exact(b) {
                    m.forward(&mut ws, row, 1, b, None).unwrap();
                    steps.extend_from_slice(ws.logits());
                }
                assert_eq!(steps, whole, "{cell:?} {p} T={t} B={b}");
            }
        }
    }
}

/// At B·H ≥ 4,096 two threads run each layer's steps on half the rows
/// each (B = 64 here); below, they share each step's product.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    for (t, b) in [(20, 8), (10, 64)] {
        let x = ids(t * b, 3);
        for cell in CELLS {
            for p in [Precision::Bf16, Precision::Int8] {
                let mut m = model(cell);
                m.set_precision(p).unwrap();
                recur::gemm::set_threads(1);
                let one = logits(&m, &x, t, b);
                recur::gemm::set_threads(2);
                let two = logits(&m, &x, t, b);
                recur::gemm::set_threads(0);
                assert_eq!(one, two, "{cell:?} {p} T={t} B={b}");
            }
        }
    }
}

/// The rows split of packed layers with ragged rows (sorted longest first,
/// and not), a skip connection and a leak: the same numbers at 1 and 2
/// threads.
#[test]
fn ragged_rows_split_like_one_thread() {
    use recur::{Leak, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let (t, b, inp, h) = (7, 64, 24, 72);
    let x: Vec<f32> = (0..t * b * inp)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let sorted: Vec<usize> = (0..b).map(|r| t - r * t / b).collect();
    let unsorted: Vec<usize> = (0..b).map(|r| 1 + (r * 5) % t).collect();
    let configs = CELLS
        .map(|cell| (cell.name(), RnnConfig::new(cell, inp, h).layers(2)))
        .into_iter()
        .chain([
            (
                "rnn-tanh, skip",
                RnnConfig::new(CellKind::RnnTanh, inp, h).skip(2),
            ),
            (
                "rnn-tanh, leaky",
                RnnConfig::new(CellKind::RnnTanh, inp, h).leak(Leak::Fixed(0.5)),
            ),
        ]);
    for (what, cfg) in configs {
        let mut store = ParamStore::<f32>::new();
        let rnn = Rnn::new(store.root(), cfg).unwrap();
        rnn.init_uniform(&mut store, 5);
        store.pack(Precision::Bf16, &rnn.product_weights()).unwrap();
        for lengths in [None, Some(&sorted[..]), Some(&unsorted[..])] {
            let run = |threads: usize| {
                recur::gemm::set_threads(threads);
                let mut ws = RnnWorkspace::new();
                let mut input = RnnInput::new(&x, t, b);
                input.lengths = lengths;
                rnn.forward(&store, &mut ws, input, None).unwrap();
                (ws.output().to_vec(), ws.h_n().to_vec())
            };
            let (one, two) = (run(1), run(2));
            recur::gemm::set_threads(0);
            assert!(one == two, "{what} ragged={}", lengths.is_some());
        }
    }
}

#[test]
fn a_converted_model_refuses_to_train() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut m = model(CellKind::Gru);
    m.set_precision(Precision::Int8).unwrap();
    let batch = LmBatch {
        inputs: ids(8, 4),
        targets: ids(8, 5),
        steps: 4,
        batch: 2,
    };
    let mut ws = LmWorkspace::new();
    let e = m
        .forward_backward_with(&mut ws, &batch.inputs, &batch.targets, 4, 2, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("converted to int8 for inference"), "{e}");
    struct One(LmBatch);
    impl recur::train::Data for One {
        type Batch = LmBatch;
        fn steps_per_epoch(&self) -> Option<usize> {
            Some(1)
        }
        fn fill(&mut self, _: usize, _: usize, b: &mut LmBatch) -> recur::Result<()> {
            *b = self.0.clone();
            Ok(())
        }
        fn tokens_per_step(&self) -> usize {
            8
        }
        fn validation(&self) -> &[LmBatch] {
            &[]
        }
        fn fingerprint(&self) -> u64 {
            0
        }
    }
    // The trainer sets the run's own precision: f32 drops the conversion
    // (the f32 weights were kept), int8 is refused.
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, 1e-3);
    cfg.precision = Precision::Int8;
    let e = Trainer::new(m.clone(), One(batch.clone()), cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("training runs in f32 or bf16"), "{e}");
    let mut run = Trainer::new(m, One(batch), TrainConfig::new(OptimizerKind::Adam, 1e-3)).unwrap();
    run.train_step().unwrap();
    assert_eq!(run.model.precision(), Precision::F32);
}

/// Where the CPU lacks AVX512-BF16 or AVX512-VNNI the portable loops run:
/// the same integers for int8, the same bf16 products summed in another
/// order for bf16.
#[test]
fn the_portable_path_gives_the_same_results() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let (t, b) = (5, 4);
    let x = ids(t * b, 6);
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let mut m = model(cell);
        for p in [Precision::Int8, Precision::Bf16] {
            m.set_precision(p).unwrap();
            let native = logits(&m, &x, t, b);
            recur::quant::force_portable(true);
            let portable = logits(&m, &x, t, b);
            recur::quant::force_portable(false);
            if p == Precision::Int8 {
                assert_eq!(native, portable, "{cell:?} int8");
            } else {
                let (d, scale) = diff(&native, &portable);
                assert!(d <= 1e-4 * scale.max(1.0), "{cell:?} bf16: {d}");
            }
        }
    }
}

fn batch(t: usize, b: usize, seed: u32) -> LmBatch {
    LmBatch {
        inputs: ids(t * b, seed),
        targets: ids(t * b, seed + 1),
        steps: t,
        batch: b,
    }
}

/// ‖a − b‖ / ‖b‖.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / n).sqrt()
}

/// Training in bf16 rounds every weight product's operands (forward, the
/// gradients back through the weights, and the weight gradients). Rounding
/// the weights alone moves these small models' gradients at their initial
/// point by up to half (they are sums that cancel), so the reference is
/// f32's gradient at the weights bf16 multiplies by (the product weights
/// rounded): every cell's bf16 gradient is within 2% of it (ReLU's 15%), and
/// differs from it in every tensor (the products really ran in bf16).
#[test]
fn bf16_training_gradients_are_close_to_f32() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let (t, b) = (11, 5);
    let x = batch(t, b, 2);
    // A fresh workspace each time: a workspace carries the state on.
    let grads = |m: &mut LanguageModel| {
        let loss = m
            .forward_backward_with(&mut LmWorkspace::new(), &x.inputs, &x.targets, t, b, None)
            .unwrap();
        (loss, m.store().grads.clone())
    };
    for cell in CELLS {
        let mut m = model(cell);
        let mut rounded = m.clone();
        for info in m.store().info() {
            if info.shape.len() == 2 {
                for v in &mut rounded.store_mut().params[info.range()] {
                    *v = f32::from_bits(
                        (v.to_bits() + 0x7fff + ((v.to_bits() >> 16) & 1)) & 0xffff_0000,
                    );
                }
            }
        }
        let (l32, g32) = grads(&mut rounded);
        m.set_training_precision(Precision::Bf16).unwrap();
        assert_eq!(m.precision(), Precision::Bf16);
        let (l16, g16) = grads(&mut m);
        let e = rel(&g16, &g32);
        eprintln!("{cell:?}: loss {l32:.6} / {l16:.6}, gradient relative error {e:.2e}");
        for info in m.store().info() {
            let r = info.range();
            assert!(g16[r.clone()] != g32[r], "{cell:?}: {} is f32's", info.name);
        }
        // ReLU's derivative jumps where a pre-activation crosses 0, which
        // rounding moves: 7% here, against 0.3–0.8% for the smooth cells.
        let bound = if cell == CellKind::RnnRelu {
            0.15
        } else {
            0.02
        };
        assert!(e < bound, "{cell:?}: {e}");
        assert!((l16 - l32).abs() < 1e-3 * l32, "{cell:?}: {l16} vs {l32}");
    }
}

/// bf16 training's gradients at 1 and 2 threads, where two threads split
/// each layer's rows (B·H ≥ 4,096) or each step: the same numbers.
#[test]
fn bf16_training_does_not_depend_on_the_thread_count() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    // T odd and even: the row halves flip between two dL/dh buffers.
    for (t, b) in [(6, 64), (7, 64), (6, 8)] {
        let x = batch(t, b, 4);
        for cell in CELLS {
            let run = |threads: usize| {
                recur::gemm::set_threads(threads);
                let mut m = model(cell);
                m.set_training_precision(Precision::Bf16).unwrap();
                m.forward_backward_with(&mut LmWorkspace::new(), &x.inputs, &x.targets, t, b, None)
                    .unwrap();
                m.store().grads.clone()
            };
            let (one, two) = (run(1), run(2));
            recur::gemm::set_threads(0);
            assert!(one == two, "{cell:?} T={t} B={b}");
        }
    }
}

/// A bf16 run stays within 1% of the f32 run's loss at the same step; its
/// packed copies follow every update (its logits equal those of its f32
/// weights converted afresh); and 1 and 2 threads give the same numbers.
#[test]
fn bf16_training_follows_f32_and_repacks_every_step() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    struct Cycle(Vec<LmBatch>);
    impl recur::train::Data for Cycle {
        type Batch = LmBatch;
        fn steps_per_epoch(&self) -> Option<usize> {
            Some(self.0.len())
        }
        fn fill(&mut self, _: usize, s: usize, b: &mut LmBatch) -> recur::Result<()> {
            *b = self.0[s].clone();
            Ok(())
        }
        fn tokens_per_step(&self) -> usize {
            self.0[0].inputs.len()
        }
        fn validation(&self) -> &[LmBatch] {
            &[]
        }
        fn fingerprint(&self) -> u64 {
            0
        }
    }
    let (t, b) = (16, 8);
    let data = || Cycle((0..4).map(|s| batch(t, b, 10 + s)).collect());
    let run = |precision: Precision, threads: usize| {
        recur::gemm::set_threads(threads);
        let mut cfg = TrainConfig::new(OptimizerKind::Adam, 3e-3);
        cfg.precision = precision;
        let mut run = Trainer::new(model(CellKind::Lstm), data(), cfg).unwrap();
        let losses: Vec<f64> = (0..40).map(|_| run.train_step().unwrap().loss).collect();
        recur::gemm::set_threads(0);
        (losses, run.model)
    };
    let (l32, _) = run(Precision::F32, 2);
    let (l16, mut m16) = run(Precision::Bf16, 2);
    let (l16_1, _) = run(Precision::Bf16, 1);
    assert_eq!(l16, l16_1, "1 and 2 threads");
    let (a, z) = (l32[39], l16[39]);
    eprintln!(
        "loss at step 40: f32 {a:.5}, bf16 {z:.5} (from {:.5})",
        l32[0]
    );
    assert!(a < 0.9 * l32[0], "it learns: {l32:?}");
    assert!((z - a).abs() < 0.01 * a, "{z} vs {a}");
    let x = ids(t * b, 3);
    let trained = logits(&m16, &x, t, b);
    m16.set_precision(Precision::Bf16).unwrap();
    assert_eq!(trained, logits(&m16, &x, t, b));
}
