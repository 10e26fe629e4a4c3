//! Side-by-side columns: separate projections (Llama's q, k, v) written into
//! one fused buffer that the attention kernel reads, one part at a time.

use super::min_rows_per_task;
use rayon::prelude::*;

/// Copies `part[N, w]` into columns `offset..offset + w` of `out[N, width]`.
pub fn concat_forward(out: &mut [f32], width: usize, part: &[f32], offset: usize, w: usize) {
    assert!(offset + w <= width && out.len() / width * w == part.len());
    out.par_chunks_mut(width)
        .zip(part.par_chunks(w))
        .with_min_len(min_rows_per_task(width))
        .for_each(|(o, p)| o[offset..offset + w].copy_from_slice(p));
}

/// Backward of [`concat_forward`]: `dpart[N, w] += dout[N, width]` columns `offset..offset + w`.
pub fn concat_backward(dpart: &mut [f32], w: usize, dout: &[f32], offset: usize, width: usize) {
    assert!(offset + w <= width && dout.len() / width * w == dpart.len());
    dpart
        .par_chunks_mut(w)
        .zip(dout.par_chunks(width))
        .with_min_len(min_rows_per_task(width))
        .for_each(|(d, o)| d.iter_mut().zip(&o[offset..offset + w]).for_each(|(d, o)| *d += o));
}
