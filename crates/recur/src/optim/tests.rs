//! Tests of the optimisers against f64 hand computations, state round
//! trips, clipping and schedules.

use super::*;

/// Hyper-parameters as the decimals a user writes (Python floats).
#[derive(Clone, Copy, Debug)]
struct Hyper {
    kind: OptimizerKind,
    lr: f64,
    momentum: f64,
    wd: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    alpha: f64,
}

impl Hyper {
    /// PyTorch's defaults for `kind` (those of [`OptimConfig::new`], as the
    /// decimals Python holds) with these settings.
    fn new(kind: OptimizerKind, lr: f64, momentum: f64, wd: f64) -> Hyper {
        let d = OptimConfig::new(kind, 1.0);
        Hyper {
            kind,
            lr,
            momentum,
            wd,
            beta1: py_float(d.beta1),
            beta2: py_float(d.beta2),
            eps: py_float(d.eps),
            alpha: py_float(d.alpha),
        }
    }

    fn config(&self) -> OptimConfig {
        OptimConfig {
            kind: self.kind,
            lr: self.lr as f32,
            momentum: self.momentum as f32,
            weight_decay: self.wd as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            alpha: self.alpha as f32,
        }
    }
}

/// Every kind with momentum and weight decay off and on, and Adam with a
/// β1 below 0.5 (the other branch of lerp).
fn cases() -> Vec<Hyper> {
    let mut v = Vec::new();
    for kind in OptimizerKind::ALL {
        v.push(Hyper::new(kind, 0.05, 0.0, 0.0));
        v.push(Hyper::new(kind, 0.05, 0.9, 0.1));
    }
    v.push(Hyper::new(OptimizerKind::Sgd, 0.05, 0.9, 0.0));
    v.push(Hyper::new(OptimizerKind::RmsProp, 0.01, 0.5, 0.0));
    v.push(Hyper::new(OptimizerKind::AdamW, 0.05, 0.0, 0.01));
    let mut a = Hyper::new(OptimizerKind::Adam, 0.02, 0.0, 0.05);
    a.beta1 = 0.3;
    a.beta2 = 0.95;
    v.push(a);
    v
}

const SIZES: [usize; 2] = [3, 2];

fn initial_params() -> Vec<Vec<f32>> {
    vec![vec![0.5, -1.0, 2.0], vec![0.25, -3.0]]
}

/// The gradient of element `j` (over both tensors) at step `k`: varied in
/// sign and size, fixed in advance so f32 and f64 runs see the same values.
fn grad(k: usize, j: usize) -> f32 {
    ((0.7 * k as f64 + 1.3 * j as f64).sin() * (0.2 + 0.3 * j as f64)) as f32
}

/// `n` steps of the optimiser at the configured rate.
fn run(h: &Hyper, n: usize) -> Vec<f32> {
    let mut p = initial_params();
    let mut opt = Optimizer::new(h.config(), &SIZES).unwrap();
    for k in 0..n {
        let g: Vec<Vec<f32>> = vec![
            (0..3).map(|j| grad(k, j)).collect(),
            (3..5).map(|j| grad(k, j)).collect(),
        ];
        let mut ps: Vec<&mut [f32]> = p.iter_mut().map(|v| &mut v[..]).collect();
        let gs: Vec<&[f32]> = g.iter().map(|v| &v[..]).collect();
        opt.step(&mut ps, &gs, h.lr as f32);
    }
    assert_eq!(opt.steps_taken(), n as u64);
    p.concat()
}

