//! The fixed-window language model: finite differences in f64 through the
//! store, the history carried across batches, and training.

mod common;

use recur::data::{Level, LmData, Vocab};
use recur::model::window::{WindowConfig, WindowLm, WindowWs};
use recur::optim::OptimizerKind;
use recur::train::{Budget, Model, Quiet, TrainConfig, Trainer};

use common::{check_gradients, Lcg};

fn cfg() -> WindowConfig {
    WindowConfig {
        vocab_size: 7,
        context: 3,
        embed: 4,
        hidden: 5,
        dropout: 0.0,
        embed_dropout: 0.0,
    }
}

/// Two batches `[T = 2, B = 3]` in a row: the second's windows reach back
/// into the first (K − 1 = 2 > T − 1).
fn batches(rng: &mut Lcg) -> [(Vec<u32>, Vec<u32>); 2] {
    let mut ids = || (0..6).map(|_| rng.below(7) as u32).collect::<Vec<u32>>();
    [(ids(), ids()), (ids(), ids())]
}

fn loss(m: &WindowLm<f64>, b: &[(Vec<u32>, Vec<u32>); 2]) -> f64 {
    let mut ws = WindowWs::new();
    m.forward(&mut ws, &b[0].0, 2, 3).unwrap();
    m.forward(&mut ws, &b[1].0, 2, 3).unwrap();
    let mut m2 = WindowLm::<f64>::zeros(cfg()).unwrap();
    m2.store.params.copy_from_slice(&m.store.params);
    m2.loss_backward(&mut ws, &b[1].1, 2, 3, false).unwrap()
}

#[test]
fn gradients_match_finite_differences_across_carried_windows() {
    let mut rng = Lcg(11);
    let b = batches(&mut rng);
    let mut m = WindowLm::<f64>::new(cfg(), 3).unwrap();
    let mut ws = WindowWs::new();
    m.forward(&mut ws, &b[0].0, 2, 3).unwrap();
    m.forward(&mut ws, &b[1].0, 2, 3).unwrap();
    let analytic = m.loss_backward(&mut ws, &b[1].1, 2, 3, true).unwrap();
    assert!((analytic - loss(&m, &b)).abs() < 1e-12);
    let grads = m.store.grads.clone();
    // The padding row is used only at a stream's start: unused here, its
    // gradient is zero, and every other parameter is checked.
    let worst = check_gradients("window", &mut m, |m| &mut m.store, &grads, |m| loss(m, &b));
    assert!(worst < 1e-6);
}

/// Two batches `[T = 4, B = 5]`: N = 20 ≥ 2·(V + 1), so the hidden layer
/// goes through the table of embeddings times weights.
fn table_batches(rng: &mut Lcg) -> [(Vec<u32>, Vec<u32>); 2] {
    let mut ids = || (0..20).map(|_| rng.below(7) as u32).collect::<Vec<u32>>();
    [(ids(), ids()), (ids(), ids())]
}

/// Two table-sized batches in training mode, with the same dropout masks
/// at every call (each pass draws from a fresh generator seeded `masks`):
/// the loss, and the gradients when `grad`.
fn dropout_pass(
    m: &mut WindowLm<f64>,
    b: &[(Vec<u32>, Vec<u32>); 2],
    masks: u64,
    grad: bool,
) -> f64 {
    use rand::SeedableRng;
    let mut ws = WindowWs::new();
    let mut draw = rand_chacha::ChaCha8Rng::seed_from_u64(masks);
    m.forward_with(&mut ws, &b[0].0, 4, 5, Some(&mut draw))
        .unwrap();
    m.forward_with(&mut ws, &b[1].0, 4, 5, Some(&mut draw))
        .unwrap();
    m.loss_backward(&mut ws, &b[1].1, 4, 5, grad).unwrap()
}

/// A model of `cfg` (dropout on) whose every gradient over
/// [`dropout_pass`] matches central differences, and whose loss differs
/// from that of the same weights with `other`'s dropouts; the model and
/// its gradients.
fn check_dropout(
    name: &str,
    cfg: WindowConfig,
    other: (f64, f64),
    b: &[(Vec<u32>, Vec<u32>); 2],
    masks: u64,
) -> (WindowLm<f64>, Vec<f64>) {
    let mut m = WindowLm::<f64>::new(cfg.clone(), 3).unwrap();
    let with = dropout_pass(&mut m, b, masks, true);
    let grads = m.store.grads.clone();
    let mut changed = WindowLm::<f64>::zeros(cfg).unwrap();
    changed.store.params.copy_from_slice(&m.store.params);
    changed.set_dropout(other.0, other.1).unwrap();
    assert_ne!(
        with,
        dropout_pass(&mut changed, b, masks, false),
        "{name}: the dropout changes the loss"
    );
    let worst = check_gradients(
        name,
        &mut m,
        |m| &mut m.store,
        &grads,
        |m| {
            let mut m2 = WindowLm::<f64>::zeros(m.config().clone()).unwrap();
            m2.store.params.copy_from_slice(&m.store.params);
            dropout_pass(&mut m2, b, masks, false)
        },
    );
    assert!(worst < 1e-6, "{name}: {worst}");
    (m, grads)
}

