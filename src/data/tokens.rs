//! Token files (`train.bin`, `val.bin` from `gpt prepare`): a corpus as token
//! ids, compact and memory-mapped.
//!
//! Layout, all little-endian: a 64-byte header, then the ids.
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0  | 8  | magic `GPTTOKNS` |
//! | 8  | 4  | format version, 1 |
//! | 12 | 4  | bytes per id: 2 (u16) or 4 (u32) |
//! | 16 | 8  | number of ids |
//! | 24 | 4  | vocabulary size (every id is below it) |
//! | 28 | 4  | reserved, 0 |
//! | 32 | 8  | tokenizer fingerprint ([`Tokenizer::fingerprint`]) |
//! | 40 | 24 | tokenizer name (`gpt2`, `bpe`, `char`), UTF-8, zero-padded |
//! | 64 | n × width | the ids |
//!
//! A training run compares the fingerprint with its tokenizer's, so data
//! tokenized with another vocabulary is refused instead of silently misread.

use crate::io::write_atomic_with;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

pub const MAGIC: [u8; 8] = *b"GPTTOKNS";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
const NAME_LEN: usize = 24;

/// How many bytes each id takes in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdWidth {
    U16,
    U32,
}

impl IdWidth {
    /// The narrowest width that holds every id of a vocabulary.
    pub fn for_vocab(vocab_size: usize) -> IdWidth {
        if vocab_size <= 1 << 16 {
            IdWidth::U16
        } else {
            IdWidth::U32
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            IdWidth::U16 => 2,
            IdWidth::U32 => 4,
        }
    }
}

/// The header of a token file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHeader {
    pub width: IdWidth,
    pub count: u64,
    pub vocab_size: u32,
    pub tokenizer_fingerprint: u64,
    pub tokenizer_name: String,
}

impl TokenHeader {
    /// A header for `count` ids made by `tokenizer`, stored `width` wide.
    pub fn new(tokenizer: &Tokenizer, width: IdWidth, count: usize) -> Result<TokenHeader> {
        let vocab = tokenizer.vocab_size();
        if width == IdWidth::U16 && vocab > 1 << 16 {
            bail!("the vocabulary has {vocab} ids, too many for u16 token files (at most 65536); use u32");
        }
        Ok(TokenHeader {
            width,
            count: count as u64,
            vocab_size: vocab as u32,
            tokenizer_fingerprint: tokenizer.fingerprint(),
            tokenizer_name: tokenizer.name().to_string(),
        })
    }

    fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(self.width.bytes() as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..28].copy_from_slice(&self.vocab_size.to_le_bytes());
        h[32..40].copy_from_slice(&self.tokenizer_fingerprint.to_le_bytes());
        let name = self.tokenizer_name.as_bytes();
        let n = name.len().min(NAME_LEN);
        h[40..40 + n].copy_from_slice(&name[..n]);
        h
    }

    fn parse(h: &[u8]) -> Result<TokenHeader> {
        ensure!(
            h.len() >= HEADER_LEN && h[0..8] == MAGIC,
            "not a token file (no {:?} header)",
            "GPTTOKNS"
        );
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        ensure!(
            version == VERSION,
            "token file format version {version} is not supported (this build reads {VERSION})"
        );
        let width = match u32_at(12) {
            2 => IdWidth::U16,
            4 => IdWidth::U32,
            w => bail!("token file has {w} bytes per id; expected 2 or 4"),
        };
        let name = &h[40..40 + NAME_LEN];
        let end = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        Ok(TokenHeader {
            width,
            count: u64_at(16),
            vocab_size: u32_at(24),
            tokenizer_fingerprint: u64_at(32),
            tokenizer_name: String::from_utf8_lossy(&name[..end]).into_owned(),
        })
    }
}

/// A token file, memory-mapped: ids are read straight from the page cache.
pub struct TokenFile {
    header: TokenHeader,
    map: Mmap,
}

impl TokenFile {
    /// Opens and checks a token file (header, and length against the count).
    pub fn open(path: &Path) -> Result<TokenFile> {
        let file = File::open(path).with_context(|| format!("opening token file {}", path.display()))?;
        // SAFETY: read-only, so nothing in this process writes through the map;
        // token files (like every file this crate writes) are written to a
        // temporary name and renamed into place, never modified where they
        // are. Only another program writing or truncating the file in place
        // could change the bytes under the map, which no mapping can prevent.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let header = TokenHeader::parse(&map).with_context(|| format!("reading {}", path.display()))?;
        let want = header
            .count
            .checked_mul(header.width.bytes() as u64)
            .and_then(|n| n.checked_add(HEADER_LEN as u64));
        if want != Some(map.len() as u64) {
            bail!(
                "{}: header says {} ids of {} bytes, but the file has {} bytes (truncated or corrupt)",
                path.display(),
                header.count,
                header.width.bytes(),
                map.len()
            );
        }
        Ok(TokenFile { header, map })
    }

