//! `recur train --task …`, `eval` and `predict` on small files written
//! into temp dirs, and the errors bad files get.

mod common;
use common::*;

use std::fmt::Write as _;
use std::path::Path;

/// A tiny deterministic random stream.
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

const FILLER: [&str; 8] = [
    "the", "a", "film", "plot", "actor", "scene", "story", "music",
];

/// `label<TAB>text` lines whose label is told by one cue word.
fn sentiment_lines(n: usize, seed: u64) -> String {
    let mut r = Lcg(seed);
    let mut s = String::new();
    for _ in 0..n {
        let pos = r.below(2) == 0;
        let len = 3 + r.below(6) as usize;
        let at = r.below(len as u64) as usize;
        let words: Vec<&str> = (0..len)
            .map(|i| {
                if i == at {
                    if pos {
                        "good"
                    } else {
                        "bad"
                    }
                } else {
                    FILLER[r.below(8) as usize]
                }
            })
            .collect();
        writeln!(
            s,
            "{}\t{}",
            if pos { "pos" } else { "neg" },
            words.join(" ")
        )
        .unwrap();
    }
    s
}

/// `recur eval --json` of a model on a file, with extra arguments.
fn eval_json(model: &str, data: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", "--model", model, "--data", data, "--json"];
    args.extend_from_slice(extra);
    json(&ok(&args))
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The small classifier the tests train: 12 epochs, 16 hidden and embed,
/// no dropout, learning rate 0.01.
const SMALL_CLASSIFIER: &[&str] = &[
    "--epochs",
    "12",
    "--hidden",
    "16",
    "--embed",
    "16",
    "--dropout",
    "0",
    "--lr",
    "0.01",
];

#[test]
fn text_classifier_trains_evaluates_predicts_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, run) = (
        dir.path().join("train.tsv"),
        dir.path().join("test.tsv"),
        dir.path().join("run"),
    );
    std::fs::write(&train, sentiment_lines(400, 1)).unwrap();
    std::fs::write(&test, sentiment_lines(100, 2)).unwrap();
    // The run, and the same run in bf16 below.
    let train_args = |out: &Path, extra: &[&str]| -> String {
        let args = [
            &[
                "train",
                "--task",
                "classify",
                "--data",
                s(&train),
                "--out",
                s(out),
            ],
            SMALL_CLASSIFIER,
            &["--patience", "0", "--pretrain", "1"],
            extra,
        ]
        .concat();
        ok(&args)
    };
    let out = train_args(&run, &[]);
    assert!(out.contains("training a classify of 2 classes"), "{out}");
    for f in [
        "model.safetensors",
        "last.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "accuracy.svg",
        "confusion.svg",
        "run.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let model = run.join("model.safetensors");
    let e = eval_json(s(&model), s(&test), &[]);
    assert!(e["accuracy"].as_f64().unwrap() >= 0.95, "{e}");
    assert!(e["macro_f1"].as_f64().unwrap() >= 0.95, "{e}");
    for c in ["pos", "neg"] {
        let pc = &e["per_class"][c];
        for k in ["precision", "recall", "f1", "support"] {
            assert!(pc[k].is_number(), "{e}");
        }
    }
    // Prediction reads unlabelled lines too.
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "the plot was good\nbad bad film\n").unwrap();
    let tsv = ok(&["predict", "--model", s(&model), "--data", s(&plain)]);
    let rows: Vec<&str> = tsv.lines().collect();
    assert_eq!(rows[0], "label\tprobability\ttext");
    assert!(
        rows[1].starts_with("pos\t") && rows[1].ends_with("\tthe plot was good"),
        "{tsv}"
    );
    assert!(rows[2].starts_with("neg\t"), "{tsv}");
    // Reduced precision gives the same labels here, with probabilities
    // that move only slightly.
    for p in ["bf16", "int8"] {
        let q = ok(&[
            "predict",
            "--model",
            s(&model),
            "--data",
            s(&plain),
            "--precision",
            p,
        ]);
        for (a, b) in tsv.lines().zip(q.lines()).skip(1) {
            let (fa, fb): (Vec<&str>, Vec<&str>) =
                (a.split('\t').collect(), b.split('\t').collect());
            assert_eq!((fa[0], fa[2]), (fb[0], fb[2]), "{p}");
            let (pa, pb): (f64, f64) = (fa[1].parse().unwrap(), fb[1].parse().unwrap());
            assert!((pa - pb).abs() < 0.02, "{p}: {pa} vs {pb}");
        }
        let e8 = eval_json(s(&model), s(&test), &["--precision", p]);
        assert!(e8["accuracy"].as_f64().unwrap() >= 0.95, "{p}: {e8}");
    }
    // Trained in bf16, the classifier learns the task as well.
    let run16 = dir.path().join("run16");
    train_args(&run16, &["--precision", "bf16"]);
    let e16 = eval_json(s(&run16.join("model.safetensors")), s(&test), &[]);
    assert!(
        e16["accuracy"].as_f64().unwrap() >= 0.95,
        "bf16-trained: {e16}"
    );
    // Resume continues to a larger budget.
    let out = ok(&["train", "--resume", s(&run), "--epochs", "13"]);
    assert!(out.contains("done:"), "{out}");
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 13, "{lines}");
}

