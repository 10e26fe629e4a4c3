//! `gpt generate`: continue prompts with a GPT (GPT-2 or one trained here).

use super::check;
use super::out::count;
use crate::model::{self, encode_chat, Dtype, LoadOptions};
use crate::sample::{generate, working_memory, GenerateOptions};
use crate::tensor::rng;
use crate::tokenizer::{Message, Tokenizer};
use anyhow::{bail, Result};
use clap::Args;
use std::io::Write;

/// How to hold the weights in memory (the `--dtype` flag of every command that runs a model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    /// As the file holds them: a GGUF's quantized matrices stay quantized, the rest f32
    #[default]
    Auto,
    /// Exact: the checkpoint's values (quantized matrices dequantized)
    F32,
    /// Matrices rounded to bfloat16: half the bytes to read per token
    Bf16,
    /// Matrices quantized to 8 bits per weight (ggml's Q8_0) on load
    #[value(name = "q8_0")]
    Q8_0,
    /// Matrices quantized to 4 bits per weight (ggml's Q4_0) on load
    #[value(name = "q4_0")]
    Q4_0,
    /// Matrices quantized to 4 bits per weight with a minimum (ggml's Q4_1) on load
    #[value(name = "q4_1")]
    Q4_1,
}

impl DtypeArg {
    pub fn options(self) -> LoadOptions {
        use crate::tensor::quant::Kind;
        let dtype = match self {
            DtypeArg::Auto => Dtype::Stored,
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::Bf16 => Dtype::Bf16,
            DtypeArg::Q8_0 => Dtype::Quant(Kind::Q8_0),
            DtypeArg::Q4_0 => Dtype::Quant(Kind::Q4_0),
            DtypeArg::Q4_1 => Dtype::Quant(Kind::Q4_1),
        };
        LoadOptions { dtype }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    #[arg(long)]
    pub model: String,
    /// Prompts, generated together as one batch [default: one empty prompt]
    pub prompts: Vec<String>,
    /// New tokens per sample, at most (llama.cpp's -n); a sample also ends when the context is full (said on stderr)
    #[arg(short = 'n', long = "max-new-tokens", default_value_t = 50)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: super::sample::SamplingArgs,
    /// Stop a sample when it produces this text (not included); repeatable
    #[arg(long)]
    pub stop: Vec<String>,
    /// Samples per prompt
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// Print one JSON object per sample: completion, tokens, prompt_tokens, timings
    #[arg(long)]
    pub json: bool,
    /// Cut prompts longer than the context from the left instead of failing
    #[arg(long, conflicts_with = "chat")]
    pub truncate: bool,
    /// Each prompt is a user's message: rendered with the model's chat template, and answered
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message before each prompt
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// With --chat: a chat template (Jinja, as tokenizer_config.json's chat_template) instead of the model's
    #[arg(long, value_name = "FILE", requires = "chat")]
    pub template: Option<std::path::PathBuf>,
    /// How to hold the weights in memory
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DtypeArg,
}

/// Text of a growing completion, released only when it is safe: whole UTF-8
/// characters, and never a piece that may still turn into a stop string.
pub(super) struct Completion {
    bytes: Vec<u8>,
    pub(super) text: String,
    released: usize,
    stopped: bool,
}

impl Completion {
    pub(super) fn new() -> Self {
        Completion {
            bytes: Vec::new(),
            text: String::new(),
            released: 0,
            stopped: false,
        }
    }

    /// Adds a token's bytes; returns the text that can be shown now.
    pub(super) fn push(&mut self, token_bytes: &[u8], stops: &[String]) -> &str {
        self.bytes.extend_from_slice(token_bytes);
        let complete = complete_utf8_len(&self.bytes);
        self.text = String::from_utf8_lossy(&self.bytes[..complete]).into_owned();
        let mut safe = self.text.len();
        if let Some(at) = stops.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(at);
            self.stopped = true;
            safe = at;
        } else {
            // Hold back a tail that is the start of some stop string.
            for s in stops {
                for (i, _) in s.char_indices().skip(1) {
                    if self.text.ends_with(&s[..i]) {
                        safe = safe.min(self.text.len() - i);
                    }
                }
            }
        }
        let out = &self.text[self.released.min(safe)..safe];
        self.released = self.released.max(safe);
        out
    }

