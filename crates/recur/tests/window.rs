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
