//! Gradient checks: every op's backward against central finite differences.
//!
//! The objective is `sum(out * r)` for a fixed random `r`, evaluated in f64
//! from the f32 forward. Each checked element must pass numpy's `allclose`
//! test, `|numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|)`,
//! with `rtol = 1e-2` and `atol` = the resolution of the finite difference
//! itself (two f32 ulps of the objective over `2 eps`): f32 cannot measure
//! finer, and a missing term, a wrong sign or a wrong index is off by far more.

use super::{Graph, Params, Var, Workspace};
use crate::tensor::{rng, Tensor};

/// Checks the gradient of every parameter of `params` through `build`.
pub(crate) fn check(params: &Params, eps: f32, build: impl Fn(&mut Graph) -> Var) {
    let eval = |p: &Params| -> Vec<f32> {
        let mut g = Graph::new(p, Workspace::default());
        let out = build(&mut g);
        g.value(out).to_vec()
    };
    let out = eval(params);
    let r = Tensor::randn(&[out.len()], 1.0, &mut rng(99)).data;
    let objective = |p: &Params| -> f64 { eval(p).iter().zip(&r).map(|(&o, &r)| o as f64 * r as f64).sum() };
    let magnitude: f64 = out.iter().zip(&r).map(|(&o, &r)| (o as f64 * r as f64).abs()).sum();
    let atol = 2.0 * f32::EPSILON as f64 * magnitude / (2.0 * eps as f64);

    let mut grads = params.zero_grads();
    let mut g = Graph::new(params, Workspace::default());
    let out = build(&mut g);
    g.backward_from(out, r.clone(), &mut grads);

    let mut p = params.clone();
    for (pi, name) in params.names.iter().enumerate() {
        let n = p.tensors[pi].numel();
        // Up to 40 elements per tensor, spread over it.
        let step = (n / 40).max(1);
        for i in (0..n).step_by(step) {
            let orig = p.tensors[pi].data[i];
            p.tensors[pi].data[i] = orig + eps;
            let plus = objective(&p);
            p.tensors[pi].data[i] = orig - eps;
            let minus = objective(&p);
            p.tensors[pi].data[i] = orig;
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let analytic = grads.0[pi][i] as f64;
            let tol = atol + 1e-2 * numeric.abs().max(analytic.abs());
            let diff = (numeric - analytic).abs();
            assert!(
                diff <= tol,
                "{name}[{i}]: analytic {analytic:.6} vs numeric {numeric:.6} (diff {diff:.2e} > tol {tol:.2e})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::cross_entropy::IGNORE;
    use crate::tensor::elementwise::Activation;
    use crate::tensor::norm::NormKind;

    fn randn(params: &mut Params, name: &str, shape: &[usize], seed: u64) -> crate::autograd::ParamId {
        params.add(name, Tensor::randn(shape, 1.0, &mut rng(seed)))
    }

    #[test]
    fn linear_both_weight_layouts_with_bias() {
        for w_t in [false, true] {
            let mut p = Params::default();
            let x = randn(&mut p, "x", &[2, 3, 5], 1);
            let w = randn(&mut p, "w", if w_t { &[4, 5] } else { &[5, 4] }, 2);
            let b = randn(&mut p, "b", &[4], 3);
            check(&p, 1e-2, |g| {
                let (x, w, b) = (g.param(x), g.param(w), g.param(b));
                g.linear(x, w, Some(b), w_t)
            });
        }
    }

    #[test]
    fn layernorm_and_rmsnorm() {
        let mut p = Params::default();
        let x = randn(&mut p, "x", &[4, 6], 4);
        let w = randn(&mut p, "w", &[6], 5);
        let b = randn(&mut p, "b", &[6], 6);
        check(&p, 1e-2, |g| {
            let (x, w, b) = (g.param(x), g.param(w), g.param(b));
            g.norm(x, Some(w), Some(b), NormKind::LayerNorm, 1e-5)
        });
        check(&p, 1e-2, |g| {
            let (x, w) = (g.param(x), g.param(w));
            g.norm(x, Some(w), None, NormKind::RmsNorm, 1e-5)
        });
        let mut q = Params::default();
        let x = randn(&mut q, "x", &[4, 6], 7);
        check(&q, 1e-2, |g| {
            let x = g.param(x);
            g.norm(x, None, None, NormKind::RmsNorm, 1e-5)
        });
    }

    #[test]
    fn activations() {
        let mut p = Params::default();
        let mut x = Tensor::randn(&[40], 1.0, &mut rng(8));
        // Keep ReLU's inputs away from its kink, where finite differences are meaningless.
        x.data.iter_mut().for_each(|v| *v += 0.1f32.copysign(*v));
        let x = p.add("x", x);
        for f in [Activation::Gelu, Activation::Relu, Activation::Silu] {
            check(&p, 1e-2, |g| {
                let x = g.param(x);
                g.activation(x, f)
            });
        }
    }

    #[test]
    fn gated_units_including_a_repeated_input() {
        let mut p = Params::default();
        let gate = randn(&mut p, "gate", &[5, 8], 17);
        let up = randn(&mut p, "up", &[5, 8], 18);
        for f in [Activation::Silu, Activation::Gelu] {
            check(&p, 1e-2, |g| {
                let (gate, up) = (g.param(gate), g.param(up));
                g.glu(gate, up, f)
            });
        }
        check(&p, 1e-2, |g| {
            let gate = g.param(gate);
            g.glu(gate, gate, Activation::Silu)
        });
    }

    #[test]
    fn concat_of_three_parts_including_a_repeat() {
        let mut p = Params::default();
        let q = randn(&mut p, "q", &[4, 6], 19);
        let k = randn(&mut p, "k", &[4, 2], 20);
        check(&p, 1e-2, |g| {
            let (q, k) = (g.param(q), g.param(k));
            g.concat(&[q, k, k])
        });
    }

    #[test]
    fn rope_on_query_and_key_heads_of_packed_documents() {
        use crate::tensor::rope::{Llama3Scaling, RopeConfig};
        let rope = RopeConfig {
            theta: 100.0,
            scaling: Some(Llama3Scaling {
                factor: 4.0,
                low_freq_factor: 1.0,
                high_freq_factor: 2.0,
                original_max_position_embeddings: 4,
            }),
        };
        let mut p = Params::default();
        // Heads of 4: two rotated (q, k), one passed through (v).
        let qkv = randn(&mut p, "qkv", &[6, 12], 21);
        check(&p, 1e-2, |g| {
            let qkv = g.param(qkv);
            let angles = g.rope_angles(&[0, 1, 2, 0, 1, 7], 4, rope);
            g.rope(qkv, angles, 2)
        });
    }

    #[test]
    fn dropout_with_a_fixed_mask() {
        let mut p = Params::default();
        let x = randn(&mut p, "x", &[6, 5], 15);
        check(&p, 1e-2, |g| {
            g.enable_dropout(0.3, rng(3)); // the same mask at every evaluation
            let x = g.param(x);
            g.dropout(x)
        });
    }

    #[test]
    fn selected_rows_including_a_repeat() {
        let mut p = Params::default();
        let x = randn(&mut p, "x", &[5, 3], 16);
        check(&p, 1e-2, |g| {
            let x = g.param(x);
            g.rows(x, &[4, 0, 4])
        });
    }

    #[test]
    fn add_uses_both_inputs_and_a_repeated_one() {
        let mut p = Params::default();
        let a = randn(&mut p, "a", &[3, 4], 9);
        let b = randn(&mut p, "b", &[3, 4], 10);
        check(&p, 1e-2, |g| {
            let (a, b) = (g.param(a), g.param(b));
            let s = g.add(a, b);
            g.add(s, a)
        });
        // Scaled (a LoRA update), with the scaled input also read elsewhere.
        check(&p, 1e-2, |g| {
            let (a, b) = (g.param(a), g.param(b));
            let s = g.add_scaled(a, b, -2.5);
            g.add_scaled(s, b, 0.5)
        });
    }

    #[test]
    fn a_lora_layer_has_the_gradients_of_its_low_rank_path() {
        // y = x W + s · (x Aᵀ) Bᵀ with W [in, out], A [r, in], B [out, r].
        let mut p = Params::default();
        let x = randn(&mut p, "x", &[3, 5], 21);
        let w = randn(&mut p, "w", &[5, 4], 22);
        let a = randn(&mut p, "a", &[2, 5], 23);
        let b = randn(&mut p, "b", &[4, 2], 24);
        check(&p, 1e-2, |g| {
            let (x, w, a, b) = (g.param(x), g.param(w), g.param(a), g.param(b));
            let y = g.linear(x, w, None, false);
            let down = g.linear(x, a, None, true);
            let up = g.linear(down, b, None, true);
            g.add_scaled(y, up, 2.0)
        });
    }

    #[test]
    fn embedding_with_repeated_tokens_with_and_without_positions() {
        let mut p = Params::default();
        let wte = randn(&mut p, "wte", &[5, 3], 11);
        let wpe = randn(&mut p, "wpe", &[4, 3], 12);
        for learned_positions in [true, false] {
            check(&p, 1e-2, |g| {
                let wte = g.param(wte);
                let wpe = learned_positions.then(|| g.param(wpe));
                g.embedding(wte, wpe, &[1, 4, 1, 0, 2, 2], &[0, 1, 2, 0, 1, 3])
            });
        }
    }

    #[test]
    fn attention_causal_and_packed_documents() {
        let (b, t, c, n_head) = (2, 5, 8, 2);
        let mut p = Params::default();
        let qkv = randn(&mut p, "qkv", &[b * t, 3 * c], 13);
        // First sequence holds two documents (positions restart), the second one.
        let pos = [0, 1, 2, 0, 1, 0, 1, 2, 3, 4];
        check(&p, 1e-2, |g| {
            let qkv = g.param(qkv);
            g.attention(qkv, n_head, n_head, b, &pos, None)
        });
    }

    #[test]
    fn grouped_query_attention_both_paths_with_packed_documents() {
        // 4 query heads on 2 and on 1 key/value heads; T = 5 goes one row at a
        // time, T = 70 by GEMM in query blocks. The first sequence packs a
        // second document from its middle, the second is one document.
        let (b, n_head, hs) = (2, 4, 2);
        for (t, n_kv_head) in [(5, 2), (5, 1), (70, 2), (70, 1)] {
            let mut p = Params::default();
            let qkv = randn(&mut p, "qkv", &[b * t, (n_head + 2 * n_kv_head) * hs], 17);
            let pos: Vec<u32> = (0..b * t)
                .map(|r| if r < t / 2 || r >= t { r % t } else { r - t / 2 } as u32)
                .collect();
            check(&p, 1e-2, |g| {
                let qkv = g.param(qkv);
                g.attention(qkv, n_head, n_kv_head, b, &pos, None)
            });
        }
    }

    #[test]
    fn cross_entropy_with_ignored_targets() {
        let mut p = Params::default();
        let logits = randn(&mut p, "logits", &[4, 7], 14);
        check(&p, 1e-2, |g| {
            let l = g.param(logits);
            g.cross_entropy(l, &[3, IGNORE, 0, 6])
        });
    }
}
