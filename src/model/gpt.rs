//! The GPT: token embeddings (plus learned positions in GPT-2), `n_layer`
//! pre-norm blocks of causal self-attention (rotary positions in Llama) and an
//! MLP (gated in Llama), a final norm, and logits over the vocabulary.
//! One definition for training (autograd) and inference (KV cache), for every
//! architecture the config switches between.

use super::config::GptConfig;
use super::kv_cache::KvCache;
use crate::autograd::{Graph, ParamId, Params, Var};
use crate::tensor::cross_entropy::IGNORE;
use crate::tensor::elementwise::Activation;
use crate::tensor::norm::NormKind;
use crate::tensor::quant::{self, CannotQuantize};
use crate::tensor::{Rng, Tensor};
use anyhow::{bail, ensure, Result};

/// How to draw the initial weights.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Init {
    /// GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), biases 0, norm weights 1.
    Gpt2,
    /// Every matrix N(0, std²) (microgpt uses 0.08), biases 0, norm weights 1.
    Normal(f32),
}

/// Parameters of one LayerNorm/RMSNorm (both absent for parameter-free RMSNorm).
#[derive(Clone, Copy, Debug)]
struct NormIds {
    w: Option<ParamId>,
    b: Option<ParamId>,
}

#[derive(Clone, Copy, Debug)]
struct LinearIds {
    w: ParamId,
    b: Option<ParamId>,
    /// A LoRA adapter's low-rank update of this layer.
    lora: Option<Lora>,
}

/// `scale · x Aᵀ Bᵀ` added to a linear layer's output: `a` `[r, in]`, `b` `[out, r]`;
/// in training, `x` through dropout of probability `dropout` first (peft's `lora_dropout`).
#[derive(Clone, Copy, Debug)]
struct Lora {
    a: ParamId,
    b: ParamId,
    scale: f32,
    dropout: f32,
}

/// A bottleneck adapter (Houlsby et al. 2019) on a branch's output `h`:
/// `h + up(relu(down(h)))`, `down` `[H, C]` and `up` `[C, H]` in nn.Linear's
/// layout, each with a bias.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bottleneck {
    pub down: ParamId,
    pub down_b: ParamId,
    pub up: ParamId,
    pub up_b: ParamId,
}

/// Where a block's bottleneck adapters sit: on the attention's output and on the MLP's.
pub(super) const ADAPTER_SITES: usize = 2;

#[derive(Clone, Copy, Debug)]
struct Block {
    ln_1: NormIds,
    /// One fused q/k/v projection (GPT-2's `c_attn`), or q, k and v.
    qkv: [Option<LinearIds>; 3],
    attn_proj: LinearIds,
    ln_2: NormIds,
    /// `c_fc`, or the gated MLP's `gate_proj`…
    fc: LinearIds,
    /// …and its `up_proj`.
    up: Option<LinearIds>,
    mlp_proj: LinearIds,
    /// Bottleneck adapters on the attention's output and the MLP's (after
    /// their output projections, before the residual adds).
    adapters: [Option<Bottleneck>; ADAPTER_SITES],
}

impl Block {
    /// Its linear layers, in a fixed order.
    fn linears(&self) -> impl Iterator<Item = &LinearIds> {
        let fixed = [
            Some(&self.attn_proj),
            Some(&self.fc),
            self.up.as_ref(),
            Some(&self.mlp_proj),
        ];
        self.qkv.iter().map(Option::as_ref).chain(fixed).flatten()
    }

    fn linears_mut(&mut self) -> impl Iterator<Item = &mut LinearIds> {
        let fixed = [
            Some(&mut self.attn_proj),
            Some(&mut self.fc),
            self.up.as_mut(),
            Some(&mut self.mlp_proj),
        ];
        self.qkv.iter_mut().map(Option::as_mut).chain(fixed).flatten()
    }
}

/// A GPT model: its config, its parameters (Hugging Face names of its architecture) and where each one is.
pub struct Gpt {
    pub config: GptConfig,
    pub params: Params,
    wte: ParamId,
    wpe: Option<ParamId>,
    ln_emb: NormIds,
    blocks: Vec<Block>,
    ln_f: NormIds,
    lm_head: Option<ParamId>,
    /// A sequence classifier's head `[labels, C]`, in place of the logits over the vocabulary.
    score: Option<ParamId>,
}

/// What a tensor is, for initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Matrix,
    /// A projection into the residual stream (GPT-2 scales its init).
    ResidualMatrix,
    Bias,
    NormWeight,
}

/// The classification head's name (`transformers`' `…ForSequenceClassification`).
pub const SCORE: &str = "score";

