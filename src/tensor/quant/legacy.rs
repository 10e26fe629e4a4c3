//! ggml's 32-value blocks: one f16 scale `d` (for the `_1` formats also an
//! f16 minimum `m`), then 4, 5 or 8 bits per value. In the 4- and 5-bit
//! formats byte `j` of `qs` holds value `j` in its low nibble and value
//! `j + 16` in its high one; bit `j` of `qh` (little-endian u32) is the fifth
//! bit of value `j`.

use super::{f16_field, f16_of, Block};
use bytemuck::{Pod, Zeroable};

/// `x = d * (q - 8)`, q in 0..16.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; 16],
}

/// `x = d * q + m`, q in 0..16.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; 16],
}

/// `x = d * (q - 16)`, q in 0..32.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// `x = d * q + m`, q in 0..32.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// `x = d * q`, q in -128..128.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

/// `out[j] = f(q_j)` for the 32 values of a 4- or 5-bit block (`qh` 0 for 4 bits).
#[inline(always)]
fn unpack(qs: &[u8; 16], qh: u32, out: &mut [f32], f: impl Fn(i32) -> f32) {
    let (lo, hi) = out.split_at_mut(16);
    for j in 0..16 {
        let q0 = (qs[j] & 0xF) as u32 | ((qh >> j) & 1) << 4;
        let q1 = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        lo[j] = f(q0 as i32);
        hi[j] = f(q1 as i32);
    }
}

impl Block for BlockQ4_0 {
    const ELEMS: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_of(self.d);
        unpack(&self.qs, 0, out, |q| (q - 8) as f32 * d);
    }
}

impl Block for BlockQ4_1 {
    const ELEMS: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16_of(self.d), f16_of(self.m));
        unpack(&self.qs, 0, out, |q| q as f32 * d + m);
    }
}

impl Block for BlockQ5_0 {
    const ELEMS: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_of(self.d);
        unpack(&self.qs, u32::from_le_bytes(self.qh), out, |q| (q - 16) as f32 * d);
    }
}

impl Block for BlockQ5_1 {
    const ELEMS: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16_of(self.d), f16_of(self.m));
        unpack(&self.qs, u32::from_le_bytes(self.qh), out, |q| q as f32 * d + m);
    }
}

impl Block for BlockQ8_0 {
    const ELEMS: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_of(self.d);
        for (y, &q) in out.iter_mut().zip(&self.qs) {
            *y = q as f32 * d;
        }
    }
}

/// `qs` of 32 values of 4 bits: value `j` low, value `j + 16` high.
fn pack_nibbles(q: impl Fn(usize) -> u8) -> [u8; 16] {
    std::array::from_fn(|j| q(j) | q(j + 16) << 4)
}

// The quantizers follow ggml's quantize_row_*_ref step by step (same f32
// operations in the same order, float-to-int by truncation or roundf), so
// the bytes match for every finite input.

impl BlockQ8_0 {
    /// 32 values: `d = max|x| / 127`, `q = round(x / d)`.
    pub(crate) fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 {
            d: f16_field(d),
            qs: std::array::from_fn(|j| (x[j] * id).round() as i8),
        }
    }
}

impl BlockQ4_0 {
    /// 32 values: the one of largest magnitude, `max`, becomes `q = 0`
    /// (`d = max / -8`); the others `q = trunc(x / d + 8.5)`, at most 15.
    pub(crate) fn quantize(x: &[f32]) -> Self {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                (amax, max) = (v.abs(), v);
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ4_0 {
            d: f16_field(d),
            qs: pack_nibbles(|j| ((x[j] * id + 8.5) as i8).clamp(0, 15) as u8),
        }
    }
}

impl BlockQ4_1 {
    /// 32 values: `m = min`, `d = (max - min) / 15`, `q = trunc((x - m) / d + 0.5)`, at most 15.
    pub(crate) fn quantize(x: &[f32]) -> Self {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ4_1 {
            d: f16_field(d),
            m: f16_field(min),
            qs: pack_nibbles(|j| (((x[j] - min) * id + 0.5) as i8).clamp(0, 15) as u8),
        }
    }
}
