//! llm.c's GPT-2 checkpoint (`gpt2_124M.bin`, written by its `train_gpt2.py`).
//!
//! A header of 256 little-endian i32s — magic 20240326, version (3 = float32,
//! 5 = bfloat16), max_seq_len, vocab_size, n_layer, n_head, n_embd and the
//! padded vocab size — then every parameter in llm.c's order, each array
//! holding that tensor for all layers. llm.c keeps linear weights as
//! `nn.Linear` does, `[out, in]`; ours are Conv1D `[in, out]`, so they are
//! transposed. The padding rows of the token embedding are dropped.

use super::{transpose, Source};
use crate::autograd::Params;
use crate::io::{map_file, Elem};
use crate::model::{Gpt, GptConfig};
use crate::tensor::Tensor;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// The first i32 of an llm.c model file.
pub const MAGIC: i32 = 20240326;
/// The first i32 of llm.c's tokenizer file, a common mix-up.
const TOKENIZER_MAGIC: i32 = 20240328;
const HEADER_BYTES: usize = 256 * 4;

/// True when `head` (a file's first bytes) starts with llm.c's model magic number.
pub fn has_magic(head: &[u8]) -> bool {
    head.get(..4) == Some(&MAGIC.to_le_bytes()[..])
}

/// Loads an llm.c `.bin` model file.
pub fn load(path: &Path) -> Result<Gpt> {
    parse(Source::mapped(&map_file(path)?))
}

/// Reads a whole llm.c model file.
pub(crate) fn parse(source: Source) -> Result<Gpt> {
    let bytes = source.bytes();
    ensure!(
        bytes.len() >= HEADER_BYTES,
        "the file is {} bytes, shorter than llm.c's 1024-byte header: it is truncated",
        bytes.len()
    );
    let header: Vec<i32> = bytes[..HEADER_BYTES]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match header[0] {
        MAGIC => {}
        TOKENIZER_MAGIC => bail!("this is llm.c's tokenizer file, not a model: pass gpt2_124M.bin instead"),
        m => bail!("bad magic number {m}: not an llm.c GPT-2 model file (expected {MAGIC})"),
    }
    let elem = match header[1] {
        3 => Elem::F32,
        5 => Elem::Bf16,
        v => bail!("llm.c file version {v} is not supported (3 = float32, 5 = bfloat16)"),
    };
    let dim = |i: usize, name: &str| -> Result<usize> {
        let v = header[i];
        ensure!(
            v > 0,
            "the header's {name} is {v}, it must be positive: the file is corrupt"
        );
        Ok(v as usize)
    };
    let (max_t, v, l, nh, c, vp) = (
        dim(2, "max_seq_len")?,
        dim(3, "vocab_size")?,
        dim(4, "num_layers")?,
        dim(5, "num_heads")?,
        dim(6, "channels")?,
        dim(7, "padded_vocab_size")?,
    );
    ensure!(
        vp >= v,
        "the header's padded vocab size {vp} is below its vocab size {v}: the file is corrupt"
    );
    let config = GptConfig::gpt2(v, max_t, c, nh, l);
    config.validate().context("the header describes no valid GPT-2")?;

    let arrays = layout(&config, vp).context("the header's sizes overflow: the file is corrupt")?;
    let total = arrays
        .iter()
        .try_fold(0usize, |acc, a| acc.checked_add(a.len))
        .and_then(|n| n.checked_mul(elem.size()))
        .and_then(|n| n.checked_add(HEADER_BYTES))
        .context("the header's sizes overflow: the file is corrupt")?;
    ensure!(
        bytes.len() >= total,
        "the file is {} bytes but its header implies {total}: it is truncated",
        bytes.len()
    );
    ensure!(
        bytes.len() == total,
        "the file is {} bytes but its header implies {total}: it has trailing data or a wrong header",
        bytes.len()
    );

    let mut params = Params::default();
    for (name, shape) in Gpt::expected_tensors(&config) {
        let (layer, within) = match name.strip_prefix("h.").and_then(|r| r.split_once('.')) {
            Some((i, rest)) => (i.parse::<usize>().expect("our own layer names"), rest),
            None => (0, name.as_str()),
        };
        let a = arrays
            .iter()
            .find(|a| a.name == within)
            .expect("llm.c stores every GPT-2 tensor");
        let numel: usize = shape.iter().product();
        let start = HEADER_BYTES + (a.offset + layer * a.len / if a.layered { l } else { 1 }) * elem.size();
        let mut data = source.decode(elem, &bytes[start..start + numel * elem.size()]);
        if a.transposed {
            data = transpose(&data, shape[1], shape[0]);
        }
        params.add(name, Tensor::from_vec(&shape, data));
    }
    Ok(Gpt::from_params(config, params))
}

/// One of llm.c's parameter arrays: our name for its tensor (within a layer
/// for per-layer arrays), where it starts (in elements, after the header),
/// how many elements it holds, whether it has one tensor per layer and
/// whether it is a linear weight stored `[out, in]`.
struct Array {
    name: &'static str,
    offset: usize,
    len: usize,
    layered: bool,
    transposed: bool,
}

