//! Helpers shared by the CLI tests: run the real binary and check how it ended.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `recur` with these arguments.
pub fn recur(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("running recur")
}

/// Runs a command that must succeed; returns its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = recur(args);
    assert!(
        out.status.success(),
        "recur {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail cleanly (exit 2, an `error:` line, no
/// panic); returns its message.
pub fn fails(args: &[&str]) -> String {
    let out = recur(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "recur {args:?}: expected exit 2, got {:?}\n{err}",
        out.status.code()
    );
    assert!(!err.contains("panicked"), "recur {args:?} panicked:\n{err}");
    assert!(err.starts_with("error:"), "{err}");
    err
}

/// [`ok`] with the arguments as one line, split at whitespace.
pub fn ok_line(line: &str) -> String {
    ok(&line.split_whitespace().collect::<Vec<_>>())
}

/// [`fails`] with the arguments as one line, split at whitespace.
pub fn fails_line(line: &str) -> String {
    fails(&line.split_whitespace().collect::<Vec<_>>())
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
