//! Training speed: `cargo bench --bench train`.
//!
//! Prints, from one run on this machine:
//! - ms per training step of `gpt train` (default preset and `--preset microgpt`);
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

/// Runs `gpt train` with `args` and returns the ms/step it reports.
fn train_ms_per_step(args: &[&str]) -> f64 {
    let dir = std::env::temp_dir().join(format!("gpt-bench-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["train", "--num-samples", "0", "--out"])
        .arg(&dir)
        .args(args)
        .output()
        .expect("running gpt train");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gpt train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = text
        .split(" ms/step")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .expect("ms/step in output");
    field.trim().parse().expect("a number")
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("threads: {threads}");

    let micro = train_ms_per_step(&["--preset", "microgpt"]);
    println!(
        "gpt train --preset microgpt: {micro:.3} ms/step ({:.2} s for 1000 steps)",
        micro
    );
    let default = train_ms_per_step(&["--steps", "300", "--eval-every", "0"]);
    println!("gpt train (default preset): {default:.2} ms/step (300 steps)");

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
