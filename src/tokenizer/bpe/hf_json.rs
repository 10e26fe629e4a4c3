//! `tokenizer.json` (Hugging Face `tokenizers`) of a byte-level BPE: GPT-2,
//! Llama 3, Qwen2, SmolLM2 and the like. `tokenizer_config.json` beside it
//! names the special tokens.
//!
//! Supported: model `BPE` (merges as `"a b"` or `["a", "b"]`, `ignore_merges`,
//! `unk_token` / `fuse_unk`; no dropout, byte fallback, prefix or suffix); no
//! normalizer; pre-tokenizers `ByteLevel` (last), `Digits`, `Split` (isolated)
//! with GPT-2's, Llama 3's or Qwen2's pattern, and `Sequence`s of them; added
//! tokens (not `single_word`); post-processors `ByteLevel`,
//! `TemplateProcessing` (its single-sequence template) and `Sequence`s of
//! them; decoder `ByteLevel`. Anything else is an error naming it.
//! `truncation` and `padding` are not applied.

use super::build::Parts;
use super::bytes::text_to_bytes;
use super::pre::{PreTokenizer, Step};
use super::{AddedToken, Bpe, SpecialTokens};
use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The tokenizer file of a Hugging Face model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Its companion naming the special tokens (`bos_token`, `eos_token`, ...).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The `Split` patterns we split by hand, as they appear in `tokenizer.json`.
pub(super) const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
pub(super) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Just the model's type, read first so that other models get a clear error.
#[derive(Deserialize)]
struct Peek {
    model: ModelType,
}

#[derive(Deserialize)]
struct ModelType {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct File {
    model: Model,
    #[serde(default)]
    added_tokens: Vec<Added>,
    #[serde(default)]
    normalizer: Value,
    #[serde(default)]
    pre_tokenizer: Value,
    #[serde(default)]
    post_processor: Value,
    #[serde(default)]
    decoder: Value,
}

#[derive(Deserialize)]
struct Model {
    vocab: HashMap<String, u32>,
    merges: Vec<Merge>,
    #[serde(default)]
    dropout: Option<f64>,
    #[serde(default)]
    unk_token: Option<String>,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    fuse_unk: bool,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    ignore_merges: bool,
}

/// A merge as `"a b"` (older files) or `["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Text(String),
    Pair(String, String),
}

#[derive(Deserialize)]
struct Added {
    id: u32,
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default = "yes")]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

fn yes() -> bool {
    true
}

