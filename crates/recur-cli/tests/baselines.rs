//! The baseline language models through the same commands as the
//! recurrent one: `recur train --model ngram|window`, `recur eval`,
//! `recur generate`, and resuming a window model's run.

mod common;
use common::*;
use std::path::{Path, PathBuf};

use recur::data::{split_train_val, tokenize};
use recur::model::ngram::{Ngram, NgramConfig};

fn corpus(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.txt");
    let text = "the cat sat on the mat.\nthe dog ate the log.\na cat and a dog.\n".repeat(8);
    std::fs::write(&p, text).unwrap();
    p
}

/// `recur eval --json`'s (mean cross-entropy, predictions).
fn eval_json(model: &Path, data: &Path) -> (f64, usize) {
    let out = ok(&["eval", "--model", s(model), "--data", s(data), "--json"]);
    let e: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    (
        e["mean_cross_entropy"].as_f64().unwrap(),
        e["predictions"].as_u64().unwrap() as usize,
    )
}

/// The file's tokens under `vocab`.
fn ids_of(vocab: &recur::data::Vocab, data: &Path) -> Vec<u32> {
    let raw = std::fs::read_to_string(data).unwrap();
    vocab.encode(&tokenize(&raw, vocab.level), "tiny").unwrap()
}

#[test]
fn ngram_trains_evaluates_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let out = dir.path().join("ng");
    let text = ok_line(&format!(
        "train --model ngram --order 4 --data {} --val-fraction 0.25 --out {} --sample-length 30",
        s(&data),
        s(&out)
    ));
    assert!(text.contains("4-gram"), "{text}");
    assert!(
        text.contains("validation:") && text.contains("bpc"),
        "{text}"
    );
    assert!(text.contains("--- sample"), "{text}");
    let model = out.join("model.safetensors");

    // The file holds the fit of the training part, under its vocabulary.
    let (loaded, vocab) = recur::checkpoint::load_ngram(&model).unwrap();
    let ids = ids_of(&vocab, &data);
    let (train, _) = split_train_val(&ids, 0.25);
    let fit = Ngram::fit(
        NgramConfig {
            order: 4,
            vocab_size: vocab.len(),
        },
        train,
    )
    .unwrap();
    assert_eq!(loaded.to_bytes(), fit.to_bytes());

    // `recur eval` gives the model's own cross-entropy of the file.
    let (got, predictions) = eval_json(&model, &data);
    let (want, n) = fit.cross_entropy(&ids).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert_eq!(predictions, n);

    // Generation: repeatable by seed; greedy runs; beam search is refused.
    let gen = |seed: &str| {
        ok(&[
            "generate",
            "--model",
            s(&model),
            "--length",
            "40",
            "--seed",
            seed,
        ])
    };
    assert_eq!(gen("7"), gen("7"));
    assert!(gen("7").chars().count() >= 40);
    ok(&[
        "generate",
        "--model",
        s(&model),
        "--greedy",
        "--length",
        "10",
        "--prime",
        "the",
    ]);
    let err = fails(&[
        "generate",
        "--model",
        s(&model),
        "--beam",
        "2",
        "--length",
        "5",
    ]);
    assert!(err.contains("beam search"), "{err}");
}

