//! A whole training step (batch, forward, loss, backward, clipping,
//! optimiser) allocates nothing once warmed up, for the language model
//! with dropout across an epoch boundary and for task nets. (Its own test
//! binary, one test, so nothing else allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use recur::data::{tokenize, Level, LmData, Vocab};
use recur::model::lm::{LanguageModel, LmConfig};
use recur::optim::OptimizerKind;
use recur::task::{TaskCell, TaskConfig, TaskData, TaskKind, TaskNet};
use recur::train::{Data, Model, TrainConfig, Trainer};
use recur::CellKind;

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

#[test]
fn training_steps_allocate_nothing_after_warm_up() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(40);
    let tokens = tokenize(&text, Level::Char);
    let vocab = Vocab::build(Level::Char, &tokens, 1).unwrap();
    let ids = vocab.encode(&tokens, "text").unwrap();
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh] {
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
        let mut t = Trainer::new(model, data, tc).unwrap();
        // The first step sizes every buffer (the counter does count), then
        // warm up within the first epoch and cross into the next.
        assert!(steps(&mut t, 0, 1) > 0);
        let n = steps(&mut t, 1, spe + 2);
        println!("{}: {n} allocations in {} steps", cell.name(), spe + 2);
        assert_eq!(n, 0, "{}: a training step allocated", cell.name());
    }
    for cell in [TaskCell::Tanh, TaskCell::Jordan, TaskCell::Lstm] {
        let cfg = TaskConfig {
            batch: 8,
            test_size: 8,
            hidden: 32,
            ..TaskConfig::new(TaskKind::Adding, cell)
        };
        let net = TaskNet::new(cfg.clone()).unwrap();
        let mut t = Trainer::new(
            net,
            TaskData::new(&cfg),
            TrainConfig::new(OptimizerKind::Adam, 1e-3),
        )
        .unwrap();
        let n = steps(&mut t, 2, 5);
        assert_eq!(n, 0, "{}: a training step allocated", cell.name());
    }
}
