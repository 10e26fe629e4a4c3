//! Building a [`Bpe`] from a vocabulary and merges; reading and writing them
//! in the GPT-2 / Hugging Face text forms (`encoder.json` = `vocab.json`,
//! `vocab.bpe` = `merges.txt`).

use super::bytes::{byte_to_char, bytes_to_text, text_to_bytes};
use super::hash::{FastMap, Fnv64};
use super::merge::{MergeTable, Scratch};
use super::piece_map::PieceMap;
use super::{Bpe, ENDOFTEXT};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Vocabulary file of a model directory (Hugging Face name).
pub const VOCAB_FILE: &str = "vocab.json";
/// Merges file of a model directory (Hugging Face name).
pub const MERGES_FILE: &str = "merges.txt";

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

    /// Builds a tokenizer from token bytes (index = id), merges in rank order
    /// as pairs of ids (each merged token must be in the vocabulary) and the
    /// id of `<|endoftext|>`, if any.
    pub fn new(name: &str, tokens: Vec<Vec<u8>>, merges: &[(u32, u32)], endoftext: Option<u32>) -> Result<Bpe> {
        let mut by_bytes: FastMap<&[u8], u32> = FastMap::default();
        for (id, t) in tokens.iter().enumerate().rev() {
            by_bytes.insert(t, id as u32);
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *by_bytes
                .get(&[b as u8][..])
                .with_context(|| format!("the vocabulary lacks the single byte 0x{b:02X}"))?;
        }
        let mut table = MergeTable::default();
        for (rank, &(left, right)) in merges.iter().enumerate() {
            let get = |id: u32| {
                tokens
                    .get(id as usize)
                    .with_context(|| format!("merge {rank} uses id {id}, outside the vocabulary"))
            };
            let merged = [get(left)?.as_slice(), get(right)?].concat();
            let Some(&id) = by_bytes.get(merged.as_slice()) else {
                bail!(
                    "merge {rank} makes {:?}, which is not in the vocabulary",
                    String::from_utf8_lossy(&merged)
                );
            };
            table.push(left, right, id);
        }
        if let Some(id) = endoftext.filter(|&id| id as usize >= tokens.len()) {
            bail!("<|endoftext|> id {id} is outside the vocabulary");
        }
        let mut bpe = Bpe {
            name: name.to_string(),
            bytes: tokens.concat(),
            offsets: Some(0)
                .into_iter()
                .chain(tokens.iter().scan(0u32, |end, t| {
                    *end += t.len() as u32;
                    Some(*end)
                }))
                .collect(),
            byte_ids: Box::new(byte_ids),
            merges: table,
            whole: PieceMap::default(),
            endoftext,
            fingerprint: 0,
        };
        bpe.whole = bpe.reachable_tokens(&tokens);
        bpe.fingerprint = bpe.compute_fingerprint();
        Ok(bpe)
    }

    /// Tokens that the merge loop turns their own bytes into: for those, a
    /// piece lookup gives the same id as merging (all of GPT-2's tokens).
    fn reachable_tokens(&self, tokens: &[Vec<u8>]) -> PieceMap<u32> {
        let reachable: Vec<u32> = (0..tokens.len() as u32)
            .into_par_iter()
            .filter(|&id| tokens[id as usize].len() > 1 && Some(id) != self.endoftext)
            .map_init(
                || (Vec::new(), Scratch::default()),
                |(ids, scratch), id| {
                    ids.clear();
                    ids.extend(tokens[id as usize].iter().map(|&b| self.byte_ids[b as usize]));
                    self.merges.apply(ids, scratch);
                    (ids[..] == [id]).then_some(id)
                },
            )
            .flatten()
            .collect();
        let mut whole = PieceMap::default();
        for id in reachable {
            whole.insert(&tokens[id as usize], id);
        }
        whole
    }

    fn compute_fingerprint(&self) -> u64 {
        let mut h = Fnv64::default();
        h.update(&(self.vocab_size() as u32).to_le_bytes());
        for id in 0..self.vocab_size() as u32 {
            let t = self.token_bytes(id).expect("id in vocabulary");
            h.update(&(t.len() as u32).to_le_bytes());
            h.update(t);
        }
        for &(left, right, _) in self.merges.merges() {
            h.update(&left.to_le_bytes());
            h.update(&right.to_le_bytes());
        }
        h.update(&self.endoftext.map_or(u32::MAX, |id| id).to_le_bytes());
        h.finish()
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

    /// Writes `vocab.json` and `merges.txt` into `dir` (atomically each).
    pub fn save(&self, dir: &Path) -> Result<()> {
        use crate::io::write_atomic;
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
