//! Building a [`Bpe`] from a vocabulary and merges; reading and writing them
//! in the GPT-2 / Hugging Face text forms (`encoder.json` = `vocab.json`,
//! `vocab.bpe` = `merges.txt`).

use super::build::Parts;
use super::bytes::{byte_to_char, bytes_to_text, text_to_bytes};
use super::{AddedToken, Bpe, SpecialTokens, ENDOFTEXT};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Vocabulary file of a model directory (Hugging Face name).
pub const VOCAB_FILE: &str = "vocab.json";
/// Merges file of a model directory (Hugging Face name).
pub const MERGES_FILE: &str = "merges.txt";
/// A tokenizer as GGUF metadata without tensors, as run directories of earlier
/// versions kept one that `vocab.json` + `merges.txt` cannot hold (read as the
/// directory's GGUF file; removed with the rest of a run by `--overwrite`).
pub const GGUF_TOKENIZER_FILE: &str = "tokenizer.gguf";

static GPT2_ENCODER: &str = include_str!("../../../data/gpt2/encoder.json");
static GPT2_MERGES: &str = include_str!("../../../data/gpt2/vocab.bpe");

impl Bpe {
    /// OpenAI's GPT-2 vocabulary (50,257 tokens, 50,000 merges), built into
    /// the binary. Building it takes some 40 ms: keep one and reuse it.
    pub fn gpt2() -> Bpe {
        Bpe::from_text("gpt2", GPT2_ENCODER, GPT2_MERGES).expect("the built-in GPT-2 vocabulary is valid")
    }

