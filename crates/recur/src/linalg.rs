//! Dense factorisations from faer (its products live in `gemm.rs`):
//! eigenvalues for spectral radii and Cholesky for ridge regression.

use faer::linalg::solvers::Solve;
use faer::{MatMut, MatRef, Side};

use crate::error::{Error, Result};
use crate::gemm::{gemm, Trans};

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
        .map_err(|e| Error::Numerical(format!("the eigenvalue solver did not converge: {e:?}")))?;
    Ok(ev.iter().map(|z| z.re.hypot(z.im)).fold(0.0, f64::max))
}

/// Solves `a x = b` in place for a symmetric positive definite `[n, n]` `a`
/// (row-major) and `b` `[n, m]` (row-major) by Cholesky; never inverts `a`.
pub fn solve_spd(a: &[f64], n: usize, b: &mut [f64], m: usize) -> Result<()> {
    assert_eq!(a.len(), n * n, "solve_spd: matrix size");
    assert_eq!(b.len(), n * m, "solve_spd: right-hand side size");
    let am = MatRef::from_row_major_slice(a, n, n);
    let llt = am.llt(Side::Lower).map_err(|e| {
        Error::Numerical(format!(
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
    fn arnoldi_agrees_with_the_dense_solver() {
        // Sparse random matrices like reservoirs, including a complex-dominant one.
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        for (n, p) in [(300, 0.1), (500, 0.02)] {
            let a: Vec<f64> = (0..n * n)
                .map(|_| if rnd().abs() < p { rnd() } else { 0.0 })
                .collect();
            let dense = spectral_radius(&a, n).unwrap();
            let mut mv = |x: &[f64], y: &mut [f64]| {
                for (r, yr) in y.iter_mut().enumerate() {
                    *yr = (0..n).map(|c| a[r * n + c] * x[c]).sum();
                }
            };
            let arn = spectral_radius_arnoldi(n, &mut mv, 80, 60, 1e-10).expect("converges");
            assert!(
                (arn - dense).abs() <= 1e-8 * dense,
                "n={n}: arnoldi {arn} vs dense {dense}"
            );
        }
        let a = [0.0, -2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.5];
        let mut mv = |x: &[f64], y: &mut [f64]| {
            for r in 0..3 {
                y[r] = (0..3).map(|c| a[r * 3 + c] * x[c]).sum();
            }
        };
        assert!((spectral_radius_arnoldi(3, &mut mv, 80, 10, 1e-10).unwrap() - 2.0).abs() < 1e-10);
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

/// The largest eigenvalue magnitude of an `[n, n]` operator given by its
/// product `y = A x`, by thick-restarted Arnoldi (Krylov–Schur style): an
/// m-step Krylov basis gives Ritz values; while the one of largest magnitude
/// has a residual ‖A v − θ v‖ = |h_{m+1,m} y_m| above `tol`·|θ|, the basis is
/// shrunk to the real invariant subspace of the m/2 largest Ritz values
/// (complex pairs kept whole) and extended again. Keeping that subspace,
/// rather than restarting from one Ritz vector, is what makes it converge in
/// a few rounds on a reservoir's disc of eigenvalues. Returns `None` when it
/// has not converged after `restarts` rounds, so the caller can fall back to
/// [`spectral_radius`].
pub fn spectral_radius_arnoldi(
    n: usize,
    matvec: &mut dyn FnMut(&[f64], &mut [f64]),
    m: usize,
    restarts: usize,
    tol: f64,
) -> Option<f64> {
    use faer::Mat;
    let m = m.min(n).max(2);
    let keep = (m / 2).max(1);
    // A fixed, dense start vector: deterministic and not orthogonal to anything in particular.
    let start: Vec<f64> = (0..n)
        .map(|i| 1.0 + ((i * 7919) % 1009) as f64 / 1009.0)
        .collect();
    let norm = start.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut v = vec![0.0f64; (m + 1) * n]; // [m+1, n] Krylov basis, one vector per row
                                           // [p, n] the kept basis while it is formed; p ≤ keep + 1 (a pair kept whole).
    let mut v_new: Vec<f64> = Vec::with_capacity((keep + 1) * n);
    v[..n]
        .iter_mut()
        .zip(&start)
        .for_each(|(d, s)| *d = s / norm);
    let mut w = vec![0.0f64; n];
    let mut proj = vec![0.0f64; n];
    let mut coef = vec![0.0f64; m + 1];
    // H[i, j]: the coefficient of v_i in A v_j; row `first` holds the
    // residual couplings of the kept vectors after a restart.
    let mut hm = Mat::<f64>::zeros(m, m);
    let mut first = 0; // basis vectors carried over from the last round
    for _ in 0..restarts {
        let mut h_next = 0.0;
        let mut k = m;
        for j in first..m {
            matvec(&v[j * n..(j + 1) * n], &mut w);
            // Classical Gram–Schmidt, done twice for stability, as two
            // matrix–vector products: c = V_j w, then w −= V_jᵀ c.
            for _ in 0..2 {
                let basis = &v[..(j + 1) * n];
                gemm(
                    j + 1,
                    1,
                    n,
                    basis,
                    n,
                    Trans::N,
                    &w,
                    1,
                    Trans::N,
                    &mut coef[..j + 1],
                    1,
                    false,
                );
                gemm(
                    1,
                    n,
                    j + 1,
                    &coef[..j + 1],
                    j + 1,
                    Trans::N,
                    basis,
                    n,
                    Trans::N,
                    &mut proj,
                    n,
                    false,
                );
                w.iter_mut().zip(&proj).for_each(|(x, p)| *x -= p);
                for (i, c) in coef[..=j].iter().enumerate() {
                    hm[(i, j)] += c;
                }
            }
            let hn = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if j + 1 < m {
                hm[(j + 1, j)] = hn;
            } else {
                h_next = hn;
            }
            if hn <= 1e-12 * hm[(j, j)].abs().max(1.0) {
                // Invariant subspace: the Ritz values of H_j are exact eigenvalues.
                k = j + 1;
                h_next = 0.0;
                break;
            }
            v[(j + 1) * n..(j + 2) * n]
                .iter_mut()
                .zip(&w)
                .for_each(|(d, x)| *d = x / hn);
        }
        let hk = hm.as_ref().submatrix(0, 0, k, k).to_owned();
        let evd = hk.eigen().ok()?;
        let (vals, vecs) = (evd.S(), evd.U());
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| vals[b].norm().total_cmp(&vals[a].norm()).then(a.cmp(&b)));
        let best = order[0];
        let y = vecs.col(best);
        let ynorm = (0..k).map(|i| y[i].norm_sqr()).sum::<f64>().sqrt();
        let resid = h_next * y[k - 1].norm() / ynorm;
        let theta = vals[best].norm();
        if resid <= tol * theta || k < m {
            return Some(theta);
        }
        // The kept subspace: real and imaginary parts of the largest Ritz
        // vectors (a conjugate pair spans one real 2-D invariant subspace),
        // orthonormalised in R^k.
        let mut u: Vec<Vec<f64>> = Vec::with_capacity(keep + 1);
        for &i in &order {
            if u.len() >= keep {
                break;
            }
            let yi = vecs.col(i);
            if vals[i].im < 0.0 {
                continue; // its conjugate contributes the same real subspace
            }
            let mut parts = vec![(0..k).map(|r| yi[r].re).collect::<Vec<f64>>()];
            if vals[i].im > 0.0 {
                parts.push((0..k).map(|r| yi[r].im).collect());
            }
            for mut q in parts {
                for _ in 0..2 {
                    for b in &u {
                        let d: f64 = q.iter().zip(b).map(|(x, y)| x * y).sum();
                        q.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
                    }
                }
                let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
                if qn > 1e-10 {
                    q.iter_mut().for_each(|x| *x /= qn);
                    u.push(q);
                }
            }
        }
        let p = u.len();
        if p == 0 || p >= m {
            return None;
        }
        // U as a row-major [p, k] block; new basis V' = U V_k ([p, n]), and
        // the residual vector v_m moves to row p.
        let ut: Vec<f64> = u.iter().flatten().copied().collect();
        v_new.resize(p * n, 0.0);
        gemm(
            p,
            n,
            k,
            &ut,
            k,
            Trans::N,
            &v[..k * n],
            n,
            Trans::N,
            &mut v_new,
            n,
            false,
        );
        v.copy_within(m * n..(m + 1) * n, p * n);
        v[..p * n].copy_from_slice(&v_new);
        // H' = [Uᵀ H U; h_next · U[k-1, :]] in its first p columns, zeros elsewhere.
        let mut hu = vec![0.0f64; k * p]; // [k, p] H U
        for r in 0..k {
            for c in 0..p {
                hu[r * p + c] = (0..k).map(|t| hm[(r, t)] * u[c][t]).sum();
            }
        }
        hm.fill(0.0);
        for a in 0..p {
            for c in 0..p {
                hm[(a, c)] = (0..k).map(|r| u[a][r] * hu[r * p + c]).sum();
            }
        }
        for c in 0..p {
            hm[(p, c)] = h_next * u[c][k - 1];
        }
        first = p;
    }
    None
}

/// A random `[n, n]` orthogonal matrix (row-major), as
/// `torch.nn.init.orthogonal_`: Q of the QR factorisation of a standard
/// normal matrix, with each column's sign set by the diagonal of R so that
/// the result is uniformly (Haar) distributed.
pub fn random_orthogonal(n: usize, rng: &mut impl rand::Rng) -> Vec<f64> {
    use rand_distr::{Distribution, StandardNormal};
    let g: Vec<f64> = (0..n * n).map(|_| StandardNormal.sample(rng)).collect();
    let qr = faer::linalg::solvers::Qr::new(MatRef::from_row_major_slice(&g, n, n));
    let (q, r) = (qr.compute_Q(), qr.R());
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
            out[i * n + j] = q[(i, j)] * sign;
        }
    }
    out
}

/// Principal components of the rows of `x` `[n, d]` (row-major): the
/// scores `[n, k]` of each row on the first k components (largest variance
/// first, from the eigendecomposition of the covariance) and the fraction
/// of the variance each explains.
pub fn principal_components(
    x: &[f64],
    n: usize,
    d: usize,
    k: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    assert_eq!(x.len(), n * d, "principal_components: matrix size");
    if n < 2 || d == 0 || k == 0 || k > d {
        return Err(Error::Config(format!(
            "principal components need at least 2 rows and 1 ≤ k ≤ d (got n = {n}, d = {d}, k = {k})"
        )));
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<f64> = (0..n * d).map(|i| x[i] - mean[i % d]).collect();
    // Covariance `[d, d]` = Xcᵀ Xc / (n − 1).
    let mut cov = vec![0.0; d * d];
    crate::gemm::gemm_tn(d, d, n, &centred, d, &centred, &mut cov);
    cov.iter_mut().for_each(|v| *v /= (n - 1) as f64);
    let c = MatRef::from_row_major_slice(&cov, d, d);
    let eig = c
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numerical(format!("the eigendecomposition did not converge: {e:?}")))?;
    let (u, s) = (eig.U(), eig.S().column_vector());
    let total: f64 = (0..d).map(|i| s[i].max(0.0)).sum();
    // Eigenvalues come in nondecreasing order: the last k, reversed.
    let cols: Vec<usize> = (0..k).map(|j| d - 1 - j).collect();
    let mut scores = vec![0.0; n * k];
    for i in 0..n {
        for (jj, &j) in cols.iter().enumerate() {
            // Signs are fixed so the largest loading is positive, for
            // plots that do not flip between runs.
            let sign = {
                let (mut best, mut at) = (0.0f64, 0);
                for r in 0..d {
                    if u[(r, j)].abs() > best {
                        best = u[(r, j)].abs();
                        at = r;
                    }
                }
                u[(at, j)].signum()
            };
            scores[i * k + jj] = sign * (0..d).map(|r| centred[i * d + r] * u[(r, j)]).sum::<f64>();
        }
    }
    let explained = cols
        .iter()
        .map(|&j| {
            if total > 0.0 {
                s[j].max(0.0) / total
            } else {
                0.0
            }
        })
        .collect();
    Ok((scores, explained))
}

#[cfg(test)]
mod pca_tests {
    use super::*;

    #[test]
    fn components_of_a_stretched_cloud() {
        // Points along (1, 1) with a little spread along (1, −1).
        let mut x = Vec::new();
        for i in 0..50 {
            let t = i as f64 - 25.0;
            let e = if i % 2 == 0 { 0.5 } else { -0.5 };
            x.extend([t + e, t - e]);
        }
        let (s, ex) = principal_components(&x, 50, 2, 2).unwrap();
        assert!(ex[0] > 0.99 && ex[0] + ex[1] > 0.999999, "{ex:?}");
        // The first score orders the points along (1, 1).
        let c0: Vec<f64> = (0..50).map(|i| s[i * 2]).collect();
        let rising = c0.windows(2).all(|w| w[1] > w[0]) || c0.windows(2).all(|w| w[1] < w[0]);
        assert!(rising);
        assert!(principal_components(&x[..2], 1, 2, 1).is_err());
    }
}
