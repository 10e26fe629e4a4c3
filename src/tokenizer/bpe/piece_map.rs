//! A map from byte strings (pieces, tokens) to values, fast for short keys:
//! a key of up to 15 bytes is packed with its length into one `u128`, so a
//! lookup is one multiply-hash and one integer compare, with no `memcmp`.

use super::hash::FastMap;

/// Keys up to this many bytes are packed into a `u128`.
const SHORT: usize = 15;

#[derive(Clone, Debug)]
pub struct PieceMap<V> {
    short: FastMap<u128, V>,
    long: FastMap<Box<[u8]>, V>,
}

impl<V> Default for PieceMap<V> {
    fn default() -> Self {
        PieceMap {
            short: FastMap::default(),
            long: FastMap::default(),
        }
    }
}

/// The key's bytes, zero-padded, with the length in the top byte.
#[inline]
fn pack(key: &[u8]) -> Option<u128> {
    if key.len() > SHORT {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..key.len()].copy_from_slice(key);
    buf[SHORT] = key.len() as u8;
    Some(u128::from_le_bytes(buf))
}

impl<V> PieceMap<V> {
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        match pack(key) {
            Some(k) => self.short.get(&k),
            None => self.long.get(key),
        }
    }

    pub fn insert(&mut self, key: &[u8], value: V) {
        match pack(key) {
            Some(k) => self.short.insert(k, value),
            None => self.long.insert(key.into(), value),
        };
    }

    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_are_distinct() {
        let mut m = PieceMap::default();
        let keys: Vec<Vec<u8>> = (0..40)
            .map(|n| vec![0u8; n])
            .chain((0..40).map(|n| vec![b'a'; n]))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            m.insert(k, i);
        }
        assert_eq!(m.len(), keys.len() - 1, "the empty key appears twice");
        for (i, k) in keys.iter().enumerate().skip(1) {
            let want = if k.is_empty() { 40 } else { i };
            assert_eq!(m.get(k), Some(&want), "{k:?}");
        }
        assert_eq!(m.get(b"b"), None);
        m.clear();
        assert_eq!(m.len(), 0);
    }
}