    /// Loads `vocab.json` + `merges.txt` from a directory.
    pub fn load(dir: &Path) -> Result<Bpe> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let (vocab, merges) = (read(VOCAB_FILE)?, read(MERGES_FILE)?);
        Bpe::from_text("bpe", &vocab, &merges)
            .with_context(|| format!("loading the BPE tokenizer in {}", dir.display()))
    }

    /// True when `dir` holds `vocab.json` and `merges.txt`.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(VOCAB_FILE).is_file() && dir.join(MERGES_FILE).is_file()
    }

    /// Parses the text forms: `vocab_json` maps token text to id, `merges`
    /// lists one merge per line as `left right` (an optional `#version` first line).
    pub fn from_text(name: &str, vocab_json: &str, merges: &str) -> Result<Bpe> {
        let vocab: HashMap<String, u32> =
            serde_json::from_str(vocab_json).context("vocabulary is not a JSON object of token -> id")?;
        let mut tokens = vec![None; vocab.len()];
        for (text, &id) in &vocab {
            let slot = tokens.get_mut(id as usize).with_context(|| {
                format!(
                    "token {text:?} has id {id}, but ids must be 0..{} (one per token)",
                    vocab.len()
                )
            })?;
            if slot.is_some() {
                bail!("id {id} is given to two tokens");
            }
            *slot = Some(
                text_to_bytes(text)
                    .with_context(|| format!("token {text:?} is not in GPT-2's byte-level text form"))?,
            );
        }
        let tokens: Vec<Vec<u8>> = tokens.into_iter().map(|t| t.expect("ids are dense")).collect();
        let mut pairs = Vec::new();
        for (n, line) in merges.lines().enumerate() {
            if line.is_empty() || (n == 0 && line.starts_with("#version")) {
                continue;
            }
            let Some((left, right)) = line.split_once(' ').filter(|(_, r)| !r.contains(' ')) else {
                bail!(
                    "merges line {}: expected two tokens separated by one space, got {line:?}",
                    n + 1
                );
            };
            let id = |t: &str| {
                vocab
                    .get(t)
                    .copied()
                    .with_context(|| format!("merges line {}: {t:?} is not in the vocabulary", n + 1))
            };
            pairs.push((id(left)?, id(right)?));
        }
        let endoftext = vocab.get(ENDOFTEXT).copied();
        Bpe::new(name, tokens, &pairs, endoftext)
    }

    /// Builds a GPT-2-style tokenizer from token bytes (index = id; every
    /// single byte must be a token), merges in rank order as pairs of ids
    /// (each merged token must be in the vocabulary) and the id of
    /// `<|endoftext|>`, if any (its special token, and BOS, EOS and end of turn).
    pub fn new(name: &str, tokens: Vec<Vec<u8>>, merges: &[(u32, u32)], endoftext: Option<u32>) -> Result<Bpe> {
        let mut has_byte = [false; 256];
        for t in &tokens {
            if let [b] = t[..] {
                has_byte[b as usize] = true;
            }
        }
        if let Some(b) = has_byte.iter().position(|&has| !has) {
            bail!("the vocabulary lacks the single byte 0x{b:02X}");
        }
        let mut parts = Parts::new(name, tokens, merges.to_vec());
        if let Some(eot) = endoftext {
            parts.added = vec![AddedToken::special(eot, ENDOFTEXT)];
        }
        let mut bpe = parts.build()?;
        bpe.set_special_tokens(
            SpecialTokens {
                bos: endoftext,
                eos: endoftext,
                eot: endoftext,
                ..SpecialTokens::default()
            },
            false,
        )?;
        Ok(bpe)
    }

    /// The vocabulary as `vocab.json` text, in id order.
    pub fn vocab_json(&self) -> String {
        let table = byte_to_char();
        let entries: Vec<String> = (0..self.vocab_size() as u32)
            .map(|id| {
                let text = bytes_to_text(self.token_bytes(id).expect("id in vocabulary"), &table);
                format!("{}: {id}", serde_json::Value::String(text))
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    }

    /// The merges as `merges.txt` text, `#version: 0.2` first, as GPT-2's.
    pub fn merges_txt(&self) -> String {
        let table = byte_to_char();
        let text = |id: u32| bytes_to_text(self.token_bytes(id).expect("id in vocabulary"), &table);
        let mut out = String::from("#version: 0.2\n");
        for &(left, right, _) in self.merges.merges() {
            out.push_str(&format!("{} {}\n", text(left), text(right)));
        }
        out
    }

    /// Writes `vocab.json` and `merges.txt` into `dir` (atomically each), or,
    /// for a tokenizer those cannot hold (added tokens, another
    /// pre-tokenizer: SmolLM2's, Llama 3's), `tokenizer.json` +
    /// `tokenizer_config.json` ([`Bpe::to_tokenizer_json`]), which
    /// `transformers` and [`Tokenizer::load`](crate::tokenizer::Tokenizer::load) read.
    pub fn save(&self, dir: &Path) -> Result<()> {
        use super::hf_json::{TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
        use crate::io::write_atomic;
        let extras = self.encoding_extras();
        if !extras.is_empty() {
            let (json, config) = self.to_tokenizer_json().with_context(|| {
                format!(
                    "this tokenizer can be written neither as {VOCAB_FILE} + {MERGES_FILE}, which hold GPT-2-style \
                     tokenizers only (it has: {extras}), nor as {TOKENIZER_FILE}"
                )
            })?;
            write_atomic(&dir.join(TOKENIZER_CONFIG_FILE), config.as_bytes())?;
            return write_atomic(&dir.join(TOKENIZER_FILE), json.as_bytes());
        }
        write_atomic(&dir.join(VOCAB_FILE), self.vocab_json().as_bytes())?;
        write_atomic(&dir.join(MERGES_FILE), self.merges_txt().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_round_trips_through_its_text_form() {
        let gpt2 = Bpe::gpt2();
        assert_eq!(
            gpt2.whole.len(),
            50257 - 256 - 1,
            "every GPT-2 merge result is reachable"
        );
        let dir = tempfile::tempdir().unwrap();
        gpt2.save(dir.path()).unwrap();
        assert!(Bpe::exists_in(dir.path()));
        let again = Bpe::load(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), gpt2.fingerprint());
        assert_eq!(again.name(), "bpe");
        let merges = std::fs::read_to_string(dir.path().join(MERGES_FILE)).unwrap();
        assert_eq!(merges, GPT2_MERGES);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let err = |vocab: &str, merges: &str| format!("{:#}", Bpe::from_text("t", vocab, merges).unwrap_err());
        let bytes: Vec<String> = (0..=255u8).map(|b| bytes_to_text(&[b], &byte_to_char())).collect();
        let vocab = |extra: &str| {
            let items: Vec<String> = bytes
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{}: {i}", serde_json::Value::String(t.clone())))
                .collect();
            format!("{{{}{extra}}}", items.join(", "))
        };
        assert!(err("[1]", "").contains("JSON object"));
        assert!(err(&vocab(", \"ab\": 300"), "").contains("ids must be 0..257"));
        assert!(err(&vocab(", \"a b\": 256"), "").contains("byte-level text form"));
        assert!(err(&vocab(""), "a c d").contains("line 1"));
        assert!(err(&vocab(""), "a zz").contains("\"zz\" is not in the vocabulary"));
        assert!(err(&vocab(""), "a b").contains("makes \"ab\""));
        assert!(err("{\"a\": 0}", "").contains("single byte 0x00"));
        let ok = Bpe::from_text("t", &vocab(", \"ab\": 256"), "#version: 0.2\na b\n").unwrap();
        assert_eq!(ok.encode("cab"), [b'c' as u32, 256]);
    }
}