/// The same `n` steps in f64, written straight from the update formulas.
fn reference(h: &Hyper, n: usize) -> Vec<f64> {
    let mut p: Vec<f64> = initial_params()
        .concat()
        .iter()
        .map(|&x| x as f64)
        .collect();
    let len = p.len();
    // Moments / buffers / accumulators.
    let (mut a, mut b) = (vec![0.0f64; len], vec![0.0f64; len]);
    let (lr, wd, mom) = (h.lr, h.wd, h.momentum);
    for k in 0..n {
        let t = (k + 1) as i32;
        for j in 0..len {
            let grad = grad(k, j) as f64;
            match h.kind {
                OptimizerKind::Sgd => {
                    let mut g = grad + wd * p[j];
                    if mom > 0.0 {
                        a[j] = if t == 1 { g } else { mom * a[j] + g };
                        g = a[j];
                    }
                    p[j] -= lr * g;
                }
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    let g = if h.kind == OptimizerKind::AdamW {
                        p[j] *= 1.0 - lr * wd;
                        grad
                    } else {
                        grad + wd * p[j]
                    };
                    a[j] = h.beta1 * a[j] + (1.0 - h.beta1) * g;
                    b[j] = h.beta2 * b[j] + (1.0 - h.beta2) * g * g;
                    let bc1 = 1.0 - h.beta1.powi(t);
                    let bc2 = 1.0 - h.beta2.powi(t);
                    let step_size = lr / bc1;
                    let denom = b[j].sqrt() / bc2.sqrt() + h.eps;
                    p[j] -= step_size * a[j] / denom;
                }
                OptimizerKind::RmsProp => {
                    let g = grad + wd * p[j];
                    b[j] = h.alpha * b[j] + (1.0 - h.alpha) * g * g;
                    let avg = b[j].sqrt() + h.eps;
                    if mom > 0.0 {
                        a[j] = mom * a[j] + g / avg;
                        p[j] -= lr * a[j];
                    } else {
                        p[j] -= lr * g / avg;
                    }
                }
                OptimizerKind::Adagrad => {
                    let g = grad + wd * p[j];
                    a[j] += g * g;
                    p[j] -= lr * g / (a[j].sqrt() + h.eps);
                }
            }
        }
    }
    p
}

#[test]
fn every_optimizer_matches_its_formula_in_f64() {
    for h in cases() {
        for n in [1, 2, 6] {
            let got = run(&h, n);
            let want = reference(&h, n);
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                // A few f32 roundings per step, on values of order 1.
                let err = (*g as f64 - w).abs();
                assert!(
                    err <= 1e-6 * (1.0 + w.abs()),
                    "{h:?}, {n} steps, element {j}: {g} vs {w} (error {err:e})"
                );
            }
            // And the parameters did move.
            assert_ne!(got, initial_params().concat(), "{h:?}");
        }
    }
}

#[test]
fn state_round_trip_continues_bit_for_bit() {
    for h in cases() {
        let cfg = h.config();
        let mut p = initial_params();
        let mut opt = Optimizer::new(cfg.clone(), &SIZES).unwrap();
        let step = |opt: &mut Optimizer, p: &mut Vec<Vec<f32>>, k: usize| {
            let g: Vec<Vec<f32>> = vec![
                (0..3).map(|j| grad(k, j)).collect(),
                (3..5).map(|j| grad(k, j)).collect(),
            ];
            let mut ps: Vec<&mut [f32]> = p.iter_mut().map(|v| &mut v[..]).collect();
            let gs: Vec<&[f32]> = g.iter().map(|v| &v[..]).collect();
            // A changing rate, as a schedule would pass.
            opt.step(&mut ps, &gs, cfg.lr / (1.0 + k as f32));
        };
        for k in 0..3 {
            step(&mut opt, &mut p, k);
        }
        let saved = opt.state_tensors();
        let mut restored = Optimizer::new(cfg.clone(), &SIZES).unwrap();
        restored.load_state(&saved).unwrap();
        assert_eq!(restored.steps_taken(), 3);
        let bits = |s: &[(String, Vec<f32>)]| -> Vec<(String, Vec<u32>)> {
            s.iter()
                .map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect()))
                .collect()
        };
        assert_eq!(bits(&restored.state_tensors()), bits(&saved), "{h:?}");
        let mut q = p.clone();
        for k in 3..6 {
            step(&mut opt, &mut p, k);
            step(&mut restored, &mut q, k);
        }
        let pb: Vec<u32> = p.concat().iter().map(|x| x.to_bits()).collect();
        let qb: Vec<u32> = q.concat().iter().map(|x| x.to_bits()).collect();
        assert_eq!(pb, qb, "{h:?}");
        assert_eq!(bits(&opt.state_tensors()), bits(&restored.state_tensors()));
    }
}

