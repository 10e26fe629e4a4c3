//! [`Tokenizer`]: the character tokenizer or byte-level BPE, chosen by what a
//! model directory holds.

use super::bpe::hash::Fnv64;
use super::bpe::{Bpe, SpecialTokens, TOKENIZER_FILE};
use super::char::{CharTokenizer, CHAR_TOKENIZER_FILE};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The one `.gguf` file in `dir`, if it holds exactly one.
fn only_gguf(dir: &Path) -> Option<PathBuf> {
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some("gguf".as_ref()) && p.is_file());
    let one = found.next()?;
    found.next().is_none().then_some(one)
}

/// Where a directory's tokenizer comes from, in the order [`Tokenizer::load`] looks.
enum Source {
    Char,
    HfJson,
    VocabMerges,
    /// OpenAI's names for vocab.json and merges.txt: `encoder.json`, `vocab.bpe`.
    OpenAi(PathBuf, PathBuf),
    Gguf(PathBuf),
}

impl Source {
    fn find(dir: &Path) -> Option<Source> {
        let (encoder, merges) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
        if dir.join(CHAR_TOKENIZER_FILE).is_file() {
            Some(Source::Char)
        } else if dir.join(TOKENIZER_FILE).is_file() {
            Some(Source::HfJson)
        } else if Bpe::exists_in(dir) {
            Some(Source::VocabMerges)
        } else if encoder.is_file() && merges.is_file() {
            Some(Source::OpenAi(encoder, merges))
        } else {
            only_gguf(dir).map(Source::Gguf)
        }
    }
}

/// Either tokenizer, behind one API.
// A program holds one or two tokenizers: boxing the large variant saves nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Tokenizer {
    Char(CharTokenizer),
    Bpe(Bpe),
}

impl Tokenizer {
    /// The tokenizer as GGUF `tokenizer.ggml.*` metadata.
    pub fn to_gguf(&self) -> Result<super::GgufVocab> {
        match self {
            Tokenizer::Char(t) => t.to_gguf(),
            Tokenizer::Bpe(t) => t.to_gguf(),
        }
    }

    /// GPT-2's built-in byte-level BPE.
    pub fn gpt2() -> Tokenizer {
        Tokenizer::Bpe(Bpe::gpt2())
    }

    /// The tokenizer of a model directory: `char_tokenizer.json` if present,
    /// else `tokenizer.json` (Hugging Face's, with `tokenizer_config.json`
    /// naming its special tokens) if present, else `vocab.json` +
    /// `merges.txt` if present, else `encoder.json` + `vocab.bpe` (the same
    /// files as OpenAI names them in its TensorFlow release) if present, else
    /// the one in the metadata of the directory's only `.gguf` file, else
    /// GPT-2's built-in one. A GGUF file gives the tokenizer in its metadata;
    /// for another model file (an llm.c `.bin`) it is the directory holding
    /// the file. A missing directory is an error.
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if path.is_file() && crate::io::gguf::is_gguf(path) {
            return Ok(Tokenizer::Bpe(super::bpe::load_gguf(path)?));
        }
        let dir = match path.parent().filter(|_| path.is_file()) {
            Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
            Some(parent) => parent,
            None => path,
        };
        ensure!(dir.is_dir(), "model directory {} does not exist", dir.display());
        match Source::find(dir) {
            Some(Source::Char) => Ok(Tokenizer::Char(CharTokenizer::load(dir)?)),
            Some(Source::HfJson) => Ok(Tokenizer::Bpe(Bpe::load_tokenizer_json(dir)?)),
            Some(Source::VocabMerges) => Ok(Tokenizer::Bpe(Bpe::load(dir)?)),
            Some(Source::OpenAi(encoder, merges)) => {
                let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
                let bpe = Bpe::from_text("bpe", &read(&encoder)?, &read(&merges)?)
                    .with_context(|| format!("loading the BPE tokenizer in {}", dir.display()))?;
                Ok(Tokenizer::Bpe(bpe))
            }
            Some(Source::Gguf(file)) => Ok(Tokenizer::Bpe(super::bpe::load_gguf(&file)?)),
            None => Ok(Tokenizer::gpt2()),
        }
    }

    /// Whether the directory `dir` holds tokenizer files of its own (those
    /// [`Tokenizer::load`] reads), rather than leaving it to GPT-2's.
    pub fn found_in(dir: &Path) -> bool {
        Source::find(dir).is_some()
    }

    /// Short name for file headers: "char", "gpt2", "bpe", "hf" (from
    /// `tokenizer.json`) or "gguf".
    pub fn name(&self) -> &str {
        match self {
            Tokenizer::Char(_) => "char",
            Tokenizer::Bpe(bpe) => bpe.name(),
        }
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char(t) => t.vocab_size(),
            Tokenizer::Bpe(t) => t.vocab_size(),
        }
    }

    /// The id that separates documents: BOS for characters, `<|endoftext|>`
    /// for BPE (if the vocabulary has it, else its EOS).
    pub fn document_separator(&self) -> Option<u32> {
        match self {
            Tokenizer::Char(t) => Some(t.bos()),
            Tokenizer::Bpe(t) => t.endoftext().or(t.special_tokens().eos),
        }
    }

    /// BOS, EOS, padding, end-of-turn and unknown ids, where known (for
    /// characters: BOS, which also ends a document).
    pub fn special_tokens(&self) -> SpecialTokens {
        match self {
            Tokenizer::Char(t) => SpecialTokens {
                bos: Some(t.bos()),
                eos: Some(t.bos()),
                ..SpecialTokens::default()
            },
            Tokenizer::Bpe(t) => t.special_tokens(),
        }
    }

    /// Encodes text as plain text (no BOS, special token text stays text).
    /// Characters outside a character vocabulary are an error.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Char(t) => text.chars().map(|c| t.id(c)).collect(),
            Tokenizer::Bpe(t) => Ok(t.encode_parallel(text, false)),
        }
    }

    /// Decodes ids to text; an id outside the vocabulary is an error.
    /// The bytes of token `id` (part of a UTF-8 character, for some BPE tokens).
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        Ok(match self {
            Tokenizer::Bpe(bpe) => bpe.decode_bytes(&[id])?,
            Tokenizer::Char(_) => self.decode(&[id])?.into_bytes(),
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Char(t) => t.decode(ids),
            Tokenizer::Bpe(t) => t.decode(ids),
        }
    }

    /// A stable hash identifying the vocabulary, for token file headers.
    pub fn fingerprint(&self) -> u64 {
        match self {
            Tokenizer::Char(t) => {
                // The characters in id order (BOS, the last id, decodes to nothing).
                let ids: Vec<u32> = (0..t.bos()).collect();
                let mut h = Fnv64::default();
                h.update(b"char\0");
                h.update(t.decode(&ids).expect("ids below BOS are characters").as_bytes());
                h.finish()
            }
            Tokenizer::Bpe(t) => t.fingerprint(),
        }
    }
}
