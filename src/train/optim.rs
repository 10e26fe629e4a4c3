//! Adam / AdamW with decoupled weight decay (PyTorch's `torch.optim.AdamW`).

use super::dist::{overlaps, shard, Comm, BUCKET};
use crate::autograd::{Grads, Params};
use crate::model::is_embedding;
use crate::tensor::MIN_ELEMS_PER_TASK;
use rayon::prelude::*;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The optimizer's state: first and second moments, and the step count, of
/// a part of the flat parameter vector (every trainable tensor end to end;
/// frozen ones have none): all of it, or one rank's shard under ZeRO-1 (see
/// [`super::dist`]).
pub struct AdamW {
    pub config: AdamWConfig,
    pub t: u64,
    /// The part of the flat parameter vector this optimizer updates.
    range: Range<usize>,
    /// Moments of `range`, in its order.
    m: Vec<f32>,
    v: Vec<f32>,
    /// Where each parameter starts in the flat vector, and its length (0 when frozen).
    spans: Vec<Range<usize>>,
    /// Which parameters get weight decay (matrices, not biases, norms or embeddings).
    decay: Vec<bool>,
}

impl AdamW {
    /// Moments for every parameter.
    pub fn new(config: AdamWConfig, params: &Params) -> Self {
        Self::for_shard(config, params, 0, 1)
    }

    /// Moments for rank `rank` of `size`'s shard of the parameters only (ZeRO-1).
    pub fn for_shard(config: AdamWConfig, params: &Params, rank: usize, size: usize) -> Self {
        let decay = params
            .names
            .iter()
            .zip(&params.tensors)
            .map(|(name, t)| t.shape.len() == 2 && !is_embedding(name))
            .collect();
        let mut start = 0;
        let spans: Vec<Range<usize>> = params
            .tensors
            .iter()
            .zip(&params.trainable)
            .map(|(t, &on)| {
                let len = if on { t.numel() } else { 0 };
                start += len;
                start - len..start
            })
            .collect();
        let range = shard(start, rank, size);
        AdamW {
            config,
            t: 0,
            m: vec![0.0; range.len()],
            v: vec![0.0; range.len()],
            range,
            spans,
            decay,
        }
    }

    /// Whether this optimizer holds the moments of every parameter.
    pub fn is_whole(&self) -> bool {
        self.range.len() == self.spans.last().map_or(0, |s| s.end)
    }

    /// The part of the flat parameter vector this optimizer updates.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Both moments of parameter `i` (of a whole optimizer; empty when it is frozen).
    pub fn moments(&self, i: usize) -> (&[f32], &[f32]) {
        assert!(self.is_whole(), "a shard holds part of the moments");
        (&self.m[self.spans[i].clone()], &self.v[self.spans[i].clone()])
    }

    /// The same, to write.
    pub fn moments_mut(&mut self, i: usize) -> (&mut [f32], &mut [f32]) {
        assert!(self.is_whole(), "a shard holds part of the moments");
        (&mut self.m[self.spans[i].clone()], &mut self.v[self.spans[i].clone()])
    }

    /// Keeps the moments of rank `rank` of `size`'s shard only (of a whole optimizer).
    pub fn keep_shard(&mut self, rank: usize, size: usize) {
        assert!(self.is_whole(), "already a shard");
        self.range = shard(self.range.len(), rank, size);
        self.m = self.m[self.range.clone()].to_vec();
        self.v = self.v[self.range.clone()].to_vec();
    }

