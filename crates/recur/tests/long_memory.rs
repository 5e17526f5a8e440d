//! The long-memory toolkit: initialisations, gradient-flow diagnostics
//! (checked against dense finite-difference Jacobians and split runs), and
//! the tasks.

mod common;
use common::{Layer, Lcg};
use recur::diagnose::{rnn_jacobian_norms, state_grad_norms};
use recur::init::{init_params, set_lstm_forget_bias, RecurrentInit};
use recur::layer::rnn::Leak;
use recur::linalg::spectral_radius;
use recur::task::{TaskCell, TaskConfig, TaskKind, TaskRun};
use recur::{CellKind, RnnConfig, RnnInput, RnnWorkspace};

/// σ_max of a dense `[n, n]` matrix: sqrt(ρ(JᵀJ)) from all eigenvalues.
fn dense_sigma_max(j: &[f64], n: usize) -> f64 {
    let mut jtj = vec![0.0; n * n];
    for a in 0..n {
        for b in 0..n {
            jtj[a * n + b] = (0..n).map(|k| j[k * n + a] * j[k * n + b]).sum();
        }
    }
    spectral_radius(&jtj, n).unwrap().sqrt()
}

#[test]
fn orthogonal_identity_and_forget_bias_inits() {
    let h = 6;
    let Layer { rnn, mut store } = Layer::<f64>::new(RnnConfig::new(CellKind::Lstm, 3, h));
    init_params(
        &mut store.params,
        rnn.param_info(),
        h,
        RecurrentInit::Orthogonal,
        5,
    );
    let w = rnn.param(&store, "weight_hh_l0").unwrap();
    for block in w.chunks_exact(h * h) {
        for a in 0..h {
            for b in 0..h {
                let dot: f64 = (0..h).map(|k| block[k * h + a] * block[k * h + b]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "WᵀW[{a},{b}] = {dot}");
            }
        }
    }
    set_lstm_forget_bias(&rnn, &mut store, 1.0).unwrap();
    let (bi, bh) = (
        rnn.param(&store, "bias_ih_l0").unwrap(),
        rnn.param(&store, "bias_hh_l0").unwrap(),
    );
    assert!(bi[h..2 * h].iter().all(|&v| v == 1.0) && bh[h..2 * h].iter().all(|&v| v == 0.0));
    assert!(
        bi[..h].iter().any(|&v| v != 1.0),
        "other gates keep their draw"
    );

    let Layer { rnn, mut store } = Layer::<f64>::new(RnnConfig::new(CellKind::RnnRelu, 2, h));
    init_params(
        &mut store.params,
        rnn.param_info(),
        h,
        RecurrentInit::Identity(1.0),
        5,
    );
    let w = rnn.param(&store, "weight_hh_l0").unwrap();
    assert!((0..h * h).all(|i| w[i] == if i % (h + 1) == 0 { 1.0 } else { 0.0 }));
    for b in ["bias_ih_l0", "bias_hh_l0"] {
        assert!(rnn.param(&store, b).unwrap().iter().all(|&v| v == 0.0));
    }
    let wi = rnn.param(&store, "weight_ih_l0").unwrap();
    assert!(wi.iter().all(|v| v.abs() < 0.01) && wi.iter().any(|&v| v != 0.0));

    let mut gru = Layer::<f64>::new(RnnConfig::new(CellKind::Gru, 3, h));
    assert!(set_lstm_forget_bias(&gru.rnn, &mut gru.store, 1.0).is_err());
}

