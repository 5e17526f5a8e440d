//! `recur train --task seq2seq`, `translate`, `eval` and `bleu` on small
//! files in temp dirs, and the errors bad input gets.

mod common;
use common::*;

use std::fmt::Write as _;

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `abc<TAB>cba`: strings of 2–5 letters and their reversal; one letter in
/// eight is a rare one (g–z), which `--vocab 6` makes `<unk>`.
fn reversal_pairs(n: usize, seed: u64) -> String {
    let mut r = Lcg(seed);
    let mut s = String::new();
    for _ in 0..n {
        let len = 2 + r.below(4) as usize;
        let w: String = (0..len)
            .map(|_| match r.below(8) {
                0 => (b'g' + r.below(20) as u8) as char,
                _ => (b'a' + r.below(6) as u8) as char,
            })
            .collect();
        writeln!(s, "{w}\t{}", w.chars().rev().collect::<String>()).unwrap();
    }
    s
}

/// `recur translate --model MODEL --input INPUT` and `extra`.
fn translate<'a>(model: &'a str, input: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["translate", "--model", model, "--input", input];
    args.extend_from_slice(extra);
    args
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn an_encoder_decoder_trains_translates_evaluates_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::write(p("train.tsv"), reversal_pairs(1500, 1)).unwrap();
    std::fs::write(p("test.tsv"), reversal_pairs(200, 2)).unwrap();
    let run = p("run");
    let data = p("train.tsv");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--task",
            "seq2seq",
            "--data",
            s(&data),
            "--level",
            "char",
            "--hidden",
            "48",
            "--embed",
            "16",
            "--batch",
            "32",
            "--lr",
            "0.01",
            "--dropout",
            "0",
            "--vocab",
            "6",
            "--out",
            s(&run),
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let out = train(&["--epochs", "12"]);
    assert!(out.contains("bahdanau attention"), "{out}");
    assert!(out.contains("held-out greedy BLEU"), "{out}");
    for f in [
        "model.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "valid.tsv",
        "run.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let model = run.join("model.safetensors");
    let test = p("test.tsv");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&model), "--data", s(&test), "--json"];
        args.extend_from_slice(extra);
        json(&ok(&args))
    };
    let e = eval(&[]);
    // Exact up to the rare letters, which are <unk> in and out.
    assert!(e["exact_match"].as_f64().unwrap() >= 0.85, "{e}");
    // bf16 and int8 weights in the encoder, decoder and output layer.
    for prec in ["bf16", "int8"] {
        let q = eval(&["--precision", prec]);
        let (a, b) = (
            e["exact_match"].as_f64().unwrap(),
            q["exact_match"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 0.05,
            "{prec}: exact match {b} against f32's {a}"
        );
    }
    assert!(
        e["bleu"].as_f64().is_some() && e["chrf"].as_f64().unwrap() > 80.0,
        "{e}"
    );
    assert!(
        e["signature"]
            .as_str()
            .unwrap()
            .contains("tok:13a|smooth:exp"),
        "{e}"
    );
    // Beam search agrees with the references at least as well.
    let b = json(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&p("test.tsv")),
        "--json",
        "--beam",
        "4",
    ]));
    assert!(b["exact_match"].as_f64().unwrap() >= 0.85, "{b}");

    // translate: one line per source; n-best lists; heatmaps.
    std::fs::write(p("src.txt"), "abcd\nfea\nzzab\n").unwrap();
    let t = ok(&translate(s(&model), s(&p("src.txt")), &[]));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert_eq!(lines[0], "dcba", "{t}");
    // Unknown source characters read as <unk>; replacement copies them back.
    assert_eq!(lines[2], "bazz", "{t}");
    let kept = ok(&translate(s(&model), s(&p("src.txt")), &["--keep-unk"]));
    assert!(kept.lines().nth(2).unwrap().contains("<unk>"), "{kept}");
    let nb = ok(&translate(
        s(&model),
        s(&p("src.txt")),
        &[
            "--beam",
            "3",
            "--nbest",
            "3",
            "--show",
            "1,2",
            "--heatmaps",
            s(&p("maps")),
        ],
    ));
    let rows: Vec<Vec<&str>> = nb.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 9, "{nb}");
    for group in rows.chunks(3) {
        let scores: Vec<f64> = group.iter().map(|r| r[1].parse().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{nb}");
    }
    assert_eq!(rows[0][2], "dcba");
    let svg = std::fs::read_to_string(p("maps").join("attention-1.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("rect"));
    let js = ok(&translate(s(&model), s(&p("src.txt")), &["--json"]));
    let first = json(js.lines().next().unwrap());
    assert_eq!(first["translations"][0]["text"], "dcba");

    // Resume continues the run to a larger budget.
    let r = ok(&["train", "--resume", s(&run), "--epochs", "13"]);
    assert!(r.contains("done: "), "{r}");

    // bleu: a file against itself scores 100.
    std::fs::write(p("hyp.txt"), "le chat est là .\nun deux\n").unwrap();
    let bl = json(&ok(&["bleu", s(&p("hyp.txt")), s(&p("hyp.txt")), "--json"]));
    assert!((bl["bleu"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{bl}");
    assert_eq!(bl["exact_match"], 1.0);
}

#[test]
fn bad_pairs_and_bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    let run = p("run");
    let train = |data: &[&std::path::Path], extra: &[&str]| {
        let mut args = vec!["train", "--task", "seq2seq", "--data"];
        args.extend(data.iter().map(|d| s(d)));
        args.extend_from_slice(&[
            "--out",
            s(&run),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--embed",
            "4",
        ]);
        args.extend_from_slice(extra);
        fails(&args)
    };
    std::fs::write(p("notab.tsv"), "a\tb\nno tab on this line\n").unwrap();
    let e = train(&[&p("notab.tsv")], &[]);
    assert!(e.contains("notab.tsv:2") && e.contains("no tab"), "{e}");
    std::fs::write(p("empty.tsv"), "a\tb\nc\t\n").unwrap();
    let e = train(&[&p("empty.tsv")], &[]);
    assert!(e.contains("empty.tsv:2") && e.contains("target"), "{e}");
    std::fs::write(p("src.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(p("tgt.txt"), "x\ny\n").unwrap();
    let e = train(&[&p("src.txt"), &p("tgt.txt")], &[]);
    assert!(
        e.contains("tgt.txt") && e.contains("2 lines") && e.contains("3"),
        "{e}"
    );
    std::fs::write(p("ok.tsv"), reversal_pairs(60, 3)).unwrap();
    let e = train(&[&p("ok.tsv")], &["--attention", "luong-ish"]);
    assert!(e.contains("--attention"), "{e}");
    let e = train(&[&p("ok.tsv")], &["--teacher-forcing", "1.5"]);
    assert!(e.contains("--teacher-forcing"), "{e}");
    let e = train(&[&p("ok.tsv")], &["--attention", "dot", "--bidirectional"]);
    assert!(e.contains("dot attention"), "{e}");

    // A small model to ask bad things of.
    ok(&[
        "train",
        "--task",
        "seq2seq",
        "--data",
        s(&p("ok.tsv")),
        "--level",
        "char",
        "--out",
        s(&p("m")),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--embed",
        "4",
    ]);
    let model = p("m").join("model.safetensors");
    std::fs::write(p("long.txt"), format!("ab\n{}\n", "a".repeat(500))).unwrap();
    let e = fails(&translate(s(&model), s(&p("long.txt")), &[]));
    assert!(
        e.contains("line 2") && e.contains("500 tokens") && e.contains("at most"),
        "{e}"
    );
    std::fs::write(p("blank.txt"), "ab\n\n").unwrap();
    let e = fails(&translate(s(&model), s(&p("blank.txt")), &[]));
    assert!(e.contains("line 2") && e.contains("empty"), "{e}");
    let e = fails(&translate(s(&model), s(&p("src.txt")), &["--beam", "0"]));
    assert!(e.contains("beam width"), "{e}");
    let e = fails(&translate(s(&model), s(&p("src.txt")), &["--nbest", "3"]));
    assert!(e.contains("--nbest"), "{e}");
    let e = fails(&["bleu", s(&p("src.txt")), s(&p("tgt.txt"))]);
    assert!(e.contains("3 lines") && e.contains("2"), "{e}");
    // Conditions: numbers in a file not named .csv are refused, not read as labels.
    std::fs::write(p("seqs.txt"), "a b\nc d\n").unwrap();
    std::fs::write(p("feats.txt"), "0.5,1\n2,3\n").unwrap();
    let e = train(&[&p("seqs.txt")], &["--condition", s(&p("feats.txt"))]);
    assert!(e.contains("feats.txt") && e.contains(".csv"), "{e}");
    std::fs::write(p("feats.csv"), "x,y\n0.5,1\n2,3\n").unwrap();
    ok(&[
        "train",
        "--condition",
        s(&p("feats.csv")),
        "--data",
        s(&p("seqs.txt")),
        "--out",
        s(&p("c")),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--embed",
        "4",
        "--val-fraction",
        "0",
    ]);
    let cm = p("c").join("model.safetensors");
    let g = ok(&[
        "generate",
        "--model",
        s(&cm),
        "--condition",
        "0.5,1",
        "--count",
        "2",
        "--length",
        "3",
    ]);
    assert_eq!(g.lines().count(), 2, "{g}");
    let e = fails(&["generate", "--model", s(&cm), "--condition", "0.5"]);
    assert!(e.contains("expected 2"), "{e}");
    let e = fails(&[
        "generate",
        "--model",
        s(&cm),
        "--condition",
        "0.5,1",
        "--prime",
        "a",
    ]);
    assert!(e.contains("--prime"), "{e}");
    // A language model is not an encoder-decoder.
    let e = fails(&translate(s(&p("ok.tsv")), s(&p("src.txt")), &[]));
    assert!(e.contains("ok.tsv"), "{e}");
}