    /// Everything not yet shown, at the end.
    pub(super) fn rest(&mut self) -> String {
        if !self.stopped {
            self.text = String::from_utf8_lossy(&self.bytes).into_owned();
        }
        let out = self.text[self.released.min(self.text.len())..].to_string();
        self.released = self.text.len();
        out
    }
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

pub(super) fn token_bytes(tok: &Tokenizer, id: u32) -> Result<Vec<u8>> {
    Ok(match tok {
        Tokenizer::Bpe(bpe) => bpe.decode_bytes(&[id])?,
        Tokenizer::Char(_) => tok.decode(&[id])?.into_bytes(),
    })
}

/// Token ids of a prompt: characters after BOS, or BPE (an empty prompt starts from `<|endoftext|>`).
fn encode_prompt(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(text)?;
    if matches!(tok, Tokenizer::Char(_)) || ids.is_empty() {
        let Some(sep) = tok.document_separator() else {
            bail!("an empty prompt needs a start token, and this vocabulary has none");
        };
        ids.insert(0, sep);
    }
    Ok(ids)
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let sampling = a.sampling.options()?;
    check::flag(a.num_samples >= 1, "--num-samples", a.num_samples, "at least 1")?;
    let model::Loaded {
        model,
        tokenizer: tok,
        mut chat,
        ..
    } = model::load(&a.model, &a.dtype.options())?;
    let template = match a.chat {
        true => Some(super::chat::chat_template(&mut chat, a.template.as_deref(), &a.model)?),
        false => None,
    };
    let n_ctx = model.config.n_ctx;
    let texts = if a.prompts.is_empty() {
        vec![String::new()]
    } else {
        a.prompts.clone()
    };
    let mut encoded = Vec::new();
    for text in &texts {
        let mut ids = match &template {
            Some(template) => {
                let messages = [
                    super::chat::opening(a.system.as_deref()),
                    vec![Message::new("user", text)],
                ]
                .concat();
                encode_chat(&tok, &chat.render(template, &messages, true)?)?
            }
            None => encode_prompt(&tok, text)?,
        };
        if ids.len() >= n_ctx {
            if !a.truncate {
                bail!(
                    "the prompt is {} tokens{} but the model's context is {n_ctx}: shorten it{}",
                    ids.len(),
                    if a.chat { " with the chat template" } else { "" },
                    if a.chat {
                        ""
                    } else {
                        ", or pass --truncate to keep its last tokens"
                    }
                );
            }
            // At least one token, and room for one new one where the context allows.
            let keep = n_ctx.saturating_sub(a.max_new_tokens).min(n_ctx - 1).max(1);
            eprintln!(
                "note: prompt cut from {} to its last {keep} tokens (--truncate)",
                ids.len()
            );
            ids.drain(..ids.len() - keep);
        }
        encoded.push(ids);
    }
    let batch = encoded.len().saturating_mul(a.num_samples);
    let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
    // The last new token is predicted from a full context: it needs no slot.
    let room = n_ctx + 1 - longest;
    if a.max_new_tokens > room {
        eprintln!(
            "note: -n {}: the model's context of {n_ctx} tokens holds at most {} after a {longest}-token prompt; \
             a sample ends when its context is full",
            a.max_new_tokens,
            count(room, "new token", "new tokens"),
        );
    }
    check::fits_in_memory(
        working_memory(&model.config, batch, longest, a.max_new_tokens),
        || {
            format!(
                "generating {batch} sequences at once ({} prompts x --num-samples {}, up to -n/--max-new-tokens {} new tokens each)",
                encoded.len(),
                a.num_samples,
                a.max_new_tokens
            )
        },
        "give fewer prompts, or lower --num-samples or -n",
    )?;
    let prompts: Vec<Vec<u32>> = encoded
        .into_iter()
        .flat_map(|ids| std::iter::repeat_n(ids, a.num_samples))
        .collect();
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: a.max_new_tokens,
        stop: chat.stop_ids.clone(),
    };