impl Bpe {
    /// Loads `dir/tokenizer.json`, with the special tokens named in
    /// `dir/tokenizer_config.json` when there is one.
    pub fn load_tokenizer_json(dir: &Path) -> Result<Bpe> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let json = read(TOKENIZER_FILE)?;
        let config = match dir.join(TOKENIZER_CONFIG_FILE).is_file() {
            true => Some(read(TOKENIZER_CONFIG_FILE)?),
            false => None,
        };
        Bpe::from_tokenizer_json(&json, config.as_deref())
            .with_context(|| format!("loading {}", dir.join(TOKENIZER_FILE).display()))
    }

    /// Parses a `tokenizer.json`. `config` is the `tokenizer_config.json`
    /// text; without it BOS and EOS are found by their usual texts.
    pub fn from_tokenizer_json(json: &str, config: Option<&str>) -> Result<Bpe> {
        let peek: Peek =
            serde_json::from_str(json).context("not a tokenizer.json: expected an object with a \"model\"")?;
        let kind = peek.model.kind;
        ensure!(
            kind == "BPE" || kind.is_empty(),
            "model {kind} is not supported: only BPE (byte-level)"
        );
        let file: File = serde_json::from_str(json).context("tokenizer.json")?;
        let model = &file.model;
        check_model(model)?;
        check_normalizer(&file.normalizer)?;
        let (mut steps, mut byte_level) = (Vec::new(), false);
        pre_tokenizer_steps(&file.pre_tokenizer, &mut steps, &mut byte_level)?;
        ensure!(byte_level, "pre-tokenizer: byte-level BPE needs ByteLevel (last)");
        match type_of(&file.decoder) {
            "ByteLevel" => {}
            "" => bail!("decoder: none given; byte-level BPE needs the ByteLevel decoder"),
            other => bail!("decoder {other} is not supported: only ByteLevel"),
        }
        let mut template = (Vec::new(), Vec::new());
        post_processor(&file.post_processor, &mut template)?;

        let n = (model.vocab.values().chain(file.added_tokens.iter().map(|a| &a.id)))
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0);
        let count = model.vocab.len() + file.added_tokens.len();
        ensure!(
            n <= count,
            "ids go up to {} but there are only {count} tokens (model.vocab and added_tokens): ids must be dense",
            n - 1
        );
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut in_model = vec![false; n];
        for (text, &id) in &model.vocab {
            let slot = &mut tokens[id as usize];
            ensure!(slot.is_none(), "model.vocab gives id {id} to two tokens");
            // Text that is not byte-level (no piece can be it) decodes as itself.
            let bytes = text_to_bytes(text);
            in_model[id as usize] = bytes.is_some();
            *slot = Some(bytes.unwrap_or_else(|| text.as_bytes().to_vec()));
        }
        let mut added = Vec::with_capacity(file.added_tokens.len());
        for a in &file.added_tokens {
            ensure!(
                !a.single_word,
                "added token {:?}: single_word is not supported",
                a.content
            );
            // Decoded as the ByteLevel decoder does: byte-level text if it is, else the text itself.
            tokens[a.id as usize]
                .get_or_insert_with(|| text_to_bytes(&a.content).unwrap_or_else(|| a.content.as_bytes().to_vec()));
            added.push(AddedToken {
                id: a.id,
                content: a.content.clone(),
                special: a.special,
                lstrip: a.lstrip,
                rstrip: a.rstrip,
                normalized: a.normalized,
            });
        }
        let tokens = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| t.with_context(|| format!("id {id} is neither in model.vocab nor in added_tokens")))
            .collect::<Result<Vec<_>>>()?;

        let id_of = |text: &str| {
            model
                .vocab
                .get(text)
                .copied()
                .with_context(|| format!("model.merges: {text:?} is not in model.vocab"))
        };
        let mut merges = Vec::with_capacity(model.merges.len());
        for (rank, merge) in model.merges.iter().enumerate() {
            let (left, right) = match merge {
                Merge::Pair(left, right) => (left.as_str(), right.as_str()),
                Merge::Text(text) => text
                    .split_once(' ')
                    .filter(|(_, right)| !right.contains(' '))
                    .with_context(|| format!("model.merges[{rank}]: expected \"left right\", got {text:?}"))?,
            };
            let pair = (id_of(left)?, id_of(right)?);
            // Merges of text that is not byte-level can never apply.
            if in_model[pair.0 as usize] && in_model[pair.1 as usize] {
                merges.push(pair);
            }
        }
        let unk = match &model.unk_token {
            Some(text) => Some((id_of(text).context("model.unk_token")?, model.fuse_unk)),
            None => None,
        };
        let mut bpe = Parts {
            in_model,
            ignore_merges: model.ignore_merges,
            unk,
            pre: PreTokenizer::new(steps),
            added,
            template,
            ..Parts::new("hf", tokens, merges)
        }
        .build()?;
        let given = match config {
            Some(config) => config_special_tokens(&bpe, config)?,
            None => SpecialTokens::default(),
        };
        let unk = given.unk.or(unk.map(|(id, _)| id));
        bpe.set_special_tokens(SpecialTokens { unk, ..given }, true)?;
        Ok(bpe)
    }
}

/// The `"type"` of a component, "" for none.
fn type_of(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A boolean field, `default` when absent or null.
fn flag(v: &Value, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => bail!("{} {key}: expected true or false, got {other}", type_of(v)),
    }
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("{}: expected a list {key:?}", type_of(v)))
}

fn check_model(m: &Model) -> Result<()> {
    ensure!(
        m.dropout.is_none_or(|p| p == 0.0),
        "model: BPE dropout is not supported"
    );
    ensure!(!m.byte_fallback, "model: byte_fallback is not supported");
    for (what, affix) in [
        ("continuing_subword_prefix", &m.continuing_subword_prefix),
        ("end_of_word_suffix", &m.end_of_word_suffix),
    ] {
        let affix = affix.as_deref().unwrap_or("");
        ensure!(affix.is_empty(), "model: {what} {affix:?} is not supported");
    }
    Ok(())
}

fn check_normalizer(v: &Value) -> Result<()> {
    match type_of(v) {
        "" if v.is_null() => Ok(()),
        "Sequence" if list(v, "normalizers")?.is_empty() => Ok(()),
        other => bail!(
            "normalizer {} is not supported: only none",
            if other.is_empty() { "?" } else { other }
        ),
    }
}

