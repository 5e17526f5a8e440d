//! Dense factorisations from faer (its products live in `gemm.rs`):
//! eigenvalues for spectral radii and Cholesky for ridge regression.

use faer::linalg::solvers::Solve;
use faer::{MatMut, MatRef, Side};

use crate::error::{Error, Result};

/// The largest eigenvalue magnitude of the `[n, n]` row-major matrix `a`,
/// from all its eigenvalues (Hessenberg QR), so a dominant complex pair is
/// handled exactly, unlike power iteration.
pub fn spectral_radius(a: &[f64], n: usize) -> Result<f64> {
    assert_eq!(a.len(), n * n, "spectral_radius: matrix size");
    if n == 0 {
        return Ok(0.0);
    }
    let m = MatRef::from_row_major_slice(a, n, n);
    let ev = m
        .eigenvalues()
        .map_err(|e| Error::Config(format!("eigenvalue solver did not converge: {e:?}")))?;
    Ok(ev.iter().map(|z| z.re.hypot(z.im)).fold(0.0, f64::max))
}

/// Solves `a x = b` in place for a symmetric positive definite `[n, n]` `a`
/// (row-major) and `b` `[n, m]` (row-major) by Cholesky; never inverts `a`.
pub fn solve_spd(a: &[f64], n: usize, b: &mut [f64], m: usize) -> Result<()> {
    assert_eq!(a.len(), n * n, "solve_spd: matrix size");
    assert_eq!(b.len(), n * m, "solve_spd: right-hand side size");
    let am = MatRef::from_row_major_slice(a, n, n);
    let llt = am.llt(Side::Lower).map_err(|e| {
        Error::Config(format!(
            "the regularised Gram matrix is not positive definite ({e:?}); increase --ridge"
        ))
    })?;
    // A row-major [n, m] block is the column-major view of its transpose,
    // so go through the column-major constructor and transpose.
    let bm = MatMut::from_column_major_slice_mut(b, m, n).transpose_mut();
    llt.solve_in_place(bm);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complex_dominant_pair_is_measured_exactly() {
        // A rotation by 90° scaled by 2 (eigenvalues ±2i) beside a real 1.5:
        // power iteration oscillates on it.
        let a = [0.0, -2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.5];
        assert!((spectral_radius(&a, 3).unwrap() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        let a = [4.0, 1.0, 1.0, 3.0];
        let x = [1.0, -2.0, 0.5, 3.0]; // [2, 2] solution, row-major
        let mut b = vec![0.0; 4];
        for i in 0..2 {
            for j in 0..2 {
                b[i * 2 + j] = (0..2).map(|k| a[i * 2 + k] * x[k * 2 + j]).sum();
            }
        }
        solve_spd(&a, 2, &mut b, 2).unwrap();
        for (g, w) in b.iter().zip(&x) {
            assert!((g - w).abs() < 1e-12);
        }
    }
}