/// Every parameter tensor of a config: name (Hugging Face, per architecture), shape, kind.
fn param_specs(c: &GptConfig) -> Vec<(String, Vec<usize>, Kind)> {
    let n = c.arch.names();
    let (e, hs) = (c.n_embd, c.head_size());
    let mut specs = vec![(format!("{}.weight", n.wte), vec![c.vocab_size, e], Kind::Matrix)];
    if c.rope.is_none() {
        specs.push((format!("{}.weight", n.wpe), vec![c.n_ctx, e], Kind::Matrix));
    }
    let norm = |specs: &mut Vec<_>, name: &str| {
        if c.norm_weight {
            specs.push((format!("{name}.weight"), vec![e], Kind::NormWeight));
        }
        if c.norm == NormKind::LayerNorm && c.bias {
            specs.push((format!("{name}.bias"), vec![e], Kind::Bias));
        }
    };
    let linear = |specs: &mut Vec<_>, name: &str, d_in: usize, d_out: usize, kind: Kind, bias: bool| {
        let shape = if n.w_t { vec![d_out, d_in] } else { vec![d_in, d_out] };
        specs.push((format!("{name}.weight"), shape, kind));
        if bias {
            specs.push((format!("{name}.bias"), vec![d_out], Kind::Bias));
        }
    };
    if c.embd_norm {
        norm(&mut specs, n.ln_emb);
    }
    // Widths of q, k and v, or of one fused projection of all three.
    let (q, kv) = (c.n_head * hs, c.n_kv_head * hs);
    let qkv: &[usize] = if n.qkv.len() == 1 { &[q + 2 * kv] } else { &[q, kv, kv] };
    for i in 0..c.n_layer {
        let l = format!("{}.{i}", n.layer);
        norm(&mut specs, &format!("{l}.{}", n.ln_1));
        for (part, &width) in n.qkv.iter().zip(qkv) {
            linear(&mut specs, &format!("{l}.{part}"), e, width, Kind::Matrix, c.qkv_bias);
        }
        let proj = format!("{l}.{}", n.attn_proj);
        linear(&mut specs, &proj, c.n_head * hs, e, Kind::ResidualMatrix, c.bias);
        norm(&mut specs, &format!("{l}.{}", n.ln_2));
        linear(&mut specs, &format!("{l}.{}", n.fc), e, c.n_inner, Kind::Matrix, c.bias);
        if c.gated_mlp {
            linear(&mut specs, &format!("{l}.{}", n.up), e, c.n_inner, Kind::Matrix, c.bias);
        }
        let proj = format!("{l}.{}", n.mlp_proj);
        linear(&mut specs, &proj, c.n_inner, e, Kind::ResidualMatrix, c.bias);
    }
    if c.final_norm {
        norm(&mut specs, n.ln_f);
    }
    if c.is_classifier() {
        // nn.Linear layout, no bias (transformers' `score`): [labels, n_embd].
        specs.push((format!("{SCORE}.weight"), vec![c.labels.len(), e], Kind::Matrix));
    } else if !c.tie_word_embeddings {
        // nn.Linear layout: [vocab, n_embd].
        specs.push((format!("{}.weight", n.lm_head), vec![c.vocab_size, e], Kind::Matrix));
    }
    specs
}

impl Gpt {
    /// A freshly initialised model.
    pub fn new(config: GptConfig, init: Init, rng: &mut Rng) -> Self {
        let mut params = Params::default();
        for (name, shape, kind) in param_specs(&config) {
            let std = match init {
                Init::Gpt2 => 0.02,
                Init::Normal(std) => std,
            };
            let t = match kind {
                Kind::Matrix => Tensor::randn(&shape, std, rng),
                Kind::ResidualMatrix if init == Init::Gpt2 => {
                    Tensor::randn(&shape, std / (2.0 * config.n_layer as f32).sqrt(), rng)
                }
                Kind::ResidualMatrix => Tensor::randn(&shape, std, rng),
                Kind::Bias => Tensor::zeros(&shape),
                Kind::NormWeight => Tensor::from_vec(&shape, vec![1.0; shape[0]]),
            };
            params.add(name, t);
        }
        Self::from_params(config, params)
    }

    /// The names and shapes a checkpoint of this config must hold, in order.
    pub fn expected_tensors(config: &GptConfig) -> Vec<(String, Vec<usize>)> {
        param_specs(config).into_iter().map(|(n, s, _)| (n, s)).collect()
    }

    /// Wraps parameters that match [`Gpt::expected_tensors`] (checked by the caller).
    pub fn from_params(config: GptConfig, params: Params) -> Self {
        let n = config.arch.names();
        let id = |name: String| params.find(&name).unwrap_or_else(|| panic!("missing parameter {name}"));
        let norm = |name: &str| NormIds {
            w: params.find(&format!("{name}.weight")),
            b: params.find(&format!("{name}.bias")),
        };
        let linear = |name: &str| LinearIds {
            w: id(format!("{name}.weight")),
            b: params.find(&format!("{name}.bias")),
            lora: None,
        };
        let blocks = (0..config.n_layer)
            .map(|i| {
                let l = format!("{}.{i}", n.layer);
                let mut qkv = [None; 3];
                qkv.iter_mut()
                    .zip(n.qkv)
                    .for_each(|(ids, part)| *ids = Some(linear(&format!("{l}.{part}"))));
                Block {
                    ln_1: norm(&format!("{l}.{}", n.ln_1)),
                    qkv,
                    attn_proj: linear(&format!("{l}.{}", n.attn_proj)),
                    ln_2: norm(&format!("{l}.{}", n.ln_2)),
                    fc: linear(&format!("{l}.{}", n.fc)),
                    up: config.gated_mlp.then(|| linear(&format!("{l}.{}", n.up))),
                    mlp_proj: linear(&format!("{l}.{}", n.mlp_proj)),
                    adapters: [None; ADAPTER_SITES],
                }
            })
            .collect();
        Gpt {
            wte: id(format!("{}.weight", n.wte)),
            wpe: config.rope.is_none().then(|| id(format!("{}.weight", n.wpe))),
            ln_emb: norm(n.ln_emb),
            blocks,
            ln_f: norm(n.ln_f),
            lm_head: params.find(&format!("{}.weight", n.lm_head)),
            score: params.find(&format!("{SCORE}.weight")),
            config,
            params,
        }
    }

