//! Character-level tokenizer, exactly as microgpt builds it: the vocabulary is
//! the sorted set of characters in the training data, and one more id, BOS
//! (= the number of characters), marks both the start and the end of a document.

use super::GgufVocab;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// File name of the character tokenizer inside a model directory.
pub const CHAR_TOKENIZER_FILE: &str = "char_tokenizer.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharTokenizer {
    /// Sorted unique characters; a character's id is its index here.
    chars: Vec<char>,
}

impl CharTokenizer {
    /// Builds the vocabulary from every character of `docs`.
    pub fn from_docs<S: AsRef<str>>(docs: &[S]) -> Self {
        let set: BTreeSet<char> = docs.iter().flat_map(|d| d.as_ref().chars()).collect();
        CharTokenizer {
            chars: set.into_iter().collect(),
        }
    }

    /// The BOS id: one past the last character id.
    pub fn bos(&self) -> u32 {
        self.chars.len() as u32
    }

    /// Number of ids, BOS included.
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + 1
    }

    /// Encodes a document as `[BOS] chars [BOS]`.
    pub fn encode_doc(&self, doc: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(doc.len() + 2);
        ids.push(self.bos());
        for ch in doc.chars() {
            ids.push(self.id(ch)?);
        }
        ids.push(self.bos());
        Ok(ids)
    }

    /// The id of one character, or an error naming the character.
    pub fn id(&self, ch: char) -> Result<u32> {
        match self.chars.binary_search(&ch) {
            Ok(i) => Ok(i as u32),
            Err(_) => bail!(
                "character {ch:?} (U+{:04X}) is not in the tokenizer's vocabulary of {} characters",
                ch as u32,
                self.chars.len()
            ),
        }
    }

    /// Decodes ids to text; BOS is skipped, an unknown id is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut s = String::with_capacity(ids.len());
        for &id in ids {
            if id == self.bos() {
                continue;
            }
            match self.chars.get(id as usize) {
                Some(&c) => s.push(c),
                None => bail!("token id {id} is outside the vocabulary ({} ids)", self.vocab_size()),
            }
        }
        Ok(s)
    }

    /// This vocabulary as GGUF tokenizer metadata ([`GgufVocab::characters`]),
    /// BOS named `<|bos|>`.
    pub fn to_gguf(&self) -> Result<GgufVocab> {
        GgufVocab::characters(&self.chars, "<|bos|>")
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        crate::io::write_atomic(&dir.join(CHAR_TOKENIZER_FILE), &json)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CHAR_TOKENIZER_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let tok: CharTokenizer = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid character tokenizer", path.display()))?;
        if tok.chars.windows(2).any(|w| w[0] >= w[1]) {
            bail!("{}: characters must be sorted and unique", path.display());
        }
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_sorted_chars_plus_bos() {
        let tok = CharTokenizer::from_docs(&["emma", "ava"]);
        assert_eq!(tok.vocab_size(), 5); // a e m v + BOS
        assert_eq!(tok.bos(), 4);
        assert_eq!(tok.encode_doc("ava").unwrap(), vec![4, 0, 3, 0, 4]);
        assert_eq!(tok.decode(&[4, 1, 2, 2, 0, 4]).unwrap(), "emma");
    }

    #[test]
    fn unknown_char_and_id_are_errors() {
        let tok = CharTokenizer::from_docs(&["ab"]);
        let err = tok.encode_doc("abz").unwrap_err().to_string();
        assert!(err.contains("'z'"), "{err}");
        assert!(tok.decode(&[7]).is_err());
    }
}
