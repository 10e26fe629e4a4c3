//! Batched generation with a KV cache.
//!
//! Prompts of different lengths share one batch: each is left-padded to the
//! longest, and since every token carries its own position, the padding is
//! invisible to attention. The prompt is run once (prefill, logits of the last
//! token only); then each step feeds one token per sequence.

use super::{sample_token, SampleOptions};
use crate::autograd::{Graph, Workspace};
use crate::model::{Gpt, GptConfig, KvCache};
use crate::tensor::Rng;
use anyhow::{ensure, Context, Result};
use rand::Rng as _;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub sampling: SampleOptions,
    /// At most this many new tokens per sequence (fewer if the context fills up).
    pub max_new_tokens: usize,
    /// Tokens that end a sequence (not included in the output): the model's
    /// end of sequence and end of turn.
    pub stop: Vec<u32>,
}

/// What [`generate`] produced, and how long it took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generation {
    /// New tokens of each sequence (without the prompt and the EOS).
    pub tokens: Vec<Vec<u32>>,
    /// Whether each sequence ended by a stop token or by the callback (not by length).
    pub stopped: Vec<bool>,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Tokens run through the model while decoding (batch × steps).
    pub decode_tokens: usize,
}

/// Continues every prompt, sequence `i` drawing its tokens from `rngs[i]`
/// alone: a seeded sequence comes out the same whatever else shares its
/// batch. After each new token, `on_token(sequence, token)` is called;
/// returning `false` ends that sequence (e.g. a stop string).
///
/// The checked entry point for request data: before any work it errors on
/// sampling options out of range, a generator count other than the prompt
/// count, an empty prompt, a token outside the
/// vocabulary, a prompt that leaves no room for a new token in the context,
/// or a batch whose buffers could not even be addressed. How much memory a
/// batch may take is the front end's call ([`working_memory`]).
pub fn generate(
    model: &Gpt,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    rngs: &mut [Rng],
    mut on_token: impl FnMut(usize, u32) -> bool,
) -> Result<Generation> {
    check_request(model, prompts, opts)?;
    ensure!(
        rngs.len() == prompts.len(),
        "{} random generators for {} prompts: give one per prompt",
        rngs.len(),
        prompts.len()
    );
    let b = prompts.len();
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Generation {
        tokens: vec![Vec::new(); b],
        stopped: vec![false; b],
        ..Generation::default()
    };
    if b == 0 || opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let capacity = model.config.n_ctx.min(t0.saturating_add(opts.max_new_tokens));
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
                t = sample_token(row, opts.sampling, &mut scratch, &mut rngs[i]);
                if opts.stop.contains(&t) {
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
            if out.decode_tokens == b {
                // The first decoding step has dropped the prompt-sized buffers
                // from the workspace: hand their pages back rather than hold a
                // long prompt's scratch through the whole generation.
                crate::tensor::return_freed_memory();
            }
        }
        if !active.contains(&true) || cache.len() == capacity {
            break;
        }
    }
    out.decode_secs = start.elapsed().as_secs_f64() - out.prefill_secs;
    Ok(out)
}

