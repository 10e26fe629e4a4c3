//! Quantized weights: ggml's block formats, byte for byte as ggml stores
//! them (the `block_*` structs of ggml-common.h), and their conversions to
//! and from f32 as ggml-quants.c computes them.
//!
//! A row of `n` values is `n / block_size` blocks of `type_size` bytes each.
//! Dequantization of every [`Kind`] is bit-identical to ggml's
//! `dequantize_row_*` (and to the numpy reference in the `gguf` package);
//! quantization to Q8_0 / Q4_0 / Q4_1 writes the same bytes as ggml's
//! `quantize_row_*_ref` for finite inputs, so files we write are the files
//! llama.cpp would write. `tests/gguf_golden.rs` checks both.

mod k_quants;
mod legacy;
mod matmul;

use super::Bf16;
use bytemuck::Pod;
use half::f16;
use k_quants::scale_min;
pub(crate) use k_quants::{BlockQ4_K, BlockQ5_K, BlockQ6_K};
pub(crate) use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
pub use matmul::{
    prompt_precision, qmatmul, qmatmul_backward_input, qmatmul_backward_scratch_len, qmatmul_scratch_len, qmatmul_with,
    BadQMatrix, Isa, QMatrix, ROW_INVARIANT_ROWS,
};

/// A storage format of weights (ggml's type of the same name).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// A ggml block: `ELEMS` values in `size_of::<Self>()` bytes. Every field is
/// a byte array, so blocks can be viewed in place at any address.
pub(crate) trait Block: Pod {
    const ELEMS: usize;
    fn dequantize(&self, out: &mut [f32]);
}

impl Kind {
    pub const ALL: [Kind; 11] = {
        use Kind::*;
        [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K]
    };

    /// Its id in ggml's `enum ggml_type` (a GGUF tensor's type).
    pub fn ggml_id(self) -> u32 {
        use Kind::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            BF16 => 30,
        }
    }

    /// The kind of ggml type `id`, if it is one we read.
    pub fn from_ggml_id(id: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.ggml_id() == id)
    }

    /// `(elements, bytes)` per block.
    fn geometry(self) -> (usize, usize) {
        fn of<B: Block>() -> (usize, usize) {
            (B::ELEMS, size_of::<B>())
        }
        match self {
            Kind::F32 => (1, 4),
            Kind::F16 | Kind::BF16 => (1, 2),
            Kind::Q4_0 => of::<BlockQ4_0>(),
            Kind::Q4_1 => of::<BlockQ4_1>(),
            Kind::Q5_0 => of::<BlockQ5_0>(),
            Kind::Q5_1 => of::<BlockQ5_1>(),
            Kind::Q8_0 => of::<BlockQ8_0>(),
            Kind::Q4_K => of::<BlockQ4_K>(),
            Kind::Q5_K => of::<BlockQ5_K>(),
            Kind::Q6_K => of::<BlockQ6_K>(),
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        self.geometry().0
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.geometry().1
    }

    /// A block format (Q4_0 ... Q6_K), as opposed to a plain float type.
    pub fn is_block_quant(self) -> bool {
        !matches!(self, Kind::F32 | Kind::F16 | Kind::BF16)
    }

    /// Whether [`quantize_row`] can write this kind.
    pub fn can_quantize(self) -> bool {
        use Kind::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Asks [`quantize_row`] for a kind it cannot write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CannotQuantize(pub Kind);

impl std::fmt::Display for CannotQuantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let can: Vec<_> = Kind::ALL
            .iter()
            .filter(|k| k.can_quantize())
            .map(Kind::to_string)
            .collect();
        write!(f, "quantizing to {} is not supported (only {})", self.0, can.join(", "))
    }
}

impl std::error::Error for CannotQuantize {}

/// Checks that `bytes` hold exactly the blocks of `n` values of `kind`.
fn check_row(kind: Kind, bytes: usize, n: usize) {
    let (elems, size) = kind.geometry();
    assert!(
        n.is_multiple_of(elems) && bytes == n / elems * size,
        "{bytes} bytes are not the {kind} blocks of {n} values ({elems} values in {size} bytes each)"
    );
}