#[test]
fn gradients_match_finite_differences_through_the_table_with_dropout() {
    let b = table_batches(&mut Lcg(12));
    let cfg = WindowConfig {
        dropout: 0.4,
        ..cfg()
    };
    let (mut m, _) = check_dropout("window table dropout", cfg, (0.0, 0.0), &b, 9);
    assert!(m.set_dropout(1.0, 0.0).is_err());
    assert!(m.set_dropout(0.0, 1.0).is_err());
}

/// Embedding dropout, with the hidden layer's: a batch of N = 20 rows
/// would go through the table, but dropped embeddings make every window
/// its own, so it takes the product; the gradients still match finite
/// differences.
#[test]
fn gradients_match_finite_differences_with_embedding_dropout() {
    let b = table_batches(&mut Lcg(14));
    let cfg = WindowConfig {
        dropout: 0.3,
        embed_dropout: 0.4,
        ..cfg()
    };
    let (m, grads) = check_dropout("window embedding dropout", cfg.clone(), (0.3, 0.0), &b, 10);
    // The embeddings are among the parameters checked.
    let emb = (cfg.vocab_size + 1) * cfg.embed;
    assert!(grads[..emb].iter().any(|&g| g != 0.0));
    // Inference ignores both dropouts.
    let mut plain = WindowLm::<f64>::zeros(WindowConfig {
        dropout: 0.0,
        embed_dropout: 0.0,
        ..cfg
    })
    .unwrap();
    plain.store.params.copy_from_slice(&m.store.params);
    let (mut x, mut y) = (WindowWs::new(), WindowWs::new());
    m.forward(&mut x, &b[0].0, 4, 5).unwrap();
    plain.forward(&mut y, &b[0].0, 4, 5).unwrap();
    assert_eq!(x.logits(), y.logits());
}

#[test]
fn the_table_gives_the_product_s_logits_and_gradients() {
    let mut rng = Lcg(13);
    let b = table_batches(&mut rng);
    let m = WindowLm::<f64>::new(cfg(), 4).unwrap();
    // Whole batches (N = 20) go through the table; one row at a time
    // (N = 1), through the product.
    let (mut whole, mut rows) = (WindowWs::new(), WindowWs::new());
    m.forward(&mut whole, &b[0].0, 4, 5).unwrap();
    let mut logits = vec![0.0; 20 * 7];
    for r in 0..5 {
        for s in 0..4 {
            let i = s * 5 + r;
            m.forward(&mut rows, &b[0].0[i..=i], 1, 1).unwrap();
            logits[i * 7..(i + 1) * 7].copy_from_slice(rows.logits());
        }
        rows.reset();
    }
    for (x, y) in whole.logits().iter().zip(&logits) {
        assert!((x - y).abs() < 1e-12, "{x} {y}");
    }
    // The gradients of one batch both ways: as [T = 4, B = 5] (N = 20,
    // the table), and as four steps [T = 1, B = 5] (N = 5, the product)
    // with the windows carried, whose mean losses average to the batch's.
    let mut m2 = WindowLm::<f64>::zeros(cfg()).unwrap();
    m2.store.params.copy_from_slice(&m.store.params);
    let mut ws = WindowWs::new();
    m2.forward(&mut ws, &b[0].0, 4, 5).unwrap();
    let whole_loss = m2.loss_backward(&mut ws, &b[0].1, 4, 5, true).unwrap();
    let table = m2.store.grads.clone();
    let (mut ws, mut product, mut loss) = (WindowWs::new(), vec![0.0; table.len()], 0.0);
    for s in 0..4 {
        let step = s * 5..(s + 1) * 5;
        m2.forward(&mut ws, &b[0].0[step.clone()], 1, 5).unwrap();
        loss += m2
            .loss_backward(&mut ws, &b[0].1[step], 1, 5, true)
            .unwrap()
            / 4.0;
        product
            .iter_mut()
            .zip(&m2.store.grads)
            .for_each(|(p, g)| *p += g / 4.0);
    }
    assert!((whole_loss - loss).abs() < 1e-12);
    for (i, (x, y)) in table.iter().zip(&product).enumerate() {
        assert!(
            (x - y).abs() < 1e-12,
            "gradient {i}: table {x}, product {y}"
        );
    }
    assert!(table.iter().any(|&g| g != 0.0));
}

