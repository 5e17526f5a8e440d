//! Optimisers, gradient clipping and learning-rate schedules, with
//! torch.optim's update rules and defaults (single-tensor, non-foreach
//! arithmetic in the same order).
//!
//! An [`Optimizer`] updates a fixed list of parameter tensors; its state is
//! allocated once in [`Optimizer::new`], and [`Optimizer::state_tensors`] /
//! [`Optimizer::load_state`] round-trip it exactly for resumable training.

use crate::error::{Error, Result};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with (heavy-ball) momentum.
    Sgd,
    /// Adam (Kingma & Ba), weight decay as L2 added to the gradient.
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    AdamW,
    /// RMSprop (uncentered), optionally with momentum.
    RmsProp,
    /// Adagrad.
    Adagrad,
}

impl OptimizerKind {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::RmsProp => "rmsprop",
            OptimizerKind::Adagrad => "adagrad",
        }
    }
    /// Parses a name given by [`OptimizerKind::name`].
    pub fn from_name(s: &str) -> Option<OptimizerKind> {
        [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
            OptimizerKind::RmsProp,
            OptimizerKind::Adagrad,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// Hyper-parameters of an optimiser.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    /// Which rule.
    pub kind: OptimizerKind,
    /// Learning rate (schedules override it per step).
    pub lr: f32,
    /// Momentum for SGD and RMSprop (0: none).
    pub momentum: f32,
    /// L2 penalty added to the gradient; decoupled decay for AdamW.
    pub weight_decay: f32,
    /// Adam's first-moment decay.
    pub beta1: f32,
    /// Adam's second-moment decay.
    pub beta2: f32,
    /// Added to denominators.
    pub eps: f32,
    /// RMSprop's smoothing constant.
    pub alpha: f32,
}

impl OptimConfig {
    /// PyTorch's defaults for `kind` at learning rate `lr`.
    pub fn new(kind: OptimizerKind, lr: f32) -> OptimConfig {
        OptimConfig {
            kind,
            lr,
            momentum: 0.0,
            weight_decay: if kind == OptimizerKind::AdamW {
                0.01
            } else {
                0.0
            },
            beta1: 0.9,
            beta2: 0.999,
            eps: if kind == OptimizerKind::Adagrad {
                1e-10
            } else {
                1e-8
            },
            alpha: 0.99,
        }
    }

    /// Checks every field, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, want: &str, v: f32| {
            Err(Error::Config(format!("{field} must be {want}, got {v}")))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("learning rate", "a finite number >= 0", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", "in [0, 1)", self.momentum);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight decay", "a finite number >= 0", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return bad("beta1", "in [0, 1)", self.beta1);
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad("beta2", "in [0, 1)", self.beta2);
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", "a finite number > 0", self.eps);
        }
        if !(0.0..1.0).contains(&self.alpha) {
            return bad("alpha", "in [0, 1)", self.alpha);
        }
        Ok(())
    }
}

/// An optimiser with its per-tensor state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimConfig,
    sizes: Vec<usize>,
    step: u64,
    /// Adam/AdamW: exp_avg; SGD/RMSprop: momentum_buffer; Adagrad: sum. Per tensor.
    a: Vec<Vec<f32>>,
    /// Adam/AdamW: exp_avg_sq; RMSprop: square_avg. Per tensor.
    b: Vec<Vec<f32>>,
}

