//! Shared by the training benches: the machine's sgemm speed, ours beside numpy's.

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

/// GFLOP/s of our matmul at `m×k×n`.
pub fn ours_gflops(m: usize, k: usize, n: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0; m * n];
    let s = best_secs(5, || matmul(&mut c, &a, false, &b, false, m, k, n, false));
    2.0 * (m * k * n) as f64 / s / 1e9
}

/// GFLOP/s of numpy's matmul (OpenBLAS) at each shape, or `None` without numpy.
pub fn numpy_gflops(python: &str, shapes: &[(usize, usize, usize)], threads: usize) -> Option<Vec<f64>> {
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
    let out = Command::new(python)
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
