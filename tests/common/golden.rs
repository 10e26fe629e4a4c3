//! What the golden tests against `transformers` share: reference logits,
//! full-forward and KV-cache greedy decoding, and comparisons.

use gpt::autograd::{Graph, Workspace};
use gpt::model::{Gpt, KvCache};
use gpt::train::optim::AdamWConfig;
use gpt::train::schedule::{Decay, Schedule};
use gpt::train::TrainOptions;
use serde::Deserialize;
use std::path::Path;

/// A greedy continuation of one prompt, as `transformers`' `generate` made it.
#[derive(Deserialize)]
pub struct Greedy {
    pub prompt: usize,
    pub tokens: Vec<u32>,
}

pub fn load(dir: &Path) -> Gpt {
    Gpt::load(dir).unwrap_or_else(|e| panic!("loading {}: {e:#}", dir.display()))
}

/// Reference logits of every position of each prompt (a float32 LE file, prompts concatenated), one `Vec` per prompt.
pub fn reference_logits(path: &Path, prompts: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let v = all.len() / prompts.iter().map(Vec::len).sum::<usize>();
    let mut rest = all.as_slice();
    prompts
        .iter()
        .map(|p| {
            let (head, tail) = rest.split_at(p.len() * v);
            rest = tail;
            head.to_vec()
        })
        .collect()
}

/// Logits of every position of `tokens` (one sequence), full forward.
pub fn full_logits(model: &Gpt, tokens: &[u32]) -> Vec<f32> {
    let pos: Vec<u32> = (0..tokens.len() as u32).collect();
    let mut g = Graph::inference(&model.params, Workspace::default());
    let logits = model.forward(&mut g, tokens, &pos, 1, None);
    g.value(logits).to_vec()
}

/// The largest difference of the full forward's logits from `want` over all prompts; fails above `tol`.
pub fn check_logits(model: &Gpt, prompts: &[Vec<u32>], want: &[Vec<f32>], tol: f32, what: &str) -> f32 {
    let mut worst = 0.0f32;
    for (prompt, want) in prompts.iter().zip(want) {
        let diff = max_abs_diff(&full_logits(model, prompt), want);
        assert!(
            diff <= tol,
            "{what}: prompt of {} tokens: max abs diff {diff}",
            prompt.len()
        );
        worst = worst.max(diff);
    }
    worst
}

/// Greedy decoding with a KV cache gives the reference continuations token
/// for token, and each cached step the logits of a full forward over the sequence.
pub fn check_greedy(model: &Gpt, prompts: &[Vec<u32>], cases: &[Greedy], what: &str) {
    assert!(
        cases.len() >= 3,
        "{what}: the golden file should have several continuations"
    );
    for case in cases {
        let prompt = &prompts[case.prompt];
        let (tokens, steps) = greedy(model, prompt, case.tokens.len());
        assert_eq!(tokens, case.tokens, "{what}: prompt of {} tokens", prompt.len());
        let seq = [prompt.as_slice(), &tokens].concat();
        let full = full_logits(model, &seq);
        let v = model.config.vocab_size;
        for (i, step) in steps.iter().enumerate() {
            let row = &full[(prompt.len() - 1 + i) * v..][..v];
            assert!(max_abs_diff(step, row) <= 1e-5, "{what}: cached step {i}");
        }
    }
}

/// Same config and bit-identical tensors, or a message naming the first tensor that differs.
pub fn assert_same_weights(a: &Gpt, b: &Gpt, what: &str) {
    assert_eq!(a.config, b.config, "{what}");
    assert_eq!(a.params.names, b.params.names, "{what}");
    for ((name, x), y) in a.params.names.iter().zip(&a.params.tensors).zip(&b.params.tensors) {
        assert_eq!(x.shape, y.shape, "{what}: {name}");
        assert!(
            x.data == y.data,
            "{what}: {name} differs by up to {}",
            max_abs_diff(&x.data, &y.data)
        );
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding with a KV cache: the prompt in one forward, then one
/// token per step. Returns the new tokens and each step's logits.
fn greedy(model: &Gpt, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let v = model.config.vocab_size;
    let mut cache = KvCache::new(&model.config, 1, prompt.len() + n);
    let mut ws = Workspace::default();
    let (mut input, mut seq) = (prompt.to_vec(), prompt.to_vec());
    let mut steps = Vec::new();
    for _ in 0..n {
        let pos: Vec<u32> = (seq.len() - input.len()..seq.len()).map(|p| p as u32).collect();
        let mut g = Graph::inference(&model.params, ws);
        let logits = model.forward(&mut g, &input, &pos, 1, Some(&mut cache));
        let last = g.value(logits)[(input.len() - 1) * v..].to_vec();
        ws = g.finish();
        let next = argmax(&last);
        steps.push(last);
        seq.push(next);
        input = vec![next];
    }
    (seq[prompt.len()..].to_vec(), steps)
}

/// The AdamW settings a training reference ran with (held learning rate).
#[derive(Deserialize)]
pub struct Optimizer {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Optimizer {
    /// Quiet, seed-0, dropout-free options for `steps` steps at this
    /// optimizer's constant learning rate, as the references train.
    pub fn options(&self, steps: usize, batch_size: usize, n_ctx: usize, grad_accum: usize) -> TrainOptions {
        TrainOptions {
            steps,
            stop_at: None,
            batch_size,
            n_ctx,
            grad_accum,
            pack: false,
            schedule: Schedule {
                lr: self.lr,
                min_lr: self.lr,
                warmup: 0,
                steps,
                decay: Decay::Constant,
            },
            adamw: AdamWConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
            },
            grad_clip: None,
            dropout: 0.0,
            precision: Default::default(),
            eval_every: 0,
            save_every: 0,
            sample_every: 0,
            seed: 0,
            progress: gpt::train::progress::Progress::Quiet,
            zero: false,
            kill_rank_at: None,
            nan_rank_at: None,
        }
    }
}
