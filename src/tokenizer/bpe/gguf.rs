//! The tokenizer of a GGUF file from its `tokenizer.ggml.*` values, as
//! llama.cpp reads them (`llama-vocab.cpp`): the same [`Bpe`] as the model's
//! `tokenizer.json` gives.

use super::build::Parts;
use super::bytes::{byte_to_char, bytes_to_text, text_to_bytes};
use super::pre::{PreTokenizer, Step};
use super::{AddedToken, Bpe, SpecialTokens};
use crate::io::gguf::{Gguf, GgufWriter, Value};
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;

/// The `tokenizer.ggml.*` metadata of a GGUF file, as plain values.
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: only "gpt2" (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`, naming the pre-tokenizer: "smollm",
    /// "llama-bpe", "qwen2", "gpt-2", ... (see [`pre_tokenizer`]).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens` in id order: byte-level text, except control
    /// and user-defined tokens, which are plain text.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user
    /// defined, 5 unused, 6 byte; empty means all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"`, by rank.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`; found by its text when absent.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; absent: llama.cpp's default for `pre`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`; absent: false.
    pub add_eos: Option<bool>,
}

impl GgufVocab {
    /// The `tokenizer.ggml.*` values of a GGUF file; `None` when it has no
    /// `tokenizer.ggml.model`. A value of the wrong type is an error naming the file and key.
    pub fn read<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<Option<GgufVocab>> {
        let present = |key: &str| g.get(key).is_some();
        if !present("tokenizer.ggml.model") {
            return Ok(None);
        }
        let strings =
            |key: &str| -> Result<Vec<String>> { Ok(g.get_str_array(key)?.into_iter().map(str::to_string).collect()) };
        let string = |key: &str| -> Result<Option<String>> {
            present(key).then(|| g.get_str(key).map(str::to_string)).transpose()
        };
        let flag = |key: &str| present(key).then(|| g.get_bool(key)).transpose();
        let id = |key: &str| -> Result<Option<u32>> {
            let Some(v) = g.get(key) else { return Ok(None) };
            let n = match *v {
                Value::U32(x) => Some(x),
                Value::I32(x) => u32::try_from(x).ok(),
                Value::U64(x) => u32::try_from(x).ok(),
                Value::I64(x) => u32::try_from(x).ok(),
                Value::U16(x) => Some(x.into()),
                Value::U8(x) => Some(x.into()),
                _ => None,
            };
            n.map(Some)
                .with_context(|| format!("{}: metadata `{key}` is {v:?}, not a token id", g.source()))
        };
        Ok(Some(GgufVocab {
            model: g.get_str("tokenizer.ggml.model")?.to_string(),
            pre: string("tokenizer.ggml.pre")?,
            tokens: strings("tokenizer.ggml.tokens")?,
            token_types: match present("tokenizer.ggml.token_type") {
                true => g.get_i32_array("tokenizer.ggml.token_type")?,
                false => Vec::new(),
            },
            merges: match present("tokenizer.ggml.merges") {
                true => strings("tokenizer.ggml.merges")?,
                false => Vec::new(),
            },
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            add_bos: flag("tokenizer.ggml.add_bos_token")?,
            add_eos: flag("tokenizer.ggml.add_eos_token")?,
        }))
    }
}

impl GgufVocab {
    /// A character vocabulary (ids in order of `chars`, then `bos`) as a
    /// byte-level BPE without merges, which llama.cpp runs: each character
    /// is one byte, found by its byte-level text; BOS is a control token
    /// put before each text and ending a document. A character of more than
    /// one byte would need merges from tokens the vocabulary lacks: refused.
    pub fn characters(chars: &[char], bos: &str) -> Result<GgufVocab> {
        let table = byte_to_char();
        let mut tokens = Vec::with_capacity(chars.len() + 1);
        for &c in chars {
            ensure!(
                c.is_ascii(),
                "the character vocabulary holds {c:?} (U+{:04X}), more than one byte: only ASCII vocabularies \
                 have a GGUF form",
                c as u32
            );
            tokens.push(bytes_to_text(&[c as u8], &table));
        }
        tokens.push(bos.to_string());
        let bos_id = chars.len() as u32;
        let mut token_types = vec![NORMAL; chars.len()];
        token_types.push(CONTROL);
        Ok(GgufVocab {
            model: "gpt2".to_string(),
            pre: Some("gpt-2".to_string()),
            tokens,
            token_types,
            merges: Vec::new(),
            bos: Some(bos_id),
            eos: Some(bos_id),
            add_bos: Some(true),
            add_eos: Some(false),
            ..GgufVocab::default()
        })
    }

