#!/usr/bin/env python3
"""Regenerates tests/golden/gguf/: GGUF files written by the PyPI `gguf`
package (llama.cpp's own Python library) and the values its numpy reference
(`gguf.quants`) gives for every block format `gpt` reads.

    golden.gguf   alignment 64, metadata of every GGUF value type, and tensors:
                    {kind}.rand          random but valid blocks (random bits, finite f16 scales)
                    {kind}.rand.dequant  gguf.quants.dequantize of them, F32
                    quant.src            F32 input with awkward blocks (zeros, constants, ties,
                                         outliers, tiny and huge values)
                    {kind}.quant         gguf.quants.quantize of it, for Q8_0 / Q4_0 / Q4_1 (bit-exact with ggml's
                                         quantize_row_*_ref, see below)
                    {kind}.quant.dequant its dequantization, F32
    golden.json   what gguf.GGUFReader reads back from golden.gguf (metadata with value types,
                  the tensor table), and the block geometry of every type gguf knows
    tiny.gguf     a small file (default alignment, one tensor of a few types) for the
                  truncation tests and as the fuzzing seed

gguf.quants cannot quantize K-quants, so those are random blocks only.
When this script was written, its output was checked against ggml's C
(ggml-quants.c at ggml-org/ggml d99724f, gcc -mf16c -ffp-contract=off):
`quantize_row_{q8_0,q4_0,q4_1}_ref` give the same bytes (on these inputs and
4096 more random blocks of scales 1e-9..1e7) and `dequantize_row_*` the same
f32 bits for every block format here.

    ~/.cache/gpt-venv/bin/python scripts/gen_quant_golden.py
"""
import json
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "gguf"
ALIGNMENT = 64
# Block formats with their random-block shape (numpy order: [rows, columns]).
RANDOM = {
    T.F32: (4, 16), T.F16: (4, 64), T.BF16: (4, 64),
    T.Q4_0: (4, 64), T.Q4_1: (4, 64), T.Q5_0: (4, 64), T.Q5_1: (4, 64), T.Q8_0: (4, 64),
    T.Q4_K: (2, 256), T.Q5_K: (2, 256), T.Q6_K: (2, 256),
}
QUANTIZE = [T.Q8_0, T.Q4_0, T.Q4_1]
# Where each block format keeps its f16 scales (byte offsets inside a block).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def finite_bits(rng, n, exponent=0x7C00):
    """Random 16-bit float patterns (f16; bf16 with exponent=0x7F80), every finite
    value possible: subnormals, zeros, the largest."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bits[(bits & exponent) == exponent] &= 0xBFFF  # clear the exponent's top bit: finite
    return bits


def random_blocks(rng, kind, shape):
    """Raw bytes of `shape` elements in `kind`: random bits, with finite f16 scales.
    NaNs are left out: how a NaN's payload converts is not pinned down across
    implementations (hardware F16C quiets it)."""
    rows, cols = shape
    block, size = gguf.GGML_QUANT_SIZES[kind]
    n_blocks = rows * cols // block
    if kind == T.F32:
        return rng.standard_normal(rows * cols).astype(np.float32).view(np.uint8).reshape(rows, -1)
    if kind in (T.F16, T.BF16):
        bits = finite_bits(rng, rows * cols, 0x7C00 if kind == T.F16 else 0x7F80)
        return bits.view(np.uint8).reshape(rows, -1)
    data = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint16).astype(np.uint8)
    for at in F16_FIELDS[kind]:
        data[:, at:at + 2] = finite_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return data.reshape(rows, -1)


def awkward_input(rng):
    """Rows of 32-element blocks that exercise every branch of the reference quantizers."""
    blocks = [
        np.zeros(32),                                   # d = 0: id = 0
        np.full(32, 0.75),                              # constant: Q4_1's d = 0
        np.full(32, -3.0),
        np.arange(32) - 15.5,                           # evenly spaced, ties at .5 steps
        (np.arange(32) - 16) / 8.0,                     # exact multiples of d
        np.where(np.arange(32) == 7, -100.0, 0.01),     # one negative outlier is the max
        np.where(np.arange(32) == 30, 100.0, -0.01),
        np.linspace(-1, 1, 32),
        rng.standard_normal(32) * 1e-8,                 # d underflows f16 (to a subnormal / zero)
        rng.standard_normal(32) * 1e7,                  # d overflows f16 (to inf)
        np.array([65504.0, -65504.0] * 16),
        rng.standard_normal(32) * 1e-3,
    ]
    for scale in [1e-2, 0.1, 1.0, 10.0, 1e3]:
        blocks += [rng.standard_normal(32) * scale for _ in range(4)]
    return np.concatenate(blocks).astype(np.float32).reshape(-1, 64)


def add_metadata(w):
    """One key of every value type, and arrays of the types a Llama file uses."""
    w.add_custom_alignment(ALIGNMENT)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "naïve 日本語 🦙")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62) - 3)
    w.add_float64("test.f64", 3.141592653589793)
    w.add_key_value("test.empty_string", "", V.STRING)
    w.add_array("test.strings", ["<s>", "</s>", "▁the", "", "日本"])
    w.add_key_value("test.i32s", [-1, 0, 7, 2**31 - 1], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.u32s", [0, 1, 2**32 - 1], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("test.f32s", [0.5, -1.25, 1e-3], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.u8s", [0, 255, 17], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.bools", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)


def write(path, tensors, metadata):
    w = gguf.GGUFWriter(path, arch="llama")
    metadata(w)
    for name, (kind, data) in tensors.items():
        if data.dtype == np.float32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_back(path):
    """Metadata and tensor table as gguf's own reader sees them."""
    r = gguf.GGUFReader(path)
    metadata = []
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        types = [t.name for t in field.types]
        value = field.contents()
        if field.types[0] == V.FLOAT32:
            value = float(np.float32(value))
        metadata.append({"key": field.name, "types": types, "value": value})
    tensors = [
        {"name": t.name, "dims": [int(d) for d in t.shape], "type": int(t.tensor_type),
         "offset": int(t.data_offset), "n_bytes": int(t.n_bytes)}
        for t in r.tensors
    ]
    return {"alignment": int(r.alignment), "data_offset": int(r.data_offset), "metadata": metadata, "tensors": tensors}


