//! GPT-2's pre-tokenizer, written by hand as a scanner over characters.
//!
//! It splits text exactly like the regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (tried in that order at each position, leftmost first). In words, a piece is:
//! - a lowercase contraction `'s 't 're 've 'm 'll 'd`, or
//! - an optional space (U+0020 only) and a run of letters, of numbers, or of
//!   other non-space characters (punctuation, symbols, marks, controls), or
//! - a run of white space. The lookahead `(?!\S)` leaves the last white-space
//!   character of a run that is followed by text to start the next piece, so
//!   `"a   b"` splits as `a`, `"  "`, `" b"`.
//!
//! Character classes follow the `regex` crate (which `tiktoken` uses):
//! `\p{L}`, `\p{N}` and `\s` = Unicode `White_Space`; see [`char_class`].

use super::unicode_tables::RANGES;
use std::sync::OnceLock;

/// The four character classes the pattern distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{L}`: a letter of any script.
    Letter,
    /// `\p{N}`: a digit, letter-like number or other number.
    Number,
    /// `\s`: Unicode white space.
    Space,
    /// Anything else: punctuation, symbols, marks, controls, unassigned.
    Other,
}

use CharClass::{Letter, Number, Other, Space};

/// The pattern's class of a character.
pub fn char_class(c: char) -> CharClass {
    class_of(c as u32)
}

/// Splits `text` into GPT-2 pre-tokenizer pieces; their concatenation is `text`.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

/// Iterator over the pieces of a text, see [`pieces`].
#[derive(Clone, Debug)]
pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        self.pos = piece_end(self.text.as_bytes(), start);
        Some(&self.text[start..self.pos])
    }
}

/// True when cutting `text` at byte `at` leaves the pieces unchanged: the
/// pieces of `text[..at]` followed by those of `text[at..]` are the pieces of
/// `text`. That holds where a non-space character is followed by white space
/// other than U+0020: no piece spans the cut, the left part ends without the
/// white-space lookahead, and the right part starts with a white-space run
/// that depends only on what follows. Parallel encoding cuts there.
pub fn is_piece_boundary(text: &str, at: usize) -> bool {
    if !text.is_char_boundary(at) {
        return false;
    }
    let (Some(before), Some(after)) = (text[..at].chars().next_back(), text[at..].chars().next()) else {
        return false;
    };
    char_class(before) != Space && char_class(after) == Space && after != ' '
}

/// End of the piece that starts at byte `start` (a char boundary, not the end).
fn piece_end(b: &[u8], start: usize) -> usize {
    let (c, len) = decode(b, start);
    let next = start + len;
    match c {
        0x27 /* ' */ => match contraction_len(&b[next..]) {
            Some(n) => next + n,
            None => run_end(b, next, Other),
        },
        0x20 /* space */ if next < b.len() => match class_of(decode(b, next).0) {
            Space => space_end(b, start),
            class => run_end(b, next, class),
        },
        _ => match class_of(c) {
            Space => space_end(b, start),
            class => run_end(b, next, class),
        },
    }
}

/// Length of the contraction after an apostrophe (`s`, `re`, ...), if any.
fn contraction_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

/// End of the run of `class` characters starting at byte `pos`.
pub(super) fn run_end(b: &[u8], mut pos: usize, class: CharClass) -> usize {
    while pos < b.len() {
        let byte = b[pos];
        if byte < 0x80 {
            if ASCII[byte as usize] != class {
                break;
            }
            pos += 1;
        } else {
            let (c, len) = decode(b, pos);
            if class_of(c) != class {
                break;
            }
            pos += len;
        }
    }
    pos
}

/// End of the white-space piece starting at `start`: `\s+(?!\S)|\s+`.
pub(super) fn space_end(b: &[u8], start: usize) -> usize {
    let mut pos = start;
    let mut last = start;
    let mut count = 0;
    while pos < b.len() {
        let (c, len) = decode(b, pos);
        if class_of(c) != Space {
            // Followed by text: leave the last space for the next piece,
            // unless it is the only one.
            return if count >= 2 { last } else { pos };
        }
        last = pos;
        count += 1;
        pos += len;
    }
    pos
}