/// The step Jacobian's spectral norm from power iteration equals σ_max of the
/// dense Jacobian built by finite differences of one step.
#[test]
fn jacobian_norms_match_dense_finite_differences() {
    let (i, h, bn) = (3, 5, 2);
    let eps = 1e-6;
    let mut r = Lcg(31);
    let x = r.vec(bn * i, 1.0);
    // Leaky Elman units: (1 − α)I + diag(α f′) W_hh.
    for cfg in [
        RnnConfig::new(CellKind::RnnTanh, i, h),
        RnnConfig::new(CellKind::Lstm, i, h),
        RnnConfig::new(CellKind::Gru, i, h),
        RnnConfig::new(CellKind::RnnTanh, i, h).leak(Leak::Fixed(0.3)),
        RnnConfig::new(CellKind::RnnTanh, i, h).leak(Leak::Learned(0.6)),
    ] {
        let cell = cfg.cell;
        let Layer { rnn, mut store } = Layer::<f64>::new(cfg);
        store.params.iter_mut().for_each(|p| *p = r.next() * 0.8);
        let lstm = cell == CellKind::Lstm;
        let n = if lstm { 2 * h } else { h };
        let s0 = r.vec(bn * n, 0.8);
        // Rows [B, H] of h0 and c0 from the state vector of each row.
        let split = |s: &[f64]| {
            let (mut h0, mut c0) = (vec![0.0; bn * h], vec![0.0; bn * h]);
            for b in 0..bn {
                h0[b * h..][..h].copy_from_slice(&s[b * n..][..h]);
                if lstm {
                    c0[b * h..][..h].copy_from_slice(&s[b * n + h..][..h]);
                }
            }
            (h0, c0)
        };
        let step = |s: &[f64], ws: &mut RnnWorkspace<f64>| -> Vec<f64> {
            let (h0, c0) = split(s);
            let mut input = RnnInput::new(&x, 1, bn).h0(&h0);
            if lstm {
                input = input.c0(&c0);
            }
            rnn.forward(&store, ws, input, None).unwrap();
            let mut out = vec![0.0; bn * n];
            for b in 0..bn {
                out[b * n..][..h].copy_from_slice(&ws.h_n()[b * h..][..h]);
                if lstm {
                    out[b * n + h..][..h].copy_from_slice(&ws.c_n()[b * h..][..h]);
                }
            }
            out
        };
        let mut ws = RnnWorkspace::new();
        for b in 0..bn {
            let mut j = vec![0.0; n * n];
            for col in 0..n {
                let (mut up, mut down) = (s0.clone(), s0.clone());
                up[b * n + col] += eps;
                down[b * n + col] -= eps;
                let (fu, fd) = (step(&up, &mut ws), step(&down, &mut ws));
                for row in 0..n {
                    j[row * n + col] = (fu[b * n + row] - fd[b * n + row]) / (2.0 * eps);
                }
            }
            let want = dense_sigma_max(&j, n);
            step(&s0, &mut ws);
            let got = rnn_jacobian_norms(&rnn, &store, &ws, b).unwrap()[0];
            assert!(
                (got - want).abs() < 1e-5 * want,
                "{cell:?} {:?} row {b}: power {got} vs dense {want}",
                rnn.config().leak
            );
        }
    }
}

/// The recorded dL/dh_t equals dy_t plus dL/dh0 of a second run that starts
/// from h_t (and c_t) over the remaining steps: the split-run identity.
#[test]
fn recorded_state_grads_match_split_runs() {
    let (i, h, bn, tn) = (2, 4, 3, 6);
    let mut r = Lcg(8);
    let x = r.vec(tn * bn * i, 1.0);
    let dy = r.vec(tn * bn * h, 1.0);
    for cell in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
        let Layer { rnn, mut store } = Layer::<f64>::new(RnnConfig::new(cell, i, h));
        store.params.iter_mut().for_each(|p| *p = r.next() * 0.6);
        let mut ws = RnnWorkspace::new();
        ws.record_state_grads(true);
        rnn.forward(&store, &mut ws, RnnInput::new(&x, tn, bn), None)
            .unwrap();
        rnn.backward(&mut store, &mut ws, &dy, None, None).unwrap();
        let rec = ws.state_grads(0, 0).to_vec();
        assert_eq!(rec.len(), tn * bn * h);
        let bh = bn * h;
        for t in 0..tn - 1 {
            // h_t and c_t from a run over steps 0..=t.
            let mut head = RnnWorkspace::new();
            rnn.forward(
                &store,
                &mut head,
                RnnInput::new(&x[..(t + 1) * bn * i], t + 1, bn),
                None,
            )
            .unwrap();
            let (ht, ct) = (head.h_n().to_vec(), head.c_n().to_vec());
            let rest = tn - t - 1;
            let mut tail = RnnWorkspace::new();
            let mut input = RnnInput::new(&x[(t + 1) * bn * i..], rest, bn).h0(&ht);
            if cell == CellKind::Lstm {
                input = input.c0(&ct);
            }
            rnn.forward(&store, &mut tail, input, None).unwrap();
            rnn.backward(&mut store, &mut tail, &dy[(t + 1) * bh..], None, None)
                .unwrap();
            for k in 0..bh {
                let want = tail.dh0()[k] + dy[t * bh + k];
                let got = rec[t * bh + k];
                assert!(
                    (got - want).abs() < 1e-12,
                    "{cell:?} t={t}: {got} vs {want}"
                );
            }
        }
        let last = &rec[(tn - 1) * bh..];
        assert!(last.iter().zip(&dy[(tn - 1) * bh..]).all(|(a, b)| a == b));
    }
    let norms = state_grad_norms(&[3.0f64, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0], 2, 2);
    assert_eq!(norms, vec![2.5, 5.0]);
}