/// llm.c's arrays in file order, or `None` if a size overflows.
fn layout(c: &GptConfig, vp: usize) -> Option<Vec<Array>> {
    let (e, l) = (c.n_embd, c.n_layer);
    let size = |dims: &[usize]| dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let per_layer = [
        ("ln_1.weight", size(&[e])),
        ("ln_1.bias", size(&[e])),
        ("attn.c_attn.weight", size(&[3, e, e])),
        ("attn.c_attn.bias", size(&[3, e])),
        ("attn.c_proj.weight", size(&[e, e])),
        ("attn.c_proj.bias", size(&[e])),
        ("ln_2.weight", size(&[e])),
        ("ln_2.bias", size(&[e])),
        ("mlp.c_fc.weight", size(&[4, e, e])),
        ("mlp.c_fc.bias", size(&[4, e])),
        ("mlp.c_proj.weight", size(&[4, e, e])),
        ("mlp.c_proj.bias", size(&[e])),
    ];
    let mut sizes = vec![
        ("wte.weight", size(&[vp, e])?, false),
        ("wpe.weight", size(&[c.n_ctx, e])?, false),
    ];
    for (name, n) in per_layer {
        sizes.push((name, n?.checked_mul(l)?, true));
    }
    sizes.extend([("ln_f.weight", e, false), ("ln_f.bias", e, false)]);
    let mut offset = 0usize;
    sizes
        .into_iter()
        .map(|(name, len, layered)| {
            let a = Array {
                name,
                offset,
                len,
                layered,
                transposed: name.contains("c_") && name.ends_with("weight"),
            };
            offset = offset.checked_add(len)?;
            Some(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Init;
    use crate::tensor::rng;

    /// What llm.c's `write_model` writes for `m` in float32, vocab padded to `vp` rows of zeros.
    fn llmc_bytes(m: &Gpt, vp: usize) -> Vec<u8> {
        let c = &m.config;
        let mut header = [0i32; 256];
        let dims = [c.n_ctx, c.vocab_size, c.n_layer, c.n_head, c.n_embd, vp];
        header[0] = MAGIC;
        header[1] = 3;
        for (h, d) in header[2..8].iter_mut().zip(dims) {
            *h = d as i32;
        }
        let mut out: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut push = |t: &Tensor, transposed: bool| {
            let data = if transposed {
                transpose(&t.data, t.shape[0], t.shape[1])
            } else {
                t.data.clone()
            };
            out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
        };
        let tensor = |name: &str| m.params.get(m.params.find(name).unwrap());
        for a in layout(c, vp).unwrap() {
            if a.layered {
                (0..c.n_layer).for_each(|i| push(tensor(&format!("h.{i}.{}", a.name)), a.transposed));
            } else {
                push(tensor(a.name), false);
            }
            if a.name == "wte.weight" {
                push(&Tensor::zeros(&[vp - c.vocab_size, c.n_embd]), false);
            }
        }
        out
    }

    fn tiny() -> Gpt {
        Gpt::new(GptConfig::gpt2(11, 8, 12, 3, 2), Init::Gpt2, &mut rng(3))
    }

    #[test]
    fn reads_llmc_layout_back_to_the_same_model() {
        let m = tiny();
        let back = parse(Source::memory(&llmc_bytes(&m, 16))).unwrap();
        assert_eq!(back.config, m.config);
        assert_eq!(back.params, m.params);
    }

    #[test]
    fn damaged_files_are_clear_errors() {
        let good = llmc_bytes(&tiny(), 16);
        let err = |bytes: &[u8]| format!("{:#}", parse(Source::memory(bytes)).err().expect("must fail"));
        for cut in [0, 3, 1023, 1024, good.len() / 2, good.len() - 1] {
            assert!(
                err(&good[..cut]).contains("truncated"),
                "cut at {cut}: {}",
                err(&good[..cut])
            );
        }
        assert!(err(&[good.as_slice(), &[0]].concat()).contains("trailing"));
        let with = |edits: &[(usize, i32)]| {
            let mut b = good.clone();
            for &(i, v) in edits {
                b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            b
        };
        assert!(err(&with(&[(0, 7)])).contains("magic"));
        assert!(err(&with(&[(0, 20240328)])).contains("tokenizer"));
        assert!(err(&with(&[(1, 4)])).contains("version 4"));
        assert!(err(&with(&[(4, -2)])).contains("num_layers is -2"));
        assert!(err(&with(&[(7, 10)])).contains("padded vocab"));
        assert!(err(&with(&[(5, 5)])).contains("divisible"));
        assert!(err(&with(&[(2, 9)])).contains("truncated"));
        let huge = [(4, i32::MAX), (5, 1), (6, i32::MAX)];
        assert!(err(&with(&huge)).contains("overflow"), "{}", err(&with(&huge)));
    }
}
