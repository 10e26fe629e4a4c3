//! Linear layer: `y = x @ W + b`, with `W` stored `[in, out]` (Hugging Face's
//! Conv1D, GPT-2's layout) or `[out, in]` (`w_t`: nn.Linear, and the tied `wte`).

use super::matmul::matmul;
use super::{WeightElem, MIN_ELEMS_PER_TASK};
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

/// Up to this many rows, [`linear_forward`] streams the weights once for all
/// rows ([`few_rows_forward`]) instead of calling GEMM: decoding is bound by
/// reading the weights, not by arithmetic.
const FEW_ROWS: usize = super::ROW_INVARIANT_ROWS;

/// Floats of scratch space [`linear_forward`] needs for this shape and weight type.
pub fn scratch_len<W: WeightElem>(s: LinearShape) -> usize {
    match (s.n <= FEW_ROWS, s.w_t, W::IS_F32) {
        (true, true, _) => s.d_out * s.n, // outputs, column-major
        (true, false, _) => rayon::current_num_threads().max(1) * s.n * s.d_out, // a partial output per band
        (false, _, true) => 0,
        (false, _, false) => s.d_in * s.d_out, // the weights widened to f32
    }
}

/// `x[N, in] @ W + b -> out[N, out]`, with `scratch` of [`scratch_len`] floats.
/// f32 or bf16 weights; a few rows read them once ([`few_rows_forward`]),
/// more rows go through GEMM (bf16 widened to f32 in `scratch` first).
pub fn linear_forward<W: WeightElem>(
    out: &mut [f32],
    x: &[f32],
    w: &[W],
    b: Option<&[f32]>,
    s: LinearShape,
    scratch: &mut [f32],
) {
    assert_eq!(scratch.len(), scratch_len::<W>(s), "linear: wrong scratch size");
    let add_bias = |out: &mut [f32], b: &[f32], add: bool| {
        out.par_chunks_mut(s.d_out)
            .with_min_len(super::min_rows_per_task(s.d_out))
            .for_each(|row| {
                if add {
                    row.iter_mut().zip(b).for_each(|(o, b)| *o += b)
                } else {
                    row.copy_from_slice(&b[..s.d_out])
                }
            });
    };
    if s.n <= FEW_ROWS {
        few_rows_forward(out, x, w, s, scratch);
        if let Some(b) = b {
            add_bias(out, b, true);
        }
        return;
    }
    // GEMM adds the product to the bias written first: one pass over `out` fewer.
    if let Some(b) = b {
        add_bias(out, b, false);
    }
    let w = match W::as_f32(w) {
        Some(w) => w,
        None => {
            scratch
                .par_chunks_mut(MIN_ELEMS_PER_TASK)
                .zip(w.par_chunks(MIN_ELEMS_PER_TASK))
                .for_each(|(d, w)| d.iter_mut().zip(w).for_each(|(d, w)| *d = w.to_f32()));
            scratch
        }
    };
    matmul(out, x, false, w, s.w_t, s.n, s.d_in, s.d_out, b.is_some());
}

