//! Checkpoint files. [`Gpt::load`] is the one way in: it recognises a
//! Hugging Face / `gpt train` directory (`config.json` + `model.safetensors`,
//! or shards listed in `model.safetensors.index.json`; read here), OpenAI's
//! TensorFlow release folder and llm.c's `.bin` (read by [`super::import`]).
//! [`Gpt::save`] writes the first kind, atomically, with the names and layout
//! of the model's architecture.

use super::import::{self, check_config_fits, Source};
use super::{Gpt, GptConfig};
use crate::autograd::Params;
use crate::io::{map_file, write_atomic, write_safetensors_with, Elem};
use crate::tensor::Tensor;
use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Where `transformers` lists which shard holds each tensor of a large model.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const CONFIG_FILE: &str = "config.json";

/// The checkpoint formats [`Gpt::load`] reads.
#[derive(Debug, PartialEq)]
enum Format {
    /// A directory with `config.json` + `model.safetensors`.
    Safetensors(PathBuf),
    /// OpenAI's TensorFlow release folder (`hparams.json` + `model.ckpt.*`).
    Tf(PathBuf),
    /// An llm.c model file.
    Llmc(PathBuf),
    /// A GGUF file (llama.cpp).
    Gguf(PathBuf),
}

impl Format {
    /// What `path` holds: a model directory, `model.safetensors` itself, an
    /// llm.c `.bin`, or a directory holding exactly one llm.c `.bin`.
    fn detect(path: &Path) -> Result<Format> {
        if path.is_file() {
            if [WEIGHTS_FILE, WEIGHTS_INDEX_FILE]
                .map(Some)
                .contains(&path.file_name().and_then(|n| n.to_str()))
            {
                let dir = path.parent().unwrap_or(Path::new("."));
                return Ok(Format::Safetensors(dir.to_path_buf()));
            }
            if crate::io::gguf::is_gguf(path) {
                return Ok(Format::Gguf(path.to_path_buf()));
            }
            ensure!(
                is_llmc(path),
                "{} is not a model: give a model directory (config.json + model.safetensors, or OpenAI's \
                 hparams.json + model.ckpt.*), a GGUF file or an llm.c .bin model file",
                path.display()
            );
            return Ok(Format::Llmc(path.to_path_buf()));
        }
        ensure!(
            path.is_dir(),
            "model {} does not exist (train one with `gpt train --out {}`, or give a Hugging Face, TensorFlow or \
             llm.c GPT-2 checkpoint)",
            path.display(),
            path.display()
        );
        if path.join(WEIGHTS_FILE).is_file() || path.join(CONFIG_FILE).is_file() {
            return Ok(Format::Safetensors(path.to_path_buf()));
        }
        if path.join(import::tf::HPARAMS_FILE).is_file() {
            return Ok(Format::Tf(path.to_path_buf()));
        }
        let files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        let mut ggufs: Vec<PathBuf> = files
            .iter()
            .filter(|p| p.extension() == Some("gguf".as_ref()) && p.is_file())
            .cloned()
            .collect();
        ggufs.sort();
        if let Some(one) = only_one(path, &ggufs, "GGUF files")? {
            return Ok(Format::Gguf(one));
        }
        let mut bins: Vec<PathBuf> = files
            .into_iter()
            .filter(|p| p.extension() == Some("bin".as_ref()) && is_llmc(p))
            .collect();
        bins.sort();
        match only_one(path, &bins, "llm.c model files")? {
            Some(one) => Ok(Format::Llmc(one)),
            None => bail!(
                "{} holds no model: expected config.json + model.safetensors (Hugging Face or `gpt train`), \
                 hparams.json + model.ckpt.* (OpenAI's TensorFlow release), one .gguf file or one llm.c .bin file",
                path.display()
            ),
        }
    }
}

/// The one file of `files` (model files of one kind found in `dir`), `None`
/// if there is none; several are an error listing them.
fn only_one(dir: &Path, files: &[PathBuf], what: &str) -> Result<Option<PathBuf>> {
    match files {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => {
            let names: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "{} holds {} {what} ({}): pass the one to load",
                dir.display(),
                many.len(),
                names.join(", ")
            )
        }
    }
}

