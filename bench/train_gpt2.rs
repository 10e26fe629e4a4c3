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

use gpt::autograd::{Graph, Workspace};
use gpt::model::{Gpt, GptConfig, Init};
use gpt::tensor::rng;
use gpt::train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use std::process::Command;
use std::time::Instant;

const CHILD: &str = "GPT_BENCH_TRAIN_CHILD";
const SHAPES: [(usize, usize); 3] = [(4, 64), (4, 256), (4, 1024)];

fn config() -> GptConfig {
    GptConfig::gpt2(50257, 1024, 768, 12, 12)
}

/// One shape's result: seconds of each timed step and peak RSS in MB.
struct Run {
    step_s: Vec<f64>,
    rss_mb: f64,
}

impl Run {
    fn median(&self) -> f64 {
        let mut s = self.step_s.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }

    fn best(&self) -> f64 {
        self.step_s.iter().copied().fold(f64::MAX, f64::min)
    }
}

/// In the child process: `steps` timed training steps after a warm-up, then
/// one line `step_s <s>,<s>,… rss_mb <MB>` on stdout.
fn child(b: usize, t: usize, steps: usize) {
    let mut model = Gpt::new(config(), Init::Gpt2, &mut rng(0));
    let mut r = rng(1);
    let mut tok = || {
        use rand::RngExt;
        (0..b * t).map(|_| r.random_range(0..50257u32)).collect::<Vec<_>>()
    };
    let (tokens, targets) = (tok(), tok());
    let pos: Vec<u32> = (0..b * t).map(|i| (i % t) as u32).collect();
    let adamw = AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(adamw, &model.params);
    let mut grads = model.params.zero_grads();
    let mut ws = Workspace::default();
    let mut times = Vec::new();
    for _ in 0..=steps {
        let start = Instant::now();
        let mut g = Graph::new(&model.params, ws);
        let logits = model.forward(&mut g, &tokens, &pos, b, None);
        let loss = g.cross_entropy(logits, &targets);
        assert!(g.value(loss)[0].is_finite());
        grads.zero();
        g.backward(loss, &mut grads);
        ws = g.finish();
        clip_grad_norm(&mut grads, 1.0);
        opt.step(&mut model.params, &grads, 3e-4);
        times.push(start.elapsed().as_secs_f64());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    let list: Vec<String> = times[1..].iter().map(|s| s.to_string()).collect();
    println!("step_s {} rss_mb {}", list.join(","), hwm_kb / 1024.0);
}

/// Runs our steps for one shape in a child process (so its peak RSS is the step's alone).
fn ours(b: usize, t: usize, steps: usize) -> Run {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD, format!("{b},{t},{steps}"))
        .output()
        .expect("running the bench child");
    assert!(
        out.status.success(),
        "bench child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let mut next_after = |key: &str| {
        words.find(|w| *w == key).expect(key);
        words.next().expect("a value").to_string()
    };
    let step_s = next_after("step_s").split(',').map(|s| s.parse().unwrap()).collect();
    let rss_mb = next_after("rss_mb").parse().unwrap();
    Run { step_s, rss_mb }
}

fn peer_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/bench/train_peer.py").to_string()
}

/// PyTorch's steps for one shape, or `None` without torch.
fn peer(b: usize, t: usize, steps: usize, threads: usize) -> Option<Run> {
    let out = Command::new(python())
        .arg(peer_script())
        .args([b, t, steps, threads].map(|x| x.to_string()))
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let step_s = v["step_s"].as_array()?.iter().filter_map(|x| x.as_f64()).collect();
    Some(Run {
        step_s,
        rss_mb: v["peak_rss_mb"].as_f64()?,
    })
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
        child(v[0], v[1], v[2]);
        return;
    }
    let threads = rayon::current_num_threads();
    let steps: usize = std::env::var("GPT_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
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

    // `GPT_BENCH_SHAPES=4x1024,4x64` runs only those shapes.
    let shapes: Vec<(usize, usize)> = match std::env::var("GPT_BENCH_SHAPES") {
        Ok(list) => list
            .split(',')
            .map(|bt| {
                let (b, t) = bt.split_once('x').expect("GPT_BENCH_SHAPES: BxT,...");
                (b.parse().expect("B"), t.parse().expect("T"))
            })
            .collect(),
        Err(_) => SHAPES.to_vec(),
    };
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
        let o = ours(b, t, steps);
        println!("B={b} T={t} ({:.1} GFLOP/step):", flops / 1e9);
        println!("  {}", line("gpt    ", &o));
        match peer(b, t, steps, threads) {
            Some(p) => {
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