#[test]
fn state_tensors_use_pytorch_names() {
    let names = |kind, momentum: f32| -> Vec<String> {
        let mut c = OptimConfig::new(kind, 0.1);
        c.momentum = momentum;
        let opt = Optimizer::new(c, &[4, 1]).unwrap();
        let s = opt.state_tensors();
        for (n, v) in &s {
            let want = if n == "step" {
                3
            } else if n.ends_with(".0") {
                4
            } else {
                1
            };
            assert_eq!(v.len(), want, "{n}");
        }
        s.into_iter().map(|(n, _)| n).collect()
    };
    use OptimizerKind::*;
    assert_eq!(names(Sgd, 0.0), ["step"]);
    assert_eq!(
        names(Sgd, 0.9),
        ["step", "momentum_buffer.0", "momentum_buffer.1"]
    );
    for kind in [Adam, AdamW] {
        assert_eq!(
            names(kind, 0.0),
            [
                "step",
                "exp_avg.0",
                "exp_avg_sq.0",
                "exp_avg.1",
                "exp_avg_sq.1"
            ]
        );
    }
    assert_eq!(
        names(RmsProp, 0.0),
        ["step", "square_avg.0", "square_avg.1"]
    );
    assert_eq!(
        names(RmsProp, 0.5),
        [
            "step",
            "momentum_buffer.0",
            "square_avg.0",
            "momentum_buffer.1",
            "square_avg.1"
        ]
    );
    assert_eq!(names(Adagrad, 0.0), ["step", "sum.0", "sum.1"]);
}

#[test]
fn step_count_is_stored_losslessly() {
    let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Adam, 0.1), &[2]).unwrap();
    let mut state = opt.state_tensors();
    for count in [0u64, 1, (1 << 24) + 1, (1 << 50) + (1 << 30) + 7, u64::MAX] {
        let pieces = vec![
            (count & 0x3f_ffff) as f32,
            ((count >> 22) & 0x3f_ffff) as f32,
            (count >> 44) as f32,
        ];
        state[0].1 = pieces.clone();
        opt.load_state(&state).unwrap();
        assert_eq!(opt.steps_taken(), count);
        assert_eq!(opt.state_tensors()[0], ("step".to_string(), pieces));
    }
}

#[test]
fn load_state_names_what_is_wrong_and_changes_nothing() {
    let c = OptimConfig::new(OptimizerKind::Adam, 0.1);
    let mut opt = Optimizer::new(c.clone(), &[2, 3]).unwrap();
    let mut p = [1.0f32, 2.0];
    let mut q = [1.0f32, 2.0, 3.0];
    opt.step(
        &mut [&mut p, &mut q],
        &[&[0.5, -0.5], &[1.0, 0.0, -1.0]],
        0.1,
    );
    let good = opt.state_tensors();
    let before = opt.state_tensors();
    let check = |state: Vec<(String, Vec<f32>)>, needle: &str| {
        let mut fresh = opt.clone();
        let e = fresh.load_state(&state).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(needle), "{msg} lacks {needle}");
        assert_eq!(fresh.state_tensors(), before, "state changed on error");
    };
    // Missing.
    let s: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "exp_avg_sq.1")
        .cloned()
        .collect();
    check(s, "missing tensor 'exp_avg_sq.1'");
    let s: Vec<_> = good.iter().filter(|(n, _)| n != "step").cloned().collect();
    check(s, "missing tensor 'step'");
    // Wrong length.
    let mut s = good.clone();
    s[1].1.push(0.0);
    check(s, "'exp_avg.0' has 3 values, expected 2");
    // Another optimiser's state.
    let mut s = good.clone();
    s.push(("momentum_buffer.0".into(), vec![0.0; 2]));
    check(s, "unexpected tensor 'momentum_buffer.0'");
    // Twice.
    let mut s = good.clone();
    s.push(good[2].clone());
    check(s, "given twice");
    // Not a count.
    for bad in [
        [1.5, 0.0, 0.0],
        [-1.0, 0.0, 0.0],
        [f32::NAN, 0.0, 0.0],
        [0.0, 4194304.0, 0.0],
    ] {
        let mut s = good.clone();
        s[0].1 = bad.to_vec();
        check(s, "'step'");
    }
    // Adam state into Adagrad.
    let mut other = Optimizer::new(OptimConfig::new(OptimizerKind::Adagrad, 0.1), &[2, 3]).unwrap();
    let msg = other.load_state(&good).unwrap_err().to_string();
    assert!(msg.contains("exp_avg"), "{msg}");
    // The good state loads.
    opt.clone().load_state(&good).unwrap();
}

