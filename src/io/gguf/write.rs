//! The writer: GGUF v3, laid out as llama.cpp's `gguf_write_to_file` does
//! (tensor data in the order added, each padded to the alignment).

use super::types::GgmlType;
use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use anyhow::{bail, ensure, Result};
use std::io::{self, Read, Write};
use std::path::Path;

/// ggml keeps names in a 64-byte buffer with a terminating NUL.
const MAX_NAME: usize = 63;

/// Collects metadata and tensors, validated as they are added, then writes
/// them as one GGUF v3 file. The alignment is `general.alignment` when set.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, &'a [u8])>,
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (replacing an earlier value). Arrays must hold
    /// scalars of their element type; `general.alignment` must be a u32 power of two.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<()> {
        let value = value.into();
        ensure!(!key.is_empty(), "GGUF metadata keys cannot be empty");
        if let Value::Array(ty, items) = &value {
            ensure!(*ty != ValueType::Array, "`{key}`: GGUF arrays cannot hold arrays");
            if let Some(bad) = items.iter().find(|v| v.ty() != *ty) {
                bail!("`{key}`: an array of {} holds a {}", ty.name(), bad.type_name());
            }
        }
        if key == "general.alignment" && !value.as_u32().is_some_and(u32::is_power_of_two) {
            bail!("general.alignment must be a u32 power of two, not {value:?}");
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        Ok(())
    }

    /// Adds tensor `name` of `dims` (GGUF order: `dims[0]` contiguous) whose
    /// data, in `ty`'s block layout, is `bytes`.
    pub fn add_tensor(&mut self, name: &str, dims: &[usize], ty: GgmlType, bytes: &'a [u8]) -> Result<()> {
        ensure!(
            !name.is_empty() && name.len() <= MAX_NAME,
            "tensor name `{name}` must have 1 to {MAX_NAME} bytes (llama.cpp's limit)"
        );
        ensure!(
            self.tensors.iter().all(|t| t.0 != name),
            "tensor `{name}` is added twice"
        );
        ensure!(
            dims.len() <= MAX_DIMS,
            "tensor `{name}` has {} dimensions; GGUF allows at most {MAX_DIMS}",
            dims.len()
        );
        let row = dims.first().copied().unwrap_or(1);
        let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = n
            .filter(|_| row.is_multiple_of(ty.block_size()))
            .and_then(|n| ty.bytes_of(n));
        ensure!(
            expected == Some(bytes.len()),
            "tensor `{name}`: {} bytes given, but {dims:?} in {ty} (rows of whole {}-element blocks of {} bytes) takes {expected:?}",
            bytes.len(),
            ty.block_size(),
            ty.type_size()
        );
        self.tensors.push((name.to_string(), dims.to_vec(), ty, bytes));
        Ok(())
    }

    fn alignment(&self) -> u64 {
        let set = self.metadata.iter().find(|(k, _)| k == "general.alignment");
        set.and_then(|(_, v)| v.as_u32())
            .map_or(DEFAULT_ALIGNMENT as u64, u64::from)
    }

    /// Writes the file to `path` atomically (a crash leaves the old file or the new one).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic_with(path, |w| self.write_to(w))
    }

    /// Writes the file to `w`.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let align = self.alignment();
        let mut w = Counted { w, n: 0 };
        w.write_all(MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key)?;
            write_value(&mut w, value, true)?;
        }
        let mut offset = 0u64;
        for (name, dims, ty, bytes) in &self.tensors {
            write_str(&mut w, name)?;
            w.write_all(&(dims.len() as u32).to_le_bytes())?;
            for &d in dims {
                w.write_all(&(d as u64).to_le_bytes())?;
            }
            w.write_all(&ty.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset += (bytes.len() as u64).next_multiple_of(align);
        }
        w.pad(align)?;
        for (.., bytes) in &self.tensors {
            w.write_all(bytes)?;
            w.pad(align)?;
        }
        Ok(())
    }
}

/// A writer that knows how much it has written, to pad to the alignment.
struct Counted<'w> {
    w: &'w mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl Counted<'_> {
    fn pad(&mut self, align: u64) -> io::Result<()> {
        let zeros = self.n.next_multiple_of(align) - self.n;
        io::copy(&mut io::repeat(0).take(zeros), self).map(drop)
    }
}

fn write_str(w: &mut dyn Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// `value`, preceded by its type tag when `tagged` (array elements are not).
fn write_value(w: &mut dyn Write, value: &Value, tagged: bool) -> io::Result<()> {
    if tagged {
        w.write_all(&(value.ty() as u32).to_le_bytes())?;
    }
    match value {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => write_str(w, s),
        Value::Array(ty, items) => {
            w.write_all(&(*ty as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|v| write_value(w, v, false))
        }
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}
