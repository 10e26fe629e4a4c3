//! The tape: ops run forward as they are recorded, and backward in reverse.

use super::{Grads, ParamId, Params, Workspace};
use crate::tensor::attention::{
    attention_backward, attention_forward, backward_scratch_len, AttnShape, KeysValues, Seqs,
};
use crate::tensor::concat::{concat_backward, concat_forward};
use crate::tensor::cross_entropy::{cross_entropy_backward, cross_entropy_backward_in_place, cross_entropy_forward};
use crate::tensor::elementwise::{
    add_forward, axpy_parallel, dropout_forward, glu_backward, glu_forward, mul_accumulate, Activation,
};
use crate::tensor::embedding::{embedding_backward, embedding_forward, embedding_forward_quantized};
use crate::tensor::linear::{
    linear_backward, linear_backward_input, linear_forward, scratch_len, LinearShape, Precision,
};
use crate::tensor::norm::{norm_backward, norm_forward, NormKind};
use crate::tensor::quant::{
    prompt_precision, qmatmul, qmatmul_backward_input, qmatmul_backward_scratch_len, qmatmul_scratch_len, QMatrix,
};
use crate::tensor::rope::{rope_angles, rope_backward, rope_forward, RopeConfig};
use crate::tensor::{accumulate, copy, Bf16, Rng, Tensor};
use std::mem;

/// A value recorded on a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// One layer of a KV cache: `k` and `v` hold `[slots, capacity, n_kv_head · head_size]`;
/// sequence `b` of a call continues slot `slots[b]`, whose first `past[slots[b]]` rows are filled.
pub struct KvSlot<'a> {
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
    pub capacity: usize,
    pub slots: &'a [usize],
    pub past: &'a [usize],
    /// Scratch for each sequence's (slot, keys after the call), kept by the cache so no step allocates.
    pub seqs: &'a mut Vec<(usize, usize)>,
}

enum Value {
    Param(ParamId),
    Owned(Vec<f32>),
}

/// How a node was computed, and what its backward needs.
enum Op {
    Leaf,
    Embedding {
        wte: Var,
        wpe: Option<Var>,
        tokens: Vec<u32>,
        pos: Vec<u32>,
    },
    Linear {
        x: Var,
        w: Var,
        b: Option<Var>,
        shape: LinearShape,
    },
    Norm {
        x: Var,
        w: Option<Var>,
        b: Option<Var>,
        kind: NormKind,
        mean: Vec<f32>,
        rstd: Vec<f32>,
    },
    Activation {
        x: Var,
        f: Activation,
    },
    Glu {
        gate: Var,
        up: Var,
        f: Activation,
    },
    Concat {
        parts: [Option<Var>; 3],
    },
    Rope {
        x: Var,
        /// `[N, head_size]`, of [`Graph::rope_angles`].
        angles: Var,
        heads: usize,
    },
    Add {
        a: Var,
        b: Var,
        scale: f32,
    },
    Dropout {
        x: Var,
        mask: Vec<f32>,
    },
    Rows {
        x: Var,
        rows: Vec<usize>,
    },
    /// Its backward also reads the node's own output.
    Attention {
        qkv: Var,
        shape: AttnShape,
        pos: Vec<u32>,
        lse: Vec<f32>,
    },
    CrossEntropy {
        logits: Var,
        targets: Vec<u32>,
        lse: Vec<f32>,
        count: usize,
    },
}

impl Op {
    /// The nodes this op reads.
    fn inputs(&self) -> [Option<Var>; 3] {
        match *self {
            Op::Leaf => [None; 3],
            Op::Embedding { wte, wpe, .. } => [Some(wte), wpe, None],
            Op::Linear { x, w, b, .. } => [Some(x), Some(w), b],
            Op::Norm { x, w, b, .. } => [Some(x), w, b],
            Op::Activation { x, .. } | Op::Dropout { x, .. } | Op::Rows { x, .. } => [Some(x), None, None],
            Op::Glu { gate, up, .. } => [Some(gate), Some(up), None],
            Op::Rope { x, angles, .. } => [Some(x), Some(angles), None],
            Op::Concat { parts } => parts,
            Op::Add { a, b, .. } => [Some(a), Some(b), None],
            Op::Attention { qkv, .. } => [Some(qkv), None, None],
            Op::CrossEntropy { logits, .. } => [Some(logits), None, None],
        }
    }
}

/// A node's shape, held inline (at most 4 dimensions) so recording an op allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dims {
    d: [usize; 4],
    rank: usize,
}

impl Dims {
    fn new(s: &[usize]) -> Self {
        assert!(s.len() <= 4, "tensors have at most 4 dimensions");
        let mut d = [0; 4];
        d[..s.len()].copy_from_slice(s);
        Dims { d, rank: s.len() }
    }

    /// The same shape with another last dimension.
    fn with_last(mut self, last: usize) -> Self {
        self.d[self.rank - 1] = last;
        self
    }
}

impl std::ops::Deref for Dims {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.d[..self.rank]
    }
}

pub(super) struct Node {
    shape: Dims,
    value: Value,
    op: Op,
}