/// `out = x @ W` for a few rows, reading each weight once. Threads take
/// contiguous bands of `W`'s stored rows, so each streams memory in order.
fn few_rows_forward<W: WeightElem>(out: &mut [f32], x: &[f32], w: &[W], s: LinearShape, scratch: &mut [f32]) {
    let LinearShape { n, d_in, d_out, w_t } = s;
    if w_t {
        // W is [out, in]: each output is a dot product with one stored row.
        let band = d_out.div_ceil(rayon::current_num_threads().max(1) * 4).max(64);
        let cols = scratch; // [out, N]
        cols.par_chunks_mut(band * n).enumerate().for_each(|(k, c)| {
            for (j, c) in c.chunks_mut(n).enumerate() {
                let row = &w[(k * band + j) * d_in..][..d_in];
                for (r, c) in c.iter_mut().enumerate() {
                    *c = super::dot(&x[r * d_in..(r + 1) * d_in], row);
                }
            }
        });
        for r in 0..n {
            out[r * d_out..(r + 1) * d_out]
                .iter_mut()
                .zip(cols.chunks(n))
                .for_each(|(o, c)| *o = c[r]);
        }
    } else {
        // W is [in, out]: each band of input rows adds its share to a partial output.
        let bands = scratch.len() / (n * d_out);
        let band = d_in.div_ceil(bands);
        scratch
            .par_chunks_mut(n * d_out)
            .zip(w.par_chunks(band * d_out))
            .enumerate()
            .for_each(|(k, (part, w_band))| {
                part.fill(0.0);
                for (i, w_row) in w_band.chunks(d_out).enumerate() {
                    for (r, part) in part.chunks_mut(d_out).enumerate() {
                        super::axpy(part, x[r * d_in + k * band + i], w_row);
                    }
                }
            });
        out.fill(0.0);
        let used = d_in.div_ceil(band); // bands that got rows
        scratch[..used * n * d_out]
            .chunks(n * d_out)
            .for_each(|p| out.iter_mut().zip(p).for_each(|(o, p)| *o += p));
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
        linear_backward_input(dx, dout, w, s, true);
    }
    if let Some(dw) = dw {
        if s.w_t {
            matmul(dw, dout, true, x, false, s.d_out, s.n, s.d_in, true);
        } else {
            matmul(dw, x, true, dout, false, s.d_in, s.n, s.d_out, true);
        }
    }
    if let Some(db) = db {
        // Each task sums a block of columns over all rows, row after row; at
        // least 64 columns, so the inner loop is long and vectorised.
        let cols = (MIN_ELEMS_PER_TASK / s.n.max(1)).max(64).min(s.d_out.max(1));
        db.par_chunks_mut(cols).enumerate().for_each(|(j, db)| {
            for row in dout.chunks(s.d_out) {
                db.iter_mut().zip(&row[j * cols..]).for_each(|(d, g)| *d += g);
            }
        });
    }
}

/// `dx (+)= dout @ Wᵀ`, [`linear_backward`]'s input gradient; written, not
/// added, without `accumulate` (a fresh buffer then needs no zeroing).
pub fn linear_backward_input(dx: &mut [f32], dout: &[f32], w: &[f32], s: LinearShape, accumulate: bool) {
    matmul(dx, dout, false, w, !s.w_t, s.n, s.d_out, s.d_in, accumulate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Bf16;

    #[test]
    fn bf16_weights_match_f32_weights_rounded() {
        let (n, d_in, d_out) = (12, 33, 20); // more than FEW_ROWS: the GEMM path
        let x: Vec<f32> = (0..n * d_in).map(|i| ((i * 5 % 9) as f32 - 4.0) / 4.0).collect();
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let w16: Vec<Bf16> = w.iter().map(|&v| Bf16::from_f32(v)).collect();
        let rounded: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        for rows in [2, n] {
            let s = LinearShape {
                n: rows,
                d_in,
                d_out,
                w_t: false,
            };
            let (mut got, mut want) = (vec![0.0; rows * d_out], vec![0.0; rows * d_out]);
            let mut scratch = vec![0.0; scratch_len::<Bf16>(s)];
            linear_forward(&mut got, &x[..rows * d_in], &w16, None, s, &mut scratch);
            let mut scratch = vec![0.0; scratch_len::<f32>(s)];
            linear_forward(&mut want, &x[..rows * d_in], &rounded, None, s, &mut scratch);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{rows} rows: {g} vs {w}");
            }
        }
    }

    #[test]
    fn few_rows_path_matches_gemm_in_both_layouts() {
        let (d_in, d_out) = (70, 130);
        let x: Vec<f32> = (0..3 * d_in).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        for w_t in [false, true] {
            for n in 1..=3 {
                let s = LinearShape { n, d_in, d_out, w_t };
                let (mut got, mut want) = (vec![0.0; n * d_out], vec![0.0; n * d_out]);
                let mut scratch = vec![0.0; scratch_len::<f32>(s)];
                few_rows_forward(&mut got, &x[..n * d_in], &w, s, &mut scratch);
                matmul(&mut want, &x[..n * d_in], false, &w, w_t, n, d_in, d_out, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "w_t={w_t} n={n}: {g} vs {w}");
                }
            }
        }
    }
}
