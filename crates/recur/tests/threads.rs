//! The same numbers at 1 and 2 threads: every product's output element is
//! one whole dot product whoever computes it, the two directions of a
//! bidirectional layer compute the same steps on one core each as on two,
//! the pointwise kernels compute each row alike whichever half of the rows
//! a thread takes, and the optimiser's update is elementwise. (One test in its own binary:
//! the thread count is process-wide.)

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;
use recur::data::seq::SeqData;
use recur::model::seq::{CharConfig, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask};
use recur::optim::OptimizerKind;
use recur::train::{TrainConfig, Trainer};

fn train(threads: usize, cell: recur::CellKind) -> Vec<f32> {
    train_with(threads, cell, true, recur::quant::Precision::F32)
}

fn train_with(
    threads: usize,
    cell: recur::CellKind,
    bidirectional: bool,
    precision: recur::quant::Precision,
) -> Vec<f32> {
    recur::gemm::set_threads(threads);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (ex, table) = common::tagged_examples(&mut rng, 96, 2..30, 300, 5, 9, 40);
    // Wide enough that the products, and the pointwise kernels (B·H ≥
    // 4,096), split across threads.
    let mut c = SeqConfig::new(
        SeqTask::Tag,
        SeqInput::Tokens {
            vocab: 300,
            embed: 64,
        },
        5,
    );
    c.cell = cell;
    // One direction: H = 128 keeps B·H at 4,096 and the recurrent weight
    // small enough that backward splits by rows too.
    c.hidden = if bidirectional { 256 } else { 128 };
    c.layers = 2;
    c.bidirectional = bidirectional;
    // A learned initial state: its gradient is dL/dh0 summed over rows.
    c.learned_init = !bidirectional;
    c.dropout = 0.2;
    c.chars = Some(CharConfig {
        vocab: 44,
        embed: 16,
        hidden: 32,
    });
    let m = SeqModel::<f32>::new(c, SeqMeta::default(), 3).unwrap();
    let d = SeqData::new(ex, &[], table, 32, 3)
        .unwrap()
        .with_unk_chance(vec![0.1; 300]);
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, 2e-3);
    cfg.clip_norm = 5.0;
    cfg.precision = precision;
    let mut t = Trainer::new(m, d, cfg).unwrap();
    for _ in 0..6 {
        t.train_step().unwrap();
    }
    t.model.store.params.clone()
}

#[test]
fn one_and_two_threads_give_the_same_numbers() {
    use recur::CellKind;
    for cell in [
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::GruResetBefore,
        CellKind::RnnTanh,
    ] {
        let (one, two) = (train(1, cell), train(2, cell));
        let differ = one
            .iter()
            .zip(&two)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{}: {differ} of {} parameters differ",
            cell.name(),
            one.len()
        );
    }
    // One direction in bf16: two threads run each layer's rows in halves
    // through the whole sequence, ragged rows included.
    for cell in CellKind::ALL {
        let bf16 = recur::quant::Precision::Bf16;
        let (one, two) = (
            train_with(1, cell, false, bf16),
            train_with(2, cell, false, bf16),
        );
        assert!(
            one.iter()
                .zip(&two)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{} bf16, one direction: parameters differ between 1 and 2 threads",
            cell.name()
        );
    }
    // A language model whose batches (T·B ≥ 2·V) take the first layer's
    // input through the embedding table's product and scatter its
    // gradient back, and whose kernels split (B·H ≥ 4,096).
    let lm = |threads: usize| {
        use recur::model::lm::{LanguageModel, LmConfig, LmWorkspace};
        recur::gemm::set_threads(threads);
        let cfg = LmConfig {
            cell: CellKind::Lstm,
            vocab_size: 50,
            embed: 32,
            hidden: 128,
            layers: 2,
            dropout: 0.0,
        };
        let mut m = LanguageModel::new(cfg, 4).unwrap();
        let mut ws = LmWorkspace::new();
        let (t, b) = (20usize, 32usize);
        let x: Vec<u32> = (0..(t * b) as u32).map(|i| (i * 7 + i / 13) % 50).collect();
        let y: Vec<u32> = x.iter().map(|&i| (i * 3 + 1) % 50).collect();
        m.forward_backward_with(&mut ws, &x, &y, t, b, None)
            .unwrap();
        m.store.grads.clone()
    };
    let (one, two) = (lm(1), lm(2));
    recur::gemm::set_threads(0);
    assert!(
        one.iter()
            .zip(&two)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "language model: gradients differ between 1 and 2 threads"
    );
}
