//! Whole language models against PyTorch's word_language_model: import a
//! state_dict, evaluate the text, and take one SGD step in the standard
//! batch layout.

use std::path::PathBuf;

use recur::checkpoint::{import_torch_lm, read_tensors, read_vocab_json};
use recur::data::{tokenize, Batcher, Level};
use recur::model::lm::LmWorkspace;
use recur::CellKind;

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch-lm")
        .join(case)
}

fn expected(case: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir(case).join("expected.json")).unwrap())
        .unwrap()
}

const CASES: [&str; 4] = [
    "char_lstm_2l",
    "char_gru_1l",
    "char_rnn_tanh_1l",
    "word_lstm_1l",
];

fn load(
    case: &str,
) -> (
    recur::model::lm::LanguageModel,
    recur::data::Vocab,
    Vec<u32>,
) {
    let exp = expected(case);
    let level = Level::from_name(exp["level"].as_str().unwrap()).unwrap();
    let vocab = read_vocab_json(&dir(case).join("vocab.json"), level).unwrap();
    let model = import_torch_lm(
        &dir(case).join("state_dict.safetensors"),
        vocab.clone(),
        None,
    )
    .unwrap();
    assert_eq!(
        model.config().cell,
        CellKind::from_name(exp["cell"].as_str().unwrap()).unwrap(),
        "{case}: inferred cell"
    );
    assert_eq!(
        model.config().layers,
        exp["layers"].as_u64().unwrap() as usize
    );
    let text = std::fs::read_to_string(dir(case).join("text.txt")).unwrap();
    let ids = vocab.encode(&tokenize(&text, level), "text.txt").unwrap();
    assert_eq!(
        ids.len(),
        exp["tokens"].as_u64().unwrap() as usize,
        "{case}: token count"
    );
    (model, vocab, ids)
}

#[test]
fn imported_models_evaluate_to_pytorch_loss() {
    for case in CASES {
        let (model, _, ids) = load(case);
        let want = expected(case)["eval"]["mean_cross_entropy"]
            .as_f64()
            .unwrap();
        for chunk in [1, 7, 1000] {
            let got = model
                .eval_stream(&mut LmWorkspace::new(), &ids, chunk)
                .unwrap()
                .mean_cross_entropy;
            let rel = (got - want).abs() / want;
            println!("{case} chunk {chunk}: {got:.9} vs PyTorch {want:.9} (relative {rel:.1e})");
            assert!(rel <= 1e-5, "{case}: eval {got} vs {want}");
        }
    }
}

#[test]
fn one_sgd_step_matches_pytorch() {
    for case in CASES {
        let (mut model, _, ids) = load(case);
        let step = &expected(case)["sgd_step"];
        let (b, t) = (
            step["batch"].as_u64().unwrap() as usize,
            step["seq_len"].as_u64().unwrap() as usize,
        );
        let lr = step["lr"].as_f64().unwrap() as f32;
        let batcher = Batcher::new(&ids, b, t, "text").unwrap();
        let (mut x, mut y) = (vec![], vec![]);
        batcher.fill(0, &mut x, &mut y);
        let loss = model
            .forward_backward_with(&mut LmWorkspace::new(), &x, &y, t, b, None)
            .unwrap();
        let want_loss = step["first_step_loss"].as_f64().unwrap();
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss,
            "{case}: loss {loss} vs {want_loss}"
        );
        let store = &mut model.store;
        for (p, g) in store.params.iter_mut().zip(&store.grads) {
            *p -= lr * g;
        }
        let want = read_tensors(&dir(case).join("after_sgd_step.safetensors")).unwrap();
        let mut worst = 0.0f32;
        for (name, _, got) in model.store.named() {
            let (_, w) = &want.tensors[name];
            for (a, b) in got.iter().zip(w) {
                let e = (a - b).abs() / b.abs().max(1.0);
                assert!(e <= 1e-5, "{case} {name}: {a} vs {b}");
                worst = worst.max(e);
            }
        }
        println!(
            "{case}: loss {loss:.7} vs {want_loss:.7}; weights after one step within {worst:.1e}"
        );
    }
}