#[test]
#[should_panic(expected = "tensor 1")]
fn step_checks_sizes() {
    let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Sgd, 0.1), &[2, 3]).unwrap();
    let mut p = [0.0f32; 2];
    let mut q = [0.0f32; 2];
    opt.step(&mut [&mut p, &mut q], &[&[0.0; 2], &[0.0; 2]], 0.1);
}

#[test]
fn each_optimizer_minimises_a_quadratic() {
    use OptimizerKind::*;
    // (kind, lr, momentum); Adagrad's steps shrink like 1/√t, so it gets a larger rate.
    for (kind, lr, momentum) in [
        (Sgd, 0.1, 0.0),
        (Sgd, 0.02, 0.9),
        (Adam, 0.1, 0.0),
        (AdamW, 0.1, 0.0),
        (RmsProp, 0.05, 0.0),
        (RmsProp, 0.01, 0.9),
        (Adagrad, 1.0, 0.0),
    ] {
        let mut c = OptimConfig::new(kind, lr);
        c.momentum = momentum;
        let mut opt = Optimizer::new(c, &[2, 1]).unwrap();
        let mut p = [0.0f32, 6.0];
        let mut q = [-2.0f32];
        let f = |p: &[f32], q: &[f32]| -> f32 {
            p.iter().chain(q).map(|x| (x - 3.0) * (x - 3.0)).sum()
        };
        let start = f(&p, &q);
        for _ in 0..200 {
            let gp: Vec<f32> = p.iter().map(|x| 2.0 * (x - 3.0)).collect();
            let gq: Vec<f32> = q.iter().map(|x| 2.0 * (x - 3.0)).collect();
            opt.step(&mut [&mut p, &mut q], &[&gp, &gq], lr);
        }
        let end = f(&p, &q);
        assert!(
            end < 1e-2 * start,
            "{kind:?} momentum {momentum}: {start} -> {end}"
        );
    }
}

#[test]
fn sgd_and_adam_take_the_expected_first_step() {
    // SGD: p - lr·(g + wd·p), exactly.
    let mut c = OptimConfig::new(OptimizerKind::Sgd, 0.5);
    c.weight_decay = 0.25;
    let mut opt = Optimizer::new(c, &[1]).unwrap();
    let mut p = [2.0f32];
    opt.step(&mut [&mut p], &[&[1.0]], 0.5);
    assert_eq!(p, [2.0 - 0.5 * (1.0 + 0.25 * 2.0)]);
    // Adam's first step is lr·g/(|g| + eps·…) ≈ lr·sign(g), whatever β.
    let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Adam, 0.01), &[2]).unwrap();
    let mut p = [1.0f32, 1.0];
    opt.step(&mut [&mut p], &[&[3.0, -0.5]], 0.01);
    assert!(
        (p[0] - 0.99).abs() < 2e-7 && (p[1] - 1.01).abs() < 2e-7,
        "{p:?}"
    );
}

#[test]
fn python_floats_of_hyper_parameters() {
    assert_eq!(py_float(0.9), 0.9f64);
    assert_eq!(py_float(0.999), 0.999f64);
    assert_eq!(py_float(1e-8), 1e-8f64);
    assert_eq!(py_float(1e-10), 1e-10f64);
    assert_eq!(py_float(0.001), 0.001f64);
    assert_eq!(py_float(3.0), 3.0f64);
    assert_eq!(py_float(-0.25), -0.25f64);
    assert_eq!(py_float(f32::MAX) as f32, f32::MAX);
    assert_eq!(
        py_float(f32::MIN_POSITIVE / 8.0) as f32,
        f32::MIN_POSITIVE / 8.0
    );
    assert!(py_float(f32::NAN).is_nan());
    assert_eq!(py_float(f32::INFINITY), f64::INFINITY);
    // The reason for it: 1 - β computed from the f32 is off in the 7th digit.
    assert_ne!((1.0 - 0.9f32 as f64) as f32, (1.0 - py_float(0.9)) as f32);
}

