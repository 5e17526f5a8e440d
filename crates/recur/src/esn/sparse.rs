//! The reservoir's sparse product: W in CSR form, its row kernels (AVX-512
//! gathers, or the same sums lane by lane), and the split of rows across
//! threads.

use crate::pool::pool;

/// A square sparse matrix in CSR form: row r holds `val[row[r]..row[r+1]]`
/// at columns `col[..]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Csr {
    /// `[N + 1]` where each row starts.
    pub row: Vec<usize>,
    /// `[nnz]` column of each non-zero.
    pub col: Vec<u32>,
    /// `[nnz]` value of each non-zero.
    pub val: Vec<f64>,
}

impl Csr {
    /// Non-zeros.
    pub fn nnz(&self) -> usize {
        self.val.len()
    }

    /// The dense row-major `[n, n]` form.
    pub fn dense(&self, n: usize) -> Vec<f64> {
        let mut d = vec![0.0; n * n];
        for r in 0..n {
            for k in self.row[r]..self.row[r + 1] {
                d[r * n + self.col[k] as usize] = self.val[k];
            }
        }
        d
    }

    /// Rows `first .. first + y.len()` of `W x`.
    ///
    /// The arithmetic is fixed whatever the CPU: non-zero k of a row goes to
    /// lane k mod 16 of sixteen partial sums (fused multiply-adds), which are
    /// then added in a fixed tree. With AVX-512 that is two 8-lane
    /// accumulators fed by gathers of x; elsewhere the same sums in scalar
    /// code. A scalar loop with a few accumulators was bound by the FMA
    /// latency chain (about one non-zero per cycle).
    pub fn rows(&self, first: usize, x: &[f64], y: &mut [f64]) {
        let (row, col) = (&self.row, &self.col);
        assert!(
            row.len() > first + y.len() && row[first + y.len()] <= col.len().min(self.val.len())
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            debug_assert!(col[row[first]..row[first + y.len()]]
                .iter()
                .all(|&c| (c as usize) < x.len()));
            // SAFETY: the features were detected; row offsets are checked above,
            // and every column index is below x.len() = N by construction of W.
            unsafe { rows_avx512(self, first, x, y) };
            return;
        }
        rows_portable(self, first, x, y);
    }
}

/// Reservoirs with at least this many non-zeros split the state update across threads.
const PAR_MIN_NNZ: usize = 20_000;

/// A raw output pointer shared by tasks that write disjoint ranges.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub *mut f64);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    /// A method, so closures capture the whole (Sync) wrapper.
    pub fn at(self, i: usize) -> *mut f64 {
        self.0.wrapping_add(i)
    }
}

/// Calls `rows(lo, hi)` on disjoint ranges covering `0..n`: one per pool
/// thread when the matrix has enough non-zeros to pay for the split, else
/// once. Each row is computed whole by one thread, so results do not depend
/// on the thread count.
pub(crate) fn split_rows(n: usize, nnz: usize, rows: &(dyn Fn(usize, usize) + Sync)) {
    let tasks = crate::gemm::threads();
    if nnz >= PAR_MIN_NNZ && tasks > 1 {
        let chunk = n.div_ceil(tasks);
        pool().run(tasks, &|t| {
            let (lo, hi) = (t * chunk, n.min((t + 1) * chunk));
            if lo < hi {
                rows(lo, hi);
            }
        });
    } else {
        rows(0, n);
    }
}

/// [`Csr::rows`] without AVX-512: the same sums, lane by lane.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn rows_portable(m: &Csr, first: usize, x: &[f64], y: &mut [f64]) {
    let (row, col, val) = (&m.row, &m.col, &m.val);
    for (k, out) in y.iter_mut().enumerate() {
        let r = first + k;
        let (c, v) = (&col[row[r]..row[r + 1]], &val[row[r]..row[r + 1]]);
        let mut acc = [0.0f64; 16];
        let mut cc = c.chunks_exact(16);
        let mut vc = v.chunks_exact(16);
        for (c16, v16) in (&mut cc).zip(&mut vc) {
            for l in 0..16 {
                acc[l] = v16[l].mul_add(x[c16[l] as usize], acc[l]);
            }
        }
        for (l, (ci, vi)) in cc.remainder().iter().zip(vc.remainder()).enumerate() {
            acc[l] = vi.mul_add(x[*ci as usize], acc[l]);
        }
        *out = reduce16(&acc);
    }
}

