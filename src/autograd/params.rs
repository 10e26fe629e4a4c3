//! Named parameter tensors and their gradients.

use crate::tensor::{Bf16, Tensor, MIN_ELEMS_PER_TASK};

/// The trainable tensors of a model, in a fixed order, with their names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pub names: Vec<String>,
    pub tensors: Vec<Tensor>,
    /// Matrices held as bf16 for inference ([`Params::to_bf16`]); their f32 data is then empty.
    pub bf16: Vec<Option<Vec<Bf16>>>,
}

/// Index of a parameter in its [`Params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

impl Params {
    pub fn add(&mut self, name: impl Into<String>, tensor: Tensor) -> ParamId {
        self.names.push(name.into());
        self.tensors.push(tensor);
        self.bf16.push(None);
        ParamId(self.tensors.len() - 1)
    }

    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.tensors[id.0]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    /// Holds every matrix except `wpe` as bf16 (half the bytes), freeing its
    /// f32 copy: for inference, where reading the weights is the cost.
    pub fn to_bf16(&mut self) {
        for ((name, t), half) in self.names.iter().zip(&mut self.tensors).zip(&mut self.bf16) {
            if t.shape.len() == 2 && !name.ends_with("wpe.weight") && half.is_none() {
                *half = Some(t.data.iter().map(|&x| Bf16::from_f32(x)).collect());
                t.data = Vec::new();
            }
        }
    }

    /// The bf16 copy of a parameter, if it is held that way.
    pub fn get_bf16(&self, id: ParamId) -> Option<&[Bf16]> {
        self.bf16[id.0].as_deref()
    }

    /// Total number of scalars.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(Tensor::numel).sum()
    }

    /// Zeroed gradient buffers shaped like these parameters.
    pub fn zero_grads(&self) -> Grads {
        Grads(self.tensors.iter().map(|t| vec![0.0; t.numel()]).collect())
    }
}

/// One gradient buffer per parameter, in the order of [`Params`].
#[derive(Clone, Debug, PartialEq)]
pub struct Grads(pub Vec<Vec<f32>>);

impl Grads {
    pub fn zero(&mut self) {
        self.for_each_chunk(|c| c.fill(0.0));
    }

    /// Global L2 norm over all gradients. Sums of squares in f64 over fixed
    /// chunks, in parallel, then added in order: the same on any thread count.
    pub fn norm(&self) -> f32 {
        use rayon::prelude::*;
        let chunks: Vec<&[f32]> = self.0.iter().flat_map(|g| g.chunks(MIN_ELEMS_PER_TASK)).collect();
        let partial: Vec<f64> = chunks
            .par_iter()
            .map(|c| {
                let mut acc = [0.0f64; 8];
                let lanes = c.chunks_exact(8);
                let tail: f64 = lanes.remainder().iter().map(|&g| g as f64 * g as f64).sum();
                for x in lanes {
                    for i in 0..8 {
                        acc[i] += x[i] as f64 * x[i] as f64;
                    }
                }
                acc.iter().sum::<f64>() + tail
            })
            .collect();
        partial.iter().sum::<f64>().sqrt() as f32
    }

    /// Multiplies every gradient by `s`.
    pub fn scale(&mut self, s: f32) {
        self.for_each_chunk(|c| c.iter_mut().for_each(|g| *g *= s));
    }

    /// Runs `f` over all gradients, in chunks spread over the threads.
    fn for_each_chunk(&mut self, f: impl Fn(&mut [f32]) + Sync) {
        use rayon::prelude::*;
        let mut chunks: Vec<&mut [f32]> = self
            .0
            .iter_mut()
            .flat_map(|g| g.chunks_mut(MIN_ELEMS_PER_TASK))
            .collect();
        chunks.par_iter_mut().for_each(|c| f(c));
    }
}
