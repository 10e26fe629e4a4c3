//! Linear layer: `y = x @ W + b`, with `W` stored `[in, out]` (Hugging Face's
//! Conv1D, GPT-2's layout) or `[out, in]` (`w_t`: nn.Linear, and the tied `wte`).

use super::matmul_bf16::matmul_at;
use super::{WeightElem, MIN_ELEMS_PER_TASK};
use rayon::prelude::*;
use std::ops::Range;

/// Sizes of a linear layer applied to `n` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    pub n: usize,
    pub d_in: usize,
    pub d_out: usize,
    /// `W` is stored `[out, in]`.
    pub w_t: bool,
    /// How the GEMM products (more than [`FEW_ROWS`] rows, and every backward) round their inputs.
    pub precision: Precision,
}

/// The inputs of a linear layer's GEMM: f32, or rounded to bf16 and summed
/// in f32 ([`matmul_at`]: AMX tiles where the CPU has them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

/// Up to this many rows, [`linear_forward`] streams the weights once for all
/// rows ([`few_rows_forward`]) instead of calling GEMM: decoding is bound by
/// reading the weights, not by arithmetic.
const FEW_ROWS: usize = super::ROW_INVARIANT_ROWS;

/// Floats of scratch space [`linear_forward`] needs for this shape and weight type.
pub fn scratch_len<W: WeightElem>(s: LinearShape) -> usize {
    match (s.n <= FEW_ROWS, W::IS_F32) {
        (true, _) => s.n * s.d_out, // the outputs, band by band
        (false, true) => 0,
        (false, false) => s.d_in * s.d_out, // the weights widened to f32
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
    matmul_at(s.precision, out, x, false, w, s.w_t, s.n, s.d_in, s.d_out, b.is_some());
}

/// `out = x @ W` for a few rows, reading each weight from memory once.
/// Threads take bands of output columns; within one, register blocks of
/// [`BLOCK_ROWS`] rows share each weight they load. Every output is summed
/// over the inputs in one fixed order (the lanes of [`block_out_in`], or one
/// chain of fused multiply-adds in [`block_in_out`]) whatever the other rows,
/// so a row's result is the same, bit for bit, for any `n` up to [`FEW_ROWS`].
fn few_rows_forward<W: WeightElem>(out: &mut [f32], x: &[f32], w: &[W], s: LinearShape, scratch: &mut [f32]) {
    let LinearShape {
        n, d_in, d_out, w_t, ..
    } = s;
    let threads = rayon::current_num_threads().max(1);
    // Several bands per thread for balance, whole register blocks wide.
    let per_thread = if w_t { 4 } else { 2 };
    let band = d_out
        .div_ceil(threads * per_thread)
        .next_multiple_of(IN_OUT_COLS)
        .max(64);
    // Band `b` is `[n, width]` in `scratch`: its columns of every row.
    scratch.par_chunks_mut(band * n).enumerate().for_each(|(b, part)| {
        let width = part.len() / n;
        let band = Band {
            x,
            w,
            d_in,
            d_out,
            c0: b * band,
            width,
        };
        if w_t {
            for c in (0..width).step_by(OUT_IN_COLS) {
                match width - c {
                    1 => band.rows_out_in::<1>(part, c),
                    _ => band.rows_out_in::<OUT_IN_COLS>(part, c),
                }
            }
        } else {
            part.fill(0.0);
            for k in (0..d_in).step_by(K_BLOCK) {
                let ks = k..(k + K_BLOCK).min(d_in);
                let mut c = 0;
                while c + IN_OUT_COLS <= width {
                    band.rows_in_out::<IN_OUT_COLS>(part, c, ks.clone());
                    c += IN_OUT_COLS;
                }
                for c in c..width {
                    band.rows_in_out::<1>(part, c, ks.clone());
                }
            }
        }
    });
    for (b, part) in scratch.chunks(band * n).enumerate() {
        let width = part.len() / n;
        for (r, src) in part.chunks(width).enumerate() {
            out[r * d_out + b * band..][..width].copy_from_slice(src);
        }
    }
}

/// Rows of `x` one register block takes.
const BLOCK_ROWS: usize = 4;
/// Output columns of a register block of the `[in, out]` layout (two AVX2 vectors).
const IN_OUT_COLS: usize = 16;
/// Weight rows of an `[out, in]` register block.
const OUT_IN_COLS: usize = 2;
/// Inputs per pass of the `[in, out]` layout: `K_BLOCK` weight rows of a band
/// stay in cache while every block of rows uses them.
const K_BLOCK: usize = 64;

/// What one thread's band of output columns `c0..c0 + width` of
/// [`few_rows_forward`] reads; it writes them, `[n, width]`, to its `part`.
struct Band<'a, W> {
    x: &'a [f32],
    w: &'a [W],
    d_in: usize,
    d_out: usize,
    c0: usize,
    width: usize,
}

