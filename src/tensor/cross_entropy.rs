//! Softmax + cross-entropy over the vocabulary, fused, with masked targets.

use super::elementwise::exp;
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
            let max = super::max(row);
            *lse = max + super::sum_map(row, |x| exp(x - max)).ln();
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
                *d += exp(x - lse) * scale;
            }
            d[target as usize] -= scale;
        });
}

/// [`cross_entropy_backward`] into the logits' own buffer, for logits that
/// nothing else reads: `logits` becomes `dlogits` (written, not added), so
/// the `[N, V]` gradient needs no buffer of its own, no zeroing and one pass.
pub fn cross_entropy_backward_in_place(
    logits: &mut [f32],
    lse: &[f32],
    targets: &[u32],
    v: usize,
    dloss: f32,
    count: usize,
) {
    let scale = dloss / count.max(1) as f32;
    logits
        .par_chunks_mut(v)
        .zip(lse.par_iter().zip(targets.par_iter()))
        .with_min_len(min_rows_per_task(v))
        .for_each(|(row, (&lse, &target))| {
            if target == IGNORE {
                row.fill(0.0);
                return;
            }
            row.iter_mut().for_each(|x| *x = exp(*x - lse) * scale);
            row[target as usize] -= scale;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{rng, Tensor};

    #[test]
    fn in_place_backward_matches_accumulating_backward() {
        let (n, v) = (5, 37);
        let logits = Tensor::randn(&[n, v], 3.0, &mut rng(1)).data;
        let targets = [3, IGNORE, 0, 36, 7];
        let mut lse = vec![0.0; n];
        let (sum, count) = cross_entropy_forward(&mut lse, &logits, &targets, v);
        // Against a plain f64 log-softmax.
        let want: f64 = logits
            .chunks(v)
            .zip(&targets)
            .filter(|(_, &t)| t != IGNORE)
            .map(|(row, &t)| {
                let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
                lse - row[t as usize] as f64
            })
            .sum();
        assert!((sum - want).abs() < 1e-5 * want.abs(), "{sum} vs {want}");
        let mut added = vec![0.0; n * v];
        cross_entropy_backward(&mut added, &logits, &lse, &targets, v, 0.7, count);
        let mut in_place = logits.clone();
        cross_entropy_backward_in_place(&mut in_place, &lse, &targets, v, 0.7, count);
        assert_eq!(added, in_place);
    }
}