    /// Sets the `tokenizer.ggml.*` keys that [`GgufVocab::read`] reads back.
    pub fn write(&self, w: &mut GgufWriter) -> Result<()> {
        w.set("tokenizer.ggml.model", self.model.as_str())?;
        if let Some(pre) = &self.pre {
            w.set("tokenizer.ggml.pre", pre.as_str())?;
        }
        w.set("tokenizer.ggml.tokens", self.tokens.clone())?;
        if !self.token_types.is_empty() {
            w.set("tokenizer.ggml.token_type", self.token_types.clone())?;
        }
        // llama.cpp requires the key for a BPE vocabulary, even when empty.
        w.set("tokenizer.ggml.merges", self.merges.clone())?;
        let ids = [
            ("bos_token_id", self.bos),
            ("eos_token_id", self.eos),
            ("padding_token_id", self.pad),
            ("eot_token_id", self.eot),
            ("unknown_token_id", self.unk),
        ];
        for (key, id) in ids {
            if let Some(id) = id {
                w.set(&format!("tokenizer.ggml.{key}"), id)?;
            }
        }
        for (key, flag) in [("add_bos_token", self.add_bos), ("add_eos_token", self.add_eos)] {
            if let Some(flag) = flag {
                w.set(&format!("tokenizer.ggml.{key}"), flag)?;
            }
        }
        Ok(())
    }
}

