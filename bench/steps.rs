//! Shared by the training benches: timed training steps in a child process
//! (so its peak RSS is the steps' alone) and a Python peer's steps, each as
//! a [`Run`]. Each bench uses part of it.
#![allow(dead_code)]

use gpt::autograd::{Graph, Workspace};
use gpt::model::Gpt;
use gpt::tensor::linear::Precision;
use gpt::train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use std::process::Command;
use std::time::Instant;

/// Seconds of each timed step and peak RSS in MB.
pub struct Run {
    pub step_s: Vec<f64>,
    pub rss_mb: f64,
}

impl Run {
    pub fn median(&self) -> f64 {
        let mut s = self.step_s.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }

    pub fn best(&self) -> f64 {
        self.step_s.iter().copied().fold(f64::MAX, f64::min)
    }
}

/// The AdamW both sides run: betas (0.9, 0.95), eps 1e-8, weight decay 0.1.
pub const ADAMW: AdamWConfig = AdamWConfig {
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weight_decay: 0.1,
};

/// One warm-up step then `steps` timed training steps of `model` (forward,
/// backward, clipping at 1.0, AdamW at lr 3e-4) on random tokens of `b` rows
/// of `t`; prints `step_s <s>,<s>,… rss_mb <MB>` for [`ours`] to read.
pub fn child_steps(model: &mut Gpt, b: usize, t: usize, steps: usize, precision: Precision) {
    let vocab = model.config.vocab_size as u32;
    let mut r = gpt::tensor::rng(1);
    let mut tok = || {
        use rand::RngExt;
        (0..b * t).map(|_| r.random_range(0..vocab)).collect::<Vec<_>>()
    };
    let (tokens, targets) = (tok(), tok());
    let pos: Vec<u32> = (0..b * t).map(|i| (i % t) as u32).collect();
    let mut opt = AdamW::new(ADAMW, &model.params);
    let mut grads = model.params.zero_grads();
    let mut ws = Workspace::default();
    let mut times = Vec::new();
    for _ in 0..=steps {
        let start = Instant::now();
        let mut g = Graph::new(&model.params, ws);
        g.set_precision(precision);
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

/// Runs this bench's own executable with `$key=spec` (the child's orders) and reads its [`child_steps`] line.
pub fn ours(key: &str, spec: &str) -> Run {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(key, spec)
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

/// A Python peer's run: `script args…` on `threads` threads, printing one JSON
/// object with `step_s` (a list) and `peak_rss_mb`; the whole object comes
/// back beside the run. `None` (with the peer's error) when it fails.
pub fn peer(script: &str, args: &[String], threads: usize) -> Option<(Run, serde_json::Value)> {
    let out = Command::new(super::common::python())
        .arg(script)
        .args(args)
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let step_s = v["step_s"].as_array()?.iter().filter_map(|x| x.as_f64()).collect();
    let run = Run {
        step_s,
        rss_mb: v["peak_rss_mb"].as_f64()?,
    };
    Some((run, v))
}

/// `$GPT_BENCH_STEPS` timed steps, else `default`.
pub fn steps_from_env(default: usize) -> usize {
    std::env::var("GPT_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The `(B, T)` shapes of `$GPT_BENCH_SHAPES` (`4x1024,4x64`), else `default`.
pub fn shapes_from_env(default: &[(usize, usize)]) -> Vec<(usize, usize)> {
    match std::env::var("GPT_BENCH_SHAPES") {
        Ok(list) => list
            .split(',')
            .map(|bt| {
                let (b, t) = bt.split_once('x').expect("GPT_BENCH_SHAPES: BxT,...");
                (b.parse().expect("B"), t.parse().expect("T"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}
