//! Matrix multiply through the `gemm` crate (AVX-512 with its `x86-v4` feature).

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Below this many flops a single thread is faster than splitting the work
/// (under Miri the tests' small products are split too, to check the blocks).
const MIN_PARALLEL_FLOPS: usize = if cfg!(miri) { 1 } else { 1 << 21 };

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
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// `dst`'s pointer, shared by the blocks on rayon's threads (a pointer, not
/// an address, so that Miri follows its provenance).
struct DstPtr(*mut f32);

// SAFETY: sharing the pointer lets no safe code write through it; the one
// `unsafe` block that does, in `matmul_strided`, writes disjoint elements
// from each thread.
unsafe impl Sync for DstPtr {}

impl DstPtr {
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// One past the last index of a `rows×cols` matrix (`rows, cols >= 1`) at
/// strides `(rs, cs)`; `None` when that overflows or a stride does not fit
/// the `isize` gemm takes.
fn span(rows: usize, rs: usize, cols: usize, cs: usize) -> Option<usize> {
    if isize::try_from(rs).is_err() || isize::try_from(cs).is_err() {
        return None;
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// `dst[i * dst_rs + j] (+)= scale * (a @ b)[i, j]` for an `m×k` view `a` and
/// a `k×n` view `b`: GEMM on strided views (e.g. one attention head inside
/// `qkv`). With `accumulate` the product is added to `dst`.
///
/// Panics unless `k > 0`, the rows of `dst` do not overlap (`dst_rs >= n`
/// when `m > 1`) and every view lies inside its slice, with no overflow:
/// invariants of the attention kernels that call it, and what makes the
/// `unsafe` below sound for any arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_strided(
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
    assert!(k > 0, "matmul_strided: k = 0");
    assert!(m == 1 || dst_rs >= n, "matmul_strided: rows of dst overlap");
    let fits = |len: usize, rows, rs, cols, cs| span(rows, rs, cols, cs).is_some_and(|end| end <= len);
    assert!(
        fits(dst.len(), m, dst_rs, n, 1)
            && fits(a.data.len(), m, a.rs, k, a.cs)
            && fits(b.data.len(), k, b.rs, n, b.cs),
        "matmul_strided: a view overflows or lies outside its slice"
    );
    let threads = rayon::current_num_threads();
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let parts = if threads > 1 && flops >= MIN_PARALLEL_FLOPS {
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
    let dst = DstPtr(dst.as_mut_ptr());
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
        // SAFETY: the asserts put every index gemm forms (each block's
        // offset included) inside its slice and every stride in `isize`;
        // `dst` is a unique borrow, disjoint from `a` and `b`, whose rows do
        // not overlap, so the blocks (one per thread) write disjoint elements.
        unsafe {
            gemm(
                rows,
                cols,
                k,
                dst.at(dst_off),
                1,
                dst_rs as isize,
                accumulate,
                a.data[a_off..].as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b.data[b_off..].as_ptr(),
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
    #[cfg_attr(miri, ignore = "too large for Miri; the strided test splits under Miri")]
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

    /// `dst[i * dst_rs + j] = scale * (a @ b)[i, j]`, by plain indexing.
    fn naive_strided(dst_rs: usize, a: View, b: View, (m, k, n): (usize, usize, usize), scale: f32) -> Vec<f32> {
        let mut out = vec![0.0; m * dst_rs];
        for i in 0..m {
            for j in 0..n {
                let dot: f32 = (0..k)
                    .map(|p| a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs])
                    .sum();
                out[i * dst_rs + j] = scale * dot;
            }
        }
        out
    }

    #[test]
    fn strided_views_split_between_threads_match_naive() {
        // Split by columns (wide), then by rows (tall), in a pool of 3 so that
        // blocks interleave on any machine; small under Miri, which splits anyway.
        let k = if cfg!(miri) { 3 } else { 1500 };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, n) in [(20, 40), (70, 10)] {
            // `a` stored transposed with 2 spare rows, `b` and `dst` with spare columns.
            let a: Vec<f32> = (0..k * (m + 2)).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..k * (n + 3)).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let a = View {
                data: &a,
                rs: 1,
                cs: m + 2,
            };
            let b = View {
                data: &b,
                rs: n + 3,
                cs: 1,
            };
            let dst_rs = n + 5;
            let want = naive_strided(dst_rs, a, b, (m, k, n), 0.5);
            let mut dst = vec![7.0; m * dst_rs];
            pool.install(|| matmul_strided(&mut dst, dst_rs, a, b, m, k, n, 0.5, true));
            for (i, (got, want)) in dst.iter().zip(&want).enumerate() {
                let want = if i % dst_rs < n { 7.0 + want } else { 7.0 }; // spare columns untouched
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{m}x{k}x{n} at {i}: {got} vs {want}"
                );
            }
        }
    }

    /// `matmul_strided` of a 2×2 product into `dst`, with `a` given by `(rs, cs)`.
    fn strided(dst: &mut [f32], dst_rs: usize, a: (usize, usize), m: usize) {
        let data = [1.0; 8];
        let a = View {
            data: &data,
            rs: a.0,
            cs: a.1,
        };
        let b = View {
            data: &data,
            rs: 2,
            cs: 1,
        };
        matmul_strided(dst, dst_rs, a, b, m, 2, 2, 1.0, false);
    }

    #[test]
    #[should_panic(expected = "matmul_strided: rows of dst overlap")]
    fn overlapping_dst_rows_are_refused() {
        strided(&mut [0.0; 8], 1, (2, 1), 2); // row 1 would start inside row 0: a race between blocks
    }

    #[test]
    #[should_panic(expected = "matmul_strided: a view overflows or lies outside its slice")]
    fn wrapping_strides_are_refused() {
        strided(&mut [0.0; 8], 2, (usize::MAX / 2 + 1, 1), 3); // 2 * rs wraps to 0
    }

    #[test]
    #[should_panic(expected = "matmul_strided: a view overflows or lies outside its slice")]
    fn strides_beyond_isize_are_refused() {
        strided(&mut [0.0; 8], 2, (usize::MAX, 1), 1); // one row: the span fits, the stride passed to gemm does not
    }

    #[test]
    #[should_panic(expected = "matmul_strided: a view overflows or lies outside its slice")]
    fn views_past_their_slice_are_refused() {
        strided(&mut [0.0; 3], 2, (2, 1), 2); // dst needs 4 elements
    }

    #[test]
    fn one_row_may_have_any_dst_stride() {
        let mut dst = [0.0; 2];
        strided(&mut dst, 0, (2, 1), 1);
        assert_eq!(dst, [2.0, 2.0]);
    }
}
