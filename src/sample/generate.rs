//! Batched generation with a KV cache.
//!
//! Prompts of different lengths share one batch: each is left-padded to the
//! longest, and since every token carries its own position, the padding is
//! invisible to attention. The prompt is run once (prefill, logits of the last
//! token only); then each step feeds one token per sequence.

use super::{sample_token, SampleOptions};
use crate::autograd::{Graph, Workspace};
use crate::model::{Gpt, KvCache};
use crate::tensor::Rng;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub sampling: SampleOptions,
    /// At most this many new tokens per sequence (fewer if the context fills up).
    pub max_new_tokens: usize,
    /// A token that ends a sequence (not included in the output).
    pub eos: Option<u32>,
}

/// What [`generate`] produced, and how long it took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generation {
    /// New tokens of each sequence (without the prompt and the EOS).
    pub tokens: Vec<Vec<u32>>,
    /// Whether each sequence ended by EOS or by the callback (not by length).
    pub stopped: Vec<bool>,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Tokens run through the model while decoding (batch × steps).
    pub decode_tokens: usize,
}

/// Continues every prompt (each non-empty, all shorter than `n_ctx`). After
/// each new token, `on_token(sequence, token)` is called; returning `false`
/// ends that sequence (e.g. a stop string).
pub fn generate(
    model: &Gpt,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    rng: &mut Rng,
    mut on_token: impl FnMut(usize, u32) -> bool,
) -> Generation {
    let b = prompts.len();
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    assert!(
        prompts.iter().all(|p| !p.is_empty()),
        "every prompt needs at least one token"
    );
    assert!(
        t0 < model.config.n_ctx || opts.max_new_tokens == 0,
        "prompt fills the whole context"
    );
    let mut out = Generation {
        tokens: vec![Vec::new(); b],
        stopped: vec![false; b],
        ..Generation::default()
    };
    if b == 0 || opts.max_new_tokens == 0 {
        return out;
    }
    let capacity = model.config.n_ctx.min(t0 + opts.max_new_tokens);
    let mut cache = KvCache::new(&model.config, b, capacity);
    let mut ws = Workspace::default();
    let mut scratch = (Vec::new(), Vec::new());
    let v = model.config.vocab_size;

    // Prefill: left-padded prompts (padding at position 0, attending only to itself).
    let (mut tokens, mut pos) = (Vec::with_capacity(b * t0), Vec::with_capacity(b * t0));
    for p in prompts {
        let pad = t0 - p.len();
        tokens.extend(std::iter::repeat_n(p[0], pad).chain(p.iter().copied()));
        pos.extend(std::iter::repeat_n(0, pad).chain(0..p.len() as u32));
    }
    let last_rows: Vec<usize> = (0..b).map(|i| i * t0 + t0 - 1).collect();
    let mut next_pos: Vec<u32> = prompts.iter().map(|p| p.len() as u32).collect();
    let mut active = vec![true; b];

    let start = Instant::now();
    let mut first = true;
    loop {
        let mut g = Graph::inference(&model.params, ws);
        let h = model.hidden(&mut g, &tokens, &pos, b, Some(&mut cache));
        let h = if first { g.rows(h, &last_rows) } else { h };
        let logits = model.logits(&mut g, h);
        let logits = g.value(logits);
        tokens.truncate(b);
        pos.truncate(b);
        for i in 0..b {
            let row = &logits[i * v..(i + 1) * v];
            let mut t = 0;
            if active[i] {
                t = sample_token(row, opts.sampling, &mut scratch, rng);
                if Some(t) == opts.eos {
                    (active[i], out.stopped[i]) = (false, true);
                } else {
                    out.tokens[i].push(t);
                    if !on_token(i, t) {
                        (active[i], out.stopped[i]) = (false, true);
                    } else if out.tokens[i].len() == opts.max_new_tokens {
                        active[i] = false;
                    }
                }
            }
            tokens[i] = t;
            pos[i] = next_pos[i];
            next_pos[i] += 1;
        }
        ws = g.finish();
        if first {
            out.prefill_secs = start.elapsed().as_secs_f64();
            first = false;
        } else {
            out.decode_tokens += b;
        }
        if !active.contains(&true) || cache.len() == capacity {
            break;
        }
    }
    out.decode_secs = start.elapsed().as_secs_f64() - out.prefill_secs;
    out
}

