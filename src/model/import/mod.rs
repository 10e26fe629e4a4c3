//! Readers for GPT-2 checkpoints made by other programs: llm.c's `.bin` and
//! OpenAI's original TensorFlow release. Each turns its file into the same
//! [`Params`](crate::autograd::Params) that `model.safetensors` loads to, and
//! each checks every size against the file before it reads a byte.

pub mod llmc;
mod proto;
mod table;
pub mod tf;

use super::GptConfig;
use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::path::Path;

/// How one element of a stored tensor is encoded (little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    F32,
    F16,
    Bf16,
}

impl Elem {
    pub(crate) fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
        }
    }

    /// Decodes `bytes` (a whole number of elements) to f32, exactly: every
    /// f16 and bf16 value is an f32 value.
    pub(crate) fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
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

/// Checks that a config's sizes could come from `n_tensors` tensors in
/// `n_bytes` bytes of weights (at 2 bytes or more per element), so that a
/// damaged or hostile config cannot make us build billions of tensor names or
/// overflow a size computation before the weights are compared with it.
pub(crate) fn check_config_fits(config: &GptConfig, n_tensors: usize, n_bytes: usize) -> Result<()> {
    let e = config.n_embd;
    let fits = |what: &str, dims: &[usize]| -> Result<()> {
        let bytes = dims.iter().try_fold(2usize, |acc, &d| acc.checked_mul(d));
        ensure!(
            bytes.is_some_and(|b| b <= n_bytes),
            "the config's {what} {dims:?} cannot fit in the {n_bytes} bytes of weights: the config does not match \
             the weights"
        );
        Ok(())
    };
    fits("token embedding", &[config.vocab_size, e])?;
    fits("position embedding", &[config.n_ctx, e])?;
    fits("MLP weight", &[e, 4, e])?;
    fits("layers of MLP weights", &[config.n_layer, e, 4, e])?;
    ensure!(
        config.n_layer <= n_tensors,
        "the config has n_layer = {} but the weights hold only {n_tensors} tensors: the config does not match the \
         weights",
        config.n_layer
    );
    Ok(())
}

/// Read-only memory map of a whole file, with the path in any error.
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only and dropped once the weights are copied
    // out; a writer that replaces the file by rename leaves this inode intact.
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))
}

/// `[rows, cols]` row-major -> `[cols, rows]` row-major.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(data.len(), rows * cols);
    let mut out = vec![0.0; data.len()];
    for (r, row) in data.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    out
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

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(transpose(&[1., 2., 3., 4., 5., 6.], 2, 3), [1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn configs_too_big_for_the_weights_are_rejected_without_overflow() {
        let c = GptConfig::gpt2(10, 4, 8, 2, 1);
        check_config_fits(&c, 12, 10_000).unwrap();
        let err = check_config_fits(&c, 12, 100).unwrap_err().to_string();
        assert!(err.contains("cannot fit"), "{err}");
        let huge = GptConfig::gpt2(10, 4, usize::MAX / 2, 1, 1);
        assert!(check_config_fits(&huge, 12, usize::MAX).is_err());
        let deep = GptConfig::gpt2(10, 4, 8, 2, 1_000_000);
        assert!(check_config_fits(&deep, 12, usize::MAX)
            .unwrap_err()
            .to_string()
            .contains("n_layer"));
    }
}
