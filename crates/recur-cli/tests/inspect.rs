//! `recur inspect`, run as the real binary on a small trained model.

mod common;
use common::*;

#[test]
fn inspect_projects_phrases_colours_a_unit_and_finds_units_for_a_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text: String = (0..200)
        .map(|i| format!("({i}) the cat sat. \"yes\" said the dog.\n"))
        .collect();
    std::fs::write(d.join("t.txt"), &text).unwrap();
    let run = d.join("run");
    ok_line(&format!(
        "train --data {} --hidden 16 --embed 8 --layers 2 --steps 40 --batch 8 --seq-len 32 --sample-length 0 --out {}",
        s(&d.join("t.txt")),
        s(&run)
    ));
    let model = run.join("model.safetensors");
    std::fs::write(
        d.join("phrases.txt"),
        "the cat\nthe dog\n(12) the\n\"yes\"\nsaid the dog.\n",
    )
    .unwrap();
    let out = d.join("inspect");
    let o = ok_line(&format!(
        "inspect --model {} --phrases {} --pca --out {}",
        s(&model),
        s(&d.join("phrases.txt")),
        s(&out)
    ));
    assert!(o.contains("PC1") && o.contains("said the dog."), "{o}");
    let svg = std::fs::read_to_string(out.join("pca.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("(12) the"));
    let pca: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pca.json")).unwrap()).unwrap();
    assert_eq!(pca["points"].as_array().unwrap().len(), 5);
    let ex: f64 = pca["explained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(ex > 0.0 && ex <= 1.0 + 1e-9);

    std::fs::write(d.join("x.txt"), &text[..400]).unwrap();
    let x = s(&d.join("x.txt")).to_string();
    ok_line(&format!(
        "inspect --model {} --text {x} --unit 1:3 --state h --out {}",
        s(&model),
        s(&out)
    ));
    let html = std::fs::read_to_string(out.join("unit-1-3.html")).unwrap();
    assert_eq!(html.matches("<span").count(), 400);
    assert!(std::fs::read_to_string(out.join("unit-1-3.svg"))
        .unwrap()
        .contains("<rect"));
    let o = ok(&[
        "inspect",
        "--model",
        s(&model),
        "--text",
        &x,
        "--top",
        "\"[^\"]*\"",
        "--count",
        "4",
        "--out",
        s(&out),
    ]);
    assert_eq!(
        o.lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        4,
        "{o}"
    );
    let top: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("top.json")).unwrap()).unwrap();
    let r: Vec<f64> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["r"].as_f64().unwrap().abs())
        .collect();
    assert!(r.windows(2).all(|w| w[0] >= w[1]) && r[0] <= 1.0);

    // Bad input: named and refused.
    let m = s(&model).to_string();
    let e = fails_line(&format!("inspect --model {m} --text {x} --unit 5:1"));
    assert!(e.contains("layers 0 to 1"), "{e}");
    let e = fails_line(&format!("inspect --model {m} --text {x} --unit one"));
    assert!(e.contains("LAYER:UNIT"), "{e}");
    let e = fails(&["inspect", "--model", &m, "--text", &x, "--top", "(unclosed"]);
    assert!(e.contains("not a regular expression"), "{e}");
    let e = fails(&["inspect", "--model", &m, "--text", &x, "--top", "zzzz"]);
    assert!(e.contains("matches 0"), "{e}");
    let e = fails_line(&format!("inspect --model {m}"));
    assert!(e.contains("nothing to do"), "{e}");
    let e = fails_line(&format!(
        "inspect --model {m} --text {x} --unit 0:1 --state q"
    ));
    assert!(e.contains("--state"), "{e}");
}
