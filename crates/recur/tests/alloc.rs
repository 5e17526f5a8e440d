//! No heap allocation in a forward + backward pass once the workspace has
//! been sized: the time loop, the kernels and the GEMMs allocate nothing.
//! (One test in its own binary, so nothing else allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use recur::{CellKind, ParamStore, Rnn, RnnConfig, RnnInput, RnnWorkspace};

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

#[test]
fn second_pass_allocates_nothing() {
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
