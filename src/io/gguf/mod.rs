//! GGUF, llama.cpp's model file: a header, metadata key/values, a tensor
//! table, then the tensor data, each tensor at an aligned offset. The layout
//! follows the spec, <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>,
//! and llama.cpp's own reader (`gguf.cpp`), including what it refuses.
//!
//! [`Gguf`] reads versions 2 and 3 over a memory map (or any bytes): the
//! whole layout is checked when the file is opened, so a file that lies
//! (truncated, absurd counts, tensors out of range, unaligned or overlapping,
//! unknown types, sizes that overflow, duplicate names, non-UTF-8 strings) is
//! an error naming the file and the problem, never a panic or a huge
//! allocation. Tensor bytes are handed out as slices of the file, in ggml's
//! block layout; the tensor layer's `quant` module turns them into f32.
//!
//! [`GgufWriter`] writes version 3, atomically.

mod read;
mod types;
mod value;
mod write;

pub use read::{Gguf, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use write::GgufWriter;

const MAGIC: &[u8; 4] = b"GGUF";

/// True when `path` is called `*.gguf` or starts with GGUF's magic.
pub fn is_gguf(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    path.extension() == Some("gguf".as_ref())
        || std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == MAGIC
}
/// Used when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: usize = 4;

#[cfg(test)]
mod tests;
