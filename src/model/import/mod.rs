//! Readers for checkpoints made by other programs: llm.c's `.bin`, OpenAI's
//! original TensorFlow release (GPT-2) and llama.cpp's GGUF (Llama, GPT-2). Each turns its file into the same
//! [`Params`](crate::autograd::Params) that `model.safetensors` loads to, and
//! each checks every size against the file before it reads a byte.

pub mod gguf;
pub mod llmc;
mod proto;
mod table;
pub mod tf;

use super::GptConfig;
use crate::io::Elem;
use anyhow::{ensure, Result};

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
    // A learned position table is among the weights; a rotary one ([n_ctx, head_size] floats) is of its order.
    fits("position table", &[config.n_ctx, e])?;
    fits("MLP weight", &[e, config.n_inner])?;
    fits("layers of MLP weights", &[config.n_layer, e, config.n_inner])?;
    ensure!(
        config.n_layer <= n_tensors,
        "the config has n_layer = {} but the weights hold only {n_tensors} tensors: the config does not match the \
         weights",
        config.n_layer
    );
    Ok(())
}

/// The bytes weights are copied out of: memory, or a file's map whose pages
/// are handed back as soon as they are copied, so that loading holds the f32
/// weights and not the whole file besides (peak RSS about 1x the file, not 2x).
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    bytes: &'a [u8],
    map: Option<&'a memmap2::Mmap>,
}

impl<'a> Source<'a> {
    pub(crate) fn memory(bytes: &'a [u8]) -> Self {
        Source { bytes, map: None }
    }

    pub(crate) fn mapped(map: &'a memmap2::Mmap) -> Self {
        Source {
            bytes: map,
            map: Some(map),
        }
    }

    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes `bytes`, a slice of [`Source::bytes`], to f32, releasing the
    /// pages of each chunk once it is copied.
    pub(crate) fn decode(&self, elem: Elem, bytes: &[u8]) -> Vec<f32> {
        const CHUNK: usize = 1 << 24; // a multiple of every element size
        let mut data: Vec<f32> = Vec::with_capacity(bytes.len() / elem.size());
        crate::tensor::advise_huge_pages(data.spare_capacity_mut());
        for chunk in bytes.chunks(CHUNK) {
            data.extend(elem.to_f32(chunk));
            self.release(chunk);
        }
        data
    }

    fn release(&self, chunk: &[u8]) {
        if let Some(map) = self.map {
            crate::io::release_pages(map, chunk);
        }
    }
}

/// `[rows, cols]` row-major -> `[cols, rows]` row-major, in 32x32 tiles so
/// that reads and writes both stay within a few cache lines.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    debug_assert_eq!(data.len(), rows * cols);
    let mut out = vec![0.0; data.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_source_releases_only_its_own_pages() {
        let xs: Vec<f32> = (0..1000).map(|i| i as f32 - 500.0).collect();
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, &bytes).unwrap();
        let map = crate::io::map_file(&path).unwrap();
        let source = Source::mapped(&map);
        assert_eq!(source.decode(Elem::F32, &source.bytes()[400..]), xs[100..]);
        assert_eq!(
            source.decode(Elem::F32, source.bytes()),
            xs,
            "released pages read back the same"
        );
        // Bytes from elsewhere (the heap) decode, and are never advised away.
        assert_eq!(source.decode(Elem::F32, &bytes), xs);
        assert_eq!(Elem::F32.to_f32(&bytes), xs);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(transpose(&[1., 2., 3., 4., 5., 6.], 2, 3), [1., 4., 2., 5., 3., 6.]);
        // Across tile edges.
        let (rows, cols) = (70, 45);
        let data: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transpose(&data, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], data[r * cols + c]);
            }
        }
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
