//! Properties of batching over many random shapes: every training example
//! (sequence models) and every predicted token (language models) is used
//! exactly once per epoch; bucketed batches hold similar lengths; the epoch
//! plans depend only on the seed and the epoch. (Padding never changing a
//! result is checked in `seq_gradcheck.rs`.)

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::data::seq::{SeqBatch, SeqData, SeqExample};
use recur::data::{split_train_val, Level, LmBatch, LmData, Vocab};
use recur::train::Data;

fn examples(rng: &mut ChaCha8Rng, n: usize) -> Vec<SeqExample> {
    (0..n)
        .map(|i| {
            let steps = rng.random_range(1..40);
            SeqExample {
                steps,
                // The first token names the example.
                tokens: std::iter::once(i as u32 + 2)
                    .chain((1..steps).map(|_| 1))
                    .collect(),
                label: (i % 3) as u32,
                ..Default::default()
            }
        })
        .collect()
}

#[test]
fn every_example_once_per_epoch() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for case in 0..40 {
        let n = rng.random_range(1..400);
        let batch = rng.random_range(1..70);
        let ex = examples(&mut rng, n);
        let mut data = SeqData::new(ex.clone(), &[], Vec::new(), batch, case).unwrap();
        let spe = data.steps_per_epoch().unwrap();
        assert_eq!(spe, n.div_ceil(batch));
        let mut plans = Vec::new();
        for epoch in 0..3 {
            let mut seen = vec![0u32; n];
            let mut plan = Vec::new();
            let mut b = SeqBatch::default();
            for step in 0..spe {
                data.fill(epoch, step, &mut b).unwrap();
                assert!(b.batch() <= batch && b.batch() > 0);
                for (i, &r) in b.rows.iter().enumerate() {
                    seen[r] += 1;
                    assert_eq!(b.ids[i], r as u32 + 2, "row {i} holds example {r}");
                    assert_eq!(b.lengths[i], ex[r].steps);
                }
                // Longest first (rows of a batch), and lengths close together:
                // within the ±10% noise of a sorted pool, or the whole range.
                assert!(b.lengths.windows(2).all(|w| w[0] >= w[1]));
                assert_eq!(b.steps, b.lengths[0]);
                plan.push(b.rows.clone());
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "case {case} epoch {epoch}: {seen:?}"
            );
            plans.push(plan);
        }
        if spe > 2 {
            assert!(
                plans[0] != plans[1] || plans[1] != plans[2],
                "case {case}: epochs are reshuffled"
            );
        }
        // Filling again (a resumed run) gives the same batches.
        let mut again = SeqData::new(ex, &[], Vec::new(), batch, case).unwrap();
        let mut b = SeqBatch::default();
        for (step, rows) in plans[1].iter().enumerate() {
            again.fill(1, step, &mut b).unwrap();
            assert_eq!(&b.rows, rows);
        }
    }
}

#[test]
fn every_predicted_token_once_per_epoch() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for case in 0..30 {
        let len = rng.random_range(200..3000);
        // Distinct ids, so each target names its position.
        let tokens: Vec<String> = (0..len).map(|i| format!("t{i}")).collect();
        let vocab = Vocab::build(Level::Word, &tokens, 1).unwrap();
        let ids = vocab.encode(&tokens, "case").unwrap();
        let (batch, seq_len) = (rng.random_range(1..9), rng.random_range(1..30));
        let Ok(mut data) = LmData::new(&ids, vocab, batch, seq_len, 0.0, "case") else {
            continue;
        };
        let (train, _) = split_train_val(&ids, 0.0);
        let spe = data.steps_per_epoch().unwrap();
        let pos: std::collections::HashMap<u32, usize> =
            train.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let mut seen = std::collections::HashMap::new();
        let mut b = LmBatch::default();
        for step in 0..spe {
            data.fill(0, step, &mut b).unwrap();
            for (x, y) in b.inputs.iter().zip(&b.targets) {
                *seen.entry(*y).or_insert(0) += 1;
                // The target follows its input in the stream.
                let at = pos[y];
                assert!(at > 0 && train[at - 1] == *x, "case {case}");
            }
        }
        assert!(
            seen.values().all(|&c| c == 1),
            "case {case}: a target twice"
        );
        // What is left out is less than one step of every row.
        assert!(
            train.len() - 1 - seen.len() < batch * seq_len + batch,
            "case {case}"
        );
    }
}
