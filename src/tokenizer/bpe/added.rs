//! Added tokens (`added_tokens` of a `tokenizer.json`, control and
//! user-defined tokens of a GGUF file): strings such as `<|im_start|>` found
//! in the text before pre-tokenization, each becoming its own id.
//!
//! As in Hugging Face `tokenizers`: tokens with `normalized: false` are found
//! first, then those with `normalized: true` in the text left between them
//! (with no normalizer, the order is all that differs). Each pass takes the
//! leftmost, then longest, match. Special tokens are matched only when the
//! caller allows them; otherwise they stay text (`encode_special_tokens`).
//! `lstrip` / `rstrip` make a token take the white space before / after it.

use aho_corasick::{AhoCorasick, MatchKind};
use anyhow::{Context, Result};

/// One added token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    /// Matched only when special tokens are allowed.
    pub special: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub normalized: bool,
}

impl AddedToken {
    /// A special token with default flags, as `tokenizers` adds them.
    pub fn special(id: u32, content: &str) -> AddedToken {
        AddedToken {
            id,
            content: content.to_string(),
            special: true,
            lstrip: false,
            rstrip: false,
            normalized: false,
        }
    }
}

/// A part of the text: plain text, or an added token and the bytes it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Token { id: u32, len: usize },
}

/// The added tokens of a vocabulary and their matchers.
#[derive(Clone, Debug, Default)]
pub struct AddedTokens {
    tokens: Vec<AddedToken>,
    /// Tokens with `normalized: false`, then those with `normalized: true`.
    passes: [Pass; 2],
}

#[derive(Clone, Debug, Default)]
struct Pass {
    /// `None` when the pass has no tokens.
    matcher: Option<AhoCorasick>,
    /// Pattern index -> index in `tokens`.
    tokens: Vec<usize>,
    /// Whether some of its tokens are not special (matched always).
    any_ordinary: bool,
}

impl AddedTokens {
    /// Tokens with empty content are ignored, as `tokenizers` does.
    pub fn new(tokens: Vec<AddedToken>) -> Result<AddedTokens> {
        let tokens: Vec<AddedToken> = tokens.into_iter().filter(|t| !t.content.is_empty()).collect();
        let pass = |normalized: bool| -> Result<Pass> {
            let members: Vec<usize> = (0..tokens.len())
                .filter(|&i| tokens[i].normalized == normalized)
                .collect();
            if members.is_empty() {
                return Ok(Pass::default());
            }
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(members.iter().map(|&i| &tokens[i].content))
                .context("building the added-token matcher")?;
            Ok(Pass {
                matcher: Some(matcher),
                any_ordinary: members.iter().any(|&i| !tokens[i].special),
                tokens: members,
            })
        };
        let passes = [pass(false)?, pass(true)?];
        Ok(AddedTokens { tokens, passes })
    }

    pub fn tokens(&self) -> &[AddedToken] {
        &self.tokens
    }

    /// Calls `f` with the parts of `text` in order: text between tokens
    /// (never empty) and the tokens found.
    pub fn split<'a>(&self, text: &'a str, allow_special: bool, f: &mut impl FnMut(Segment<'a>)) {
        self.split_pass(0, text, allow_special, &mut |segment| match segment {
            Segment::Text(rest) => self.split_pass(1, rest, allow_special, f),
            token => f(token),
        });
    }

    fn split_pass<'a>(&self, pass: usize, text: &'a str, allow_special: bool, f: &mut impl FnMut(Segment<'a>)) {
        let pass = &self.passes[pass];
        let matcher = pass.matcher.as_ref().filter(|_| allow_special || pass.any_ordinary);
        let Some(matcher) = matcher else {
            if !text.is_empty() {
                f(Segment::Text(text));
            }
            return;
        };
        let mut done = 0;
        for m in matcher.find_iter(text) {
            let token = &self.tokens[pass.tokens[m.pattern().as_usize()]];
            // Skipped as `tokenizers` does: after the match, so the text it
            // covers is not searched again.
            if token.special && !allow_special {
                continue;
            }
            let (mut start, mut end) = (m.start(), m.end());
            if token.lstrip {
                start = text[..start].trim_end_matches(char::is_whitespace).len();
            }
            // A token after an `rstrip` one may start inside the white space it took.
            start = start.max(done);
            if token.rstrip {
                end = text.len() - text[end..].trim_start_matches(char::is_whitespace).len();
            }
            if done < start {
                f(Segment::Text(&text[done..start]));
            }
            f(Segment::Token {
                id: token.id,
                len: end - start,
            });
            done = end;
        }
        if done < text.len() {
            f(Segment::Text(&text[done..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(added: &AddedTokens, text: &'a str, allow_special: bool) -> Vec<Segment<'a>> {
        let mut out = Vec::new();
        added.split(text, allow_special, &mut |s| out.push(s));
        out
    }

    fn token(id: u32, content: &str, special: bool) -> AddedToken {
        AddedToken {
            special,
            ..AddedToken::special(id, content)
        }
    }

    use Segment::{Text, Token};

    #[test]
    fn leftmost_longest_and_special_only_when_allowed() {
        let added = AddedTokens::new(vec![
            token(0, "<|im_start|>", true),
            token(1, "<|im", true),
            token(2, "<x>", false),
        ])
        .unwrap();
        let text = "a<|im_start|>b<x><|imc";
        let all = parts(&added, text, true);
        assert_eq!(
            all,
            [
                Text("a"),
                Token { id: 0, len: 12 },
                Text("b"),
                Token { id: 2, len: 3 },
                Token { id: 1, len: 4 },
                Text("c")
            ]
        );
        let plain = parts(&added, text, false);
        assert_eq!(plain, [Text("a<|im_start|>b"), Token { id: 2, len: 3 }, Text("<|imc")]);
        assert_eq!(parts(&added, "", true), []);
    }

    #[test]
    fn strip_flags_take_white_space() {
        let mask = AddedToken {
            lstrip: true,
            rstrip: true,
            ..token(5, "<mask>", false)
        };
        let added = AddedTokens::new(vec![mask, token(6, "", true)]).unwrap();
        assert_eq!(added.tokens().len(), 1);
        assert_eq!(
            parts(&added, "Hi  <mask>\t there<mask>", false),
            [
                Text("Hi"),
                Token { id: 5, len: 10 },
                Text("there"),
                Token { id: 5, len: 6 }
            ]
        );
    }

    #[test]
    fn non_normalized_tokens_are_found_first() {
        let late = AddedToken {
            normalized: true,
            ..token(1, "ab", false)
        };
        let added = AddedTokens::new(vec![late, token(2, "bc", false)]).unwrap();
        assert_eq!(parts(&added, "abc", true), [Text("a"), Token { id: 2, len: 2 }]);
    }
}