/// The GGUF file `path` names (the file, or the one `.gguf` in a directory
/// that holds no other kind of model), if it names one.
pub(crate) fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
    Ok(match Format::detect(path)? {
        Format::Gguf(file) => Some(file),
        _ => None,
    })
}

/// What the model at `path` stores its weights as: each element type
/// (safetensors' dtype names, ggml's for GGUF) with how many values it holds,
/// most first. Empty for the formats that hold f32 only (llm.c, TensorFlow).
pub fn stored_dtypes(path: &Path) -> Result<Vec<(String, usize)>> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    match Format::detect(path)? {
        Format::Gguf(file) => {
            for (info, _) in crate::io::gguf::Gguf::open(&file)?.tensors() {
                *counts.entry(info.ty.name().to_string()).or_default() += info.n_elements();
            }
        }
        Format::Safetensors(dir) => {
            // The weights and their shards (model-00001-of-00002.safetensors), not a run's optimizer state.
            let files = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            for file in files.flatten().map(|e| e.path()) {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !(name.starts_with("model") && name.ends_with(".safetensors")) {
                    continue;
                }
                let map = map_file(&file)?;
                let (_, meta) = SafeTensors::read_metadata(&map[..])
                    .map_err(|e| anyhow::anyhow!("{} is truncated or corrupt ({e})", file.display()))?;
                for info in meta.tensors().values() {
                    *counts.entry(format!("{:?}", info.dtype)).or_default() += info.shape.iter().product::<usize>();
                }
            }
        }
        Format::Tf(_) | Format::Llmc(_) => {}
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(counts)
}

/// True when `path` starts with llm.c's model magic number.
fn is_llmc(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && import::llmc::has_magic(&head)
}

impl Gpt {
    /// Writes `dir/model.safetensors` and `dir/config.json`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_with(dir, HashMap::new())
    }

    /// [`Gpt::save`] with extra string metadata in the safetensors header.
    pub fn save_with(&self, dir: &Path, mut metadata: HashMap<String, String>) -> Result<()> {
        metadata.insert("format".to_string(), "pt".to_string());
        // A classifier is stored as `transformers` stores one: its body under
        // the architecture's prefix (`transformer.` in GPT-2), then `score`.
        let prefix = match self.config.is_classifier() {
            true => self.config.arch.names().file_prefix,
            false => "",
        };
        let name_of = |name: &String| match name.starts_with(super::gpt::SCORE) {
            true => name.clone(),
            false => format!("{prefix}{name}"),
        };
        // As the crate lays them out: by name, data back to back; a quantized
        // matrix dequantized one at a time as it is written.
        let mut order: Vec<usize> = (0..self.params.names.len()).collect();
        order.sort_by_key(|&i| name_of(&self.params.names[i]));
        let layout: Vec<(String, Vec<usize>)> = (order.iter())
            .map(|&i| (name_of(&self.params.names[i]), self.params.tensors[i].shape.clone()))
            .collect();
        write_safetensors_with(&dir.join(WEIGHTS_FILE), &layout, metadata, |w| {
            (order.iter()).try_for_each(|&i| w.write_all(bytemuck::cast_slice(&self.f32_values(i))))
        })?;
        write_atomic(&dir.join(CONFIG_FILE), self.config.to_json().as_bytes())
    }

    /// The string metadata in the header of `dir/model.safetensors`.
    pub fn saved_metadata(dir: &Path) -> Result<HashMap<String, String>> {
        let map = map_file(&dir.join(WEIGHTS_FILE))?;
        let (_, meta) = SafeTensors::read_metadata(&map[..])
            .map_err(|e| anyhow::anyhow!("{} is truncated or corrupt ({e})", dir.join(WEIGHTS_FILE).display()))?;
        Ok(meta.metadata().clone().unwrap_or_default())
    }

    /// Loads a checkpoint in any format we read: a directory with
    /// `config.json` + `model.safetensors` or its shards (GPT-2 or a Llama-family
    /// model: ours, the Hub's, or saved by `transformers`; F32, F16 or BF16,
    /// computed in f32), OpenAI's TensorFlow release folder, a GGUF file
    /// (llama.cpp's `llama` or `gpt2`, dequantized to f32), or an llm.c `.bin`
    /// file (or a directory holding exactly one GGUF or llm.c file).
    pub fn load(path: &Path) -> Result<Self> {
        match Format::detect(path)? {
            Format::Safetensors(dir) => load_safetensors(&dir),
            Format::Tf(dir) => import::tf::load(&dir).with_context(|| format!("loading {}", dir.display())),
            Format::Llmc(file) => import::llmc::load(&file).with_context(|| format!("loading {}", file.display())),
            Format::Gguf(file) => import::gguf::model(&crate::io::gguf::Gguf::open(&file)?, false),
        }
    }
}