impl Optimizer {
    /// An optimiser for tensors of the given lengths, in the order
    /// [`Optimizer::step`] receives them.
    pub fn new(config: OptimConfig, sizes: &[usize]) -> Result<Optimizer> {
        config.validate()?;
        use OptimizerKind::*;
        let (need_a, need_b) = match config.kind {
            Sgd => (config.momentum > 0.0, false),
            Adam | AdamW => (true, true),
            RmsProp => (config.momentum > 0.0, true),
            Adagrad => (true, false),
        };
        let alloc = |yes: bool| {
            sizes
                .iter()
                .map(|&n| if yes { vec![0.0; n] } else { Vec::new() })
                .collect()
        };
        Ok(Optimizer {
            a: alloc(need_a),
            b: alloc(need_b),
            sizes: sizes.to_vec(),
            step: 0,
            config,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Updates made so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One update of every tensor with its gradient, at learning rate `lr`.
    ///
    /// # Panics
    /// If the tensors do not have the sizes given to [`Optimizer::new`].
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], lr: f32) {
        assert_eq!(params.len(), self.sizes.len(), "optimizer: tensor count");
        assert_eq!(grads.len(), self.sizes.len(), "optimizer: gradient count");
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let wd = c.weight_decay;
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            assert!(
                p.len() == self.sizes[i] && g.len() == self.sizes[i],
                "optimizer: tensor {i} size"
            );
            let (a, b) = (&mut self.a[i], &mut self.b[i]);
            match c.kind {
                OptimizerKind::Sgd => {
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if wd != 0.0 {
                            d += wd * p[j];
                        }
                        if c.momentum > 0.0 {
                            a[j] = if t == 1 { d } else { c.momentum * a[j] + d };
                            d = a[j];
                        }
                        p[j] -= lr * d;
                    }
                }
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    let decoupled = c.kind == OptimizerKind::AdamW;
                    let bc1 = 1.0 - c.beta1.powi(t);
                    let bc2 = 1.0 - c.beta2.powi(t);
                    let step_size = lr / bc1;
                    let bc2_sqrt = bc2.sqrt();
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if decoupled {
                            p[j] *= 1.0 - lr * wd;
                        } else if wd != 0.0 {
                            d += wd * p[j];
                        }
                        a[j] = c.beta1 * a[j] + (1.0 - c.beta1) * d;
                        b[j] = c.beta2 * b[j] + (1.0 - c.beta2) * d * d;
                        let denom = b[j].sqrt() / bc2_sqrt + c.eps;
                        p[j] -= step_size * (a[j] / denom);
                    }
                }
                OptimizerKind::RmsProp => {
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if wd != 0.0 {
                            d += wd * p[j];
                        }
                        b[j] = c.alpha * b[j] + (1.0 - c.alpha) * d * d;
                        let avg = b[j].sqrt() + c.eps;
                        if c.momentum > 0.0 {
                            a[j] = c.momentum * a[j] + d / avg;
                            p[j] -= lr * a[j];
                        } else {
                            p[j] -= lr * (d / avg);
                        }
                    }
                }
                OptimizerKind::Adagrad => {
                    for j in 0..p.len() {
                        let mut d = g[j];
                        if wd != 0.0 {
                            d += wd * p[j];
                        }
                        a[j] += d * d;
                        p[j] -= lr * (d / (a[j].sqrt() + c.eps));
                    }
                }
            }
        }
    }

    fn state_names(&self) -> (&'static str, &'static str) {
        match self.config.kind {
            OptimizerKind::Sgd => ("momentum_buffer", ""),
            OptimizerKind::Adam | OptimizerKind::AdamW => ("exp_avg", "exp_avg_sq"),
            OptimizerKind::RmsProp => ("momentum_buffer", "square_avg"),
            OptimizerKind::Adagrad => ("sum", ""),
        }
    }

    /// The state as named flat tensors. The step count is stored exactly as
    /// three 22-bit pieces in `step`.
    pub fn state_tensors(&self) -> Vec<(String, Vec<f32>)> {
        let s = self.step;
        let mut out = vec![(
            "step".to_string(),
            vec![
                (s & 0x3f_ffff) as f32,
                ((s >> 22) & 0x3f_ffff) as f32,
                ((s >> 44) & 0xf_ffff) as f32,
            ],
        )];
        let (na, nb) = self.state_names();
        for i in 0..self.sizes.len() {
            if !self.a[i].is_empty() {
                out.push((format!("{na}.{i}"), self.a[i].clone()));
            }
            if !self.b[i].is_empty() {
                out.push((format!("{nb}.{i}"), self.b[i].clone()));
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_tensors`].
    pub fn load_state(&mut self, tensors: &[(String, Vec<f32>)]) -> Result<()> {
        let find = |name: &str, len: usize| -> Result<&Vec<f32>> {
            let v = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    Error::Config(format!("optimizer state: missing tensor '{name}'"))
                })?;
            if v.len() != len {
                return Err(Error::Config(format!(
                    "optimizer state: '{name}' has {} values, expected {len}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let s = find("step", 3)?;
        let step = s[0] as u64 | (s[1] as u64) << 22 | (s[2] as u64) << 44;
        let (na, nb) = self.state_names();
        let mut a = self.a.clone();
        let mut b = self.b.clone();
        for i in 0..self.sizes.len() {
            if !a[i].is_empty() {
                a[i].copy_from_slice(find(&format!("{na}.{i}"), self.sizes[i])?);
            }
            if !b[i].is_empty() {
                b[i].copy_from_slice(find(&format!("{nb}.{i}"), self.sizes[i])?);
            }
        }
        self.step = step;
        self.a = a;
        self.b = b;
        Ok(())
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`,
/// as `torch.nn.utils.clip_grad_norm_` (factor max_norm / (norm + 1e-6));
/// `max_norm` ≤ 0 only measures. Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sq: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum();
    let norm = sq.sqrt() as f32;
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                for x in g.iter_mut() {
                    *x *= coef;
                }
            }
        }
    }
    norm
}