#[test]
fn clip_grad_norm_matches_hand_computation() {
    let mut a = vec![3.0f32, 0.0];
    let mut b = vec![4.0f32];
    let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
    assert_eq!(n, 5.0);
    let coef = 1.0 / (5.0 + 1e-6);
    assert!((a[0] as f64 - 3.0 * coef).abs() < 1e-7, "{a:?}");
    assert_eq!(a[1], 0.0);
    assert!((b[0] as f64 - 4.0 * coef).abs() < 1e-7, "{b:?}");

    // Varied values: the returned norm is the pre-clip norm, the clipped
    // norm is max_norm (less the 1e-6 margin).
    let mut x: Vec<f32> = (0..37).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
    let mut y: Vec<f32> = (0..5).map(|i| -(i as f32) * 0.5).collect();
    let want = x
        .iter()
        .chain(&y)
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let (x0, y0) = (x.clone(), y.clone());
    let n = clip_grad_norm(&mut [&mut x, &mut y], 2.0);
    assert!((n as f64 - want).abs() < 1e-6 * want, "{n} vs {want}");
    let scale = 2.0 / (want + 1e-6);
    for (got, orig) in x.iter().chain(&y).zip(x0.iter().chain(&y0)) {
        assert!(
            (*got as f64 - *orig as f64 * scale).abs() < 1e-6,
            "{got} {orig}"
        );
    }
    let after = clip_grad_norm(&mut [&mut x, &mut y], 0.0);
    assert!((after - 2.0).abs() < 1e-5, "{after}");

    // Below the limit, or no limit: unchanged, norm still returned.
    let mut c = vec![0.3f32, -2.0, 1.0];
    let norm = clip_grad_norm(&mut [&mut c], 10.0);
    assert!((norm as f64 - (0.09f64 + 4.0 + 1.0).sqrt()).abs() < 1e-6);
    assert_eq!(c, [0.3, -2.0, 1.0]);
    assert_eq!(clip_grad_norm(&mut [&mut c], 0.0), norm);
    assert_eq!(clip_grad_norm(&mut [&mut c], -1.0), norm);
    assert_eq!(c, [0.3, -2.0, 1.0]);
    assert_eq!(clip_grad_norm(&mut [], 1.0), 0.0);
}

#[test]
fn clip_grad_value_clamps() {
    let mut a = vec![0.3f32, -2.0, 1.0, -0.5];
    let mut b = vec![f32::NAN, 7.0];
    clip_grad_value(&mut [&mut a, &mut b], 0.5);
    assert_eq!(a, [0.3, -0.5, 0.5, -0.5]);
    assert!(b[0].is_nan());
    assert_eq!(b[1], 0.5);
    let mut c = vec![-3.0f32, 3.0];
    clip_grad_value(&mut [&mut c], 0.0);
    clip_grad_value(&mut [&mut c], -1.0);
    clip_grad_value(&mut [&mut c], f32::NAN);
    assert_eq!(c, [-3.0, 3.0]);
}

