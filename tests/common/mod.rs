//! What the tests share: running `gpt` and judging its outcome; the golden
//! comparisons with `transformers` ([`golden`]).
// Each test crate uses its own subset.
#![allow(dead_code)]

pub mod golden;

use std::process::{Command, Output};

/// Runs the `gpt` binary with `args`.
pub fn gpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .output()
        .expect("gpt runs")
}

/// Asserts the command succeeded (showing its stderr if not) and hands it back.
pub fn succeeds(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Asserts the command failed with a message containing `want`, and did not panic.
pub fn fails_with(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    assert!(err.contains(want), "error should mention {want:?}: {err}");
}
