//! Linear layer: `y = x @ W + b`, with `W` stored `[in, out]` (Hugging Face's
//! Conv1D, GPT-2's layout) or `[out, in]` (`w_t`: nn.Linear, and the tied `wte`).

use super::matmul::matmul;
use super::MIN_ELEMS_PER_TASK;
use rayon::prelude::*;

/// Sizes of a linear layer applied to `n` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    pub n: usize,
    pub d_in: usize,
    pub d_out: usize,
    /// `W` is stored `[out, in]`.
    pub w_t: bool,
}

/// `x[N, in] @ W + b -> out[N, out]`.
pub fn linear_forward(out: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, s: LinearShape) {
    matmul(out, x, false, w, s.w_t, s.n, s.d_in, s.d_out, false);
    if let Some(b) = b {
        out.par_chunks_mut(s.d_out)
            .with_min_len(super::min_rows_per_task(s.d_out))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(o, b)| *o += b));
    }
}

/// Backward of [`linear_forward`], accumulating:
/// `dx += dout @ Wᵀ`, `dW += xᵀ @ dout` (or `doutᵀ @ x` for `[out, in]`), `db += Σ_rows dout`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    s: LinearShape,
) {
    if let Some(dx) = dx {
        matmul(dx, dout, false, w, !s.w_t, s.n, s.d_out, s.d_in, true);
    }
    if let Some(dw) = dw {
        if s.w_t {
            matmul(dw, dout, true, x, false, s.d_out, s.n, s.d_in, true);
        } else {
            matmul(dw, x, true, dout, false, s.d_in, s.n, s.d_out, true);
        }
    }
    if let Some(db) = db {
        // Each task sums a block of columns over all rows.
        let cols = (MIN_ELEMS_PER_TASK / s.n.max(1)).clamp(16, s.d_out.max(16));
        db.par_chunks_mut(cols).enumerate().for_each(|(j, db)| {
            for row in dout.chunks(s.d_out) {
                db.iter_mut().zip(&row[j * cols..]).for_each(|(d, g)| *d += g);
            }
        });
    }
}
