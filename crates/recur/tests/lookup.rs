//! A lookup pass (`RnnInput::lookup`: the input rows are rows of a table
//! chosen by ids) against the same pass given the rows themselves, in f64:
//! through the table's product (T·B ≥ 2·V) and through copied rows, for
//! every cell, one layer, two bidirectional layers and ragged rows; and
//! finite differences of the loss with respect to the table.

mod common;
use common::*;
use recur::{CellKind, Error, RnnConfig, RnnInput, RnnWorkspace};

const EPS: f64 = 1e-5;

/// `ids` `[T·B]` drawn below `v`, and the rows they pick from `table`.
fn pick(table: &[f64], inp: usize, ids: &[u32]) -> Vec<f64> {
    ids.iter()
        .flat_map(|&i| table[i as usize * inp..][..inp].iter().copied())
        .collect()
}

/// Forward and backward of `p` with its input given as `table` rows;
/// `Outcome::dx` holds dL/d(table).
fn run_lookup(p: &Problem, table: &[f64], ids: &[u32], seed: Option<u64>) -> Outcome {
    use rand::SeedableRng;
    let mut layer = Layer::<f64>::new(p.cfg.clone());
    let mut ws = RnnWorkspace::new();
    let Layer { rnn, store } = &mut layer;
    store.params = p.params.clone();
    store.zero_grad();
    let mut input = RnnInput::lookup(table, ids, p.t, p.b).h0(&p.h0);
    input.c0 = p.c0.as_deref();
    input.lengths = p.lengths.as_deref();
    let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    let train = rng.as_mut().map(|r| r as &mut dyn rand::RngCore);
    rnn.forward(store, &mut ws, input, train).unwrap();
    let (y, h_n, c_n) = (ws.output().to_vec(), ws.h_n().to_vec(), ws.c_n().to_vec());
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut loss = dot(&y, &p.gy) + dot(&h_n, &p.gh);
    if let Some(gc) = &p.gc {
        loss += dot(&c_n, gc);
    }
    rnn.backward(store, &mut ws, &p.gy, Some(&p.gh), p.gc.as_deref())
        .unwrap();
    assert!(ws.dx().is_empty(), "a lookup pass has no dL/dx");
    Outcome {
        y,
        h_n,
        c_n,
        dx: ws.d_table().to_vec(),
        dh0: ws.dh0().to_vec(),
        dc0: ws.dc0().to_vec(),
        grads: store.grads.clone(),
        loss,
    }
}

fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs() / 1f64.max(x.abs()).max(y.abs());
        assert!(e <= tol, "{what}[{i}]: {x} against {y} ({e:.1e})");
    }
}

/// A problem of T = 5, B = 3 over a table of `v` rows.
fn problem(cfg: RnnConfig, v: usize, ragged: bool, seed: u64) -> (Problem, Vec<f64>, Vec<u32>) {
    let (t, b) = (5, 3);
    let mut r = Lcg(seed);
    let table = r.vec(v * cfg.input, 1.0);
    let ids: Vec<u32> = (0..t * b).map(|_| r.below(v) as u32).collect();
    let mut p = Problem::random(cfg.clone(), t, b, ragged.then(|| vec![2, 5, 4]), seed);
    p.x = pick(&table, cfg.input, &ids);
    (p, table, ids)
}

#[test]
fn a_lookup_pass_equals_the_pass_over_its_rows() {
    for cell in CellKind::ALL {
        let base = RnnConfig::new(cell, 3, 4);
        for (structure, cfg, seed) in [
            ("1 layer", base.clone(), None),
            (
                "2 layers, dropout",
                base.clone().layers(2).dropout(0.3),
                Some(5),
            ),
            (
                "bidirectional",
                base.clone().layers(2).bidirectional(true),
                None,
            ),
        ] {
            for ragged in [false, true] {
                // V = 4: T·B = 15 ≥ 2·V, through the table's product;
                // V = 9: through copies of the rows.
                for v in [4, 9] {
                    let what = format!("{} {structure} ragged={ragged} V={v}", cell.name());
                    let (p, table, ids) = problem(cfg.clone(), v, ragged, 40 + v as u64);
                    let mut layer = Layer::<f64>::new(cfg.clone());
                    let mut ws = RnnWorkspace::new();
                    let dense = run(&p, &mut layer, &mut ws, seed);
                    let got = run_lookup(&p, &table, &ids, seed);
                    close(&format!("{what}: y"), &got.y, &dense.y, 1e-12);
                    close(&format!("{what}: h_n"), &got.h_n, &dense.h_n, 1e-12);
                    close(&format!("{what}: c_n"), &got.c_n, &dense.c_n, 1e-12);
                    close(&format!("{what}: dh0"), &got.dh0, &dense.dh0, 1e-12);
                    close(&format!("{what}: dc0"), &got.dc0, &dense.dc0, 1e-12);
                    close(&format!("{what}: params"), &got.grads, &dense.grads, 1e-12);
                    // dL/d(table) is dL/dx summed over the rows of each id.
                    let mut want = vec![0.0; table.len()];
                    for (n, &id) in ids.iter().enumerate() {
                        for k in 0..3 {
                            want[id as usize * 3 + k] += dense.dx[n * 3 + k];
                        }
                    }
                    close(&format!("{what}: d table"), &got.dx, &want, 1e-12);
                }
            }
        }
    }
}

/// Central differences of the loss with respect to every table entry,
/// through the table's product.
#[test]
fn table_gradients_match_finite_differences() {
    for cell in CellKind::ALL {
        let cfg = RnnConfig::new(cell, 3, 4).layers(2).bidirectional(true);
        let (p, table, ids) = problem(cfg, 4, true, 77);
        let got = run_lookup(&p, &table, &ids, None);
        let numeric: Vec<f64> = (0..table.len())
            .map(|i| {
                let mut t = table.clone();
                t[i] += EPS;
                let up = run_lookup(&p, &t, &ids, None).loss;
                t[i] -= 2.0 * EPS;
                let down = run_lookup(&p, &t, &ids, None).loss;
                (up - down) / (2.0 * EPS)
            })
            .collect();
        close(
            &format!("{}: d table", cell.name()),
            &got.dx,
            &numeric,
            1e-6,
        );
    }
}

#[test]
fn bad_ids_and_tables_are_errors() {
    let cfg = RnnConfig::new(CellKind::Lstm, 3, 4);
    let layer = Layer::<f64>::new(cfg);
    let mut ws = RnnWorkspace::new();
    let table = vec![0.5; 4 * 3];
    let run = |table: &[f64], ids: &[u32], ws: &mut RnnWorkspace<f64>| {
        layer
            .rnn
            .forward(&layer.store, ws, RnnInput::lookup(table, ids, 2, 2), None)
    };
    match run(&table, &[0, 1, 4, 2], &mut ws) {
        Err(Error::Input { field, message, .. }) => {
            assert_eq!(field.as_deref(), Some("ids[2]"));
            assert!(message.contains("vocabulary of 4"), "{message}");
        }
        other => panic!("an id past the table: {other:?}"),
    }
    assert!(matches!(
        run(&table[..11], &[0, 1, 2, 3], &mut ws),
        Err(Error::Shape { name: "table", .. })
    ));
    assert!(matches!(
        run(&table, &[0, 1, 2], &mut ws),
        Err(Error::Shape { name: "ids", .. })
    ));
    assert!(run(&table, &[0, 1, 3, 2], &mut ws).is_ok());
}
