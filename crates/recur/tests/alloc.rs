//! No heap allocation once warmed up: in a layer's forward + backward pass
//! once the workspace has been sized (the time loop, the kernels and the
//! GEMMs), and in a whole training step (batch, forward, loss, backward,
//! clipping, optimiser) of the language model with dropout across an epoch
//! boundary (with the gradient-decay regulariser too), of the fixed-window
//! model and of task nets. (One test in its own binary, so nothing else
//! allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use recur::data::seq::SeqData;
use recur::data::{tokenize, Level, LmData, Vocab};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::model::seq::{CharConfig, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask};
use recur::model::window::{WindowConfig, WindowLm};
use recur::optim::OptimizerKind;
use recur::task::{TaskCell, TaskConfig, TaskData, TaskKind, TaskNet};
use recur::train::{Data, Model, TrainConfig, Trainer};
use recur::{CellKind, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};

mod common;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by one training pass (forward with dropout, backward).
#[allow(clippy::too_many_arguments)]
fn pass(
    rnn: &Rnn,
    store: &mut ParamStore<f32>,
    ws: &mut RnnWorkspace<f32>,
    x: &[f32],
    t: usize,
    b: usize,
    lengths: &[usize],
    dy: &[f32],
) -> usize {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let before = ALLOCS.load(Ordering::SeqCst);
    rnn.forward(
        store,
        ws,
        RnnInput::new(x, t, b).lengths(lengths),
        Some(&mut rng),
    )
    .unwrap();
    rnn.backward(store, ws, dy, None, None).unwrap();
    ALLOCS.load(Ordering::SeqCst) - before
}

/// A layer's forward and backward, after the first pass.
fn layer_passes() {
    // Small shapes use single-threaded GEMMs, the last one large enough for
    // faer to split products across threads.
    let shapes = [(3, 7, 9, 4), (16, 64, 20, 8), (256, 256, 16, 64)];
    for cell in [
        CellKind::RnnTanh,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::GruResetBefore,
    ] {
        for (i, h, t, b) in shapes {
            let cfg = RnnConfig::new(cell, i, h)
                .layers(2)
                .bidirectional(true)
                .dropout(0.2);
            let mut store = ParamStore::new();
            let rnn = Rnn::new(store.root(), cfg.clone()).unwrap();
            rnn.init_uniform(&mut store, 1);
            let x = vec![0.3f32; t * b * i];
            let dy = vec![0.1f32; t * b * cfg.output()];
            let lengths: Vec<usize> = (0..b).map(|k| t - k % t.min(3)).collect();
            let mut ws = RnnWorkspace::new();
            let first = pass(&rnn, &mut store, &mut ws, &x, t, b, &lengths, &dy);
            // A shorter batch reuses the buffers of the longer one.
            let shorter = pass(
                &rnn,
                &mut store,
                &mut ws,
                &x[..(t - 1) * b * i],
                t - 1,
                b,
                &vec![t - 1; b],
                &dy[..(t - 1) * b * cfg.output()],
            );
            let again = pass(&rnn, &mut store, &mut ws, &x, t, b, &lengths, &dy);
            println!("{} I={i} H={h} T={t} B={b}: first pass {first} allocations, then {shorter} and {again}", cell.name());
            assert!(first > 0);
            assert_eq!(
                shorter,
                0,
                "{} {:?}: allocations on a smaller shape",
                cell.name(),
                (i, h, t, b)
            );
            assert_eq!(
                again,
                0,
                "{} {:?}: allocations on a repeated pass",
                cell.name(),
                (i, h, t, b)
            );
        }
    }
}

