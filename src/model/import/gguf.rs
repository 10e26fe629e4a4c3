//! llama.cpp's GGUF model files: architectures `llama` (Llama, SmolLM2,
//! Mistral-style models) and `gpt2`. The config comes from the `{arch}.*`
//! metadata, the tokenizer from `tokenizer.ggml.*`, the weights from the
//! tensor table, each checked against the others before anything is
//! allocated for it.
//!
//! Layout. A GGUF tensor's `dims` are ggml's `ne`, fastest first: a PyTorch
//! `[rows, cols]` matrix is stored with `dims == [cols, rows]`, rows being
//! whole quantization blocks. llama.cpp's converter writes every linear layer
//! as `nn.Linear` holds it (`[out, in]`): Llama's names need nothing more,
//! GPT-2's Conv1D matrices (`[in, out]`) are transposed back. For `llama` the
//! converter also permutes the rows of `attn_q` and `attn_k` (and their
//! biases) within each head, for ggml's rotary convention that rotates
//! adjacent channels (`2j`, `2j+1`) where Hugging Face's rotates `j` and
//! `j + head_size/2` (`LlamaModel.permute` in `convert_hf_to_gguf.py`):
//! file row `h*hs + 2j + a` is Hugging Face row `h*hs + a*hs/2 + j`. We undo
//! it, so our rotary embedding gives llama.cpp's result.
//!
//! Every tensor is dequantized to f32 ([`crate::tensor::quant`]). [`raw_weights`]
//! hands out each parameter's stored blocks instead, with what must still be
//! done to them, for a loader that keeps them quantized.

use crate::autograd::Params;
use crate::io::gguf::{GgmlType, Gguf, Value};
use crate::model::config::{Arch, GptConfig};
use crate::model::Gpt;
use crate::tensor::quant::{dequantize_row, Kind, QMatrix};
use crate::tensor::rope::{inv_freq, Llama3Scaling, RopeConfig};
use crate::tensor::Tensor;
use crate::tokenizer::{Bpe, GgufVocab};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::HashSet;

/// The architectures (`general.architecture`) we read.
const ARCHES: [&str; 2] = ["llama", "gpt2"];

/// What must be done to a tensor's stored values (in file order, as a
/// row-major matrix of the file's `[rows, cols]`) to give our parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Nothing: the file's layout is ours.
    None,
    /// Undo llama.cpp's rotary permutation of the rows, with this many heads.
    Unpermute { heads: usize },
    /// Transpose (GPT-2's Conv1D matrices).
    Transpose,
}

/// One parameter as the file stores it.
#[derive(Clone, Debug)]
pub struct RawWeight<'a> {
    /// Our name ([`Gpt::expected_tensors`]).
    pub name: String,
    /// Its name in the file.
    pub gguf_name: String,
    pub ty: GgmlType,
    /// GGUF order (`dims[0]` fastest).
    pub dims: Vec<usize>,
    /// ggml blocks of `ty`, as in the file.
    pub bytes: &'a [u8],
    /// What turns the stored matrix into ours.
    pub fix: Fix,
}