    fn norm(&self, g: &mut Graph, x: Var, ids: NormIds) -> Var {
        let w = ids.w.map(|w| g.param(w));
        let b = ids.b.map(|b| g.param(b));
        g.norm(x, w, b, self.config.norm, self.config.norm_eps)
    }

    fn linear(&self, g: &mut Graph, x: Var, ids: LinearIds) -> Var {
        let w = g.param(ids.w);
        let b = ids.b.map(|b| g.param(b));
        let y = g.linear(x, w, b, self.config.arch.names().w_t);
        let Some(lora) = ids.lora else { return y };
        let (a, b) = (g.param(lora.a), g.param(lora.b));
        let x = g.dropout_with(x, lora.dropout);
        let down = g.linear(x, a, None, true); // [N, in] -> [N, r]
        let up = g.linear(down, b, None, true); // [N, r] -> [N, out]
        g.add_scaled(y, up, lora.scale)
    }

    /// `h + up(relu(down(h)))`, or `h` where no adapter sits.
    fn bottleneck(&self, g: &mut Graph, h: Var, ids: Option<Bottleneck>) -> Var {
        let Some(ids) = ids else { return h };
        let (down, down_b) = (g.param(ids.down), g.param(ids.down_b));
        let (up, up_b) = (g.param(ids.up), g.param(ids.up_b));
        let z = g.linear(h, down, Some(down_b), true); // [N, C] -> [N, H]
        let z = g.activation(z, Activation::Relu);
        let z = g.linear(z, up, Some(up_b), true); // [N, H] -> [N, C]
        g.add(h, z)
    }

    /// Puts the bottleneck adapter `[down, down bias, up, up bias]` on site
    /// `site` (0: attention, 1: MLP) of block `block`, its tensors added as
    /// `{name}.down.weight`, `.down.bias`, `.up.weight`, `.up.bias`.
    pub(super) fn set_bottleneck(&mut self, block: usize, site: usize, name: &str, t: [Tensor; 4]) {
        let [down, down_b, up, up_b] = t;
        let ids = Bottleneck {
            down: self.params.add(format!("{name}.down.weight"), down),
            down_b: self.params.add(format!("{name}.down.bias"), down_b),
            up: self.params.add(format!("{name}.up.weight"), up),
            up_b: self.params.add(format!("{name}.up.bias"), up_b),
        };
        self.blocks[block].adapters[site] = Some(ids);
    }

    /// Whether any block has a bottleneck adapter.
    pub(super) fn has_bottlenecks(&self) -> bool {
        self.blocks.iter().any(|b| b.adapters.iter().any(Option::is_some))
    }

