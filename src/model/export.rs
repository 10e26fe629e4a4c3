//! Writes a model as a GGUF file that llama.cpp runs (`gpt quantize`): the
//! `llama` or `gpt2` architecture's metadata, the tokenizer as
//! `tokenizer.ggml.*`, the chat template, and every weight in llama.cpp's
//! layout ([`super::import::gguf`] describes it; this is its inverse).
//!
//! What is stored how, as llama.cpp's own quantizer does it: weight
//! matrices as the chosen kind; the token embedding and the output layer as
//! Q8_0 when the kind has 4 bits (llama.cpp picks 6-bit Q6_K there: the
//! output layer is the most sensitive to rounding), norms, biases and
//! anything whose rows are not whole blocks as F32.

use super::import::gguf::{gguf_name, rotary_rows, Fix, ROPE_FREQS};
use super::import::transpose;
use super::{Arch, Gpt, GptConfig};
use crate::io::gguf::{GgmlType, GgufWriter};
use crate::tensor::quant::{quantize_row, Kind};
use crate::tensor::rope::{inv_freq, RopeConfig};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// The kinds a model can be written as.
pub const EXPORT_KINDS: [Kind; 6] = [Kind::F32, Kind::F16, Kind::BF16, Kind::Q8_0, Kind::Q4_0, Kind::Q4_1];

/// What goes into the file besides the weights.
pub struct GgufMeta<'a> {
    /// `general.name`.
    pub name: &'a str,
    pub tokenizer: &'a Tokenizer,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<&'a str>,
}

/// Writes `model` (every weight held as f32) to `path` as GGUF, its weight
/// matrices stored as `kind`. Atomic: `path` is whole or untouched.
pub fn write_gguf(model: &Gpt, meta: &GgufMeta, kind: Kind, path: &Path) -> Result<()> {
    ensure!(
        EXPORT_KINDS.contains(&kind),
        "cannot write {kind}: the kinds are {}",
        EXPORT_KINDS.map(|k| k.to_string()).join(", ")
    );
    let c = &model.config;
    let arch = architecture(c)?;
    ensure!(
        meta.tokenizer.vocab_size() == c.vocab_size,
        "the tokenizer has {} ids but the model {}: llama.cpp needs one token per row of the embedding",
        meta.tokenizer.vocab_size(),
        c.vocab_size
    );
    let mut w = GgufWriter::new();
    set_metadata(&mut w, c, arch, meta.name, kind)?;
    meta.tokenizer
        .to_gguf()?
        .write(&mut w)
        .context("writing the tokenizer")?;
    if let Some(t) = meta.chat_template {
        w.set("tokenizer.chat_template", t)?;
    }
    let tensors = tensors(model, kind)?;
    for t in &tensors {
        w.add_tensor(&t.name, &t.dims, t.ty, &t.bytes)?;
    }
    w.write(path)
}

/// llama.cpp's architecture for `c`, when `c` is exactly one: every switch
/// as that architecture has it, only sizes (and, for Llama, the rotary
/// embedding, grouped-query heads and q/k/v biases) free.
fn architecture(c: &GptConfig) -> Result<&'static str> {
    let (arch, like) = match c.arch {
        Arch::Gpt2 => (
            "gpt2",
            GptConfig {
                n_inner: c.n_inner,
                norm_eps: c.norm_eps,
                tie_word_embeddings: c.tie_word_embeddings,
                ..GptConfig::gpt2(c.vocab_size, c.n_ctx, c.n_embd, c.n_head, c.n_layer)
            },
        ),
        Arch::Llama => (
            "llama",
            GptConfig {
                n_kv_head: c.n_kv_head,
                norm_eps: c.norm_eps,
                rope: c.rope,
                qkv_bias: c.qkv_bias,
                tie_word_embeddings: c.tie_word_embeddings,
                ..GptConfig::llama(c.vocab_size, c.n_ctx, c.n_embd, c.n_head, c.n_layer, c.n_inner)
            },
        ),
    };
    let like = GptConfig {
        bos_token_id: c.bos_token_id,
        eos_token_id: c.eos_token_id.clone(),
        ..like
    };
    if &like != c {
        bail!(
            "this model is a variant of {arch} that llama.cpp's `{arch}` architecture does not describe (norm \
             {:?}, activation {:?}, biases {}, norm after the embedding {}, final norm {}, sliding window {:?}): \
             only GPT-2 and Llama models can be written as GGUF",
            c.norm,
            c.activation_function,
            c.bias,
            c.embd_norm,
            c.final_norm,
            c.sliding_window
        );
    }
    Ok(arch)
}

