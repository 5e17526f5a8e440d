//! Runs the real `recur` binary.

use std::process::Command;

fn recur(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("running recur")
}

#[test]
fn help_lists_subcommands() {
    let out = recur(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bench"), "{text}");
}

#[test]
fn bench_layer_prints_json_with_rates() {
    let out = recur(&[
        "bench",
        "layer",
        "--hidden",
        "16",
        "--batch",
        "4",
        "--steps",
        "5",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hidden"], 16);
    assert!(v["forward_backward_gflops"].as_f64().unwrap() > 0.0);
    assert!(v["gemm_gflops"]["recurrent_step"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_cell_is_a_clear_error_with_exit_code_2() {
    let out = recur(&["bench", "layer", "--cell", "transformer"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cell") && err.contains("transformer") && err.contains("lstm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
