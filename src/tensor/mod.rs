//! Contiguous f32 tensors and the kernels that run on them.
//!
//! Every kernel works on plain slices with explicit sizes, in llm.c's style:
//! `*_forward` writes its output, `*_backward` *accumulates* (`+=`) into the
//! gradients of its inputs, so a tensor used twice (tied weights, residuals)
//! simply receives both contributions. Shapes are written in comments as
//! `[N, C]` where `N` = rows (batch × time) and `C` = channels.

pub mod attention;
pub mod concat;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod linear;
pub mod matmul;
pub mod matmul_bf16;
pub mod norm;
pub mod quant;
pub mod rope;

/// Up to this many rows, [`linear`] computes each output row the same way
/// whatever the other rows are (its few-rows path; more rows switch to GEMM,
/// which sums in another order). A decoded token's logits then do not depend
/// on what shares its batch. Quantized weights have their own bound,
/// [`quant::ROW_INVARIANT_ROWS`].
pub const ROW_INVARIANT_ROWS: usize = 32;

/// A contiguous row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The random generator used everywhere (weights, data order, sampling):
/// seedable, and serialisable so a run can resume exactly.
pub type Rng = rand_pcg::Pcg64Mcg;

/// A generator from a seed.
pub fn rng(seed: u64) -> Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

impl Tensor {
    /// Values drawn from N(0, std²).
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Self {
        use rand::RngExt;
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| std * rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_vec(shape, data)
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not match {} values",
            data.len()
        );
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Number of elements (by shape: a tensor held as bf16 has no f32 data).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Hands the free pages of the heap back to the kernel: what a loader's
/// scratch (a vocabulary's strings, say) or a prompt's left behind, which the
/// allocator would otherwise keep resident beside the weights. glibc keeps
/// such pages; elsewhere this does nothing.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Asks the kernel to back a large, not yet touched buffer with huge pages
/// (fewer TLB misses when decoding streams all the weights). A hint only:
/// nothing happens where transparent huge pages are off.
pub fn advise_huge_pages<T>(buf: &mut [std::mem::MaybeUninit<T>]) {
    const HUGE: usize = 2 << 20;
    let (start, len) = (buf.as_mut_ptr() as usize, std::mem::size_of_val(buf));
    if len < 2 * HUGE {
        return;
    }
    // No overflow: `buf` ends at `start + len` and `aligned` is below it.
    let aligned = start.next_multiple_of(HUGE);
    // SAFETY: whole huge pages from `aligned` up to the end of `buf`, memory
    // this unique borrow owns; MADV_HUGEPAGE is a hint that changes no contents.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            (start + len - aligned) / HUGE * HUGE,
            libc::MADV_HUGEPAGE,
        );
    }
}

/// Below this many elements a rayon task costs more than it saves.
pub const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// Rows of `c` elements per rayon task (at least one).
pub(crate) fn min_rows_per_task(c: usize) -> usize {
    (MIN_ELEMS_PER_TASK / c.max(1)).max(1)
}

/// `dst += src`, element-wise, multi-threaded for large slices.
pub fn accumulate(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len());
    dst.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(src.par_chunks(MIN_ELEMS_PER_TASK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
}

/// `dst = src`, multi-threaded for large slices.
pub fn copy(dst: &mut [f32], src: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(dst.len(), src.len());
    dst.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(src.par_chunks(MIN_ELEMS_PER_TASK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// A stored weight element: f32, or [`Bf16`]. Kernels that only read
/// weights (inference) are generic over it; arithmetic is always f32.
pub trait WeightElem: Copy + Send + Sync + 'static {
    const IS_F32: bool;
    fn to_f32(self) -> f32;
    /// The slice itself when the elements are f32 (GEMM reads those directly).
    fn as_f32(w: &[Self]) -> Option<&[f32]>;
}

impl WeightElem for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    fn as_f32(w: &[f32]) -> Option<&[f32]> {
        Some(w)
    }
}

/// bfloat16: the top 16 bits of an f32 (same range, 8 bits of mantissa).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Rounds to the nearest bf16 (ties to even); NaN stays NaN.
    #[inline(always)]
    pub fn from_f32(x: f32) -> Self {
        let bits = x.to_bits();
        if x.is_nan() {
            return Bf16(((bits >> 16) | 0x40) as u16);
        }
        let round = 0x7FFF + ((bits >> 16) & 1);
        Bf16((bits.wrapping_add(round) >> 16) as u16)
    }
}

impl WeightElem for Bf16 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
    fn as_f32(_: &[Bf16]) -> Option<&[f32]> {
        None
    }
}

/// Dot product with independent partial sums so the compiler can vectorise it.
#[inline]
pub fn dot<W: WeightElem>(a: &[f32], b: &[W]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y.to_f32())
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i].to_f32();
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Lanes of the partial results in [`max`] and [`sum`]: wide enough to
/// vectorise without a serial chain of operations.
const LANES: usize = 16;

/// The largest element (`-inf` for none), vectorised.
#[inline]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// The sum of `f(x)` over the elements, with partial sums in lanes so it vectorises.
#[inline(always)]
pub fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += alpha * x`.
#[inline]
pub fn axpy<W: WeightElem>(y: &mut [f32], alpha: f32, x: &[W]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x.to_f32());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        for x in [0.0f32, 1.0, -2.5, 3.140625, 2f32.powi(-100), 65536.0] {
            assert_eq!(Bf16::from_f32(x).to_f32(), x, "{x} is exact in bf16");
        }
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa, 1.
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).to_f32(), 1.0);
        assert_eq!(Bf16::from_f32(1.0 + 3.0 / 256.0).to_f32(), 1.0 + 4.0 / 256.0);
        assert!((Bf16::from_f32(0.1).to_f32() - 0.1).abs() < 0.1 / 256.0);
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
    }
}
