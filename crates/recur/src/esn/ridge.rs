//! The ridge readout: sums accumulated over chunks of rows and solved by
//! Cholesky, with an unpenalised intercept.

use crate::error::Result;
use crate::gemm::{gemm, gram_lower, Trans};
use crate::linalg::solve_spd;

/// Sums of a ridge regression with an unpenalised intercept.
///
/// Features arrive as [1; z] (z = [u; x]); the fit centres z and y, solves
/// (Z̃ Z̃ᵀ + λI) W = Z̃ Ỹᵀ by Cholesky, and sets the intercept to
/// ȳ − W z̄, so the constant is not shrunk and the Gram matrix is far better
/// conditioned than with a raw constant column. Sums are accumulated with GEMMs
/// over chunks of rows, across any number of sequences.
#[derive(Clone, Debug)]
pub struct RidgeSums {
    /// Features without the constant: F − 1.
    d: usize,
    o: usize,
    /// `[D, D]` Σ z zᵀ, lower triangle only (the upper is never written)
    pub zzt: Vec<f64>,
    /// `[D, O]` Σ z yᵀ
    pub zyt: Vec<f64>,
    /// `[D]` Σ z
    pub z_sum: Vec<f64>,
    /// `[O]` Σ y
    pub y_sum: Vec<f64>,
    /// `[D + O]` the first row's z and y: every row is accumulated relative
    /// to it (centring is unchanged by a shift, and the sums stay small, so
    /// Σzzᵀ − n z̄z̄ᵀ loses far fewer digits).
    shift: Vec<f64>,
    rows: usize,
    /// `[CHUNK, D]` features waiting to be added.
    feat: Vec<f64>,
    /// `[CHUNK, O]` targets waiting to be added.
    targ: Vec<f64>,
    /// Total rows added.
    pub count: usize,
}

const CHUNK: usize = 256;

impl RidgeSums {
    /// Empty sums for F features (the first being the constant 1) and O outputs.
    pub fn new(f: usize, o: usize) -> RidgeSums {
        let d = f - 1;
        RidgeSums {
            d,
            o,
            zzt: vec![0.0; d * d],
            zyt: vec![0.0; d * o],
            z_sum: vec![0.0; d],
            y_sum: vec![0.0; o],
            shift: Vec::new(),
            rows: 0,
            feat: vec![0.0; CHUNK * d],
            targ: vec![0.0; CHUNK * o],
            count: 0,
        }
    }

    /// Adds one (features [1; z], target) pair; pairs are batched into GEMMs.
    pub fn add(&mut self, features: &[f64], target: &[f64]) {
        let (d, o) = (self.d, self.o);
        if self.shift.is_empty() {
            self.shift.extend_from_slice(&features[1..]);
            self.shift.extend_from_slice(target);
        }
        let row = &mut self.feat[self.rows * d..(self.rows + 1) * d];
        for ((r, v), s) in row.iter_mut().zip(&features[1..]).zip(&self.shift[..d]) {
            *r = v - s;
        }
        for (s, r) in self.z_sum.iter_mut().zip(row.iter()) {
            *s += r;
        }
        let row = &mut self.targ[self.rows * o..(self.rows + 1) * o];
        for ((r, v), s) in row.iter_mut().zip(target).zip(&self.shift[d..]) {
            *r = v - s;
        }
        for (s, r) in self.y_sum.iter_mut().zip(row.iter()) {
            *s += r;
        }
        self.rows += 1;
        self.count += 1;
        if self.rows == CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let (r, d, o) = (self.rows, self.d, self.o);
        if r > 0 {
            gram_lower(d, r, &self.feat, &mut self.zzt, d);
            gemm(
                d,
                o,
                r,
                &self.feat,
                d,
                Trans::T,
                &self.targ,
                o,
                Trans::N,
                &mut self.zyt,
                o,
                true,
            );
        }
        self.rows = 0;
    }

    /// W_out `[O, F]`: column 0 the intercept, then the ridge weights.
    pub fn solve(&mut self, ridge: f64) -> Result<Vec<f64>> {
        self.flush();
        let (d, o) = (self.d, self.o);
        let n = self.count.max(1) as f64;
        // Means of the shifted data; the shift is added back for the intercept.
        let zm: Vec<f64> = self.z_sum.iter().map(|s| s / n).collect();
        let ym: Vec<f64> = self.y_sum.iter().map(|s| s / n).collect();
        let no_shift = vec![0.0; d + o];
        let shift = if self.shift.is_empty() {
            &no_shift
        } else {
            &self.shift
        };
        // Centred sums: Σ(z − z̄)(z − z̄)ᵀ = Σ z zᵀ − n z̄ z̄ᵀ, and likewise
        // for z yᵀ. Only the lower triangle of Σ z zᵀ was accumulated.
        let mut a = self.zzt.clone();
        for i in 0..d {
            for j in 0..=i {
                let v = a[i * d + j] - n * zm[i] * zm[j];
                a[i * d + j] = v;
                a[j * d + i] = v;
            }
            a[i * d + i] += ridge;
        }
        let mut w = self.zyt.clone();
        for i in 0..d {
            for j in 0..o {
                w[i * o + j] -= n * zm[i] * ym[j];
            }
        }
        solve_spd(&a, d, &mut w, o)?;
        let f = d + 1;
        let mut out = vec![0.0; o * f];
        for j in 0..o {
            out[j * f] = (ym[j] + shift[d + j])
                - (0..d)
                    .map(|i| w[i * o + j] * (zm[i] + shift[i]))
                    .sum::<f64>();
            for i in 0..d {
                out[j * f + 1 + i] = w[i * o + j];
            }
        }
        Ok(out)
    }
}
