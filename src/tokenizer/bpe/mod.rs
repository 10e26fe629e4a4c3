//! Byte-level BPE: OpenAI's GPT-2 tokenizer (and `tiktoken`'s `gpt2`
//! encoding), and the byte-level BPE of Llama-family models as Hugging Face
//! `tokenizers` defines it in a `tokenizer.json` ([`Bpe::from_tokenizer_json`])
//! or llama.cpp in a GGUF file ([`Bpe::from_gguf`]).
//!
//! Encoding runs in four steps:
//! 1. [added tokens](AddedToken) (`<|endoftext|>`, `<|im_start|>`, ...) are found in
//!    the text; special ones only where the caller allows them;
//! 2. the [`pre`]-tokenizer splits the text between them into pieces (GPT-2:
//!    words with their leading space, numbers, punctuation runs, white space);
//! 3. each piece's UTF-8 bytes become one id per byte;
//! 4. adjacent ids are merged by rank ([`vocab.bpe`](Bpe::gpt2)'s order) until
//!    no merge applies. A piece that is itself a token is looked up directly,
//!    and a piece already merged earlier in the same call comes from a cache.
//!
//! Decoding concatenates the tokens' bytes (an added token's are its text).
//! [`Bpe::post_process`] adds what the tokenizer puts around a text (BOS for
//! Llama 3); encoding itself never does.

mod added;
mod build;
mod bytes;
mod gguf;
pub(crate) mod hash;
mod hf_json;
mod hf_json_write;
pub mod llama3;
mod merge;
mod parallel;
mod piece_map;
pub mod pre;
pub mod pretokenize;
mod specials;
pub mod train;
mod unicode_tables;
mod vocab;

use self::added::{AddedTokens, Segment};
use self::merge::{MergeTable, Scratch};
use self::piece_map::PieceMap;
use self::pre::PreTokenizer;
use anyhow::{anyhow, Result};

