//! The language-model commands, run as the real binary in temp dirs.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../recur/tests/fixtures/torch-lm")
        .join(case)
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let data = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, t.shape().to_vec(), data)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn level(case: &str) -> &'static str {
    if case.starts_with("word") {
        "word"
    } else {
        "char"
    }
}

fn import(case: &str, dir: &Path) -> PathBuf {
    let model = dir.join(format!("{case}.safetensors"));
    ok_line(&format!(
        "import --torch {} --vocab {} --level {} --out {}",
        s(&fixture(case).join("state_dict.safetensors")),
        s(&fixture(case).join("vocab.json")),
        level(case),
        s(&model)
    ));
    model
}

const CASES: [&str; 4] = [
    "char_lstm_2l",
    "char_gru_1l",
    "char_rnn_tanh_1l",
    "word_lstm_1l",
];

fn expected(case: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(case).join("expected.json")).unwrap())
        .unwrap()
}

#[test]
fn import_then_eval_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        let model = import(case, dir.path());
        let out = ok_line(&format!(
            "eval --model {} --data {} --json",
            s(&model),
            s(&fixture(case).join("text.txt"))
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want = expected(case)["eval"]["mean_cross_entropy"]
            .as_f64()
            .unwrap();
        let got = v["mean_cross_entropy"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want, "{case}: {got} vs {want}");
        assert_eq!(v["tokens"], expected(case)["tokens"]);
        assert!((v["perplexity"].as_f64().unwrap() - got.exp()).abs() < 1e-9);
        assert!(
            (v["bits_per_token"].as_f64().unwrap() - got / std::f64::consts::LN_2).abs() < 1e-9
        );
    }
}