/// A model and what else a GGUF file says about using it.
pub struct GgufModel {
    pub model: Gpt,
    /// The tokenizer of `tokenizer.ggml.*`, when the file has one.
    pub tokenizer: Option<Bpe>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// Reads everything: config, weights, tokenizer. With `keep_quantized`, the
/// matrices stored in a block format (Q4_0 ... Q6_K) stay in their blocks
/// ([`Params::set_quantized`]); everything else is dequantized to f32. The
/// metadata's arrays are freed before the weights are read ([`Gguf::drop_arrays`]).
pub fn read<B: AsRef<[u8]>>(g: &mut Gguf<B>, keep_quantized: bool) -> Result<GgufModel> {
    // The tokenizer before the weights (once the metadata is known to agree
    // with them): the scratch its building takes is then freed before the
    // weights arrive, not held beside them (peak memory).
    config(g)?;
    let tokenizer = match vocab(g)? {
        Some(v) => Some(Bpe::from_gguf(&v).with_context(|| format!("{}: reading its tokenizer", g.source()))?),
        None => None,
    };
    let chat_template = optional(g, "tokenizer.chat_template", |k| g.get_str(k).map(str::to_string))?;
    g.drop_arrays();
    crate::tensor::return_freed_memory();
    let model = model(g, keep_quantized)?;
    Ok(GgufModel {
        model,
        tokenizer,
        chat_template,
    })
}

/// The model of a GGUF file: its weights dequantized to f32, or with
/// `keep_quantized` its block-quantized matrices held as they are stored.
pub fn model<B: AsRef<[u8]>>(g: &Gguf<B>, keep_quantized: bool) -> Result<Gpt> {
    let config = config(g)?;
    let mut params = Params::default();
    // `raw_weights` gives the expected tensors, in order.
    for (w, (_, shape)) in raw_weights(g, &config)?.into_iter().zip(Gpt::expected_tensors(&config)) {
        let context = || format!("{}: tensor `{}`", g.source(), w.gguf_name);
        let bytes = w.bytes;
        match quantized(&w, keep_quantized).with_context(context)? {
            Some(q) => {
                let id = params.add(
                    w.name,
                    Tensor {
                        shape,
                        data: Vec::new(),
                    },
                );
                params.set_quantized(id, q);
            }
            None => {
                let data = dequantize(&w).with_context(context)?;
                params.add(w.name, Tensor::from_vec(&shape, data));
            }
        }
        g.release(bytes);
    }
    Ok(Gpt::from_params(config, params))
}

/// The stored blocks of `w` as a matrix the quantized kernels multiply by
/// (rows: output features), when it is a block-quantized weight matrix and
/// `keep` asks for it. GPT-2's learned positions are looked up, never
/// multiplied: they stay f32.
fn quantized(w: &RawWeight, keep: bool) -> Result<Option<QMatrix>> {
    let Some(kind) = Kind::from_ggml_id(w.ty.id()).filter(|k| keep && k.is_block_quant()) else {
        return Ok(None);
    };
    if w.dims.len() != 2 || w.gguf_name.starts_with("position_embd") {
        return Ok(None);
    }
    let (cols, rows) = (w.dims[0], w.dims[1]);
    // Each stored row (an output feature, GPT-2's Conv1D included) is a run of
    // whole blocks: the permutation moves whole rows.
    let bytes = match w.fix {
        Fix::Unpermute { heads } => unpermute(w.bytes, rows, w.bytes.len() / rows.max(1), heads),
        Fix::None | Fix::Transpose => w.bytes.to_vec(),
    };
    Ok(Some(QMatrix::new(kind, rows, cols, bytes)?))
}

/// The tensor's values, in our layout.
fn dequantize(w: &RawWeight) -> Result<Vec<f32>> {
    let kind = Kind::from_ggml_id(w.ty.id()).ok_or_else(|| {
        let known: Vec<String> = Kind::ALL.iter().map(Kind::to_string).collect();
        anyhow!("its type {} is not supported (only {})", w.ty, known.join(", "))
    })?;
    let n: usize = w.dims.iter().product();
    let mut data = vec![0.0; n];
    // The file's layout was checked when it was parsed: whole blocks, `n` values.
    dequantize_row(kind, w.bytes, &mut data);
    let cols = w.dims.first().copied().unwrap_or(1);
    let rows = n / cols.max(1);
    Ok(match w.fix {
        Fix::None => data,
        Fix::Transpose => super::transpose(&data, rows, cols),
        Fix::Unpermute { heads } => unpermute(&data, rows, cols, heads),
    })
}

/// Undoes `LlamaModel.permute` on `rows` rows of `row_len` elements (values,
/// or a quantized row's bytes): within each head of `rows / heads` rows, file
/// row `2j + a` becomes row `a * half + j`.
fn unpermute<T: Copy + Default>(data: &[T], rows: usize, row_len: usize, heads: usize) -> Vec<T> {
    rotary_rows(data, rows, row_len, heads, false)
}

/// Moves rows between llama.cpp's rotary order and ours within each head of
/// `rows / heads` rows: file row `2j + a` is our row `a * half + j`;
/// `to_file` goes from ours to the file's (`LlamaModel.permute`).
pub(crate) fn rotary_rows<T: Copy + Default>(
    data: &[T],
    rows: usize,
    row_len: usize,
    heads: usize,
    to_file: bool,
) -> Vec<T> {
    let hs = rows / heads;
    let half = hs / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for j in 0..half {
            for a in 0..2 {
                let file = (h * hs + 2 * j + a) * row_len;
                let ours = (h * hs + a * half + j) * row_len;
                let (from, to) = if to_file { (ours, file) } else { (file, ours) };
                out[to..to + row_len].copy_from_slice(&data[from..from + row_len]);
            }
        }
    }
    out
}

