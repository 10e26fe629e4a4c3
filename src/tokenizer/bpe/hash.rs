//! Small, fast, non-cryptographic hashing for the encoder's lookup tables,
//! and a stable FNV-1a hash for fingerprints written to files.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Folded-multiply hasher: one 64x64->128 multiply per 8 bytes of key.
/// Not DoS resistant; keys here are vocabulary entries and text pieces.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = (a as u128) * (b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = fold_mul(self.0 ^ word, K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = fold_mul(self.0 ^ u64::from_le_bytes(buf), K);
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = fold_mul(self.0 ^ x, K);
    }

    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.0 = fold_mul(self.0 ^ x as u64 ^ ((x >> 64) as u64).rotate_left(32), K);
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// 64-bit FNV-1a, stable across versions and platforms.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xCBF2_9CE4_8422_2325)
    }
}

impl Fnv64 {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(Fnv64::default().finish(), 0xCBF2_9CE4_8422_2325);
        let mut h = Fnv64::default();
        h.update(b"a");
        assert_eq!(h.finish(), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn fast_hasher_spreads_pairs() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FastHasher>::default();
        // Pairs differing only in the high word must land in different buckets.
        let low_bits: std::collections::HashSet<u64> = (0..64u64).map(|a| b.hash_one((a << 32) | 7) & 0xFFF).collect();
        assert!(low_bits.len() > 50, "{}", low_bits.len());
    }
}
