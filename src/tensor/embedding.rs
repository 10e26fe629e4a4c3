//! Token + position embedding.

use super::{min_rows_per_task, WeightElem};
use rayon::prelude::*;

/// `tokens[N], pos[N] -> [N, C]`: `out[i] = wte[tokens[i]] + wpe[pos[i]]`.
pub fn embedding_forward<W: WeightElem>(
    out: &mut [f32],
    tokens: &[u32],
    pos: &[u32],
    wte: &[W],
    wpe: &[f32],
    c: usize,
) {
    out.par_chunks_mut(c)
        .zip(tokens.par_iter().zip(pos.par_iter()))
        .with_min_len(min_rows_per_task(c))
        .for_each(|(o, (&t, &p))| {
            let (t, p) = (t as usize * c, p as usize * c);
            for ((o, a), b) in o.iter_mut().zip(&wte[t..t + c]).zip(&wpe[p..p + c]) {
                *o = a.to_f32() + b;
            }
        });
}

/// Backward of [`embedding_forward`]: `dwte[tokens[i]] += dout[i]`, `dwpe[pos[i]] += dout[i]`.
/// A serial scatter-add: even at GPT-2 scale it is a millisecond.
pub fn embedding_backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], tokens: &[u32], pos: &[u32], c: usize) {
    for ((d, &t), &p) in dout.chunks(c).zip(tokens).zip(pos) {
        let (t, p) = (t as usize * c, p as usize * c);
        dwte[t..t + c].iter_mut().zip(d).for_each(|(w, d)| *w += d);
        dwpe[p..p + c].iter_mut().zip(d).for_each(|(w, d)| *w += d);
    }
}
