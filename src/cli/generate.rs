//! `gpt generate`: continue prompts with a GPT (GPT-2 or one trained here).

use super::check;
use super::out::{count, note};
use super::tokenize::{read_stdin, read_text};
use crate::model::{self, encode_chat, encode_prompt, Dtype, LoadOptions};
use crate::sample::completion::{unescape, Completion};
use crate::sample::{generate, split_rng, working_memory, GenerateOptions};
use crate::tensor::rng;
use crate::tokenizer::Message;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

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
        LoadOptions {
            dtype,
            adapter: None,
            classifier: false,
        }
    }
}

/// How a command that runs a model loads it: `--dtype`, `--adapter`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// How to hold the weights in memory
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DtypeArg,
    /// An adapter to run beside the model, unmerged: a directory with adapter_config.json and
    /// adapter_model.safetensors, trained for this base model: peft's LoRA, or the bottleneck
    /// adapters of `gpt train --adapter-size` (told apart by adapter_config.json)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            adapter: self.adapter.clone(),
            ..self.dtype.options()
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    #[arg(long)]
    pub model: String,
    /// Prompts, generated together as one batch; `-` reads one from standard input
    /// [default: one empty prompt]
    pub prompts: Vec<String>,
    /// A file whose whole text is one more prompt (after those given as arguments); repeatable
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Vec<PathBuf>,
    /// New tokens per sample, at most (llama.cpp's -n); a sample also ends when the context is full (said on stderr)
    #[arg(short = 'n', long = "max-new-tokens", default_value_t = 50)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: super::sample::SamplingArgs,
    /// Stop a sample when it produces this text (not included); repeatable. Escapes are
    /// processed as llama.cpp's -e does: \n, \r, \t, \', \", \\ and \xNN (so '\n\n' is a blank line)
    #[arg(long)]
    pub stop: Vec<String>,
    /// Samples per prompt (each as it would come alone: its seed does not depend on the batch)
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// Print each prompt before its completion
    #[arg(long, conflicts_with_all = ["chat", "json"])]
    pub echo: bool,
    /// Print one JSON object per sample: prompt, completion, tokens (those that make the
    /// completion: the last may run on into a stop string), prompt_tokens, finish_reason, timings
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
    pub template: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

/// The prompts' texts: the arguments (`-` is standard input, read once),
/// then each --prompt-file's whole text; one empty prompt when there is none.
fn prompt_texts(a: &GenerateArgs) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for p in &a.prompts {
        if p != "-" {
            texts.push(p.clone());
            continue;
        }
        ensure!(
            a.prompts.iter().filter(|p| *p == "-").count() == 1,
            "`-` (standard input) is given more than once: it holds one prompt"
        );
        texts.push(read_stdin()?);
    }
    for file in &a.prompt_file {
        texts.push(read_text(file).context("reading --prompt-file")?);
    }
    if texts.is_empty() {
        texts.push(String::new());
    }
    Ok(texts)
}

/// Token ids of each prompt (through the chat template with --chat), each
/// checked against the context, or cut to it with --truncate.
fn encode_prompts(a: &GenerateArgs, texts: &[String], loaded: &mut model::Loaded) -> Result<Vec<Vec<u32>>> {
    let template = match a.chat {
        true => Some(super::chat::chat_template(
            &mut loaded.chat,
            a.template.as_deref(),
            &a.model,
        )?),
        false => None,
    };
    let (tok, n_ctx) = (&loaded.tokenizer, loaded.model.config.n_ctx);
    let mut encoded = Vec::new();
    for text in texts {
        let mut ids = match &template {
            Some(template) => {
                let messages = [
                    super::chat::opening(a.system.as_deref()),
                    vec![Message::new("user", text)],
                ]
                .concat();
                encode_chat(tok, &loaded.chat.render(template, &messages, true)?)?
            }
            None => encode_prompt(tok, text)?,
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
            note!(
                "note: prompt cut from {} to its last {keep} tokens (--truncate)",
                ids.len()
            );
            ids.drain(..ids.len() - keep);
        }
        encoded.push(ids);
    }
    Ok(encoded)
}

/// Continues every prompt `--num-samples` times. Without --json, each
/// sample's text (after its prompt with --echo) ends with a newline, and a
/// `---` line separates samples, however many there are; a lone sample is
/// streamed as it comes.
pub fn run(a: GenerateArgs) -> Result<()> {
    a.quiet.apply();
    let sampling = a.sampling.options()?;
    check::flag(a.num_samples >= 1, "--num-samples", a.num_samples, "at least 1")?;
    let stops = a
        .stop
        .iter()
        .map(|s| unescape("--stop", s))
        .collect::<Result<Vec<_>>>()?;
    let texts = prompt_texts(&a)?;
    let mut loaded = model::load(&a.model, &a.load.options())?;
    let encoded = encode_prompts(&a, &texts, &mut loaded)?;
    let model::Loaded {
        model,
        tokenizer: tok,
        chat,
        ..
    } = loaded;
    let n_ctx = model.config.n_ctx;
    let batch = encoded.len().saturating_mul(a.num_samples);
    let longest = encoded.iter().map(Vec::len).max().unwrap_or(0);
    // The last new token is predicted from a full context: it needs no slot.
    let room = n_ctx + 1 - longest;
    if a.max_new_tokens > room {
        note!(
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
    // Sample j of every prompt draws from the same generator, whatever the batch.
    let mut rngs: Vec<_> = texts
        .iter()
        .flat_map(|_| split_rng(&mut rng(a.sampling.seed), a.num_samples))
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
    if stream && a.echo {
        write!(stdout, "{}", texts[0])?;
        stdout.flush()?;
    }
    let mut failure = None;
    let result = generate(&model, &prompts, &opts, &mut rngs, |i, id| {
        let bytes = match tok.token_bytes(id) {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                return false;
            }
        };
        let shown = completions[i].push(&bytes, &stops);
        if stream {
            if let Err(e) = write!(stdout, "{shown}").and_then(|()| stdout.flush()) {
                failure = Some(e.into());
                return false;
            }
        }
        !completions[i].stopped()
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
        let prompt = &texts[i / a.num_samples];
        if a.json {
            let line = serde_json::json!({
                "prompt": prompt,
                "completion": c.text(),
                "tokens": result.tokens[i][..c.tokens_in_text()],
                "prompt_tokens": prompts[i].len(),
                "finish_reason": if result.stopped[i] { "stop" } else { "length" },
                "timings": timings,
            });
            writeln!(stdout, "{line}")?;
            continue;
        }
        if i > 0 {
            writeln!(stdout, "---")?;
        }
        match stream {
            true => writeln!(stdout, "{}", c.rest())?,
            false => writeln!(stdout, "{}{}", if a.echo { prompt.as_str() } else { "" }, c.text())?,
        }
    }
    if !a.json {
        note!(
            "prefill {} in {:.0} ms | decode {} in {:.0} ms ({:.1} tokens/s)",
            count(prefill_tokens, "token", "tokens"),
            result.prefill_secs * 1e3,
            count(result.decode_tokens, "token", "tokens"),
            result.decode_secs * 1e3,
            result.decode_tokens as f64 / result.decode_secs.max(1e-9)
        );
    }
    Ok(())
}