    /// One update of the (trainable) parameters in `range` with learning rate `lr`:
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
        // The part of each tensor in range, with its moments.
        let mut parts = Vec::new();
        let (mut m, mut v) = (&mut self.m[..], &mut self.v[..]);
        let lens = self.spans.iter().map(|s| s.len());
        let mut tensors: Vec<Option<&mut [f32]>> = params.tensors.iter_mut().map(|t| Some(&mut t.data[..])).collect();
        for (i, r) in overlaps(lens, self.range.clone()) {
            let p = &mut tensors[i].take().expect("each tensor once")[r.clone()];
            let (mi, rest_m) = std::mem::take(&mut m).split_at_mut(r.len());
            let (vi, rest_v) = std::mem::take(&mut v).split_at_mut(r.len());
            (m, v) = (rest_m, rest_v);
            parts.push((p, &grads.0[i][r], mi, vi, self.decay[i]));
        }
        // Over all tensors at once, each in chunks: a small model's many small
        // tensors are spread over the threads too.
        parts.into_par_iter().for_each(|(p, g, m, v, decay)| {
            let wd = if decay { weight_decay } else { 0.0 };
            p.par_chunks_mut(MIN_ELEMS_PER_TASK)
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

/// An optimizer's moments on their way to rank 0's checkpoint, one tensor at
/// a time in the order a checkpoint holds them (parameter 0's `exp_avg`, its
/// `exp_avg_sq`, parameter 1's, …). A ZeRO-1 shard's pieces come from the
/// ranks that hold them, a bucket at a time, so no rank ever holds them all.
pub struct Moments<'a> {
    opt: &'a AdamW,
    comm: &'a dyn Comm,
    /// Tensors streamed so far.
    sent: usize,
    buf: Vec<f32>,
}

impl<'a> Moments<'a> {
    /// Every rank makes one and calls [`Moments::finish`] on it; rank 0 takes
    /// tensors with [`Moments::next`] in between.
    pub fn new(opt: &'a AdamW, comm: &'a dyn Comm) -> Self {
        Moments {
            opt,
            comm,
            sent: 0,
            buf: Vec::new(),
        }
    }

    /// The tensors to stream: two per parameter (a frozen one's are empty).
    pub fn len(&self) -> usize {
        2 * self.opt.spans.len()
    }

    /// Whether there is nothing to stream.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next tensor, handed to `sink` piece by piece (rank 0 only calls
    /// it). A failing `sink` still lets every piece arrive, so that the ranks
    /// stay in step; the first error is returned.
    pub fn next(&mut self, sink: &mut dyn FnMut(&[f32]) -> std::io::Result<()>) -> std::io::Result<()> {
        assert!(self.sent < self.len(), "every moment is streamed already");
        let (opt, comm) = (self.opt, self.comm);
        let (rank, size) = (comm.rank(), comm.size());
        let span = opt.spans[self.sent / 2].clone();
        let moment = if self.sent.is_multiple_of(2) { &opt.m } else { &opt.v };
        self.sent += 1;
        if opt.is_whole() {
            return if rank == 0 { sink(&moment[span]) } else { Ok(()) };
        }
        let len = opt.spans.last().map_or(0, |s| s.end);
        let mut result = Ok(());
        for owner in 0..size {
            let held = shard(len, owner, size);
            let (a, b) = (span.start.max(held.start), span.end.min(held.end));
            for start in (a..b).step_by(BUCKET) {
                let end = (start + BUCKET).min(b);
                // On the rank that holds it, where the piece is in its shard.
                let local = || start - opt.range.start..end - opt.range.start;
                if owner == 0 {
                    if rank == 0 && result.is_ok() {
                        result = sink(&moment[local()]);
                    }
                    continue;
                }
                self.buf.resize(end - start, 0.0);
                if rank == owner {
                    self.buf.copy_from_slice(&moment[local()]);
                }
                comm.send_to_root(owner, &mut self.buf);
                if rank == 0 && result.is_ok() {
                    result = sink(&self.buf);
                }
            }
        }
        result
    }

    /// Streams what rank 0 did not take (every rank calls it).
    pub fn finish(mut self) {
        while self.sent < self.len() {
            let _ = self.next(&mut |_| Ok(()));
        }
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
    fn zero_moments_stream_to_rank_0_in_checkpoint_order_even_past_a_failing_sink() {
        use crate::train::dist::testing::ThreadRanks;
        let mut p = Params::default();
        for (name, n) in [("a", BUCKET + 5), ("b", 3), ("c", BUCKET / 2)] {
            p.add(name, Tensor::from_vec(&[n], vec![0.0; n]));
        }
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let streamed: Vec<_> = std::thread::scope(|s| {
            let ranks = ThreadRanks::new(3).into_iter().map(|comm| {
                let p = &p;
                s.spawn(move || {
                    let mut opt = AdamW::for_shard(config, p, comm.rank(), 3);
                    // Each moment's value is its place in the flat vector, negated in v.
                    for (j, (m, v)) in opt.m.iter_mut().zip(&mut opt.v).enumerate() {
                        (*m, *v) = ((opt.range.start + j) as f32, -((opt.range.start + j) as f32));
                    }
                    let mut moments = Moments::new(&opt, &comm);
                    let mut tensors = Vec::new();
                    let mut failed = None;
                    if comm.rank() == 0 {
                        for k in 0..moments.len() {
                            let mut t = Vec::new();
                            // The second tensor's writer fails: the ranks stay in step.
                            let got = moments.next(&mut |piece| match k {
                                1 => Err(std::io::Error::other("disk full")),
                                _ => {
                                    t.extend_from_slice(piece);
                                    Ok(())
                                }
                            });
                            failed = failed.or(got.err());
                            tensors.push(t);
                        }
                    }
                    moments.finish();
                    (tensors, failed.map(|e| e.to_string()))
                })
            });
            ranks
                .collect::<Vec<_>>()
                .into_iter()
                .map(|r| r.join().unwrap())
                .collect()
        });
        let (tensors, failed) = &streamed[0];
        assert_eq!(failed.as_deref(), Some("disk full"));
        let mut start = 0;
        for (k, t) in tensors.iter().enumerate() {
            let n = p.tensors[k / 2].numel();
            if k == 1 {
                assert!(t.is_empty());
            } else {
                let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
                assert!(
                    t.len() == n && t.iter().enumerate().all(|(i, &x)| x == sign * (start + i) as f32),
                    "tensor {k}"
                );
            }
            start += if k % 2 == 1 { n } else { 0 };
        }
        assert!(streamed[1..].iter().all(|(t, _)| t.is_empty()), "rank 0 alone receives");
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut g = Grads(vec![vec![3.0], vec![4.0]]);
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g.norm() - 1.0).abs() < 1e-6);
    }
}
