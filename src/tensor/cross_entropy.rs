//! Softmax + cross-entropy over the vocabulary, fused, with masked targets.

use super::min_rows_per_task;
use rayon::prelude::*;

/// Target id meaning "no target here" (padding): the row adds nothing to the loss.
pub const IGNORE: u32 = u32::MAX;

/// `logits[N, V], targets[N] -> (sum of -log p(target), number of targets)`.
/// Saves each row's log-sum-exp in `lse[N]` for the backward pass.
pub fn cross_entropy_forward(lse: &mut [f32], logits: &[f32], targets: &[u32], v: usize) -> (f64, usize) {
    lse.par_iter_mut()
        .zip(logits.par_chunks(v))
        .zip(targets.par_iter())
        .with_min_len(min_rows_per_task(v))
        .map(|((lse, row), &target)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
            *lse = max + sum.ln();
            if target == IGNORE {
                (0.0, 0)
            } else {
                ((*lse - row[target as usize]) as f64, 1)
            }
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Backward of the mean loss scaled by `dloss`: for each row with a target,
/// `dlogits += (softmax(logits) - onehot(target)) * dloss / count`.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    lse: &[f32],
    targets: &[u32],
    v: usize,
    dloss: f32,
    count: usize,
) {
    let scale = dloss / count.max(1) as f32;
    dlogits
        .par_chunks_mut(v)
        .zip(logits.par_chunks(v))
        .zip(lse.par_iter().zip(targets.par_iter()))
        .with_min_len(min_rows_per_task(v))
        .for_each(|((d, row), (&lse, &target))| {
            if target == IGNORE {
                return;
            }
            for (d, &x) in d.iter_mut().zip(row) {
                *d += (x - lse).exp() * scale;
            }
            d[target as usize] -= scale;
        });
}
