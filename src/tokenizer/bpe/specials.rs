//! The special token ids that generation and chat need, given by a file or
//! found by their usual texts.

use super::Bpe;
use anyhow::{ensure, Result};

/// Special token ids, where the tokenizer has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<|begin_of_text|>`, `<|im_start|>`).
    pub bos: Option<u32>,
    /// End of sequence (`<|end_of_text|>`, `<|endoftext|>`, `<|im_end|>`).
    pub eos: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// End of a chat turn (`<|eot_id|>`, `<|im_end|>`).
    pub eot: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
}

/// End-of-turn texts, in the order llama.cpp looks for them.
const END_OF_TURN: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Usual BOS and EOS texts, for tokenizers that do not name theirs.
const BEGIN: &[&str] = &["<|begin_of_text|>", "<s>", "<bos>"];
const END: &[&str] = &["<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"];

impl SpecialTokens {
    /// Every id given is below `n`.
    pub(super) fn check(&self, n: usize) -> Result<()> {
        for (what, id) in [
            ("BOS", self.bos),
            ("EOS", self.eos),
            ("padding", self.pad),
            ("end-of-turn", self.eot),
            ("unknown", self.unk),
        ] {
            if let Some(id) = id {
                ensure!(
                    (id as usize) < n,
                    "the {what} token id {id} is outside the vocabulary ({n} ids)"
                );
            }
        }
        Ok(())
    }
}

impl Bpe {
    /// Sets the special ids: those in `given`, which must be in the
    /// vocabulary; the end of turn found by its text when not given; with
    /// `guess`, BOS (the post-processor's first token, else a usual text)
    /// and EOS found the same way when not given.
    pub(super) fn set_special_tokens(&mut self, given: SpecialTokens, guess: bool) -> Result<()> {
        given.check(self.vocab_size())?;
        let find = |texts: &[&str]| texts.iter().find_map(|t| self.token_id(t));
        let mut s = given;
        s.eot = s.eot.or_else(|| find(END_OF_TURN));
        if guess {
            s.bos = s
                .bos
                .or_else(|| self.template.0.first().copied())
                .or_else(|| find(BEGIN));
            s.eos = s.eos.or_else(|| find(END));
        }
        self.specials = s;
        Ok(())
    }
}