#[test]
fn class_files_in_windows_1252_and_cross_validation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mr");
    std::fs::create_dir(&data).unwrap();
    let text = sentiment_lines(300, 3);
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let (label, t) = l.split_once('\t').unwrap();
        // "café" in Windows-1252: é is the single byte 0xE9.
        let mut bytes = t.as_bytes().to_vec();
        bytes.extend_from_slice(b" caf\xe9\n");
        if label == "pos" {
            pos.extend(bytes)
        } else {
            neg.extend(bytes)
        }
    }
    std::fs::write(data.join("reviews.pos"), pos).unwrap();
    std::fs::write(data.join("reviews.neg"), neg).unwrap();
    let run = dir.path().join("run");
    let err = fails(&[
        "train",
        "--task",
        "classify",
        "--data",
        s(&data),
        "--out",
        s(&run),
    ]);
    assert!(
        err.contains("reviews.neg") && err.contains("byte offset") && err.contains("--encoding"),
        "{err}"
    );
    assert!(!run.exists(), "a failed run leaves nothing behind");
    let out = ok(&[
        &[
            "train",
            "--task",
            "classify",
            "--data",
            s(&data),
            "--encoding",
            "windows-1252",
            "--out",
            s(&run),
            "--folds",
            "3",
            "--json",
        ],
        SMALL_CLASSIFIER,
    ]
    .concat());
    let j = json(&out);
    let folds = j["fold_accuracies"].as_array().unwrap();
    assert_eq!(folds.len(), 3, "{j}");
    assert!(j["mean_accuracy"].as_f64().unwrap() >= 0.9, "{j}");
}

/// A CoNLL-U file whose UPOS follows the word, with a multiword token
/// and an empty node in every sentence.
fn conllu(n: usize, seed: u64) -> String {
    let words = [
        ("dogs", "NOUN"),
        ("cats", "NOUN"),
        ("run", "VERB"),
        ("sleep", "VERB"),
        ("the", "DET"),
        ("big", "ADJ"),
    ];
    let mut r = Lcg(seed);
    let mut s = String::new();
    for k in 0..n {
        writeln!(s, "# sent_id = {k}").unwrap();
        writeln!(s, "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_").unwrap();
        writeln!(s, "1\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_").unwrap();
        writeln!(s, "2\tn't\tnot\tPART\tRB\t_\t1\tadvmod\t_\t_").unwrap();
        let len = 2 + r.below(5) as usize;
        for i in 0..len {
            let (w, t) = words[r.below(6) as usize];
            writeln!(s, "{}\t{w}\t{w}\t{t}\t_\t_\t1\tdep\t_\t_", i + 3).unwrap();
            if i == 0 {
                writeln!(s, "3.1\tgone\tgo\tVERB\t_\t_\t_\t_\t1:dep\t_").unwrap();
            }
        }
        writeln!(s).unwrap();
    }
    s
}