fn load_safetensors(dir: &Path) -> Result<Gpt> {
    let config = GptConfig::load(dir)?;
    let (single, index) = (dir.join(WEIGHTS_FILE), dir.join(WEIGHTS_INDEX_FILE));
    if single.is_file() {
        let map = map_file(&single)?;
        let params = read_params(&[(WEIGHTS_FILE, Source::mapped(&map))], None, &config)
            .with_context(|| format!("loading {}", single.display()))?;
        return Ok(Gpt::from_params(config, params));
    }
    ensure!(
        index.is_file(),
        "{} has config.json but neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} (only safetensors weights are \
         read: convert a pytorch_model.bin with `transformers`' save_pretrained(..., safe_serialization=True))",
        dir.display()
    );
    let weight_map = read_index(&index)?;
    let files: BTreeSet<&str> = weight_map.values().map(String::as_str).collect();
    let maps = files
        .iter()
        .map(|f| {
            let path = dir.join(f);
            ensure!(
                path.is_file(),
                "{} lists the shard {f}, which is missing",
                index.display()
            );
            map_file(&path)
        })
        .collect::<Result<Vec<_>>>()?;
    let shards: Vec<(&str, Source)> = files.iter().zip(&maps).map(|(f, m)| (*f, Source::mapped(m))).collect();
    let params = read_params(&shards, Some(&weight_map), &config)
        .with_context(|| format!("loading the shards {WEIGHTS_INDEX_FILE} lists in {}", dir.display()))?;
    Ok(Gpt::from_params(config, params))
}

/// The `weight_map` of a shard index (tensor name -> shard file name).
fn read_index(path: &Path) -> Result<HashMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let index: Index =
        serde_json::from_str(&text).with_context(|| format!("{} is not a shard index", path.display()))?;
    for file in index.weight_map.values() {
        let plain = Path::new(file).file_name().is_some_and(|n| n == file.as_str());
        ensure!(
            plain && file != "." && file != "..",
            "{} lists the shard {file:?}, which is not a file name in the model directory",
            path.display()
        );
    }
    Ok(index.weight_map)
}

/// A model from the bytes of `config.json` and `model.safetensors`: every
/// check [`Gpt::load`] makes, on memory (the fuzz target's entry point).
pub fn parse_checkpoint(config_json: &[u8], safetensors: &[u8]) -> Result<Gpt> {
    let text = std::str::from_utf8(config_json).context("config.json is not UTF-8")?;
    let config = GptConfig::from_json(text).context("config.json is not a valid model config")?;
    let params = read_params(&[(WEIGHTS_FILE, Source::memory(safetensors))], None, &config)?;
    Ok(Gpt::from_params(config, params))
}