#[test]
fn one_sgd_step_through_train_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        let model = import(case, dir.path());
        let step = &expected(case)["sgd_step"];
        let out = dir.path().join(format!("run-{case}"));
        ok_line(&format!("train --data {} --level {} --init-from {} --steps 1 --optimizer sgd --lr {} --clip-norm 0 --dropout 0 --batch {} --seq-len {} --val-fraction 0 --sample-length 0 --out {}", s(&fixture(case).join("text.txt")), level(case), s(&model), &step["lr"].to_string(), &step["batch"].to_string(), &step["seq_len"].to_string(), s(&out)));
        let got = tensors(&out.join("last.safetensors"));
        let want = tensors(&fixture(case).join("after_sgd_step.safetensors"));
        assert_eq!(got.len(), want.len(), "{case}: tensor count");
        for ((n, sh, g), (wn, wsh, w)) in got.iter().zip(&want) {
            assert_eq!((n, sh), (wn, wsh), "{case}");
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{case} {n}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn export_round_trips_through_import() {
    let dir = tempfile::tempdir().unwrap();
    let model = import("char_lstm_2l", dir.path());
    let exp = dir.path().join("exported");
    ok(&["export", "--model", s(&model), "--out", s(&exp)]);
    // The exported state_dict has exactly PyTorch's names and the fixture's values.
    let a = tensors(&exp.join("state_dict.safetensors"));
    let b = tensors(&fixture("char_lstm_2l").join("state_dict.safetensors"));
    assert_eq!(a, b);
    let vocab: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(exp.join("vocab.json")).unwrap()).unwrap();
    let want: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(fixture("char_lstm_2l").join("vocab.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vocab, want);
}

fn tiny_corpus(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.txt");
    std::fs::write(
        &p,
        "the cat sat on the mat.\nthe dog ate the log.\n".repeat(6),
    )
    .unwrap();
    p
}

fn last_train_loss(out: &Path) -> f64 {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["train_loss"].as_f64().unwrap()
}

#[test]
fn overfits_a_tiny_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_corpus(dir.path());
    let out = dir.path().join("run");
    let text = ok_line(&format!("train --data {} --hidden 64 --embed 16 --layers 1 --dropout 0 --batch 4 --seq-len 16 --lr 0.01 --steps 300 --val-fraction 0 --eval-every 50 --sample-length 40 --out {}", s(&data), s(&out)));
    let loss = last_train_loss(&out);
    assert!(loss < 0.05, "final training loss {loss}");
    for f in [
        "model.safetensors",
        "last.safetensors",
        "train_state.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "run.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(std::fs::read_to_string(out.join("loss.svg"))
        .unwrap()
        .contains("<svg"));
    assert!(text.contains("--- sample"), "{text}");
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn resume_continues_bit_for_bit() {
    resume_in("f32");
}

/// A bf16 run resumes in bf16 (the run's settings keep the precision),
/// bit for bit; int8 and n-gram models cannot train in bf16.
#[test]
fn bf16_training_resumes_bit_for_bit() {
    resume_in("bf16");
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_corpus(dir.path());
    let d = s(&data);
    let e = fails_line(&format!(
        "train --data {d} --precision int8 --batch 2 --seq-len 8 --steps 2 --out {}",
        s(&dir.path().join("a"))
    ));
    assert!(
        e.contains("--precision") && e.contains("f32 or bf16"),
        "{e}"
    );
    let e = fails_line(&format!(
        "train --model ngram --data {d} --precision bf16 --out {}",
        s(&dir.path().join("b"))
    ));
    assert!(e.contains("--precision") && e.contains("n-gram"), "{e}");
    // The fixed-window model trains in bf16; recur eval then runs it in f32.
    ok_line(&format!(
        "train --model window --data {d} --precision bf16 --batch 2 --steps 2 --sample-length 0 --out {}",
        s(&dir.path().join("c"))
    ));
    assert!(dir.path().join("c/model.safetensors").exists());
}

fn resume_in(precision: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_corpus(dir.path());
    let common = |out: &Path, steps: &str| -> Vec<String> {
        [
            "train",
            "--precision",
            precision,
            "--data",
            s(&data),
            "--hidden",
            "24",
            "--embed",
            "8",
            "--layers",
            "2",
            "--dropout",
            "0.3",
            "--batch",
            "3",
            "--seq-len",
            "7",
            "--steps",
            steps,
            "--val-fraction",
            "0.2",
            "--eval-every",
            "4",
            "--sample-length",
            "0",
            "--out",
            s(out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let whole = dir.path().join("whole");
    let a = common(&whole, "13");
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let parts = dir.path().join("parts");
    let b = common(&parts, "6");
    let first = ok(&b.iter().map(String::as_str).collect::<Vec<_>>());
    // The corpus is tokenised once into a u16 token file beside the run.
    assert!(first.contains("tokenised"), "{first}");
    let n_chars = std::fs::read_to_string(&data).unwrap().chars().count() as u64;
    let bin = parts.join("tokens.bin");
    assert_eq!(std::fs::metadata(&bin).unwrap().len(), 2 * n_chars);
    // The first run stopped mid-epoch; resume and go on to step 13.
    let resumed = ok_line(&format!(
        "train --resume {} --steps 13 --sample-length 0",
        s(&parts)
    ));
    assert!(resumed.contains("reusing"), "{resumed}");
    assert_eq!(
        tensors(&whole.join("last.safetensors")),
        tensors(&parts.join("last.safetensors"))
    );
    assert_eq!(
        tensors(&whole.join("train_state.safetensors")),
        tensors(&parts.join("train_state.safetensors"))
    );
    assert_eq!(
        tensors(&whole.join("model.safetensors")),
        tensors(&parts.join("model.safetensors"))
    );
}

#[test]
fn generate_in_every_mode_and_eval_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_corpus(dir.path());
    let out = dir.path().join("run");
    ok_line(&format!("train --data {} --hidden 32 --embed 8 --layers 1 --batch 2 --seq-len 8 --steps 20 --val-fraction 0.1 --sample-length 0 --out {}", s(&data), s(&out)));
    let model = out.join("model.safetensors");
    let m = s(&model);
    let g1 = ok(&[
        "generate", "--model", m, "--prime", "the ", "--length", "30", "--seed", "3",
    ]);
    let g2 = ok(&[
        "generate", "--model", m, "--prime", "the ", "--length", "30", "--seed", "3",
    ]);
    assert_eq!(g1, g2, "same seed, same text");
    assert!(g1.starts_with("the ") && g1.chars().count() >= 34, "{g1:?}");
    for extra in [
        &["--greedy"][..],
        &["--top-k", "3"],
        &["--top-p", "0.9"],
        &["--beam", "3"],
        &["--temperature", "1.5"],
    ] {
        let mut args = vec!["generate", "--model", m, "--length", "25"];
        args.extend_from_slice(extra);
        let text = ok(&args);
        assert!(text.chars().count() >= 25, "{extra:?}: {text:?}");
    }
    let text = ok(&["eval", "--model", m, "--data", s(&data)]);
    assert!(
        text.contains("perplexity") && text.contains("bits per char"),
        "{text}"
    );
}

/// `--precision bf16|int8`: the model's products in reduced precision, the
/// loss close to f32's and not equal to it; clear errors where it does
/// not apply.
#[test]
fn reduced_precision_inference_in_eval_generate_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_corpus(dir.path());
    let out = dir.path().join("run");
    ok_line(&format!("train --data {} --hidden 48 --embed 8 --layers 2 --batch 2 --seq-len 8 --steps 40 --val-fraction 0.1 --sample-length 0 --out {}", s(&data), s(&out)));
    let model = out.join("model.safetensors");
    let m = s(&model);
    let ce = |p: &str| {
        let j: serde_json::Value = serde_json::from_str(&ok(&[
            "eval",
            "--model",
            m,
            "--data",
            s(&data),
            "--json",
            "--precision",
            p,
        ]))
        .unwrap();
        j["mean_cross_entropy"].as_f64().unwrap()
    };
    let exact = ce("f32");
    for p in ["bf16", "int8"] {
        let got = ce(p);
        assert!(
            got != exact,
            "{p}: the same loss as f32, so nothing was converted"
        );
        assert!(
            (got - exact).abs() < 0.01 * exact,
            "{p}: {got} against f32's {exact}"
        );
    }
    let gen = || {
        ok(&[
            "generate",
            "--model",
            m,
            "--length",
            "30",
            "--precision",
            "int8",
            "--seed",
            "2",
        ])
    };
    let (g1, g2) = (gen(), gen());
    assert_eq!(g1, g2, "int8 generation repeats by seed");
    assert!(g1.chars().count() >= 30, "{g1:?}");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "bench",
        "--config",
        "char-lstm-128x2",
        "--steps",
        "1",
        "--precision",
        "bf16",
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["precision"], "bf16");
    assert!(j["gen_tok_s"].as_f64().unwrap() > 0.0);
    let e = fails(&[
        "eval",
        "--model",
        m,
        "--data",
        s(&data),
        "--precision",
        "fp16",
    ]);
    assert!(
        e.contains("--precision") && e.contains("f32, bf16 or int8"),
        "{e}"
    );
    let ng = dir.path().join("ng");
    ok_line(&format!(
        "train --model ngram --order 3 --data {} --sample-length 0 --out {}",
        s(&data),
        s(&ng)
    ));
    let e = fails(&[
        "generate",
        "--model",
        s(&ng.join("model.safetensors")),
        "--precision",
        "int8",
    ]);
    assert!(e.contains("--precision") && e.contains("n-gram"), "{e}");
}

#[test]
fn word_level_training_uses_unk_for_rare_words() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("words.txt");
    std::fs::write(&data, "a b c a b\nrare a b\n\na b c\n".repeat(10)).unwrap();
    let out = dir.path().join("run");
    ok_line(&format!("train --data {} --level word --min-count 11 --hidden 16 --embed 8 --layers 1 --batch 2 --seq-len 5 --steps 3 --val-fraction 0 --sample-length 5 --out {}", s(&data), s(&out)));
    let exp = dir.path().join("exp");
    ok(&[
        "export",
        "--model",
        s(&out.join("model.safetensors")),
        "--out",
        s(&exp),
    ]);
    let vocab: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(exp.join("vocab.json")).unwrap()).unwrap();
    assert_eq!(vocab, ["<eos>", "<unk>", "a", "b", "c"]);
    // Unseen words map to <unk> in eval.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "a zebra b\n").unwrap();
    ok_line(&format!(
        "eval --model {} --data {} --json",
        s(&out.join("model.safetensors")),
        s(&other)
    ));
}

#[test]
fn bad_input_gives_clear_errors_and_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let o = s(&out);
    let missing = d.join("nope.txt");
    let e = fails(&["train", "--data", s(&missing), "--out", o]);
    assert!(e.contains("nope.txt"), "{e}");
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let e = fails(&["train", "--data", s(&empty), "--out", o]);
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");
    let short = d.join("short.txt");
    std::fs::write(&short, "just a few characters").unwrap();
    let e = fails_line(&format!(
        "train --data {} --batch 4 --seq-len 10 --out {}",
        s(&short),
        o
    ));
    assert!(
        e.contains("short.txt") && e.contains("needs at least 44"),
        "{e}"
    );
    let bad = d.join("bad.txt");
    std::fs::write(&bad, b"ok so far \xff\xfe then not").unwrap();
    let e = fails(&["train", "--data", s(&bad), "--out", o]);
    assert!(e.contains("bad.txt") && e.contains("byte offset 10"), "{e}");
    let text = tiny_corpus(d);
    let t = s(&text);
    let e = fails(&["train", "--data", t, "--batch", "0", "--out", o]);
    assert!(e.contains("batch") && e.contains('0'), "{e}");
    let e = fails(&["train", "--data", t, "--seq-len", "0", "--out", o]);
    assert!(e.contains("sequence length"), "{e}");
    for lr in ["-0.1", "NaN", "nan"] {
        let e = fails(&["train", "--data", t, "--lr", lr, "--out", o]);
        assert!(e.contains("learning rate"), "{lr}: {e}");
    }
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "a failed run left files in {o}"
    );

    // Checkpoints: truncated, corrupt, wrong kind.
    let model = import("char_gru_1l", d);
    let bytes = std::fs::read(&model).unwrap();
    let truncated = d.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["generate", "--model", s(&truncated)]);
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    let corrupt = d.join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    let e = fails(&["eval", "--model", s(&corrupt), "--data", t]);
    assert!(e.contains("corrupt.safetensors"), "{e}");
    let e = fails(&[
        "eval",
        "--model",
        s(&fixture("char_gru_1l").join("state_dict.safetensors")),
        "--data",
        t,
    ]);
    assert!(
        e.contains("not a recur model") && e.contains("recur import"),
        "{e}"
    );
    // A symbol the vocabulary lacks, with no <unk>.
    let odd = d.join("odd.txt");
    std::fs::write(&odd, "abc€").unwrap();
    let e = fails(&["eval", "--model", s(&model), "--data", s(&odd)]);
    assert!(e.contains("'€'") || e.contains("\"€\""), "{e}");
    assert!(e.contains("token 3"), "{e}");
}

