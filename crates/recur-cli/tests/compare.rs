//! `recur compare`, run as the real binary on a small text.

mod common;
use common::*;

#[test]
fn compare_trains_every_model_and_writes_table_chart_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..300)
        .map(|i| format!("the {} sat on the mat.\n", ["cat", "dog", "rat"][i % 3]))
        .collect();
    let data = dir.path().join("t.txt");
    std::fs::write(&data, text).unwrap();
    let out = dir.path().join("cmp");
    let args = format!(
        "compare --data {} --time 0.05 --hidden 16 --embed 8 --batch 8 --seq-len 16 --orders 2,4 --out {}",
        s(&data),
        s(&out)
    );
    let table = ok_line(&args);
    for m in [
        "2-gram",
        "4-gram",
        "fixed window (K = 16)",
        "Elman RNN",
        "GRU",
        "LSTM",
    ] {
        assert!(table.contains(m), "{m} missing:\n{table}");
    }
    // The JSON run also takes the window model's dropout and bf16 products.
    let json = ok_line(&(args + " --json --window-dropout 0.3 --precision bf16"));
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    // Exactly one n-gram is marked best, and it is the lowest of them.
    let grams: Vec<&serde_json::Value> = rows[..2].iter().collect();
    let marked: Vec<_> = grams.iter().filter(|r| r["best_ngram"] == true).collect();
    assert_eq!(marked.len(), 1, "{json}");
    let low = grams
        .iter()
        .map(|r| r["val_loss"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(marked[0]["val_loss"].as_f64().unwrap(), low);
    assert!(rows[2..].iter().all(|r| r.get("best_ngram").is_none()));
    assert!(table.contains(" *"), "{table}");
    for r in &rows {
        assert!(
            r["val_loss"].as_f64().unwrap() > 0.0 && r["params"].as_u64().unwrap() > 0,
            "{r}"
        );
        assert!(r["seconds"].as_f64().unwrap() >= 0.0);
    }
    assert!(std::fs::read_to_string(out.join("compare.svg"))
        .unwrap()
        .contains("LSTM"));
    let e = fails_line(&format!("compare --data {} --orders 0", s(&data)));
    assert!(e.contains("--orders"), "{e}");
    for (bad, says) in [
        ("--level byte", "--level"),
        ("--window-dropout 1", "--window-dropout"),
        ("--precision int8", "not int8"),
        ("--precision f16", "--precision"),
        ("--dropout 1.5", "--dropout"),
        ("--lr 0", "--lr"),
        ("--window-embed-dropout 1", "--window-embed-dropout"),
        ("--min-count 2", "--level word"),
    ] {
        let e = fails_line(&format!("compare --data {} {bad}", s(&data)));
        assert!(e.contains(says), "{bad}: {e}");
    }
}

/// At word level the rare words become <unk> for every model alike: the
/// n-grams' vocabulary and the neural models' are the same, and the window
/// takes its word-level default of 3 tokens.
#[test]
fn compare_at_word_level_thins_the_vocabulary_for_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let words = ["cat", "dog", "rat", "hat", "bat", "mat", "owl", "elk"];
    // Each line has one word seen once (the line number), so the default
    // min-count of 3 sends 200 of the words to <unk>.
    let text: String = (0..200)
        .map(|i| format!("the {} sat on w{i} .\n", words[i % 8]))
        .collect();
    let data = dir.path().join("w.txt");
    std::fs::write(&data, text).unwrap();
    let run = |extra: &str| -> Vec<serde_json::Value> {
        let out = dir.path().join("cmp");
        let json = ok_line(&format!(
            "compare --data {} --level word --time 0.05 --hidden 16 --embed 8 --batch 4 --seq-len 8 --orders 2,3 --json --out {} {extra}",
            s(&data),
            s(&out)
        ));
        json.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let thinned = run("");
    let full = run("--min-count 1");
    assert!(
        thinned[2]["model"].as_str().unwrap().contains("K = 3"),
        "{:?}",
        thinned[2]
    );
    // A 2-gram over 14 types (12 kept words, <eos> and <unk>) against one
    // over 213: fewer n-grams stored, and an easier held-out part.
    let ngrams = |r: &[serde_json::Value]| r[0]["params"].as_u64().unwrap();
    assert!(ngrams(&thinned) < ngrams(&full), "{thinned:?} {full:?}");
    let loss = |r: &[serde_json::Value], i: usize| r[i]["val_loss"].as_f64().unwrap();
    assert!(loss(&thinned, 0) < loss(&full, 0));
    // The neural models' output layers shrink with the vocabulary.
    for i in 2..6 {
        assert!(
            thinned[i]["params"].as_u64() < full[i]["params"].as_u64(),
            "{} {}",
            thinned[i],
            full[i]
        );
    }
}