/// The tokenizer of the GGUF file at `path`, from its metadata.
pub fn load_gguf(path: &std::path::Path) -> Result<Bpe> {
    let g = Gguf::open(path)?;
    let vocab = GgufVocab::read(&g)?.with_context(|| {
        format!(
            "{} has no tokenizer (tokenizer.ggml.* metadata): a GGUF model file must carry its own",
            path.display()
        )
    })?;
    Bpe::from_gguf(&vocab).with_context(|| format!("{}: reading its tokenizer", path.display()))
}

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The pre-tokenizer of a `tokenizer.ggml.pre` name, for the names whose
/// llama.cpp pattern we have: (steps, `ignore_merges`, `add_bos` default).
pub fn pre_tokenizer(name: &str) -> Option<(PreTokenizer, bool, bool)> {
    let gpt2 = vec![Step::Gpt2];
    let llama3 = vec![Step::Llama3 { max_digits: 3 }];
    let qwen2 = vec![Step::Llama3 { max_digits: 1 }];
    let digits_gpt2 = vec![Step::Digits { individual: true }, Step::Gpt2];
    let (steps, ignore_merges, add_bos) = match name {
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "exaone4" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => (gpt2, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => (llama3, true, true),
        "dbrx" | "smaug-bpe" => (llama3, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan" => (qwen2, false, false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (digits_gpt2, false, false)
        }
        _ => return None,
    };
    Some((PreTokenizer::new(steps), ignore_merges, add_bos))
}

/// The `tokenizer.ggml.pre` names [`Bpe::to_gguf`] writes, one per pre-tokenizer we have.
const PRE_NAMES: [&str; 5] = ["gpt-2", "llama-bpe", "smaug-bpe", "qwen2", "smollm"];

impl Bpe {
    /// This tokenizer as `tokenizer.ggml.*` metadata that [`Bpe::from_gguf`]
    /// (and llama.cpp) read back as the same tokenizer: normal tokens as
    /// byte-level text, added tokens as their text (control when special,
    /// user-defined otherwise), the merges by rank, the pre-tokenizer by the
    /// llama.cpp name of its pattern.
    pub fn to_gguf(&self) -> Result<GgufVocab> {
        let pre = PRE_NAMES
            .into_iter()
            .find(|name| {
                pre_tokenizer(name)
                    .is_some_and(|(p, ignore, _)| &p == self.pre_tokenizer() && ignore == self.ignores_merges())
            })
            .with_context(|| {
                format!(
                    "the pre-tokenizer `{}` has no llama.cpp name (GGUF files can hold GPT-2's, Llama 3's, Qwen2's and \
                     SmolLM's)",
                    self.pre_tokenizer().describe()
                )
            })?;
        let table = byte_to_char();
        let n = self.vocab_size();
        let mut tokens = Vec::with_capacity(n);
        let mut token_types = Vec::with_capacity(n);
        for id in 0..n as u32 {
            match self.added_tokens().iter().find(|t| t.id == id) {
                Some(t) => {
                    tokens.push(t.content.clone());
                    token_types.push(if t.special { CONTROL } else { USER_DEFINED });
                }
                None => {
                    let bytes = self.token_bytes(id).unwrap_or_default();
                    tokens.push(bytes_to_text(bytes, &table));
                    token_types.push(NORMAL);
                }
            }
        }
        let merges = self
            .merges()
            .iter()
            .map(|&(l, r, _)| format!("{} {}", tokens[l as usize], tokens[r as usize]))
            .collect();
        let specials = self.special_tokens();
        // The post-processor's ids: a BOS before and an EOS after are all GGUF can say.
        let added = |ids: &[u32], id: Option<u32>, what: &str| -> Result<bool> {
            match ids {
                [] => Ok(false),
                [x] if Some(*x) == id => Ok(true),
                _ => bail!("the tokenizer adds {ids:?} {what} each text: GGUF can only say \"add BOS\" / \"add EOS\""),
            }
        };
        let (before, after) = self.template();
        Ok(GgufVocab {
            model: "gpt2".to_string(),
            pre: Some(pre.to_string()),
            tokens,
            token_types,
            merges,
            bos: specials.bos,
            eos: specials.eos,
            pad: specials.pad,
            eot: specials.eot,
            unk: specials.unk,
            add_bos: Some(added(before, specials.bos, "before")?),
            add_eos: Some(added(after, specials.eos, "after")?),
        })
    }

    /// The tokenizer a GGUF file describes. Control (and unknown) tokens are
    /// special added tokens, user-defined ones are added tokens matched always.
    pub fn from_gguf(v: &GgufVocab) -> Result<Bpe> {
        ensure!(
            v.model == "gpt2",
            "tokenizer.ggml.model {:?} is not supported: only \"gpt2\" (byte-level BPE)",
            v.model
        );
        let pre_name = v.pre.as_deref().unwrap_or("default");
        let Some((pre, ignore_merges, add_bos_default)) = pre_tokenizer(pre_name) else {
            bail!(
                "tokenizer.ggml.pre {pre_name:?} is not supported: the pre-tokenizers known are GPT-2's \
                 (\"gpt-2\", ...), Llama 3's (\"llama-bpe\", ...), Qwen2's (\"qwen2\", ...) and \
                 SmolLM's (\"smollm\", \"starcoder\", ...)"
            );
        };
        let n = v.tokens.len();
        ensure!(n > 0, "tokenizer.ggml.tokens is empty");
        ensure!(
            v.token_types.is_empty() || v.token_types.len() == n,
            "tokenizer.ggml.token_type has {} entries for {n} tokens",
            v.token_types.len()
        );
        let kind = |id: usize| v.token_types.get(id).copied().unwrap_or(1);
        let mut tokens = Vec::with_capacity(n);
        let mut in_model = Vec::with_capacity(n);
        let mut added = Vec::new();
        for (id, text) in v.tokens.iter().enumerate() {
            let bytes = text_to_bytes(text);
            let special = matches!(kind(id), CONTROL | UNKNOWN);
            if special || kind(id) == USER_DEFINED {
                added.push(AddedToken {
                    special,
                    ..AddedToken::special(id as u32, text)
                });
            } else {
                ensure!(
                    bytes.is_some(),
                    "tokenizer.ggml.tokens[{id}] {text:?} is not byte-level text"
                );
            }
            in_model.push(bytes.is_some());
            tokens.push(bytes.unwrap_or_else(|| text.as_bytes().to_vec()));
        }
        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (id, text) in v.tokens.iter().enumerate().rev() {
            by_text.insert(text, id as u32);
        }
        let mut merges = Vec::with_capacity(v.merges.len());
        for (rank, merge) in v.merges.iter().enumerate() {
            // Split at the first space after the first byte, as llama.cpp does.
            let at = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let (left, right) = at
                .map(|at| (&merge[..at], &merge[at + 1..]))
                .with_context(|| format!("tokenizer.ggml.merges[{rank}]: expected \"left right\", got {merge:?}"))?;
            let id = |t: &str| {
                by_text
                    .get(t)
                    .copied()
                    .with_context(|| format!("tokenizer.ggml.merges[{rank}]: {t:?} is not a token"))
            };
            let pair = (id(left)?, id(right)?);
            if in_model[pair.0 as usize] && in_model[pair.1 as usize] {
                merges.push(pair);
            }
        }
        let given = SpecialTokens {
            bos: v.bos,
            eos: v.eos,
            pad: v.pad,
            eot: v.eot,
            unk: v.unk,
        };
        given.check(n).context("tokenizer.ggml.*_token_id")?;
        let add = |flag: Option<bool>, default: bool, id: Option<u32>, what: &str, key: &str| -> Result<Vec<u32>> {
            if !flag.unwrap_or(default) {
                return Ok(Vec::new());
            }
            let id = id.with_context(|| format!("tokenizer.ggml.add_{what}_token is true but {key} is not set"))?;
            Ok(vec![id])
        };
        let template = (
            add(v.add_bos, add_bos_default, v.bos, "bos", "tokenizer.ggml.bos_token_id")?,
            add(v.add_eos, false, v.eos, "eos", "tokenizer.ggml.eos_token_id")?,
        );
        let mut bpe = Parts {
            in_model,
            ignore_merges,
            pre,
            added,
            template,
            ..Parts::new("gguf", tokens, merges)
        }
        .build()?;
        bpe.set_special_tokens(given, false)?;
        Ok(bpe)
    }
}