/// Reads and checks every tensor the config needs from safetensors files
/// (`(file name, bytes)`: one file, or the shards of an index): each tensor
/// found exactly once, where the index says, with the config's shape, and
/// nothing the config does not account for.
fn read_params(
    shards: &[(&str, Source)],
    index: Option<&HashMap<String, String>>,
    config: &GptConfig,
) -> Result<Params> {
    let files = shards
        .iter()
        .map(|(file, source)| {
            SafeTensors::deserialize(source.bytes())
                .map_err(|e| anyhow::anyhow!("{file} is truncated or corrupt ({e}); re-save or re-download it"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Which shard holds each tensor (in name order, so errors name the same tensor each time).
    let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
    for (i, st) in files.iter().enumerate() {
        for name in st.names() {
            if let Some(j) = shard_of.insert(name.to_string(), i) {
                bail!("tensor {name} is in both {} and {}", shards[j].0, shards[i].0);
            }
        }
    }
    if let Some(index) = index {
        for (name, &i) in &shard_of {
            ensure!(
                index.get(name).is_some_and(|f| f == shards[i].0),
                "tensor {name} is in {} but the index says {}",
                shards[i].0,
                index.get(name).map_or("nothing of it", String::as_str)
            );
        }
        if let Some((name, file)) = index.iter().find(|(name, _)| !shard_of.contains_key(*name)) {
            bail!("the index lists tensor {name} in {file}, which does not hold it");
        }
    }
    let bytes = shards.iter().map(|(_, s)| s.bytes().len()).sum();
    check_config_fits(config, shard_of.len(), bytes).context("config.json does not match the weights")?;
    let names = config.arch.names();
    let prefixed = !names.file_prefix.is_empty() && shard_of.keys().any(|n| n.starts_with(names.file_prefix));
    let prefix = if prefixed { names.file_prefix } else { "" };
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let (stored, &i) = [format!("{prefix}{name}"), name.to_string()]
            .into_iter()
            .find_map(|n| shard_of.get_key_value(&n))
            .with_context(|| format!("tensor {name} is missing: the weights do not match config.json"))?;
        let view = files[i]
            .tensor(stored)
            .map_err(|e| anyhow::anyhow!("tensor {name} in {} is unreadable ({e})", shards[i].0))?;
        ensure!(
            view.shape() == shape,
            "tensor {name} has shape {:?}, config.json implies {shape:?}",
            view.shape()
        );
        let elem = match view.dtype() {
            Dtype::F32 => Elem::F32,
            Dtype::F16 => Elem::F16,
            Dtype::BF16 => Elem::Bf16,
            d => bail!("tensor {name} is {d:?}; only F32, F16 and BF16 weights are supported"),
        };
        Ok(shards[i].1.decode(elem, view.data()))
    };
    let expected = Gpt::expected_tensors(config);
    let mut params = Params::default();
    for (name, shape) in &expected {
        params.add(name.clone(), Tensor::from_vec(shape, read(name, shape)?));
    }
    // A tensor the config does not account for means config and weights disagree.
    let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let (lm_head, wte) = (format!("{}.weight", names.lm_head), format!("{}.weight", names.wte));
    for name in shard_of.keys() {
        let bare = name.strip_prefix(prefix).unwrap_or(name);
        if bare == lm_head && config.tie_word_embeddings {
            // A tied head saved anyway must be the embedding itself.
            let wte_id = params.find(&wte).expect("every model has a token embedding");
            ensure!(
                read(bare, &params.get(wte_id).shape)? == params.get(wte_id).data,
                "{lm_head} differs from {wte} but config.json says tie_word_embeddings: set it to false"
            );
        } else if !known.contains(bare) && !names.buffers.iter().any(|b| bare.ends_with(b)) {
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
            for path in [dir.path().to_path_buf(), dir.path().join(WEIGHTS_FILE)] {
                let back = Gpt::load(&path).unwrap();
                assert_eq!(back.config, config);
                assert_eq!(back.params, m.params);
            }
        }
    }

    #[test]
    fn formats_are_told_apart_and_unknown_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = |p: &Path| format!("{:#}", Format::detect(p).unwrap_err());
        assert!(err(&d.join("nope")).contains("does not exist"));
        assert!(err(d).contains("holds no model"));
        std::fs::write(d.join("notes.txt"), "hello").unwrap();
        assert!(err(&d.join("notes.txt")).contains("is not a model"));
        let llmc = [import::llmc::MAGIC.to_le_bytes(), [0; 4]].concat();
        std::fs::write(d.join("a.bin"), &llmc).unwrap();
        std::fs::write(d.join("train.bin"), [1, 2, 3, 4, 5]).unwrap();
        assert_eq!(Format::detect(d).unwrap(), Format::Llmc(d.join("a.bin")));
        assert_eq!(Format::detect(&d.join("a.bin")).unwrap(), Format::Llmc(d.join("a.bin")));
        std::fs::write(d.join("b.bin"), &llmc).unwrap();
        assert!(err(d).contains("holds 2 llm.c model files"));
        std::fs::write(d.join(import::tf::HPARAMS_FILE), "{}").unwrap();
        assert_eq!(Format::detect(d).unwrap(), Format::Tf(d.to_path_buf()));
        std::fs::write(d.join(CONFIG_FILE), "{}").unwrap();
        assert_eq!(Format::detect(d).unwrap(), Format::Safetensors(d.to_path_buf()));
        assert!(format!("{:#}", Gpt::load(d).err().unwrap()).contains("config.json"));
    }
}
