//! Finite-difference checks in f64 for the embedding, dropout, linear and
//! softmax cross-entropy layers, composed as in the language model:
//! loss = CE(linear(dropout(embedding(ids)))).

mod common;
use common::Lcg;
use rand::SeedableRng;
use recur::layer::dropout::{dropout_backward, dropout_forward};
use recur::layer::embedding::{embedding_backward, embedding_forward};
use recur::layer::linear::{linear_backward, linear_forward};
use recur::layer::softmax::softmax_cross_entropy;

const V: usize = 7;
const E: usize = 5;
const O: usize = 6;
const IDS: [u32; 8] = [1, 4, 4, 0, 6, 2, 1, 3];
const TARGETS: [u32; 8] = [2, 2, 5, 0, 1, 3, 4, 5];

struct P {
    table: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
}

fn loss(p: &P, grad: bool) -> (f64, Option<(Vec<f64>, Vec<f64>, Vec<f64>)>) {
    let n = IDS.len();
    let mut emb = vec![0.0; n * E];
    embedding_forward(&p.table, E, &IDS, &mut emb);
    let mut mask = vec![0.0; n * E];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    dropout_forward(&mut emb, &mut mask, 0.3, &mut rng);
    let mut logits = vec![0.0; n * O];
    linear_forward(&emb, &p.w, &p.b, n, E, O, &mut logits);
    let l = softmax_cross_entropy(&mut logits, &TARGETS, O, grad);
    if !grad {
        return (l, None);
    }
    let (mut dw, mut db, mut demb) = (vec![0.0; O * E], vec![0.0; O], vec![0.0; n * E]);
    linear_backward(
        &emb,
        &p.w,
        &logits,
        n,
        E,
        O,
        &mut dw,
        &mut db,
        Some(&mut demb),
    );
    dropout_backward(&mut demb, &mask);
    let mut dtable = vec![0.0; V * E];
    embedding_backward(&mut dtable, E, &IDS, &demb);
    (l, Some((dtable, dw, db)))
}

#[test]
fn embedding_dropout_linear_softmax_ce_gradients() {
    let mut r = Lcg(77);
    let mut p = P {
        table: r.vec(V * E, 1.0),
        w: r.vec(O * E, 1.0),
        b: r.vec(O, 0.5),
    };
    let (_, g) = loss(&p, true);
    let (dt, dw, db) = g.unwrap();
    let eps = 1e-6;
    let mut worst = 0.0f64;
    for (which, analytic) in [(0, dt), (1, dw), (2, db)] {
        for i in 0..analytic.len() {
            let field = |p: &mut P| -> *mut f64 {
                match which {
                    0 => &mut p.table[i],
                    1 => &mut p.w[i],
                    _ => &mut p.b[i],
                }
            };
            let v = unsafe { *field(&mut p) };
            unsafe { *field(&mut p) = v + eps };
            let up = loss(&p, false).0;
            unsafe { *field(&mut p) = v - eps };
            let down = loss(&p, false).0;
            unsafe { *field(&mut p) = v };
            let num = (up - down) / (2.0 * eps);
            let err = (num - analytic[i]).abs() / 1f64.max(num.abs()).max(analytic[i].abs());
            assert!(
                err <= 1e-6,
                "tensor {which} [{i}]: analytic {} numeric {num}",
                analytic[i]
            );
            worst = worst.max(err);
        }
    }
    println!("worst relative error {worst:.1e}");
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
