//! NumPy's `.npy` format, for handing arrays (logits) to Python tools.

/// The header of a NumPy `.npy` file (format 1.0) holding little-endian f32 of `shape`, C order.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let mut dims = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    if shape.len() == 1 {
        dims.push(','); // a Python 1-tuple
    }
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + dict + '\n', padded to a multiple of 64.
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_numpy_format_1_0() {
        let h = npy_header(&[3, 50257]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert!(dict.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 50257), }"));
        assert!(dict.ends_with('\n'));
        let one = npy_header(&[7]);
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("'shape': (7,)"));
    }
}
