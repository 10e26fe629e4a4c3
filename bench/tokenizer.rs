//! Tokenizer throughput: `cargo bench --bench tokenizer -- FILE...` (or
//! bench/tokenizer.sh, which also runs tiktoken on the same files).
//!
//! For each file: GPT-2 BPE encode on one thread and on all rayon threads,
//! best of several runs, in MB/s (10^6 bytes per second).

use gpt::tokenizer::Bpe;
use std::time::{Duration, Instant};

/// Best time of `f` over runs adding up to about `budget` (at least 3 runs).
fn best_of<T>(budget: Duration, mut f: impl FnMut() -> T) -> (Duration, T) {
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    loop {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed());
        runs += 1;
        if runs >= 3 && start.elapsed() >= budget {
            return (best, out);
        }
    }
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if files.is_empty() {
        eprintln!("usage: cargo bench --bench tokenizer -- FILE...");
        std::process::exit(2);
    }
    let t = Instant::now();
    let bpe = Bpe::gpt2();
    println!(
        "gpt (Rust): load built-in GPT-2 vocabulary: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let threads = rayon::current_num_threads();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable UTF-8 file");
        let mb = text.len() as f64 / 1e6;
        let budget = Duration::from_secs(3);
        let (serial, ids) = best_of(budget, || bpe.encode(&text));
        let (parallel, par_ids) = best_of(budget, || bpe.encode_parallel(&text, false));
        assert_eq!(ids, par_ids, "parallel encode differs from serial");
        println!(
            "gpt (Rust)   {path}: {mb:.1} MB, {} tokens | 1 thread {:.1} MB/s | {threads} threads {:.1} MB/s",
            ids.len(),
            mb / serial.as_secs_f64(),
            mb / parallel.as_secs_f64()
        );
    }
}
