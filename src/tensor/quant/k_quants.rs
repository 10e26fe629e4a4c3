//! ggml's K-quants: super-blocks of 256 values in sub-blocks, each sub-block
//! with its own small integer scale (and minimum), themselves scaled by the
//! super-block's f16 `d` (and `dmin`).

use super::{f16_of, Block};
use bytemuck::{Pod, Zeroable};

/// 8 sub-blocks of 32: `x = d * sc * q - dmin * m`, q in 0..16, 6-bit `sc`, `m`.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ4_K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    /// The 8 scales and 8 minimums, 6 bits each (see [`scale_min`]).
    pub scales: [u8; 12],
    /// Byte `l` of chunk `c` (32 bytes): value `64c + l` low, `64c + 32 + l` high.
    pub qs: [u8; 128],
}

/// As [`BlockQ4_K`] with a fifth bit: q in 0..32.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ5_K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    /// Bit `2c` of byte `l` is the fifth bit of value `64c + l`, bit `2c + 1` of `64c + 32 + l`.
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 16 sub-blocks of 16: `x = d * sc * (q - 32)`, q in 0..64, i8 `sc`.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ6_K {
    /// Low 4 bits; per half `h` (64 bytes): byte `l` holds values `128h + l`
    /// and `128h + 64 + l` (low, high nibble), byte `32 + l` values `128h + 32 + l` and `128h + 96 + l`.
    pub ql: [u8; 128],
    /// High 2 bits; per half (32 bytes): byte `l` holds values `128h + l + 32i` in bits `2i..2i+2`.
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: [u8; 2],
}

/// Scale and minimum of sub-block `j` (ggml's `get_scale_min_k4`): the low
/// 6 bits of bytes 0..4 / 4..8 for j < 4; else 4 bits of byte 8 + (j - 4)
/// topped with the 2 high bits of bytes j - 4 / j.
#[inline(always)]
pub(super) fn scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K and Q5_K (`qh` all zero for Q4_K): per 64 values, two sub-blocks
/// from the low and high nibbles of 32 bytes.
#[inline(always)]
fn dequantize_k(d: [u8; 2], dmin: [u8; 2], scales: &[u8; 12], qs: &[u8; 128], qh: &[u8; 32], out: &mut [f32]) {
    let (d, dmin) = (f16_of(d), f16_of(dmin));
    for (c, (q, y)) in qs.chunks_exact(32).zip(out.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min(2 * c, scales);
        let (sc2, m2) = scale_min(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            let h1 = (qh[l] >> (2 * c)) & 1;
            let h2 = (qh[l] >> (2 * c + 1)) & 1;
            lo[l] = d1 * ((q[l] & 0xF) | h1 << 4) as f32 - m1;
            hi[l] = d2 * ((q[l] >> 4) | h2 << 4) as f32 - m2;
        }
    }
}

impl Block for BlockQ4_K {
    const ELEMS: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k(self.d, self.dmin, &self.scales, &self.qs, &[0; 32], out);
    }
}

impl Block for BlockQ5_K {
    const ELEMS: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k(self.d, self.dmin, &self.scales, &self.qs, &self.qh, out);
    }
}

impl Block for BlockQ6_K {
    const ELEMS: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_of(self.d);
        let halves = self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .zip(self.scales.chunks_exact(8));
        for (((ql, qh), sc), y) in halves.zip(out.chunks_exact_mut(128)) {
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | (qh[l] & 3) << 4) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
                let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
                // (d * sc) * q, in ggml's order.
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
