//! OpenAI's original GPT-2 release, a TensorFlow checkpoint folder as
//! picoGPT downloads it (`hparams.json`, `checkpoint`, `model.ckpt.index`,
//! `model.ckpt.data-00000-of-00001`, `encoder.json`, `vocab.bpe`), read
//! without TensorFlow.
//!
//! The `.index` file is a table (see [`super::table`]) from each variable's
//! name to a `BundleEntryProto`: dtype, shape, which data file ("shard"),
//! offset and size there, and the masked CRC-32C of the bytes. The key `""`
//! holds the `BundleHeaderProto` (number of shards, endianness). Variables
//! are named `model/wte`, `model/h0/attn/c_attn/w`, …; Conv1D weights carry
//! a leading singleton dimension (`[1, in, out]`), dropped here.

use super::proto::{for_each_field, Value};
use super::table::{read_table, unmask};
use super::{check_config_fits, Source};
use crate::autograd::Params;
use crate::io::{map_file, Elem};
use crate::model::{Gpt, GptConfig};
use crate::tensor::Tensor;
use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The file that marks a TensorFlow release folder.
pub const HPARAMS_FILE: &str = "hparams.json";

/// `hparams.json` of OpenAI's release.
#[derive(Deserialize)]
struct Hparams {
    n_vocab: usize,
    n_ctx: usize,
    n_embd: usize,
    n_head: usize,
    n_layer: usize,
}