/// A tape of tensor ops over a set of parameters.
pub struct Graph<'p> {
    params: &'p Params,
    nodes: Vec<Node>,
    param_vars: Vec<Option<Var>>,
    ws: Workspace,
    /// Keep what backward needs; off for inference.
    grad_enabled: bool,
    /// Dropout probability and the generator for its masks (training only).
    dropout: Option<(f32, Rng)>,
    /// How linear layers' GEMMs round their inputs.
    precision: Precision,
    /// How prompt-sized products of quantized weights round theirs: as
    /// `precision` in training, at [`prompt_precision`] in inference.
    quant_precision: Precision,
    /// During backward: whether each node's gradient is needed, i.e. whether a
    /// trainable parameter is among what it was computed from.
    needs: Vec<bool>,
}

impl<'p> Graph<'p> {
    /// A graph for training: ops keep what their backward needs.
    pub fn new(params: &'p Params, mut ws: Workspace) -> Self {
        let nodes = std::mem::take(&mut ws.nodes);
        let mut param_vars = std::mem::take(&mut ws.param_vars);
        param_vars.clear();
        param_vars.resize(params.tensors.len(), None);
        let needs = std::mem::take(&mut ws.needs);
        Graph {
            params,
            nodes,
            param_vars,
            ws,
            grad_enabled: true,
            dropout: None,
            precision: Precision::F32,
            quant_precision: Precision::F32,
            needs,
        }
    }

    /// Turns on dropout with probability `p` for [`Graph::dropout`] (and
    /// those [`Graph::dropout_with`] gives), with masks from `rng`.
    pub fn enable_dropout(&mut self, p: f32, rng: Rng) {
        assert!((0.0..1.0).contains(&p), "dropout must be in [0, 1)");
        self.dropout = self.grad_enabled.then_some((p, rng));
    }

