//! Inference with bf16 and int8 weights (`recur::quant`) through whole
//! language models: close to f32, really reduced (not silently f32), back
//! to f32 exactly, the same at 1 and 2 threads, and refused for training.

use recur::data::LmBatch;
use recur::model::lm::{LanguageModel, LmConfig, LmWorkspace};
use recur::optim::OptimizerKind;
use recur::quant::Precision;
use recur::train::{TrainConfig, Trainer};
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
/// once must give the same logits in every precision.
#[test]
fn one_step_at_a_time_matches_the_whole_sequence() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = 6;
    let x = ids(t, 2);
    for cell in [CellKind::Lstm, CellKind::GruResetBefore] {
        for p in [Precision::Bf16, Precision::Int8] {
            let mut m = model(cell);
            m.set_precision(p).unwrap();
            let whole = logits(&m, &x, t, 1);
            let mut ws = LmWorkspace::new();
            let mut steps = Vec::new();
            for &id in &x {
                m.forward(&mut ws, &[id], 1, 1, None).unwrap();
                steps.extend_from_slice(ws.logits());
            }
            assert_eq!(steps, whole, "{cell:?} {p}");
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let _turn = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let (t, b) = (20, 8);
    let x = ids(t * b, 3);
    for p in [Precision::Bf16, Precision::Int8] {
        let mut m = model(CellKind::Lstm);
        m.set_precision(p).unwrap();
        recur::gemm::set_threads(1);
        let one = logits(&m, &x, t, b);
        recur::gemm::set_threads(2);
        let two = logits(&m, &x, t, b);
        recur::gemm::set_threads(0);
        assert_eq!(one, two, "{p}");
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
    assert!(
        e.contains("training runs in f32") && e.contains("int8"),
        "{e}"
    );
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
    let e = Trainer::new(m, One(batch), TrainConfig::new(OptimizerKind::Adam, 1e-3))
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("training runs in f32"), "{e}");
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
