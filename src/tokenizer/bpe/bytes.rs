//! GPT-2's reversible byte <-> character mapping.
//!
//! `encoder.json` and `vocab.bpe` store tokens as text, not bytes: every byte
//! is shown as one printable character. Printable Latin-1 bytes stand for
//! themselves; the other 68 bytes (controls, space, ...) are shifted to
//! U+0100 and up, in byte order. So a space is `Ġ` (U+0120) and `\n` is `Ċ`.

/// The character that stands for each byte.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for (b, slot) in table.iter_mut().enumerate() {
        *slot = if is_printable(b as u8) {
            char::from(b as u8)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("U+0100..U+0144 are chars")
        };
    }
    table
}

/// The bytes in GPT-2's id order: printable bytes first, then the shifted
/// ones (so byte-level ids 0..256 of a GPT-2-style vocabulary follow this).
pub fn bytes_in_gpt2_order() -> Vec<u8> {
    let printable = (0..=255u8).filter(|&b| is_printable(b));
    let shifted = (0..=255u8).filter(|&b| !is_printable(b));
    printable.chain(shifted).collect()
}

/// The byte a mapped character stands for, if any.
pub fn char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    if c < 256 && is_printable(c as u8) {
        return Some(c as u8);
    }
    // The shifted bytes, in order: 0..=32, 127..=160, 173.
    match c.checked_sub(256)? {
        n @ 0..=32 => Some(n as u8),
        n @ 33..=66 => Some((n - 33 + 127) as u8),
        67 => Some(173),
        _ => None,
    }
}

/// Decodes a token's text form (as in `encoder.json`) back to its bytes.
pub fn text_to_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars().map(char_to_byte).collect()
}

/// Encodes token bytes in their text form (as in `encoder.json`).
pub fn bytes_to_text(bytes: &[u8], table: &[char; 256]) -> String {
    bytes.iter().map(|&b| table[b as usize]).collect()
}

fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_with_known_points() {
        let table = byte_to_char();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(table[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('\u{0143}'), Some(0xAD));
        assert_eq!(char_to_byte('\u{0144}'), None);
        assert_eq!(char_to_byte(' '), None);
        let order = bytes_in_gpt2_order();
        assert_eq!((order[0], order[93], order[188], order[255]), (b'!', b'~', 0, 0xAD));
    }

    #[test]
    fn text_form_round_trips() {
        let table = byte_to_char();
        let bytes = "héllo\n\u{1F600}".as_bytes();
        let text = bytes_to_text(bytes, &table);
        assert_eq!(text_to_bytes(&text).unwrap(), bytes);
        assert_eq!(text_to_bytes("a b"), None);
    }
}
