//! Files and formats: atomic writes, memory maps, safetensors writing, GGUF
//! (llama.cpp's format: [`gguf`]), the element encodings of stored tensors,
//! NumPy arrays. Below every layer that
//! saves or loads anything; imports nothing else of ours.

mod atomic;
pub mod gguf;
mod npy;
mod safetensors;

pub use self::safetensors::{write_safetensors, write_safetensors_with};
pub use atomic::{write_atomic, write_atomic_via, write_atomic_with};
pub use npy::npy_header;

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// Read-only memory map of a whole file, with the path in any error.
pub fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only, so nothing in this process writes through the map;
    // every file this crate writes is replaced by rename (`write_atomic`,
    // downloads), which leaves a mapped inode intact. Only another program
    // writing or truncating the file in place could change the bytes under
    // the map, which no mapping can prevent (why `Mmap::map` is unsafe).
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))
}

/// Hands the pages under `chunk` back to the kernel once its bytes are
/// copied, when `chunk` lies inside `map`, so that a loader holds the copies
/// and not the whole file besides (peak RSS about 1x the file, not 2x).
/// Anything else is left alone. The range is widened by [`RELEASE_MARGIN`]
/// on each side (within the map): a page fault maps the pages around it that
/// the page cache holds (`fault_around_bytes`, 64 KiB by default), so each
/// chunk read maps its released neighbours again; without the margin a
/// loader taking tensors out of file order kept 8 MiB of them
/// (SmolLM2-135M's GGUF).
pub fn release_pages(map: &memmap2::Mmap, chunk: &[u8]) {
    // Only a chunk inside the map: memmap2 checks the offset and the length
    // each against the map's length, not their sum, and DONTNEED on other
    // (anonymous) memory would zero it under its borrows.
    let offset = (chunk.as_ptr() as usize).checked_sub(map.as_ptr() as usize);
    let Some(offset) = offset.filter(|o| o.checked_add(chunk.len()).is_some_and(|end| end <= map.len())) else {
        return;
    };
    let start = offset.saturating_sub(RELEASE_MARGIN);
    let end = (offset + chunk.len()).saturating_add(RELEASE_MARGIN).min(map.len());
    // SAFETY: the range lies inside a read-only, file-backed map: DONTNEED
    // only drops its pages (memmap2 widens the range to whole pages, all
    // of them the map's), and a later read of any of them, by a borrow
    // still held or not, faults the same bytes back in from the file.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
}

/// Bytes released on each side of a copied chunk ([`release_pages`]): the
/// fault-around window, twice over.
const RELEASE_MARGIN: usize = 128 << 10;

/// How one element of a stored tensor is encoded (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    Bf16,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
        }
    }

    /// Decodes `bytes` (a whole number of elements) to f32, exactly: every
    /// f16 and bf16 value is an f32 value.
    pub fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        debug_assert_eq!(bytes.len() % self.size(), 0);
        match self {
            Elem::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Elem::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Elem::Bf16 => bytes
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_formats_decode_exactly() {
        let xs = [0.0f32, -1.5, 65504.0, 1.0 / 1024.0, 3.140625];
        let f16: Vec<u8> = xs.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        assert_eq!(Elem::F16.to_f32(&f16), xs);
        let bf16: Vec<u8> = xs.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        let back: Vec<f32> = xs.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect();
        assert_eq!(Elem::Bf16.to_f32(&bf16), back);
        let f32s: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(Elem::F32.to_f32(&f32s), xs);
    }
}