#[test]
fn tagger_writes_conllu_back_with_the_predicted_column() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, run) = (
        dir.path().join("train.conllu"),
        dir.path().join("test.conllu"),
        dir.path().join("run"),
    );
    std::fs::write(&train, conllu(200, 4)).unwrap();
    let gold = conllu(20, 5);
    std::fs::write(&test, &gold).unwrap();
    ok(&[
        "train",
        "--task",
        "tag",
        "--data",
        s(&train),
        "--out",
        s(&run),
        "--epochs",
        "25",
        "--hidden",
        "16",
        "--embed",
        "16",
        "--char-hidden",
        "8",
        "--char-embed",
        "8",
        "--layers",
        "1",
        "--lr",
        "0.01",
    ]);
    let model = run.join("model.safetensors");
    let e = eval_json(s(&model), s(&test), &[]);
    assert!(e["accuracy"].as_f64().unwrap() >= 0.95, "{e}");
    let pred = dir.path().join("pred.conllu");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--out",
        s(&pred),
    ]);
    let got = std::fs::read_to_string(&pred).unwrap();
    let (gl, pl): (Vec<&str>, Vec<&str>) = (gold.lines().collect(), got.lines().collect());
    assert_eq!(gl.len(), pl.len());
    let mut same = 0;
    for (g, p) in gl.iter().zip(&pl) {
        let id = g.split('\t').next().unwrap();
        if id.contains('-') || id.contains('.') || g.starts_with('#') || g.is_empty() {
            assert_eq!(
                g, p,
                "multiword tokens, empty nodes and comments are written back unchanged"
            );
        } else {
            let (gc, pc): (Vec<&str>, Vec<&str>) =
                (g.split('\t').collect(), p.split('\t').collect());
            assert_eq!(gc.len(), 10);
            assert_eq!([&gc[..3], &gc[4..]].concat(), [&pc[..3], &pc[4..]].concat());
            same += usize::from(gc[3] == pc[3]);
        }
    }
    assert!(same > 0);
}

fn ts_file(n: usize, seed: u64, header: &str) -> String {
    let mut r = Lcg(seed);
    let mut s = format!("@problemName toy\n@timeStamps false\n@missing false\n{header}\n@classLabel true up down\n@data\n");
    for _ in 0..n {
        let up = r.below(2) == 0;
        let len = 8 + r.below(8) as usize;
        let vals: Vec<String> = (0..len)
            .map(|t| {
                let noise = r.below(100) as f64 / 100.0 - 0.5;
                let v = if up { t as f64 } else { -(t as f64) } * 0.3 + noise;
                format!("{v:.3}")
            })
            .collect();
        writeln!(s, "{}:{}", vals.join(","), if up { "up" } else { "down" }).unwrap();
    }
    s
}

#[test]
fn series_classifier_on_ts_files() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, run) = (
        dir.path().join("t_TRAIN.ts"),
        dir.path().join("t_TEST.ts"),
        dir.path().join("run"),
    );
    let header = "@univariate true\n@equalLength false";
    std::fs::write(&train, ts_file(120, 6, header)).unwrap();
    std::fs::write(&test, ts_file(60, 7, header)).unwrap();
    ok(&[
        "train",
        "--task",
        "classify",
        "--data",
        s(&train),
        "--out",
        s(&run),
        "--epochs",
        "30",
        "--hidden",
        "8",
        "--lr",
        "0.01",
    ]);
    let e = eval_json(s(&run.join("model.safetensors")), s(&test), &[]);
    assert!(e["accuracy"].as_f64().unwrap() >= 0.95, "{e}");
}