    /// Every block's linear layers by parameter name (without `.weight`):
    /// `(index for [Gpt::set_lora], in features, out features)`.
    pub(super) fn linear_names(&self) -> std::collections::HashMap<String, (usize, usize, usize)> {
        let n = self.config.arch.names();
        let mut out = std::collections::HashMap::new();
        for (i, ids) in self.blocks.iter().flat_map(Block::linears).enumerate() {
            let name = self.params.names[ids.w.0]
                .strip_suffix(".weight")
                .expect("a weight")
                .to_string();
            let shape = &self.params.get(ids.w).shape;
            let (d_in, d_out) = if n.w_t {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            out.insert(name, (i, d_in, d_out));
        }
        out
    }

    /// Gives the `i`-th linear layer (of [`Gpt::linear_names`]) the LoRA update
    /// `scale · x aᵀ bᵀ` (`x` through dropout of probability `dropout` in
    /// training), its matrices added as `{name}.lora_A.weight` / `lora_B`.
    pub(super) fn set_lora(&mut self, i: usize, name: &str, a: Tensor, b: Tensor, scale: f32, dropout: f32) {
        let a = self.params.add(format!("{name}.lora_A.weight"), a);
        let b = self.params.add(format!("{name}.lora_B.weight"), b);
        let ids = self
            .blocks
            .iter_mut()
            .flat_map(Block::linears_mut)
            .nth(i)
            .expect("a linear layer");
        ids.lora = Some(Lora { a, b, scale, dropout });
    }

    /// Folds every LoRA update into its layer's f32 weights (`W += scale · B A`,
    /// transposed where `W` is stored `[in, out]`) and drops the adapters'
    /// matrices: a plain model again, as `peft`'s `merge_and_unload` gives.
    pub fn merge_adapters(&mut self) -> Result<()> {
        ensure!(
            !self.has_bottlenecks(),
            "a bottleneck adapter, h + up(relu(down(h))), is not linear: it cannot be folded into the model's \
             weights. Run it beside the model instead: gpt generate (eval, classify, chat, serve) --model BASE \
             --adapter DIR"
        );
        let w_t = self.config.arch.names().w_t;
        let mut first = self.params.tensors.len();
        for ids in self.blocks.iter_mut().flat_map(Block::linears_mut) {
            let Some(lora) = ids.lora.take() else { continue };
            first = first.min(lora.a.0);
            let (a, b) = (&self.params.tensors[lora.a.0], &self.params.tensors[lora.b.0]);
            let (r, d_in, d_out) = (a.shape[0], a.shape[1], b.shape[0]);
            let name = &self.params.names[ids.w.0];
            ensure!(
                self.params.tensors[ids.w.0].data.len() == d_in * d_out,
                "{name} is not held as f32: load the model with --dtype f32 to merge an adapter into it"
            );
            // delta[o, i] = scale · Σ_k B[o, k] A[k, i]
            let mut delta = vec![0.0f32; d_out * d_in];
            for (o, row) in delta.chunks_mut(d_in).enumerate() {
                for k in 0..r {
                    crate::tensor::axpy(row, lora.scale * b.data[o * r + k], &a.data[k * d_in..(k + 1) * d_in]);
                }
            }
            let w = &mut self.params.tensors[ids.w.0].data;
            for (o, row) in delta.chunks(d_in).enumerate() {
                for (i, d) in row.iter().enumerate() {
                    w[if w_t { o * d_in + i } else { i * d_out + o }] += d;
                }
            }
        }
        // The adapters' matrices were added after every weight of the model.
        assert!(self.params.names[first..].iter().all(|n| n.contains(".lora_")));
        let p = &mut self.params;
        p.names.truncate(first);
        p.tensors.truncate(first);
        p.trainable.truncate(first);
        p.bf16.truncate(first);
        p.quant.truncate(first);
        Ok(())
    }

    /// Freezes every parameter but those of the last `n` blocks, the final
    /// norm and the output head (0: the head alone). With tied embeddings
    /// the head is the token embedding, so that trains too (as it does in
    /// `transformers` with tied weights).
    pub fn train_last_layers(&mut self, n: usize) -> Result<()> {
        let n_layer = self.config.n_layer;
        ensure!(
            n <= n_layer,
            "--train-layers {n}: the model has {n_layer} blocks; give 0 (the head only) to {n_layer}"
        );
        let names = self.config.arch.names();
        let head = if self.config.is_classifier() {
            SCORE
        } else if self.config.tie_word_embeddings {
            names.wte
        } else {
            names.lm_head
        };
        let trains = |name: &str| {
            let block = name.strip_prefix(names.layer).and_then(|r| r.strip_prefix('.'));
            let index = block.and_then(|r| r.split('.').next()?.parse::<usize>().ok());
            let module = name.rsplit_once('.').map_or(name, |(m, _)| m);
            index.is_some_and(|i| i + n >= n_layer) || module == names.ln_f || module == head
        };
        self.params.set_trainable(false, |_| true);
        self.params.set_trainable(true, trains);
        Ok(())
    }

    /// `[N, C] -> [N, (n_head + 2 n_kv_head) hs]`: all query heads, then the key heads, then the value heads.
    fn qkv(&self, g: &mut Graph, x: Var, ids: [Option<LinearIds>; 3]) -> Var {
        match ids.map(|ids| ids.map(|ids| self.linear(g, x, ids))) {
            [Some(qkv), None, None] => qkv,
            [Some(q), Some(k), Some(v)] => g.concat(&[q, k, v]),
            _ => unreachable!("one fused projection or three"),
        }
    }

    /// Errors unless `tokens` and `pos` are input [`Gpt::forward`] takes: as
    /// many of each, ids below `vocab_size`, positions below `n_ctx`. Front
    /// ends check tokens they did not make themselves with this
    /// (`sample::generate` does); `forward` asserts it.
    pub fn check_input(&self, tokens: &[u32], pos: &[u32]) -> Result<()> {
        let c = &self.config;
        ensure!(
            tokens.len() == pos.len(),
            "{} tokens but {} positions",
            tokens.len(),
            pos.len()
        );
        if let Some((i, t)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= c.vocab_size) {
            bail!(
                "token id {t} (at {i}) is outside the model's vocabulary ({} ids)",
                c.vocab_size
            );
        }
        if let Some((i, p)) = pos.iter().enumerate().find(|(_, &p)| p as usize >= c.n_ctx) {
            bail!(
                "position {p} (at {i}) is beyond the model's context ({} positions)",
                c.n_ctx
            );
        }
        Ok(())
    }

    /// `tokens[B·T]` at positions `pos[B·T]` (each token's position in its
    /// document) -> logits `[B·T, vocab_size]`. With a KV cache, the tokens
    /// continue the cached sequences and the cache grows by `T`. Panics on
    /// input [`Gpt::check_input`] refuses.
    pub fn forward(&self, g: &mut Graph, tokens: &[u32], pos: &[u32], b: usize, cache: Option<&mut KvCache>) -> Var {
        let h = self.hidden(g, tokens, pos, b, cache);
        self.logits(g, h)
    }

    /// The mean cross-entropy of `tokens[B·T]` (at positions `pos`) against
    /// `targets[B·T]` (`IGNORE`: not scored). A language model scores each
    /// token's next-token logits; a classifier reads only the scored tokens
    /// (each text's last, its target a label), so padding is never scored.
    pub fn loss(&self, g: &mut Graph, tokens: &[u32], pos: &[u32], b: usize, targets: &[u32]) -> Var {
        let scored = targets.iter().enumerate().filter(|(_, &t)| t != IGNORE);
        let (rows, labels): (Vec<usize>, Vec<u32>) = scored.map(|(i, &t)| (i, t)).unzip();
        if !self.config.is_classifier() || rows.is_empty() {
            let logits = self.forward(g, tokens, pos, b, None);
            return g.cross_entropy(logits, targets);
        }
        let logits = self.classify(g, tokens, pos, b, &rows); // [n, labels]
        g.cross_entropy(logits, &labels)
    }

    /// A classifier's logits `[rows.len(), labels]` at the tokens `rows` of
    /// `tokens[B·T]` (each text's last): the final-normed hidden state of
    /// those tokens through `score`.
    pub fn classify(&self, g: &mut Graph, tokens: &[u32], pos: &[u32], b: usize, rows: &[usize]) -> Var {
        let h = self.hidden(g, tokens, pos, b, None); // [B·T, C]
        let h = g.rows(h, rows); // [B·T, C] -> [n, C]
        self.logits(g, h) // [n, C] -> [n, labels]
    }

    /// The blocks and the final norm: the hidden state `[B·T, C]` that [`Gpt::logits`] reads.
    pub fn hidden(&self, g: &mut Graph, tokens: &[u32], pos: &[u32], b: usize, mut cache: Option<&mut KvCache>) -> Var {
        let c = &self.config;
        let wte = g.param(self.wte);
        let wpe = self.wpe.map(|wpe| g.param(wpe));
        let mut x = g.embedding(wte, wpe, tokens, pos); // [B·T, C]
                                                        // cos/sin of the rows' positions, shared by the layers (rotary embeddings only).
        let rope = c.rope.map(|r| g.rope_angles(pos, c.head_size(), r)); // [B·T, hs]
        x = g.dropout(x);
        if c.embd_norm {
            x = self.norm(g, x, self.ln_emb);
        }
        for (l, blk) in self.blocks.iter().enumerate() {
            let mark = g.mark();
            let h = self.norm(g, x, blk.ln_1);
            let mut qkv = self.qkv(g, h, blk.qkv); // [B·T, (n_head + 2 n_kv_head) hs]
            if let Some(angles) = rope {
                qkv = g.rope(qkv, angles, c.n_head + c.n_kv_head); // queries and keys rotated
            }
            let slot = cache.as_deref_mut().map(|kv| kv.slot(l));
            let a = g.attention(qkv, c.n_head, c.n_kv_head, b, pos, slot); // [B·T, C]
            let a = self.linear(g, a, blk.attn_proj);
            let a = g.dropout(a);
            let a = self.bottleneck(g, a, blk.adapters[0]); // [B·T, C]
            x = g.add(x, a);
            let h = self.norm(g, x, blk.ln_2);
            let h = match blk.up {
                // SwiGLU: f(gate(h)) * up(h)
                Some(up) => {
                    let gate = self.linear(g, h, blk.fc); // [B·T, n_inner]
                    let up = self.linear(g, h, up);
                    g.glu(gate, up, c.activation_function)
                }
                None => {
                    let h = self.linear(g, h, blk.fc); // [B·T, n_inner]
                    g.activation(h, c.activation_function)
                }
            };
            let h = self.linear(g, h, blk.mlp_proj); // [B·T, C]
            let h = g.dropout(h);
            let h = self.bottleneck(g, h, blk.adapters[1]); // [B·T, C]
            x = g.add(x, h);
            g.release_since(mark, x); // inference: the block's insides are done with
        }
        if let Some(kv) = cache {
            kv.advance(tokens.len() / b);
        }
        if c.final_norm {
            x = self.norm(g, x, self.ln_f);
        }
        x
    }

    /// Holds every weight matrix in `kind`'s blocks (Q8_0, Q4_0 or Q4_1),
    /// for inference: the blocks' linear layers, the token embedding and the
    /// `lm_head` (GPT-2's learned positions stay f32). Matrices already
    /// quantized are left as they are. Every matrix's input dimension must be
    /// whole blocks of 32.
    pub fn quantize(&mut self, kind: quant::Kind) -> Result<()> {
        ensure!(kind.can_quantize(), "{}", CannotQuantize(kind));
        // GPT-2 stores its layers [in, out]: their quantized rows are the transpose.
        let transpose = !self.config.arch.names().w_t;
        let mut ids = vec![(self.wte, false)];
        ids.extend(self.lm_head.map(|h| (h, false)));
        for blk in &self.blocks {
            let layers = blk.qkv.iter().flatten().chain([&blk.attn_proj, &blk.fc]);
            let layers = layers.chain(blk.up.iter()).chain([&blk.mlp_proj]);
            ids.extend(layers.map(|l| (l.w, transpose)));
        }
        for &(id, transpose) in &ids {
            let shape = &self.params.get(id).shape;
            let cols = if transpose { shape[0] } else { shape[1] };
            ensure!(
                cols.is_multiple_of(kind.block_size()),
                "{} has rows of {cols} values: {kind} needs whole blocks of {}",
                self.params.names[id.0],
                kind.block_size()
            );
        }
        for (id, transpose) in ids {
            if self.params.get_quantized(id).is_none() {
                self.params.quantize(id, kind, transpose)?;
            }
        }
        Ok(())
    }

    /// The f32 values of parameter `i` in its own shape: its data, its bf16
    /// copy widened, or its quantized blocks dequantized (GPT-2's layers,
    /// stored `[in, out]`, from rows of the transpose; embeddings and heads
    /// are rows either way).
    pub fn f32_values(&self, i: usize) -> std::borrow::Cow<'_, [f32]> {
        if let Some(half) = &self.params.bf16[i] {
            use crate::tensor::WeightElem;
            return std::borrow::Cow::Owned(half.iter().map(|v| v.to_f32()).collect());
        }
        let Some(q) = self.params.quant[i].as_ref() else {
            return std::borrow::Cow::Borrowed(&self.params.tensors[i].data);
        };
        let w = q.dequantize();
        let (rows, cols) = (q.rows(), q.cols());
        let embedding = i == self.wte.0 || Some(ParamId(i)) == self.lm_head;
        match !self.config.arch.names().w_t && !embedding {
            true => std::borrow::Cow::Owned((0..rows * cols).map(|k| w[(k % rows) * cols + k / rows]).collect()),
            false => std::borrow::Cow::Owned(w),
        }
    }