/// The value of an optional key: `None` when absent, an error when present but unreadable.
fn optional<B: AsRef<[u8]>, T>(g: &Gguf<B>, key: &str, read: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    match g.get(key) {
        None => Ok(None),
        Some(_) => read(key).map(Some),
    }
}

/// A non-negative integer of any integer type (writers differ: llama.cpp uses u32).
fn int<B: AsRef<[u8]>>(g: &Gguf<B>, key: &str) -> Result<Option<u64>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let n: Option<i128> = match *v {
        Value::U8(x) => Some(x.into()),
        Value::I8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::U64(x) => Some(x.into()),
        Value::I64(x) => Some(x.into()),
        _ => None,
    };
    let n = n.ok_or_else(|| {
        anyhow!(
            "{}: metadata `{key}` is {}, expected an integer",
            g.source(),
            v.type_name()
        )
    })?;
    u64::try_from(n).map(Some).map_err(|_| {
        anyhow!(
            "{}: metadata `{key}` is {n}, expected a non-negative integer",
            g.source()
        )
    })
}

/// A size (`usize`) the file must give.
fn size<B: AsRef<[u8]>>(g: &Gguf<B>, key: &str) -> Result<usize> {
    let n = int(g, key)?.ok_or_else(|| anyhow!("{}: metadata `{key}` is missing", g.source()))?;
    usize::try_from(n).map_err(|_| anyhow!("{}: metadata `{key}` is {n}, too large", g.source()))
}

/// A float of either float type.
fn float<B: AsRef<[u8]>>(g: &Gguf<B>, key: &str) -> Result<Option<f32>> {
    Ok(match g.get(key) {
        None => None,
        Some(Value::F32(x)) => Some(*x),
        Some(Value::F64(x)) => Some(*x as f32),
        Some(v) => bail!("{}: metadata `{key}` is {}, expected f32", g.source(), v.type_name()),
    })
}

/// `general.architecture`, checked to be one we read.
fn architecture<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<&str> {
    let arch = g.get_str("general.architecture")?;
    ensure!(
        ARCHES.contains(&arch),
        "{}: architecture {arch:?} is not supported (only {})",
        g.source(),
        ARCHES.join(", ")
    );
    Ok(arch)
}

