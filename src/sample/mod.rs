//! Sampling and generation.
//!
//! - [`sample_token`]: one token from logits, with temperature, top-k and top-p
//! - [`generate`]: batched generation with a KV cache (prompts of any lengths)
//! - [`generate_documents`]: new documents from BOS, for character models
//! - [`fit_conversation`]: a chat's prompt kept inside the context

mod chat;
pub mod completion;
pub mod engine;
mod generate;

pub use chat::fit_conversation;
pub use generate::{
    generate, generate_documents, generate_from, split_rng, working_memory, GenerateOptions, Generation,
};

use crate::tensor::Rng;
use rand::RngExt;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Divides the logits; 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (nucleus sampling).
    pub top_p: Option<f32>,
}

impl SampleOptions {
    pub const GREEDY: SampleOptions = SampleOptions {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };

    /// Checks every option is in its range (a request's or a flag's values).
    pub fn validate(&self) -> Result<(), BadOption> {
        let bad = |name, value: String, want| Err(BadOption { name, value, want });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                self.temperature.to_string(),
                "a finite number >= 0 (0 = greedy)",
            );
        }
        if let Some(0) = self.top_k {
            return bad("top_k", "0".into(), "at least 1 (leave it out to keep every token)");
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return bad("top_p", p.to_string(), "in (0, 1]");
        }
        Ok(())
    }
}

/// An option outside its range: its name as in [`SampleOptions`], the value
/// given and what it must be. Front ends map the name to their own (a flag, a JSON field).
#[derive(Clone, Debug, PartialEq)]
pub struct BadOption {
    pub name: &'static str,
    pub value: String,
    pub want: &'static str,
}

impl fmt::Display for BadOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: must be {}", self.name, self.value, self.want)
    }
}

impl std::error::Error for BadOption {}

fn argmax(xs: &[f32]) -> u32 {
    xs.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &x)| if x > best.1 { (i, x) } else { best },
        )
        .0 as u32
}

/// Draws one token id from `logits`: temperature, then top-k, then top-p
/// (Hugging Face's order). `probs` and `order` are scratch space.
pub fn sample_token(logits: &[f32], opts: SampleOptions, scratch: &mut (Vec<f32>, Vec<u32>), rng: &mut Rng) -> u32 {
    if opts.temperature <= 0.0 || opts.top_k == Some(1) {
        return argmax(logits);
    }
    let (probs, order) = scratch;
    probs.clear();
    probs.extend(logits.iter().map(|&x| x / opts.temperature));
    if let Some(k) = opts.top_k.filter(|&k| k > 0 && k < logits.len()) {
        order.clear();
        order.extend(0..logits.len() as u32);
        order.select_nth_unstable_by(k - 1, |&a, &b| probs[b as usize].total_cmp(&probs[a as usize]));
        let kth = probs[order[k - 1] as usize];
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
    if let Some(top_p) = opts.top_p.filter(|&p| p < 1.0) {
        sum = nucleus(probs, order, sum, top_p);
    }
    let mut u = rng.random::<f32>() * sum;
    for (i, &p) in probs.iter().enumerate() {
        u -= p;
        if u < 0.0 && p > 0.0 {
            return i as u32;
        }
    }
    argmax(probs)
}

/// Zeroes every weight outside the nucleus: the most likely tokens whose
/// mass first reaches `top_p` of `sum`. Returns the mass kept. Only the
/// candidates above a small threshold are sorted when they already hold
/// enough mass (the nucleus is then among them); otherwise all are.
fn nucleus(w: &mut [f32], order: &mut Vec<u32>, sum: f32, top_p: f32) -> f32 {
    let target = top_p * sum;
    for threshold in [1e-4, 0.0] {
        order.clear();
        order.extend((0..w.len() as u32).filter(|&i| w[i as usize] >= threshold));
        if order.iter().map(|&i| w[i as usize]).sum::<f32>() < target && threshold > 0.0 {
            continue;
        }
        order.sort_unstable_by(|&a, &b| w[b as usize].total_cmp(&w[a as usize]));
        let mut kept = 0.0;
        let mut cut = order.len();
        for (n, &i) in order.iter().enumerate() {
            kept += w[i as usize];
            if kept >= target {
                cut = n + 1;
                break;
            }
        }
        // Zero what is outside: the sorted candidates past the cut, and (first
        // pass) everything below the threshold, which never became a candidate.
        order[cut..].iter().for_each(|&i| w[i as usize] = 0.0);
        w.iter_mut().filter(|x| **x < threshold).for_each(|x| *x = 0.0);
        return kept;
    }
    unreachable!("the second pass keeps every token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::rng;

    fn draw(logits: &[f32], opts: SampleOptions, n: usize) -> Vec<u32> {
        let (mut scratch, mut r) = ((Vec::new(), Vec::new()), rng(0));
        (0..n)
            .map(|_| sample_token(logits, opts, &mut scratch, &mut r))
            .collect()
    }

    #[test]
    fn greedy_top_k_top_p_and_temperature() {
        let logits = [0.0, 3.0, 1.0, 2.9];
        assert_eq!(draw(&logits, SampleOptions::GREEDY, 1), [1]);
        let top2 = SampleOptions {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
        };
        let picks = draw(&logits, top2, 200);
        assert!(picks.iter().all(|&p| p == 1 || p == 3) && picks.contains(&1) && picks.contains(&3));
        // p(1) ≈ 0.47, p(3) ≈ 0.43: top-p 0.5 needs both, top-p 0.4 only the first.
        let p50 = draw(
            &logits,
            SampleOptions {
                temperature: 1.0,
                top_k: None,
                top_p: Some(0.5),
            },
            200,
        );
        assert!(p50.iter().all(|&p| p == 1 || p == 3) && p50.contains(&3));
        let p40 = draw(
            &logits,
            SampleOptions {
                temperature: 1.0,
                top_k: None,
                top_p: Some(0.4),
            },
            50,
        );
        assert!(p40.iter().all(|&p| p == 1));
        let cold = SampleOptions {
            temperature: 0.01,
            top_k: None,
            top_p: None,
        };
        assert!(draw(&logits, cold, 100).iter().all(|&p| p == 1));
        let hot = SampleOptions {
            temperature: 100.0,
            top_k: None,
            top_p: None,
        };
        let zeros = draw(&logits, hot, 2000).iter().filter(|&&p| p == 0).count();
        assert!((350..650).contains(&zeros), "{zeros}");
    }

    #[test]
    fn nucleus_over_a_long_tail_is_exact() {
        // One token with half the mass and 10,000 tiny ones: the fast path
        // must not stop at the head when p asks for part of the tail.
        let mut w = vec![1e-5f32; 10_001];
        w[7] = 0.1;
        let sum: f32 = w.iter().sum();
        let kept = nucleus(&mut w, &mut Vec::new(), sum, 0.75);
        let n_kept = w.iter().filter(|&&x| x > 0.0).count();
        assert!(w[7] > 0.0 && kept >= 0.75 * sum && n_kept > 1000, "{n_kept} kept");
    }
}
