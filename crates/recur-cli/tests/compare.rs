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
    ] {
        let e = fails_line(&format!("compare --data {} {bad}", s(&data)));
        assert!(e.contains(says), "{bad}: {e}");
    }
}