/// The model's config, from the `{arch}.*` metadata and the token embedding's shape.
pub fn config<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<GptConfig> {
    let arch = architecture(g)?;
    let src = g.source();
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = size(g, &key("block_count"))?;
    let n_embd = size(g, &key("embedding_length"))?;
    let n_inner = size(g, &key("feed_forward_length"))?;
    let n_head = size(g, &key("attention.head_count"))?;
    let n_kv_head = match int(g, &key("attention.head_count_kv"))? {
        Some(_) => size(g, &key("attention.head_count_kv"))?,
        None => n_head,
    };
    let n_ctx = size(g, &key("context_length"))?;
    // The vocabulary: the token embedding's rows, which the token list and
    // `{arch}.vocab_size` must agree with.
    let (embd, _) = g
        .tensor("token_embd.weight")
        .ok_or_else(|| anyhow!("{src}: tensor `token_embd.weight` (the token embedding) is missing"))?;
    ensure!(
        embd.dims.len() == 2 && embd.dims[0] == n_embd,
        "{src}: tensor `token_embd.weight` has dims {:?}, but {} = {n_embd} implies [{n_embd}, vocabulary]",
        embd.dims,
        key("embedding_length")
    );
    let vocab_size = embd.dims[1];
    if let Some(tokens) = g.get("tokenizer.ggml.tokens") {
        let n = match tokens {
            Value::Array(_, items) => items.len(),
            v => bail!(
                "{src}: metadata `tokenizer.ggml.tokens` is {}, expected an array",
                v.type_name()
            ),
        };
        ensure!(
            n == vocab_size,
            "{src}: the vocabulary (tokenizer.ggml.tokens) has {n} tokens but the token embedding \
             (token_embd.weight) has {vocab_size} rows: they do not belong together"
        );
    }
    if let Some(v) = int(g, &key("vocab_size"))? {
        ensure!(
            v == vocab_size as u64,
            "{src}: {} is {v} but the token embedding (token_embd.weight) has {vocab_size} rows",
            key("vocab_size")
        );
    }
    let mut c = match arch {
        "gpt2" => {
            let mut c = GptConfig::gpt2(vocab_size, n_ctx, n_embd, n_head, n_layer);
            c.n_inner = n_inner;
            c.n_kv_head = n_kv_head;
            c.norm_eps = float(g, &key("attention.layer_norm_epsilon"))?.unwrap_or(1e-5);
            c.tie_word_embeddings = g.tensor("output.weight").is_none();
            c
        }
        _ => {
            let mut c = GptConfig::llama(vocab_size, n_ctx, n_embd, n_head, n_layer, n_inner);
            c.n_kv_head = n_kv_head;
            c.norm_eps = float(g, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
            c.rope = Some(rope(g, arch, n_embd, n_head, n_ctx)?);
            c.tie_word_embeddings = g.tensor("output.weight").is_none();
            // Biases on q/k/v (as Qwen2 has them), where the file holds them.
            c.qkv_bias = g.tensor("blk.0.attn_q.bias").is_some();
            c
        }
    };
    c.bos_token_id = token_id(g, "tokenizer.ggml.bos_token_id")?;
    c.eos_token_id = token_id(g, "tokenizer.ggml.eos_token_id")?.into_iter().collect();
    c.validate()
        .with_context(|| format!("{src}: the metadata describes no model we can run"))?;
    check_sizes(g, &c)?;
    Ok(c)
}

/// A token id of the metadata, if set.
fn token_id<B: AsRef<[u8]>>(g: &Gguf<B>, key: &str) -> Result<Option<u32>> {
    match int(g, key)? {
        None => Ok(None),
        Some(id) => Ok(Some(u32::try_from(id).map_err(|_| {
            anyhow!("{}: metadata `{key}` is {id}, not a token id", g.source())
        })?)),
    }
}

/// Rotary embeddings: `rope.freq_base`, and Llama 3's scaling where the file
/// holds `rope_freqs.weight`; other scalings are refused.
fn rope<B: AsRef<[u8]>>(g: &Gguf<B>, arch: &str, n_embd: usize, n_head: usize, n_ctx: usize) -> Result<RopeConfig> {
    let src = g.source();
    let key = |k: &str| format!("{arch}.{k}");
    let theta = float(g, &key("rope.freq_base"))?.unwrap_or(10000.0);
    ensure!(
        theta.is_finite() && theta > 1.0,
        "{src}: {} is {theta}, expected a number above 1",
        key("rope.freq_base")
    );
    if let Some(d) = int(g, &key("rope.dimension_count"))? {
        let hs = n_embd.checked_div(n_head).unwrap_or(0) as u64;
        ensure!(
            d == hs,
            "{src}: {} is {d}, but only rotating whole heads ({} / {} = {hs}) is supported",
            key("rope.dimension_count"),
            key("embedding_length"),
            key("attention.head_count")
        );
    }
    if let Some(kind) = optional(g, &key("rope.scaling.type"), |k| g.get_str(k))? {
        ensure!(
            kind == "none",
            "{src}: {} is {kind:?}: scaled rotary embeddings are not supported",
            key("rope.scaling.type")
        );
    }
    let plain = RopeConfig { theta, scaling: None };
    let Some((info, bytes)) = g.tensor(ROPE_FREQS) else {
        return Ok(plain);
    };
    let hs = n_embd / n_head;
    ensure!(
        info.ty == GgmlType::F32 && info.dims == [hs / 2],
        "{src}: tensor `{ROPE_FREQS}` is {} {:?}, expected F32 [{}] (one factor per rotary frequency)",
        info.ty,
        info.dims,
        hs / 2
    );
    let factors: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let scaling = llama3_scaling(&factors, hs, theta, n_ctx).ok_or_else(|| {
        anyhow!("{src}: tensor `{ROPE_FREQS}` holds factors that are not Llama 3's rope scaling: not supported")
    })?;
    Ok(RopeConfig { theta, scaling })
}

/// Llama 3's rescaled rotary frequencies, as llama.cpp's converter stores them.
pub(crate) const ROPE_FREQS: &str = "rope_freqs.weight";

/// Llama 3's rope scaling whose frequencies are `inv_freq[i] / factors[i]`
/// (llama.cpp's `rope_freqs`: 1 for short wavelengths, `factor` for long
/// ones, a blend between), checked to reproduce every factor; `Some(None)`
/// when every factor is 1. Only the ratios of the context length to the two
/// frequency factors matter, so the context is taken as `n_ctx`.
fn llama3_scaling(factors: &[f32], hs: usize, theta: f32, n_ctx: usize) -> Option<Option<Llama3Scaling>> {
    let base = inv_freq(hs, RopeConfig { theta, scaling: None });
    if factors.iter().any(|f| !f.is_finite() || *f < 1.0 - 1e-6) {
        return None;
    }
    let big = factors.iter().copied().fold(1.0f32, f32::max);
    if big <= 1.0 + 1e-6 {
        return Some(None);
    }
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs();
    let wavelen = |i: usize| 2.0 * std::f64::consts::PI / base[i] as f64;
    let (big64, l) = (big as f64, n_ctx as f64);
    let (mut high, mut low, mut mid) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &f) in factors.iter().enumerate() {
        if close(f, 1.0) {
            high.push(i);
        } else if close(f, big) {
            low.push(i);
        } else {
            // smooth = (L / wavelen - lff) / (hff - lff), from 1 / f = (1 - smooth) / factor + smooth.
            mid.push((i, (1.0 / f as f64 - 1.0 / big64) / (1.0 - 1.0 / big64)));
        }
    }
    // Wavelengths grow with i: the short (kept) ones come first, the long (slowed) ones last.
    let max_high = high.iter().map(|&i| wavelen(i)).fold(0.0, f64::max);
    let min_low = low.iter().map(|&i| wavelen(i)).fold(f64::INFINITY, f64::min);
    let (lff, hff) = match mid.as_slice() {
        [] => {
            let (a, b) = (max_high.max(1e-3), min_low.min(max_high.max(1e-3) * 1e6));
            // Any thresholds between the two bands.
            (l / (b / (b / a).powf(0.25)), l / (a * (b / a).powf(0.25)))
        }
        [(i, s)] => {
            let w = wavelen(*i);
            let a = if high.is_empty() { w / 2.0 } else { max_high };
            let hff = l / (a * (w / a).sqrt());
            let x = l / w;
            ((x - s * hff) / (1.0 - s), hff)
        }
        [(i, si), .., (j, sj)] => {
            let (xi, xj) = (l / wavelen(*i), l / wavelen(*j));
            let slope = (sj - si) / (xj - xi); // 1 / (hff - lff)
            let lff = xi - si / slope;
            (lff, lff + 1.0 / slope)
        }
    };
    let s = Llama3Scaling {
        factor: big,
        low_freq_factor: lff as f32,
        high_freq_factor: hff as f32,
        original_max_position_embeddings: n_ctx,
    };
    if !(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor && s.high_freq_factor.is_finite()) {
        return None;
    }
    let scaled = inv_freq(
        hs,
        RopeConfig {
            theta,
            scaling: Some(s),
        },
    );
    let same = scaled
        .iter()
        .zip(&base)
        .zip(factors)
        .all(|((got, b), f)| close(*got, b / f));
    same.then_some(Some(s))
}

