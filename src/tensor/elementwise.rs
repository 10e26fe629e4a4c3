//! Element-wise kernels: the MLP activations (plain and gated) and the residual add.

use super::MIN_ELEMS_PER_TASK;
use rayon::prelude::*;

/// The MLP's non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GPT-2's GELU, tanh approximation.
    Gelu,
    /// microgpt's `max(0, x)`.
    Relu,
    /// Llama's SiLU (swish), `x sigmoid(x)`.
    Silu,
}

const GELU_SCALE: f32 = 0.797_884_6; // sqrt(2 / pi)

/// tanh as a rational function of degree 13/6 on [-7.9, 7.9] (Eigen's
/// `ptanh_float`) and ±1 beyond: at most 4.3e-7 from the exact value (a few
/// f32 ulps) and branch-free, so the GELU loops vectorise; libm's scalar
/// `tanhf` was over a third of a training step.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    let big = x.abs() > 7.905_311;
    let xs = x.clamp(-7.905_311, 7.905_311);
    let x2 = xs * xs;
    let p = xs * (A[0] + x2 * (A[1] + x2 * (A[2] + x2 * (A[3] + x2 * (A[4] + x2 * (A[5] + x2 * A[6]))))));
    let q = B[0] + x2 * (B[1] + x2 * (B[2] + x2 * B[3]));
    if big {
        x.signum()
    } else {
        p / q
    }
}

/// `e^x` by Cephes' `expf`: `2^n · e^r` with `n = round(x / ln 2)` and a
/// degree-6 polynomial for `e^r` on `|r| <= ln 2 / 2`; within 2 f32 ulps of the
/// exact value, and branch-free so softmax loops vectorise (libm's `expf` is a
/// call per element). Inputs are clamped to `[-87.3, 88.3]`: below, the result
/// is `~1e-38` instead of a subnormal or 0, which no softmax can tell apart.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // r = x - n ln 2, with ln 2 split in two so the product is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `x = softmax(x)` in place, vectorised.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = super::max(x);
    x.iter_mut().for_each(|v| *v = exp(*v - max));
    let sum = super::sum_map(x, |v| v);
    x.iter_mut().for_each(|v| *v /= sum);
}

/// GELU, tanh approximation, and its derivative.
#[inline(always)]
fn gelu(x: f32) -> (f32, f32) {
    let t = tanh(GELU_SCALE * (x + 0.044715 * x * x * x));
    let d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
    (0.5 * x * (1.0 + t), d)
}

#[inline(always)]
fn relu(x: f32) -> (f32, f32) {
    if x > 0.0 {
        (x, 1.0)
    } else {
        (0.0, 0.0)
    }
}

/// `x sigmoid(x)` and its derivative `s (1 + x (1 - s))`.
#[inline(always)]
fn silu(x: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + exp(-x));
    (x * s, s * (1.0 + x * (1.0 - s)))
}

/// Runs `$body` with `$f` bound to the activation's `x -> (f(x), f'(x))`: the
/// body is compiled once per activation, so its loop stays branch-free and vectorises.
macro_rules! with_activation {
    ($a:expr, |$f:ident| $body:expr) => {
        match $a {
            Activation::Gelu => {
                let $f = gelu;
                $body
            }
            Activation::Relu => {
                let $f = relu;
                $body
            }
            Activation::Silu => {
                let $f = silu;
                $body
            }
        }
    };
}

impl Activation {
    /// `[N] -> [N]`: `out = f(x)`.
    pub fn forward(self, out: &mut [f32], x: &[f32]) {
        with_activation!(self, |f| {
            out.par_chunks_mut(MIN_ELEMS_PER_TASK)
                .zip(x.par_chunks(MIN_ELEMS_PER_TASK))
                .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x).0))
        })
    }

    /// `dx (+)= f'(x) * dout`: added, or written without `accumulate` (a
    /// fresh buffer then needs no zeroing and is not read).
    pub fn backward(self, dx: &mut [f32], x: &[f32], dout: &[f32], accumulate: bool) {
        with_activation!(self, |f| {
            dx.par_chunks_mut(MIN_ELEMS_PER_TASK)
                .zip(x.par_chunks(MIN_ELEMS_PER_TASK))
                .zip(dout.par_chunks(MIN_ELEMS_PER_TASK))
                .for_each(|((dx, x), dout)| {
                    // Two loops, so that each vectorises without a branch inside.
                    let grads = x.iter().zip(dout).map(|(&x, &d)| f(x).1 * d);
                    if accumulate {
                        dx.iter_mut().zip(grads).for_each(|(dx, g)| *dx += g);
                    } else {
                        dx.iter_mut().zip(grads).for_each(|(dx, g)| *dx = g);
                    }
                })
        })
    }
}