/// Generates `n` documents from BOS (character models): each stops at the
/// next BOS or when the context is full. Returns their ids without BOS.
pub fn generate_documents(model: &Gpt, bos: u32, n: usize, sampling: SampleOptions, rng: &mut Rng) -> Vec<Vec<u32>> {
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: model.config.n_ctx - 1,
        eos: Some(bos),
    };
    // Batches of at most 256 sequences keep the KV cache small.
    let mut docs = Vec::with_capacity(n);
    for start in (0..n).step_by(256) {
        let prompts = vec![vec![bos]; (n - start).min(256)];
        docs.extend(generate(model, &prompts, &opts, rng, |_, _| true).tokens);
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    /// Greedy continuation by re-running the whole sequence each step (no cache).
    fn greedy_reference(model: &Gpt, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut seq = prompt.to_vec();
        for _ in 0..n {
            let mut g = Graph::inference(&model.params, Workspace::default());
            let pos: Vec<u32> = (0..seq.len() as u32).collect();
            let logits = model.forward(&mut g, &seq, &pos, 1, None);
            let v = model.config.vocab_size;
            seq.push(super::super::argmax(&g.value(logits)[(seq.len() - 1) * v..]));
        }
        seq[prompt.len()..].to_vec()
    }

    #[test]
    fn batched_left_padded_generation_matches_one_by_one_without_cache() {
        let model = Gpt::new(GptConfig::gpt2(50, 24, 16, 2, 2), Init::Normal(0.5), &mut rng(3));
        let prompts = vec![vec![1, 2, 3, 4, 5, 6, 7], vec![9], vec![4, 4, 8]];
        let opts = GenerateOptions {
            sampling: SampleOptions::GREEDY,
            max_new_tokens: 10,
            eos: None,
        };
        let got = generate(&model, &prompts, &opts, &mut rng(0), |_, _| true);
        for (p, toks) in prompts.iter().zip(&got.tokens) {
            assert_eq!(toks, &greedy_reference(&model, p, 10), "prompt {p:?}");
        }
    }

    #[test]
    fn stops_at_eos_callback_length_and_context() {
        let model = Gpt::new(GptConfig::gpt2(8, 6, 8, 2, 1), Init::Normal(0.5), &mut rng(1));
        let greedy = GenerateOptions {
            sampling: SampleOptions::GREEDY,
            max_new_tokens: 100,
            eos: None,
        };
        // A context of 6 holds the 2-token prompt and 4 fed tokens; the 5th new
        // token is predicted from that full context and needs no slot.
        let g = generate(&model, &[vec![1, 2]], &greedy, &mut rng(0), |_, _| true);
        assert_eq!((g.tokens[0].len(), g.stopped[0]), (5, false));
        assert_eq!(
            g.tokens[0],
            greedy_reference(&model, &[1, 2], 4)
                .into_iter()
                .chain([g.tokens[0][4]])
                .collect::<Vec<_>>()
        );
        // The callback ends a sequence after its second token.
        let mut seen = 0;
        let g = generate(&model, &[vec![1, 2]], &greedy, &mut rng(0), |_, _| {
            seen += 1;
            seen < 2
        });
        assert_eq!((g.tokens[0].len(), g.stopped[0]), (2, true));
        // EOS = the first greedy token: nothing is emitted.
        let first = greedy_reference(&model, &[1, 2], 1)[0];
        let eos = GenerateOptions {
            eos: Some(first),
            ..greedy
        };
        let g = generate(&model, &[vec![1, 2]], &eos, &mut rng(0), |_, _| true);
        assert_eq!((g.tokens[0].len(), g.stopped[0]), (0, true));
    }
}
