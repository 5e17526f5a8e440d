//! Matrix multiply: the one place that calls faer.
//!
//! Conventions (as in BLAS, but row-major only):
//! - every matrix is a row-major slice with a leading dimension (`ld`), the
//!   distance in elements between the starts of two consecutive rows;
//! - [`Trans::N`] uses a stored matrix as it is, [`Trans::T`] uses its
//!   transpose: `a` with `Trans::T` is stored as `[k, m]` and read as `[m, k]`;
//! - `c = op(a) · op(b)` when `accumulate` is false, `c += op(a) · op(b)`
//!   when it is true.
//!
//! Products under [`PAR_MIN_FLOPS`] run on the calling thread: below a few
//! MFLOP, handing work to a second thread costs more than it saves. Larger
//! ones are split into one block of output columns (or rows, whichever
//! dimension is larger) per thread, each computed by faer's sequential
//! kernel. The split depends only on the shape and the thread count, and
//! every output element is a whole dot product computed by one thread, so
//! results are repeatable; and unlike faer's own parallel mode (which
//! allocates on every call) nothing is allocated, so the split is safe inside
//! the time loop.

use std::sync::atomic::{AtomicUsize, Ordering};

use faer::{Accum, MatMut, MatRef, Par};

use crate::pool::{max_threads, pool};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// Products with fewer floating-point operations than this run single-threaded.
pub const PAR_MIN_FLOPS: usize = 2_000_000;

/// Products with at most 8 rows whose `op(b)` has at least this many
/// elements are split across threads however few their operations: they
/// are bound by memory bandwidth (matrix-vector products in generation).
pub const PAR_MIN_STREAM: usize = 128 * 1024;

/// 0 means "every core".
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads a large product may use (0: one per core).
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The number of threads a large product uses.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => max_threads(),
        n => n.min(max_threads()),
    }
}

/// Element types faer multiplies; implemented for f32 and f64 only.
pub trait GemmScalar: Sized + Copy + Send + Sync {
    /// See [`gemm`].
    #[allow(clippy::too_many_arguments)]
    fn gemm_impl(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        lda: usize,
        ta: Trans,
        b: &[Self],
        ldb: usize,
        tb: Trans,
        c: &mut [Self],
        ldc: usize,
        accumulate: bool,
    );
}

/// The products of activations with a contiguous weight: the same nine
/// arguments, the weight used as stored or transposed.
macro_rules! weight_product {
    ($(#[$doc:meta])* $name:ident, $tb:expr, |$n:ident, $k:ident| $ldb:expr) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        #[inline]
        pub fn $name<T: GemmScalar>(
            m: usize,
            $n: usize,
            $k: usize,
            a: &[T],
            lda: usize,
            b: &[T],
            c: &mut [T],
            ldc: usize,
            accumulate: bool,
        ) {
            gemm(m, $n, $k, a, lda, Trans::N, b, $ldb, $tb, c, ldc, accumulate)
        }
    };
}

weight_product!(
    /// `c (+)= a · bᵀ`: `a` `[m, k]` with rows `lda` apart, `b` `[n, k]`
    /// contiguous, `c` `[m, n]` with rows `ldc` apart (x · Wᵀ: inputs
    /// through a weight stored `[out, in]`).
    gemm_nt, Trans::T, |n, k| k
);

weight_product!(
    /// `c (+)= a · b`: `a` `[m, k]` with rows `lda` apart, `b` `[k, n]`
    /// contiguous, `c` `[m, n]` with rows `ldc` apart (a gradient back
    /// through a weight stored `[out, in]`).
    gemm_nn, Trans::N, |n, k| n
);

/// `c += aᵀ · b`: `a` `[k, m]` with rows `lda` apart, `b` `[k, n]` and `c`
/// `[m, n]` contiguous (a weight gradient summed over k rows).
#[inline]
pub fn gemm_tn<T: GemmScalar>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[T],
    c: &mut [T],
) {
    gemm(m, n, k, a, lda, Trans::T, b, n, Trans::N, c, n, true)
}