/// Errors on anything [`generate`] cannot run, naming the prompt at fault.
fn check_request(model: &Gpt, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<()> {
    opts.sampling.validate()?;
    let n_ctx = model.config.n_ctx;
    for (i, p) in prompts.iter().enumerate() {
        ensure!(
            !p.is_empty(),
            "prompt {i} is empty: give it at least one token (a start token such as <|endoftext|>)"
        );
        ensure!(
            p.len() < n_ctx || opts.max_new_tokens == 0,
            "prompt {i} has {} tokens, but the model's context is {n_ctx}: at most {} leave room for a new token",
            p.len(),
            n_ctx - 1
        );
        // Asked for no new token, nothing runs: a longer prompt is checked as far as the context goes.
        let pos: Vec<u32> = (0..p.len().min(n_ctx) as u32).collect();
        model
            .check_input(&p[..pos.len()], &pos)
            .with_context(|| format!("prompt {i}"))?;
    }
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let bytes = working_memory(&model.config, prompts.len(), t0, opts.max_new_tokens);
    ensure!(
        bytes <= isize::MAX as u128,
        "{} prompts of up to {t0} tokens with {} new tokens each need {bytes} bytes of buffers: ask for fewer",
        prompts.len(),
        opts.max_new_tokens
    );
    Ok(())
}

/// Bytes [`generate`] allocates for `b` prompts of up to `t0` tokens and
/// `max_new_tokens` more: the KV cache, the prefill's activations and
/// attention scores, the logits. In u128, saturating, so any request can be sized.
pub fn working_memory(config: &GptConfig, b: usize, t0: usize, max_new_tokens: usize) -> u128 {
    let capacity = config.n_ctx.min(t0.saturating_add(max_new_tokens)) as u128;
    let (b, t0, c) = (b as u128, t0 as u128, config.n_embd as u128);
    let kv = (2 * config.n_layer as u128).saturating_mul(b.saturating_mul(capacity).saturating_mul(c));
    // Per prefill token: about ten C-wide buffers (qkv, MLP, norms) and a row of scores per head.
    let per_token = (10 * c).saturating_add((config.n_head as u128).saturating_mul(capacity));
    let prefill = b.saturating_mul(t0).saturating_mul(per_token);
    let logits = b.saturating_mul(config.vocab_size as u128);
    kv.saturating_add(prefill).saturating_add(logits).saturating_mul(4)
}

/// `n` generators drawn from `rng`, one per sequence: the `i`-th depends on
/// `rng`'s state and `i` only, not on how many there are.
pub fn split_rng(rng: &mut Rng, n: usize) -> Vec<Rng> {
    (0..n).map(|_| crate::tensor::rng(rng.next_u64())).collect()
}

/// `n` continuations of the single token `start`, in batches of at most 256
/// sequences (a small KV cache). Returns their new tokens; the `i`-th is the
/// same whatever `n` is.
pub fn generate_from(
    model: &Gpt,
    start: u32,
    n: usize,
    opts: &GenerateOptions,
    rng: &mut Rng,
) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    for first in (0..n).step_by(256) {
        let prompts = vec![vec![start]; (n - first).min(256)];
        let mut rngs = split_rng(rng, prompts.len());
        out.extend(generate(model, &prompts, opts, &mut rngs, |_, _| true)?.tokens);
    }
    Ok(out)
}

