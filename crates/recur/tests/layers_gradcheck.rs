//! Finite-difference checks in f64 for the embedding, dropout, linear and
//! softmax cross-entropy (plain and masked) layers, composed as in the
//! language model through one parameter store:
//! loss = CE(linear(dropout(embedding(ids)))).

mod common;
use common::Lcg;
use rand::SeedableRng;
use recur::layer::dropout::{dropout_backward, dropout_forward};
use recur::layer::loss::{softmax_cross_entropy, softmax_cross_entropy_masked};
use recur::{Embedding, Linear, ParamStore};

const V: usize = 7;
const E: usize = 5;
const O: usize = 6;
const IDS: [u32; 8] = [1, 4, 4, 0, 6, 2, 1, 3];
const TARGETS: [u32; 8] = [2, 2, 5, 0, 1, 3, 4, 5];

/// The parts as a model composes them: one store, scoped names.
struct Net {
    store: ParamStore<f64>,
    encoder: Embedding,
    decoder: Linear,
}

fn net(r: &mut Lcg) -> Net {
    let mut store = ParamStore::new();
    let encoder = Embedding::new(store.scope("encoder"), V, E);
    let decoder = Linear::new(store.scope("decoder"), E, O);
    store.params = r.vec(store.len(), 1.0);
    Net {
        store,
        encoder,
        decoder,
    }
}

/// CE(linear(dropout(embedding(ids)))), plain or masked; with `grad`, the
/// store's gradients are filled.
fn loss(n: &mut Net, weight: Option<&[f64]>, grad: bool) -> f64 {
    let rows = IDS.len();
    let mut emb = vec![0.0; rows * E];
    n.encoder.forward(&n.store, &IDS, &mut emb);
    let mut mask = vec![0.0; rows * E];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    dropout_forward(&mut emb, &mut mask, 0.3, &mut rng);
    let mut logits = vec![0.0; rows * O];
    n.decoder.forward(&n.store, &emb, rows, &mut logits);
    let l = match weight {
        None => softmax_cross_entropy(&mut logits, &TARGETS, O, grad),
        Some(w) => softmax_cross_entropy_masked(&mut logits, &TARGETS, w, O, grad),
    };
    if grad {
        n.store.zero_grad();
        let mut demb = vec![0.0; rows * E];
        n.decoder
            .backward(&mut n.store, &emb, &logits, rows, Some(&mut demb));
        dropout_backward(&mut demb, &mask);
        n.encoder.backward(&mut n.store, &IDS, &demb);
    }
    l
}

/// Every parameter the parts registered, against central differences.
fn check_store(weight: Option<&[f64]>) -> f64 {
    let mut n = net(&mut Lcg(77));
    loss(&mut n, weight, true);
    let analytic = n.store.grads.clone();
    let eps = 1e-6;
    let mut worst = 0.0f64;
    for i in 0..n.store.len() {
        let v = n.store.params[i];
        n.store.params[i] = v + eps;
        let up = loss(&mut n, weight, false);
        n.store.params[i] = v - eps;
        let down = loss(&mut n, weight, false);
        n.store.params[i] = v;
        let num = (up - down) / (2.0 * eps);
        let err = (num - analytic[i]).abs() / 1f64.max(num.abs()).max(analytic[i].abs());
        let name = &n.store.info().iter().rfind(|p| p.offset <= i).unwrap().name;
        assert!(
            err <= 1e-6,
            "{name} [{i}]: analytic {} numeric {num}",
            analytic[i]
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn embedding_dropout_linear_softmax_ce_gradients() {
    let worst = check_store(None);
    println!("worst relative error {worst:.1e}");
}

#[test]
fn masked_softmax_ce_gradients() {
    // Per-row weights, one row masked out entirely.
    let w = [1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 0.25, 1.0];
    let worst = check_store(Some(&w));
    println!("worst relative error {worst:.1e}");
}

#[test]
fn masked_rows_never_change_the_result() {
    // Weight 1 everywhere equals the plain mean; a masked row's logits and
    // target do not matter, and its gradient is zero.
    let mut r = Lcg(3);
    let logits = r.vec(IDS.len() * O, 2.0);
    let mut a = logits.clone();
    let plain = softmax_cross_entropy(&mut a, &TARGETS, O, true);
    let mut b = logits.clone();
    let ones = softmax_cross_entropy_masked(&mut b, &TARGETS, &[1.0; 8], O, true);
    assert!((plain - ones).abs() < 1e-15);
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-15));
    let mut w = [1.0; 8];
    w[5] = 0.0;
    let mut c = logits.clone();
    let masked = softmax_cross_entropy_masked(&mut c, &TARGETS, &w, O, true);
    let mut changed = logits.clone();
    changed[5 * O..6 * O].fill(1e3);
    let mut targets = TARGETS;
    targets[5] = 0;
    let again = softmax_cross_entropy_masked(&mut changed, &targets, &w, O, true);
    assert_eq!(masked, again);
    assert!(c[5 * O..6 * O].iter().all(|&g| g == 0.0));
    // The same as the mean over the 7 rows that count.
    let keep: Vec<usize> = (0..8).filter(|&i| i != 5).collect();
    let mut sub: Vec<f64> = keep
        .iter()
        .flat_map(|&i| logits[i * O..(i + 1) * O].to_vec())
        .collect();
    let sub_t: Vec<u32> = keep.iter().map(|&i| TARGETS[i]).collect();
    let mean7 = softmax_cross_entropy(&mut sub, &sub_t, O, false);
    assert!((masked - mean7).abs() < 1e-14);
}

#[test]
fn softmax_cross_entropy_matches_direct_formula() {
    let mut logits = vec![1.0f64, 2.0, 0.5, -1.0, 0.0, 3.0];
    let want = ((1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln() - 2.0
        + ((-1f64).exp() + 1.0 + 3f64.exp()).ln()
        - 0.0)
        / 2.0;
    let got = softmax_cross_entropy(&mut logits, &[1, 1], 3, false);
    assert!((got - want).abs() < 1e-12);
}