#[test]
fn forecaster_beats_the_seasonal_naive_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, run) = (dir.path().join("series.csv"), dir.path().join("run"));
    // A trend plus a season of 12 and noise; the last 24 rows are the test.
    let mut r = Lcg(8);
    let mut text = String::from("month,load\n");
    for t in 0..240 {
        let v = 100.0
            + 0.5 * t as f64
            + 10.0 * (t as f64 * std::f64::consts::PI / 6.0).sin()
            + r.below(100) as f64 / 50.0;
        writeln!(text, "m{t},{v:.3}").unwrap();
    }
    std::fs::write(&csv, text).unwrap();
    ok(&[
        "train",
        "--task",
        "regress",
        "--data",
        s(&csv),
        "--target",
        "load",
        "--window",
        "24",
        "--horizon",
        "12",
        "--holdout",
        "24",
        "--relative",
        "--out",
        s(&run),
        "--epochs",
        "60",
        "--hidden",
        "16",
    ]);
    let model = run.join("model.safetensors");
    let e = eval_json(s(&model), s(&csv), &["--period", "12"]);
    assert_eq!(e["predictions"], 24, "{e}");
    assert!(
        e["rmse"].as_f64().unwrap() < e["baseline_rmse"].as_f64().unwrap(),
        "{e}"
    );
    let pred = ok(&["predict", "--model", s(&model), "--data", s(&csv)]);
    assert_eq!(pred.lines().count(), 25, "{pred}");
    assert!(pred.starts_with("row,prediction\n217,"), "{pred}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("run");
    let train = |data: &str, task: &str| {
        fails(&[
            "train",
            "--task",
            task,
            "--data",
            data,
            "--out",
            s(&run),
            "--epochs",
            "1",
        ])
    };
    // An empty text after the tab; a line without a tab.
    let e = train(
        &write(d, "empty.tsv", "pos\tgood film\nneg\t\n"),
        "classify",
    );
    assert!(e.contains("empty.tsv:2") && e.contains("empty"), "{e}");
    let e = train(
        &write(d, "notab.tsv", "pos\tgood film\nneg bad film\n"),
        "classify",
    );
    assert!(e.contains("notab.tsv:2") && e.contains("tab"), "{e}");
    // A CoNLL-U line with the wrong number of columns.
    let e = train(&write(d, "bad.conllu", "1\tdogs\tdog\tNOUN\n\n"), "tag");
    assert!(
        e.contains("bad.conllu:1") && e.contains("expected 10"),
        "{e}"
    );
    // A .ts header that contradicts its data, and missing values.
    let e = train(
        &write(
            d,
            "h.ts",
            "@univariate true\n@equalLength true\n@classLabel true a b\n@data\n1,2,3:a\n1,2:b\n",
        ),
        "classify",
    );
    assert!(e.contains("h.ts:6") && e.contains("@equalLength"), "{e}");
    let e = train(
        &write(
            d,
            "nan.ts",
            "@univariate true\n@classLabel true a b\n@data\n1,NaN,3:a\n1,2:b\n",
        ),
        "classify",
    );
    assert!(e.contains("nan.ts:4") && e.contains("missing"), "{e}");
    let e = train(&write(d, "q.csv", "t,y\n1,2\n2,\n3,4\n"), "regress");
    assert!(e.contains("--target"), "{e}");
    let e = fails(&[
        "train",
        "--task",
        "regress",
        "--data",
        &write(d, "q2.csv", "t,y\n1,2\n2,\n3,4\n"),
        "--target",
        "y",
        "--out",
        s(&run),
    ]);
    assert!(e.contains("q2.csv:3") && e.contains("empty"), "{e}");
    assert!(!run.exists(), "failed runs write nothing");
    // A label seen only at test time.
    let good = write(d, "good.tsv", &sentiment_lines(60, 9));
    ok(&[
        "train",
        "--task",
        "classify",
        "--data",
        &good,
        "--out",
        s(&run),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--embed",
        "8",
    ]);
    let e = fails(&[
        "eval",
        "--model",
        s(&run.join("model.safetensors")),
        "--data",
        &write(d, "new.tsv", "pos\tgood\nmeh\tfilm\n"),
        "--json",
    ]);
    assert!(
        e.contains("new.tsv:2") && e.contains("'meh'") && e.contains("not seen in training"),
        "{e}"
    );
    // Unknown option values.
    let e = fails(&[
        "train",
        "--task",
        "sort",
        "--data",
        &good,
        "--out",
        s(&d.join("r2")),
    ]);
    assert!(
        e.contains("--task") && e.contains("classify, tag or regress"),
        "{e}"
    );
    let e = fails(&[
        "train",
        "--task",
        "classify",
        "--data",
        &good,
        "--pooling",
        "median",
        "--out",
        s(&d.join("r3")),
    ]);
    assert!(e.contains("--pooling"), "{e}");
}

