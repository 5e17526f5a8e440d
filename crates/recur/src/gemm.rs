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
//! MFLOP, handing work to a second thread costs more than it saves.

use std::sync::atomic::{AtomicUsize, Ordering};

use faer::{Accum, MatMut, MatRef, Par};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// Products with fewer floating-point operations than this run single-threaded.
pub const PAR_MIN_FLOPS: usize = 4_000_000;

/// 0 means "all of rayon's threads".
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads a large product may use (0: rayon's pool size).
///
/// The numbers do not depend on this: faer splits the output, never the
/// inner dimension, so a dot product is always summed in the same order.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The number of threads a large product uses.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

fn par_for(flops: usize) -> Par {
    let n = threads();
    if n <= 1 || flops < PAR_MIN_FLOPS {
        Par::Seq
    } else {
        Par::rayon(n)
    }
}

/// Element types faer multiplies; implemented for f32 and f64 only.
pub trait GemmScalar: Sized {
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
                // Not `from_row_major_slice_with_stride_mut`: in faer 0.24.4
                // it builds a column-major view, so go through the
                // column-major constructor and transpose.
                let c = MatMut::from_column_major_slice_with_stride_mut(
                    &mut c[..(m - 1) * ldc + n],
                    n,
                    m,
                    ldc,
                )
                .transpose_mut();
                let beta = if accumulate {
                    Accum::Add
                } else {
                    Accum::Replace
                };
                faer::linalg::matmul::matmul(c, beta, a, b, 1.0, par_for(2 * m * n * k));
            }
        }
    };
}
impl_gemm!(f32);
impl_gemm!(f64);

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