#[test]
fn window_model_trains_resumes_evaluates_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let out = dir.path().join("win");
    let line = |steps: u32| {
        format!(
            "train --model window --context 6 --embed 8 --hidden 32 --data {} --batch 4 --seq-len 16 --lr 0.01 --val-fraction 0.25 --steps {steps} --eval-every 20 --sample-length 20 --out {}",
            s(&data),
            s(&out)
        )
    };
    let text = ok_line(&line(60));
    assert!(text.contains("fixed-window model (K = 6 tokens"), "{text}");
    for f in [
        "model.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "run.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    ok(&[
        "train",
        "--resume",
        s(&out),
        "--steps",
        "80",
        "--sample-length",
        "0",
    ]);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"].as_u64(), Some(80));
    // It learned: well under the uniform loss ln V.
    let model = out.join("model.safetensors");
    let (m, vocab) = recur::checkpoint::load_window(&model).unwrap();
    let (got, _) = eval_json(&model, &data);
    assert!(got < 0.6 * (vocab.len() as f64).ln(), "loss {got}");
    let (want, _) = m.cross_entropy(&ids_of(&vocab, &data)).unwrap();
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    let gen = |seed: &str| {
        ok(&[
            "generate",
            "--model",
            s(&model),
            "--length",
            "30",
            "--seed",
            seed,
        ])
    };
    assert_eq!(gen("3"), gen("3"));
    // Fine-tuning from it takes a new embedding dropout and keeps the
    // hidden layer's unless told.
    let tuned = ok_line(&format!(
        "train --model window --init-from {} --embed-dropout 0.3 --data {} --batch 4 --seq-len 16 --steps 2 --sample-length 0 --out {}",
        s(&model),
        s(&data),
        s(&dir.path().join("tuned"))
    ));
    assert!(
        tuned.contains("dropout 0 on the hidden layer and 0.3 on the embeddings"),
        "{tuned}"
    );
}

#[test]
fn baseline_options_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let out = dir.path().join("bad");
    for (line, says) in [
        ("--model window --cell lstm", "--cell"),
        ("--model tree", "unknown model 'tree'"),
        ("--model ngram --order 0", "--order"),
        ("--model window --context 0 --steps 1", "K"),
        (
            "--model window --dropout 1 --steps 1",
            "dropout must be in [0, 1)",
        ),
        ("--model window --gradient-regulariser 1", "no recurrence"),
        (
            "--model window --embed-dropout 1 --steps 1",
            "embedding dropout must be in [0, 1)",
        ),
        ("--embed-dropout 0.1", "for --model window"),
        ("--model ngram --gradient-regulariser 1", "no gradients"),
        ("--gradient-regulariser 1", "--layers 1"),
        ("--cell lstm --layers 1 --gradient-regulariser 1", "Elman"),
        (
            "--cell rnn-tanh --layers 1 --gradient-regulariser -1",
            "0 or more",
        ),
    ] {
        let err = fails_line(&format!(
            "train --data {} --out {} {line}",
            s(&data),
            s(&out)
        ));
        assert!(err.contains(says), "{line}: {err}");
    }
    assert!(!out.join("model.safetensors").exists());
    let err = fails_line(&format!("train --model ngram --resume {}", s(&out)));
    assert!(err.contains("--resume"), "{err}");
}

/// The regulariser as an option of `recur train` for one-layer Elman
/// language models: it runs, shows in the run's settings, changes the
/// training, and a resumed run keeps it.
#[test]
fn elman_language_model_trains_with_the_gradient_regulariser() {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(dir.path());
    let run = |name: &str, extra: &str| {
        let out = dir.path().join(name);
        ok_line(&format!(
            "train --cell rnn-tanh --layers 1 --hidden 16 --embed 8 --batch 4 --seq-len 16 --steps 20 --eval-every 10 --sample-length 0 --data {} --out {} {extra}",
            s(&data),
            s(&out)
        ));
        out
    };
    let off = run("off", "");
    let on = run("on", "--gradient-regulariser 2");
    let last = |out: &Path| {
        let m = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(m.lines().last().unwrap()).unwrap();
        v["train_loss"].as_f64().unwrap()
    };
    assert_ne!(last(&off), last(&on));
    let rf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(on.join("run.json")).unwrap()).unwrap();
    assert_eq!(rf["gradient_regulariser"].as_f64(), Some(2.0));
    ok(&[
        "train",
        "--resume",
        s(&on),
        "--steps",
        "30",
        "--sample-length",
        "0",
    ]);
    let err = fails(&["train", "--resume", s(&on), "--gradient-regulariser", "1"]);
    assert!(err.contains("--gradient-regulariser"), "{err}");
}
