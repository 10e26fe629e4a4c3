//! Shared by the benches: where the peer's Python is, and the machine's
//! read bandwidth. Each bench uses part of it.
#![allow(dead_code)]

use rayon::prelude::*;
use std::time::Instant;

/// The Python that runs peers: `$GPT_BENCH_PYTHON`, else
/// `~/.cache/gpt-venv/bin/python`, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("GPT_BENCH_PYTHON") {
        return p;
    }
    let venv = format!(
        "{}/.cache/gpt-venv/bin/python",
        std::env::var("HOME").unwrap_or_default()
    );
    if std::path::Path::new(&venv).exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Read bandwidth in GB/s: best of 5 multi-threaded sums over 512 MB.
pub fn read_bandwidth() -> f64 {
    // Same huge-page advice as the model's weights get, so both read memory alike.
    let mut buf: Vec<f32> = Vec::with_capacity(128 << 20);
    gpt::tensor::advise_huge_pages(buf.spare_capacity_mut());
    buf.resize(128 << 20, 1.0);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        // 16 independent partial sums per chunk: vectorised, so memory is the limit, not additions.
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0.0f32; 16];
                c.chunks_exact(16).for_each(|x| (0..16).for_each(|i| acc[i] += x[i]));
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (buf.len() * 4) as f64 / best / 1e9
}
