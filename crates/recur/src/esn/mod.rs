//! Echo state networks: a fixed random recurrent reservoir and a linear
//! readout trained in closed form (ridge regression), with no BPTT.
//!
//! Reservoir (N units, input u of width I, output y of width O):
//!
//! x_t = (1 − a)·x_{t−1} + a·tanh(W x_{t−1} + W_in u_t + W_fb y_{t−1} + b)
//!
//! - W `[N, N]` sparse, normal entries with density `connectivity`, scaled so
//!   its largest eigenvalue magnitude is `spectral_radius`;
//! - W_in `[N, I]`, b `[N]` and W_fb `[N, O]`: ±scaling with density
//!   `input_connectivity` (ReservoirPy's Bernoulli initialisers);
//! - everything is drawn from one ChaCha8 stream seeded with `seed`.
//!
//! Readout: y_t = W_out f_t with features f_t = [1; u_t; x_t] (`[F]`,
//! F = 1 + I + N; u_t is optional). The weights on z = [u; x] are the ridge
//! solution W = Ỹ Z̃ᵀ (Z̃ Z̃ᵀ + λI)⁻¹ on centred data, computed by Cholesky
//! from sums accumulated over any number of sequences without storing the
//! states; the weight on the constant is the unpenalised intercept.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod ridge;
mod sparse;

pub use ridge::RidgeSums;

use crate::checkpoint::{read_tensors_f64, write_tensors_f64};
use crate::error::{Error, Result};
use crate::linalg::{spectral_radius, spectral_radius_arnoldi};
use sparse::{split_rows, Csr, OutPtr};

/// The `format` metadata of an ESN model file.
pub const ESN_FORMAT: &str = "recur-esn";

/// Hyper-parameters of an echo state network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EsnConfig {
    /// N: reservoir units.
    pub units: usize,
    /// Density of W.
    pub connectivity: f64,
    /// Target largest eigenvalue magnitude of W.
    pub spectral_radius: f64,
    /// Leak rate a in (0, 1].
    pub leak: f64,
    /// Scale of W_in.
    pub input_scaling: f64,
    /// Density of W_in (and of b).
    pub input_connectivity: f64,
    /// Scale of the bias b (0: none).
    pub bias: f64,
    /// Feed the previous output back through W_fb.
    pub feedback: bool,
    /// Scale of W_fb.
    pub feedback_scaling: f64,
    /// Ridge λ.
    pub ridge: f64,
    /// Leading steps of each sequence left out of the fit.
    pub washout: usize,
    /// Steps ahead the readout predicts (u_{t+H} from the state at t).
    pub horizon: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// Whether the input u_t is a readout feature besides the state and the constant.
    #[serde(default = "yes")]
    pub input_in_readout: bool,
}

fn yes() -> bool {
    true
}

impl Default for EsnConfig {
    fn default() -> EsnConfig {
        EsnConfig {
            units: 100,
            connectivity: 0.1,
            spectral_radius: 1.25,
            leak: 0.3,
            input_scaling: 1.0,
            input_connectivity: 0.2,
            bias: 0.0,
            feedback: false,
            feedback_scaling: 1.0,
            ridge: 1e-8,
            washout: 100,
            horizon: 1,
            seed: 1,
            input_in_readout: true,
        }
    }
}

impl EsnConfig {
    /// Checks every field, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.units == 0 {
            return bad("units must be at least 1".into());
        }
        if !(self.spectral_radius.is_finite() && self.spectral_radius > 0.0) {
            return bad(format!(
                "spectral radius must be a number > 0, got {}",
                self.spectral_radius
            ));
        }
        for (name, v) in [
            ("connectivity", self.connectivity),
            ("input connectivity", self.input_connectivity),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(format!("{name} must be in (0, 1], got {v}"));
            }
        }
        if !(self.leak > 0.0 && self.leak <= 1.0) {
            return bad(format!("leak rate must be in (0, 1], got {}", self.leak));
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return bad(format!("ridge must be a number >= 0, got {}", self.ridge));
        }
        for (name, v) in [
            ("input scaling", self.input_scaling),
            ("bias", self.bias),
            ("feedback scaling", self.feedback_scaling),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be a finite number, got {v}"));
            }
        }
        if self.horizon == 0 {
            return bad("horizon must be at least 1".into());
        }
        Ok(())
    }
}