/// `out = bytes` as f32: `bytes` holds `out.len() / kind.block_size()`
/// blocks of `kind` (`out.len()` a multiple of the block size).
pub fn dequantize_row(kind: Kind, bytes: &[u8], out: &mut [f32]) {
    check_row(kind, bytes.len(), out.len());
    fn blocks<B: Block>(bytes: &[u8], out: &mut [f32]) {
        let blocks: &[B] = bytemuck::cast_slice(bytes);
        for (b, y) in blocks.iter().zip(out.chunks_exact_mut(B::ELEMS)) {
            b.dequantize(y);
        }
    }
    match kind {
        Kind::F32 => values_from(bytes, out, f32::from_le_bytes),
        Kind::F16 => values_from(bytes, out, f16_of),
        Kind::BF16 => values_from(bytes, out, |b| f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)),
        Kind::Q4_0 => blocks::<BlockQ4_0>(bytes, out),
        Kind::Q4_1 => blocks::<BlockQ4_1>(bytes, out),
        Kind::Q5_0 => blocks::<BlockQ5_0>(bytes, out),
        Kind::Q5_1 => blocks::<BlockQ5_1>(bytes, out),
        Kind::Q8_0 => blocks::<BlockQ8_0>(bytes, out),
        Kind::Q4_K => blocks::<BlockQ4_K>(bytes, out),
        Kind::Q5_K => blocks::<BlockQ5_K>(bytes, out),
        Kind::Q6_K => blocks::<BlockQ6_K>(bytes, out),
    }
}

/// `out[i] = f(the i-th N bytes)`: plain numbers.
fn values_from<const N: usize>(bytes: &[u8], out: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(N)) {
        *y = f(b.try_into().expect("chunks of N"));
    }
}

/// `out = x` stored as `kind`: `x.len()` a multiple of the block size, `out`
/// exactly its blocks. Rounds as ggml does.
pub fn quantize_row(kind: Kind, x: &[f32], out: &mut [u8]) -> Result<(), CannotQuantize> {
    check_row(kind, out.len(), x.len());
    fn blocks<B: Block>(x: &[f32], out: &mut [u8], quantize: fn(&[f32]) -> B) {
        let out: &mut [B] = bytemuck::cast_slice_mut(out);
        for (b, x) in out.iter_mut().zip(x.chunks_exact(B::ELEMS)) {
            *b = quantize(x);
        }
    }
    fn values_to<const N: usize>(x: &[f32], out: &mut [u8], f: impl Fn(f32) -> [u8; N]) {
        for (b, &x) in out.chunks_exact_mut(N).zip(x) {
            b.copy_from_slice(&f(x));
        }
    }
    match kind {
        Kind::F32 => values_to(x, out, f32::to_le_bytes),
        Kind::F16 => values_to(x, out, f16_field),
        Kind::BF16 => values_to(x, out, |x| Bf16::from_f32(x).0.to_le_bytes()),
        Kind::Q8_0 => blocks(x, out, BlockQ8_0::quantize),
        Kind::Q4_0 => blocks(x, out, BlockQ4_0::quantize),
        Kind::Q4_1 => blocks(x, out, BlockQ4_1::quantize),
        _ => return Err(CannotQuantize(kind)),
    }
    Ok(())
}

/// An f16 field as f32 (exact).
fn f16_of(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// `x` as an f16 field, rounded to nearest even as ggml's `GGML_FP32_TO_FP16`.
fn f16_field(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_ggmls() {
        let expected = [
            (1, 4),
            (1, 2),
            (1, 2),
            (32, 18),
            (32, 20),
            (32, 22),
            (32, 24),
            (32, 34),
            (256, 144),
            (256, 176),
            (256, 210),
        ];
        let got: Vec<_> = Kind::ALL.iter().map(|k| (k.block_size(), k.type_size())).collect();
        assert_eq!(got, expected);
        for k in Kind::ALL {
            assert_eq!(Kind::from_ggml_id(k.ggml_id()), Some(k));
        }
    }

    #[test]
    fn quantized_rows_come_back_close() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        // The largest error each format allows, as a fraction of the largest value: half a
        // step of its grid (a whole one for Q4_0, whose grid stops a step short of +amax),
        // a little more for the f16 rounding of the scales.
        let bounds = [
            (Kind::Q8_0, 0.55 / 127.0),
            (Kind::Q4_0, 1.01 / 8.0),
            (Kind::Q4_1, 0.55 * 2.0 / 15.0),
            (Kind::F16, 1.0 / 2048.0),
        ];
        for (kind, bound) in bounds {
            let mut q = vec![0; x.len() / kind.block_size() * kind.type_size()];
            quantize_row(kind, &x, &mut q).unwrap();
            let mut y = vec![0.0; x.len()];
            dequantize_row(kind, &q, &mut y);
            let err = x.iter().zip(&y).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= amax * bound, "{kind}: max error {err}");
        }
        let mut q = vec![0; 176];
        assert_eq!(quantize_row(Kind::Q5_K, &x, &mut q), Err(CannotQuantize(Kind::Q5_K)));
    }

    #[test]
    #[should_panic(expected = "18 bytes are not the Q4_0 blocks of 31 values")]
    fn a_row_must_be_whole_blocks() {
        dequantize_row(Kind::Q4_0, &[0; 18], &mut [0.0; 31]);
    }
}
