//! Training speed at GPT-2 124M shape: `cargo bench --bench train_gpt2`.
//!
//! GPT-2 124M (12 layers, 768 wide, 12 heads, vocab 50257, n_ctx 1024, tied
//! `wte`), random init, f32, dropout 0, AdamW with gradient clipping, at
//! B=4 and T=64, 256 and 1024 (GPT-2's full context, where attention's
//! memory shows). Prints, from one run on this machine:
//! - ms per training step (forward + backward + clipping + AdamW: the step of
//!   `gpt train`, driven through the library, without data loading) and
//!   tokens/s, ours beside PyTorch CPU (Hugging Face transformers with
//!   `scaled_dot_product_attention`, `torch.set_num_threads` = our threads,
//!   `bench/train_peer.py`);
//! - the achieved GFLOP/s of both, counting `6·N·tokens` (N: parameters less
//!   `wpe`, which does no matmul) plus attention's `12·L·C·T` per token
//!   (nanoGPT's estimate), beside the machine's sgemm ceiling: the best of our
//!   matmul, numpy's (OpenBLAS) and torch's (MKL) at 2048³;
//! - the peak RSS of each (ours: VmHWM of a child process that runs only the
//!   steps; PyTorch's: getrusage in the peer).
//!
//! Each shape runs a warm-up step and then `$GPT_BENCH_STEPS` (default 3)
//! timed steps; the median is reported, the best beside it.
//! `$GPT_BENCH_SHAPES` (e.g. `4x1024`) picks the shapes. The peer runs
//! with the Python in `$GPT_BENCH_PYTHON`, else `~/.cache/gpt-venv/bin/python`,
//! else `python3`; without torch it prints "peer not available".

#[path = "common.rs"]
mod common;
use common::python;
#[path = "sgemm.rs"]
mod sgemm;
use sgemm::{numpy_gflops, ours_gflops};

#[path = "steps.rs"]
mod steps;
use steps::{child_steps, ours, peer, Run};

use gpt::model::{Gpt, GptConfig, Init};
use gpt::tensor::rng;
use std::process::Command;

const CHILD: &str = "GPT_BENCH_TRAIN_CHILD";
const SHAPES: [(usize, usize); 3] = [(4, 64), (4, 256), (4, 1024)];

fn config() -> GptConfig {
    GptConfig::gpt2(50257, 1024, 768, 12, 12)
}

fn peer_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/bench/train_peer.py").to_string()
}

/// torch.mm's GFLOP/s at n³, or `None` without torch.
fn torch_gflops(n: usize, threads: usize) -> Option<f64> {
    let out = Command::new(python())
        .arg(peer_script())
        .args(["sgemm".to_string(), n.to_string(), threads.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["gflops"].as_f64()
}

/// Flops of one step: `6·N` per token plus attention's `12·L·C·T` per token.
fn step_flops(b: usize, t: usize) -> f64 {
    let c = config();
    let model = Gpt::new(c.clone(), Init::Gpt2, &mut rng(0));
    let n = (model.params.count() - c.n_ctx * c.n_embd) as f64;
    let attn = 12.0 * (c.n_layer * c.n_embd * t) as f64;
    (6.0 * n + attn) * (b * t) as f64
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let v: Vec<usize> = spec.split(',').map(|x| x.parse().expect("B,T,steps")).collect();
        let mut model = Gpt::new(config(), Init::Gpt2, &mut rng(0));
        child_steps(&mut model, v[0], v[1], v[2], Default::default());
        return;
    }
    let threads = rayon::current_num_threads();
    let steps = steps::steps_from_env(3);
    println!(
        "threads: {threads}, GPT-2 124M (random init, f32, dropout 0, AdamW), {steps} timed steps after 1 warm-up"
    );

    let n = 2048;
    let ours_mm = ours_gflops(n, n, n);
    let numpy_mm = numpy_gflops(&python(), &[(n, n, n)], threads).map(|v| v[0]);
    let torch_mm = torch_gflops(n, threads);
    let fmt = |x: Option<f64>| x.map_or("not available".to_string(), |x| format!("{x:.0} GFLOP/s"));
    let ceiling = [Some(ours_mm), numpy_mm, torch_mm]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
    println!(
        "sgemm {n}³: gpt {ours_mm:.0} GFLOP/s | numpy (OpenBLAS) {} | torch (MKL) {} => ceiling {ceiling:.0} GFLOP/s",
        fmt(numpy_mm),
        fmt(torch_mm)
    );

    let shapes = steps::shapes_from_env(&SHAPES);
    for (b, t) in shapes {
        let flops = step_flops(b, t);
        let tokens = (b * t) as f64;
        let line = |name: &str, r: &Run| {
            let s = r.median();
            let gflops = flops / s / 1e9;
            format!(
                "{name} {:.0} ms/step (best {:.0}), {:.0} tok/s, {gflops:.0} GFLOP/s ({:.0}% of sgemm), peak RSS {:.0} MB",
                s * 1e3,
                r.best() * 1e3,
                tokens / s,
                100.0 * gflops / ceiling,
                r.rss_mb
            )
        };
        let o = ours(CHILD, &format!("{b},{t},{steps}"));
        println!("B={b} T={t} ({:.1} GFLOP/step):", flops / 1e9);
        println!("  {}", line("gpt    ", &o));
        match peer(&peer_script(), &[b, t, steps, threads].map(|x| x.to_string()), threads) {
            Some((p, _)) => {
                println!("  {}", line("PyTorch", &p));
                println!(
                    "  gpt/PyTorch: {:.2}x tokens/s, {:.2}x peak RSS",
                    p.median() / o.median(),
                    o.rss_mb / p.rss_mb
                );
            }
            None => println!("  PyTorch: peer not available"),
        }
    }
}
