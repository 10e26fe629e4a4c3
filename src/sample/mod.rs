//! Sampling: temperature, top-k, and generation with a KV cache.

use crate::autograd::{Graph, Workspace};
use crate::model::{Gpt, KvCache};
use crate::tensor::Rng;
use rand::RngExt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Divides the logits; 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
}

/// Draws one token id from `logits` (a scratch copy is made in `probs`).
pub fn sample_token(logits: &[f32], opts: SampleOptions, probs: &mut Vec<f32>, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |best, (i, &x)| if x > best.1 { (i, x) } else { best },
            )
            .0 as u32
    };
    if opts.temperature <= 0.0 || opts.top_k == Some(1) {
        return argmax();
    }
    probs.clear();
    probs.extend(logits.iter().map(|&x| x / opts.temperature));
    if let Some(k) = opts.top_k.filter(|&k| k > 0 && k < logits.len()) {
        let mut sorted = probs.clone();
        sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        probs
            .iter_mut()
            .filter(|p| **p < kth)
            .for_each(|p| *p = f32::NEG_INFINITY);
    }
    let max = probs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0;
    for p in probs.iter_mut() {
        *p = (*p - max).exp();
        sum += *p;
    }
    let mut u = rng.random::<f32>() * sum;
    for (i, &p) in probs.iter().enumerate() {
        u -= p;
        if u < 0.0 && p > 0.0 {
            return i as u32;
        }
    }
    argmax()
}

/// Generates `n` documents from BOS, all in one batch with a KV cache; each
/// stops at the next BOS or after `n_ctx` tokens. Returns their ids without BOS.
pub fn generate_documents(model: &Gpt, bos: u32, n: usize, opts: SampleOptions, rng: &mut Rng) -> Vec<Vec<u32>> {
    if n == 0 {
        return Vec::new();
    }
    let n_ctx = model.config.n_ctx;
    let mut cache = KvCache::new(&model.config, n, n_ctx);
    let mut ws = Workspace::default();
    let mut tokens = vec![bos; n];
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut probs = Vec::new();
    for step in 0..n_ctx {
        let pos = vec![step as u32; n];
        let mut g = Graph::inference(&model.params, ws);
        let logits = model.forward(&mut g, &tokens, &pos, n, Some(&mut cache));
        let v = model.config.vocab_size;
        for (i, row) in g.value(logits).chunks(v).enumerate() {
            if done[i] {
                continue;
            }
            let t = sample_token(row, opts, &mut probs, rng);
            if t == bos {
                done[i] = true;
            } else {
                out[i].push(t);
                tokens[i] = t;
            }
        }
        ws = g.finish();
        if done.iter().all(|&d| d) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::rng;

    #[test]
    fn greedy_top_k_and_temperature() {
        let logits = [0.0, 3.0, 1.0, 2.9];
        let mut probs = Vec::new();
        let mut r = rng(0);
        let greedy = SampleOptions {
            temperature: 0.0,
            top_k: None,
        };
        assert_eq!(sample_token(&logits, greedy, &mut probs, &mut r), 1);
        // top-2 only ever picks ids 1 or 3
        let top2 = SampleOptions {
            temperature: 1.0,
            top_k: Some(2),
        };
        let picks: Vec<u32> = (0..200)
            .map(|_| sample_token(&logits, top2, &mut probs, &mut r))
            .collect();
        assert!(picks.iter().all(|&p| p == 1 || p == 3) && picks.contains(&1) && picks.contains(&3));
        // a tiny temperature is nearly greedy; a huge one nearly uniform
        let cold = SampleOptions {
            temperature: 0.01,
            top_k: None,
        };
        assert!((0..100).all(|_| sample_token(&logits, cold, &mut probs, &mut r) == 1));
        let hot = SampleOptions {
            temperature: 100.0,
            top_k: None,
        };
        let zeros = (0..2000)
            .filter(|_| sample_token(&logits, hot, &mut probs, &mut r) == 0)
            .count();
        assert!((350..650).contains(&zeros), "{zeros}");
    }
}
