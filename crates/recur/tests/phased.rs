//! The phased LSTM (Neil et al. 2016): finite differences in f64 of every
//! parameter (the LSTM weights, the periods and the shifts) and of the
//! input, on irregular time stamps; and the time gate's behaviour.

mod common;
use common::{check_gradients, Lcg};
use rand::SeedableRng;
use recur::layer::phased::{PhasedConfig, PhasedLstm, PhasedWs};
use recur::ParamStore;

const T: usize = 9;
const B: usize = 2;
const I: usize = 3;
const H: usize = 4;

struct Case {
    layer: PhasedLstm,
    store: ParamStore<f64>,
    x: Vec<f64>,
    times: Vec<f64>,
    /// L = Σ c ⊙ y.
    c: Vec<f64>,
}

fn case(seed: u64, r_on: f64) -> Case {
    let mut store = ParamStore::new();
    let cfg = PhasedConfig {
        input: I,
        hidden: H,
        r_on,
        leak: 0.01,
    };
    let layer = PhasedLstm::new(store.root(), cfg).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Periods of 1 to 4 time units against stamps 0.3 to 1.2 apart: every
    // gate opens and closes within the sequence.
    layer.init(&mut store, 1.0, 4.0, &mut rng);
    let mut r = Lcg(seed);
    let mut times = vec![0.0; T * B];
    for b in 0..B {
        let mut t = r.next().abs();
        for s in 0..T {
            times[s * B + b] = t;
            t += 0.3 + 0.9 * (r.next() + 1.0) / 2.0;
        }
    }
    Case {
        x: r.vec(T * B * I, 1.0),
        c: r.vec(T * B * H, 1.0),
        times,
        layer,
        store,
    }
}

fn loss(c: &Case) -> f64 {
    let mut ws = PhasedWs::new();
    c.layer
        .forward(&c.store, &mut ws, &c.x, &c.times, T, B)
        .unwrap();
    ws.output().iter().zip(&c.c).map(|(a, b)| a * b).sum()
}

#[test]
fn phased_lstm_gradients_match_finite_differences() {
    for (seed, r_on) in [(1, 0.3), (2, 0.6), (5, 1.0)] {
        let mut c = case(seed, r_on);
        let mut ws = PhasedWs::new();
        c.layer
            .forward(&c.store, &mut ws, &c.x, &c.times, T, B)
            .unwrap();
        // The gates are open and closed at different steps.
        let open = ws.openness().iter().filter(|&&k| k > 0.05).count();
        assert!(open > 0 && open < T * B * H, "{open} of {} open", T * B * H);
        c.store.zero_grad();
        c.layer.backward(&mut c.store, &mut ws, &c.c).unwrap();
        let grads = c.store.grads.clone();
        let dx = ws.dx().to_vec();
        let worst = check_gradients(
            &format!("phased LSTM, r_on {r_on}"),
            &mut c,
            |c| &mut c.store,
            &grads,
            loss,
        );
        assert!(worst < 1e-6);
        // dL/dx.
        for i in 0..c.x.len() {
            let v = c.x[i];
            c.x[i] = v + 1e-6;
            let up = loss(&c);
            c.x[i] = v - 1e-6;
            let down = loss(&c);
            c.x[i] = v;
            let num = (up - down) / 2e-6;
            assert!(
                (num - dx[i]).abs() <= 1e-6 * num.abs().max(dx[i].abs()).max(1e-3),
                "dx[{i}]: {} vs {num}",
                dx[i]
            );
        }
    }
}

/// A closed gate with no leak holds the state exactly: a unit whose gate
/// never opens keeps h = 0 however the input moves.
#[test]
fn a_closed_gate_holds_the_state() {
    let mut c = case(3, 0.05);
    let cfg_leak0 = PhasedConfig {
        leak: 0.0,
        ..c.layer.config().clone()
    };
    let mut store = ParamStore::new();
    let layer = PhasedLstm::new(store.root(), cfg_leak0).unwrap();
    store.params = c.store.params.clone();
    // Unit 0: period 1000 and shift −900 put every stamp (all below 12)
    // at φ ≈ 0.9, past the open phase φ < r_on.
    let info = store.info().to_vec();
    let lp = info.iter().find(|p| p.name == "log_period").unwrap().offset;
    let sh = info.iter().find(|p| p.name == "shift").unwrap().offset;
    store.params[lp] = 1000f64.ln();
    store.params[sh] = -900.0;
    c.x.iter_mut().for_each(|v| *v *= 5.0);
    let mut ws = PhasedWs::new();
    layer
        .forward(&store, &mut ws, &c.x, &c.times, T, B)
        .unwrap();
    let y = ws.output();
    assert!(y.chunks_exact(H).all(|r| r[0] == 0.0));
    assert!(y.chunks_exact(H).any(|r| r[1..].iter().any(|v| *v != 0.0)));
}

#[test]
fn bad_time_stamps_are_refused() {
    let c = case(1, 0.3);
    let mut ws = PhasedWs::new();
    let mut times = c.times.clone();
    times[3] = f64::NAN;
    let e = c
        .layer
        .forward(&c.store, &mut ws, &c.x, &times, T, B)
        .unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    let e = c
        .layer
        .forward(&c.store, &mut ws, &c.x, &c.times[1..], T, B)
        .unwrap_err();
    assert!(e.to_string().contains("times"), "{e}");
}