pub use self::added::AddedToken;
pub use self::gguf::{load_gguf, GgufVocab};
pub use self::hf_json::{TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
pub use self::specials::SpecialTokens;
pub use self::vocab::{GGUF_TOKENIZER_FILE, MERGES_FILE, VOCAB_FILE};

/// GPT-2's end-of-text token, id 50256 in its vocabulary.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// `byte_ids` entry of a byte the vocabulary lacks.
const NO_ID: u32 = u32::MAX;

/// A byte-level BPE tokenizer: a vocabulary of byte strings, its merges, its
/// pre-tokenizer and added tokens.
#[derive(Clone, Debug)]
pub struct Bpe {
    /// Short name for file headers: "gpt2" for the built-in vocabulary.
    name: String,
    /// Bytes of token `id` are `bytes[offsets[id]..offsets[id + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// The id of each single-byte token, [`NO_ID`] where there is none.
    byte_ids: Box<[u32; 256]>,
    /// What a byte without a token becomes: `Some((unk, fuse))` gives `unk`
    /// (one for a run of them if `fuse`), `None` drops it (as `tokenizers`
    /// does with no `unk_token`).
    unk: Option<(u32, bool)>,
    missing_bytes: bool,
    merges: MergeTable,
    /// Pieces that encode to one token without running the merge loop: tokens
    /// whose own bytes merge back to them (all of GPT-2's), or, with
    /// `ignore_merges`, every token of the model.
    whole: PieceMap<u32>,
    ignore_merges: bool,
    pre: PreTokenizer,
    added: AddedTokens,
    /// Ids the post-processor puts before and after a text's.
    template: (Vec<u32>, Vec<u32>),
    specials: SpecialTokens,
    /// Id of `<|endoftext|>`, when the vocabulary has it.
    endoftext: Option<u32>,
    fingerprint: u64,
}

/// Per-thread buffers for encoding, and a cache of the merged pieces seen.
#[derive(Default)]
struct Work {
    ids: Vec<u32>,
    scratch: Scratch,
    /// Piece -> range of its ids in `cached_ids`.
    cache: PieceMap<(u32, u32)>,
    cached_ids: Vec<u32>,
}

/// The cache starts over when it holds this many pieces.
const CACHE_PIECES: usize = 1 << 15;

impl Bpe {
    /// Short name of the vocabulary ("gpt2" for the built-in one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of ids, special tokens included (50,257 for GPT-2).
    pub fn vocab_size(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The id of `<|endoftext|>`, if the vocabulary has it.
    pub fn endoftext(&self) -> Option<u32> {
        self.endoftext
    }

    /// BOS, EOS, padding, end of turn and unknown ids, where known.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.specials
    }

    /// The added tokens (`<|endoftext|>` for GPT-2).
    pub fn added_tokens(&self) -> &[AddedToken] {
        self.added.tokens()
    }

    pub fn pre_tokenizer(&self) -> &PreTokenizer {
        &self.pre
    }

    /// The merges by rank: `(left, right, merged)` ids.
    pub fn merges(&self) -> &[(u32, u32, u32)] {
        self.merges.merges()
    }

    /// Whether a piece that is a whole token skips the merge loop (Llama 3's `ignore_merges`).
    pub fn ignores_merges(&self) -> bool {
        self.ignore_merges
    }

    /// The ids the post-processor puts before and after a text's (a BOS, say).
    pub fn template(&self) -> (&[u32], &[u32]) {
        (&self.template.0, &self.template.1)
    }

    /// A stable 64-bit hash of everything encoding depends on (vocabulary,
    /// merges, pre-tokenizer, added tokens): equal fingerprints mean the same
    /// token ids for any text.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The bytes of one token, `None` for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let id = id as usize;
        let (start, end) = (*self.offsets.get(id)?, *self.offsets.get(id + 1)?);
        Some(&self.bytes[start as usize..end as usize])
    }

    /// The id of a token given as text: an added token's content, else the
    /// first token with these bytes.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        let added = self.added.tokens().iter().find(|t| t.content == text);
        added
            .map(|t| t.id)
            .or_else(|| (0..self.vocab_size() as u32).find(|&id| self.token_bytes(id) == Some(text.as_bytes())))
    }

    /// Encodes text with special tokens in it as plain text (like
    /// `tiktoken`'s `encode_ordinary`, or `tokenizers` with
    /// `encode_special_tokens`); added tokens that are not special still count.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, false, &mut out, &mut Work::default());
        out
    }

    /// Encodes text, turning the special tokens in it (`<|endoftext|>`) into
    /// their ids, like `tokenizers`' `encode(text, add_special_tokens=False)`.
    pub fn encode_allowing_special(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, true, &mut out, &mut Work::default());
        out
    }

    /// Same ids as [`encode`](Self::encode) (or
    /// [`encode_allowing_special`](Self::encode_allowing_special)), computed
    /// on all of rayon's threads for large texts.
    pub fn encode_parallel(&self, text: &str, allow_special: bool) -> Vec<u32> {
        self.encode_parallel_with(text, allow_special, |_| {})
    }

    /// `ids` with the post-processor's tokens around them (Llama 3: BOS
    /// first), as `tokenizers`' `add_special_tokens=True` does.
    pub fn post_process(&self, ids: &[u32]) -> Vec<u32> {
        let (before, after) = &self.template;
        [before.as_slice(), ids, after].concat()
    }

    /// Decodes ids to bytes; an id outside the vocabulary is an error.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let bytes = self
                .token_bytes(id)
                .ok_or_else(|| anyhow!("token id {id} is outside the vocabulary ({} ids)", self.vocab_size()))?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// Decodes ids to text. Exact for ids from `encode`; bytes that are not
    /// valid UTF-8 (possible for arbitrary ids) become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    fn encode_into(&self, text: &str, allow_special: bool, out: &mut Vec<u32>, work: &mut Work) {
        self.added.split(text, allow_special, &mut |segment| match segment {
            Segment::Text(text) => self.encode_text_into(text, out, work),
            Segment::Token { id, .. } => out.push(id),
        });
    }

    /// Encodes text with no added tokens in it.
    fn encode_text_into(&self, text: &str, out: &mut Vec<u32>, work: &mut Work) {
        self.pre
            .for_each_piece(text, &mut |piece| self.encode_piece(piece.as_bytes(), out, work));
    }

    #[inline]
    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>, work: &mut Work) {
        if let [byte] = piece {
            let id = self.byte_ids[*byte as usize];
            if id != NO_ID {
                out.push(id);
                return;
            }
        }
        if let Some(&id) = self.whole.get(piece) {
            out.push(id);
            return;
        }
        if let Some(&(start, end)) = work.cache.get(piece) {
            out.extend_from_slice(&work.cached_ids[start as usize..end as usize]);
            return;
        }
        self.byte_level_ids(piece, &mut work.ids);
        self.merges.apply(&mut work.ids, &mut work.scratch);
        out.extend_from_slice(&work.ids);
        if work.cache.len() >= CACHE_PIECES {
            work.cache.clear();
            work.cached_ids.clear();
        }
        let start = work.cached_ids.len() as u32;
        work.cached_ids.extend_from_slice(&work.ids);
        work.cache.insert(piece, (start, work.cached_ids.len() as u32));
    }

    /// The ids a piece starts from, one per byte: bytes without a token
    /// become `unk` or nothing.
    fn byte_level_ids(&self, piece: &[u8], ids: &mut Vec<u32>) {
        ids.clear();
        if !self.missing_bytes {
            ids.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
            return;
        }
        let mut in_unknown = false;
        for &b in piece {
            match (self.byte_ids[b as usize], self.unk) {
                (NO_ID, None) => {}
                (NO_ID, Some((unk, fuse))) => {
                    if !(fuse && in_unknown) {
                        ids.push(unk);
                    }
                    in_unknown = true;
                }
                (id, _) => {
                    ids.push(id);
                    in_unknown = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_example_and_round_trip() {
        let bpe = Bpe::gpt2();
        let text = "Not all heroes wear capes.";
        let ids = bpe.encode(text);
        assert_eq!(ids, [3673, 477, 10281, 5806, 1451, 274, 13]);
        assert_eq!(bpe.decode(&ids).unwrap(), text);
        assert_eq!(bpe.vocab_size(), 50257);
        assert_eq!(bpe.endoftext(), Some(50256));
    }

    #[test]
    fn special_token_only_when_allowed() {
        let bpe = Bpe::gpt2();
        let text = "a<|endoftext|>b";
        assert_eq!(bpe.encode_allowing_special(text), [64, 50256, 65]);
        let plain = bpe.encode(text);
        assert!(!plain.contains(&50256));
        assert_eq!(bpe.decode(&plain).unwrap(), text);
        assert_eq!(bpe.decode(&[50256]).unwrap(), ENDOFTEXT);
    }

    #[test]
    fn decode_errors_and_lossy_utf8() {
        let bpe = Bpe::gpt2();
        let err = bpe.decode(&[50257]).unwrap_err().to_string();
        assert!(err.contains("50257") && err.contains("50257 ids"), "{err}");
        // Byte 0xF0 alone (id 187 in GPT-2's byte order) is not UTF-8.
        let id = bpe.byte_ids[0xF0];
        assert_eq!(bpe.decode_bytes(&[id]).unwrap(), [0xF0]);
        assert_eq!(bpe.decode(&[id]).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn long_pieces_round_trip() {
        let bpe = Bpe::gpt2();
        let word = "abcdefghij".repeat(40);
        let ids = bpe.encode(&word);
        assert!(ids.len() < 200, "{}", ids.len());
        assert_eq!(bpe.decode(&ids).unwrap(), word);
    }
}