/// An echo state network: reservoir, readout, and the running state.
#[derive(Clone, Debug)]
pub struct Esn {
    config: EsnConfig,
    /// I.
    inputs: usize,
    /// O.
    outputs: usize,
    /// W in CSR form.
    w: Csr,
    /// `[N, I]`
    w_in: Vec<f64>,
    /// `[N, O]`
    w_fb: Vec<f64>,
    /// `[N]`
    b: Vec<f64>,
    /// `[O, F]`, F = 1 + I + N.
    pub w_out: Vec<f64>,
    /// `[N]` the current state.
    x: Vec<f64>,
    /// `[N]` the next state while a step computes it, then swapped with `x`.
    x_next: Vec<f64>,
    /// `[O]` the last output (fed back when `feedback`).
    y_prev: Vec<f64>,
    /// The factor W was scaled by to reach the target spectral radius.
    scale: f64,
}

impl Esn {
    /// Builds the reservoir for `inputs` inputs and `outputs` outputs:
    /// draws W, W_in, b and W_fb and scales W to the target spectral radius.
    pub fn new(config: EsnConfig, inputs: usize, outputs: usize) -> Result<Esn> {
        Esn::build(config, inputs, outputs, None)
    }

    /// Draws the reservoir; W's scale factor is computed from its
    /// eigenvalues, or taken as given (loading a saved model).
    fn build(
        config: EsnConfig,
        inputs: usize,
        outputs: usize,
        known_scale: Option<f64>,
    ) -> Result<Esn> {
        config.validate()?;
        let n = config.units;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        // W in CSR form, unscaled for now, drawn row by row (one uniform per
        // entry, a normal for each kept one) without an [N, N] buffer.
        let mut w = Csr {
            row: vec![0],
            ..Csr::default()
        };
        for _ in 0..n {
            for c in 0..n {
                if rng.random::<f64>() < config.connectivity {
                    let v = normal(&mut rng);
                    // A normal draw is never exactly 0 in practice; keep the
                    // pattern exact anyway.
                    if v != 0.0 {
                        w.col.push(c as u32);
                        w.val.push(v);
                    }
                }
            }
            w.row.push(w.col.len());
        }
        let scale = match known_scale {
            Some(s) => s,
            None => {
                // Large reservoirs: Krylov (certified by its residual), else all eigenvalues.
                let mut mv = |x: &[f64], y: &mut [f64]| {
                    let out = OutPtr(y.as_mut_ptr());
                    split_rows(n, w.nnz(), &|lo, hi| {
                        // SAFETY: disjoint row ranges of `y`.
                        let y = unsafe { std::slice::from_raw_parts_mut(out.at(lo), hi - lo) };
                        w.rows(lo, x, y);
                    });
                };
                // A residual of 1e-9·θ leaves θ far more accurate than any
                // use of the scale needs; a basis of 50 keeps each round's
                // small eigenproblem cheap (measured fastest at 1000 units).
                let rho = (n > 256)
                    .then(|| spectral_radius_arnoldi(n, &mut mv, 50, 100, 1e-9))
                    .flatten()
                    .map_or_else(|| spectral_radius(&w.dense(n), n), Ok)?;
                if rho == 0.0 {
                    return Err(Error::Config(format!(
                        "the random reservoir has spectral radius 0 (connectivity {} is too sparse for {n} units)",
                        config.connectivity
                    )));
                }
                config.spectral_radius / rho
            }
        };
        w.val.iter_mut().for_each(|v| *v *= scale);
        let mut bern = |len: usize, s: f64, p: f64| -> Vec<f64> {
            (0..len)
                .map(|_| {
                    let on = rng.random::<f64>() < p;
                    let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                    if on {
                        sign * s
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let w_in = bern(n * inputs, config.input_scaling, config.input_connectivity);
        let b = bern(n, config.bias, config.input_connectivity);
        let w_fb = if config.feedback {
            bern(
                n * outputs,
                config.feedback_scaling,
                config.input_connectivity,
            )
        } else {
            vec![0.0; n * outputs]
        };
        let f = 1 + (if config.input_in_readout { inputs } else { 0 }) + n;
        Ok(Esn {
            config,
            inputs,
            outputs,
            w,
            w_in,
            w_fb,
            b,
            w_out: vec![0.0; outputs * f],
            x: vec![0.0; n],
            x_next: vec![0.0; n],
            y_prev: vec![0.0; outputs],
            scale,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EsnConfig {
        &self.config
    }

    /// F = 1 + I + N, or 1 + N without the input.
    pub fn features(&self) -> usize {
        1 + self.readout_inputs() + self.config.units
    }

    fn readout_inputs(&self) -> usize {
        if self.config.input_in_readout {
            self.inputs
        } else {
            0
        }
    }

    /// W as a dense `[N, N]` matrix (for checks).
    pub fn w_dense(&self) -> Vec<f64> {
        self.w.dense(self.config.units)
    }

    /// Zeroes the state and the fed-back output.
    pub fn reset(&mut self) {
        self.x.fill(0.0);
        self.y_prev.fill(0.0);
    }

    /// Advances the state by one input `u` `[I]`. Each thread computes a
    /// range of rows of the next state from start to end (product, inputs,
    /// tanh, leak) into a second buffer, so the old state stays intact for
    /// the others' products; the buffers are then swapped.
    pub fn step(&mut self, u: &[f64]) {
        let out = OutPtr(self.x_next.as_mut_ptr());
        split_rows(self.config.units, self.w.nnz(), &|lo, hi| {
            // SAFETY: split_rows gives disjoint row ranges of `x_next`, which
            // is not read during the step and outlives it.
            let y = unsafe { std::slice::from_raw_parts_mut(out.at(lo), hi - lo) };
            reservoir_rows(lo, self, u, y);
        });
        std::mem::swap(&mut self.x, &mut self.x_next);
    }

    /// The feature vector [1; u; x] for input `u` into `f` `[F]`.
    fn features_into(&self, u: &[f64], f: &mut [f64]) {
        let i = self.readout_inputs();
        f[0] = 1.0;
        f[1..1 + i].copy_from_slice(&u[..i]);
        f[1 + i..].copy_from_slice(&self.x);
    }

    /// The readout of the current state for input `u`, into `y` `[O]`.
    pub fn readout(&self, u: &[f64], y: &mut [f64], f: &mut Vec<f64>) {
        f.resize(self.features(), 0.0);
        self.features_into(u, f);
        let fl = self.features();
        for (o, yo) in y.iter_mut().enumerate() {
            *yo = self.w_out[o * fl..(o + 1) * fl]
                .iter()
                .zip(f.iter())
                .map(|(w, v)| w * v)
                .sum();
        }
    }

    /// Sets the output that the next step feeds back (teacher forcing or
    /// the network's own prediction).
    pub fn set_feedback(&mut self, y: &[f64]) {
        self.y_prev.copy_from_slice(y);
    }

    /// Runs a scalar series from a zero state, adding (features at t,
    /// target u_{t+H}) for every t past the washout to `sums`. With
    /// feedback, the true previous target is fed back (teacher forcing).
    pub fn accumulate(&mut self, series: &[f64], sums: &mut RidgeSums) {
        let h = self.config.horizon;
        self.reset();
        let mut f = vec![0.0; self.features()];
        for t in 0..series.len().saturating_sub(h) {
            self.step(&series[t..t + 1]);
            let target = &series[t + h..t + h + 1];
            if t >= self.config.washout {
                self.features_into(&series[t..t + 1], &mut f);
                sums.add(&f, target);
            }
            if self.config.feedback {
                self.set_feedback(target);
            }
        }
    }

    /// Fits the readout on one scalar series (teacher-forced).
    pub fn fit(&mut self, series: &[f64]) -> Result<()> {
        let need = self.config.washout + self.config.horizon + 1;
        if series.len() < need {
            return Err(Error::input(
                "the series",
                format!(
                    "{} training points are too few: washout {} + horizon {} needs at least {need}",
                    series.len(),
                    self.config.washout,
                    self.config.horizon
                ),
            ));
        }
        let mut sums = RidgeSums::new(self.features(), 1);
        self.accumulate(series, &mut sums);
        self.w_out = sums.solve(self.config.ridge)?;
        Ok(())
    }

    /// H-step-ahead predictions over a series from a zero state: element t
    /// predicts series[t + H] from series[..=t]. With feedback the
    /// network's own predictions are fed back.
    pub fn predict_ahead(&mut self, series: &[f64]) -> Vec<f64> {
        self.reset();
        let mut f = Vec::new();
        let mut y = [0.0];
        series
            .iter()
            .map(|&u| {
                self.step(&[u]);
                self.readout(&[u], &mut y, &mut f);
                if self.config.feedback {
                    self.set_feedback(&y);
                }
                y[0]
            })
            .collect()
    }

    /// Drives the reservoir with `warmup` (from a zero state), then runs
    /// closed loop for `k` steps, each prediction becoming the next input.
    /// Needs horizon 1.
    pub fn generate(&mut self, warmup: &[f64], k: usize) -> Result<Vec<f64>> {
        if self.config.horizon != 1 {
            return Err(Error::Config(format!(
                "closed-loop generation needs a model trained with horizon 1, this one has {}",
                self.config.horizon
            )));
        }
        if warmup.is_empty() {
            return Err(Error::Config(
                "closed-loop generation needs at least one warm-up point".into(),
            ));
        }
        self.reset();
        let mut f = Vec::new();
        let mut y = [0.0];
        for &u in warmup {
            self.step(&[u]);
            self.readout(&[u], &mut y, &mut f);
            if self.config.feedback {
                self.set_feedback(&y);
            }
        }
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let u = y[0];
            out.push(u);
            self.step(&[u]);
            self.readout(&[u], &mut y, &mut f);
            if self.config.feedback {
                self.set_feedback(&y);
            }
        }
        Ok(out)
    }

    /// Saves the config, the scale of W and W_out; W, W_in, b and W_fb are
    /// redrawn from the seed on load (they never change).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), ESN_FORMAT.to_string());
        meta.insert(
            "config".to_string(),
            serde_json::to_string(&self.config).expect("serialises"),
        );
        meta.insert("inputs".to_string(), self.inputs.to_string());
        meta.insert("outputs".to_string(), self.outputs.to_string());
        // Rust prints the shortest decimal that parses back to the same f64.
        meta.insert("w_scale".to_string(), self.scale.to_string());
        write_tensors_f64(
            path,
            &[(
                "w_out".to_string(),
                vec![self.outputs, self.features()],
                &self.w_out,
            )],
            meta,
        )
    }

    /// Loads a model written by [`Esn::save`].
    pub fn load(path: &Path) -> Result<Esn> {
        let data_err = |m: String| Error::Input {
            line: None,
            field: None,
            path: path.display().to_string(),
            message: m,
        };
        let (meta, mut tensors) = read_tensors_f64(path)?;
        if meta.get("format").map(String::as_str) != Some(ESN_FORMAT) {
            return Err(data_err(format!(
                "is not a recur echo state network (format '{ESN_FORMAT}')"
            )));
        }
        let config: EsnConfig = serde_json::from_str(meta.get("config").map_or("", String::as_str))
            .map_err(|e| data_err(format!("metadata 'config': {e}")))?;
        let num = |k: &str| {
            meta.get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| data_err(format!("metadata '{k}' missing or not a number")))
        };
        let (inputs, outputs) = (num("inputs")?, num("outputs")?);
        let scale = meta
            .get("w_scale")
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| data_err("metadata 'w_scale' missing or not a number".into()))?;
        let (shape, w) = tensors
            .remove("w_out")
            .ok_or_else(|| data_err("missing tensor 'w_out'".into()))?;
        // W_out's shape is checked before the reservoir is drawn, so that the
        // units and outputs that size the draws are those of the file's data,
        // whatever its metadata claims.
        let readout_inputs = if config.input_in_readout { inputs } else { 0 };
        let Some(features) = config
            .units
            .checked_add(readout_inputs)
            .and_then(|f| f.checked_add(1))
        else {
            return Err(data_err(format!(
                "metadata 'config' has {} units and 'inputs' is {inputs}: more readout features than can be counted",
                config.units
            )));
        };
        if shape != [outputs, features] {
            return Err(data_err(format!(
                "tensor 'w_out' has shape {shape:?}, expected {:?}",
                [outputs, features]
            )));
        }
        // W_in `[N, I]` is drawn from the seed, not stored: without the
        // input in the readout nothing in the file bounds I.
        if !config.input_in_readout && inputs > config.units {
            return Err(data_err(format!(
                "metadata 'inputs' is {inputs}, more than the reservoir's {} units (the input is not in the readout): expected at most one input per unit",
                config.units
            )));
        }
        let mut esn = Esn::build(config, inputs, outputs, Some(scale))
            .map_err(|e| data_err(e.to_string()))?;
        esn.w_out = w;
        Ok(esn)
    }

    /// The factor W was scaled by.
    pub fn w_scale(&self) -> f64 {
        self.scale
    }
}

/// Rows `first .. first + y.len()` of the next state:
/// (1 − a)·x + a·tanh(W x + b + W_in u + W_fb y_prev).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn reservoir_rows(first: usize, e: &Esn, u: &[f64], y: &mut [f64]) {
    let a = e.config.leak;
    e.w.rows(first, &e.x, y);
    for (k, s) in y.iter_mut().enumerate() {
        let r = first + k;
        *s += e.b[r];
        for (w, uj) in e.w_in[r * e.inputs..][..e.inputs].iter().zip(u) {
            *s += w * uj;
        }
        if e.config.feedback {
            for (w, yj) in e.w_fb[r * e.outputs..][..e.outputs].iter().zip(&e.y_prev) {
                *s += w * yj;
            }
        }
    }
    for (s, x) in y.iter_mut().zip(&e.x[first..]) {
        *s = (1.0 - a) * *x + a * crate::activation::tanh_f64(*s);
    }
}

/// Scales the `[n, n]` matrix `w` in place so that its largest eigenvalue
/// magnitude is `target`; returns the factor. Errors when that magnitude is 0.
pub fn scale_to_spectral_radius(w: &mut [f64], n: usize, target: f64) -> Result<f64> {
    let rho = spectral_radius(w, n)?;
    if rho == 0.0 {
        return Err(Error::Config(
            "the matrix has spectral radius 0 and cannot be scaled".into(),
        ));
    }
    let s = target / rho;
    w.iter_mut().for_each(|v| *v *= s);
    Ok(s)
}

/// A standard normal draw (Box–Muller).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::nrmse;

    #[test]
    fn scaled_reservoir_has_the_target_spectral_radius() {
        // 400 units takes the Arnoldi path; the check uses all eigenvalues.
        for (units, sr) in [(30, 0.9), (50, 1.25), (400, 1.1)] {
            let cfg = EsnConfig {
                units,
                spectral_radius: sr,
                ..EsnConfig::default()
            };
            let esn = Esn::new(cfg, 1, 1).unwrap();
            let got = spectral_radius(&esn.w_dense(), units).unwrap();
            assert!((got - sr).abs() < 1e-6, "{units} units: {got} vs {sr}");
        }
    }

    #[test]
    fn complex_dominant_pair_scales_to_target() {
        // Dominant eigenvalues 0.3 ± 1.1i (a scaled rotation block) beside a real 0.7.
        let mut w = vec![0.3, -1.1, 0.0, 1.1, 0.3, 0.0, 0.2, 0.1, 0.7];
        scale_to_spectral_radius(&mut w, 3, 0.95).unwrap();
        assert!((spectral_radius(&w, 3).unwrap() - 0.95).abs() < 1e-6);
        // Power iteration would not settle here: the iterate rotates.
        let mut v = [1.0, 0.0, 0.0];
        let norms: Vec<f64> = (0..6)
            .map(|_| {
                let nv = [0, 1, 2].map(|r| (0..3).map(|c| w[r * 3 + c] * v[c]).sum::<f64>());
                let n = nv.iter().map(|x| x * x).sum::<f64>().sqrt();
                v = nv.map(|x| x / n);
                v[0]
            })
            .collect();
        assert!(
            norms.windows(2).any(|p| (p[0] - p[1]).abs() > 0.1),
            "{norms:?}"
        );
    }

    #[test]
    fn ridge_matches_normal_equations_solved_another_way() {
        // Small problem: solve (F Fᵀ + λI) w = F y by Gaussian elimination.
        let cfg = EsnConfig {
            units: 8,
            washout: 5,
            ridge: 1e-3,
            ..EsnConfig::default()
        };
        let series: Vec<f64> = (0..80).map(|t| (t as f64 * 0.3).sin()).collect();
        let mut esn = Esn::new(cfg.clone(), 1, 1).unwrap();
        esn.fit(&series).unwrap();
        let fl = esn.features();
        let mut rows: Vec<(Vec<f64>, f64)> = Vec::new();
        esn.reset();
        for t in 0..series.len() - 1 {
            esn.step(&series[t..t + 1]);
            if t >= cfg.washout {
                let mut f = vec![0.0; fl];
                esn.features_into(&series[t..t + 1], &mut f);
                rows.push((f, series[t + 1]));
            }
        }
        // Centre z = f[1..] and y, then solve (Z̃ Z̃ᵀ + λI) w = Z̃ ỹ by
        // Gauss–Jordan elimination with partial pivoting.
        let d = fl - 1;
        let n = rows.len() as f64;
        let zm: Vec<f64> = (0..d)
            .map(|i| rows.iter().map(|(f, _)| f[1 + i]).sum::<f64>() / n)
            .collect();
        let ym = rows.iter().map(|(_, y)| y).sum::<f64>() / n;
        let mut a = vec![vec![0.0; d + 1]; d];
        for i in 0..d {
            for j in 0..d {
                a[i][j] = rows
                    .iter()
                    .map(|(f, _)| (f[1 + i] - zm[i]) * (f[1 + j] - zm[j]))
                    .sum::<f64>()
                    + if i == j { cfg.ridge } else { 0.0 };
            }
            a[i][d] = rows
                .iter()
                .map(|(f, y)| (f[1 + i] - zm[i]) * (y - ym))
                .sum();
        }
        for c in 0..d {
            let p = (c..d)
                .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
                .unwrap();
            a.swap(c, p);
            for r in 0..d {
                if r != c {
                    let m = a[r][c] / a[c][c];
                    let pivot_row = a[c].clone();
                    for (x, pv) in a[r].iter_mut().zip(&pivot_row).skip(c) {
                        *x -= m * pv;
                    }
                }
            }
        }
        let w: Vec<f64> = (0..d).map(|i| a[i][d] / a[i][i]).collect();
        let intercept = ym - w.iter().zip(&zm).map(|(a, b)| a * b).sum::<f64>();
        assert!(
            (intercept - esn.w_out[0]).abs() < 1e-8 * intercept.abs().max(1.0),
            "intercept {intercept} vs {}",
            esn.w_out[0]
        );
        for (i, wi) in w.iter().enumerate() {
            let got = esn.w_out[1 + i];
            assert!(
                (wi - got).abs() < 1e-8 * wi.abs().max(1.0),
                "w[{i}]: {wi} vs {got}"
            );
        }
    }

    #[test]
    fn same_seed_same_model() {
        let series: Vec<f64> = (0..300).map(|t| (t as f64 * 0.2).sin()).collect();
        let mut a = Esn::new(EsnConfig::default(), 1, 1).unwrap();
        let mut b = Esn::new(EsnConfig::default(), 1, 1).unwrap();
        a.fit(&series).unwrap();
        b.fit(&series).unwrap();
        assert_eq!(a.w_dense(), b.w_dense());
        assert_eq!(a.w_out, b.w_out);
        let c = Esn::new(
            EsnConfig {
                seed: 2,
                ..EsnConfig::default()
            },
            1,
            1,
        )
        .unwrap();
        assert_ne!(a.w_dense(), c.w_dense());
    }

    #[test]
    fn saved_model_predicts_identically() {
        let series: Vec<f64> = (0..400).map(|t| (t as f64 * 0.13).sin()).collect();
        let mut a = Esn::new(
            EsnConfig {
                units: 40,
                ..EsnConfig::default()
            },
            1,
            1,
        )
        .unwrap();
        a.fit(&series).unwrap();
        let path =
            std::env::temp_dir().join(format!("recur-esn-{}.safetensors", std::process::id()));
        a.save(&path).unwrap();
        let mut b = Esn::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(a.w_dense(), b.w_dense());
        assert_eq!(a.predict_ahead(&series), b.predict_ahead(&series));
    }

    #[test]
    fn sine_wave_is_generated_closed_loop() {
        let series: Vec<f64> = (0..1400)
            .map(|t| (2.0 * std::f64::consts::PI * t as f64 / 25.0).sin())
            .collect();
        let cfg = EsnConfig {
            units: 100,
            leak: 1.0,
            spectral_radius: 0.9,
            ridge: 1e-9,
            washout: 100,
            ..EsnConfig::default()
        };
        let mut esn = Esn::new(cfg, 1, 1).unwrap();
        esn.fit(&series[..1000]).unwrap();
        let gen = esn.generate(&series[..1000], 200).unwrap();
        let e = nrmse(&series[1000..1200], &gen);
        assert!(e < 1e-3, "closed-loop NRMSE {e}");
    }
}
