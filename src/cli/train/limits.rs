//! What a run's settings must be: each in its range (named by its flag), and
//! the whole run within this machine's memory.

use super::Settings;
use crate::cli::check::{fits_in_memory, flag, sampling_flag};
use crate::cli::sample::MAX_SAMPLES;
use crate::model::GptConfig;
use crate::sample::SampleOptions;
use anyhow::Result;

/// Checks every setting, from the flags or a resumed run's record.
pub fn check_settings(s: &Settings) -> Result<()> {
    for (name, v) in [
        ("--steps", s.steps),
        ("--batch-size", s.batch_size),
        ("--grad-accum", s.grad_accum),
        ("--n-layer", s.n_layer),
        ("--n-embd", s.n_embd),
        ("--n-head", s.n_head),
    ] {
        flag(v >= 1, name, v, "at least 1")?;
    }
    let divisor = format!(
        "a divisor of --n-embd {} (n_embd must be divisible by n_head)",
        s.n_embd
    );
    flag(s.n_embd.is_multiple_of(s.n_head), "--n-head", s.n_head, &divisor)?;
    if let Some(n) = s.n_ctx {
        let max = u32::MAX as usize;
        flag((1..=max).contains(&n), "--n-ctx", n, &format!("between 1 and {max}"))?;
    }
    let samples = format!("at most {MAX_SAMPLES}");
    flag(s.num_samples <= MAX_SAMPLES, "--num-samples", s.num_samples, &samples)?;
    type Range = (fn(f32) -> bool, &'static str);
    let positive: Range = (|v| v.is_finite() && v > 0.0, "a finite number > 0");
    let at_least_0: Range = (|v| v.is_finite() && v >= 0.0, "a finite number >= 0");
    let below_1: Range = (|v| (0.0..1.0).contains(&v), "in [0, 1)");
    // `None` is a default: --min-lr a tenth of --lr, --grad-clip off.
    for (name, v, (ok, want)) in [
        ("--lr", Some(s.lr), positive),
        ("--min-lr", s.min_lr, at_least_0),
        ("--beta1", Some(s.beta1), below_1),
        ("--beta2", Some(s.beta2), below_1),
        ("--adam-eps", Some(s.adam_eps), positive),
        ("--weight-decay", Some(s.weight_decay), at_least_0),
        ("--grad-clip", s.grad_clip, (positive.0, GRAD_CLIP)),
        ("--dropout", Some(s.dropout), below_1),
    ] {
        if let Some(v) = v {
            flag(ok(v), name, v, want)?;
        }
    }
    let val = s.val_fraction;
    flag((0.0..1.0).contains(&val), "--val-fraction", val, "in [0, 1)")?;
    let sampling = SampleOptions {
        temperature: s.temperature,
        top_k: None,
        top_p: None,
    };
    sampling.validate().map_err(sampling_flag)
}

/// What `--grad-clip` must be.
pub const GRAD_CLIP: &str = "a finite number >= 0 (0 = off)";

/// Bytes a training step needs at least: the weights, their gradients and
/// AdamW's two moments; one micro-batch's activations (its logits, and per
/// layer about 17 rows of `n_embd` and a row of attention scores per head,
/// for each token); every micro-batch's token ids, targets and positions.
/// In u128, saturating, so any flags can be sized.
fn training_memory(c: &GptConfig, s: &Settings) -> u128 {
    let [v, ctx, e, l, h] = [c.vocab_size, c.n_ctx, c.n_embd, c.n_layer, c.n_head].map(|x| x as u128);
    let heads = if c.tie_word_embeddings { v } else { 2 * v };
    // A learned position table (rotary positions have none); per layer q, o, k, v and the MLP's two or three matrices.
    let positions = if c.rope.is_some() { 0 } else { ctx };
    let kv = (c.n_kv_head as u128).saturating_mul(c.head_size() as u128);
    let mlp = (if c.gated_mlp { 3 } else { 2 } as u128).saturating_mul(c.n_inner as u128);
    let per_layer = e.saturating_mul((2 * e).saturating_add(2 * kv).saturating_add(mlp));
    let params = (heads + positions)
        .saturating_mul(e)
        .saturating_add(l.saturating_mul(per_layer));
    let t = s.n_ctx.unwrap_or(c.n_ctx) as u128;
    let tokens = (s.batch_size as u128).saturating_mul(t);
    let per_layer = e.saturating_mul(17).saturating_add(h.saturating_mul(t));
    let per_token = v.saturating_add(e).saturating_add(l.saturating_mul(per_layer));
    let activations = tokens.saturating_mul(per_token).saturating_mul(4);
    let batches = tokens.saturating_mul(s.grad_accum as u128).saturating_mul(12);
    params
        .saturating_mul(16)
        .saturating_add(activations)
        .saturating_add(batches)
}

/// An error unless the run fits in this machine's memory.
pub fn check_memory(s: &Settings, c: &GptConfig) -> Result<()> {
    fits_in_memory(
        training_memory(c, s),
        || {
            format!(
                "training a model of --n-layer {} x --n-embd {} on micro-batches of --batch-size {} x --n-ctx {} tokens (--grad-accum {})",
                c.n_layer,
                c.n_embd,
                s.batch_size,
                s.n_ctx.unwrap_or(c.n_ctx),
                s.grad_accum
            )
        },
        "lower --batch-size, --n-ctx, --grad-accum, --n-embd or --n-layer",
    )
}
