//! Matrix multiply through the `gemm` crate (AVX-512 with its `x86-v4` feature).

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Below this many flops a single thread is faster than splitting the work.
const MIN_PARALLEL_FLOPS: usize = 1 << 21;

/// `out[m, n] (+)= a[m, k] @ b[k, n]`.
///
/// `a_t`: `a` is stored transposed, as `[k, m]`; `b_t`: `b` is stored as `[n, k]`.
/// With `accumulate` the product is added to `out`, otherwise `out` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    out: &mut [f32],
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert_eq!(out.len(), m * n, "matmul: out is not [{m}, {n}]");
    assert_eq!(a.len(), m * k, "matmul: a is not [{m}, {k}]");
    assert_eq!(b.len(), k * n, "matmul: b is not [{k}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // (row stride, column stride) of each operand as stored.
    let (a_rs, a_cs) = if a_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b_t { (1, k) } else { (n, 1) };
    let a = View {
        data: a,
        rs: a_rs,
        cs: a_cs,
    };
    let b = View {
        data: b,
        rs: b_rs,
        cs: b_cs,
    };
    matmul_strided(out, n, a, b, m, k, n, 1.0, accumulate);
}

/// A strided view of a matrix: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// `dst[i * dst_rs + j] (+)= scale * (a @ b)[i, j]` for an `m×k` view `a` and
/// a `k×n` view `b`: GEMM on strided views (e.g. one attention head inside
/// `qkv`). With `accumulate` the product is added to `dst`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    dst: &mut [f32],
    dst_rs: usize,
    a: View,
    b: View,
    m: usize,
    k: usize,
    n: usize,
    scale: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Every index gemm forms lies below these bounds.
    let end = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs + 1;
    assert!(
        k > 0 && dst.len() >= end(m, dst_rs, n, 1),
        "matmul_strided: dst too small"
    );
    assert!(
        a.data.len() >= end(m, a.rs, k, a.cs) && b.data.len() >= end(k, b.rs, n, b.cs),
        "matmul_strided: operand too small"
    );
    let threads = rayon::current_num_threads();
    let parts = if threads > 1 && 2 * m * n * k >= MIN_PARALLEL_FLOPS {
        threads
    } else {
        1
    };
    // One single-threaded GEMM per block of the output's columns (of its rows
    // when it is much taller than wide), a block per thread. At our shapes (a
    // few hundred rows) this keeps both cores busier than gemm's own
    // threading: 1.2-1.4x on the backward's `dout @ Wᵀ`, the same elsewhere.
    let (by_cols, len) = if m < 4 * n { (true, n) } else { (false, m) };
    let width = len.div_ceil(parts).next_multiple_of(16);
    let (dst_at, a_at, b_at) = (
        dst.as_mut_ptr() as usize,
        a.data.as_ptr() as usize,
        b.data.as_ptr() as usize,
    );
    let block = |p: usize| {
        let start = p * width;
        if start >= len {
            return;
        }
        let size = width.min(len - start);
        let (rows, cols) = if by_cols { (m, size) } else { (size, n) };
        let (dst_off, a_off, b_off) = if by_cols {
            (start, 0, start * b.cs)
        } else {
            (start * dst_rs, start * a.rs, 0)
        };
        // SAFETY: the asserts bound every element gemm reads or writes inside
        // its slice; `dst` is a unique borrow disjoint from `a` and `b`, and
        // the blocks write disjoint columns (or rows) of it.
        unsafe {
            gemm(
                rows,
                cols,
                k,
                (dst_at as *mut f32).add(dst_off),
                1,
                dst_rs as isize,
                accumulate,
                (a_at as *const f32).add(a_off),
                a.cs as isize,
                a.rs as isize,
                (b_at as *const f32).add(b_off),
                b.cs as isize,
                b.rs as isize,
                1.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if parts == 1 {
        block(0);
    } else {
        (0..parts).into_par_iter().for_each(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
        let want = naive(&a, &b, m, k, n);
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let aa = if a_t { &at } else { &a };
            let bb = if b_t { &bt } else { &b };
            let mut out = vec![1.0; m * n];
            matmul(&mut out, aa, a_t, bb, b_t, m, k, n, false);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "a_t={a_t} b_t={b_t}: {x} vs {y}");
            }
            // accumulate adds on top of what is there
            matmul(&mut out, aa, a_t, bb, b_t, m, k, n, true);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn blocks_split_between_threads_match_naive() {
        // Large enough to be split: by columns (wide), then by rows (tall).
        for (m, k, n) in [(130, 70, 300), (1000, 40, 30)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let want = naive(&a, &b, m, k, n);
            for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                let aa = if a_t { transpose(&a, m, k) } else { a.clone() };
                let bb = if b_t { transpose(&b, k, n) } else { b.clone() };
                let mut out = vec![1.0; m * n];
                matmul(&mut out, &aa, a_t, &bb, b_t, m, k, n, false);
                for (x, y) in out.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-3, "{m}x{k}x{n} a_t={a_t} b_t={b_t}: {x} vs {y}");
                }
            }
        }
    }
}