#[test]
fn resume_refuses_settings_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for flag in [
        "--lr 0.1",
        "--batch 4",
        "--out elsewhere",
        "--optimizer sgd",
        "--seed 5",
    ] {
        let e = fails_line(&format!("train --resume {} {flag}", s(&run)));
        assert!(e.contains("cannot be used with"), "{flag}: {e}");
    }
}

/// A second run into a folder that holds one is refused (its model is
/// never silently replaced) unless --overwrite; a folder another live
/// process trains into is refused; a lock left by a dead process is taken
/// over; the lock is gone after a run.
#[test]
fn runs_are_never_replaced_or_shared() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = tiny_corpus(d);
    let out = d.join("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&text),
            "--hidden",
            "8",
            "--embed",
            "4",
            "--layers",
            "1",
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--steps",
            "2",
            "--sample-length",
            "0",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| ok(&train(extra).iter().map(String::as_str).collect::<Vec<_>>());
    let refuse =
        |extra: &[&str]| fails(&train(extra).iter().map(String::as_str).collect::<Vec<_>>());
    run(&[]);
    assert!(
        !out.join(".recur.lock").exists(),
        "the lock is removed after the run"
    );
    let model = std::fs::read(out.join("model.safetensors")).unwrap();
    let e = refuse(&[]);
    assert!(
        e.contains("already holds a run") && e.contains("--resume") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        model,
        "the first run's model is untouched"
    );
    run(&["--overwrite"]);
    // A live process holds the lock (this test's own pid): refused, for a
    // new run and for --resume alike.
    std::fs::write(out.join(".recur.lock"), format!("{}\n", std::process::id())).unwrap();
    let e = refuse(&["--overwrite"]);
    assert!(
        e.contains("another recur process") && e.contains(&std::process::id().to_string()),
        "{e}"
    );
    let e = fails(&["train", "--resume", s(&out), "--steps", "3"]);
    assert!(e.contains("another recur process"), "{e}");
    // A lock whose process is gone is taken over.
    std::fs::write(out.join(".recur.lock"), "4000000000\n").unwrap();
    ok(&["train", "--resume", s(&out), "--steps", "3"]);
    assert!(!out.join(".recur.lock").exists());
}

