//! Writing safetensors files (reading goes through the `safetensors` crate).

use super::atomic::write_atomic_with;
use anyhow::{Context, Result};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes f32 tensors `(name, shape, data)` and string `metadata` as one
/// safetensors file, atomically, streaming the data (no copy in memory).
/// The file is created as any other of ours (0666 less the umask), not as
/// the `safetensors` crate's private temp file.
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (String, &'a [usize], &'a [f32])>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    // As the crate lays them out: by name (one dtype), data back to back.
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let layout: Vec<(String, Vec<usize>)> = tensors.iter().map(|(n, s, _)| (n.clone(), s.to_vec())).collect();
    write_safetensors_with(path, &layout, metadata, |w| {
        tensors
            .iter()
            .try_for_each(|(_, _, data)| w.write_all(bytemuck::cast_slice(data)))
    })
}

/// The same for data that arrives piece by piece: f32 tensors `(name,
/// shape)` in this order, whose data `write_data` writes back to back. Fails
/// (and writes nothing) when it writes more or less than the shapes hold.
pub fn write_safetensors_with(
    path: &Path,
    layout: &[(String, Vec<usize>)],
    metadata: HashMap<String, String>,
    write_data: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut offset = 0;
    let infos = layout
        .iter()
        .map(|(name, shape)| {
            let start = offset;
            offset += shape.iter().product::<usize>() * std::mem::size_of::<f32>();
            let info = TensorInfo {
                dtype: Dtype::F32,
                shape: shape.clone(),
                data_offsets: (start, offset),
            };
            (name.clone(), info)
        })
        .collect();
    let header = Metadata::new(Some(metadata), infos).with_context(|| format!("describing {}", path.display()))?;
    let mut header = serde_json::to_vec(&header)?;
    // The data starts 8-byte aligned: the header is padded with spaces.
    header.resize(header.len().next_multiple_of(8), b' ');
    write_atomic_with(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let mut counted = Counted { inner: w, bytes: 0 };
        write_data(&mut counted)?;
        if counted.bytes != offset {
            let what = format!("{} bytes of tensor data where the header holds {offset}", counted.bytes);
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
        }
        Ok(())
    })
}

/// A writer that counts what passes through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    bytes: usize,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    #[test]
    fn round_trips_and_is_created_like_any_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let (a, b) = ([1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [7.0f32]);
        let tensors = [
            ("b".to_string(), &[1][..], &b[..]),
            ("a".to_string(), &[2, 3][..], &a[..]),
        ];
        let meta = HashMap::from([("step".to_string(), "3".to_string())]);
        write_safetensors(&path, tensors, meta).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().len(), 2);
        let t = st.tensor("a").unwrap();
        assert_eq!(
            (t.shape(), t.data()),
            (&[2, 3][..], bytemuck::cast_slice::<f32, u8>(&a))
        );
        assert_eq!(st.tensor("b").unwrap().data(), bytemuck::cast_slice::<f32, u8>(&b));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["step"], "3");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            assert_eq!(mode(&path), mode(&plain), "created unlike other files");
        }
    }
}
