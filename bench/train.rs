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

use gpt::tensor::matmul::matmul;
use std::process::Command;
use std::time::{Duration, Instant};

/// Best seconds per call of `f` over at least `reps` calls and about a second.
fn best_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let (start, mut best, mut n) = (Instant::now(), f64::MAX, 0);
    while n < reps || start.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

fn ours_gflops(m: usize, k: usize, n: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0; m * n];
    let s = best_secs(5, || matmul(&mut c, &a, false, &b, false, m, k, n, false));
    2.0 * (m * k * n) as f64 / s / 1e9
}

fn numpy_gflops(shapes: &[(usize, usize, usize)], threads: usize) -> Option<Vec<f64>> {
    let script = r#"
import sys, time, numpy as np
for spec in sys.argv[1:]:
    m, k, n = map(int, spec.split("x"))
    a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
    a @ b
    best, t0, reps = 1e9, time.perf_counter(), 0
    while reps < 5 or time.perf_counter() - t0 < 1.0:
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t); reps += 1
    print(2 * m * k * n / best / 1e9)
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(shapes.iter().map(|(m, k, n)| format!("{m}x{k}x{n}")))
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .map(|l| l.trim().parse().ok())
        .collect()
}

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
    let peer = numpy_gflops(&shapes, threads);
    for (i, (m, k, n)) in shapes.iter().enumerate() {
        let p = peer.as_ref().map_or("numpy not available".to_string(), |p| {
            format!("numpy (OpenBLAS) {:.0} GFLOP/s", p[i])
        });
        println!("matmul {m}x{k}x{n}: gpt {:.0} GFLOP/s | {p}", ours[i]);
    }
}