#[test]
fn divergence_exits_3_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = tiny_corpus(d);
    let out = d.join("run");
    let args = |lr: &'static str| {
        vec![
            "train",
            "--data",
            s(&text),
            "--hidden",
            "8",
            "--embed",
            "4",
            "--layers",
            "1",
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--steps",
            "60",
            "--eval-every",
            "1",
            "--optimizer",
            "sgd",
            "--lr",
            lr,
            "--clip-norm",
            "0",
            "--sample-length",
            "0",
            "--out",
            s(&out),
        ]
    };
    let r = recur(&args("1e6"));
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(3), "{err}");
    assert!(
        err.contains("diverged at step") && err.contains("bound"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let e = fails(&[
        "train",
        "--data",
        s(&text),
        "--on-divergence",
        "sometimes",
        "--out",
        s(&d.join("x")),
    ]);
    assert!(
        e.contains("--on-divergence") && e.contains("stop or skip"),
        "{e}"
    );
}

/// SIGINT at a random moment writes the state at that step and exits 130;
/// `--resume` then ends with exactly the files of an uninterrupted run.
#[test]
fn an_interrupted_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = tiny_corpus(d);
    let args = |out: &Path| {
        [
            "train",
            "--data",
            s(&text),
            "--hidden",
            "64",
            "--embed",
            "16",
            "--layers",
            "2",
            "--batch",
            "8",
            "--seq-len",
            "16",
            "--steps",
            "3000",
            "--eval-every",
            "100",
            "--sample-length",
            "0",
            "--dropout",
            "0.1",
            "--out",
            s(out),
        ]
        .map(String::from)
    };
    let (whole, cut) = (d.join("whole"), d.join("cut"));
    ok(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args(&cut))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // After the first evaluation, plus a random 0–400 ms.
    let started = std::time::Instant::now();
    while !cut.join("metrics.jsonl").exists() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 400;
    std::thread::sleep(std::time::Duration::from_millis(jitter as u64));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted at step"), "{err}");
    assert!(said.contains("--resume"), "{said}");
    assert!(!cut.join(".recur.lock").exists());
    ok(&["train", "--resume", s(&cut)]);
    for f in [
        "last.safetensors",
        "model.safetensors",
        "train_state.safetensors",
    ] {
        assert!(
            std::fs::read(whole.join(f)).unwrap() == std::fs::read(cut.join(f)).unwrap(),
            "{f} differs after the interrupted run resumed ({err})"
        );
    }
}