/// Allocations made by `n` training steps after `warm` warm-up steps.
fn steps<M: Model, D: Data<Batch = M::Batch>>(
    t: &mut Trainer<M, D>,
    warm: usize,
    n: usize,
) -> usize {
    for _ in 0..warm {
        t.train_step().unwrap();
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..n {
        t.train_step().unwrap();
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

/// A whole training step, after warm-up.
fn training_steps() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(40);
    let tokens = tokenize(&text, Level::Char);
    let vocab = Vocab::build(Level::Char, &tokens, 1).unwrap();
    let ids = vocab.encode(&tokens, "text").unwrap();
    use recur::quant::Precision;
    for (cell, precision) in [
        (CellKind::Lstm, Precision::F32),
        (CellKind::Gru, Precision::F32),
        (CellKind::RnnTanh, Precision::F32),
        (CellKind::Lstm, Precision::Bf16),
        (CellKind::GruResetBefore, Precision::Bf16),
    ] {
        let cfg = LmConfig {
            cell,
            vocab_size: vocab.len(),
            embed: 16,
            hidden: 64,
            layers: 2,
            dropout: 0.2,
        };
        let model = LanguageModel::new(cfg, 1).unwrap();
        let data = LmData::new(&ids, vocab.clone(), 8, 20, 0.0, "text").unwrap();
        let spe = data.steps_per_epoch().unwrap();
        let mut tc = TrainConfig::new(OptimizerKind::Adam, 1e-3);
        tc.clip_norm = 1.0;
        tc.clip_value = 0.5;
        tc.precision = precision;
        let mut t = Trainer::new(model, data, tc).unwrap();
        // The first step sizes every buffer (the counter does count), then
        // warm up within the first epoch and cross into the next.
        assert!(steps(&mut t, 0, 1) > 0);
        let n = steps(&mut t, 1, spe + 2);
        println!(
            "{} {precision}: {n} allocations in {} steps",
            cell.name(),
            spe + 2
        );
        assert_eq!(
            n,
            0,
            "{} {precision}: a training step allocated",
            cell.name()
        );
    }
    // The gradient-decay regulariser's second pass (a one-layer Elman
    // model), and the fixed-window model through its table with dropout.
    let data = || LmData::new(&ids, vocab.clone(), 8, 20, 0.0, "text").unwrap();
    let spe = data().steps_per_epoch().unwrap();
    let adam = || TrainConfig::new(OptimizerKind::Adam, 1e-3);
    let mut elman = LanguageModel::new(
        LmConfig {
            cell: CellKind::RnnTanh,
            vocab_size: vocab.len(),
            embed: 16,
            hidden: 64,
            layers: 1,
            dropout: 0.2,
        },
        1,
    )
    .unwrap();
    elman.set_gradient_regulariser(1.0).unwrap();
    let mut t = Trainer::new(elman, data(), adam()).unwrap();
    let n = steps(&mut t, 2, spe + 2);
    assert_eq!(
        n, 0,
        "the regularised Elman model's training step allocated"
    );
    let window = WindowLm::<f32>::new(
        WindowConfig {
            vocab_size: vocab.len(),
            context: 8,
            embed: 8,
            hidden: 32,
            dropout: 0.2,
            embed_dropout: 0.1,
        },
        1,
    )
    .unwrap();
    let mut t = Trainer::new(window, data(), adam()).unwrap();
    let n = steps(&mut t, 2, spe + 2);
    assert_eq!(n, 0, "the fixed-window model's training step allocated");
    for cell in [
        TaskCell::Tanh,
        TaskCell::Jordan,
        TaskCell::Lstm,
        TaskCell::Phased,
    ] {
        let cfg = TaskConfig {
            batch: 8,
            test_size: 8,
            hidden: 32,
            ..TaskConfig::new(TaskKind::Adding, cell)
        };
        let net = TaskNet::new(cfg.clone()).unwrap();
        let mut t = Trainer::new(
            net,
            TaskData::new(&cfg).unwrap(),
            TrainConfig::new(OptimizerKind::Adam, 1e-3),
        )
        .unwrap();
        let n = steps(&mut t, 2, 5);
        assert_eq!(n, 0, "{}: a training step allocated", cell.name());
    }
    // A tagger with a character encoder on ragged, bucketed batches: after
    // two epochs every buffer has its largest size, and a third epoch
    // (its plan, batches, word dropout, both encoders) allocates nothing.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (examples, table) = common::tagged_examples(&mut rng, 40, 1..12, 30, 3, 7, 9);
    let mut cfg = SeqConfig::new(
        SeqTask::Tag,
        SeqInput::Tokens {
            vocab: 30,
            embed: 8,
        },
        3,
    );
    cfg.hidden = 16;
    cfg.layers = 2;
    cfg.bidirectional = true;
    cfg.dropout = 0.2;
    cfg.chars = Some(CharConfig {
        vocab: 12,
        embed: 4,
        hidden: 5,
    });
    let model = SeqModel::<f32>::new(cfg, SeqMeta::default(), 1).unwrap();
    let data = SeqData::new(examples, &[], table, 8, 1)
        .unwrap()
        .with_unk_chance(vec![0.3; 30]);
    let mut t = Trainer::new(model, data, TrainConfig::new(OptimizerKind::Adam, 1e-3)).unwrap();
    let n = steps(&mut t, 10, 6);
    assert_eq!(n, 0, "a tagger's training step allocated");
}

/// Inference with bf16 and int8 weights: a batched forward pass and
/// token-by-token steps (generation), threaded products included.
fn reduced_precision_inference() {
    use recur::model::lm::LmWorkspace;
    use recur::quant::Precision;
    for cell in [CellKind::Lstm, CellKind::GruResetBefore] {
        for precision in [Precision::Bf16, Precision::Int8] {
            let cfg = LmConfig {
                cell,
                vocab_size: 40,
                embed: 32,
                hidden: 256,
                layers: 2,
                dropout: 0.0,
            };
            let mut m = LanguageModel::new(cfg, 3).unwrap();
            m.set_precision(precision).unwrap();
            let ids: Vec<u32> = (0..20 * 8).map(|i| (i * 7 % 40) as u32).collect();
            let mut ws = LmWorkspace::new();
            let run = |ws: &mut LmWorkspace| {
                m.forward(ws, &ids, 20, 8, None).unwrap();
                ws.reset_state();
                for &id in &ids[..20] {
                    m.forward(ws, &[id], 1, 1, None).unwrap();
                }
                ws.reset_state();
            };
            run(&mut ws);
            let before = ALLOCS.load(Ordering::SeqCst);
            run(&mut ws);
            let n = ALLOCS.load(Ordering::SeqCst) - before;
            assert_eq!(n, 0, "{cell:?} {precision}: {n} allocations after warm-up");
        }
    }
}

#[test]
fn nothing_allocates_after_warm_up() {
    layer_passes();
    training_steps();
    reduced_precision_inference();
}
