//! Contiguous f32 tensors and the kernels that run on them.
//!
//! Every kernel works on plain slices with explicit sizes, in llm.c's style:
//! `*_forward` writes its output, `*_backward` *accumulates* (`+=`) into the
//! gradients of its inputs, so a tensor used twice (tied weights, residuals)
//! simply receives both contributions. Shapes are written in comments as
//! `[N, C]` where `N` = rows (batch × time) and `C` = channels.

pub mod attention;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod linear;
pub mod matmul;
pub mod norm;

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

    pub fn numel(&self) -> usize {
        self.data.len()
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

/// Dot product with independent partial sums so the compiler can vectorise it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}
