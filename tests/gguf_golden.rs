//! GGUF files written by llama.cpp's Python package (`gguf`), read by us:
//! the metadata and tensor table as `gguf.GGUFReader` reads them, every
//! block format dequantized bit for bit as `gguf.quants` (= ggml) does, and
//! Q8_0 / Q4_0 / Q4_1 quantized to the same bytes. Regenerate the files with
//! `scripts/gen_quant_golden.py`.

use gpt::io::gguf::{GgmlType, Gguf, TensorInfo, Value};
use gpt::tensor::quant::{dequantize_row, quantize_row, Kind};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/gguf")
        .join(name)
}

fn expected() -> Json {
    serde_json::from_str(&std::fs::read_to_string(golden("golden.json")).unwrap()).unwrap()
}

/// The tensor as f32, if its type is one we read.
fn dequantize(t: &TensorInfo, bytes: &[u8]) -> Option<Vec<f32>> {
    let kind = Kind::from_ggml_id(t.ty.id())?;
    let mut out = vec![0.0; t.n_elements()];
    dequantize_row(kind, bytes, &mut out);
    Some(out)
}

/// The names gguf-py gives value types, and our values as JSON.
fn as_json(v: &Value) -> (Vec<&'static str>, Json) {
    let name = |v: &Value| match v {
        Value::U8(_) => "UINT8",
        Value::I8(_) => "INT8",
        Value::U16(_) => "UINT16",
        Value::I16(_) => "INT16",
        Value::U32(_) => "UINT32",
        Value::I32(_) => "INT32",
        Value::F32(_) => "FLOAT32",
        Value::Bool(_) => "BOOL",
        Value::String(_) => "STRING",
        Value::Array(..) => "ARRAY",
        Value::U64(_) => "UINT64",
        Value::I64(_) => "INT64",
        Value::F64(_) => "FLOAT64",
    };
    let scalar = |v: &Value| match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(*x as f64),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(..) => unreachable!("GGUF arrays hold scalars"),
    };
    match v {
        Value::Array(_, items) => {
            let elem = items.first().map(name).expect("the golden arrays are not empty");
            (vec!["ARRAY", elem], items.iter().map(scalar).collect())
        }
        v => (vec![name(v)], scalar(v)),
    }
}

#[test]
fn reads_what_gguf_writes() {
    let want = expected();
    let g = Gguf::open(&golden("golden.gguf")).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 64, "not the default 32");
    assert_eq!(json!(g.alignment()), want["alignment"]);
    assert_eq!(json!(g.data_offset()), want["data_offset"]);

    let metadata: Vec<Json> = g
        .metadata()
        .map(|(key, v)| {
            let (types, value) = as_json(v);
            json!({"key": key, "types": types, "value": value})
        })
        .collect();
    assert_eq!(Json::from(metadata), want["metadata"]);
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(
        g.get_str_array("test.strings").unwrap(),
        ["<s>", "</s>", "▁the", "", "日本"]
    );

    let table: Vec<Json> = g
        .tensors()
        .map(|(t, _)| {
            json!({"name": t.name, "dims": t.dims, "type": t.ty.id(),
                   "offset": g.data_offset() + t.offset as usize, "n_bytes": t.n_bytes()})
        })
        .collect();
    assert_eq!(Json::from(table), want["tensors"]);
}

#[test]
fn block_geometry_matches_gguf_for_every_type() {
    let want = expected();
    let types = want["types"].as_object().unwrap();
    for (name, v) in types {
        let id = v[0].as_u64().unwrap() as u32;
        let ty = GgmlType::from_id(id).unwrap_or_else(|| panic!("{name} (id {id}) is unknown"));
        assert_eq!(ty.name(), name);
        // gguf-py still sizes Q8_1 (never stored, only an intermediate of dot products) with the
        // f32 scales it once had; ggml-common.h's static_assert says 2 f16 + 32 bytes.
        let want = if ty == GgmlType::Q8_1 {
            json!([9, 32, 36])
        } else {
            v.clone()
        };
        assert_eq!(json!([ty.id(), ty.block_size(), ty.type_size()]), want, "{name}");
    }
    for kind in Kind::ALL {
        let ty = GgmlType::from_id(kind.ggml_id()).unwrap();
        assert_eq!(ty.name(), kind.to_string());
        assert_eq!(
            (ty.block_size(), ty.type_size()),
            (kind.block_size(), kind.type_size()),
            "{kind}"
        );
    }
}