#[test]
fn regression_per_step_per_sequence_and_class_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Per step: y_t = 2·a_t − b_t from two feature columns.
    let mut r = Lcg(12);
    let mut text = String::from("a,b,y\n");
    for _ in 0..400 {
        let (a, b) = (r.below(100) as f64 / 50.0, r.below(100) as f64 / 50.0);
        writeln!(text, "{a},{b},{}", 2.0 * a - b).unwrap();
    }
    let csv = write(d, "steps.csv", &text);
    let run = d.join("steps");
    ok(&[
        "train",
        "--task",
        "regress",
        "--data",
        &csv,
        "--target",
        "y",
        "--features",
        "a,b",
        "--horizon",
        "0",
        "--window",
        "10",
        "--holdout",
        "40",
        "--epochs",
        "40",
        "--hidden",
        "16",
        "--lr",
        "0.01",
        "--out",
        s(&run),
    ]);
    let e = eval_json(s(&run.join("model.safetensors")), &csv, &[]);
    assert_eq!(e["predictions"], 40, "{e}");
    assert!(
        e["rmse"].as_f64().unwrap() < 0.5 * e["baseline_rmse"].as_f64().unwrap(),
        "{e}"
    );
    // Held-out tails that windows do not tile: each row predicted once.
    for (holdout, n) in [("45", 45), ("5", 5)] {
        let e = eval_json(
            s(&run.join("model.safetensors")),
            &csv,
            &["--holdout", holdout],
        );
        assert_eq!(e["predictions"], n, "{e}");
    }
    let pred = ok(&[
        "predict",
        "--model",
        s(&run.join("model.safetensors")),
        "--data",
        &csv,
        "--holdout",
        "45",
    ]);
    let rows: Vec<usize> = pred
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, (356..=400).collect::<Vec<_>>(), "{pred}");
    // Per sequence from a .ts file with numeric targets: the series' mean.
    let mut ts = String::from("@problemName sums\n@timeStamps false\n@univariate true\n@equalLength false\n@targetLabel true\n@data\n");
    for _ in 0..200 {
        let len = 4 + r.below(6) as usize;
        let v: Vec<f64> = (0..len).map(|_| r.below(100) as f64 / 25.0).collect();
        let mean = v.iter().sum::<f64>() / len as f64;
        let vs: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
        writeln!(ts, "{}:{mean}", vs.join(",")).unwrap();
    }
    let tsf = write(d, "sums.ts", &ts);
    let run = d.join("sums");
    ok(&[
        "train",
        "--task",
        "regress",
        "--data",
        &tsf,
        "--epochs",
        "60",
        "--hidden",
        "16",
        "--lr",
        "0.01",
        "--out",
        s(&run),
    ]);
    let e = eval_json(s(&run.join("model.safetensors")), &tsf, &[]);
    assert!(
        e["rmse"].as_f64().unwrap() < 0.5 * e["baseline_rmse"].as_f64().unwrap(),
        "{e}"
    );
    let pred = ok(&[
        "predict",
        "--model",
        s(&run.join("model.safetensors")),
        "--data",
        &tsf,
    ]);
    assert!(pred.starts_with("index,prediction_0\n1,"), "{pred}");
    assert_eq!(pred.lines().count(), 201);
    // Imbalanced classes: balanced weights and an explicit list both train; a wrong list is an error.
    let lines: String = sentiment_lines(200, 13)
        .lines()
        .filter(|l| l.starts_with("pos") || l.len() % 4 == 0)
        .map(|l| format!("{l}\n"))
        .collect();
    let data = write(d, "imbalanced.tsv", &lines);
    for w in ["balanced", "2,0.5"] {
        ok(&[
            "train",
            "--task",
            "classify",
            "--data",
            &data,
            "--class-weights",
            w,
            "--epochs",
            "2",
            "--out",
            s(&d.join(format!("w{}", w.len()))),
        ]);
    }
    let e = fails(&[
        "train",
        "--task",
        "classify",
        "--data",
        &data,
        "--class-weights",
        "1,2,3",
        "--out",
        s(&d.join("w3")),
    ]);
    assert!(
        e.contains("--class-weights") && e.contains("expected 2 weights"),
        "{e}"
    );
}
