//! Adam / AdamW with decoupled weight decay (PyTorch's `torch.optim.AdamW`).

use crate::autograd::{Grads, Params};
use crate::model::is_embedding;
use crate::tensor::MIN_ELEMS_PER_TASK;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The optimizer's state: first and second moments per parameter, and the step count.
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub t: u64,
    /// Which parameters get weight decay (matrices, not biases, norms or embeddings).
    decay: Vec<bool>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, params: &Params) -> Self {
        let decay = params
            .names
            .iter()
            .zip(&params.tensors)
            .map(|(name, t)| t.shape.len() == 2 && !is_embedding(name))
            .collect();
        AdamW {
            config,
            m: params.tensors.iter().map(|t| vec![0.0; t.numel()]).collect(),
            v: params.tensors.iter().map(|t| vec![0.0; t.numel()]).collect(),
            t: 0,
            decay,
        }
    }

    /// One update with learning rate `lr`:
    /// `p -= lr * (m̂ / (sqrt(v̂) + eps) + wd * p)`.
    pub fn step(&mut self, params: &mut Params, grads: &Grads, lr: f32) {
        self.t += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bc1 = 1.0 - beta1.powi(self.t as i32);
        let bc2 = 1.0 - beta2.powi(self.t as i32);
        // Over all tensors at once, each in chunks: a small model's many small
        // tensors are spread over the threads too.
        params
            .tensors
            .par_iter_mut()
            .zip(&grads.0)
            .zip(self.m.par_iter_mut().zip(&mut self.v))
            .zip(&self.decay)
            .for_each(|(((p, g), (m, v)), &decay)| {
                let wd = if decay { weight_decay } else { 0.0 };
                p.data
                    .par_chunks_mut(MIN_ELEMS_PER_TASK)
                    .zip(g.par_chunks(MIN_ELEMS_PER_TASK))
                    .zip(
                        m.par_chunks_mut(MIN_ELEMS_PER_TASK)
                            .zip(v.par_chunks_mut(MIN_ELEMS_PER_TASK)),
                    )
                    .for_each(|((p, g), (m, v))| {
                        for j in 0..p.len() {
                            m[j] = beta1 * m[j] + (1.0 - beta1) * g[j];
                            v[j] = beta2 * v[j] + (1.0 - beta2) * g[j] * g[j];
                            let update = (m[j] / bc1) / ((v[j] / bc2).sqrt() + eps);
                            p[j] -= lr * (update + wd * p[j]);
                        }
                    });
            });
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f32) -> f32 {
    let norm = grads.norm();
    if norm > max_norm && norm.is_finite() {
        let s = max_norm / norm;
        grads.scale(s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // After one step m̂ = g and v̂ = g², so the update is lr * sign(g) (eps aside).
        let mut p = Params::default();
        p.add("h.0.w", Tensor::from_vec(&[1, 3], vec![1.0, 2.0, 3.0]));
        let grads = Grads(vec![vec![0.5, -2.0, 0.0]]);
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            &p,
        );
        opt.step(&mut p, &grads, 0.1);
        let d = &p.tensors[0].data;
        assert!(
            (d[0] - 0.9).abs() < 1e-6 && (d[1] - 2.1).abs() < 1e-6 && d[2] == 3.0,
            "{d:?}"
        );
    }

    #[test]
    fn weight_decay_only_on_matrices() {
        let mut p = Params::default();
        p.add("h.0.mlp.c_fc.weight", Tensor::from_vec(&[1, 1], vec![1.0]));
        p.add("h.0.mlp.c_fc.bias", Tensor::from_vec(&[1], vec![1.0]));
        p.add("wte.weight", Tensor::from_vec(&[1, 1], vec![1.0]));
        p.add("model.embed_tokens.weight", Tensor::from_vec(&[1, 1], vec![1.0]));
        p.add(
            "model.layers.0.mlp.up_proj.weight",
            Tensor::from_vec(&[1, 1], vec![1.0]),
        );
        let grads = p.zero_grads();
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.5,
            },
            &p,
        );
        opt.step(&mut p, &grads, 0.1);
        let got: Vec<f32> = p.tensors.iter().map(|t| t.data[0]).collect();
        assert_eq!(got, [0.95, 1.0, 1.0, 1.0, 0.95]);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut g = Grads(vec![vec![3.0], vec![4.0]]);
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g.norm() - 1.0).abs() < 1e-6);
    }
}
