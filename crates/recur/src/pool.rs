//! A fixed set of worker threads that run one job at a time, split into as
//! many tasks as there are threads, without allocating.
//!
//! Why not rayon: the recurrent GEMM runs once per time step, so a split must
//! cost microseconds and must not allocate (rayon's injector and faer's
//! parallel mode both allocate per call). Workers spin briefly after a job,
//! so back-to-back steps find them awake, then park.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// A job: called once with each task index in 0..tasks.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; workers run a job when they see a new value.
    epoch: AtomicU64,
    /// The current job, valid while `pending > 0`.
    job: UnsafeCell<Option<Job<'static>>>,
    tasks: AtomicUsize,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    /// Held by the thread that owns the workers for the length of a job.
    busy: Mutex<()>,
    /// Workers that have started and reached their loop.
    started: AtomicUsize,
    /// Whether a worker's task panicked in the current job.
    panicked: AtomicBool,
    /// Workers parked (or about to park) on `wake`; a job only takes the
    /// lock and signals when this is non-zero, so back-to-back jobs cost no
    /// system call.
    sleepers: AtomicUsize,
}

// SAFETY: `job` is written only by the holder of `busy` while no worker reads
// it (pending == 0), and read by workers only between the epoch bump
// (Release/Acquire) and their decrement of `pending`.
unsafe impl Sync for Shared {}

/// The worker pool.
pub(crate) struct Pool {
    shared: &'static Shared,
    workers: usize,
}

const SPIN: u32 = 20_000;

impl Pool {
    fn new(workers: usize) -> Pool {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            tasks: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            busy: Mutex::new(()),
            started: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        }));
        for w in 0..workers {
            std::thread::Builder::new()
                .name(format!("recur-{}", w + 1))
                .spawn(move || worker(shared, w + 1))
                .expect("spawning a worker thread");
        }
        // Wait until every worker runs, so that thread start-up (and its
        // allocations) is over before the first job: later calls never
        // overlap it.
        while shared.started.load(Ordering::Acquire) < workers {
            std::thread::yield_now();
        }
        Pool { shared, workers }
    }

    /// Runs `job(i)` for i in 0..tasks, task 0 on the calling thread, and
    /// returns when all are done. Runs them all here when `tasks` exceeds the
    /// workers + 1, or when the pool is already busy (a nested call).
    pub(crate) fn run(&self, tasks: usize, job: Job<'_>) {
        let guard = match self.shared.busy.try_lock() {
            Ok(g) if tasks > 1 && tasks <= self.workers + 1 => g,
            _ => {
                (0..tasks).for_each(job);
                return;
            }
        };
        let s = self.shared;
        // SAFETY: we hold `busy` and pending == 0, so no worker reads `job`;
        // the reference outlives its use because we wait for pending == 0
        // before returning.
        unsafe { *s.job.get() = Some(std::mem::transmute::<Job<'_>, Job<'static>>(job)) };
        s.tasks.store(tasks, Ordering::Relaxed);
        s.pending.store(self.workers, Ordering::Relaxed);
        // SeqCst pairs with the worker's: either it sees the new epoch
        // before it parks, or we see it counted as a sleeper and signal.
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) != 0 {
            drop(s.sleep.lock().unwrap_or_else(|e| e.into_inner()));
            s.wake.notify_all();
        }
        // A panicking task must not unwind past the workers still using
        // `job` (it borrows this frame): wait for them, then re-raise.
        let here = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(0)));
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        unsafe { *s.job.get() = None };
        let there = s.panicked.swap(false, Ordering::AcqRel);
        drop(guard);
        if let Err(e) = here {
            std::panic::resume_unwind(e);
        }
        assert!(
            !there,
            "a task of a parallel job panicked on a worker thread"
        );
    }
}

fn worker(s: &'static Shared, index: usize) {
    let mut seen = 0u64;
    s.started.fetch_add(1, Ordering::Release);
    loop {
        let mut spins = 0;
        while s.epoch.load(Ordering::Acquire) == seen {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            if s.epoch.load(Ordering::SeqCst) == seen {
                drop(s.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
            } else {
                drop(g);
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        seen = s.epoch.load(Ordering::Acquire);
        // SAFETY: see `Shared`.
        if let Some(job) = unsafe { *s.job.get() } {
            if index < s.tasks.load(Ordering::Relaxed) {
                // Counted as done either way; the caller re-raises.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(index)));
                if run.is_err() {
                    s.panicked.store(true, Ordering::Release);
                }
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// The process-wide pool, with one worker fewer than the machine has cores.
pub(crate) fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Pool::new(n.saturating_sub(1))
    })
}

/// How many threads the machine offers: the most a job can use.
pub(crate) fn max_threads() -> usize {
    pool().workers + 1
}

/// Runs `f` on contiguous pieces of `0..len`, one per thread the products
/// use (`gemm::threads`), each at least `min` long: for elementwise work
/// over large buffers, whose result does not depend on the split.
pub(crate) fn par_ranges(len: usize, min: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let tasks = (len / min.max(1)).clamp(1, crate::gemm::threads());
    if tasks == 1 {
        f(0..len);
        return;
    }
    // Pieces start on 64-byte lines (16 f32s).
    let chunk = len.div_ceil(tasks).next_multiple_of(16);
    pool().run(tasks, &|i| {
        let (lo, hi) = ((i * chunk).min(len), ((i + 1) * chunk).min(len));
        if lo < hi {
            f(lo..hi);
        }
    });
}

/// Runs `f` on rows 0..n/2 here and n/2..n on a worker, at once: the two
/// halves of a batch whose rows are independent.
pub(crate) fn row_halves(n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let half = n / 2;
    pool().run(2, &|i| f(if i == 0 { 0..half } else { half..n }));
}

/// Runs `a` and `b` at once, `b` on a worker (both here when the pool has
/// no worker or is busy): the two directions of a bidirectional layer.
pub(crate) fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    pool().run(2, &|i| {
        if i == 0 {
            if let Some(f) = a.lock().unwrap_or_else(|e| e.into_inner()).take() {
                f();
            }
        } else if let Some(f) = b.lock().unwrap_or_else(|e| e.into_inner()).take() {
            f();
        }
    });
}