    /// Rounds the inputs of linear layers' GEMMs (forward and backward) to `precision`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.quant_precision = precision;
    }

    /// A graph for inference: no backward, scratch buffers go straight back to the pool.
    pub fn inference(params: &'p Params, ws: Workspace) -> Self {
        Graph {
            grad_enabled: false,
            quant_precision: prompt_precision(),
            ..Graph::new(params, ws)
        }
    }

    /// Where the tape is now, for [`Graph::release_since`].
    pub fn mark(&self) -> usize {
        self.nodes.len()
    }

    /// Inference only (training keeps them for backward): hands the values
    /// computed since `mark` back to the workspace, all but `keep`'s; the
    /// caller reads none of them again (a block's insides once its output
    /// exists). A forward then holds one block's activations, not every
    /// block's: a long prompt's prefill takes megabytes, not a gigabyte.
    pub fn release_since(&mut self, mark: usize, keep: Var) {
        if self.grad_enabled {
            return;
        }
        for i in (mark..self.nodes.len()).filter(|&i| i != keep.0) {
            if let Value::Owned(buf) = &mut self.nodes[i].value {
                let buf = mem::take(buf);
                self.ws.give(buf);
            }
        }
    }

    /// Ends the graph and returns every buffer to the workspace.
    pub fn finish(mut self) -> Workspace {
        let mut nodes = mem::take(&mut self.nodes);
        for node in nodes.drain(..) {
            self.recycle(node);
        }
        self.ws.nodes = nodes;
        self.ws.param_vars = mem::take(&mut self.param_vars);
        self.ws.needs = mem::take(&mut self.needs);
        self.ws.trim();
        self.ws
    }

    fn recycle(&mut self, node: Node) {
        if let Value::Owned(buf) = node.value {
            self.ws.give(buf);
        }
        match node.op {
            Op::Norm { mean, rstd, .. } => {
                self.ws.give(mean);
                self.ws.give(rstd);
            }
            Op::Attention { lse, .. } => self.ws.give(lse),
            Op::Dropout { mask, .. } => self.ws.give(mask),
            Op::CrossEntropy { lse, .. } => self.ws.give(lse),
            _ => {}
        }
    }

    /// The node for a parameter (one per parameter, so tied uses share a gradient).
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(v) = self.param_vars[id.0] {
            return v;
        }
        let shape = Dims::new(&self.params.get(id).shape);
        let v = self.push(shape, Value::Param(id), Op::Leaf);
        self.param_vars[id.0] = Some(v);
        v
    }

    /// A constant input (no gradient).
    pub fn constant(&mut self, t: &Tensor) -> Var {
        let mut buf = self.ws.take(t.numel());
        buf.copy_from_slice(&t.data);
        self.push(Dims::new(&t.shape), Value::Owned(buf), Op::Leaf)
    }

    pub fn value(&self, v: Var) -> &[f32] {
        match &self.nodes[v.0].value {
            Value::Param(id) => {
                assert!(
                    self.params.get_bf16(*id).is_none() && self.params.get_quantized(*id).is_none(),
                    "{} is held as bf16 or quantized: only linear and embedding read it",
                    self.params.names[id.0]
                );
                &self.params.get(*id).data
            }
            Value::Owned(buf) => buf,
        }
    }

    /// The bf16 weights behind `v`, if it is a parameter held that way.
    fn bf16(&self, v: Var) -> Option<&'p [Bf16]> {
        let params: &'p Params = self.params;
        match self.nodes[v.0].value {
            Value::Param(id) => params.get_bf16(id),
            Value::Owned(_) => None,
        }
    }

    /// Whether `v` is a parameter that trains in a graph that computes gradients.
    fn trains(&self, v: Var) -> bool {
        match self.nodes[v.0].value {
            Value::Param(id) => self.grad_enabled && self.params.trainable[id.0],
            Value::Owned(_) => false,
        }
    }

    /// The quantized weights behind `v`, if it is a parameter held that way.
    fn quantized(&self, v: Var) -> Option<&'p QMatrix> {
        let params: &'p Params = self.params;
        match self.nodes[v.0].value {
            Value::Param(id) => params.get_quantized(id),
            Value::Owned(_) => None,
        }
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        &self.nodes[v.0].shape
    }

    fn dims(&self, v: Var) -> Dims {
        self.nodes[v.0].shape
    }

    /// Rows and last dimension of a value seen as a matrix.
    fn rows_cols(&self, v: Var) -> (usize, usize) {
        let shape = self.shape(v);
        let cols = *shape.last().expect("scalar has no rows");
        (shape.iter().product::<usize>() / cols.max(1), cols)
    }

    fn push(&mut self, shape: Dims, value: Value, op: Op) -> Var {
        self.nodes.push(Node { shape, value, op });
        Var(self.nodes.len() - 1)
    }

    /// A scratch buffer that backward needs, or that goes back to the pool at once in inference.
    fn keep(&mut self, buf: Vec<f32>) -> Vec<f32> {
        if self.grad_enabled {
            buf
        } else {
            self.ws.give(buf);
            Vec::new()
        }
    }

    /// `tokens[N], pos[N] -> [N, C]`: `wte[token]`, plus `wpe[pos]` if there is a position table.
    pub fn embedding(&mut self, wte: Var, wpe: Option<Var>, tokens: &[u32], pos: &[u32]) -> Var {
        let (vocab, c) = (self.shape(wte)[0], self.shape(wte)[1]);
        assert_eq!(tokens.len(), pos.len());
        assert!(
            tokens.iter().all(|&t| (t as usize) < vocab),
            "token id outside the vocabulary"
        );
        if let Some(wpe) = wpe {
            let n_ctx = self.shape(wpe)[0];
            assert!(pos.iter().all(|&p| (p as usize) < n_ctx), "position beyond n_ctx");
        }
        let mut out = self.ws.take(tokens.len() * c);
        let wpe_value = wpe.map(|w| self.value(w));
        match (self.bf16(wte), self.quantized(wte)) {
            (Some(w), _) => embedding_forward(&mut out, tokens, pos, w, wpe_value, c),
            (_, Some(w)) => {
                assert!(
                    !self.trains(wte),
                    "quantized weights do not train: only frozen ones may be quantized"
                );
                assert_eq!(
                    (w.rows(), w.cols()),
                    (vocab, c),
                    "embedding: quantized table of another shape"
                );
                embedding_forward_quantized(&mut out, tokens, pos, w, wpe_value, c)
            }
            (None, None) => embedding_forward(&mut out, tokens, pos, self.value(wte), wpe_value, c),
        }
        let (tokens, pos) = if self.grad_enabled {
            (tokens.to_vec(), pos.to_vec())
        } else {
            (Vec::new(), Vec::new())
        };
        self.push(
            Dims::new(&[out.len() / c, c]),
            Value::Owned(out),
            Op::Embedding { wte, wpe, tokens, pos },
        )
    }

    /// `x[.., in] @ w + b -> [.., out]`; `w` is `[in, out]`, or `[out, in]` with `w_t`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>, w_t: bool) -> Var {
        let (n, d_in) = self.rows_cols(x);
        let ws = self.shape(w);
        let (w_in, d_out) = if w_t { (ws[1], ws[0]) } else { (ws[0], ws[1]) };
        assert_eq!(w_in, d_in, "linear: input has {d_in} features, weight expects {w_in}");
        let shape = LinearShape {
            n,
            d_in,
            d_out,
            w_t,
            precision: self.precision,
        };
        let mut out = self.ws.take(n * d_out);
        if let Some(q) = self.quantized(w) {
            assert!(
                !self.trains(w),
                "quantized weights do not train: only frozen ones may be quantized"
            );
            assert_eq!(
                (q.rows(), q.cols()),
                (d_out, d_in),
                "linear: a quantized matrix holds W as [out, in] rows"
            );
            let mut scratch = self.ws.take(qmatmul_scratch_len(q, n));
            qmatmul(&mut out, self.value(x), n, q, self.quant_precision, &mut scratch);
            self.ws.give(scratch);
            if let Some(b) = b {
                let b = self.value(b);
                out.chunks_mut(d_out)
                    .for_each(|o| o.iter_mut().zip(b).for_each(|(o, b)| *o += b));
            }
            let out_shape = self.dims(x).with_last(d_out);
            return self.push(out_shape, Value::Owned(out), Op::Linear { x, w, b, shape });
        }
        let w16 = self.bf16(w);
        let mut scratch = match w16 {
            Some(_) => self.ws.take(scratch_len::<Bf16>(shape)),
            None => self.ws.take(scratch_len::<f32>(shape)),
        };
        let bias = b.map(|b| self.value(b));
        match w16 {
            Some(w16) => {
                assert!(!self.grad_enabled, "bf16 weights are for inference only");
                linear_forward(&mut out, self.value(x), w16, bias, shape, &mut scratch)
            }
            None => linear_forward(&mut out, self.value(x), self.value(w), bias, shape, &mut scratch),
        }
        self.ws.give(scratch);
        let out_shape = self.dims(x).with_last(d_out);
        self.push(out_shape, Value::Owned(out), Op::Linear { x, w, b, shape })
    }

    /// LayerNorm or RMSNorm over the last dimension, with optional weight and bias.
    pub fn norm(&mut self, x: Var, w: Option<Var>, b: Option<Var>, kind: NormKind, eps: f32) -> Var {
        let (n, c) = self.rows_cols(x);
        let mut out = self.ws.take(n * c);
        let (mut mean, mut rstd) = (self.ws.take(n), self.ws.take(n));
        norm_forward(
            &mut out,
            &mut mean,
            &mut rstd,
            self.value(x),
            w.map(|w| self.value(w)),
            b.map(|b| self.value(b)),
            c,
            eps,
            kind,
        );
        let (mean, rstd) = (self.keep(mean), self.keep(rstd));
        let shape = self.dims(x);
        self.push(
            shape,
            Value::Owned(out),
            Op::Norm {
                x,
                w,
                b,
                kind,
                mean,
                rstd,
            },
        )
    }

    pub fn activation(&mut self, x: Var, f: Activation) -> Var {
        let mut out = self.ws.take(self.value(x).len());
        f.forward(&mut out, self.value(x));
        let shape = self.dims(x);
        self.push(shape, Value::Owned(out), Op::Activation { x, f })
    }

    /// Gated unit `f(gate) * up`, element-wise (Llama's SwiGLU MLP with SiLU).
    pub fn glu(&mut self, gate: Var, up: Var, f: Activation) -> Var {
        assert_eq!(self.shape(gate), self.shape(up), "glu: shapes differ");
        let mut out = self.ws.take(self.value(gate).len());
        glu_forward(&mut out, self.value(gate), self.value(up), f);
        let shape = self.dims(gate);
        self.push(shape, Value::Owned(out), Op::Glu { gate, up, f })
    }

    /// `parts[i][N, w_i] -> [N, Σ w_i]`: up to three values side by side,
    /// row by row (Llama's q, k and v into one fused `qkv`).
    pub fn concat(&mut self, parts: &[Var]) -> Var {
        assert!((1..=3).contains(&parts.len()), "concat takes one to three parts");
        let n = self.rows_cols(parts[0]).0;
        let width = parts.iter().map(|&p| self.rows_cols(p).1).sum();
        let mut out = self.ws.take(n * width);
        let mut offset = 0;
        for &p in parts {
            let (rows, w) = self.rows_cols(p);
            assert_eq!(rows, n, "concat: parts have different numbers of rows");
            concat_forward(&mut out, width, self.value(p), offset, w);
            offset += w;
        }
        let mut ids = [None; 3];
        ids.iter_mut().zip(parts).for_each(|(id, &p)| *id = Some(p));
        let shape = self.dims(parts[0]).with_last(width);
        self.push(shape, Value::Owned(out), Op::Concat { parts: ids })
    }

    /// The rotary embeddings' cos and sin for rows at positions `pos[N]`,
    /// `[N, head_size]` (a constant: computed once per forward, read by
    /// every layer's [`Graph::rope`]).
    pub fn rope_angles(&mut self, pos: &[u32], head_size: usize, rope: RopeConfig) -> Var {
        let mut angles = self.ws.take(pos.len() * head_size);
        rope_angles(&mut angles, pos, head_size, rope);
        self.push(Dims::new(&[pos.len(), head_size]), Value::Owned(angles), Op::Leaf)
    }

    /// Rotary position embedding of `x[N, width]`: the first `heads` heads of
    /// each row (the queries and keys of a fused `qkv`) rotated by the row's
    /// `angles` (`[N, head_size]`, of [`Graph::rope_angles`]); the rest passes through.
    pub fn rope(&mut self, x: Var, angles: Var, heads: usize) -> Var {
        let (n, width) = self.rows_cols(x);
        let (rows, hs) = self.rows_cols(angles);
        assert_eq!(rows, n, "one row of angles per row");
        let mut out = self.ws.take(n * width);
        rope_forward(&mut out, self.value(x), self.value(angles), hs, width, heads);
        let shape = self.dims(x);
        self.push(shape, Value::Owned(out), Op::Rope { x, angles, heads })
    }

    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.add_scaled(a, b, 1.0)
    }

    /// `a + scale · b`, elementwise (a LoRA update is added so).
    pub fn add_scaled(&mut self, a: Var, b: Var, scale: f32) -> Var {
        assert_eq!(self.shape(a), self.shape(b), "add: shapes differ");
        let mut out = self.ws.take(self.value(a).len());
        add_forward(&mut out, self.value(a), self.value(b), scale);
        let shape = self.dims(a);
        self.push(shape, Value::Owned(out), Op::Add { a, b, scale })
    }

    /// Dropout when enabled ([`Graph::enable_dropout`]); otherwise `x` itself.
    pub fn dropout(&mut self, x: Var) -> Var {
        let p = self.dropout.as_ref().map_or(0.0, |d| d.0);
        self.dropout_with(x, p)
    }

    /// Dropout with probability `p` (a LoRA layer's own), masks from the
    /// generator of [`Graph::enable_dropout`]; without one, or at `p` = 0, `x` itself.
    pub fn dropout_with(&mut self, x: Var, p: f32) -> Var {
        if p == 0.0 {
            return x;
        }
        let Some((base, mut rng)) = self.dropout.take() else {
            return x;
        };
        assert!((0.0..1.0).contains(&p), "dropout must be in [0, 1)");
        let n = self.value(x).len();
        let (mut out, mut mask) = (self.ws.take(n), self.ws.take(n));
        dropout_forward(&mut out, &mut mask, self.value(x), p, &mut rng);
        self.dropout = Some((base, rng));
        let shape = self.dims(x);
        self.push(shape, Value::Owned(out), Op::Dropout { x, mask })
    }

    /// `x[N, C] -> [rows.len(), C]`: the listed rows (e.g. each sequence's last token).
    pub fn rows(&mut self, x: Var, rows: &[usize]) -> Var {
        let (n, c) = self.rows_cols(x);
        assert!(rows.iter().all(|&r| r < n), "row index out of range");
        let mut out = self.ws.take(rows.len() * c);
        for (o, &r) in out.chunks_mut(c).zip(rows) {
            o.copy_from_slice(&self.value(x)[r * c..(r + 1) * c]);
        }
        let rows = if self.grad_enabled { rows.to_vec() } else { Vec::new() };
        self.push(
            Dims::new(&[out.len() / c.max(1), c]),
            Value::Owned(out),
            Op::Rows { x, rows },
        )
    }

    /// Causal self-attention: `qkv[B·T, (n_head + 2·n_kv_head)·hs] -> [B·T, n_head·hs]`
    /// (all query heads, then the key heads, then the value heads; query head
    /// `h` reads key/value head `h / (n_head / n_kv_head)`), each token
    /// attending to the `pos + 1` tokens of its document that end at itself.
    /// With a KV cache, each sequence's keys and values are appended after
    /// those cached in its slot and its queries attend over all of them (inference only).
    pub fn attention(
        &mut self,
        qkv: Var,
        n_head: usize,
        n_kv_head: usize,
        b: usize,
        pos: &[u32],
        cache: Option<KvSlot>,
    ) -> Var {
        let (n, width) = self.rows_cols(qkv);
        assert!(
            n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
            "attention: {n_head} query heads cannot share {n_kv_head} key/value heads evenly"
        );
        let heads = n_head + 2 * n_kv_head;
        assert!(
            width.is_multiple_of(heads) && b > 0 && n.is_multiple_of(b) && pos.len() == n,
            "attention: qkv [{n}, {width}] is not {b} sequences of {heads} heads with {} positions",
            pos.len()
        );
        let shape = AttnShape {
            b,
            t: n / b,
            n_head,
            n_kv_head,
            head_size: width / heads,
        };
        let (c, kv_c) = (shape.c(), shape.kv_c());
        let mut out = self.ws.take(n * c);
        let mut lse = self.ws.take(n * n_head);
        let x = self.value(qkv);
        match cache {
            None => attention_forward(&mut out, &mut lse, x, KeysValues::from_qkv(x, shape), pos, shape),
            Some(slot) => {
                assert!(!self.grad_enabled, "the KV cache is for inference only");
                assert_eq!(slot.slots.len(), b, "KV cache: one slot per sequence");
                let size = slot.past.len() * slot.capacity * kv_c;
                assert!(
                    slot.k.len() == size && slot.v.len() == size,
                    "KV cache slot is not [{}, {}, {kv_c}]",
                    slot.past.len(),
                    slot.capacity
                );
                // (slot, keys after this call) of each sequence.
                let seqs = slot.seqs;
                seqs.clear();
                seqs.extend(slot.slots.iter().map(|&s| (s, slot.past[s] + shape.t)));
                assert!(seqs.iter().all(|&(_, len)| len <= slot.capacity), "KV cache is full");
                for (row, src) in x.chunks(width).enumerate() {
                    let (s, len) = seqs[row / shape.t];
                    let dst = (s * slot.capacity + len - shape.t + row % shape.t) * kv_c;
                    slot.k[dst..dst + kv_c].copy_from_slice(&src[c..c + kv_c]);
                    slot.v[dst..dst + kv_c].copy_from_slice(&src[c + kv_c..]);
                }
                let kv = KeysValues {
                    k: slot.k,
                    v: slot.v,
                    stride: kv_c,
                    seq_rows: slot.capacity,
                    seqs: Seqs::Each(seqs),
                };
                attention_forward(&mut out, &mut lse, x, kv, pos, shape);
            }
        }
        let lse = self.keep(lse);
        let pos = if self.grad_enabled { pos.to_vec() } else { Vec::new() };
        let out_shape = self.dims(qkv).with_last(c);
        self.push(out_shape, Value::Owned(out), Op::Attention { qkv, shape, pos, lse })
    }

    /// Mean cross-entropy of `logits[N, V]` against `targets[N]` (`IGNORE` = no target). A scalar.
    pub fn cross_entropy(&mut self, logits: Var, targets: &[u32]) -> Var {
        let (n, v) = self.rows_cols(logits);
        assert_eq!(targets.len(), n);
        let mut lse = self.ws.take(n);
        let (sum, count) = cross_entropy_forward(&mut lse, self.value(logits), targets, v);
        let mut out = self.ws.take(1);
        out[0] = if count == 0 { 0.0 } else { (sum / count as f64) as f32 };
        let lse = self.keep(lse);
        let targets = if self.grad_enabled {
            targets.to_vec()
        } else {
            Vec::new()
        };
        self.push(
            Dims::new(&[]),
            Value::Owned(out),
            Op::CrossEntropy {
                logits,
                targets,
                lse,
                count,
            },
        )
    }

    /// Back-propagates from the scalar `loss` and adds every parameter's gradient into `grads`.
    ///
    /// Logits that only a cross-entropy reads become their own gradient
    /// (no second `[N, vocab]` buffer): after backward their value is empty.
    pub fn backward(&mut self, loss: Var, grads: &mut Grads) {
        assert_eq!(self.value(loss).len(), 1, "backward starts from a scalar");
        self.backward_from(loss, vec![1.0], grads);
    }

    /// Back-propagates `seed` = d(objective)/d(`out`) and adds into the
    /// trainable parameters' `grads` (a frozen one's buffer stays empty).
    /// Only nodes computed from a trainable parameter are visited: no
    /// weight gradient for a frozen weight, and nothing below the lowest
    /// trainable parameter.
    pub fn backward_from(&mut self, out: Var, seed: Vec<f32>, grads: &mut Grads) {
        assert!(self.grad_enabled, "backward on an inference graph");
        assert_eq!(grads.0.len(), self.params.tensors.len());
        self.find_needs(out);
        let mut g: Vec<Vec<f32>> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        // Parameters accumulate straight into their gradient buffers.
        for (pid, var) in self.param_vars.iter().enumerate() {
            if let Some(v) = var {
                g[v.0] = mem::take(&mut grads.0[pid]);
            }
        }
        g[out.0] = seed;
        for i in (0..=out.0).rev() {
            if g[i].is_empty() || !self.needs[i] || matches!(self.nodes[i].op, Op::Leaf) {
                continue;
            }
            let mut dout = mem::take(&mut g[i]);
            self.backward_node(i, &mut dout, &mut g);
            self.ws.give(dout); // unless an input took it over
        }
        for (pid, var) in self.param_vars.iter().enumerate() {
            if let Some(v) = var {
                grads.0[pid] = mem::take(&mut g[v.0]);
            }
        }
        g.into_iter().for_each(|buf| self.ws.give(buf));
    }

    /// Marks which nodes up to `out` need a gradient: trainable parameters and
    /// what is computed from one.
    fn find_needs(&mut self, out: Var) {
        let mut needs = mem::take(&mut self.needs);
        needs.clear();
        for node in &self.nodes[..=out.0] {
            let need = match (&node.op, &node.value) {
                (Op::Leaf, Value::Param(id)) => self.params.trainable[id.0],
                (Op::Leaf, Value::Owned(_)) => false,
                (op, _) => op.inputs().iter().flatten().any(|v| needs[v.0]),
            };
            needs.push(need);
        }
        self.needs = needs;
    }

    /// The gradient buffer of `v` ([`Graph::grad_buf`]) if `v` needs one, else
    /// zeroed scratch for a kernel that computes it anyway; [`Graph::put_grad`] after.
    fn grad_or_scratch(&mut self, g: &mut [Vec<f32>], v: Var) -> Vec<f32> {
        if self.needs[v.0] {
            self.grad_buf(g, v)
        } else {
            self.ws.take_zeroed(self.value(v).len())
        }
    }

    /// Puts back what [`Graph::grad_or_scratch`] gave.
    fn put_grad(&mut self, g: &mut [Vec<f32>], v: Var, buf: Vec<f32>) {
        if self.needs[v.0] {
            g[v.0] = buf;
        } else {
            self.ws.give(buf);
        }
    }

    /// Takes the gradient buffer of `v` out of `g`, zero-filled on first use.
    fn grad_buf(&mut self, g: &mut [Vec<f32>], v: Var) -> Vec<f32> {
        let buf = mem::take(&mut g[v.0]);
        if buf.is_empty() {
            self.ws.take_zeroed(self.value(v).len())
        } else {
            buf
        }
    }

    /// The gradient buffer of `v` taken out of `g`, and whether to add to it:
    /// a first gradient is written into a fresh buffer, not added to zeros.
    fn input_grad(&mut self, g: &mut [Vec<f32>], v: Var) -> (Vec<f32>, bool) {
        if g[v.0].is_empty() {
            (self.ws.take(self.value(v).len()), false)
        } else {
            (mem::take(&mut g[v.0]), true)
        }
    }

    fn backward_node(&mut self, i: usize, dout: &mut Vec<f32>, g: &mut [Vec<f32>]) {
        if let Op::Add { a, b, scale } = self.nodes[i].op {
            return self.add_backward(a, b, scale, dout, g);
        }
        let dout: &[f32] = dout;
        // Inputs' gradient buffers are taken out of `g`, filled by the kernel, and put back.
        macro_rules! with_grad {
            ($v:expr, |$d:ident| $body:expr) => {{
                let v: Var = $v;
                let mut $d = self.grad_buf(g, v);
                $body;
                g[v.0] = $d;
            }};
        }
        let node = &self.nodes[i];
        match &node.op {
            Op::Leaf => {}
            Op::Embedding { wte, wpe, .. } => {
                let (wte, c) = (*wte, node.shape[1]);
                let wpe = wpe.filter(|w| self.needs[w.0]);
                let mut dwte = self.grad_or_scratch(g, wte);
                let mut dwpe = wpe.map(|w| self.grad_buf(g, w));
                let Op::Embedding { tokens, pos, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                embedding_backward(&mut dwte, dwpe.as_deref_mut(), dout, tokens, pos, c);
                self.put_grad(g, wte, dwte);
                if let (Some(wpe), Some(dwpe)) = (wpe, dwpe) {
                    g[wpe.0] = dwpe;
                }
            }
            &Op::Linear { x, w, b, shape } => {
                if self.needs[x.0] {
                    let (mut dx, accumulate) = self.input_grad(g, x);
                    match self.quantized(w) {
                        Some(q) => {
                            let mut scratch = self.ws.take(qmatmul_backward_scratch_len(q));
                            qmatmul_backward_input(&mut dx, dout, shape.n, q, &mut scratch, accumulate);
                            self.ws.give(scratch);
                        }
                        None => linear_backward_input(&mut dx, dout, self.value(w), shape, accumulate),
                    }
                    g[x.0] = dx;
                }
                if self.needs[w.0] {
                    with_grad!(w, |dw| linear_backward(
                        None,
                        Some(&mut dw),
                        None,
                        dout,
                        self.value(x),
                        self.value(w),
                        shape
                    ));
                }
                if let Some(b) = b.filter(|b| self.needs[b.0]) {
                    with_grad!(b, |db| linear_backward(
                        None,
                        None,
                        Some(&mut db),
                        dout,
                        self.value(x),
                        self.value(w),
                        shape
                    ));
                }
            }
            Op::Norm { x, w, b, kind, .. } => {
                let (x, w, b, kind, c) = (*x, *w, *b, *kind, *node.shape.last().unwrap());
                let mut dx = self.grad_or_scratch(g, x);
                let mut dw = w.filter(|w| self.needs[w.0]).map(|w| self.grad_buf(g, w));
                let mut db = b.filter(|b| self.needs[b.0]).map(|b| self.grad_buf(g, b));
                let Op::Norm { mean, rstd, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                norm_backward(
                    &mut dx,
                    dw.as_deref_mut(),
                    db.as_deref_mut(),
                    dout,
                    self.value(x),
                    w.map(|w| self.value(w)),
                    mean,
                    rstd,
                    c,
                    kind,
                );
                self.put_grad(g, x, dx);
                if let (Some(w), Some(dw)) = (w, dw) {
                    g[w.0] = dw;
                }
                if let (Some(b), Some(db)) = (b, db) {
                    g[b.0] = db;
                }
            }
            &Op::Activation { x, f } => {
                let (mut dx, accumulate) = self.input_grad(g, x);
                f.backward(&mut dx, self.value(x), dout, accumulate);
                g[x.0] = dx;
            }
            &Op::Glu { gate, up, f } => {
                // Taken one after the other, so `glu(x, x)` gets both contributions.
                let mut dgate = self.grad_or_scratch(g, gate);
                if gate == up {
                    let mut dup = self.ws.take_zeroed(dgate.len());
                    glu_backward(&mut dgate, &mut dup, dout, self.value(gate), self.value(up), f);
                    accumulate(&mut dgate, &dup);
                    self.ws.give(dup);
                } else {
                    let mut dup = self.grad_or_scratch(g, up);
                    glu_backward(&mut dgate, &mut dup, dout, self.value(gate), self.value(up), f);
                    self.put_grad(g, up, dup);
                }
                self.put_grad(g, gate, dgate);
            }
            Op::Concat { parts } => {
                let (parts, width) = (*parts, *node.shape.last().unwrap());
                let mut offset = 0;
                for p in parts.into_iter().flatten() {
                    let w = self.rows_cols(p).1;
                    if self.needs[p.0] {
                        with_grad!(p, |dp| concat_backward(&mut dp, w, dout, offset, width));
                    }
                    offset += w;
                }
            }
            Op::Rope { x, heads, .. } => {
                let (x, heads, width) = (*x, *heads, *node.shape.last().unwrap());
                let mut dx = self.grad_buf(g, x);
                let Op::Rope { angles, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                let hs = self.rows_cols(*angles).1;
                rope_backward(&mut dx, dout, self.value(*angles), hs, width, heads);
                g[x.0] = dx;
            }
            Op::Add { .. } => unreachable!("handled by add_backward"),
            Op::Dropout { x, .. } => {
                let x = *x;
                let mut dx = self.grad_buf(g, x);
                let Op::Dropout { mask, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                mul_accumulate(&mut dx, dout, mask);
                g[x.0] = dx;
            }
            Op::Rows { x, rows } => {
                let (x, c) = (*x, node.shape[1]);
                let rows = rows.clone();
                with_grad!(x, |dx| for (d, &r) in dout.chunks(c).zip(&rows) {
                    accumulate(&mut dx[r * c..(r + 1) * c], d);
                });
            }
            Op::Attention { qkv, shape, .. } => {
                let (qkv, shape) = (*qkv, *shape);
                let mut dqkv = self.grad_buf(g, qkv);
                let mut scratch = self.ws.take(backward_scratch_len(shape));
                let Op::Attention { pos, lse, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                let (x, out) = (self.value(qkv), self.value(Var(i)));
                attention_backward(&mut dqkv, &mut scratch, dout, x, out, lse, pos, shape);
                self.ws.give(scratch);
                g[qkv.0] = dqkv;
            }
            Op::CrossEntropy { logits, count, .. } => {
                let (logits, count, v) = (*logits, *count, *self.shape(*logits).last().unwrap());
                if g[logits.0].is_empty() && self.only_reader(logits, i) {
                    if let Value::Owned(buf) = &mut self.nodes[logits.0].value {
                        let mut dl = mem::take(buf);
                        let Op::CrossEntropy { targets, lse, .. } = &self.nodes[i].op else {
                            unreachable!()
                        };
                        cross_entropy_backward_in_place(&mut dl, lse, targets, v, dout[0], count);
                        g[logits.0] = dl;
                        return;
                    }
                }
                let mut dl = self.grad_buf(g, logits);
                let Op::CrossEntropy { targets, lse, .. } = &self.nodes[i].op else {
                    unreachable!()
                };
                cross_entropy_backward(&mut dl, self.value(logits), lse, targets, v, dout[0], count);
                g[logits.0] = dl;
            }
        }
    }

    /// Backward of `a + b`: each input's gradient gets `dout`. An input with no
    /// gradient yet takes a copy (`b`) or `dout`'s own buffer (`a`) instead
    /// of adding to zeros; `a` goes last, so `x + x` still gets `2 dout`.
    /// An input that needs no gradient gets none.
    fn add_backward(&mut self, a: Var, b: Var, scale: f32, dout: &mut Vec<f32>, g: &mut [Vec<f32>]) {
        if self.needs[b.0] {
            if scale != 1.0 {
                let mut db = self.grad_buf(g, b);
                axpy_parallel(&mut db, scale, dout);
                g[b.0] = db;
            } else if g[b.0].is_empty() {
                let mut db = self.ws.take(dout.len());
                copy(&mut db, dout);
                g[b.0] = db;
            } else {
                accumulate(&mut g[b.0], dout);
            }
        }
        if self.needs[a.0] {
            if g[a.0].is_empty() {
                g[a.0] = mem::take(dout);
            } else {
                accumulate(&mut g[a.0], dout);
            }
        }
    }

    /// Whether node `i` is the only one that reads `v`.
    fn only_reader(&self, v: Var, i: usize) -> bool {
        (v.0 + 1..self.nodes.len()).all(|j| j == i || !self.nodes[j].op.inputs().contains(&Some(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_releases_what_it_is_told_and_training_keeps_all() {
        let params = Params::default();
        let t = Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        for training in [false, true] {
            let mut g = if training {
                Graph::new(&params, Workspace::default())
            } else {
                Graph::inference(&params, Workspace::default())
            };
            let x = g.constant(&t);
            let mark = g.mark();
            let y = g.add(x, x);
            let z = g.add(y, x);
            g.release_since(mark, z);
            assert_eq!(g.value(x), [1.0, 2.0, 3.0, 4.0]);
            assert_eq!(g.value(z), [3.0, 6.0, 9.0, 12.0]);
            let kept: &[f32] = if training { &[2.0, 4.0, 6.0, 8.0] } else { &[] };
            assert_eq!(g.value(y), kept, "training {training}");
        }
    }

    /// Graphs of one shape reuse their buffers; graphs of ever new shapes
    /// (packed batches of changing lengths) keep only the last one's, not
    /// every shape's (a pool that grew with each new length ran SFT out of memory).
    #[test]
    fn the_pool_keeps_what_the_last_graph_took() {
        let params = Params::default();
        let mut ws = Workspace::default();
        let run = |ws: Workspace, n: usize| {
            let t = Tensor::from_vec(&[n, 4], vec![1.0; n * 4]);
            let mut g = Graph::new(&params, ws);
            let x = g.constant(&t);
            let y = g.add(x, x);
            let _ = g.add(y, x);
            g.finish()
        };
        ws = run(ws, 8);
        let one = ws.pooled();
        assert!(one >= 2 * 8 * 4, "the graph's sums are kept: {one}");
        ws = run(ws, 8);
        assert_eq!(ws.pooled(), one, "the same shapes take the same buffers");
        for n in 9..60 {
            ws = run(ws, n);
            assert!(ws.pooled() <= one / 8 * n, "{n} rows: {} floats pooled", ws.pooled());
        }
    }
}
