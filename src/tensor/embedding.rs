//! Token embedding, plus the learned position embedding where there is one
//! (GPT-2; Llama's positions are rotary, applied in attention).

use super::quant::QMatrix;
use super::{min_rows_per_task, WeightElem};
use rayon::prelude::*;

/// `tokens[N], pos[N] -> [N, C]`: `out[i] = wte[tokens[i]] (+ wpe[pos[i]])`.
pub fn embedding_forward<W: WeightElem>(
    out: &mut [f32],
    tokens: &[u32],
    pos: &[u32],
    wte: &[W],
    wpe: Option<&[f32]>,
    c: usize,
) {
    out.par_chunks_mut(c)
        .zip(tokens.par_iter().zip(pos.par_iter()))
        .with_min_len(min_rows_per_task(c))
        .for_each(|(o, (&t, &p))| {
            let t = t as usize * c;
            o.iter_mut().zip(&wte[t..t + c]).for_each(|(o, a)| *o = a.to_f32());
            if let Some(wpe) = wpe {
                let p = p as usize * c;
                o.iter_mut().zip(&wpe[p..p + c]).for_each(|(o, b)| *o += b);
            }
        });
}

/// [`embedding_forward`] from a quantized table `[vocab, C]`: each token's
/// row is dequantized as ggml would (`get_rows`).
pub fn embedding_forward_quantized(
    out: &mut [f32],
    tokens: &[u32],
    pos: &[u32],
    wte: &QMatrix,
    wpe: Option<&[f32]>,
    c: usize,
) {
    assert_eq!(wte.cols(), c, "embedding: table rows of {} values, not {c}", wte.cols());
    out.par_chunks_mut(c)
        .zip(tokens.par_iter().zip(pos.par_iter()))
        .with_min_len(min_rows_per_task(c))
        .for_each(|(o, (&t, &p))| {
            wte.dequantize_row(t as usize, o);
            if let Some(wpe) = wpe {
                let p = p as usize * c;
                o.iter_mut().zip(&wpe[p..p + c]).for_each(|(o, b)| *o += b);
            }
        });
}

/// Backward of [`embedding_forward`]: `dwte[tokens[i]] += dout[i]`, `dwpe[pos[i]] += dout[i]`.
/// A serial scatter-add: even at GPT-2 scale it is a millisecond.
pub fn embedding_backward(
    dwte: &mut [f32],
    mut dwpe: Option<&mut [f32]>,
    dout: &[f32],
    tokens: &[u32],
    pos: &[u32],
    c: usize,
) {
    for ((d, &t), &p) in dout.chunks(c).zip(tokens).zip(pos) {
        let t = t as usize * c;
        dwte[t..t + c].iter_mut().zip(d).for_each(|(w, d)| *w += d);
        if let Some(dwpe) = dwpe.as_deref_mut() {
            let p = p as usize * c;
            dwpe[p..p + c].iter_mut().zip(d).for_each(|(w, d)| *w += d);
        }
    }
}
