//! `recur data` and `recur esn`, run as the real binary in temp dirs.

mod common;
use common::*;
use std::path::Path;

/// A safetensors file's metadata and tensors, in a comparable form.
fn contents(p: &Path) -> (Vec<(String, String)>, Vec<(String, Vec<usize>, Vec<u8>)>) {
    let bytes = std::fs::read(p).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut m: Vec<_> = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    m.sort();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    t.sort();
    (m, t)
}

#[test]
fn mackey_glass_fit_predict_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mg.csv");
    ok_line(&format!(
        "data mackey-glass --length 1500 --out {}",
        s(&data)
    ));
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(text.starts_with("t,x\n0,1.2\n"), "{}", &text[..40]);
    assert_eq!(text.lines().count(), 1501);
    let model = dir.path().join("esn.safetensors");
    let out = ok_line(&format!(
        "esn fit --data {} --column x --units 100 --horizon 10 --out {} --json",
        s(&data),
        s(&model)
    ));
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(m["test_nrmse"].as_f64().unwrap() < 0.02, "{m}");
    assert!(m["test_r2"].as_f64().unwrap() > 0.99, "{m}");
    assert!(dir.path().join("prediction.svg").exists());
    let pred = dir.path().join("pred.csv");
    ok_line(&format!(
        "esn predict --model {} --data {} --warmup 200 --out {}",
        s(&model),
        s(&data),
        s(&pred)
    ));
    let p = std::fs::read_to_string(&pred).unwrap();
    assert!(p.starts_with("step,prediction\n210,"), "{}", &p[..30]);
    assert_eq!(p.lines().count(), 1 + 1300);
    // Closed loop needs a horizon-1 model.
    let e = fails_line(&format!(
        "esn predict --model {} --data {} --generate 50",
        s(&model),
        s(&data)
    ));
    assert!(e.contains("horizon 1"), "{e}");
    let m1 = dir.path().join("esn1.safetensors");
    ok(&["esn", "fit", "--data", s(&data), "--out", s(&m1)]);
    let g = ok_line(&format!(
        "esn predict --model {} --data {} --warmup 500 --generate 50",
        s(&m1),
        s(&data)
    ));
    assert_eq!(g.lines().count(), 51);
    assert!(g.lines().nth(1).unwrap().starts_with("500,"));
    // Same seed, same model: tensors and metadata (the header's key order
    // comes from a hash map, so raw bytes may differ).
    let m2 = dir.path().join("esn2.safetensors");
    ok(&["esn", "fit", "--data", s(&data), "--out", s(&m2)]);
    assert_eq!(contents(&m1), contents(&m2));
}

#[test]
fn esn_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.safetensors");
    let csv = d.join("a.csv");
    std::fs::write(&csv, "t,x\n0,1\n1,2\n2,oops\n").unwrap();
    let e = fails_line(&format!(
        "esn fit --data {} --column x --out {}",
        s(&csv),
        s(&model)
    ));
    assert!(e.contains("line 4") && e.contains("oops"), "{e}");
    let e = fails_line(&format!(
        "esn fit --data {} --column y --out {}",
        s(&csv),
        s(&model)
    ));
    assert!(e.contains("no column named 'y'"), "{e}");
    let short = d.join("short.csv");
    std::fs::write(&short, "x\n1\n2\n3\n").unwrap();
    let e = fails_line(&format!(
        "esn fit --data {} --washout 10 --out {}",
        s(&short),
        s(&model)
    ));
    assert!(e.contains("fewer than washout 10"), "{e}");
    let ok_csv = d.join("ok.csv");
    std::fs::write(
        &ok_csv,
        (0..300)
            .map(|i| format!("{}\n", (i as f64 * 0.1).sin()))
            .collect::<String>(),
    )
    .unwrap();
    for sr in ["0", "-1"] {
        let e = fails_line(&format!(
            "esn fit --data {} --spectral-radius {} --out {}",
            s(&ok_csv),
            sr,
            s(&model)
        ));
        assert!(e.contains("spectral radius"), "{e}");
    }
    assert!(!model.exists());
}