/// Loads a TensorFlow GPT-2 release folder.
pub fn load(dir: &Path) -> Result<Gpt> {
    let path = dir.join(HPARAMS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let h: Hparams = serde_json::from_str(&text)
        .with_context(|| format!("{} is not OpenAI's GPT-2 hparams.json", path.display()))?;
    let config = GptConfig::gpt2(h.n_vocab, h.n_ctx, h.n_embd, h.n_head, h.n_layer);
    config
        .validate()
        .with_context(|| format!("{} describes no valid GPT-2", path.display()))?;

    let prefix = checkpoint_prefix(dir)?;
    let index_path = with_suffix(&prefix, ".index");
    let index = map_file(&index_path)?;
    let bundle = Bundle::parse(&index).with_context(|| format!("reading {}", index_path.display()))?;
    let shards = (0..bundle.num_shards)
        .map(|s| {
            let path = with_suffix(&prefix, &format!(".data-{s:05}-of-{:05}", bundle.num_shards));
            map_file(&path)
        })
        .collect::<Result<Vec<_>>>()?;
    let sources: Vec<Source> = shards.iter().map(Source::mapped).collect();
    bundle
        .into_model(config, &sources)
        .with_context(|| format!("reading the checkpoint {}", prefix.display()))
}

/// The checkpoint's path prefix (`dir/model.ckpt`), from the `checkpoint`
/// file if there is one. Only its file name is used, so a folder that was
/// moved (the path inside is sometimes absolute) still loads.
fn checkpoint_prefix(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("checkpoint");
    let name = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("model_checkpoint_path:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .with_context(|| format!("{} has no model_checkpoint_path line", path.display()))?,
        Err(_) => "model.ckpt".to_string(),
    };
    let file = Path::new(&name)
        .file_name()
        .with_context(|| format!("{} names no checkpoint file", path.display()))?;
    Ok(dir.join(file))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A `BundleEntryProto`: where one tensor's bytes are and what they hold.
#[derive(Debug, Default)]
struct Entry {
    dtype: u64,
    shape: Vec<u64>,
    shard: u64,
    offset: u64,
    size: u64,
    crc32c: u32,
    sliced: bool,
}

impl Entry {
    fn parse(buf: &[u8]) -> Result<Entry> {
        let mut e = Entry::default();
        for_each_field(buf, |field, v| {
            match field {
                1 => e.dtype = v.as_u64()?,
                2 => e.shape = shape(v.as_bytes()?)?,
                3 => e.shard = v.as_u64()?,
                4 => e.offset = v.as_u64()?,
                5 => e.size = v.as_u64()?,
                6 => e.crc32c = v.as_u64()? as u32,
                7 => e.sliced = true,
                _ => {}
            }
            Ok(())
        })?;
        Ok(e)
    }

    /// The element encoding of a TensorFlow `DataType`.
    fn elem(&self) -> Result<Elem> {
        Ok(match self.dtype {
            1 => Elem::F32,
            19 => Elem::F16,
            14 => Elem::Bf16,
            d => bail!("TensorFlow dtype {d} is not supported (only float32 = 1, half = 19 and bfloat16 = 14)"),
        })
    }
}

/// A `TensorShapeProto`'s dimension sizes.
fn shape(buf: &[u8]) -> Result<Vec<u64>> {
    let mut dims = Vec::new();
    for_each_field(buf, |field, v| {
        match field {
            2 => {
                let mut size = None;
                for_each_field(v.as_bytes()?, |f, v| {
                    if f == 1 {
                        size = Some(v.as_u64()?);
                    }
                    Ok(())
                })?;
                dims.push(size.unwrap_or(0));
            }
            3 if v == Value::Varint(1) => bail!("a tensor has an unknown rank"),
            _ => {}
        }
        Ok(())
    })?;
    Ok(dims)
}

/// The parsed `.index` file.
struct Bundle {
    num_shards: usize,
    entries: BTreeMap<String, Entry>,
}

impl Bundle {
    fn parse(index: &[u8]) -> Result<Bundle> {
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (key, value) in read_table(index)? {
            if key.is_empty() {
                header = Some(value);
                continue;
            }
            let name = String::from_utf8(key).context("a tensor name is not UTF-8: the index is corrupt")?;
            let entry = Entry::parse(&value).with_context(|| format!("the entry of {name} is corrupt"))?;
            entries.insert(name, entry);
        }
        let header = header.context("the index has no header entry: it is not a TensorFlow checkpoint index")?;
        let (mut num_shards, mut big_endian) = (0, false);
        for_each_field(&header, |field, v| {
            match field {
                1 => num_shards = v.as_u64()?,
                2 => big_endian = v.as_u64()? == 1,
                _ => {}
            }
            Ok(())
        })
        .context("the index's header entry is corrupt")?;
        ensure!(
            !big_endian,
            "the checkpoint was written big-endian, which is not supported"
        );
        ensure!(
            (1..=1024).contains(&num_shards),
            "the index says the checkpoint has {num_shards} data files: it is corrupt"
        );
        Ok(Bundle {
            num_shards: num_shards as usize,
            entries,
        })
    }

    /// Reads every tensor `config` needs out of the data files.
    fn into_model(self, config: GptConfig, shards: &[Source]) -> Result<Gpt> {
        let n_bytes = shards.iter().map(|s| s.bytes().len()).sum();
        check_config_fits(&config, self.entries.len(), n_bytes)
            .context("hparams.json does not match the checkpoint")?;
        let expected = Gpt::expected_tensors(&config);
        let wanted: HashSet<String> = expected.iter().map(|(n, _)| tf_name(n)).collect();
        for name in self.entries.keys() {
            let optimizer_slot = name.ends_with("/Adam") || name.ends_with("/Adam_1");
            if name.starts_with("model/") && !optimizer_slot && !wanted.contains(name) {
                bail!("unexpected tensor {name}: the weights do not match hparams.json");
            }
        }
        let mut params = Params::default();
        for (name, shape) in expected {
            let key = tf_name(&name);
            let entry = self
                .entries
                .get(&key)
                .with_context(|| format!("tensor {key} is missing: the weights do not match hparams.json"))?;
            let data = read_tensor(entry, &shape, shards).with_context(|| format!("reading tensor {key}"))?;
            params.add(name, Tensor::from_vec(&shape, data));
        }
        Ok(Gpt::from_params(config, params))
    }
}

/// The bytes of one tensor, checked against its entry and the expected shape.
fn read_tensor(e: &Entry, shape: &[usize], shards: &[Source]) -> Result<Vec<f32>> {
    ensure!(
        !e.sliced,
        "it is saved in slices (a partitioned variable), which is not supported"
    );
    // OpenAI's Conv1D weights are [1, in, out]; drop leading singleton dimensions.
    let mut stored = e.shape.as_slice();
    while stored.len() > shape.len() && stored[0] == 1 {
        stored = &stored[1..];
    }
    ensure!(
        stored.len() == shape.len() && stored.iter().zip(shape).all(|(&a, &b)| a == b as u64),
        "it has shape {:?}, hparams.json implies {shape:?}",
        e.shape
    );
    let elem = e.elem()?;
    let want = shape.iter().product::<usize>() * elem.size();
    ensure!(
        e.size == want as u64,
        "its entry says {} bytes, its shape and dtype make {want}: the index is corrupt",
        e.size
    );
    let shard = usize::try_from(e.shard)
        .ok()
        .and_then(|s| shards.get(s))
        .with_context(|| format!("it is in data file {}, which the index does not list", e.shard))?;
    let start = usize::try_from(e.offset).unwrap_or(usize::MAX);
    let bytes = start
        .checked_add(want)
        .and_then(|end| shard.bytes().get(start..end))
        .with_context(|| {
            format!(
                "its bytes {}..{} run past the end of the {}-byte data file: it is truncated",
                e.offset,
                e.offset.saturating_add(e.size),
                shard.bytes().len()
            )
        })?;
    ensure!(
        crc32c::crc32c(bytes) == unmask(e.crc32c),
        "its bytes do not match their checksum: the data file is corrupt"
    );
    Ok(shard.decode(elem, bytes))
}

/// Our tensor name -> OpenAI's variable name: `h.0.attn.c_attn.weight` ->
/// `model/h0/attn/c_attn/w`, `h.0.ln_1.weight` -> `model/h0/ln_1/g`, `wte.weight` -> `model/wte`.
fn tf_name(name: &str) -> String {
    let (path, kind) = name.rsplit_once('.').expect("tensor names end in .weight or .bias");
    let leaf = path.rsplit('.').next().expect("rsplit yields one item");
    let var = match (leaf, kind) {
        ("wte" | "wpe", _) => "",
        (l, "weight") if l.starts_with("ln_") => "/g",
        (_, "weight") => "/w",
        _ => "/b",
    };
    let path = match path.strip_prefix("h.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => format!("h{layer}/{rest}"),
        None => path.to_string(),
    };
    format!("model/{}{var}", path.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::super::table::tests::table_bytes;
    use super::*;
    use crate::model::Init;
    use crate::tensor::rng;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn message(out: &mut Vec<u8>, field: u64, body: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, body.len() as u64);
        out.extend(body);
    }

    fn mask(crc: u32) -> u32 {
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    /// `m` as a TensorFlow bundle: (index file, data file), OpenAI's names and shapes.
    fn bundle_bytes(m: &Gpt) -> (Vec<u8>, Vec<u8>) {
        let mut data = Vec::new();
        let mut entries = BTreeMap::new();
        for (name, t) in m.params.names.iter().zip(&m.params.tensors) {
            let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            let is_conv = name.ends_with(".weight") && t.shape.len() == 2 && name.starts_with("h.");
            let dims: Vec<usize> = if is_conv {
                [&[1], &t.shape[..]].concat()
            } else {
                t.shape.clone()
            };
            let mut shape = Vec::new();
            for d in dims {
                let mut dim = vec![0x08];
                varint(&mut dim, d as u64);
                message(&mut shape, 2, &dim);
            }
            let mut e = vec![0x08, 1]; // dtype float32
            message(&mut e, 2, &shape);
            e.push(0x20);
            varint(&mut e, data.len() as u64);
            e.push(0x28);
            varint(&mut e, bytes.len() as u64);
            e.push(0x35);
            e.extend(mask(crc32c::crc32c(&bytes)).to_le_bytes());
            data.extend(bytes);
            entries.insert(tf_name(name), e);
        }
        let mut table: Vec<(&[u8], &[u8])> = vec![(b"", &[0x08, 1])]; // one shard
        table.extend(entries.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())));
        (table_bytes(&table), data)
    }

    fn load(index: &[u8], data: &[u8], config: &GptConfig) -> Result<Gpt> {
        Bundle::parse(index)?.into_model(config.clone(), &[Source::memory(data)])
    }

    #[test]
    fn reads_a_bundle_back_to_the_same_model_and_catches_damage() {
        let m = Gpt::new(GptConfig::gpt2(11, 8, 12, 3, 2), Init::Gpt2, &mut rng(4));
        let (index, data) = bundle_bytes(&m);
        let back = load(&index, &data, &m.config).unwrap();
        assert_eq!(back.params, m.params);

        let err =
            |index: &[u8], data: &[u8], config: &GptConfig| format!("{:#}", load(index, data, config).err().unwrap());
        let mut flipped = data.clone();
        flipped[100] ^= 1;
        assert!(err(&index, &flipped, &m.config).contains("checksum"));
        assert!(err(&index, &data[..data.len() - 4], &m.config).contains("truncated"));
        assert!(err(&index[..index.len() - 1], &data, &m.config).contains("magic"));
        let mut deeper = m.config.clone();
        deeper.n_layer = 3;
        assert!(err(&index, &data, &deeper).contains("model/h2/ln_1/g is missing"));
        let mut shallower = m.config.clone();
        shallower.n_layer = 1;
        assert!(err(&index, &data, &shallower).contains("unexpected tensor model/h1"));
        let mut wider = m.config.clone();
        wider.vocab_size = 12;
        assert!(err(&index, &data, &wider).contains("shape [11, 12]"));
    }

    #[test]
    fn names_map_to_openai_variables() {
        for (ours, theirs) in [
            ("wte.weight", "model/wte"),
            ("wpe.weight", "model/wpe"),
            ("h.0.ln_1.weight", "model/h0/ln_1/g"),
            ("h.11.ln_2.bias", "model/h11/ln_2/b"),
            ("h.3.attn.c_attn.weight", "model/h3/attn/c_attn/w"),
            ("h.3.attn.c_proj.bias", "model/h3/attn/c_proj/b"),
            ("h.0.mlp.c_fc.weight", "model/h0/mlp/c_fc/w"),
            ("h.0.mlp.c_proj.weight", "model/h0/mlp/c_proj/w"),
            ("ln_f.weight", "model/ln_f/g"),
            ("ln_f.bias", "model/ln_f/b"),
        ] {
            assert_eq!(tf_name(ours), theirs);
        }
    }

    #[test]
    fn checkpoint_file_paths_are_reduced_to_their_file_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(checkpoint_prefix(dir.path()).unwrap(), dir.path().join("model.ckpt"));
        let text = "model_checkpoint_path: \"/somewhere/else/model.ckpt-5\"\nall_model_checkpoint_paths: \"x\"\n";
        std::fs::write(dir.path().join("checkpoint"), text).unwrap();
        assert_eq!(checkpoint_prefix(dir.path()).unwrap(), dir.path().join("model.ckpt-5"));
        std::fs::write(dir.path().join("checkpoint"), "garbage").unwrap();
        assert!(checkpoint_prefix(dir.path()).is_err());
    }
}