/// Gated linear unit, `[N] x [N] -> [N]`: `out = f(gate) * up` (SwiGLU with SiLU).
pub fn glu_forward(out: &mut [f32], gate: &[f32], up: &[f32], f: Activation) {
    with_activation!(f, |f| {
        out.par_chunks_mut(MIN_ELEMS_PER_TASK)
            .zip(
                gate.par_chunks(MIN_ELEMS_PER_TASK)
                    .zip(up.par_chunks(MIN_ELEMS_PER_TASK)),
            )
            .for_each(|(o, (g, u))| {
                o.iter_mut()
                    .zip(g.iter().zip(u))
                    .for_each(|(o, (&g, &u))| *o = f(g).0 * u)
            })
    })
}

/// Backward of [`glu_forward`]: `dgate += f'(gate) * up * dout`, `dup += f(gate) * dout`.
pub fn glu_backward(dgate: &mut [f32], dup: &mut [f32], dout: &[f32], gate: &[f32], up: &[f32], f: Activation) {
    with_activation!(f, |f| {
        let n = MIN_ELEMS_PER_TASK;
        dgate
            .par_chunks_mut(n)
            .zip(dup.par_chunks_mut(n))
            .zip(dout.par_chunks(n).zip(gate.par_chunks(n).zip(up.par_chunks(n))))
            .for_each(|((dg, du), (d, (g, u)))| {
                for i in 0..dg.len() {
                    let (fg, dfg) = f(g[i]);
                    dg[i] += dfg * u[i] * d[i];
                    du[i] += fg * d[i];
                }
            })
    })
}

/// Inverted dropout: `out = x * mask` where `mask` is drawn here, each
/// element `0` with probability `p`, else `1 / (1 - p)`. Its backward is
/// `dx += dout * mask` ([`mul_accumulate`]).
pub fn dropout_forward(out: &mut [f32], mask: &mut [f32], x: &[f32], p: f32, rng: &mut super::Rng) {
    use rand::RngExt;
    let keep = 1.0 / (1.0 - p);
    for ((o, m), &x) in out.iter_mut().zip(mask.iter_mut()).zip(x) {
        *m = if rng.random::<f32>() < p { 0.0 } else { keep };
        *o = x * *m;
    }
}

/// `dst += a * b`, element-wise.
pub fn mul_accumulate(dst: &mut [f32], a: &[f32], b: &[f32]) {
    dst.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(a.par_chunks(MIN_ELEMS_PER_TASK).zip(b.par_chunks(MIN_ELEMS_PER_TASK)))
        .for_each(|(d, (a, b))| d.iter_mut().zip(a.iter().zip(b)).for_each(|(d, (a, b))| *d += a * b));
}

/// `[N] + s·[N] -> [N]`. Its backward is `da += dout; db += s·dout`
/// ([`super::accumulate`], [`axpy_parallel`]).
pub fn add_forward(out: &mut [f32], a: &[f32], b: &[f32], s: f32) {
    out.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(a.par_chunks(MIN_ELEMS_PER_TASK).zip(b.par_chunks(MIN_ELEMS_PER_TASK)))
        .for_each(|(o, (a, b))| o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (a, b))| *o = a + s * b));
}

/// `y += s·x`, in parallel over large buffers.
pub fn axpy_parallel(y: &mut [f32], s: f32, x: &[f32]) {
    y.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(x.par_chunks(MIN_ELEMS_PER_TASK))
        .for_each(|(y, x)| super::axpy(y, s, x));
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore = "millions of scalar evaluations, no unsafe or indexing to check")]
    fn fast_tanh_matches_f64_tanh() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [-20, 20]
            worst = worst.max((super::tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 4.5e-7, "max abs error {worst:e}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of scalar evaluations, no unsafe or indexing to check")]
    fn fast_exp_matches_f64_exp() {
        let mut worst = 0.0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4; // [-87, 88]
            let want = (x as f64).exp();
            worst = worst.max((super::exp(x) as f64 - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1e4) < 1e-37 && super::exp(-1e4) >= 0.0);
        assert!(super::exp(f32::NAN).is_nan());
    }
}