/// `general.*` and `{arch}.*`, the keys llama.cpp's loader reads.
fn set_metadata(w: &mut GgufWriter, c: &GptConfig, arch: &str, name: &str, kind: Kind) -> Result<()> {
    let key = |k: &str| format!("{arch}.{k}");
    let n = |x: usize| u32::try_from(x).context("a size beyond u32");
    w.set("general.architecture", arch)?;
    w.set("general.name", name)?;
    w.set("general.file_type", file_type(kind))?;
    w.set("general.quantization_version", 2u32)?;
    w.set(&key("context_length"), n(c.n_ctx)?)?;
    w.set(&key("embedding_length"), n(c.n_embd)?)?;
    w.set(&key("block_count"), n(c.n_layer)?)?;
    w.set(&key("feed_forward_length"), n(c.n_inner)?)?;
    w.set(&key("attention.head_count"), n(c.n_head)?)?;
    w.set(&key("attention.head_count_kv"), n(c.n_kv_head)?)?;
    w.set(&key("vocab_size"), n(c.vocab_size)?)?;
    match c.rope {
        Some(rope) => {
            w.set(&key("attention.layer_norm_rms_epsilon"), c.norm_eps)?;
            w.set(&key("rope.freq_base"), rope.theta)?;
            w.set(&key("rope.dimension_count"), n(c.head_size())?)?;
        }
        None => w.set(&key("attention.layer_norm_epsilon"), c.norm_eps)?,
    }
    Ok(())
}

/// llama.cpp's `llama_ftype` of a file whose matrices are `kind`.
fn file_type(kind: Kind) -> u32 {
    match kind {
        Kind::F16 => 1,
        Kind::Q4_0 => 2,
        Kind::Q4_1 => 3,
        Kind::Q8_0 => 7,
        Kind::BF16 => 32,
        _ => 0,
    }
}

/// One tensor as the file holds it.
struct Stored {
    name: String,
    /// GGUF order: `dims[0]` contiguous.
    dims: Vec<usize>,
    ty: GgmlType,
    bytes: Vec<u8>,
}

/// Every weight in llama.cpp's names, layout and types.
fn tensors(model: &Gpt, kind: Kind) -> Result<Vec<Stored>> {
    let c = &model.config;
    let p = &model.params;
    let mut out = Vec::new();
    for (name, shape) in Gpt::expected_tensors(c) {
        let id = p.find(&name).with_context(|| format!("the model has no {name}"))?;
        let data = &p.get(id).data;
        ensure!(
            !data.is_empty() && p.quant[id.0].is_none() && p.bf16[id.0].is_none(),
            "{name} is not held as f32: load the model with --dtype f32 to write it"
        );
        let (file_name, fix) = gguf_name(c, &name)?;
        let (rows, cols) = match shape[..] {
            [r, c] => (r, c),
            _ => (1, data.len()),
        };
        // Ours -> the file's [rows, cols].
        let (data, rows, cols) = match fix {
            Fix::None => (data.clone(), rows, cols),
            Fix::Transpose => (transpose(data, rows, cols), cols, rows),
            Fix::Unpermute { heads } => {
                // A bias is one value per row.
                let (r, len) = if shape.len() == 1 {
                    (data.len(), 1)
                } else {
                    (rows, cols)
                };
                (rotary_rows(data, r, len, heads, true), rows, cols)
            }
        };
        let matrix = shape.len() == 2 && !file_name.starts_with("position_embd");
        let whole_blocks = cols.is_multiple_of(kind.block_size());
        let embedding = file_name.starts_with("output.") || file_name.starts_with("token_embd");
        let ty = if !matrix || !whole_blocks {
            Kind::F32
        } else if kind.is_block_quant() && kind != Kind::Q8_0 && embedding {
            Kind::Q8_0
        } else {
            kind
        };
        out.push(stored(file_name, &data, rows, cols, shape.len(), ty)?);
    }
    if let Some(scaling) = c.rope.and_then(|r| r.scaling.map(|s| (r, s))) {
        // llama.cpp's `rope_freqs`: each frequency's divisor.
        let (rope, _) = scaling;
        let base = inv_freq(c.head_size(), RopeConfig { scaling: None, ..rope });
        let scaled = inv_freq(c.head_size(), rope);
        let factors: Vec<f32> = base.iter().zip(&scaled).map(|(b, s)| b / s).collect();
        out.push(stored(
            ROPE_FREQS.to_string(),
            &factors,
            1,
            factors.len(),
            1,
            Kind::F32,
        )?);
    }
    Ok(out)
}

fn stored(name: String, data: &[f32], rows: usize, cols: usize, n_dims: usize, ty: Kind) -> Result<Stored> {
    let ggml = GgmlType::from_id(ty.ggml_id()).context("every kind is a ggml type")?;
    let mut bytes = vec![0u8; ggml.bytes_of(data.len()).context("a tensor of whole blocks")?];
    quantize_row(ty, data, &mut bytes)?;
    let dims = if n_dims == 2 {
        vec![cols, rows]
    } else {
        vec![data.len()]
    };
    Ok(Stored {
        name,
        dims,
        ty: ggml,
        bytes,
    })
}
