//! The reader: validates the whole layout up front, so that everything it
//! hands out afterwards (values, dims, tensor bytes) is consistent.

use super::types::GgmlType;
use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use anyhow::{anyhow, bail, ensure, Context, Result};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// A parsed GGUF file over its bytes (a memory map by default): metadata,
/// tensor table, and each tensor's bytes as a slice of the file.
pub struct Gguf<B = Mmap> {
    bytes: B,
    source: String,
    version: u32,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
    /// Hands back the pages of bytes already copied (a map's; see [`Gguf::release`]).
    release: Option<fn(&B, &[u8])>,
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous one (ggml's `ne`), so a
    /// PyTorch `[rows, cols]` matrix has `dims == [cols, rows]`.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Where its data starts, relative to the data section (a multiple of the alignment).
    pub offset: u64,
    n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        // Checked when the file was parsed.
        self.dims.iter().product()
    }

    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }
}

impl Gguf<Mmap> {
    /// Maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the map is read-only; a writer that replaces the file by
        // rename (as ours and llama.cpp's do) leaves this inode intact.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let mut gguf = Self::parse(map, &path.display().to_string())?;
        gguf.release = Some(crate::io::release_pages);
        Ok(gguf)
    }
}

impl<B: AsRef<[u8]>> Gguf<B> {
    /// Parses `bytes`, a whole GGUF file; `source` names it in errors.
    pub fn parse(bytes: B, source: &str) -> Result<Self> {
        let mut gguf = Gguf {
            bytes,
            source: source.to_string(),
            version: 0,
            metadata: Vec::new(),
            keys: HashMap::new(),
            tensors: Vec::new(),
            names: HashMap::new(),
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            release: None,
        };
        gguf.read_layout()
            .with_context(|| format!("{source} is not a valid GGUF file"))?;
        Ok(gguf)
    }

    fn read_layout(&mut self) -> Result<()> {
        let bytes = self.bytes.as_ref();
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.take(4).context("reading the magic")?;
        ensure!(magic == MAGIC, "it starts with {magic:02x?}, not the magic \"GGUF\"");
        self.version = c.u32().context("reading the version")?;
        match self.version {
            2 | 3 => {}
            1 => bail!(
                "it is GGUF version 1, which is no longer supported: convert the model again with a current llama.cpp"
            ),
            v if v & 0xFFFF == 0 => {
                bail!("version {v:#x} looks like a big-endian file; only little-endian GGUF is supported")
            }
            v => bail!("unsupported GGUF version {v} (versions 2 and 3 are supported)"),
        }
        let n_tensors = c.u64().context("reading the tensor count")?;
        let n_kv = c.u64().context("reading the metadata count")?;
        // Bound both counts by the bytes left before allocating anything for them.
        c.fits(n_kv, 13, "metadata entries")?;
        c.fits(n_tensors, 24, "tensors")?;

        for i in 0..n_kv as usize {
            let key = c
                .string()
                .with_context(|| format!("reading the key of metadata entry {i}"))?;
            ensure!(!key.is_empty(), "metadata entry {i} has an empty key");
            let value = c.value_of_type().with_context(|| format!("reading metadata `{key}`"))?;
            ensure!(!self.keys.contains_key(&key), "metadata key `{key}` appears twice");
            self.keys.insert(key.clone(), i);
            self.metadata.push((key, value));
        }
        self.alignment = match self.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a as usize,
            Some(Value::U32(a)) => bail!("general.alignment is {a}, not a power of two"),
            Some(v) => bail!("general.alignment is {}, expected u32", v.type_name()),
        };

        for i in 0..n_tensors as usize {
            let name = c.string().with_context(|| format!("reading the name of tensor {i}"))?;
            let info = c
                .tensor_info(name.clone())
                .with_context(|| format!("reading tensor `{name}`"))?;
            ensure!(!self.names.contains_key(&name), "tensor name `{name}` appears twice");
            self.names.insert(name, i);
            self.tensors.push(info);
        }

