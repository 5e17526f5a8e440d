//! `recur task` and `recur diagnose`, run as the real binary.

mod common;
use common::*;

#[test]
fn binary_addition_json_reaches_full_accuracy_on_64_bits() {
    let out = ok(&["task", "binary-addition", "--cell", "tanh", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["task"], "binary-addition");
    assert_eq!(
        (v["train_bits"].as_u64(), v["test_bits"].as_u64()),
        (Some(8), Some(64))
    );
    assert_eq!(v["test_accuracy"].as_f64(), Some(1.0), "{v}");
    assert_eq!(v["solved"], true);
    assert!(v["solved_at_step"].as_u64().unwrap() <= 2000);
}

/// The seminar's toy with the defaults, every seed from 1 to 10: training
/// stops once a check set of 64-bit sums (apart from the test set) is
/// solved, and restarts from a fresh initialisation when it is not.
#[test]
fn binary_addition_is_solved_for_every_seed_with_the_defaults() {
    let runs: Vec<_> = (1..=10)
        .map(|seed| {
            std::thread::spawn(move || {
                let out = ok(&[
                    "task",
                    "binary-addition",
                    "--seed",
                    &seed.to_string(),
                    "--json",
                ]);
                let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
                (seed, v)
            })
        })
        .collect();
    for r in runs {
        let (seed, v) = r.join().unwrap();
        assert_eq!(v["test_accuracy"].as_f64(), Some(1.0), "seed {seed}: {v}");
        assert!(v["restarts"].as_u64().unwrap() <= 10, "seed {seed}: {v}");
    }
    // Without restarts the old behaviour stays: a fixed budget, which some
    // seeds end short of 64-bit accuracy 1.
    let out = ok(&[
        "task",
        "binary-addition",
        "--seed",
        "5",
        "--restarts",
        "0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["restarts"], 0);
}

#[test]
fn adding_and_copy_report_their_metrics() {
    let out =
        ok_line("task adding --cell gru --hidden 8 --length 20 --steps 5 --test-size 50 --json");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["test_mse"].as_f64().unwrap() >= 0.0);
    assert!((0.1..0.25).contains(&v["baseline_mse"].as_f64().unwrap()));
    assert_eq!(v["length"].as_u64(), Some(20));
    // Human-readable output names the metric.
    let out = ok_line(
        "task copy --cell tanh --leak 0.5 --skip 3 --hidden 8 --length 5 --steps 4 --test-size 20",
    );
    assert!(out.contains("test accuracy"), "{out}");
}

#[test]
fn diagnose_writes_gradients_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    for cell in ["tanh", "lstm"] {
        let out_dir = dir.path().join(cell);
        let out = ok_line(&format!("diagnose --task adding --cell {} --hidden 8 --length 30 --steps 6 --records 3 --test-size 20 --out {}", cell, s(&out_dir)));
        assert!(out.contains("gradient_flow.svg"), "{out}");
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(out_dir.join("gradients.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        // Step 1, then every 6/3 = 2 steps.
        let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 4, 6]);
        for l in &lines {
            assert_eq!(l["state_grad_norm"].as_array().unwrap().len(), 30);
            assert_eq!(l["jacobian_norm"].as_array().unwrap().len(), 30);
        }
        let svg = std::fs::read_to_string(out_dir.join("gradient_flow.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("step 6"));
    }
}

#[test]
fn frequency_task_with_a_phased_lstm() {
    let out = ok_line(
        "task frequency --cell phased --hidden 8 --length 20 --steps 30 --test-size 64 --json",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["task"], "frequency");
    assert_eq!(v["cell"], "phased");
    let acc = v["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{v}");
    assert_eq!(v["length"], 20);
}

#[test]
fn gradient_regulariser_is_reported_and_changes_training() {
    let dir = tempfile::tempdir().unwrap();
    let run = |r: &str| {
        let out_dir = dir.path().join(r);
        ok_line(&format!("diagnose --task adding --cell tanh --hidden 8 --length 20 --steps 6 --records 3 --test-size 20 --gradient-regulariser {r} --out {}", s(&out_dir)));
        std::fs::read_to_string(out_dir.join("gradients.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let (off, on) = (run("0"), run("2"));
    for l in &off {
        assert_eq!(l["regulariser"].as_f64(), Some(0.0));
    }
    for l in &on {
        let omega = l["regulariser"].as_f64().unwrap();
        assert!(omega.is_finite() && omega > 0.0, "{l}");
    }
    // Step 1's gradients are the same (Ω acts on the update); later ones differ.
    assert_eq!(off[0]["state_grad_norm"], on[0]["state_grad_norm"]);
    assert_ne!(off.last().unwrap()["loss"], on.last().unwrap()["loss"]);
}

#[test]
fn task_bad_input() {
    let e = fails(&[
        "task",
        "adding",
        "--cell",
        "lstm",
        "--gradient-regulariser",
        "1",
    ]);
    assert!(e.contains("Elman") && e.contains("not lstm"), "{e}");
    let e = fails(&[
        "task",
        "adding",
        "--cell",
        "tanh",
        "--gradient-regulariser",
        "-1",
    ]);
    assert!(e.contains("0 or more"), "{e}");
    let e = fails(&["task", "multiply"]);
    assert!(
        e.contains("unknown task 'multiply'") && e.contains("binary-addition"),
        "{e}"
    );
    let e = fails(&["task", "adding", "--cell", "transformer"]);
    assert!(e.contains("--cell") && e.contains("lstm"), "{e}");
    let e = fails(&["task", "adding", "--cell", "lstm", "--leak", "0.5"]);
    assert!(e.contains("not lstm"), "{e}");
    let e = fails(&["task", "adding", "--cell", "tanh", "--teacher-forcing"]);
    assert!(e.contains("jordan"), "{e}");
    let e = fails(&["task", "adding", "--init", "zeros"]);
    assert!(e.contains("--init"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = fails_line(&format!(
        "diagnose --cell jordan --steps 1 --out {}",
        s(dir.path())
    ));
    assert!(e.contains("Elman"), "{e}");
}