impl<W: WeightElem> Band<'_, W> {
    /// [`Band::block_in_out`] for every block of rows.
    fn rows_in_out<const C: usize>(&self, part: &mut [f32], c: usize, ks: Range<usize>) {
        let n = part.len() / self.width;
        let mut r = 0;
        while r < n {
            r += match n - r {
                1 => self.block_in_out::<1, C>(part, c, r, ks.clone()),
                2 => self.block_in_out::<2, C>(part, c, r, ks.clone()),
                3 => self.block_in_out::<3, C>(part, c, r, ks.clone()),
                _ => self.block_in_out::<BLOCK_ROWS, C>(part, c, r, ks.clone()),
            };
        }
    }

    /// `part[r..r+R, c..c+C] += x[r..r+R, ks] @ W[ks, c0+c..c0+c+C]` (`W`
    /// `[in, out]`), in registers: each output one chain of fused
    /// multiply-adds in the order of `ks`. Returns `R`.
    #[inline(always)]
    fn block_in_out<const R: usize, const C: usize>(
        &self,
        part: &mut [f32],
        c: usize,
        r: usize,
        ks: Range<usize>,
    ) -> usize {
        let (width, col) = (self.width, self.c0 + c);
        let mut acc = [[0.0f32; C]; R];
        for (i, acc) in acc.iter_mut().enumerate() {
            acc.copy_from_slice(&part[(r + i) * width + c..][..C]);
        }
        let xs: [&[f32]; R] = std::array::from_fn(|i| &self.x[(r + i) * self.d_in..][ks.clone()]);
        for (j, k) in ks.enumerate() {
            let wk: &[W; C] = self.w[k * self.d_out + col..][..C].try_into().expect("C weights");
            for i in 0..R {
                let xv = xs[i][j];
                for l in 0..C {
                    acc[i][l] = xv.mul_add(wk[l].to_f32(), acc[i][l]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            part[(r + i) * width + c..][..C].copy_from_slice(acc);
        }
        R
    }

    /// [`Band::block_out_in`] for every block of rows.
    fn rows_out_in<const C: usize>(&self, part: &mut [f32], c: usize) {
        let n = part.len() / self.width;
        let mut r = 0;
        while r < n {
            r += match n - r {
                1 => self.block_out_in::<1, C>(part, c, r),
                2 => self.block_out_in::<2, C>(part, c, r),
                3 => self.block_out_in::<3, C>(part, c, r),
                _ => self.block_out_in::<BLOCK_ROWS, C>(part, c, r),
            };
        }
    }

    /// `part[r..r+R, c..c+C] = x[r..r+R] @ W[c0+c..c0+c+C]ᵀ` (`W` `[out,
    /// in]`), in registers: each output summed in 8 lanes (input `k` in lane
    /// `k % 8`), the lanes then added in order, then the tail. Returns `R`.
    #[inline(always)]
    fn block_out_in<const R: usize, const C: usize>(&self, part: &mut [f32], c: usize, r: usize) -> usize {
        const LANES: usize = 8;
        let d_in = self.d_in;
        let xs: [&[f32]; R] = std::array::from_fn(|i| &self.x[(r + i) * d_in..][..d_in]);
        let ws: [&[W]; C] = std::array::from_fn(|j| &self.w[(self.c0 + c + j) * d_in..][..d_in]);
        let xc: [&[[f32; LANES]]; R] = std::array::from_fn(|i| xs[i].as_chunks::<LANES>().0);
        let wc: [&[[W; LANES]]; C] = std::array::from_fn(|j| ws[j].as_chunks::<LANES>().0);
        let full = d_in / LANES * LANES;
        let mut acc = [[[0.0f32; LANES]; C]; R];
        for k in 0..full / LANES {
            let mut wk = [[0.0f32; LANES]; C];
            for j in 0..C {
                for l in 0..LANES {
                    wk[j][l] = wc[j][k][l].to_f32();
                }
            }
            for i in 0..R {
                let xk = xc[i][k];
                for j in 0..C {
                    for l in 0..LANES {
                        acc[i][j][l] = xk[l].mul_add(wk[j][l], acc[i][j][l]);
                    }
                }
            }
        }
        for i in 0..R {
            for j in 0..C {
                let mut sum = acc[i][j].iter().sum::<f32>();
                for k in full..d_in {
                    sum = xs[i][k].mul_add(ws[j][k].to_f32(), sum);
                }
                part[(r + i) * self.width + c + j] = sum;
            }
        }
        R
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
            matmul_at(s.precision, dw, dout, true, x, false, s.d_out, s.n, s.d_in, true);
        } else {
            matmul_at(s.precision, dw, x, true, dout, false, s.d_in, s.n, s.d_out, true);
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
    matmul_at(
        s.precision,
        dx,
        dout,
        false,
        w,
        !s.w_t,
        s.n,
        s.d_out,
        s.d_in,
        accumulate,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::matmul::matmul;
    use crate::tensor::Bf16;

    #[test]
    fn bf16_weights_match_f32_weights_rounded() {
        let (n, d_in, d_out) = (FEW_ROWS + 4, 33, 20); // more than FEW_ROWS: the GEMM path
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
                precision: Precision::F32,
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
    fn a_row_comes_out_the_same_bit_for_bit_in_any_few_rows_batch() {
        // Lengths off every block size: the tails take the other paths.
        let (d_in, d_out) = (75, 150);
        let x: Vec<f32> = (0..FEW_ROWS * d_in)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let w16: Vec<Bf16> = w.iter().map(|&v| Bf16::from_f32(v)).collect();
        let run = |n: usize, first: usize, w_t: bool, bf16: bool| {
            let s = LinearShape {
                n,
                d_in,
                d_out,
                w_t,
                precision: Precision::F32,
            };
            let mut out = vec![0.0; n * d_out];
            let mut scratch = vec![0.0; n * d_out];
            let x = &x[first * d_in..(first + n) * d_in];
            match bf16 {
                true => few_rows_forward(&mut out, x, &w16, s, &mut scratch),
                false => few_rows_forward(&mut out, x, &w, s, &mut scratch),
            }
            out
        };
        for w_t in [false, true] {
            for bf16 in [false, true] {
                let alone: Vec<Vec<f32>> = (0..FEW_ROWS).map(|r| run(1, r, w_t, bf16)).collect();
                for n in [2, 3, 5, 8, FEW_ROWS] {
                    let together = run(n, 0, w_t, bf16);
                    for (r, row) in together.chunks(d_out).enumerate() {
                        let same = row.iter().zip(&alone[r]).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "w_t={w_t} bf16={bf16}: row {r} of {n} differs from it alone");
                    }
                }
            }
        }
    }

    #[test]
    fn few_rows_path_matches_gemm_in_both_layouts() {
        let (d_in, d_out) = (70, 130);
        let x: Vec<f32> = (0..FEW_ROWS * d_in)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        for w_t in [false, true] {
            for n in [1, 2, 3, 5, FEW_ROWS] {
                let s = LinearShape {
                    n,
                    d_in,
                    d_out,
                    w_t,
                    precision: Precision::F32,
                };
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
