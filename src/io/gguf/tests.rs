//! Writer/reader round trips, and files that lie: each must be an error that
//! names the file and the problem.

use super::*;

/// Assembles GGUF bytes field by field, lies included.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }

    fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend(x.to_le_bytes());
        self
    }

    fn u64(&mut self, x: u64) -> &mut Self {
        self.0.extend(x.to_le_bytes());
        self
    }

    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s);
        self
    }

    /// A metadata entry: key, value type, then the raw value bytes.
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        self.str(key.as_bytes()).u32(ty);
        self.0.extend(value);
        self
    }

    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        dims.iter().for_each(|&d| {
            self.u64(d);
        });
        self.u32(ty).u64(offset)
    }

    /// Pads to the default alignment and appends `n` bytes of tensor data.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.0);
        b.resize(b.len().next_multiple_of(32) + n, 0);
        b
    }
}

fn parse(bytes: &[u8]) -> anyhow::Result<Gguf<&[u8]>> {
    Gguf::parse(bytes, "lie.gguf")
}

/// Asserts `bytes` are refused with a message naming the file and containing `want`.
#[track_caller]
fn refused(bytes: &[u8], want: &str) {
    let err = format!("{:#}", parse(bytes).err().expect("a lying file must be refused"));
    assert!(err.contains("lie.gguf"), "{err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn writer_and_reader_round_trip_every_value_type() {
    let weights = f32_bytes(&[1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
    let q8 = [7u8; 34 * 2];
    let scalar = f32_bytes(&[9.0]);
    for alignment in [None, Some(64u32), Some(1)] {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "llama").unwrap();
        if let Some(a) = alignment {
            w.set("general.alignment", a).unwrap();
        }
        let values: Vec<(&str, Value)> = vec![
            ("t.u8", 200u8.into()),
            ("t.i8", (-100i8).into()),
            ("t.u16", 60000u16.into()),
            ("t.i16", (-30000i16).into()),
            ("t.u32", 4_000_000_000u32.into()),
            ("t.i32", (-2_000_000_000i32).into()),
            ("t.f32", 0.1f32.into()),
            ("t.bool", true.into()),
            ("t.str", "naïve 🦙".into()),
            ("t.empty", "".into()),
            ("t.u64", (u64::MAX - 1).into()),
            ("t.i64", i64::MIN.into()),
            ("t.f64", std::f64::consts::PI.into()),
            ("t.strs", vec!["<s>", "", "日本"].into()),
            ("t.i32s", vec![-1i32, 0, i32::MAX].into()),
            ("t.u32s", vec![0u32, u32::MAX].into()),
            ("t.f32s", vec![0.5f32, -1.25].into()),
            ("t.empty_array", Value::Array(ValueType::I64, vec![])),
        ];
        for (k, v) in &values {
            w.set(k, v.clone()).unwrap();
        }
        w.add_tensor("w", &[3, 2], GgmlType::F32, &weights).unwrap();
        w.add_tensor("q", &[64], GgmlType::Q8_0, &q8).unwrap();
        w.add_tensor("scalar", &[], GgmlType::F32, &scalar).unwrap();
        w.add_tensor("empty", &[0, 5], GgmlType::Q4_K, &[]).unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();

        let g = parse(&bytes).unwrap();
        assert_eq!(g.version(), 3);
        assert_eq!(g.alignment(), alignment.unwrap_or(32) as usize);
        assert_eq!(g.data_offset() % g.alignment(), 0);
        for (k, v) in &values {
            assert_eq!(g.get(k), Some(v), "{k}");
        }
        assert_eq!(g.metadata().count(), values.len() + 1 + alignment.is_some() as usize);
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u32("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(g.get_f32("t.f32").unwrap(), 0.1);
        assert!(g.get_bool("t.bool").unwrap());
        assert_eq!(g.get_str_array("t.strs").unwrap(), ["<s>", "", "日本"]);
        assert_eq!(g.get_i32_array("t.i32s").unwrap(), [-1, 0, i32::MAX]);
        assert_eq!(g.get_u32_array("t.u32s").unwrap(), [0, u32::MAX]);
        assert_eq!(g.get_f32_array("t.f32s").unwrap(), [0.5, -1.25]);

        let (t, data) = g.tensor("w").unwrap();
        assert_eq!(
            (&t.dims[..], t.ty, t.n_elements(), data),
            (&[3, 2][..], GgmlType::F32, 6, &weights[..])
        );
        let (t, data) = g.tensor("q").unwrap();
        assert_eq!((t.ty, t.n_bytes(), data), (GgmlType::Q8_0, 68, &q8[..]));
        let (t, data) = g.tensor("scalar").unwrap();
        assert_eq!((t.dims.len(), t.n_elements(), data), (0, 1, &scalar[..]));
        assert_eq!(g.tensor("empty").unwrap().1, &[] as &[u8]);
        let names: Vec<_> = g.tensors().map(|(t, _)| t.name.as_str()).collect();
        assert_eq!(names, ["w", "q", "scalar", "empty"]);

        // Once read, the arrays can go; scalars and tensors stay.
        let mut g = g;
        g.drop_arrays();
        let arrays = values.iter().filter(|(_, v)| matches!(v, Value::Array(..))).count();
        assert!(arrays >= 5);
        for (k, v) in &values {
            let kept = !matches!(v, Value::Array(..));
            assert_eq!(g.get(k).is_some(), kept, "{k}");
        }
        assert_eq!(
            g.metadata().count(),
            values.len() - arrays + 1 + alignment.is_some() as usize
        );
        assert_eq!(g.tensor("q").unwrap().1, &q8[..]);
        for (t, _) in g.tensors() {
            assert_eq!(t.offset % g.alignment() as u64, 0, "{}", t.name);
        }
    }
}

#[test]
fn getters_name_the_key_and_the_types() {
    let mut w = GgufWriter::new();
    w.set("llama.block_count", 2.5f32).unwrap();
    w.set("tokens", vec![1i32, 2]).unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let g = parse(&bytes).unwrap();
    let err = g.get_u32("llama.block_count").unwrap_err().to_string();
    assert_eq!(err, "lie.gguf: metadata `llama.block_count` is f32, expected u32");
    let err = g.get_str_array("tokens").unwrap_err().to_string();
    assert_eq!(
        err,
        "lie.gguf: metadata `tokens` is array of i32, expected array of string"
    );
    let err = g.get_str("general.name").unwrap_err().to_string();
    assert_eq!(err, "lie.gguf: metadata `general.name` (string) is missing");
}

#[test]
fn writer_refuses_what_readers_would() {
    let mut w = GgufWriter::new();
    let eight = [0u8; 8];
    assert!(
        w.add_tensor("x", &[3], GgmlType::F32, &eight).is_err(),
        "3 f32s are 12 bytes"
    );
    assert!(
        w.add_tensor("x", &[16], GgmlType::Q4_0, &[0; 9]).is_err(),
        "not a whole block"
    );
    assert!(w.add_tensor("x", &[1, 1, 1, 1, 2], GgmlType::F32, &eight).is_err());
    assert!(w.add_tensor(&"n".repeat(64), &[2], GgmlType::F32, &eight).is_err());
    assert!(w.add_tensor("", &[2], GgmlType::F32, &eight).is_err());
    assert!(w.add_tensor("x", &[usize::MAX, 2], GgmlType::F32, &eight).is_err());
    w.add_tensor("x", &[2], GgmlType::F32, &eight).unwrap();
    assert!(w.add_tensor("x", &[2], GgmlType::F32, &eight).is_err(), "twice");
    assert!(w.set("general.alignment", 48u32).is_err());
    assert!(w.set("general.alignment", 64u64).is_err());
    assert!(w.set("", 1u8).is_err());
    let mixed = Value::Array(ValueType::U32, vec![Value::U32(1), Value::I32(2)]);
    assert!(w.set("k", mixed).is_err());
    let nested = Value::Array(ValueType::Array, vec![]);
    assert!(w.set("k", nested).is_err());
}

#[test]
fn bad_header() {
    refused(b"", "truncated");
    refused(b"GGML\x03\0\0\0", "not the magic");
    refused(&Raw::new(1, 0, 0).data(0), "version 1");
    refused(&Raw::new(4, 0, 0).data(0), "unsupported GGUF version 4");
    refused(&Raw::new(3u32.swap_bytes(), 0, 0).data(0), "big-endian");
    refused(
        &Raw::new(3, 0, u64::MAX).data(0),
        "claims 18446744073709551615 metadata entries",
    );
    refused(&Raw::new(3, u64::MAX, 0).data(0), "claims 18446744073709551615 tensors");
    assert!(parse(&Raw::new(2, 0, 0).data(0)).is_ok(), "version 2 is read");
}

#[test]
fn bad_metadata() {
    let one = |key: &str, ty: u32, value: &[u8]| {
        let mut r = Raw::new(3, 0, 1);
        r.kv(key, ty, value);
        r.data(0)
    };
    let mut huge_string = u64::MAX.to_le_bytes().to_vec();
    huge_string.extend(b"abc");
    refused(&one("k", 8, &huge_string), "truncated");
    let mut huge_array = 4u32.to_le_bytes().to_vec();
    huge_array.extend(u64::MAX.to_le_bytes());
    refused(&one("k", 9, &huge_array), "array elements of type u32");
    refused(&one("k", 13, &[0; 8]), "unknown value type 13");
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend([0; 12]);
    refused(&one("k", 9, &nested), "arrays of arrays");
    refused(&one("k", 7, &[2]), "a bool is 2");
    let mut bad_key = Raw::new(3, 0, 1);
    bad_key.str(b"k\xff").u32(4).u32(0);
    refused(&bad_key.data(0), "not UTF-8");
    refused(&one("", 4, &[0; 4]), "empty key");
    refused(&one("general.alignment", 4, &0u32.to_le_bytes()), "not a power of two");
    refused(&one("general.alignment", 4, &48u32.to_le_bytes()), "not a power of two");
    refused(
        &one("general.alignment", 10, &64u64.to_le_bytes()),
        "general.alignment is u64, expected u32",
    );
    let mut twice = Raw::new(3, 0, 2);
    twice.kv("k", 0, &[1]).kv("k", 0, &[2]);
    refused(&twice.data(0), "`k` appears twice");
}

#[test]
fn bad_tensor_table() {
    let table = |tensors: &[(&str, &[u64], u32, u64)], data: usize| {
        let mut r = Raw::new(3, tensors.len() as u64, 0);
        for &(name, dims, ty, offset) in tensors {
            r.tensor(name, dims, ty, offset);
        }
        r.data(data)
    };
    let f32_id = GgmlType::F32.id();
    assert!(parse(&table(&[("a", &[4], f32_id, 0), ("b", &[2], f32_id, 32)], 40)).is_ok());
    refused(&table(&[("a", &[1; 5], f32_id, 0)], 4), "5 dimensions");
    refused(&table(&[("a", &[1 << 40, 1 << 40], f32_id, 0)], 0), "overflow");
    refused(&table(&[("a", &[u64::MAX], f32_id, 0)], 0), "too large");
    refused(&table(&[("a", &[1 << 62], f32_id, 0)], 0), "size in bytes overflows");
    refused(
        &table(&[("a", &[16], GgmlType::Q4_0.id(), 0)], 18),
        "not a multiple of Q4_0's block of 32",
    );
    for id in [4, 31, 99] {
        refused(&table(&[("a", &[4], id, 0)], 16), &format!("unknown ggml type id {id}"));
    }
    refused(
        &table(&[("a", &[4], f32_id, 8)], 64),
        "offset 8, not a multiple of the alignment 32",
    );
    refused(&table(&[("a", &[4], f32_id, 32)], 40), "runs past the end of the file");
    refused(
        &table(&[("a", &[4], f32_id, 1 << 63)], 40),
        "runs past the end of the file",
    );
    refused(
        &table(&[("a", &[16], f32_id, 0), ("b", &[2], f32_id, 32)], 64),
        "`a` (bytes 96..160) and `b` (bytes 128..136) overlap",
    );
    refused(
        &table(&[("a", &[2], f32_id, 0), ("a", &[2], f32_id, 32)], 64),
        "`a` appears twice",
    );
    refused(&table(&[("a", &[2], f32_id, 0)], 7), "runs past the end");
}

#[test]
fn every_truncation_is_an_error() {
    let data = f32_bytes(&[1.0; 40]);
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama").unwrap();
    w.set("tokens", vec!["a", "bc"]).unwrap();
    w.set("eps", 1e-5f32).unwrap();
    w.add_tensor("a", &[8, 2], GgmlType::F32, &data[..64]).unwrap();
    w.add_tensor("b", &[32], GgmlType::Q8_0, &data[..34]).unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let g = parse(&bytes).unwrap();
    let (last, _) = g.tensors().last().unwrap();
    let end = g.data_offset() + last.offset as usize + last.n_bytes();
    for n in 0..end {
        assert!(
            parse(&bytes[..n]).is_err(),
            "a file cut at byte {n} of {} parsed",
            bytes.len()
        );
    }
    // Only the padding after the last tensor may go.
    for n in end..=bytes.len() {
        parse(&bytes[..n]).unwrap();
    }
}

#[test]
fn write_is_atomic_and_opens_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.set("general.name", "tiny").unwrap();
    let data = f32_bytes(&[1.0, 2.0]);
    w.add_tensor("x", &[2], GgmlType::F32, &data).unwrap();
    w.write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.get_str("general.name").unwrap(), "tiny");
    assert_eq!(g.tensor("x").unwrap().1, &data[..]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");

    std::fs::write(&path, b"").unwrap();
    let err = format!("{:#}", Gguf::open(&path).err().unwrap());
    assert!(
        err.contains("m.gguf is not a valid GGUF file") && err.contains("truncated"),
        "{err}"
    );
    let err = format!("{:#}", Gguf::open(&dir.path().join("none.gguf")).err().unwrap());
    assert!(err.contains("opening") && err.contains("none.gguf"), "{err}");
}