    /// `[N, C] -> [N, vocab_size]` through `wte` (tied) or `lm_head`, both
    /// stored `[vocab, C]`; a classifier's `[N, C] -> [N, labels]` through `score`.
    pub fn logits(&self, g: &mut Graph, h: Var) -> Var {
        let head = g.param(self.score.or(self.lm_head).unwrap_or(self.wte));
        g.linear(h, head, None, true)
    }

    /// The model as a sequence classifier over `labels`: a new `score` head
    /// `[labels, C]` drawn from N(0, 0.02) (as `transformers` initialises
    /// it) replaces the output over the vocabulary (an untied `lm_head` is
    /// dropped). Padding takes `pad_token_id`.
    pub fn into_classifier(self, labels: Vec<String>, pad_token_id: u32, rng: &mut Rng) -> Result<Gpt> {
        ensure!(
            !self.config.is_classifier(),
            "the model is a classifier already (labels {:?}); start from a language model",
            self.config.labels
        );
        ensure!(
            labels.len() >= 2,
            "a classifier needs two labels at least, not {labels:?}"
        );
        ensure!(
            self.params.quant.iter().all(Option::is_none) && self.params.bf16.iter().all(Option::is_none),
            "a classifier trains from f32 weights: load the model with --dtype f32"
        );
        let mut config = self.config;
        config.labels = labels;
        config.pad_token_id = Some(pad_token_id);
        config.validate()?;
        let mut params = Params::default();
        for (name, shape) in Gpt::expected_tensors(&config) {
            let t = match self.params.find(&name) {
                Some(id) => self.params.tensors[id.0].clone(),
                None => Tensor::randn(&shape, 0.02, rng),
            };
            params.add(name, t);
        }
        Ok(Gpt::from_params(config, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::{gradcheck, Workspace};
    use crate::model::Arch;
    use crate::tensor::rng;

    fn tiny(config: GptConfig) -> Gpt {
        // Larger-than-usual init so every path carries a visible gradient.
        Gpt::new(config, Init::Normal(0.3), &mut rng(5))
    }

    /// Tiny configs of every variant: GPT-2 (also with grouped-query attention),
    /// microgpt, and Llama untied, tied, with Qwen2's q/k/v biases and with
    /// grouped-query attention.
    fn variants(vocab: usize, n_ctx: usize, n_embd: usize, n_head: usize, n_layer: usize) -> Vec<GptConfig> {
        let micro = GptConfig {
            n_ctx,
            n_embd,
            n_head,
            n_kv_head: n_head,
            n_inner: 4 * n_embd,
            ..GptConfig::microgpt(vocab)
        };
        let llama = GptConfig::llama(vocab, n_ctx, n_embd, n_head, n_layer, 3 * n_embd);
        // Grouped-query attention: 2 n_head query heads on 2 and on 1 key/value heads.
        let gqa = |n_kv_head, tie_word_embeddings| GptConfig {
            n_kv_head,
            tie_word_embeddings,
            ..GptConfig::llama(vocab, n_ctx, n_embd, 2 * n_head, n_layer, 3 * n_embd)
        };
        vec![
            GptConfig::gpt2(vocab, n_ctx, n_embd, n_head, n_layer),
            GptConfig {
                n_kv_head: 2,
                ..GptConfig::gpt2(vocab, n_ctx, n_embd, 4, n_layer)
            },
            micro,
            gqa(2, false),
            gqa(1, true),
            GptConfig {
                tie_word_embeddings: true,
                ..llama.clone()
            },
            GptConfig {
                qkv_bias: true,
                ..llama.clone()
            },
            llama,
        ]
    }

    #[test]
    fn whole_model_gradients_of_every_variant() {
        for config in variants(7, 6, 8, 2, 2) {
            let model = tiny(config);
            // Two sequences; the first packs two documents.
            let tokens = [6, 1, 2, 6, 3, 4, 6, 5, 5, 0, 1, 2];
            let pos = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4, 5];
            let targets = [1, 2, 6, 3, 4, crate::tensor::cross_entropy::IGNORE, 5, 5, 0, 1, 2, 6];
            gradcheck::check(&model.params, 1e-3, |g| {
                let logits = model.forward(g, &tokens, &pos, 2, None);
                g.cross_entropy(logits, &targets)
            });
        }
    }

    #[test]
    fn classifier_reads_the_last_token_of_each_text_and_its_gradients_check() {
        for config in [GptConfig::gpt2(7, 6, 8, 2, 2), GptConfig::llama(7, 6, 8, 2, 2, 24)] {
            let labels = vec!["x".to_string(), "y".to_string(), "z".to_string()];
            let mut model = tiny(config).into_classifier(labels, 0, &mut rng(1)).unwrap();
            let names = &model.params.names;
            assert!(names.iter().all(|n| !n.starts_with("lm_head")), "{names:?}");
            assert_eq!(model.params.get(model.score.unwrap()).shape, [3, 8]);
            // Two rows: a text of 4 tokens, and one of 2 then padding (6, 6).
            let tokens = [1, 2, 3, 4, 5, 1, 6, 6];
            let pos = [0, 1, 2, 3, 0, 1, 2, 3];
            let ig = IGNORE;
            let targets = [ig, ig, ig, 2, ig, 0, ig, ig];
            gradcheck::check(&model.params, 1e-3, |g| model.loss(g, &tokens, &pos, 2, &targets));
            // The loss reads each text's last token: other padding gives the same loss, and
            // it is the cross-entropy of the logits `classify` gives there.
            let loss = |tokens: &[u32]| {
                let mut g = Graph::inference(&model.params, Workspace::default());
                let l = model.loss(&mut g, tokens, &pos, 2, &targets);
                g.value(l)[0]
            };
            assert_eq!(loss(&tokens), loss(&[1, 2, 3, 4, 5, 1, 0, 3]));
            let mut g = Graph::inference(&model.params, Workspace::default());
            let logits = model.classify(&mut g, &tokens[4..6], &pos[..2], 1, &[1]);
            let row = g.value(logits).to_vec();
            let alone = -(row[0] - row.iter().map(|x| x.exp()).sum::<f32>().ln());
            let mut g = Graph::inference(&model.params, Workspace::default());
            let l = model.loss(&mut g, &tokens[4..], &pos[4..], 1, &targets[4..]);
            assert!((g.value(l)[0] - alone).abs() < 1e-5);
            // --train-layers 0 trains the head alone: `score`, not the embedding.
            model.train_last_layers(0).unwrap();
            let trainable: Vec<&String> = model
                .params
                .names
                .iter()
                .zip(&model.params.trainable)
                .filter(|t| *t.1)
                .map(|t| t.0)
                .collect();
            let norm = if model.config.arch == Arch::Gpt2 {
                vec!["ln_f.weight", "ln_f.bias"]
            } else {
                vec!["model.norm.weight"]
            };
            assert_eq!(trainable.len(), norm.len() + 1, "{trainable:?}");
            assert!(trainable.iter().any(|n| *n == "score.weight"));
        }
    }

    #[test]
    fn llama_names_and_layouts_are_hugging_faces() {
        let c = GptConfig {
            qkv_bias: true,
            ..GptConfig::llama(11, 8, 12, 3, 2, 20)
        };
        let specs = Gpt::expected_tensors(&c);
        let shape = |name: &str| &specs.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(specs.len(), 1 + 2 * 12 + 1 + 1);
        assert_eq!(shape("model.embed_tokens.weight"), &[11, 12]);
        assert_eq!(shape("model.layers.1.self_attn.k_proj.weight"), &[12, 12]);
        assert_eq!(shape("model.layers.1.self_attn.k_proj.bias"), &[12]);
        assert_eq!(shape("model.layers.0.mlp.up_proj.weight"), &[20, 12]);
        assert_eq!(shape("model.layers.0.mlp.down_proj.weight"), &[12, 20]);
        assert_eq!(shape("model.layers.0.post_attention_layernorm.weight"), &[12]);
        assert_eq!(shape("model.norm.weight"), &[12]);
        assert_eq!(shape("lm_head.weight"), &[11, 12]);
        assert!(!specs.iter().any(|(n, _)| n.contains("o_proj.bias")));
    }

    #[test]
    fn bf16_weights_give_logits_close_to_f32() {
        for config in [
            GptConfig::gpt2(50, 16, 32, 4, 2),
            GptConfig::llama(50, 16, 32, 4, 2, 96),
        ] {
            bf16_close_to_f32(config);
        }
    }

    fn bf16_close_to_f32(config: GptConfig) {
        let model = Gpt::new(config, Init::Gpt2, &mut rng(4));
        let mut half = Gpt::from_params(model.config.clone(), model.params.clone());
        half.params.to_bf16();
        assert!(half.params.get(half.wte).data.is_empty(), "f32 copy freed");
        let tokens: Vec<u32> = (0..12).map(|i| i * 3 % 50).collect();
        let pos: Vec<u32> = (0..12).collect();
        let logits = |m: &Gpt| {
            let mut g = Graph::inference(&m.params, Workspace::default());
            let l = m.forward(&mut g, &tokens, &pos, 1, None);
            g.value(l).to_vec()
        };
        let (a, b) = (logits(&model), logits(&half));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-2 && worst > 0.0, "max |f32 - bf16| = {worst}");
    }

    #[test]
    fn quantized_weights_give_logits_close_to_f32() {
        for config in variants(50, 16, 32, 4, 2) {
            let model = Gpt::new(config.clone(), Init::Gpt2, &mut rng(4));
            let tokens: Vec<u32> = (0..12).map(|i| i * 7 % 50).collect();
            let pos: Vec<u32> = (0..12).collect();
            let logits = |m: &Gpt| {
                let mut g = Graph::inference(&m.params, Workspace::default());
                let l = m.forward(&mut g, &tokens, &pos, 1, None);
                g.value(l).to_vec()
            };
            let worst = |a: &[f32], b: &[f32]| {
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
            };
            let exact = logits(&model);
            // Tolerances relative to max |logit|. Against the f32 model: the weights' rounding
            // (measured at most: Q8_0 1.0%, Q4_1 12%, Q4_0 19%); against an f32 model of the
            // dequantized weights, only the activations' rounding to 8 bits (measured at most 0.8%).
            for (kind, tol) in [
                (quant::Kind::Q8_0, 0.03),
                (quant::Kind::Q4_1, 0.3),
                (quant::Kind::Q4_0, 0.4),
            ] {
                let mut q = Gpt::from_params(config.clone(), model.params.clone());
                q.quantize(kind).unwrap();
                assert!(q.params.get(q.wte).data.is_empty(), "f32 copy freed");
                let got = logits(&q);
                let deq = dequantized(&q);
                let (vs_f32, vs_deq) = (worst(&got, &exact), worst(&got, &logits(&deq)));
                eprintln!(
                    "{:?} {kind}: max |logit diff| / max |logit|: vs f32 {vs_f32:.4}, vs dequantized {vs_deq:.4}",
                    config.arch
                );
                assert!(vs_f32 < tol && vs_f32 > 0.0, "{kind}: {vs_f32} from f32");
                assert!(vs_deq < 0.02, "{kind}: {vs_deq} from the dequantized weights in f32");
                check_kv_decoding(&q);
            }
        }
        let mut odd = Gpt::new(GptConfig::gpt2(50, 16, 24, 4, 1), Init::Gpt2, &mut rng(1));
        let err = odd.quantize(quant::Kind::Q8_0).unwrap_err().to_string();
        assert!(err.contains("rows of 24 values"), "{err}");
        assert!(odd.quantize(quant::Kind::Q6_K).is_err());
    }

    #[test]
    fn kv_cache_decoding_matches_full_forward() {
        for config in variants(9, 8, 12, 3, 2) {
            check_kv_decoding(&tiny(config));
        }
    }

    /// `q` with every quantized matrix back in f32, as its blocks dequantize.
    fn dequantized(q: &Gpt) -> Gpt {
        let mut p = q.params.clone();
        for i in 0..p.tensors.len() {
            p.tensors[i].data = q.f32_values(i).into_owned();
            p.quant[i] = None;
        }
        Gpt::from_params(q.config.clone(), p)
    }

    /// Decoding with a KV cache (2 sequences of 6: a prefill of 2, then one
    /// token at a time) gives the full forward's logits.
    fn check_kv_decoding(model: &Gpt) {
        let config = &model.config;
        {
            let tokens: Vec<u32> = vec![8, 3, 1, 4, 1, 5, 0, 2, 6, 7, 3, 3]; // two sequences of 6
            let pos: Vec<u32> = (0..12).map(|i| i % 6).collect();
            let g_full = {
                let mut g = Graph::inference(&model.params, Workspace::default());
                let logits = model.forward(&mut g, &tokens, &pos, 2, None);
                g.value(logits).to_vec()
            };
            // Prefill 2 tokens per sequence, then one at a time.
            let mut cache = KvCache::new(config, 2, 6);
            let mut ws = Workspace::default();
            let mut t = 0;
            for step in [2, 1, 1, 1, 1] {
                let (tok, p): (Vec<u32>, Vec<u32>) = (0..2)
                    .flat_map(|b| (t..t + step).map(move |i| (b, i)))
                    .map(|(b, i)| (tokens[b * 6 + i], i as u32))
                    .unzip();
                let mut g = Graph::inference(&model.params, ws);
                let logits = model.forward(&mut g, &tok, &p, 2, Some(&mut cache));
                let got = g.value(logits);
                let v = config.vocab_size;
                for (r, (b, i)) in (0..2).flat_map(|b| (t..t + step).map(move |i| (b, i))).enumerate() {
                    let want = &g_full[(b * 6 + i) * v..][..v];
                    for (x, y) in got[r * v..][..v].iter().zip(want) {
                        assert!((x - y).abs() < 1e-5, "seq {b} pos {i}: {x} vs {y}");
                    }
                }
                ws = g.finish();
                t += step;
            }
            assert_eq!(cache.len(), 6);
        }
    }
}