/// Bit for bit; NaNs (inf times a zero) as NaNs, whatever their payload.
#[track_caller]
fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        assert!(
            same,
            "{what}[{i}]: {a:e} ({:#010x}), gguf says {b:e} ({:#010x})",
            a.to_bits(),
            b.to_bits()
        );
    }
}

#[test]
fn dequantization_is_bit_identical_to_gguf() {
    let g = Gguf::open(&golden("golden.gguf")).unwrap();
    let f32s = |name: &str| {
        let (t, bytes) = g.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
        assert_eq!(t.ty, GgmlType::F32);
        dequantize(t, bytes).unwrap()
    };
    for kind in Kind::ALL {
        for case in ["rand", "quant"] {
            let Some((t, bytes)) = g.tensor(&format!("{kind}.{case}")) else {
                assert_eq!(case, "quant", "every kind has random blocks");
                continue;
            };
            assert_eq!(t.ty.id(), kind.ggml_id());
            let got = dequantize(t, bytes).unwrap();
            assert_same_bits(
                &got,
                &f32s(&format!("{kind}.{case}.dequant")),
                &format!("{kind}.{case}"),
            );
        }
    }
}

#[test]
fn quantization_writes_ggmls_bytes() {
    let g = Gguf::open(&golden("golden.gguf")).unwrap();
    let (t, bytes) = g.tensor("quant.src").unwrap();
    let src = dequantize(t, bytes).unwrap();
    let mut quantized = 0;
    for kind in Kind::ALL.into_iter().filter(|k| k.can_quantize()) {
        let Some((_, want)) = g.tensor(&format!("{kind}.quant")) else {
            continue;
        };
        let mut got = vec![0; want.len()];
        quantize_row(kind, &src, &mut got).unwrap();
        let size = kind.type_size();
        for (i, (a, b)) in got.chunks(size).zip(want.chunks(size)).enumerate() {
            let x = &src[i * kind.block_size()..][..kind.block_size()];
            assert_eq!(a, b, "{kind} block {i} of {x:?}");
        }
        quantized += 1;
    }
    assert_eq!(quantized, 3, "Q8_0, Q4_0 and Q4_1 are checked");
}

#[test]
fn tiny_file_cut_anywhere_is_an_error() {
    let bytes = std::fs::read(golden("tiny.gguf")).unwrap();
    let g = Gguf::parse(&bytes[..], "tiny.gguf").unwrap();
    assert_eq!(g.alignment(), 32);
    let end = g
        .tensors()
        .map(|(t, _)| g.data_offset() + t.offset as usize + t.n_bytes())
        .max()
        .unwrap();
    for n in 0..end {
        let err = Gguf::parse(&bytes[..n], "tiny.gguf").err();
        assert!(err.is_some(), "cut at byte {n} of {}: parsed", bytes.len());
    }
}

/// A small deterministic fuzz: every byte of a valid file changed a few
/// ways. The parser must answer each with a file or an error, and a file it
/// accepts must dequantize.
#[test]
fn tiny_file_with_any_byte_changed_never_panics() {
    let original = std::fs::read(golden("tiny.gguf")).unwrap();
    let mut accepted = 0;
    for i in 0..original.len() {
        let b = original[i];
        for new in [0, 0xFF, b ^ 0x80, b.wrapping_add(1), b.wrapping_sub(1)] {
            let mut bytes = original.clone();
            bytes[i] = new;
            if let Ok(g) = Gguf::parse(&bytes[..], "mutant.gguf") {
                for (t, data) in g.tensors() {
                    dequantize(t, data);
                }
                accepted += 1;
            }
        }
    }
    // Changes inside tensor data and some metadata values still make valid files.
    assert!(accepted > 0);
}
