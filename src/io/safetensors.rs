//! Writing safetensors files (reading goes through the `safetensors` crate).

use super::atomic::write_atomic_via;
use anyhow::Result;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// Writes f32 tensors `(name, shape, data)` and string `metadata` as one
/// safetensors file, atomically, streaming the data (no copy in memory).
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (String, &'a [usize], &'a [f32])>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            Ok((
                name,
                TensorView::new(Dtype::F32, shape.to_vec(), bytemuck::cast_slice(data))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    write_atomic_via(path, |tmp| {
        Ok(safetensors::serialize_to_file(views, Some(metadata), tmp)?)
    })
}