#[test]
fn schedules() {
    assert_eq!(LrSchedule::Constant.lr(0.3, 9, 9), 0.3);

    let s = LrSchedule::Step {
        decay: 0.5,
        start_epoch: 4,
    };
    let at = |e| s.lr(1.0, 123, e);
    assert_eq!(
        [0, 1, 3, 4, 5, 6, 10].map(at),
        [1.0, 1.0, 1.0, 0.5, 0.25, 0.125, 1.0 / 128.0]
    );
    let s = LrSchedule::Step {
        decay: 0.8,
        start_epoch: 0,
    };
    assert_eq!(s.lr(20.0, 0, 0), 16.0);
    assert_eq!(s.lr(20.0, 0, 2), (20.0f64 * 0.8 * 0.8 * 0.8) as f32);

    let c = LrSchedule::Cosine {
        total_steps: 100,
        min_lr: 0.1,
    };
    let hand = |step: f64| 0.1 + 0.9 * (1.0 + (std::f64::consts::PI * step / 100.0).cos()) / 2.0;
    assert_eq!(c.lr(1.0, 0, 0), 1.0);
    for step in [1u64, 25, 50, 75, 99] {
        let got = c.lr(1.0, step, 7);
        assert!(
            (got as f64 - hand(step as f64)).abs() < 1e-7,
            "{step}: {got}"
        );
    }
    assert!((c.lr(1.0, 50, 0) - 0.55).abs() < 1e-7);
    assert_eq!(c.lr(1.0, 100, 0), 0.1);
    assert_eq!(c.lr(1.0, 1000, 3), 0.1);
    let empty = LrSchedule::Cosine {
        total_steps: 0,
        min_lr: 0.01,
    };
    assert_eq!(empty.lr(1.0, 0, 0), 0.01);
}

#[test]
fn validate_names_the_bad_field() {
    for lr in [f32::NAN, -1.0, f32::INFINITY, -0.001] {
        let e = OptimConfig::new(OptimizerKind::Adam, lr)
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        let msg = e.to_string();
        assert!(msg.contains("learning rate"), "{msg}");
        assert!(msg.contains(&format!("got {lr}")), "{msg}");
    }
    let msg = OptimConfig::new(OptimizerKind::Sgd, f32::NAN)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("learning rate must be a finite number >= 0, got NaN"),
        "{msg}"
    );
    let base = OptimConfig::new(OptimizerKind::RmsProp, 0.1);
    type Edit = fn(&mut OptimConfig);
    let edits: [(Edit, &str); 9] = [
        (|c| c.momentum = 1.0, "momentum"),
        (|c| c.momentum = -0.1, "momentum"),
        (|c| c.weight_decay = -1.0, "weight decay"),
        (|c| c.weight_decay = f32::NAN, "weight decay"),
        (|c| c.beta1 = 1.0, "beta1"),
        (|c| c.beta2 = -0.5, "beta2"),
        (|c| c.eps = 0.0, "eps"),
        (|c| c.eps = f32::NAN, "eps"),
        (|c| c.alpha = 1.5, "alpha"),
    ];
    for (edit, field) in edits {
        let mut c = base.clone();
        edit(&mut c);
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains(field), "{msg} lacks {field}");
        let msg = Optimizer::new(c, &[1]).unwrap_err().to_string();
        assert!(msg.contains(field), "{msg} lacks {field}");
    }
    for kind in OptimizerKind::ALL {
        OptimConfig::new(kind, 0.0).validate().unwrap();
        OptimConfig::new(kind, 1e-3).validate().unwrap();
    }
}

#[test]
fn kinds_and_defaults() {
    for kind in OptimizerKind::ALL {
        assert_eq!(OptimizerKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(
        OptimizerKind::ALL.map(OptimizerKind::name),
        ["sgd", "adam", "adamw", "rmsprop", "adagrad"]
    );
    assert_eq!(OptimizerKind::from_name("Adam"), None);
    assert_eq!(OptimizerKind::from_name("lbfgs"), None);

    let c = OptimConfig::new(OptimizerKind::AdamW, 1e-3);
    assert_eq!(
        (c.lr, c.weight_decay, c.beta1, c.beta2, c.eps),
        (1e-3, 0.01, 0.9, 0.999, 1e-8)
    );
    let c = OptimConfig::new(OptimizerKind::Adagrad, 0.01);
    assert_eq!((c.weight_decay, c.eps), (0.0, 1e-10));
    let c = OptimConfig::new(OptimizerKind::RmsProp, 0.01);
    assert_eq!(
        (c.alpha, c.eps, c.momentum, c.weight_decay),
        (0.99, 1e-8, 0.0, 0.0)
    );
    let opt = Optimizer::new(c.clone(), &[3]).unwrap();
    assert_eq!(opt.config(), &c);
    assert_eq!(opt.steps_taken(), 0);
}