/// The fixed summation tree of sixteen partial sums.
fn reduce16(a: &[f64; 16]) -> f64 {
    let mut s = [0.0f64; 8];
    for l in 0..8 {
        s[l] = a[l] + a[l + 8];
    }
    ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn rows_avx512(m: &Csr, first: usize, x: &[f64], y: &mut [f64]) {
    let (row, col, val) = (&m.row, &m.col, &m.val);
    use std::arch::x86_64::*;
    let xp = x.as_ptr();
    for (k, out) in y.iter_mut().enumerate() {
        let r = first + k;
        let (lo, hi) = (row[r], row[r + 1]);
        let (cp, vp) = (col.as_ptr().add(lo), val.as_ptr().add(lo));
        let len = hi - lo;
        let mut acc = [_mm512_setzero_pd(), _mm512_setzero_pd()];
        let mut i = 0;
        while i + 16 <= len {
            for h in 0..2 {
                let idx = _mm256_loadu_si256(cp.add(i + 8 * h) as *const __m256i);
                let g = _mm512_i32gather_pd::<8>(idx, xp);
                acc[h] = _mm512_fmadd_pd(_mm512_loadu_pd(vp.add(i + 8 * h)), g, acc[h]);
            }
            i += 16;
        }
        for h in 0..2 {
            let rem = len.saturating_sub(i + 8 * h).min(8);
            if rem > 0 {
                let m: __mmask8 = ((1u32 << rem) - 1) as __mmask8;
                let idx = _mm256_maskz_loadu_epi32(m, cp.add(i + 8 * h) as *const i32);
                let g = _mm512_mask_i32gather_pd::<8>(_mm512_setzero_pd(), m, idx, xp);
                acc[h] = _mm512_mask3_fmadd_pd(
                    _mm512_maskz_loadu_pd(m, vp.add(i + 8 * h)),
                    g,
                    acc[h],
                    m,
                );
            }
        }
        let mut a = [0.0f64; 16];
        _mm512_storeu_pd(a.as_mut_ptr(), acc[0]);
        _mm512_storeu_pd(a.as_mut_ptr().add(8), acc[1]);
        *out = reduce16(&a);
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::esn::normal;

    #[test]
    fn csr_product_is_exact_and_the_same_on_every_path() {
        // Row lengths around the 8- and 16-lane boundaries, and an empty row.
        let lens = [0usize, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100];
        let n = 120;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut m = Csr {
            row: vec![0],
            ..Csr::default()
        };
        for &l in &lens {
            for _ in 0..l {
                m.col.push(rng.random_range(0..n as u32));
                m.val.push(normal(&mut rng));
            }
            m.row.push(m.col.len());
        }
        let x: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mut y = vec![0.0; lens.len()];
        m.rows(0, &x, &mut y);
        let mut y_portable = vec![0.0; lens.len()];
        rows_portable(&m, 0, &x, &mut y_portable);
        // Bit for bit: the result does not depend on which CPU runs it.
        assert_eq!(y, y_portable);
        for r in 0..lens.len() {
            let exact: f64 = (m.row[r]..m.row[r + 1])
                .map(|k| m.val[k] * x[m.col[k] as usize])
                .sum();
            assert!(
                (y[r] - exact).abs() <= 1e-12 * (1.0 + exact.abs()),
                "row {r}"
            );
        }
        // A range of rows starting past 0, as a thread computes it.
        let mut part = vec![0.0; 4];
        m.rows(3, &x, &mut part);
        assert_eq!(part, y[3..7]);
    }
}