#[test]
fn binary_addition_generalises_from_8_to_64_bits() {
    let cfg = TaskConfig::new(TaskKind::BinaryAddition, TaskCell::Tanh);
    assert_eq!((cfg.train_bits, cfg.test_bits), (8, 64));
    let mut run = TaskRun::new(cfg.clone()).unwrap();
    for _ in 0..cfg.train_steps {
        run.train_step().unwrap();
    }
    let m = run.evaluate().unwrap();
    assert_eq!(m.test_accuracy, Some(1.0), "{m:?}");
    assert!(m.solved);
}

#[test]
fn tasks_are_deterministic_and_report_their_metrics() {
    for (task, cell) in [
        (TaskKind::Adding, TaskCell::Lstm),
        (TaskKind::Copy, TaskCell::Gru),
        (TaskKind::Adding, TaskCell::Jordan),
        (TaskKind::Frequency, TaskCell::Phased),
        (TaskKind::Frequency, TaskCell::Lstm),
        (TaskKind::Adding, TaskCell::Phased),
    ] {
        let cfg = TaskConfig {
            hidden: 8,
            length: 12,
            train_steps: 3,
            test_size: 40,
            batch: 10,
            ..TaskConfig::new(task, cell)
        };
        let metrics = || {
            let mut run = TaskRun::new(cfg.clone()).unwrap();
            (0..cfg.train_steps).for_each(|_| {
                run.train_step().unwrap();
            });
            run.evaluate().unwrap()
        };
        let (a, b) = (metrics(), metrics());
        assert_eq!(a, b);
        match task {
            TaskKind::Adding => {
                let base = a.baseline.unwrap();
                assert!((0.1..0.25).contains(&base), "baseline MSE {base}");
                assert!(a.test_mse.is_some() && a.test_accuracy.is_none());
            }
            TaskKind::Frequency => {
                let acc = a.test_accuracy.unwrap();
                assert!((0.0..=1.0).contains(&acc));
                assert!(a.baseline.is_none() && a.test_mse.is_none());
            }
            _ => {
                let acc = a.test_accuracy.unwrap();
                assert!((0.0..=1.0).contains(&acc));
                // 10 recalled symbols out of 8 over T + 20 steps.
                let base = a.baseline.unwrap();
                assert!((base - 10.0 * 8f64.ln() / 32.0).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn gradient_flow_covers_every_step() {
    for cell in [
        TaskCell::Tanh,
        TaskCell::Lstm,
        TaskCell::Gru,
        TaskCell::Irnn,
    ] {
        let cfg = TaskConfig {
            hidden: 6,
            length: 15,
            train_steps: 2,
            batch: 4,
            test_size: 4,
            ..TaskConfig::new(TaskKind::Adding, cell)
        };
        let mut run = TaskRun::new(cfg).unwrap();
        assert!(run.gradient_flow().is_err(), "no step yet");
        run.record_gradients(1).unwrap();
        run.train_step().unwrap();
        let f = run.gradient_flow().unwrap();
        assert_eq!((f.state_grad_norm.len(), f.jacobian_norm.len()), (15, 15));
        // The loss is at the last step only, so the gradient there is the largest
        // contribution's start and every earlier one is finite.
        assert!(f.state_grad_norm.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(f.state_grad_norm[14] > 0.0);
        assert!(f.jacobian_norm.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
}

#[test]
fn task_options_that_do_not_fit_are_refused() {
    let bad = |cfg: TaskConfig| TaskRun::new(cfg).err().expect("refused").to_string();
    let lstm = TaskConfig::new(TaskKind::Adding, TaskCell::Lstm);
    assert!(bad(TaskConfig {
        leak: Leak::Fixed(0.5),
        ..lstm.clone()
    })
    .contains("not lstm"));
    assert!(bad(TaskConfig {
        teacher_forcing: true,
        ..TaskConfig::new(TaskKind::Adding, TaskCell::Tanh)
    })
    .contains("--cell jordan"));
    assert!(bad(TaskConfig {
        length: 1,
        ..lstm.clone()
    })
    .contains("--length"));
    assert!(bad(TaskConfig {
        skip: 1,
        ..TaskConfig::new(TaskKind::Adding, TaskCell::Tanh)
    })
    .contains("skip distance 1"));
    assert!(bad(TaskConfig {
        leak: Leak::Fixed(1.5),
        ..TaskConfig::new(TaskKind::Copy, TaskCell::Tanh)
    })
    .contains("(0, 1]"));
}