def main():
    # The huge block's scale overflows f16 on purpose (as in ggml): inf, and NaN where it meets a 0.
    np.seterr(over="ignore", invalid="ignore")
    rng = np.random.default_rng(1234)
    OUT.mkdir(parents=True, exist_ok=True)

    tensors = {}
    for kind, shape in RANDOM.items():
        data = random_blocks(rng, kind, shape)
        tensors[f"{kind.name}.rand"] = (kind, data)
        tensors[f"{kind.name}.rand.dequant"] = (T.F32, gguf.quants.dequantize(data, kind).astype(np.float32))
    src = awkward_input(rng)
    tensors["quant.src"] = (T.F32, src)
    for kind in QUANTIZE:
        q = gguf.quants.quantize(src, kind)
        tensors[f"{kind.name}.quant"] = (kind, q)
        tensors[f"{kind.name}.quant.dequant"] = (T.F32, gguf.quants.dequantize(q, kind).astype(np.float32))
    write(OUT / "golden.gguf", tensors, add_metadata)

    golden = read_back(OUT / "golden.gguf")
    golden["types"] = {t.name: [int(t), *gguf.GGML_QUANT_SIZES[t]] for t in gguf.GGML_QUANT_SIZES}
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")

    def tiny_metadata(w):
        w.add_uint32("llama.block_count", 1)
        w.add_array("tokenizer.ggml.tokens", ["a", "b"])
        w.add_key_value("test.f32s", [0.5], V.ARRAY, sub_type=V.FLOAT32)
        w.add_bool("test.bool", True)

    tiny = {
        "q8": (T.Q8_0, random_blocks(rng, T.Q8_0, (1, 32))),
        "f16": (T.F16, random_blocks(rng, T.F16, (2, 3))),
        "q4k": (T.Q4_K, random_blocks(rng, T.Q4_K, (1, 256))),
    }
    write(OUT / "tiny.gguf", tiny, tiny_metadata)
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(OUT.parent.parent.parent)}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