/// The code point at byte `i` of valid UTF-8 and its length in bytes.
#[inline]
pub(super) fn decode(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i] as u32;
    let cont = |k: usize| (b[i + k] & 0x3F) as u32;
    match b0 {
        0x00..=0x7F => (b0, 1),
        0xC0..=0xDF => (((b0 & 0x1F) << 6) | cont(1), 2),
        0xE0..=0xEF => (((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2), 3),
        _ => (((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3), 4),
    }
}

#[inline]
pub(super) fn class_of(c: u32) -> CharClass {
    if c < 0x80 {
        ASCII[c as usize]
    } else if c < 0x1_0000 {
        bmp_classes()[c as usize]
    } else {
        search_ranges(c)
    }
}

/// Classes of the ASCII characters.
const ASCII: [CharClass; 128] = {
    let mut t = [Other; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = match c {
            b'a'..=b'z' | b'A'..=b'Z' => Letter,
            b'0'..=b'9' => Number,
            b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => Space,
            _ => Other,
        };
        i += 1;
    }
    t
};

/// Classes of the Basic Multilingual Plane, expanded once from [`RANGES`].
fn bmp_classes() -> &'static [CharClass] {
    static TABLE: OnceLock<Vec<CharClass>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![Other; 0x1_0000];
        for &(first, last, class) in RANGES.iter().filter(|r| r.0 < 0x1_0000) {
            t[first as usize..=last as usize].fill(class);
        }
        t[..0x80].copy_from_slice(&ASCII);
        t
    })
}

fn search_ranges(c: u32) -> CharClass {
    match RANGES.binary_search_by(|&(first, last, _)| {
        if last < c {
            std::cmp::Ordering::Less
        } else if first > c {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => RANGES[i].2,
        Err(_) => Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn words_numbers_punctuation_and_contractions() {
        assert_eq!(
            split("Not all heroes wear capes."),
            ["Not", " all", " heroes", " wear", " capes", "."]
        );
        assert_eq!(split("I'm 42, don't!"), ["I", "'m", " 42", ",", " don", "'t", "!"]);
        assert_eq!(split("DON'T 'S 'sup"), ["DON", "'", "T", " '", "S", " '", "sup"]);
        assert_eq!(split("it'll we've"), ["it", "'ll", " we", "'ve"]);
        assert_eq!(split("!'s"), ["!'", "s"]);
    }

    #[test]
    fn white_space_runs_leave_their_last_char() {
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(split("x\r\n\ty"), ["x", "\r\n", "\t", "y"]);
        assert_eq!(split("end  "), ["end", "  "]);
        assert_eq!(split(" "), [" "]);
        assert_eq!(split("a \u{3000}b"), ["a", " ", "\u{3000}", "b"]);
    }

    #[test]
    fn unicode_classes() {
        assert_eq!(split("héllo wörld"), ["héllo", " wörld"]);
        assert_eq!(split("e\u{301}"), ["e", "\u{301}"]);
        assert_eq!(split("日本語 123"), ["日本語", " 123"]);
        assert_eq!(char_class('\u{00A0}'), Space);
        assert_eq!(char_class('Ⅻ'), Number);
        assert_eq!(char_class('𝔸'), Letter);
        assert_eq!(char_class('😀'), Other);
    }

    #[test]
    fn boundaries() {
        let t = "ab\ncd \nef\n\ngh";
        let ok: Vec<usize> = (1..t.len()).filter(|&i| is_piece_boundary(t, i)).collect();
        assert_eq!(ok, [2, 9]);
        for t in [t, "x!\n\n\tA 'S  \r\ny\u{3000}\u{85}z  \n", "a\n b\t\tc'\nd"] {
            let all = split(t);
            for at in (1..t.len()).filter(|&i| is_piece_boundary(t, i)) {
                assert_eq!([split(&t[..at]), split(&t[at..])].concat(), all, "cut at {at} of {t:?}");
            }
        }
    }
}
