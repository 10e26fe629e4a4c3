//! Checkpoint files: `model.safetensors` (Hugging Face GPT-2 tensor names)
//! and `config.json`, written atomically and read with every check a
//! damaged or mismatched file needs.

use super::{Gpt, GptConfig};
use crate::autograd::Params;
use crate::tensor::Tensor;
use crate::train::checkpoint::write_atomic;
use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// Tensors some GPT-2 files carry that are not parameters (causal-mask buffers).
fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

impl Gpt {
    /// Writes `dir/model.safetensors` and `dir/config.json`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes: Vec<Vec<u8>> = self
            .params
            .tensors
            .iter()
            .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = self
            .params
            .names
            .iter()
            .zip(&self.params.tensors)
            .zip(&bytes)
            .map(|((name, t), b)| Ok((name.as_str(), TensorView::new(Dtype::F32, t.shape.clone(), b)?)))
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let file = safetensors::serialize(views, Some(metadata))?;
        write_atomic(&dir.join(WEIGHTS_FILE), &file)?;
        write_atomic(&dir.join(CONFIG_FILE), self.config.to_json().as_bytes())
    }

    /// Loads a model directory (`config.json` + `model.safetensors`).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "model directory {} does not exist (train one with `gpt train --out {}`)",
                dir.display(),
                dir.display()
            );
        }
        let config = GptConfig::load(dir)?;
        let path = dir.join(WEIGHTS_FILE);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the map is read-only and lives only for this function; a
        // concurrent writer replaces the file by rename, leaving this inode intact.
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let params = read_params(&map, &config).with_context(|| format!("loading {}", path.display()))?;
        Ok(Gpt::from_params(config, params))
    }
}

/// Reads and checks every tensor the config needs from a safetensors buffer.
fn read_params(buffer: &[u8], config: &GptConfig) -> Result<Params> {
    let st = SafeTensors::deserialize(buffer)
        .map_err(|e| anyhow::anyhow!("the file is truncated or corrupt ({e}); re-save or re-download it"))?;
    // Files saved by `transformers` prefix every name with `transformer.`.
    let prefix = if st.names().iter().any(|n| n.starts_with("transformer.")) {
        "transformer."
    } else {
        ""
    };
    let expected = Gpt::expected_tensors(config);
    let mut params = Params::default();
    for (name, shape) in &expected {
        let view = st
            .tensor(&format!("{prefix}{name}"))
            .or_else(|_| st.tensor(name))
            .map_err(|_| anyhow::anyhow!("tensor {name} is missing: the weights do not match config.json"))?;
        if view.shape() != shape.as_slice() {
            bail!(
                "tensor {name} has shape {:?}, config.json implies {shape:?}",
                view.shape()
            );
        }
        if view.dtype() != Dtype::F32 {
            bail!("tensor {name} is {:?}; only F32 weights are supported", view.dtype());
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        params.add(name.clone(), Tensor::from_vec(shape, data));
    }
    // A tensor the config does not account for means config and weights disagree.
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for name in st.names() {
        let bare = name.strip_prefix(prefix).unwrap_or(name);
        let tied_head = bare == "lm_head.weight" && config.tie_word_embeddings;
        if !known.contains(bare) && !is_buffer(bare) && !tied_head {
            bail!("unexpected tensor {name}: the weights do not match config.json");
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Init;
    use crate::tensor::rng;

    #[test]
    fn save_load_round_trip_both_variants() {
        for config in [GptConfig::gpt2(11, 8, 12, 3, 2), GptConfig::microgpt(7)] {
            let dir = tempfile::tempdir().unwrap();
            let m = Gpt::new(config.clone(), Init::Gpt2, &mut rng(1));
            m.save(dir.path()).unwrap();
            let back = Gpt::load(dir.path()).unwrap();
            assert_eq!(back.config, config);
            assert_eq!(back.params, m.params);
        }
    }

    #[test]
    fn damaged_or_mismatched_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let m = Gpt::new(GptConfig::gpt2(11, 8, 12, 3, 2), Init::Gpt2, &mut rng(1));
        m.save(dir.path()).unwrap();
        let path = dir.path().join(WEIGHTS_FILE);
        let full = std::fs::read(&path).unwrap();

        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        let err = format!("{:#}", Gpt::load(dir.path()).err().unwrap());
        assert!(err.contains("truncated"), "{err}");

        std::fs::write(&path, &full[..5]).unwrap();
        assert!(format!("{:#}", Gpt::load(dir.path()).err().unwrap()).contains("truncated"));

        std::fs::write(&path, &full).unwrap();
        let mut other = GptConfig::gpt2(11, 8, 12, 3, 3);
        std::fs::write(dir.path().join(CONFIG_FILE), other.to_json()).unwrap();
        assert!(format!("{:#}", Gpt::load(dir.path()).err().unwrap()).contains("h.2"));
        other.n_layer = 1;
        std::fs::write(dir.path().join(CONFIG_FILE), other.to_json()).unwrap();
        assert!(format!("{:#}", Gpt::load(dir.path()).err().unwrap()).contains("unexpected tensor h.1"));

        let missing = dir.path().join("nope");
        assert!(format!("{:#}", Gpt::load(&missing).err().unwrap()).contains("does not exist"));
    }
}
