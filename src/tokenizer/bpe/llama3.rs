//! The pre-tokenizer pattern of Llama 3 and Qwen2, written by hand as a
//! scanner like GPT-2's ([`super::pretokenize`]).
//!
//! It splits text exactly like Llama 3's `tokenizer.json` regex
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! (tried in that order at each position); Qwen2's is the same with `\p{N}`
//! for `\p{N}{1,3}`, hence the `max_digits` parameter. In words, a piece is:
//! - a contraction in any case (`'s`, `'RE`, `'Ll`; `'ſ` too, as Unicode case
//!   folding makes `ſ` an `s`), or
//! - a run of letters, with the one character before it when that is not a
//!   line break, letter or number (`" word"`, `"(word"`, `"\tword"`), or
//! - up to `max_digits` numbers, or
//! - a run of other characters (punctuation, symbols) with an optional space
//!   before it and the line breaks after it (`" ...\n\n"`), or
//! - white space up to its last line break (`" \n\n"`), or else white space as
//!   GPT-2 splits it (a run followed by text leaves its last character).
//!
//! Line breaks are `\r` and `\n`; the classes are those of [`char_class`].
//!
//! [`char_class`]: super::pretokenize::char_class

use super::pretokenize::{class_of, decode, run_end, space_end, CharClass};
use CharClass::{Letter, Number, Other, Space};

/// Splits `text` into pieces; their concatenation is `text`.
pub fn pieces(text: &str, max_digits: usize) -> impl Iterator<Item = &str> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let start = pos;
        pos = piece_end(text.as_bytes(), start, max_digits);
        Some(&text[start..pos])
    })
}

/// True when cutting `text` at byte `at` leaves the pieces unchanged: after a
/// line break and before a character that is not white space. Every piece
/// holding the line break ends there (line breaks end the runs that take
/// them, and the non-space character ends any white-space run), and the
/// pattern looks at nothing before a piece's start.
pub fn is_piece_boundary(text: &str, at: usize) -> bool {
    let b = text.as_bytes();
    at > 0 && at < b.len() && is_line_break(b[at - 1] as u32) && class_of(decode(b, at).0) != Space
}

fn is_line_break(c: u32) -> bool {
    c == b'\r' as u32 || c == b'\n' as u32
}

/// End of the piece that starts at byte `start` (a char boundary, not the end).
fn piece_end(b: &[u8], start: usize, max_digits: usize) -> usize {
    let (c, len) = decode(b, start);
    let next = start + len;
    if c == b'\'' as u32 {
        if let Some(n) = contraction_len(&b[next..]) {
            return next + n;
        }
    }
    let class = class_of(c);
    match class {
        Letter => return run_end(b, next, Letter),
        Number => return numbers_end(b, next, max_digits.saturating_sub(1)),
        Other | Space => {}
    }
    let after = (next < b.len()).then(|| {
        let (c2, len2) = decode(b, next);
        (class_of(c2), next + len2)
    });
    match after {
        // `[^\r\n\p{L}\p{N}]?\p{L}+`: one character, then letters.
        Some((Letter, from)) if !is_line_break(c) => run_end(b, from, Letter),
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        _ if class == Other => line_breaks_end(b, run_end(b, next, Other)),
        Some((Other, from)) if c == b' ' as u32 => line_breaks_end(b, run_end(b, from, Other)),
        // `\s*[\r\n]+`, else `\s+(?!\S)|\s+`.
        _ => last_line_break_end(b, start).unwrap_or_else(|| space_end(b, start)),
    }
}

/// Length of the contraction after an apostrophe (`s`, `RE`, ...), if any.
fn contraction_len(rest: &[u8]) -> Option<usize> {
    const LONG_S: &[u8] = "ſ".as_bytes();
    let lower = |i: usize| rest.get(i).map(u8::to_ascii_lowercase);
    match (lower(0), lower(1)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => Some(1),
        (Some(b'r' | b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => Some(2),
        _ if rest.starts_with(LONG_S) => Some(LONG_S.len()),
        _ => None,
    }
}

/// End of up to `more` further numbers from byte `pos`.
fn numbers_end(b: &[u8], mut pos: usize, more: usize) -> usize {
    for _ in 0..more {
        if pos >= b.len() {
            break;
        }
        let (c, len) = decode(b, pos);
        if class_of(c) != Number {
            break;
        }
        pos += len;
    }
    pos
}

fn line_breaks_end(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && is_line_break(b[pos] as u32) {
        pos += 1;
    }
    pos
}

/// End of the last line break in the white-space run starting at `start`.
fn last_line_break_end(b: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    let mut end = None;
    while pos < b.len() {
        let (c, len) = decode(b, pos);
        if class_of(c) != Space {
            break;
        }
        pos += len;
        if is_line_break(c) {
            end = Some(pos);
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str, digits: usize) -> Vec<&str> {
        pieces(s, digits).collect()
    }

    #[test]
    fn words_take_one_character_before_them() {
        assert_eq!(split("Hello, world!", 3), ["Hello", ",", " world", "!"]);
        assert_eq!(split("(hello)\tthere", 3), ["(hello", ")", "\tthere"]);
        assert_eq!(split("a  \tb", 3), ["a", "  ", "\tb"]);
        assert_eq!(split("'xyz", 3), ["'xyz"]);
    }

    #[test]
    fn contractions_in_any_case() {
        assert_eq!(split("I'M DON'T we'Ll", 3), ["I", "'M", " DON", "'T", " we", "'Ll"]);
        assert_eq!(split("'ſx 'sup", 3), ["'ſ", "x", " '", "sup"]);
    }

    #[test]
    fn digits_in_groups() {
        assert_eq!(split("1234567 x", 3), ["123", "456", "7", " x"]);
        assert_eq!(split("1234", 1), ["1", "2", "3", "4"]);
        assert_eq!(split("x12", 3), ["x", "12"]);
    }

    #[test]
    fn line_breaks_join_punctuation_and_white_space() {
        assert_eq!(split("x.\n\ny", 3), ["x", ".\n\n", "y"]);
        assert_eq!(split("a\n\n  b", 3), ["a", "\n\n", " ", " b"]);
        assert_eq!(split(" \n x", 3), [" \n", " x"]);
        assert_eq!(split("a \t\n\r\nb", 3), ["a", " \t\n\r\n", "b"]);
        assert_eq!(split("a \n  ", 3), ["a", " \n", "  "]);
        assert_eq!(split("\t5 !?", 3), ["\t", "5", " !?"]);
    }

    #[test]
    fn boundaries() {
        let t = "ab\ncd \nef\n\n gh.\n\"x\"\r\ny";
        let ok: Vec<usize> = (1..t.len()).filter(|&i| is_piece_boundary(t, i)).collect();
        assert_eq!(ok, [3, 7, 16, 21]);
        for digits in [1, 3] {
            let all = split(t, digits);
            for &at in &ok {
                assert_eq!(
                    [split(&t[..at], digits), split(&t[at..], digits)].concat(),
                    all,
                    "cut at {at}"
                );
            }
        }
    }
}