/// Generates `n` documents from BOS (character models): each stops at the
/// next BOS or when the context is full. Returns their ids without BOS.
pub fn generate_documents(
    model: &Gpt,
    bos: u32,
    n: usize,
    sampling: SampleOptions,
    rng: &mut Rng,
) -> Result<Vec<Vec<u32>>> {
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: model.config.n_ctx - 1,
        stop: vec![bos],
    };
    generate_from(model, bos, n, &opts, rng)
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
            stop: Vec::new(),
        };
        let got = generate(&model, &prompts, &opts, &mut vec![rng(0); 3], |_, _| true).unwrap();
        for (p, toks) in prompts.iter().zip(&got.tokens) {
            assert_eq!(toks, &greedy_reference(&model, p, 10), "prompt {p:?}");
        }
    }

    #[test]
    fn a_sampled_sequence_is_the_same_whatever_shares_its_batch() {
        let model = Gpt::new(GptConfig::gpt2(50, 24, 16, 2, 2), Init::Normal(0.5), &mut rng(3));
        let opts = GenerateOptions {
            sampling: SampleOptions {
                temperature: 1.0,
                top_k: None,
                top_p: None,
            },
            max_new_tokens: 8,
            stop: Vec::new(),
        };
        let alone = generate(&model, &[vec![9]], &opts, &mut [rng(5)], |_, _| true).unwrap();
        let prompts = [vec![1, 2, 3], vec![9], vec![4]];
        let mut rngs = [rng(1), rng(5), rng(2)];
        let batched = generate(&model, &prompts, &opts, &mut rngs, |_, _| true).unwrap();
        assert_eq!(batched.tokens[1], alone.tokens[0]);
        let err = generate(&model, &prompts, &opts, &mut [rng(1)], |_, _| true).unwrap_err();
        assert!(err.to_string().contains("1 random generators for 3 prompts"), "{err}");
        // Documents drawn from one seed: the first ones do not depend on how many.
        let few = generate_from(&model, 7, 2, &opts, &mut rng(4)).unwrap();
        let many = generate_from(&model, 7, 5, &opts, &mut rng(4)).unwrap();
        assert_eq!(few[..], many[..2]);
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        let model = Gpt::new(GptConfig::gpt2(8, 6, 8, 2, 1), Init::Normal(0.5), &mut rng(1));
        let greedy = GenerateOptions {
            sampling: SampleOptions::GREEDY,
            max_new_tokens: 3,
            stop: Vec::new(),
        };
        let err = |prompts: &[Vec<u32>], opts: &GenerateOptions| {
            let got = generate(&model, prompts, opts, &mut vec![rng(0); prompts.len()], |_, _| true);
            format!("{:#}", got.expect_err("a bad request must be an error"))
        };
        let e = err(&[vec![1], vec![]], &greedy);
        assert!(e.contains("prompt 1 is empty"), "{e}");
        let e = err(&[vec![1, 8]], &greedy);
        assert!(
            e.contains("prompt 0") && e.contains("token id 8") && e.contains("8 ids"),
            "{e}"
        );
        assert!(err(&[vec![u32::MAX]], &greedy).contains("outside the model's vocabulary"));
        let e = err(&[vec![1, 2], vec![1; 6]], &greedy);
        assert!(e.contains("prompt 1 has 6 tokens") && e.contains("context is 6"), "{e}");
        let nothing = GenerateOptions {
            max_new_tokens: 0,
            ..greedy.clone()
        };
        let g = generate(&model, &[vec![1; 6]], &nothing, &mut [rng(0)], |_, _| true).unwrap();
        assert_eq!(g.tokens, [Vec::<u32>::new()]);
        let opts = |temperature, top_k, top_p| SampleOptions {
            temperature,
            top_k,
            top_p,
        };
        for (sampling, name) in [
            (opts(f32::NAN, None, None), "temperature NaN"),
            (opts(-1.0, None, None), "temperature -1"),
            (opts(f32::INFINITY, None, None), "temperature inf"),
            (opts(1.0, Some(0), None), "top_k 0"),
            (opts(1.0, None, Some(1.5)), "top_p 1.5"),
            (opts(1.0, None, Some(f32::NAN)), "top_p NaN"),
        ] {
            let e = err(
                &[vec![1]],
                &GenerateOptions {
                    sampling,
                    ..greedy.clone()
                },
            );
            assert!(e.starts_with(name), "{e}");
        }
        // Asking for more tokens than fit is honoured: the context ends the sequence.
        let long = GenerateOptions {
            max_new_tokens: usize::MAX,
            ..greedy.clone()
        };
        let g = generate(&model, &[vec![1, 2]], &long, &mut [rng(0)], |_, _| true).unwrap();
        assert_eq!(g.tokens[0].len(), 5);
        // Any batch can be sized; one beyond every address space is refused by size.
        assert!(working_memory(&model.config, usize::MAX, 5, usize::MAX) > isize::MAX as u128);
        assert!(generate_documents(&model, 7, 300, SampleOptions::GREEDY, &mut rng(0)).is_ok_and(|d| d.len() == 300));
        assert!(generate_documents(&model, 8, 1, SampleOptions::GREEDY, &mut rng(0)).is_err());
    }

    #[test]
    fn stops_at_eos_callback_length_and_context() {
        let model = Gpt::new(GptConfig::gpt2(8, 6, 8, 2, 1), Init::Normal(0.5), &mut rng(1));
        let greedy = GenerateOptions {
            sampling: SampleOptions::GREEDY,
            max_new_tokens: 100,
            stop: Vec::new(),
        };
        // A context of 6 holds the 2-token prompt and 4 fed tokens; the 5th new
        // token is predicted from that full context and needs no slot.
        let g = generate(&model, &[vec![1, 2]], &greedy, &mut [rng(0)], |_, _| true).unwrap();
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
        let g = generate(&model, &[vec![1, 2]], &greedy, &mut [rng(0)], |_, _| {
            seen += 1;
            seen < 2
        })
        .unwrap();
        assert_eq!((g.tokens[0].len(), g.stopped[0]), (2, true));
        // A stop token = the first greedy token: nothing is emitted.
        let reference = greedy_reference(&model, &[1, 2], 4);
        let eos = GenerateOptions {
            stop: vec![7, reference[0]],
            ..greedy.clone()
        };
        let g = generate(&model, &[vec![1, 2]], &eos, &mut [rng(0)], |_, _| true).unwrap();
        assert_eq!((g.tokens[0].len(), g.stopped[0]), (0, true));
        // Any of several stop tokens ends a sequence, the first one met: a
        // prompt whose greedy tokens change, stopped at the first new one.
        let (prompt, reference, at) = (0..64u32)
            .map(|i| vec![i / 8, i % 8])
            .find_map(|p| {
                let r = greedy_reference(&model, &p, 4);
                let at = r.iter().position(|&t| t != r[0])?;
                Some((p, r, at))
            })
            .expect("some prompt's greedy tokens change within 4 steps");
        let eot = GenerateOptions {
            stop: vec![reference[at], 99],
            ..greedy
        };
        let g = generate(&model, &[prompt], &eot, &mut [rng(0)], |_, _| true).unwrap();
        assert_eq!((&g.tokens[0][..], g.stopped[0]), (&reference[..at], true));
    }
}