/// A raw output pointer that may cross to a worker; each worker writes a
/// disjoint block.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr<T>(pub(crate) *mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}
impl<T> OutPtr<T> {
    /// A method, so closures capture the whole (Sync) wrapper.
    pub(crate) fn at(self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

macro_rules! impl_gemm {
    ($t:ty) => {
        impl GemmScalar for $t {
            fn gemm_impl(
                m: usize,
                n: usize,
                k: usize,
                a: &[$t],
                lda: usize,
                ta: Trans,
                b: &[$t],
                ldb: usize,
                tb: Trans,
                c: &mut [$t],
                ldc: usize,
                accumulate: bool,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                assert!(c.len() >= (m - 1) * ldc + n, "gemm: output slice too short");
                if k == 0 {
                    if !accumulate {
                        for i in 0..m {
                            c[i * ldc..i * ldc + n].fill(0.0);
                        }
                    }
                    return;
                }
                let a = view(a, m, k, lda, ta);
                let b = view(b, k, n, ldb, tb);
                let beta = if accumulate {
                    Accum::Add
                } else {
                    Accum::Replace
                };
                let out = OutPtr(c.as_mut_ptr());
                // SAFETY (both calls): `c` holds the m×n block at stride ldc
                // (asserted above), and blocks given to different tasks are
                // disjoint sets of columns or rows of it.
                let block = |r0: usize, rows: usize, c0: usize, cols: usize| unsafe {
                    let cm = MatMut::from_raw_parts_mut(
                        out.at(r0 * ldc + c0),
                        rows,
                        cols,
                        ldc as isize,
                        1isize,
                    );
                    let am = a.subrows(r0, rows);
                    let bm = b.subcols(c0, cols);
                    faer::linalg::matmul::matmul(cm, beta, am, bm, 1.0, Par::Seq);
                };
                let threads = threads();
                // A product with few rows (batch-1 generation) is bound by
                // reading op(b), not by arithmetic: split it too when op(b)
                // is large, so both cores stream half of it.
                let streaming = m <= 8 && k * n >= PAR_MIN_STREAM;
                if threads <= 1 || (2 * m * n * k < PAR_MIN_FLOPS && !streaming) {
                    return block(0, m, 0, n);
                }
                // Split the larger dimension, in multiples of the SIMD width
                // (columns) or the micro-kernel height (rows).
                let (len, align) = if n >= m { (n, 16) } else { (m, 8) };
                let tasks = threads.min(len.div_ceil(align));
                let chunk = len.div_ceil(tasks).div_ceil(align) * align;
                let job = |i: usize| {
                    let lo = i * chunk;
                    let hi = len.min(lo + chunk);
                    if lo < hi {
                        if n >= m {
                            block(0, m, lo, hi - lo)
                        } else {
                            block(lo, hi - lo, 0, n)
                        }
                    }
                };
                pool().run(tasks, &job);
            }
        }
    };
}
impl_gemm!(f32);
impl_gemm!(f64);

/// The lower triangle, diagonal included, of `c[n, n] += aᵀ·a` for `a`
/// `[k, n]` row-major (row-major `c`, leading dimension `ldc`): the Gram
/// matrix of k samples of n features at half a GEMM's cost. The strict upper
/// triangle of `c` is left alone. With two or more threads the triangle is
/// cut at row n/√2 into two blocks of equal work, one per thread.
pub fn gram_lower(n: usize, k: usize, a: &[f64], c: &mut [f64], ldc: usize) {
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
    if n == 0 || k == 0 {
        return;
    }
    assert!(
        a.len() >= k * n && c.len() >= (n - 1) * ldc + n,
        "gram_lower: slice too short"
    );
    let at = MatRef::from_row_major_slice(&a[..k * n], k, n);
    let out = OutPtr(c.as_mut_ptr());
    // Rows r0..r0+rows of the lower triangle: a rectangle left of column r0
    // and a triangle from it.
    let rows_of = |r0: usize, rows: usize| {
        // SAFETY: `c` holds the n×n block at stride ldc (asserted above);
        // the two tasks write disjoint row ranges.
        let cm = |c0: usize, cols: usize| unsafe {
            MatMut::from_raw_parts_mut(out.at(r0 * ldc + c0), rows, cols, ldc as isize, 1isize)
        };
        let lhs = at.subcols(r0, rows).transpose();
        if r0 > 0 {
            let rhs = at.subcols(0, r0);
            faer::linalg::matmul::matmul(cm(0, r0), Accum::Add, lhs, rhs, 1.0, Par::Seq);
        }
        let rhs = at.subcols(r0, rows);
        tri_matmul(
            cm(r0, rows),
            BlockStructure::TriangularLower,
            Accum::Add,
            lhs,
            BlockStructure::Rectangular,
            rhs,
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
    };
    let split = ((n as f64) / std::f64::consts::SQRT_2) as usize;
    if threads() <= 1 || 2 * n * n * k < 2 * PAR_MIN_FLOPS || split == 0 || split >= n {
        return rows_of(0, n);
    }
    pool().run(2, &|i| {
        if i == 0 {
            rows_of(0, split)
        } else {
            rows_of(split, n - split)
        }
    });
}

/// A `[rows, cols]` view of a row-major slice, or of the transpose of a
/// stored `[cols, rows]` one.
fn view<T>(s: &[T], rows: usize, cols: usize, ld: usize, t: Trans) -> MatRef<'_, T> {
    match t {
        Trans::N => {
            MatRef::from_row_major_slice_with_stride(&s[..(rows - 1) * ld + cols], rows, cols, ld)
        }
        Trans::T => {
            MatRef::from_row_major_slice_with_stride(&s[..(cols - 1) * ld + rows], cols, rows, ld)
                .transpose()
        }
    }
}

/// `c[m, n] (+)= op(a)[m, k] · op(b)[k, n]`; see the module docs for the
/// conventions.
///
/// # Panics
/// If a slice is shorter than its shape and leading dimension need.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm<T: GemmScalar>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    ta: Trans,
    b: &[T],
    ldb: usize,
    tb: Trans,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    T::gemm_impl(m, n, k, a, lda, ta, b, ldb, tb, c, ldc, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], ta: Trans, b: &[f64], tb: Trans) -> Vec<f64> {
        let at = |i: usize, p: usize| {
            if ta == Trans::N {
                a[i * k + p]
            } else {
                a[p * m + i]
            }
        };
        let bt = |p: usize, j: usize| {
            if tb == Trans::N {
                b[p * n + j]
            } else {
                b[j * k + p]
            }
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                let lda = if ta == Trans::N { k } else { m };
                let ldb = if tb == Trans::N { n } else { k };
                let want = naive(m, n, k, &a, ta, &b, tb);
                let mut c = vec![1.0; m * n];
                gemm(m, n, k, &a, lda, ta, &b, ldb, tb, &mut c, n, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 1.0 - y).abs() < 1e-12);
                }
                gemm(m, n, k, &a, lda, ta, &b, ldb, tb, &mut c, n, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn threaded_split_matches_single_thread_exactly() {
        for (m, n, k) in [
            (64, 2048, 512),
            (3000, 96, 40),
            (17, 301, 400),
            (1, 1536, 512),
            (3, 512, 512),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let mut c1 = vec![0.0f32; m * n];
            let mut c2 = vec![0.0f32; m * n];
            set_threads(1);
            gemm(m, n, k, &a, k, Trans::N, &b, k, Trans::T, &mut c1, n, false);
            set_threads(0);
            gemm(m, n, k, &a, k, Trans::N, &b, k, Trans::T, &mut c2, n, false);
            assert_eq!(c1, c2, "{m}x{n}x{k}");
        }
    }

    #[test]
    fn gram_lower_matches_gemm_on_the_lower_triangle() {
        for (n, k) in [(5, 3), (300, 40), (700, 64)] {
            let a: Vec<f64> = (0..k * n)
                .map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5)
                .collect();
            let mut want = vec![0.5; n * n];
            gemm(
                n,
                n,
                k,
                &a,
                n,
                Trans::T,
                &a,
                n,
                Trans::N,
                &mut want,
                n,
                true,
            );
            for t in [1, 0] {
                set_threads(t);
                let mut got = vec![0.5; n * n];
                gram_lower(n, k, &a, &mut got, n);
                for i in 0..n {
                    for j in 0..n {
                        let g = got[i * n + j];
                        if j <= i {
                            assert!((g - want[i * n + j]).abs() < 1e-12, "{n}x{k} [{i},{j}]");
                        } else {
                            assert_eq!(g, 0.5, "upper triangle untouched");
                        }
                    }
                }
            }
            set_threads(0);
        }
    }

    #[test]
    fn strided_output_leaves_gaps_alone() {
        // c is 2x2 inside a 2x5 buffer.
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [1.0f32, 0.0, 0.0, 1.0];
        let mut c = [9.0f32; 10];
        gemm(
            2,
            2,
            2,
            &a,
            2,
            Trans::N,
            &b,
            2,
            Trans::N,
            &mut c[1..],
            5,
            false,
        );
        assert_eq!(c, [9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 3.0, 4.0, 9.0, 9.0]);
    }
}
