//! Named parameter tensors and their gradients.

use crate::tensor::quant::{CannotQuantize, Kind, QMatrix};
use crate::tensor::{Bf16, Tensor, MIN_ELEMS_PER_TASK};

/// The tensors of a model, in a fixed order, with their names, and which of
/// them train.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pub names: Vec<String>,
    pub tensors: Vec<Tensor>,
    /// Whether each tensor trains (all do unless frozen, [`Params::set_trainable`]):
    /// a frozen one gets no gradient buffer, no optimizer moments, and the
    /// backward does no work that only it would need.
    pub trainable: Vec<bool>,
    /// Matrices held as bf16 for inference ([`Params::to_bf16`]); their f32 data is then empty.
    pub bf16: Vec<Option<Vec<Bf16>>>,
    /// Matrices held in ggml's quantized blocks for inference
    /// ([`Params::set_quantized`]); their f32 data is then empty.
    pub quant: Vec<Option<QMatrix>>,
}

/// Index of a parameter in its [`Params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

impl Params {
    pub fn add(&mut self, name: impl Into<String>, tensor: Tensor) -> ParamId {
        self.names.push(name.into());
        self.tensors.push(tensor);
        self.trainable.push(true);
        self.bf16.push(None);
        self.quant.push(None);
        ParamId(self.tensors.len() - 1)
    }

    /// Rows up to which every matrix product of these weights computes each
    /// row the same way whatever the other rows ([`crate::tensor::ROW_INVARIANT_ROWS`],
    /// lower with quantized matrices).
    pub fn row_invariant_rows(&self) -> usize {
        match self.quant.iter().any(Option::is_some) {
            true => crate::tensor::quant::ROW_INVARIANT_ROWS.min(crate::tensor::ROW_INVARIANT_ROWS),
            false => crate::tensor::ROW_INVARIANT_ROWS,
        }
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
            if t.shape.len() == 2 && !name.ends_with("wpe.weight") && half.is_none() && !t.data.is_empty() {
                *half = Some(t.data.iter().map(|&x| Bf16::from_f32(x)).collect());
                t.data = Vec::new();
            }
        }
    }

    /// Holds matrix `id` as `q` from now on, for inference (linear layers and
    /// the embedding lookup read it; nothing trains it), freeing its f32 and
    /// bf16 copies. A [`QMatrix`] is always `W` as `[out, in]` rows, as ggml
    /// stores it: for a parameter of shape `[a, b]` that is `a` rows of `b`
    /// values when layers use it `[out, in]` (`nn.Linear`, Llama, GGUF, and
    /// every token embedding), and `b` rows of `a` — the transpose — for
    /// GPT-2's Conv1D `[in, out]` (see [`Params::quantize`]).
    ///
    /// The GGUF loader feeds a tensor's raw blocks in this way: a GGUF tensor
    /// of `ne = [cols, rows]` is `QMatrix::new(kind, rows, cols, bytes)`.
    /// Panics when `q` is neither the parameter's shape nor its transpose.
    pub fn set_quantized(&mut self, id: ParamId, q: QMatrix) {
        let t = &mut self.tensors[id.0];
        let fits = t.shape.len() == 2
            && ((t.shape[0], t.shape[1]) == (q.rows(), q.cols()) || (t.shape[1], t.shape[0]) == (q.rows(), q.cols()));
        assert!(
            fits,
            "{}: a {} x {} quantized matrix for a parameter of shape {:?}",
            self.names[id.0],
            q.rows(),
            q.cols(),
            t.shape
        );
        t.data = Vec::new();
        self.bf16[id.0] = None;
        self.quant[id.0] = Some(q);
    }

    /// Quantizes matrix `id` (held as f32) to `kind` (Q8_0, Q4_0 or Q4_1:
    /// [`Kind::can_quantize`]) and holds it so ([`Params::set_quantized`]);
    /// `transpose` for a weight stored `[in, out]`. `gpt quantize` and the
    /// tests use it.
    pub fn quantize(&mut self, id: ParamId, kind: Kind, transpose: bool) -> Result<(), CannotQuantize> {
        let t = &self.tensors[id.0];
        assert!(
            t.shape.len() == 2 && t.data.len() == t.numel(),
            "{}: only a matrix held as f32 can be quantized",
            self.names[id.0]
        );
        let (a, b) = (t.shape[0], t.shape[1]);
        let q = if transpose {
            let mut wt = vec![0.0; a * b];
            for (i, row) in t.data.chunks(b).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    wt[j * a + i] = v;
                }
            }
            QMatrix::quantize(kind, &wt, b, a)?
        } else {
            QMatrix::quantize(kind, &t.data, a, b)?
        };
        self.set_quantized(id, q);
        Ok(())
    }

    /// The quantized matrix of a parameter, if it is held that way.
    pub fn get_quantized(&self, id: ParamId) -> Option<&QMatrix> {
        self.quant[id.0].as_ref()
    }

    /// The bf16 copy of a parameter, if it is held that way.
    pub fn get_bf16(&self, id: ParamId) -> Option<&[Bf16]> {
        self.bf16[id.0].as_deref()
    }

    /// Total number of scalars.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(Tensor::numel).sum()
    }

    /// Freezes (`false`) or unfreezes every tensor whose name `which` accepts.
    pub fn set_trainable(&mut self, trainable: bool, which: impl Fn(&str) -> bool) {
        for (name, t) in self.names.iter().zip(&mut self.trainable) {
            if which(name) {
                *t = trainable;
            }
        }
    }

    /// Number of scalars that train.
    pub fn trainable_count(&self) -> usize {
        let tensors = self.tensors.iter().zip(&self.trainable);
        tensors.filter(|(_, &t)| t).map(|(t, _)| t.numel()).sum()
    }

    /// Zeroed gradient buffers shaped like the trainable parameters; empty for frozen ones.
    pub fn zero_grads(&self) -> Grads {
        let bufs = self.tensors.iter().zip(&self.trainable);
        Grads(bufs.map(|(t, &on)| vec![0.0; if on { t.numel() } else { 0 }]).collect())
    }
}

/// One gradient buffer per parameter (empty for a frozen one), in the order of [`Params`].
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

    /// Whether every gradient is finite (and their norm too).
    pub fn is_finite(&self) -> bool {
        self.norm().is_finite()
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