        self.place_tensors(c.pos)
    }

    /// Puts the data section at the first aligned byte from `table_end` and
    /// checks every tensor lies inside the file, aligned, overlapping none.
    fn place_tensors(&mut self, table_end: usize) -> Result<()> {
        let len = self.bytes.as_ref().len();
        self.data_offset = table_end.next_multiple_of(self.alignment);
        let mut ranges = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let name = &t.name;
            ensure!(
                t.offset.is_multiple_of(self.alignment as u64),
                "tensor `{name}` is at offset {}, not a multiple of the alignment {}",
                t.offset,
                self.alignment
            );
            let start = usize::try_from(t.offset)
                .ok()
                .and_then(|o| o.checked_add(self.data_offset));
            let range = start
                .and_then(|s| Some(s..s.checked_add(t.n_bytes)?))
                .filter(|r| r.end <= len);
            let range = range.ok_or_else(|| {
                anyhow!(
                    "tensor `{name}` ({} bytes at data offset {}) runs past the end of the file ({len} bytes, data from byte {})",
                    t.n_bytes,
                    t.offset,
                    self.data_offset
                )
            })?;
            ranges.push((range, name));
        }
        ranges.sort_by_key(|(r, _)| (r.start, r.end));
        for pair in ranges.windows(2) {
            let ((a, a_name), (b, b_name)) = (&pair[0], &pair[1]);
            ensure!(
                a.end <= b.start,
                "tensors `{a_name}` (bytes {a:?}) and `{b_name}` (bytes {b:?}) overlap"
            );
        }
        Ok(())
    }

    /// Names the file in errors.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Frees the metadata's arrays once they are read (a vocabulary's tokens
    /// and merges take megabytes): [`Gguf::get`] no longer finds them.
    pub fn drop_arrays(&mut self) {
        for (key, value) in &mut self.metadata {
            if let Value::Array(ty, _) = value {
                *value = Value::Array(*ty, Vec::new());
                self.keys.remove(key.as_str());
            }
        }
    }

    /// Tells the file that `bytes` (a tensor's, say) have been copied out and
    /// will not be read again soon: a mapped file hands their pages back, so
    /// that a loader's peak memory is the copies, not the copies plus the file.
    /// Reading them again is still correct (the pages fault back in).
    pub fn release(&self, bytes: &[u8]) {
        if let Some(release) = self.release {
            release(&self.bytes, bytes);
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Where the data section starts in the file; tensor offsets count from here.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        let kept = |k: &String| self.keys.contains_key(k);
        self.metadata
            .iter()
            .filter(move |(k, _)| kept(k))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`, of whatever type. The typed getters below return
    /// it only if it has exactly their type, else an error naming the file,
    /// the key and the type found.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The value of `key` as `want`, `pick` reading it: an error naming the
    /// file, the key and the type when it is missing or of another type.
    fn get_as<'a, T>(&'a self, key: &str, want: &str, pick: impl FnOnce(&'a Value) -> Option<T>) -> Result<T> {
        let value = self
            .get(key)
            .ok_or_else(|| anyhow!("{}: metadata `{key}` ({want}) is missing", self.source))?;
        pick(value).ok_or_else(|| {
            anyhow!(
                "{}: metadata `{key}` is {}, expected {want}",
                self.source,
                value.type_name()
            )
        })
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_as(key, "u32", Value::as_u32)
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_as(key, "u64", Value::as_u64)
    }

    pub fn get_i32(&self, key: &str) -> Result<i32> {
        self.get_as(key, "i32", Value::as_i32)
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_as(key, "f32", Value::as_f32)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get_as(key, "bool", Value::as_bool)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get_as(key, "string", Value::as_str)
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_as(key, "array of string", |v| {
            v.as_array(ValueType::String)?.iter().map(Value::as_str).collect()
        })
    }

    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.get_as(key, "array of i32", |v| {
            v.as_array(ValueType::I32)?.iter().map(Value::as_i32).collect()
        })
    }

    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>> {
        self.get_as(key, "array of u32", |v| {
            v.as_array(ValueType::U32)?.iter().map(Value::as_u32).collect()
        })
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_as(key, "array of f32", |v| {
            v.as_array(ValueType::F32)?.iter().map(Value::as_f32).collect()
        })
    }

    /// The tensors in file order, each with its bytes.
    pub fn tensors(&self) -> impl Iterator<Item = (&TensorInfo, &[u8])> {
        self.tensors.iter().map(|t| (t, self.data_of(t)))
    }

    /// The tensor called `name`, with its bytes.
    pub fn tensor(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let t = &self.tensors[*self.names.get(name)?];
        Some((t, self.data_of(t)))
    }

    fn data_of(&self, t: &TensorInfo) -> &[u8] {
        // In range: checked when the file was parsed.
        let start = self.data_offset + t.offset as usize;
        &self.bytes.as_ref()[start..start + t.n_bytes]
    }
}

/// Reads little-endian fields off the front of the file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| {
            anyhow!(
                "truncated: {n} bytes needed at byte {}, but the file ends at byte {}",
                self.pos,
                self.bytes.len()
            )
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take gives N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what is left.
    fn fits(&self, count: u64, min_size: usize, what: &str) -> Result<()> {
        let left = self.bytes.len() - self.pos;
        ensure!(
            count <= (left / min_size) as u64,
            "it claims {count} {what}, more than the {left} bytes left after byte {} can hold",
            self.pos
        );
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let at = self.pos;
        let bytes = self.take(usize::try_from(len).unwrap_or(usize::MAX))?;
        let s = std::str::from_utf8(bytes).map_err(|e| anyhow!("the string at byte {at} is not UTF-8: {e}"))?;
        Ok(s.to_string())
    }

    fn value_type(&mut self) -> Result<ValueType> {
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| anyhow!("unknown value type {id} at byte {}", self.pos - 4))
    }

    /// A type tag and a value of that type.
    fn value_of_type(&mut self) -> Result<Value> {
        let ty = self.value_type()?;
        if ty != ValueType::Array {
            return self.value(ty);
        }
        let ty = self.value_type()?;
        ensure!(ty != ValueType::Array, "arrays of arrays are not supported");
        let count = self.u64()?;
        self.fits(count, ty.min_size(), &format!("array elements of type {}", ty.name()))?;
        let items = (0..count).map(|_| self.value(ty)).collect::<Result<_>>()?;
        Ok(Value::Array(ty, items))
    }

    /// A value of the scalar type `ty`.
    fn value(&mut self, ty: ValueType) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => match self.array()? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => bail!("a bool is {b}, not 0 or 1 (byte {})", self.pos - 1),
            },
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => unreachable!("arrays are read by value_of_type"),
        })
    }

    /// The rest of a tensor's entry, after its name.
    fn tensor_info(&mut self, name: String) -> Result<TensorInfo> {
        let n_dims = self.u32()?;
        ensure!(
            n_dims as usize <= MAX_DIMS,
            "it has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
        );
        let dims = (0..n_dims)
            .map(|_| {
                let d = self.u64()?;
                // ggml reads dimensions as i64.
                ensure!(d <= i64::MAX as u64, "dimension {d} is too large");
                usize::try_from(d).map_err(|_| anyhow!("dimension {d} does not fit in memory"))
            })
            .collect::<Result<Vec<_>>>()?;
        let id = self.u32()?;
        let ty = GgmlType::from_id(id).ok_or_else(|| anyhow!("unknown ggml type id {id}"))?;
        let offset = self.u64()?;
        let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let n = n.ok_or_else(|| anyhow!("its dimensions {dims:?} overflow"))?;
        // A 0-dimensional tensor is one element.
        let row = dims.first().copied().unwrap_or(1);
        ensure!(
            row.is_multiple_of(ty.block_size()),
            "its rows have {row} elements, not a multiple of {ty}'s block of {}",
            ty.block_size()
        );
        let n_bytes = ty.bytes_of(n).ok_or_else(|| anyhow!("its size in bytes overflows"))?;
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_bytes,
        })
    }
}