    pub fn header(&self) -> &TokenHeader {
        &self.header
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id at `index` (panics past the end, like slice indexing).
    pub fn get(&self, index: usize) -> u32 {
        assert!(
            index < self.len(),
            "token index {index} out of range ({} ids)",
            self.len()
        );
        let data = &self.map[HEADER_LEN..];
        match self.header.width {
            IdWidth::U16 => u16::from_le_bytes([data[2 * index], data[2 * index + 1]]) as u32,
            IdWidth::U32 => u32::from_le_bytes(data[4 * index..4 * index + 4].try_into().expect("4 bytes")),
        }
    }

    /// Copies ids `start..start + out.len()` into `out` (panics past the end).
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        let end = start.checked_add(out.len()).filter(|&e| e <= self.len());
        assert!(
            end.is_some(),
            "ids {start}..+{} out of range ({} ids)",
            out.len(),
            self.len()
        );
        let w = self.header.width.bytes();
        let bytes = &self.map[HEADER_LEN + start * w..HEADER_LEN + (start + out.len()) * w];
        match self.header.width {
            IdWidth::U16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = u16::from_le_bytes([b[0], b[1]]) as u32;
                }
            }
            IdWidth::U32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
    }

    /// All ids, each checked against the header's vocabulary size: a corrupt
    /// or foreign file is an error here, not an index past a model's embedding.
    pub fn ids(&self) -> Result<Vec<u32>> {
        let mut ids = vec![0; self.len()];
        self.read_into(0, &mut ids);
        let vocab = self.header.vocab_size;
        if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id >= vocab) {
            bail!(
                "token {i} is id {id}, outside the vocabulary of {vocab} ids its header names: the file is corrupt; \
                 make it again with `gpt prepare`"
            );
        }
        Ok(ids)
    }

    /// Errors unless the file was made by `tokenizer` (same fingerprint).
    pub fn check_tokenizer(&self, tokenizer: &Tokenizer) -> Result<()> {
        let h = &self.header;
        if h.tokenizer_fingerprint != tokenizer.fingerprint() || h.vocab_size as usize != tokenizer.vocab_size() {
            bail!(
                "token file was made with tokenizer {:?} ({} ids, fingerprint {:016x}), but the model uses {:?} ({} ids, fingerprint {:016x}); run `gpt prepare` again with the model's tokenizer",
                h.tokenizer_name,
                h.vocab_size,
                h.tokenizer_fingerprint,
                tokenizer.name(),
                tokenizer.vocab_size(),
                tokenizer.fingerprint()
            );
        }
        Ok(())
    }
}

/// Writes a token file: to a temporary name, then renamed over `path`.
/// Every id must be below the header's vocabulary size.
pub fn write_token_file(path: &Path, header: &TokenHeader, ids: &[u32]) -> Result<()> {
    ensure!(
        header.count == ids.len() as u64,
        "header count {} != {} ids",
        header.count,
        ids.len()
    );
    if let Some(&bad) = ids.iter().find(|&&id| id >= header.vocab_size) {
        bail!("token id {bad} is outside the vocabulary ({} ids)", header.vocab_size);
    }
    write_atomic_with(path, |w| {
        w.write_all(&header.to_bytes())?;
        for chunk in ids.chunks(1 << 16) {
            let bytes: Vec<u8> = match header.width {
                IdWidth::U16 => chunk.iter().flat_map(|&id| (id as u16).to_le_bytes()).collect(),
                IdWidth::U32 => chunk.iter().flat_map(|&id| id.to_le_bytes()).collect(),
            };
            w.write_all(&bytes)?;
        }
        Ok(())
    })
    .with_context(|| format!("writing token file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn round_trip_u16_and_u32() {
        let dir = tempfile::tempdir().unwrap();
        let tok = Tokenizer::gpt2();
        let ids: Vec<u32> = vec![0, 1, 50256, 40000, 7];
        for width in [IdWidth::U16, IdWidth::U32] {
            let path = dir.path().join("t.bin");
            let header = TokenHeader::new(&tok, width, ids.len()).unwrap();
            write_token_file(&path, &header, &ids).unwrap();
            let f = TokenFile::open(&path).unwrap();
            assert_eq!(f.header(), &header);
            assert_eq!(f.header().tokenizer_name, "gpt2");
            assert_eq!(f.ids().unwrap(), ids);
            assert_eq!(f.get(2), 50256);
            let mut two = [0; 2];
            f.read_into(3, &mut two);
            assert_eq!(two, [40000, 7]);
            assert_eq!(
                fs::metadata(&path).unwrap().len() as usize,
                HEADER_LEN + ids.len() * width.bytes()
            );
            f.check_tokenizer(&tok).unwrap();
        }
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let tok = Tokenizer::gpt2();
        let header = TokenHeader::new(&tok, IdWidth::U16, 3).unwrap();
        assert!(write_token_file(&path, &header, &[1, 2, 50257])
            .unwrap_err()
            .to_string()
            .contains("outside"));
        write_token_file(&path, &header, &[1, 2, 3]).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = format!("{:#}", TokenFile::open(&path).err().unwrap());
        assert!(err.contains("truncated"), "{err}");
        fs::write(&path, b"hello").unwrap();
        assert!(format!("{:#}", TokenFile::open(&path).err().unwrap()).contains("not a token file"));
        let missing = format!("{:#}", TokenFile::open(&dir.path().join("nope.bin")).err().unwrap());
        assert!(missing.contains("nope.bin"), "{missing}");
        let chars = Tokenizer::Char(crate::tokenizer::CharTokenizer::from_docs(&["abc"]));
        write_token_file(&path, &header, &[1, 2, 3]).unwrap();
        let err = TokenFile::open(&path)
            .unwrap()
            .check_tokenizer(&chars)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gpt2\"") && err.contains("\"char\""), "{err}");
        // An id at or past the header's vocabulary: corrupt.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&50257u16.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let err = TokenFile::open(&path).unwrap().ids().unwrap_err().to_string();
        assert!(err.contains("token 1 is id 50257") && err.contains("corrupt"), "{err}");
    }
}
