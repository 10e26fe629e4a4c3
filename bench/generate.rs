//! GPT-2 124M inference speed: `cargo bench --bench generate`.
//!
//! On a GPT-2 124M-shaped model with random weights (made once and saved as
//! safetensors, so the peer loads the very same files), prints in one run:
//! - prefill tokens/s (512-token prompt, last logit only) and decode tokens/s
//!   (batch 1, 128 new tokens after a 16-token prompt), ours beside Hugging
//!   Face transformers on CPU (`torch.set_num_threads` = our threads);
//! - the decode's effective weight bandwidth beside the machine's read
//!   bandwidth (a multi-threaded sum over a 512 MB buffer), both from this run;
//! - time to first token and peak RSS of `gpt generate` (f32 weights).
//!
//! The peer runs with the Python in `$GPT_BENCH_PYTHON`, else
//! `~/.cache/gpt-venv/bin/python`, else `python3`; without torch it is skipped.

#[path = "common.rs"]
mod common;
use common::{python, read_bandwidth};

use gpt::model::{Gpt, GptConfig, Init};
use gpt::sample::{generate, GenerateOptions, SampleOptions};
use gpt::tensor::rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The benchmark model, created on first use.
fn model_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("gpt-bench-gpt2-124m");
    if !dir.join("model.safetensors").exists() {
        eprintln!("creating a random GPT-2 124M in {}", dir.display());
        let model = Gpt::new(GptConfig::gpt2(50257, 1024, 768, 12, 12), Init::Gpt2, &mut rng(0));
        model.save(&dir).expect("saving the bench model");
    }
    dir
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> T
where
    T: PartialOrd + Copy,
{
    let mut best = f();
    for _ in 1..reps {
        let x = f();
        if x < best {
            best = x;
        }
    }
    best
}

/// (prefill seconds, decode seconds per token) of our generator.
fn ours(model: &Gpt, prompt_len: usize, new_tokens: usize) -> (f64, f64) {
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 7919) % 50257).collect();
    let opts = GenerateOptions {
        sampling: SampleOptions::GREEDY,
        max_new_tokens: new_tokens,
        stop: Vec::new(),
    };
    let g = generate(model, &[prompt], &opts, &mut [rng(0)], |_, _| true).expect("a valid prompt");
    (g.prefill_secs, g.decode_secs / g.decode_tokens.max(1) as f64)
}

/// Largest |f32 - bf16| over the logits of a 64-token sequence.
fn max_logit_diff(a: &Gpt, b: &Gpt) -> f32 {
    let tokens: Vec<u32> = (0..64u32).map(|i| (i * 7919) % 50257).collect();
    let pos: Vec<u32> = (0..64).collect();
    let run = |m: &Gpt| {
        let mut g = gpt::autograd::Graph::inference(&m.params, Default::default());
        let l = m.forward(&mut g, &tokens, &pos, 1, None);
        g.value(l).to_vec()
    };
    run(a)
        .iter()
        .zip(&run(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn peak_rss_mb(dir: &Path) -> Option<f64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_gpt"))
        .args(["generate", "--temperature", "0", "-n", "32", "--model"])
        .arg(dir)
        .arg("Hello, I'm a language model,")
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last()?.trim().parse::<f64>().ok().map(|kb| kb / 1024.0)
}

fn main() {
    // Inside the pool, as `gpt` runs: kernels start without a hand-off from another thread.
    rayon::ThreadPoolBuilder::new()
        .build()
        .expect("thread pool")
        .install(run);
}

fn run() {
    let threads = rayon::current_num_threads();
    let dir = model_dir();
    let t = Instant::now();
    let model = Gpt::load(&dir).expect("loading the bench model");
    let load_s = t.elapsed().as_secs_f64();
    let weight_bytes = (model.params.count() * 4) as f64;
    let file_mb = std::fs::metadata(dir.join("model.safetensors"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);

    let bw = read_bandwidth();
    let prefill = best_of(3, || ours(&model, 512, 1).0);
    let ttft = best_of(3, || ours(&model, 16, 1).0);
    let decode = best_of(2, || ours(&model, 16, 128).1);
    let mut half = Gpt::load(&dir).expect("loading the bench model");
    half.params.to_bf16();
    let decode_bf16 = best_of(2, || ours(&half, 16, 128).1);
    let logit_diff = max_logit_diff(&model, &half);

    let peer = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/generate_peer.py"))
        .arg(&dir)
        .arg(threads.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let peer_f = |k: &str| peer.as_ref().and_then(|p| p[k].as_f64());

    println!("GPT-2 124M (random weights, f32), {threads} threads; model load {load_s:.2} s");
    println!(
        "machine read bandwidth: {bw:.1} GB/s (f32 decode bound: {:.1} ms/token)",
        weight_bytes / bw / 1e6
    );
    let vs = |ours: f64, peer: Option<f64>| {
        peer.map_or("transformers n/a".into(), |p| {
            format!("transformers {p:.1} ({:.2}x)", ours / p)
        })
    };
    println!(
        "prefill 512: gpt {:.0} tok/s | {}",
        512.0 / prefill,
        vs(512.0 / prefill, peer_f("prefill_tokens_per_s"))
    );
    println!(
        "decode: gpt {:.1} ms/token = {:.1} tok/s | {} | weights read at {:.1} GB/s = {:.0}% of the machine's",
        decode * 1e3,
        1.0 / decode,
        vs(1.0 / decode, peer_f("decode_s_per_token").map(|s| 1.0 / s)),
        weight_bytes / decode / 1e9,
        100.0 * weight_bytes / decode / 1e9 / bw
    );
    println!(
        "decode --dtype bf16: gpt {:.1} ms/token = {:.1} tok/s | {} | max |logit f32 - bf16| = {logit_diff:.4} \
         (transformers, weights rounded to bf16, f32 math: {})",
        decode_bf16 * 1e3,
        1.0 / decode_bf16,
        vs(1.0 / decode_bf16, peer_f("decode_s_per_token").map(|s| 1.0 / s)),
        peer_f("bf16_weights_max_logit_diff").map_or("n/a".into(), |d| format!("{d:.4}")),
    );
    println!(
        "time to first token (16-token prompt): gpt {:.0} ms | transformers {}",
        ttft * 1e3,
        peer_f("ttft_16_s").map_or("n/a".into(), |s| format!("{:.0} ms", s * 1e3))
    );
    match peak_rss_mb(&dir) {
        Some(mb) => println!(
            "peak RSS of gpt generate: {mb:.0} MB ({:.2}x the {file_mb:.0} MB weight file)",
            mb / file_mb
        ),
        None => println!("peak RSS: /usr/bin/time not available"),
    }
}