/// Clamps every gradient element to [−v, v] (`clip_grad_value_`); v ≤ 0 does nothing.
pub fn clip_grad_value(grads: &mut [&mut [f32]], v: f32) {
    if v > 0.0 {
        for g in grads.iter_mut() {
            for x in g.iter_mut() {
                *x = x.clamp(-v, v);
            }
        }
    }
}

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Always the base rate.
    Constant,
    /// Zaremba et al. 2014: the base rate for epochs before `start_epoch`
    /// (0-based), then multiplied by `decay` once per epoch:
    /// lr · decay^max(0, epoch + 1 − start_epoch). With start_epoch = 4 and
    /// decay = 0.5, epochs 0–3 use lr, epoch 4 lr/2, epoch 5 lr/4.
    Step {
        /// Factor per epoch.
        decay: f32,
        /// First decayed epoch.
        start_epoch: usize,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_steps`
    /// (`CosineAnnealingLR`'s closed form), then `min_lr`.
    Cosine {
        /// Length of the descent in steps.
        total_steps: u64,
        /// Final rate.
        min_lr: f32,
    },
}

impl LrSchedule {
    /// The rate for update number `step` (0-based) in epoch `epoch` (0-based).
    pub fn lr(&self, base_lr: f32, step: u64, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::Step { decay, start_epoch } => {
                let k = (epoch + 1).saturating_sub(start_epoch);
                base_lr * decay.powi(k as i32)
            }
            LrSchedule::Cosine {
                total_steps,
                min_lr,
            } => {
                if total_steps == 0 || step >= total_steps {
                    return min_lr;
                }
                let f = (std::f64::consts::PI * step as f64 / total_steps as f64).cos();
                (min_lr as f64 + (base_lr - min_lr) as f64 * (1.0 + f) / 2.0) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tensors, fixed gradients per step: runs `n` steps and returns params.
    fn run(cfg: OptimConfig, n: usize) -> Vec<Vec<f32>> {
        let mut p = vec![vec![0.5f32, -1.0, 2.0], vec![0.25f32]];
        let mut opt = Optimizer::new(cfg, &[3, 1]).unwrap();
        for k in 0..n {
            let g = [vec![0.1f32 * (k as f32 + 1.0), -0.2, 0.3], vec![-0.4f32]];
            let mut ps: Vec<&mut [f32]> = p.iter_mut().map(|v| &mut v[..]).collect();
            let gs: Vec<&[f32]> = g.iter().map(|v| &v[..]).collect();
            opt.step(&mut ps, &gs, opt.config().lr);
        }
        p
    }

    /// The same steps in f64, straight from the formulas.
    fn reference(cfg: &OptimConfig, n: usize) -> Vec<f64> {
        let mut p = vec![0.5f64, -1.0, 2.0, 0.25];
        let (mut a, mut b) = (vec![0.0f64; 4], vec![0.0f64; 4]);
        let (lr, wd, m) = (cfg.lr as f64, cfg.weight_decay as f64, cfg.momentum as f64);
        for k in 0..n {
            let g = [0.1 * (k as f64 + 1.0), -0.2, 0.3, -0.4];
            let t = (k + 1) as i32;
            for j in 0..4 {
                let mut d = g[j];
                match cfg.kind {
                    OptimizerKind::Sgd => {
                        d += wd * p[j];
                        if m > 0.0 {
                            a[j] = if t == 1 { d } else { m * a[j] + d };
                            d = a[j];
                        }
                        p[j] -= lr * d;
                    }
                    OptimizerKind::Adam | OptimizerKind::AdamW => {
                        let (b1, b2, eps) = (cfg.beta1 as f64, cfg.beta2 as f64, cfg.eps as f64);
                        if cfg.kind == OptimizerKind::AdamW {
                            p[j] *= 1.0 - lr * wd;
                        } else {
                            d += wd * p[j];
                        }
                        a[j] = b1 * a[j] + (1.0 - b1) * d;
                        b[j] = b2 * b[j] + (1.0 - b2) * d * d;
                        let mhat = a[j] / (1.0 - b1.powi(t));
                        let vhat = b[j] / (1.0 - b2.powi(t));
                        p[j] -= lr * mhat / (vhat.sqrt() + eps);
                    }
                    OptimizerKind::RmsProp => {
                        let (al, eps) = (cfg.alpha as f64, cfg.eps as f64);
                        d += wd * p[j];
                        b[j] = al * b[j] + (1.0 - al) * d * d;
                        let avg = b[j].sqrt() + eps;
                        if m > 0.0 {
                            a[j] = m * a[j] + d / avg;
                            p[j] -= lr * a[j];
                        } else {
                            p[j] -= lr * d / avg;
                        }
                    }
                    OptimizerKind::Adagrad => {
                        d += wd * p[j];
                        a[j] += d * d;
                        p[j] -= lr * d / (a[j].sqrt() + cfg.eps as f64);
                    }
                }
            }
        }
        p
    }

    fn configs() -> Vec<OptimConfig> {
        let mut v = Vec::new();
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
            OptimizerKind::RmsProp,
            OptimizerKind::Adagrad,
        ] {
            for (m, wd) in [(0.0f32, 0.0f32), (0.9, 0.05)] {
                let mut c = OptimConfig::new(kind, 0.05);
                c.momentum = m;
                c.weight_decay = if kind == OptimizerKind::AdamW {
                    wd.max(0.01)
                } else {
                    wd
                };
                v.push(c);
            }
        }
        v
    }

    #[test]
    fn every_optimizer_matches_its_formula() {
        for c in configs() {
            let got: Vec<f32> = run(c.clone(), 5).concat();
            let want = reference(&c, 5);
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{c:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn state_round_trip_continues_bit_for_bit() {
        for c in configs() {
            let mut p = vec![vec![0.5f32, -1.0, 2.0]];
            let mut opt = Optimizer::new(c.clone(), &[3]).unwrap();
            let g = [0.3f32, -0.1, 0.2];
            for _ in 0..3 {
                opt.step(&mut [&mut p[0][..]], &[&g], 0.05);
            }
            let mut restored = Optimizer::new(c.clone(), &[3]).unwrap();
            restored.load_state(&opt.state_tensors()).unwrap();
            assert_eq!(restored.steps_taken(), 3);
            let mut q = p.clone();
            opt.step(&mut [&mut p[0][..]], &[&g], 0.05);
            restored.step(&mut [&mut q[0][..]], &[&g], 0.05);
            assert_eq!(p, q, "{c:?}");
        }
    }

    #[test]
    fn each_optimizer_minimises_a_quadratic() {
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
            OptimizerKind::RmsProp,
            OptimizerKind::Adagrad,
        ] {
            // Adagrad's steps shrink like 1/√t, so it needs a larger rate.
            let lr = if kind == OptimizerKind::Adagrad {
                1.0
            } else {
                0.1
            };
            let mut c = OptimConfig::new(kind, lr);
            c.weight_decay = 0.0;
            let mut opt = Optimizer::new(c, &[2]).unwrap();
            let mut p = [0.0f32, 6.0];
            let f = |p: &[f32]| p.iter().map(|x| (x - 3.0) * (x - 3.0)).sum::<f32>();
            let start = f(&p);
            for _ in 0..200 {
                let g: Vec<f32> = p.iter().map(|x| 2.0 * (x - 3.0)).collect();
                opt.step(&mut [&mut p[..]], &[&g], lr);
            }
            assert!(f(&p) < 0.05 * start, "{kind:?}: {}", f(&p));
        }
    }

    #[test]
    fn clipping_by_norm_and_value() {
        let mut a = vec![3.0f32, 0.0];
        let mut b = vec![4.0f32];
        let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert_eq!(n, 5.0);
        let coef = 1.0 / (5.0 + 1e-6);
        assert!((a[0] - 3.0 * coef).abs() < 1e-7 && (b[0] - 4.0 * coef).abs() < 1e-7);
        let mut c = vec![0.3f32, -2.0, 1.0];
        assert_eq!(
            clip_grad_norm(&mut [&mut c], 0.0),
            (0.09f32 + 4.0 + 1.0).sqrt()
        );
        assert_eq!(c, [0.3, -2.0, 1.0]);
        clip_grad_value(&mut [&mut c], 0.5);
        assert_eq!(c, [0.3, -0.5, 0.5]);
    }

    #[test]
    fn schedules() {
        let s = LrSchedule::Step {
            decay: 0.5,
            start_epoch: 4,
        };
        assert_eq!([0, 3, 4, 5].map(|e| s.lr(1.0, 0, e)), [1.0, 1.0, 0.5, 0.25]);
        let c = LrSchedule::Cosine {
            total_steps: 100,
            min_lr: 0.1,
        };
        assert_eq!(c.lr(1.0, 0, 0), 1.0);
        assert!((c.lr(1.0, 50, 0) - 0.55).abs() < 1e-6);
        assert_eq!(c.lr(1.0, 100, 0), 0.1);
        assert_eq!(LrSchedule::Constant.lr(0.3, 9, 9), 0.3);
    }

    #[test]
    fn bad_learning_rates_are_named() {
        for lr in [f32::NAN, -1.0, f32::INFINITY] {
            let e = OptimConfig::new(OptimizerKind::Adam, lr)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("learning rate"), "{e}");
        }
    }
}