/// Appends a pre-tokenizer's steps; `byte_level` tells whether ByteLevel,
/// which must come last, has been seen.
fn pre_tokenizer_steps(v: &Value, steps: &mut Vec<Step>, byte_level: &mut bool) -> Result<()> {
    let kind = type_of(v);
    if kind == "Sequence" {
        return list(v, "pretokenizers")?
            .iter()
            .try_for_each(|p| pre_tokenizer_steps(p, steps, byte_level));
    }
    ensure!(
        !*byte_level,
        "pre-tokenizer {kind} after ByteLevel is not supported: ByteLevel must come last"
    );
    match kind {
        "ByteLevel" => {
            *byte_level = true;
            if flag(v, "add_prefix_space", true)? {
                steps.push(Step::PrefixSpace);
            }
            if flag(v, "use_regex", true)? {
                steps.push(Step::Gpt2);
            }
        }
        "Digits" => steps.push(Step::Digits {
            individual: flag(v, "individual_digits", false)?,
        }),
        "Split" => steps.push(split_step(v)?),
        "" => bail!("pre-tokenizer: none given; byte-level BPE needs ByteLevel"),
        other => bail!("pre-tokenizer {other} is not supported (supported: ByteLevel, Digits, Split, Sequence)"),
    }
    Ok(())
}

/// A `Split` with one of the patterns split by hand.
fn split_step(v: &Value) -> Result<Step> {
    let behavior = v.get("behavior").and_then(Value::as_str).unwrap_or("");
    ensure!(
        behavior == "Isolated" && !flag(v, "invert", false)?,
        "pre-tokenizer Split: only behavior Isolated without invert is supported, not {behavior} (invert {})",
        flag(v, "invert", false)?
    );
    let pattern = v.get("pattern");
    let regex = pattern.and_then(|p| p.get("Regex")).and_then(Value::as_str);
    match regex {
        Some(GPT2_PATTERN) => Ok(Step::Gpt2),
        Some(LLAMA3_PATTERN) => Ok(Step::Llama3 { max_digits: 3 }),
        Some(QWEN2_PATTERN) => Ok(Step::Llama3 { max_digits: 1 }),
        _ => bail!(
            "pre-tokenizer Split: pattern {} is not supported (supported: the regexes of GPT-2, Llama 3 and Qwen2)",
            pattern.map_or("none".to_string(), Value::to_string)
        ),
    }
}

/// Adds the ids a post-processor puts before and after a text's to `template`.
fn post_processor(v: &Value, template: &mut (Vec<u32>, Vec<u32>)) -> Result<()> {
    match type_of(v) {
        "" if v.is_null() => Ok(()),
        "ByteLevel" => Ok(()),
        "Sequence" => list(v, "processors")?
            .iter()
            .try_for_each(|p| post_processor(p, template)),
        "TemplateProcessing" => {
            let mut seen_text = false;
            for item in list(v, "single")? {
                if let Some(name) = item.pointer("/SpecialToken/id").and_then(Value::as_str) {
                    let ids = v
                        .pointer(&format!(
                            "/special_tokens/{}/ids",
                            name.replace('~', "~0").replace('/', "~1")
                        ))
                        .and_then(Value::as_array)
                        .with_context(|| format!("TemplateProcessing: special token {name:?} has no ids"))?;
                    let side = if seen_text { &mut template.1 } else { &mut template.0 };
                    for id in ids {
                        let id = id.as_u64().and_then(|id| u32::try_from(id).ok());
                        side.push(id.with_context(|| format!("TemplateProcessing: {name:?} ids: expected numbers"))?);
                    }
                } else {
                    let sequence = item.pointer("/Sequence/id").and_then(Value::as_str);
                    ensure!(
                        sequence == Some("A") && !seen_text,
                        "TemplateProcessing: the single template must hold sequence A once, got {item}"
                    );
                    seen_text = true;
                }
            }
            ensure!(seen_text, "TemplateProcessing: the single template lacks sequence A");
            Ok(())
        }
        other => bail!(
            "post-processor {} is not supported (supported: ByteLevel, TemplateProcessing, Sequence)",
            if other.is_empty() { "?" } else { other }
        ),
    }
}

/// `bos_token`, `eos_token`, `pad_token` and `unk_token` of a
/// `tokenizer_config.json`: each a text, `{"content": text}` or null.
fn config_special_tokens(bpe: &Bpe, config: &str) -> Result<SpecialTokens> {
    let config: Value = serde_json::from_str(config).context("tokenizer_config.json is not JSON")?;
    let id = |key: &str| -> Result<Option<u32>> {
        let text = match config.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(text)) => text.as_str(),
            Some(v) => v
                .get("content")
                .and_then(Value::as_str)
                .with_context(|| format!("tokenizer_config.json {key}: expected a text or {{\"content\": text}}"))?,
        };
        let id = bpe.token_id(text);
        id.map(Some)
            .with_context(|| format!("tokenizer_config.json {key}: {text:?} is not a token of tokenizer.json"))
    };
    Ok(SpecialTokens {
        bos: id("bos_token")?,
        eos: id("eos_token")?,
        pad: id("pad_token")?,
        unk: id("unk_token")?,
        eot: None,
    })
}