/// Checks the sizes the config implies against the file before any table is
/// built from them: as many layers as the tensor table can hold, and a rotary
/// table no larger than the file.
fn check_sizes<B: AsRef<[u8]>>(g: &Gguf<B>, c: &GptConfig) -> Result<()> {
    let src = g.source();
    let n_tensors = g.tensors().count();
    ensure!(
        c.n_layer <= n_tensors,
        "{src}: it claims {} layers but holds only {n_tensors} tensors",
        c.n_layer
    );
    let file_bytes = g.data_offset() + g.tensors().map(|(t, _)| t.n_bytes()).sum::<usize>();
    let table = c.n_ctx.checked_mul(c.head_size()).and_then(|n| n.checked_mul(4));
    ensure!(
        table.is_some_and(|b| b <= file_bytes.max(1 << 20)),
        "{src}: its context length {} is too large for a model of this size",
        c.n_ctx
    );
    Ok(())
}

/// The file's name for our parameter `name` (of architecture `arch`), and what turns its values into ours.
pub(crate) fn gguf_name(c: &GptConfig, name: &str) -> Result<(String, Fix)> {
    let (base, suffix) = name
        .rsplit_once('.')
        .ok_or_else(|| anyhow!("parameter {name} has no suffix"))?;
    let layer_of = |prefix: &str| -> Option<(usize, &str)> {
        let rest = base.strip_prefix(prefix)?;
        let (i, rest) = rest.split_once('.')?;
        Some((i.parse().ok()?, rest))
    };
    let matrix = suffix == "weight";
    let (gguf, fix) = match c.arch {
        Arch::Llama => {
            let top = match base {
                "model.embed_tokens" => Some("token_embd"),
                "model.norm" => Some("output_norm"),
                "lm_head" => Some("output"),
                _ => None,
            };
            match top {
                Some(t) => (t.to_string(), Fix::None),
                None => {
                    let (i, part) = layer_of("model.layers.").ok_or_else(|| anyhow!("unknown parameter {name}"))?;
                    let (t, fix) = match part {
                        "input_layernorm" => ("attn_norm", Fix::None),
                        "self_attn.q_proj" => ("attn_q", Fix::Unpermute { heads: c.n_head }),
                        "self_attn.k_proj" => ("attn_k", Fix::Unpermute { heads: c.n_kv_head }),
                        "self_attn.v_proj" => ("attn_v", Fix::None),
                        "self_attn.o_proj" => ("attn_output", Fix::None),
                        "post_attention_layernorm" => ("ffn_norm", Fix::None),
                        "mlp.gate_proj" => ("ffn_gate", Fix::None),
                        "mlp.up_proj" => ("ffn_up", Fix::None),
                        "mlp.down_proj" => ("ffn_down", Fix::None),
                        _ => bail!("unknown parameter {name}"),
                    };
                    (format!("blk.{i}.{t}"), fix)
                }
            }
        }
        Arch::Gpt2 => {
            let top = match base {
                "wte" => Some("token_embd"),
                "wpe" => Some("position_embd"),
                "ln_f" => Some("output_norm"),
                "lm_head" => Some("output"),
                _ => None,
            };
            match top {
                Some(t) => (t.to_string(), Fix::None),
                None => {
                    let (i, part) = layer_of("h.").ok_or_else(|| anyhow!("unknown parameter {name}"))?;
                    let conv1d = if matrix { Fix::Transpose } else { Fix::None };
                    let (t, fix) = match part {
                        "ln_1" => ("attn_norm", Fix::None),
                        "attn.c_attn" => ("attn_qkv", conv1d),
                        "attn.c_proj" => ("attn_output", conv1d),
                        "ln_2" => ("ffn_norm", Fix::None),
                        "mlp.c_fc" => ("ffn_up", conv1d),
                        "mlp.c_proj" => ("ffn_down", conv1d),
                        _ => bail!("unknown parameter {name}"),
                    };
                    (format!("blk.{i}.{t}"), fix)
                }
            }
        }
    };
    Ok((format!("{gguf}.{suffix}"), fix))
}

