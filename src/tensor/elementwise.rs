//! Element-wise kernels: the MLP activations and the residual add.

use super::MIN_ELEMS_PER_TASK;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The MLP's non-linearity. Serialized with Hugging Face's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// GPT-2's GELU, tanh approximation.
    #[serde(rename = "gelu_new")]
    Gelu,
    /// microgpt's `max(0, x)`.
    #[serde(rename = "relu")]
    Relu,
}

const GELU_SCALE: f32 = 0.797_884_6; // sqrt(2 / pi)

impl Activation {
    /// `[N] -> [N]`: `out = f(x)`.
    pub fn forward(self, out: &mut [f32], x: &[f32]) {
        out.par_chunks_mut(MIN_ELEMS_PER_TASK)
            .zip(x.par_chunks(MIN_ELEMS_PER_TASK))
            .for_each(|(o, x)| match self {
                Activation::Gelu => o.iter_mut().zip(x).for_each(|(o, &x)| {
                    let inner = GELU_SCALE * (x + 0.044715 * x * x * x);
                    *o = 0.5 * x * (1.0 + inner.tanh());
                }),
                Activation::Relu => o.iter_mut().zip(x).for_each(|(o, &x)| *o = x.max(0.0)),
            });
    }

    /// `dx += f'(x) * dout`.
    pub fn backward(self, dx: &mut [f32], x: &[f32], dout: &[f32]) {
        dx.par_chunks_mut(MIN_ELEMS_PER_TASK)
            .zip(x.par_chunks(MIN_ELEMS_PER_TASK))
            .zip(dout.par_chunks(MIN_ELEMS_PER_TASK))
            .for_each(|((dx, x), dout)| {
                for ((dx, &x), &d) in dx.iter_mut().zip(x).zip(dout) {
                    let local = match self {
                        Activation::Gelu => {
                            let t = (GELU_SCALE * (x + 0.044715 * x * x * x)).tanh();
                            let sech2 = 1.0 - t * t;
                            0.5 * (1.0 + t) + 0.5 * x * sech2 * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x)
                        }
                        Activation::Relu => {
                            if x > 0.0 {
                                1.0
                            } else {
                                0.0
                            }
                        }
                    };
                    *dx += local * d;
                }
            });
    }
}

/// `[N] + [N] -> [N]`. Its backward is `da += dout; db += dout` ([`super::accumulate`]).
pub fn add_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.par_chunks_mut(MIN_ELEMS_PER_TASK)
        .zip(a.par_chunks(MIN_ELEMS_PER_TASK).zip(b.par_chunks(MIN_ELEMS_PER_TASK)))
        .for_each(|(o, (a, b))| o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (a, b))| *o = a + b));
}
