//! Training speed: `cargo bench --bench train`.
//!
//! Prints, from one run on this machine:
//! - `gpt train` as a user runs it (the default preset, whole run: data,
//!   training, validation, checkpoint, samples): its ms per step and the
//!   command's wall time, beside the same for `--preset microgpt`;
//! - the GFLOP/s of our matmul at 256×768×3072 and 2048³ beside numpy's
//!   (OpenBLAS) on the same shapes and thread count, measured in the same run.
//!
//! The numpy peer runs with the Python in `$GPT_BENCH_PYTHON`, else
//! `~/.cache/gpt-venv/bin/python`, else `python3`; without numpy it is skipped.

#[path = "common.rs"]
mod common;
use common::python;

#[path = "sgemm.rs"]
mod sgemm;
use sgemm::{numpy_gflops, ours_gflops};

use std::process::Command;
use std::time::Instant;

/// What one `gpt train` run reported, and how long the whole command took.
struct Run {
    steps: usize,
    ms_per_step: f64,
    val_loss: String,
    wall_s: f64,
}

/// Runs `gpt train` with `args` into a temporary directory.
fn train(args: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("gpt-bench-{}", std::process::id()));
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["train", "--out"])
        .arg(&dir)
        .args(args)
        .output()
        .expect("running gpt train");
    let wall_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "gpt train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "done: N steps in S s (M ms/step, ...) | train loss L | val loss V"
    let text = String::from_utf8_lossy(&out.stdout);
    let done = text.lines().find(|l| l.starts_with("done: ")).expect("a done line");
    let word_after = |key: &str| done.split(key).nth(1).and_then(|s| s.split_whitespace().next());
    let ms = done.split(" ms/step").next().and_then(|s| s.rsplit('(').next());
    Run {
        steps: word_after("done: ").and_then(|s| s.parse().ok()).expect("steps"),
        ms_per_step: ms.and_then(|s| s.trim().parse().ok()).expect("ms/step"),
        val_loss: word_after("val loss ").unwrap_or("n/a").to_string(),
        wall_s,
    }
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("threads: {threads}");

    for (name, args) in [
        ("default preset", &[][..]),
        ("--preset microgpt", &["--preset", "microgpt"]),
    ] {
        let r = train(args);
        println!(
            "gpt train ({name}): {:.3} ms/step over {} steps; whole run {:.2} s; val loss {}",
            r.ms_per_step, r.steps, r.wall_s, r.val_loss
        );
    }

    let shapes = [(256, 768, 3072), (2048, 2048, 2048)];
    let ours: Vec<f64> = shapes.iter().map(|&(m, k, n)| ours_gflops(m, k, n)).collect();
    let peer = numpy_gflops(&python(), &shapes, threads);
    for (i, (m, k, n)) in shapes.iter().enumerate() {
        let p = peer.as_ref().map_or("numpy not available".to_string(), |p| {
            format!("numpy (OpenBLAS) {:.0} GFLOP/s", p[i])
        });
        println!("matmul {m}x{k}x{n}: gpt {:.0} GFLOP/s | {p}", ours[i]);
    }
}
