//! Pre-tokenizers: how text is cut into the pieces that BPE merges one by one.
//!
//! A [`PreTokenizer`] is a sequence of steps, each cutting every piece of the
//! step before, as Hugging Face `tokenizers` runs a `Sequence` of them:
//! GPT-2's ([`Bpe::gpt2`](super::Bpe::gpt2)) is one step, SmolLM2's is
//! `Digits` then GPT-2's pattern, Llama 3's is its own pattern alone.

use super::{llama3, pretokenize};

/// One pre-tokenizer step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// GPT-2's pattern ([`pretokenize`]): `ByteLevel` with `use_regex`.
    Gpt2,
    /// Llama 3's pattern (`max_digits` 3) or Qwen2's (1) as a `Split` ([`llama3`]).
    Llama3 { max_digits: usize },
    /// `Digits`: numbers (`char::is_numeric`, as `tokenizers` has it) apart
    /// from the rest, each one alone or in runs.
    Digits { individual: bool },
    /// `ByteLevel` with `add_prefix_space`: a space before each piece that
    /// does not start with one.
    PrefixSpace,
}

/// A sequence of [`Step`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    steps: Vec<Step>,
}

impl Default for PreTokenizer {
    /// GPT-2's.
    fn default() -> Self {
        PreTokenizer {
            steps: vec![Step::Gpt2],
        }
    }
}

impl PreTokenizer {
    pub fn new(steps: Vec<Step>) -> PreTokenizer {
        PreTokenizer { steps }
    }

    /// Calls `f` with each piece of `text`, in order; no piece is empty.
    #[inline]
    pub fn for_each_piece(&self, text: &str, f: &mut impl FnMut(&str)) {
        split(&self.steps, text, f);
    }

    /// True when cutting `text` at byte `at` leaves the pieces unchanged (for
    /// parallel encoding): the cut must be one for every step. Each step's
    /// test looks only at the characters beside the cut, so it holds as well
    /// inside a piece of the step before it.
    pub fn is_piece_boundary(&self, text: &str, at: usize) -> bool {
        if at == 0 || at >= text.len() || !text.is_char_boundary(at) {
            return false;
        }
        self.steps.iter().all(|step| match *step {
            Step::Gpt2 => pretokenize::is_piece_boundary(text, at),
            Step::Llama3 { .. } => llama3::is_piece_boundary(text, at),
            Step::Digits { individual } => {
                individual
                    || !(text[..at].chars().next_back().is_some_and(char::is_numeric)
                        && text[at..].chars().next().is_some_and(char::is_numeric))
            }
            // Each part would get a space of its own.
            Step::PrefixSpace => false,
        })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// A short stable description, e.g. `digits(individual) gpt2`.
    pub fn describe(&self) -> String {
        let step = |s: &Step| match *s {
            Step::Gpt2 => "gpt2".to_string(),
            Step::Llama3 { max_digits } => format!("llama3(digits {max_digits})"),
            Step::Digits { individual: true } => "digits(individual)".to_string(),
            Step::Digits { individual: false } => "digits".to_string(),
            Step::PrefixSpace => "prefix-space".to_string(),
        };
        self.steps.iter().map(step).collect::<Vec<_>>().join(" ")
    }
}

fn split<F: FnMut(&str)>(steps: &[Step], text: &str, f: &mut F) {
    if text.is_empty() {
        return;
    }
    let Some((step, rest)) = steps.split_first() else {
        return f(text);
    };
    match *step {
        Step::Gpt2 => pretokenize::pieces(text).for_each(|p| split(rest, p, f)),
        Step::Llama3 { max_digits } => llama3::pieces(text, max_digits).for_each(|p| split(rest, p, f)),
        Step::Digits { individual } => digit_pieces(text, individual).for_each(|p| split(rest, p, f)),
        Step::PrefixSpace if !text.starts_with(' ') => split(rest, &format!(" {text}"), f),
        Step::PrefixSpace => split(rest, text, f),
    }
}

/// Runs of numbers (or single numbers) and runs of anything else.
fn digit_pieces(text: &str, individual: bool) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let numeric = first.is_numeric();
        let end = if numeric && individual {
            first.len_utf8()
        } else {
            chars
                .find(|&(_, c)| c.is_numeric() != numeric)
                .map_or(rest.len(), |(i, _)| i)
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: &PreTokenizer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pre.for_each_piece(text, &mut |p| out.push(p.to_string()));
        out
    }

    #[test]
    fn steps_cut_the_pieces_of_the_step_before() {
        let smol = PreTokenizer::new(vec![Step::Digits { individual: true }, Step::Gpt2]);
        assert_eq!(
            split(&smol, "Hi 123x ٣٤"),
            ["Hi", " ", "1", "2", "3", "x", " ", "٣", "٤"]
        );
        let runs = PreTokenizer::new(vec![Step::Digits { individual: false }, Step::Gpt2]);
        assert_eq!(split(&runs, "a12 b"), ["a", "12", " b"]);
        let prefixed = PreTokenizer::new(vec![Step::Digits { individual: true }, Step::PrefixSpace, Step::Gpt2]);
        assert_eq!(split(&prefixed, "ab1 c"), [" ab", " 1", " c"]);
        assert_eq!(split(&prefixed, ""), Vec::<String>::new());
        assert_eq!(smol.describe(), "digits(individual) gpt2");
    }

    #[test]
    fn boundaries_hold_for_every_step() {
        let text = "x1\n22\ny\n\n3 a.\nb\r\n\t4";
        for steps in [
            vec![Step::Digits { individual: true }, Step::Gpt2],
            vec![Step::Digits { individual: false }, Step::Gpt2],
            vec![Step::Llama3 { max_digits: 3 }],
            vec![Step::Llama3 { max_digits: 1 }, Step::Digits { individual: false }],
        ] {
            let pre = PreTokenizer::new(steps);
            let all = split(&pre, text);
            let cuts: Vec<usize> = (1..text.len()).filter(|&at| pre.is_piece_boundary(text, at)).collect();
            assert!(!cuts.is_empty(), "{}", pre.describe());
            for at in cuts {
                let parts = [split(&pre, &text[..at]), split(&pre, &text[at..])].concat();
                assert_eq!(parts, all, "{} cut at {at}", pre.describe());
            }
        }
        let prefixed = PreTokenizer::new(vec![Step::PrefixSpace, Step::Gpt2]);
        assert!((1..text.len()).all(|at| !prefixed.is_piece_boundary(text, at)));
    }
}