/// Every parameter of `config` as the file stores it, each checked to be
/// there with the shape the config implies; a tensor the config does not
/// account for is an error.
pub fn raw_weights<'a, B: AsRef<[u8]>>(g: &'a Gguf<B>, config: &GptConfig) -> Result<Vec<RawWeight<'a>>> {
    let src = g.source();
    let mut out = Vec::new();
    let mut used = HashSet::new();
    for (name, shape) in Gpt::expected_tensors(config) {
        let (gguf_name, fix) = gguf_name(config, &name)?;
        let (info, bytes) = g
            .tensor(&gguf_name)
            .ok_or_else(|| anyhow!("{src}: tensor `{gguf_name}` is missing: the metadata implies it ({name})"))?;
        // The file's [rows, cols] (dims reversed), as ours, or transposed.
        let stored: Vec<usize> = info.dims.iter().rev().copied().collect();
        let want: Vec<usize> = match fix {
            Fix::Transpose => shape.iter().rev().copied().collect(),
            _ => shape.clone(),
        };
        ensure!(
            stored == want,
            "{src}: tensor `{gguf_name}` has dims {:?} (ggml order), but the metadata implies {:?}",
            info.dims,
            want.iter().rev().collect::<Vec<_>>()
        );
        if let Fix::Unpermute { heads } = fix {
            // Whole heads of pairs: checked by the config (even head size), restated for the rows.
            ensure!(
                heads > 0 && stored[0].is_multiple_of(2 * heads),
                "{src}: tensor `{gguf_name}` has {} rows, not {heads} heads of channel pairs",
                stored[0]
            );
        }
        used.insert(gguf_name.clone());
        out.push(RawWeight {
            name,
            gguf_name,
            ty: info.ty,
            dims: info.dims.clone(),
            bytes,
            fix,
        });
    }
    // Tensors with no place in the model mean the metadata and the weights disagree.
    for (t, _) in g.tensors() {
        ensure!(
            used.contains(&t.name) || (t.name == ROPE_FREQS && config.rope.is_some()),
            "{src}: unexpected tensor `{}`: the metadata describes no model that has it",
            t.name
        );
    }
    Ok(out)
}