    // One sequence without --json streams its text as it comes.
    let stream = prompts.len() == 1 && !a.json;
    let mut completions: Vec<Completion> = prompts.iter().map(|_| Completion::new()).collect();
    let mut stdout = super::out::stdout();
    let mut failure = None;
    let result = generate(&model, &prompts, &opts, &mut rng(a.sampling.seed), |i, id| {
        let bytes = match token_bytes(&tok, id) {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                return false;
            }
        };
        let shown = completions[i].push(&bytes, &a.stop);
        if stream {
            if let Err(e) = write!(stdout, "{shown}").and_then(|()| stdout.flush()) {
                failure = Some(e.into());
                return false;
            }
        }
        !completions[i].stopped
    })?;
    if let Some(e) = failure {
        return Err(e);
    }

    // The prefill runs every prompt left-padded to the longest.
    let prefill_tokens = prompts.len() * prompts.iter().map(Vec::len).max().unwrap_or(0);
    let timings = serde_json::json!({
        "prefill_ms": result.prefill_secs * 1e3,
        "prefill_tokens_per_sec": prefill_tokens as f64 / result.prefill_secs,
        "time_to_first_token_ms": result.prefill_secs * 1e3,
        "decode_ms": result.decode_secs * 1e3,
        "decode_tokens_per_sec": result.decode_tokens as f64 / result.decode_secs.max(1e-9),
    });
    for (i, c) in completions.iter_mut().enumerate() {
        let rest = c.rest();
        if a.json {
            let line = serde_json::json!({
                "prompt": texts[i / a.num_samples],
                "completion": c.text,
                "tokens": result.tokens[i],
                "prompt_tokens": prompts[i].len(),
                "finish_reason": if result.stopped[i] { "stop" } else { "length" },
                "timings": timings,
            });
            writeln!(stdout, "{line}")?;
        } else if stream {
            writeln!(stdout, "{rest}")?;
        } else {
            writeln!(
                stdout,
                "--- sample {} of prompt {:?}\n{}{}",
                i % a.num_samples + 1,
                texts[i / a.num_samples],
                // A chat's reply is not a continuation of the message.
                if a.chat { "" } else { texts[i / a.num_samples].as_str() },
                c.text
            )?;
        }
    }
    if !a.json {
        eprintln!(
            "prefill {} tokens in {:.0} ms | decode {} tokens in {:.0} ms ({:.1} tokens/s)",
            prefill_tokens,
            result.prefill_secs * 1e3,
            result.decode_tokens,
            result.decode_secs * 1e3,
            result.decode_tokens as f64 / result.decode_secs.max(1e-9)
        );
    }
    Ok(())
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
        assert_eq!(c.text, "€ab");
    }

    #[test]
    fn stop_strings_cut_the_text_and_are_never_shown_in_part() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        let mut c = Completion::new();
        assert_eq!(c.push(b"Hello E", &stops), "Hello ");
        assert_eq!(c.push(b"N", &stops), "");
        assert_eq!(c.push(b"DING", &stops), "");
        assert!(c.stopped);
        assert_eq!(c.text, "Hello ");
        let mut c = Completion::new();
        assert_eq!(c.push(b"one\n", &stops), "one");
        assert_eq!(c.push(b"two", &stops), "\ntwo");
        assert_eq!(c.rest(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut c = Completion::new();
        assert_eq!(c.push(b"a\xffb", &[]), "a\u{fffd}b");
        assert_eq!(complete_utf8_len(b"x\xe2\x82"), 1);
        assert_eq!(complete_utf8_len(b"x\xe2\x82\xac"), 4);
    }
}