/// A safetensors file with a header and data (padded as the format wants).
fn raw_safetensors(path: &Path, header: serde_json::Value, data: &[u8]) {
    let mut h = header.to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Hostile model files: a config claiming a huge model, shapes past the
/// data, the wrong dtype, metadata of the wrong type, a vocabulary of the
/// wrong size. Each is a clear error, not a crash or an attempt to
/// allocate what the file claims.
#[test]
fn hostile_model_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vocab = r#"{"level":"char","tokens":["a","b","c","d","e"]}"#;
    let lm = |cfg: &str, vocab: &str| serde_json::json!({"format": "recur-lm", "config": cfg, "vocab": vocab});
    let small = r#"{"cell":"lstm","vocab_size":5,"embed":2,"hidden":2,"layers":1,"dropout":0.0}"#;
    let cases: Vec<(&str, serde_json::Value, Vec<u8>, &str)> = vec![
        (
            "huge-config",
            serde_json::json!({"__metadata__": lm(r#"{"cell":"lstm","vocab_size":5,"embed":2000000,"hidden":2000000,"layers":1,"dropout":0.0}"#, vocab),
                "encoder.weight": {"dtype": "F32", "shape": [5, 2], "data_offsets": [0, 40]}}),
            vec![0; 40],
            "parameters, but the file holds 10",
        ),
        (
            "past-the-end",
            serde_json::json!({"__metadata__": lm(small, vocab),
                "encoder.weight": {"dtype": "F32", "shape": [5, 2], "data_offsets": [0, 4000000]}}),
            vec![0; 40],
            "not a valid safetensors file",
        ),
        (
            "wrong-dtype",
            serde_json::json!({"__metadata__": lm(small, vocab),
                "encoder.weight": {"dtype": "I64", "shape": [5, 2], "data_offsets": [0, 80]}}),
            vec![0; 80],
            "dtype I64",
        ),
        (
            "wrong-type",
            serde_json::json!({"__metadata__": lm(r#"{"cell":"lstm","vocab_size":"five"}"#, vocab),
                "encoder.weight": {"dtype": "F32", "shape": [5, 2], "data_offsets": [0, 40]}}),
            vec![0; 40],
            "metadata 'config'",
        ),
        (
            "wrong-vocab",
            serde_json::json!({"__metadata__": lm(small, r#"{"level":"char","tokens":["a","b"]}"#),
                "encoder.weight": {"dtype": "F32", "shape": [5, 2], "data_offsets": [0, 40]}}),
            vec![0; 40],
            "vocabulary has 2 tokens",
        ),
        (
            "huge-seq",
            serde_json::json!({"__metadata__": {"format": "recur-seq-model", "meta": "{}",
                "config": r#"{"task":"classify","input":{"tokens":{"vocab":100000000,"embed":100000000}},"chars":null,"cell":"lstm","hidden":2,"layers":1,"bidirectional":false,"dropout":0.0,"residual":false,"learned_init":false,"pooling":"last","outputs":2,"per_step":false}"#},
                "head.bias": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
            vec![0; 8],
            "parameters, but the file holds 2",
        ),
    ];
    for (name, header, data, want) in cases {
        let p = d.join(format!("{name}.safetensors"));
        raw_safetensors(&p, header, &data);
        let cmd = if name.ends_with("seq") {
            "eval"
        } else {
            "generate"
        };
        let e = if cmd == "eval" {
            fails(&["eval", "--model", s(&p), "--data", s(&p)])
        } else {
            fails(&["generate", "--model", s(&p), "--length", "3"])
        };
        assert!(
            e.contains(&format!("{name}.safetensors")) && e.contains(want),
            "{name}: {e}"
        );
    }
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk: a clear error, no partial files, and the previous
/// checkpoint pair whole (resume takes it). Needs a small tmpfs, so it
/// runs where this process may mount one (root), and says so otherwise.
#[test]
fn a_full_disk_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_corpus(dir.path());
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=120k", "tmpfs", s(&mnt)])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        println!("skipped: cannot mount a tmpfs here (not root)");
        return;
    }
    let _guard = Tmpfs(mnt.clone());
    let out = mnt.join("run");
    let e = fails(&[
        "train",
        "--data",
        s(&text),
        "--hidden",
        "24",
        "--embed",
        "8",
        "--layers",
        "1",
        "--batch",
        "4",
        "--seq-len",
        "8",
        "--steps",
        "200",
        "--eval-every",
        "50",
        "--sample-length",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("No space left"), "{e}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "partial files left: {names:?}"
    );
    // The pair is whole: resume loads it, and fails only on the full disk again.
    let e = fails(&["train", "--resume", s(&out), "--steps", "200"]);
    assert!(e.contains("No space left") && !e.contains("step"), "{e}");
}