/// The `tokenizer.ggml.*` metadata, if the file has a tokenizer.
pub fn vocab<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<Option<GgufVocab>> {
    GgufVocab::read(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's converter's `rope_freqs` for Llama 3's scaling (`LlamaModel.generate_extra_tensors`).
    fn converter_factors(hs: usize, theta: f32, s: Llama3Scaling) -> Vec<f32> {
        let (low_wl, high_wl) = (
            s.original_max_position_embeddings as f64 / s.low_freq_factor as f64,
            s.original_max_position_embeddings as f64 / s.high_freq_factor as f64,
        );
        inv_freq(hs, RopeConfig { theta, scaling: None })
            .into_iter()
            .map(|f| {
                let wl = 2.0 * std::f64::consts::PI / f as f64;
                if wl < high_wl {
                    1.0
                } else if wl > low_wl {
                    s.factor
                } else {
                    let smooth = (s.original_max_position_embeddings as f64 / wl - s.low_freq_factor as f64)
                        / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
                    (1.0 / ((1.0 - smooth) / s.factor as f64 + smooth)) as f32
                }
            })
            .collect()
    }

    #[test]
    fn llama3_scaling_is_recovered_from_rope_freqs() {
        let cases = [
            // The golden's tiny model: one blended frequency.
            (8, 10000.0, 8.0, 0.5, 4.0, 32),
            // Llama 3.1 / 3.2: head 128 and 64.
            (128, 500000.0, 8.0, 1.0, 4.0, 8192),
            (64, 500000.0, 32.0, 1.0, 4.0, 8192),
            // No blended frequency at all.
            (8, 10000.0, 4.0, 1.0, 1.5, 32),
        ];
        for (hs, theta, factor, lff, hff, old) in cases {
            let s = Llama3Scaling {
                factor,
                low_freq_factor: lff,
                high_freq_factor: hff,
                original_max_position_embeddings: old,
            };
            let factors = converter_factors(hs, theta, s);
            let got = llama3_scaling(&factors, hs, theta, 4 * old)
                .expect("recovered")
                .expect("scaled");
            let want = inv_freq(
                hs,
                RopeConfig {
                    theta,
                    scaling: Some(s),
                },
            );
            let mine = inv_freq(
                hs,
                RopeConfig {
                    theta,
                    scaling: Some(got),
                },
            );
            for (a, b) in mine.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b, "{hs} {theta}: {mine:?} vs {want:?}");
            }
        }
        assert_eq!(llama3_scaling(&[1.0; 4], 8, 10000.0, 64), Some(None));
        assert_eq!(llama3_scaling(&[1.0, 3.0, 2.0, 8.0], 8, 10000.0, 64), None);
        assert_eq!(llama3_scaling(&[f32::NAN; 4], 8, 10000.0, 64), None);
    }

    #[test]
    fn unpermute_undoes_llama_cpps_permute() {
        // LlamaModel.permute: reshape(heads, 2, hs/2, cols).swapaxes(1, 2): row (h, a, j) -> (h, j, a).
        let (heads, hs, cols) = (2, 6, 3);
        let rows = heads * hs;
        let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let mut file = vec![0.0; hf.len()];
        for h in 0..heads {
            for a in 0..2 {
                for j in 0..hs / 2 {
                    let from = (h * hs + a * hs / 2 + j) * cols;
                    let to = (h * hs + 2 * j + a) * cols;
                    file[to..to + cols].copy_from_slice(&hf[from..from + cols]);
                }
            }
        }
        assert_eq!(unpermute(&file, rows, cols, heads), hf);
        assert_eq!(rotary_rows(&hf, rows, cols, heads, true), file);
    }
}
