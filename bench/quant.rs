//! Quantized decoding speed: `cargo bench --bench quant`.
//!
//! The weight matrices of a SmolLM2-135M-shaped model (576 wide, 9 heads of
//! 64 on 3 key/value heads, a SwiGLU MLP of 1536, 30 layers, a 49152-token
//! `lm_head`), random, each held as Q4_1, Q8_0, bf16 and f32. One
//! "token-equivalent" is every matrix applied once to one row (batch 1, as
//! decoding does). Prints, for each format, ms per token-equivalent and the
//! GB/s of weight bytes that streams, beside the machine's read bandwidth
//! (a multi-threaded sum over 512 MB) measured in the same run, before and
//! after: decoding at batch 1 reads every weight once, so that is its bound.
//! The formats take turns, a token each, for 20 rounds (after one to warm
//! up), so load from other processes falls on all alike.
//!
//! `GPT_BENCH_ROWS=16` applies every matrix to that many rows at once instead
//! (a decode step of 16 sequences): ms per step, and the weight bytes read once per step.

#[path = "common.rs"]
mod common;
use common::read_bandwidth;

use gpt::tensor::linear::{linear_forward, scratch_len, LinearShape};
use gpt::tensor::quant::{prompt_precision, qmatmul_scratch_len, qmatmul_with, Isa, Kind, QMatrix};
use gpt::tensor::{advise_huge_pages, Bf16, WeightElem};
use rayon::prelude::*;
use std::time::Instant;

const C: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;
const LAYERS: usize = 30;
const VOCAB: usize = 49152;

/// `(rows = out, cols = in)` of every matrix, in the order a token meets them.
fn shapes() -> Vec<(usize, usize)> {
    let layer = [(C, C), (KV, C), (KV, C), (C, C), (FFN, C), (FFN, C), (C, FFN)];
    let mut s: Vec<_> = (0..LAYERS).flat_map(|_| layer).collect();
    s.push((VOCAB, C));
    s
}

/// Uniform values in [-0.1, 0.1), from a hash of the index.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    advise_huge_pages(v.spare_capacity_mut());
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut z = (i as u64 ^ seed.wrapping_mul(0x9E3779B97F4A7C15)).wrapping_add(0x9E3779B97F4A7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect_into_vec(&mut v);
    v
}

/// One format's matrices and how to apply one.
enum Weights {
    Quant(Vec<QMatrix>, Isa),
    F32(Vec<Vec<f32>>),
    Bf16(Vec<Vec<Bf16>>),
}

impl Weights {
    fn bytes(&self) -> usize {
        match self {
            Weights::Quant(m, _) => m.iter().map(|m| m.bytes().len()).sum(),
            Weights::F32(m) => m.iter().map(|m| m.len() * 4).sum(),
            Weights::Bf16(m) => m.iter().map(|m| m.len() * 2).sum(),
        }
    }

    /// Every matrix once on `n` rows: seconds.
    fn token(&self, x: &[f32], n: usize, out: &mut [f32], scratch: &mut Vec<f32>) -> f64 {
        let t = Instant::now();
        for (i, &(rows, cols)) in shapes().iter().enumerate() {
            let (x, out) = (&x[..n * cols], &mut out[..n * rows]);
            match self {
                Weights::Quant(m, isa) => {
                    scratch.resize(qmatmul_scratch_len(&m[i], n), 0.0);
                    qmatmul_with(*isa, out, x, n, &m[i], prompt_precision(), scratch);
                }
                Weights::F32(m) => dense(out, x, n, &m[i], rows, cols, scratch),
                Weights::Bf16(m) => dense(out, x, n, &m[i], rows, cols, scratch),
            }
        }
        t.elapsed().as_secs_f64()
    }
}

fn dense<W: WeightElem>(
    out: &mut [f32],
    x: &[f32],
    n: usize,
    w: &[W],
    rows: usize,
    cols: usize,
    scratch: &mut Vec<f32>,
) {
    let s = LinearShape {
        n,
        d_in: cols,
        d_out: rows,
        w_t: true,
        precision: Default::default(),
    };
    scratch.resize(scratch_len::<W>(s), 0.0);
    linear_forward(out, x, w, None, s, scratch);
}

fn main() {
    let threads = rayon::current_num_threads();
    let n: usize = std::env::var("GPT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    println!(
        "SmolLM2-135M-shaped matrices ({LAYERS} layers of 576 wide, ffn {FFN}, lm_head {VOCAB} x {C}), batch {n}, \
         {threads} threads, kernels {:?}",
        Isa::best()
    );
    let bw_before = read_bandwidth();
    let dense_f32: Vec<Vec<f32>> = shapes()
        .iter()
        .enumerate()
        .map(|(i, &(r, c))| random(r * c, i as u64))
        .collect();
    let quant = |kind| -> Vec<QMatrix> {
        dense_f32
            .iter()
            .zip(shapes())
            .map(|(w, (r, c))| QMatrix::quantize(kind, w, r, c).unwrap())
            .collect()
    };
    let formats = [
        ("Q4_1", Weights::Quant(quant(Kind::Q4_1), Isa::best())),
        ("Q4_1 scalar", Weights::Quant(quant(Kind::Q4_1), Isa::Scalar)),
        ("Q8_0", Weights::Quant(quant(Kind::Q8_0), Isa::best())),
        ("Q4_0", Weights::Quant(quant(Kind::Q4_0), Isa::best())),
        (
            "bf16",
            Weights::Bf16(
                dense_f32
                    .iter()
                    .map(|w| w.iter().map(|&v| Bf16::from_f32(v)).collect())
                    .collect(),
            ),
        ),
        ("f32", Weights::F32(dense_f32.clone())),
    ];
    drop(dense_f32);
    let x = random(n * FFN, 99);
    let mut out = vec![0.0; n * VOCAB];
    let mut scratch = Vec::new();
    // Rounds of one token per format in turn, so that load from elsewhere
    // falls on every format alike; best and median over the rounds.
    let mut times = vec![Vec::new(); formats.len()];
    for round in 0..21 {
        for ((_, w), t) in formats.iter().zip(&mut times) {
            let s = w.token(&x, n, &mut out, &mut scratch);
            if round > 0 {
                t.push(s); // round 0 warms up: pages, threads
            }
        }
    }
    let rows: Vec<_> = formats
        .iter()
        .zip(&mut times)
        .map(|((name, w), t)| {
            t.sort_by(f64::total_cmp);
            (name, w.bytes(), t[0], t[t.len() / 2])
        })
        .collect();
    let bw_after = read_bandwidth();
    println!("machine read bandwidth: {bw_before:.1} GB/s before, {bw_after:.1} GB/s after");
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>8} {:>9}",
        "format", "MB", "best ms", "median ms", "GB/s", "% of read"
    );
    let bw = bw_before.max(bw_after);
    for (name, bytes, best, median) in rows {
        let gbs = bytes as f64 / best / 1e9;
        println!(
            "{name:<12} {:>9.1} {:>10.2} {:>10.2} {:>8.1} {:>8.0}%",
            bytes as f64 / 1e6,
            best * 1e3,
            median * 1e3,
            gbs,
            100.0 * gbs / bw
        );
    }
}
