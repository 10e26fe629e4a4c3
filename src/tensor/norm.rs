//! LayerNorm (GPT-2) and RMSNorm (microgpt), one kernel with a switch:
//! RMSNorm is LayerNorm without the mean subtraction.

use super::min_rows_per_task;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps)`, then `* weight + bias`.
    LayerNorm,
    /// `x / sqrt(mean(x²) + eps)`, then `* weight` if there is one.
    RmsNorm,
}

/// `[N, C] -> [N, C]`: `out = (x - mean) * rstd * w + b`, row by row.
/// Saves `mean[N]` (0 for RMSNorm) and `rstd[N]` for the backward pass.
#[allow(clippy::too_many_arguments)]
pub fn norm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    c: usize,
    eps: f32,
    kind: NormKind,
) {
    out.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .with_min_len(min_rows_per_task(c))
        .for_each(|((o, x), (m, r))| {
            // Sums in lanes (`sum_map`): a serial sum is a chain of dependent adds.
            let mu = match kind {
                NormKind::LayerNorm => super::sum_map(x, |v| v) / c as f32,
                NormKind::RmsNorm => 0.0,
            };
            let var = super::sum_map(x, |v| (v - mu) * (v - mu)) / c as f32;
            let rs = 1.0 / (var + eps).sqrt();
            // One loop per case, each branch-free; absent weight/bias act as
            // ones/zeros (nothing allocated for them: a decoded token's norms).
            let xs = o.iter_mut().zip(x);
            match (w, b) {
                (Some(w), Some(b)) => xs.zip(w).zip(b).for_each(|(((o, x), w), b)| *o = (x - mu) * rs * w + b),
                (Some(w), None) => xs.zip(w).for_each(|((o, x), w)| *o = (x - mu) * rs * w),
                (None, Some(b)) => xs.zip(b).for_each(|((o, x), b)| *o = (x - mu) * rs + b),
                (None, None) => xs.for_each(|(o, x)| *o = (x - mu) * rs),
            }
            *m = mu;
            *r = rs;
        });
}

/// Backward of [`norm_forward`]: accumulates into `dx[N, C]`, `dw[C]`, `db[C]`.
///
/// With `xhat = (x - mean) * rstd` and `g = dout * w`:
/// `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`, where RMSNorm drops `mean(g)`.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    dx: &mut [f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: Option<&[f32]>,
    mean: &[f32],
    rstd: &[f32],
    c: usize,
    kind: NormKind,
) {
    let ones = vec![1.0; c];
    let w = w.unwrap_or(&ones);
    // Each task handles a run of rows and returns its partial dw, db.
    let rows_per_task = min_rows_per_task(c);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(rows_per_task * c)
        .enumerate()
        .map(|(task, dx)| {
            // Partial sums for dw and db (computed even when unused: cheaper than branching).
            let (mut pdw, mut pdb) = (vec![0.0; c], vec![0.0; c]);
            let (mut xhat, mut g) = (vec![0.0; c], vec![0.0; c]);
            for (i, dx) in dx.chunks_mut(c).enumerate() {
                let r = task * rows_per_task + i;
                let (x, dout) = (&x[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c]);
                let (mu, rs) = (mean[r], rstd[r]);
                // All of length c, so the loops below need no bounds checks and vectorise.
                let (xhat, g, pdw, pdb, w) = (&mut xhat[..c], &mut g[..c], &mut pdw[..c], &mut pdb[..c], &w[..c]);
                for j in 0..c {
                    xhat[j] = (x[j] - mu) * rs;
                    g[j] = dout[j] * w[j];
                    pdw[j] += dout[j] * xhat[j];
                    pdb[j] += dout[j];
                }
                // The two row means as vectorised sums, not serial chains.
                let g_mean = match kind {
                    NormKind::LayerNorm => super::sum_map(g, |v| v) / c as f32,
                    NormKind::RmsNorm => 0.0,
                };
                let g_xhat_mean = super::dot(g, xhat) / c as f32;
                for j in 0..c {
                    dx[j] += rs * (g[j] - g_mean - xhat[j] * g_xhat_mean);
                }
            }
            (pdw, pdb)
        })
        .collect();
    if let Some(dw) = dw {
        partials.iter().for_each(|(p, _)| super::accumulate(dw, p));
    }
    if let Some(db) = db {
        partials.iter().for_each(|(_, p)| super::accumulate(db, p));
    }
}
