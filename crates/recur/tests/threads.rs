//! The same numbers at 1 and 2 threads: every product's output element is
//! one whole dot product whoever computes it, the two directions of a
//! bidirectional layer compute the same steps on one core each as on two,
//! and the optimiser's update is elementwise. (One test in its own binary:
//! the thread count is process-wide.)

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::data::seq::{SeqData, SeqExample};
use recur::model::seq::{CharConfig, SeqConfig, SeqInput, SeqMeta, SeqModel, SeqTask};
use recur::optim::OptimizerKind;
use recur::train::{TrainConfig, Trainer};

fn train(threads: usize) -> Vec<f32> {
    recur::gemm::set_threads(threads);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut table = Vec::new();
    let ex: Vec<SeqExample> = (0..96)
        .map(|_| {
            let steps = rng.random_range(2..30);
            let tokens: Vec<u32> = (0..steps).map(|_| rng.random_range(2..300)).collect();
            let spellings = tokens
                .iter()
                .map(|&t| {
                    table.push((0..1 + t % 9).map(|c| 2 + (c + t) % 40).collect());
                    (table.len() - 1) as u32
                })
                .collect();
            SeqExample {
                steps,
                tags: tokens.iter().map(|t| t % 5).collect(),
                tokens,
                spellings,
                ..Default::default()
            }
        })
        .collect();
    // Wide enough that the products split across threads.
    let mut c = SeqConfig::new(
        SeqTask::Tag,
        SeqInput::Tokens {
            vocab: 300,
            embed: 64,
        },
        5,
    );
    c.hidden = 256;
    c.layers = 2;
    c.bidirectional = true;
    c.dropout = 0.2;
    c.chars = Some(CharConfig {
        vocab: 44,
        embed: 16,
        hidden: 32,
    });
    let m = SeqModel::<f32>::new(c, SeqMeta::default(), 3).unwrap();
    let d = SeqData::new(ex, &[], table, 32, 3)
        .unwrap()
        .with_unk_chance(vec![0.1; 300]);
    let mut cfg = TrainConfig::new(OptimizerKind::Adam, 2e-3);
    cfg.clip_norm = 5.0;
    let mut t = Trainer::new(m, d, cfg).unwrap();
    for _ in 0..6 {
        t.train_step().unwrap();
    }
    t.model.store.params.clone()
}

#[test]
fn one_and_two_threads_give_the_same_numbers() {
    let (one, two) = (train(1), train(2));
    let differ = one
        .iter()
        .zip(&two)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} parameters differ", one.len());
}
