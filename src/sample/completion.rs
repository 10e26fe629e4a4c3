//! [`Completion`]: the text of a growing completion, released only when it
//! is safe to show, and cut at a stop string.

use anyhow::{bail, Result};

/// Text of a growing completion, released only when it is safe: whole UTF-8
/// characters, and never a piece that may still turn into a stop string.
/// Kept as the tokens' bytes, so that the tokens behind the text are known.
#[derive(Default)]
pub struct Completion {
    bytes: Vec<u8>,
    /// Where each token's bytes end.
    ends: Vec<usize>,
    /// Bytes already shown.
    released: usize,
    /// Where the first stop string starts, once one has appeared.
    stop_at: Option<usize>,
}

impl Completion {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token's bytes; returns the text that can be shown now.
    pub fn push(&mut self, token_bytes: &[u8], stops: &[String]) -> String {
        self.bytes.extend_from_slice(token_bytes);
        self.ends.push(self.bytes.len());
        let complete = complete_utf8_len(&self.bytes);
        let mut safe = complete;
        if let Some(at) = stops.iter().filter_map(|s| find(&self.bytes, s.as_bytes())).min() {
            self.stop_at = Some(at);
            safe = at;
        } else {
            // Hold back a tail that is the start of some stop string.
            for s in stops {
                for (i, _) in s.char_indices().skip(1) {
                    if self.bytes[..complete].ends_with(&s.as_bytes()[..i]) {
                        safe = safe.min(complete - i);
                    }
                }
            }
        }
        let from = self.released.min(safe);
        self.released = self.released.max(safe);
        String::from_utf8_lossy(&self.bytes[from..safe]).into_owned()
    }

    /// Whether a stop string has appeared.
    pub fn stopped(&self) -> bool {
        self.stop_at.is_some()
    }

    fn end(&self) -> usize {
        self.stop_at.unwrap_or(self.bytes.len())
    }

    /// The whole text (up to the stop string); invalid UTF-8 as U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.end()]).into_owned()
    }

    /// Everything not yet shown, at the end.
    pub fn rest(&mut self) -> String {
        let (from, end) = (self.released.min(self.end()), self.end());
        self.released = end;
        String::from_utf8_lossy(&self.bytes[from..end]).into_owned()
    }

    /// How many of the tokens produced [`Completion::text`]: those that begin
    /// before its end (the last may run on into the stop string).
    pub fn tokens_in_text(&self) -> usize {
        match self.end() {
            0 => 0,
            end => (self.ends.partition_point(|&e| e < end) + 1).min(self.ends.len()),
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of `b` without a trailing, unfinished UTF-8 sequence.
fn complete_utf8_len(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let lead = b[b.len() - back];
        if lead & 0xC0 != 0x80 {
            let need = match lead {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if need > back { b.len() - back } else { b.len() };
        }
    }
    b.len()
}

/// A `--stop` value with its escapes processed as llama.cpp's `-e` does them:
/// `\n`, `\r`, `\t`, `\'`, `\"`, `\\` and `\xNN` (ASCII); any other
/// backslash stays as it is. An empty result is an error.
pub fn unescape(flag: &str, s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let rest = chars.as_str();
        let hex = rest
            .strip_prefix('x')
            .and_then(|h| h.get(..2))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (rest.chars().next(), hex) {
            (Some('x'), Some(b)) if b.is_ascii() => {
                out.push(b as char);
                chars = rest[3..].chars();
            }
            (Some(e @ ('n' | 'r' | 't' | '\'' | '"' | '\\')), _) => {
                out.push(match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    e => e,
                });
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    if out.is_empty() {
        bail!("{flag} {s:?}: must not be empty (it would stop every sample before its first token)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_released_only_in_whole_characters() {
        let mut c = Completion::new();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(c.push(&euro[..1], &[]), "");
        assert_eq!(c.push(&euro[1..2], &[]), "");
        assert_eq!(c.push(&euro[2..], &[]), "€");
        assert_eq!(c.push(b"ab", &[]), "ab");
        assert_eq!(c.rest(), "");
        assert_eq!(c.text(), "€ab");
        assert_eq!(c.tokens_in_text(), 4);
    }

    #[test]
    fn stop_strings_cut_the_text_and_are_never_shown_in_part() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        let mut c = Completion::new();
        assert_eq!(c.push(b"Hello E", &stops), "Hello ");
        assert_eq!(c.push(b"N", &stops), "");
        assert_eq!(c.push(b"DING", &stops), "");
        assert!(c.stopped());
        assert_eq!(c.text(), "Hello ");
        // The text runs into the first token, which holds the stop's start.
        assert_eq!(c.tokens_in_text(), 1);
        let mut c = Completion::new();
        assert_eq!(c.push(b"one\n", &stops), "one");
        assert_eq!(c.push(b"two", &stops), "\ntwo");
        assert_eq!(c.rest(), "");
        let mut c = Completion::new();
        for t in [&b"a"[..], b"b", b"\n\n", b"c"] {
            c.push(t, &stops);
        }
        assert_eq!((c.text().as_str(), c.tokens_in_text()), ("ab", 2));
        let mut c = Completion::new();
        c.push(b"END", &stops);
        assert_eq!((c.text().as_str(), c.tokens_in_text()), ("", 0));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut c = Completion::new();
        assert_eq!(c.push(b"a\xffb", &[]), "a\u{fffd}b");
        assert_eq!(complete_utf8_len(b"x\xe2\x82"), 1);
        assert_eq!(complete_utf8_len(b"x\xe2\x82\xac"), 4);
    }

    #[test]
    fn stop_escapes_are_llama_cpps() {
        let u = |s| unescape("--stop", s).unwrap();
        assert_eq!(u(r"\n\n"), "\n\n");
        assert_eq!(u(r#"a\tb\r\'\"\\"#), "a\tb\r'\"\\");
        assert_eq!(u(r"\x41\x7e"), "A~");
        // Unknown escapes, a bad or non-ASCII \x, and a final backslash stay as typed.
        assert_eq!(u(r"\q\x4\xzz\xff\"), r"\q\x4\xzz\xff\");
        assert_eq!(u("plain ü"), "plain ü");
        let err = unescape("--stop", "").unwrap_err().to_string();
        assert!(err.contains("--stop") && err.contains("empty"), "{err}");
    }
}