#[test]
fn the_window_sees_exactly_k_tokens() {
    let m = WindowLm::<f64>::new(cfg(), 5).unwrap();
    // The same last three tokens give the same prediction, whatever came before.
    let a = m.next_logits(&[1, 2, 3, 4, 5]).unwrap();
    let b = m.next_logits(&[6, 0, 3, 4, 5]).unwrap();
    assert_eq!(a, b);
    let c = m.next_logits(&[6, 0, 2, 4, 5]).unwrap();
    assert_ne!(a, c);
    // A stream split into batches gives what it gives whole.
    let ids: Vec<u32> = (0..12).map(|i| (i * 5 % 7) as u32).collect();
    let mut whole = WindowWs::new();
    m.forward(&mut whole, &ids, 12, 1).unwrap();
    let mut parts = WindowWs::new();
    let mut logits = Vec::new();
    for chunk in ids.chunks(5) {
        m.forward(&mut parts, chunk, chunk.len(), 1).unwrap();
        logits.extend_from_slice(parts.logits());
    }
    assert_eq!(whole.logits(), &logits[..]);
    assert!(m.forward(&mut whole, &[7], 1, 1).is_err());
}

#[test]
fn trains_on_a_stream_to_below_the_unigram_loss() {
    let text = "abcab cbacb abcca ".repeat(60);
    let tokens = recur::data::tokenize(&text, Level::Char);
    let vocab = Vocab::build(Level::Char, &tokens, 1).unwrap();
    let ids = vocab.encode(&tokens, "text").unwrap();
    let data = LmData::new(&ids, vocab.clone(), 8, 16, 0.1, "text").unwrap();
    let model = WindowLm::<f32>::new(
        WindowConfig {
            vocab_size: vocab.len(),
            context: 4,
            embed: 8,
            hidden: 32,
            dropout: 0.0,
            embed_dropout: 0.0,
        },
        1,
    )
    .unwrap();
    let mut t = Trainer::new(model, data, TrainConfig::new(OptimizerKind::Adam, 1e-2)).unwrap();
    let before = t.evaluate().unwrap().unwrap().loss;
    t.run(Budget::Steps(150), 50, None, &mut Quiet).unwrap();
    let after = t.evaluate().unwrap().unwrap().loss;
    assert!(after < 0.5 * before, "{before} -> {after}");
    assert_eq!(t.model.metadata()[0].1, "recur-window-lm");
}

/// bf16 training: the hidden and output products read bf16 copies of the
/// weights, converted again after every update. On the product path (a
/// word-sized vocabulary) it follows the f32 run closely.
#[test]
fn trains_in_bf16_like_f32() {
    use recur::quant::Precision;
    let text = "the cat sat on the mat and the dog sat on the log\n".repeat(40);
    let tokens = recur::data::tokenize(&text, Level::Word);
    let vocab = Vocab::build(Level::Word, &tokens, 1).unwrap();
    let ids = vocab.encode(&tokens, "text").unwrap();
    let run = |precision: Precision| {
        let data = LmData::new(&ids, vocab.clone(), 8, 16, 0.1, "text").unwrap();
        let model = WindowLm::<f32>::new(
            WindowConfig {
                vocab_size: vocab.len(),
                context: 3,
                embed: 16,
                hidden: 64,
                dropout: 0.1,
                embed_dropout: 0.1,
            },
            1,
        )
        .unwrap();
        let mut c = TrainConfig::new(OptimizerKind::Adam, 1e-2);
        c.precision = precision;
        let mut t = Trainer::new(model, data, c).unwrap();
        let before = t.evaluate().unwrap().unwrap().loss;
        t.run(Budget::Steps(60), 0, None, &mut Quiet).unwrap();
        let after = t.evaluate().unwrap().unwrap().loss;
        (before, after, t.model.store.params.clone())
    };
    let (before, f32_after, f32_weights) = run(Precision::F32);
    let (_, bf16_after, bf16_weights) = run(Precision::Bf16);
    assert!(f32_after < 0.5 * before, "{before} -> {f32_after}");
    assert!(
        (bf16_after - f32_after).abs() < 0.05 * f32_after,
        "bf16 {bf16_after}, f32 {f32_after}"
    );
    // The products did run in bf16.
    assert_ne!(f32_weights, bf16_weights);
}
